import { describe, expect, it } from 'vitest';
import { ADAPTERS, backends, usePrivateRedis, useApps } from './support/app.js';
import { ItemsController, UnstorableController } from './support/controllers.js';
import { json, type Reply } from './support/http.js';

// Concurrent requests for one cold key run the handler once per process; when the leader's
// response may not be shared, the followers run the handler themselves.
const redis = usePrivateRedis();

const BURST = 50;

function burst(
  send: (path: string) => Promise<Reply>,
  path: string,
  size: number,
): Promise<Reply[]> {
  return Promise.all(Array.from({ length: size }, () => send(path)));
}

const count = (replies: Reply[], cache: string) =>
  replies.filter((reply) => reply.cache === cache).length;

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis))('with the $name backend', (backend) => {
    const start = useApps();
    const startApp = () =>
      start({
        adapter,
        controllers: [ItemsController, UnstorableController],
        cache: backend.options(),
      });

    it(`a burst of ${BURST} concurrent requests for a cold key runs the handler once, and every request gets its response`, async () => {
      const { send, calls } = await startApp();

      const replies = await burst(send, '/items/slow', BURST);

      expect(calls.of('slow')).toBe(1);
      expect(replies.map((reply) => reply.status)).toEqual(Array(BURST).fill(200));
      expect(new Set(replies.map((reply) => reply.text))).toEqual(
        new Set([JSON.stringify({ run: 1 })]),
      );
      expect(count(replies, 'MISS')).toBe(1);
      expect(count(replies, 'HIT')).toBe(BURST - 1);
    });

    it('when the leader sets a cookie, each follower runs the handler itself and gets its own response', async () => {
      const { send, calls } = await startApp();

      const replies = await burst(send, '/unstorable/slow-cookie', 5);

      expect(calls.of('slow-cookie')).toBe(5);
      const runs = replies.map((reply) => json<{ run: number }>(reply).run);
      expect(new Set(runs)).toEqual(new Set([1, 2, 3, 4, 5]));
      for (const reply of replies) {
        expect(reply.headers.get('set-cookie')).toBe(`session=${json<{ run: number }>(reply).run}`);
      }
    });

    it('a failing leader caches nothing: only its own request fails; the followers run the handler themselves', async () => {
      const { send, calls } = await startApp();

      const replies = await burst(send, '/unstorable/slow-flaky', 5);
      const after = await send('/unstorable/slow-flaky');

      expect(calls.of('slow-flaky')).toBe(5);
      expect(replies.filter((reply) => reply.status === 500)).toHaveLength(1);
      const served = replies.filter((reply) => reply.status === 200);
      expect(new Set(served.map((reply) => json<{ run: number }>(reply).run))).toEqual(
        new Set([2, 3, 4, 5]),
      );
      expect(after.status).toBe(200);
    });
  });
});
