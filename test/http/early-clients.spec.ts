import { describe, expect, it } from 'vitest';
import { requestOnce, runLoad, summarize } from '../support/load.js';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  type TestApp,
  usePrivateMemcached,
} from './support/app.js';
import { ItemsController, SLOW_HANDLER_MS } from './support/controllers.js';
import { nothingInFlight, type Reply, sleep } from './support/http.js';

// Clients that leave before their response is sent, alone and in chains, on a key that is not
// cached yet: the key is never stalled for the requests after them, and those still share one
// handler run. /items/slow takes SLOW_HANDLER_MS (300 ms).
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

/** A request that arrives after the clients left is answered in about one handler run. */
const ANSWERED_WITHIN_MS = 2 * SLOW_HANDLER_MS + 500;

const burst = (app: TestApp, size: number): Promise<Reply[]> =>
  Promise.all(Array.from({ length: size }, () => app.send('/items/slow')));

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();
    const startApp = () =>
      start({ adapter, controllers: [ItemsController], cache: backend.options() });

    it('a leader whose client leaves early: the requests after it are answered in one handler run, and share it', async () => {
      const app = await startApp();

      const left = await requestOnce(app.url, '/items/slow', SLOW_HANDLER_MS / 2);
      const replies = await burst(app, 20);

      expect(left.error).toBe('abandoned');
      expect(replies.map((reply) => reply.status)).toEqual(Array(20).fill(200));
      for (const reply of replies) expect(reply.ms).toBeLessThan(ANSWERED_WITHIN_MS);
      // The abandoned leader's run, and one for the 20.
      expect(app.calls.of('slow')).toBe(2);
      await nothingInFlight(app.cache, 3_000);
    });

    it('a chain: A leaves after 150 ms, B (sent 50 ms later) after 30 ms; then 20 concurrent requests are answered in one handler run, and share it', async () => {
      const app = await startApp();

      const a = requestOnce(app.url, '/items/slow', SLOW_HANDLER_MS / 2);
      await sleep(50);
      const b = requestOnce(app.url, '/items/slow', 30);
      const [left, alsoLeft] = await Promise.all([a, b]);
      const replies = await burst(app, 20);

      expect([left.error, alsoLeft.error]).toEqual(['abandoned', 'abandoned']);
      expect(replies.map((reply) => reply.status)).toEqual(Array(20).fill(200));
      for (const reply of replies) expect(reply.ms).toBeLessThan(ANSWERED_WITHIN_MS);
      expect(new Set(replies.map((reply) => reply.text)).size).toBe(1);
      expect(app.calls.of('slow')).toBeLessThanOrEqual(3);
      await nothingInFlight(app.cache, 3_000);
    });

    it('under load, clients on 20 cold keys leave at random moments: every request that waits is answered in bounded time, and every key is served afterwards', async () => {
      const app = await startApp();
      const path = (i: number) => `/items/slow?k=${i % 20}`;
      // Every third client waits for its answer; the others give up before the handler ends.
      const waits = (i: number) => i % 3 === 0;

      const samples = await runLoad({
        url: app.url,
        path,
        connections: 30,
        durationMs: 3_000,
        giveUpAfterMs: (i) => (waits(i) ? 10_000 : 20 + ((i * 37) % (SLOW_HANDLER_MS - 20))),
      });
      const waited = summarize(samples.filter((sample) => waits(sample.index)));
      const after = await Promise.all(Array.from({ length: 20 }, (_, i) => app.send(path(i))));

      expect(waited.unanswered).toBe(0);
      // A waiting request follows at most two flights of a handler run each, then runs it itself;
      // 2 s of slack for a 2-core machine running the load generator too.
      expect(waited.maxMs).toBeLessThan(3 * SLOW_HANDLER_MS + 2_000);
      for (const reply of after) {
        expect(reply.status).toBe(200);
        expect(reply.ms).toBeLessThan(ANSWERED_WITHIN_MS);
      }
      await nothingInFlight(app.cache, 3_000);
    });
  });
});
