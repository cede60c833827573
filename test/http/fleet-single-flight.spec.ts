import { Controller, Get, UseInterceptors } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { CacheInterceptor, CacheStale, CacheTTL } from '../../lib/index.js';
import { ADAPTERS, usePrivateRedis, useApps, COMMAND_TIMEOUT_MS } from './support/app.js';
import {
  HandlerCalls,
  ItemsController,
  SLOW_HANDLER_MS,
  UnstorableController,
} from './support/controllers.js';
import { json, nothingInFlight, pollUntil, sleep } from './support/http.js';

/** A route served stale while it is refreshed in the background. */
@Controller('news')
@UseInterceptors(CacheInterceptor)
class NewsController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get()
  @CacheTTL(10)
  @CacheStale({ staleWhileRevalidate: '1m' })
  async latest() {
    const run = this.calls.ran('news');
    await sleep(50);
    return { run };
  }
}

// distributedSingleFlight through CacheInterceptor: the instances of one app (Nest apps of their
// own, each with its own Redis client, sharing the prefix as a fleet does) answer a burst of
// concurrent requests for one cold URL with one run of the handler between them.
const redis = usePrivateRedis();

const INSTANCES = 4;
const BURST = 200;
let fleets = 0;

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();
  /** The fleet's shared clock (a test moves it on): entries are judged fresh or stale by it. */
  let now = Date.now();
  const fleet = async (distributedSingleFlight: boolean) => {
    fleets += 1;
    const prefix = `http-fleet-${process.pid}-${fleets}`;
    return Promise.all(
      Array.from({ length: INSTANCES }, () =>
        start({
          adapter,
          controllers: [ItemsController, NewsController, UnstorableController],
          cache: {
            backend: 'redis',
            prefix,
            distributedSingleFlight,
            clock: { now: () => now },
            redis: { url: redis.server.url, commandTimeout: COMMAND_TIMEOUT_MS },
          },
        }),
      ),
    );
  };

  it(`${INSTANCES} instances x ${BURST} concurrent requests for one cold URL run its handler once, and every request gets that response`, async () => {
    const apps = await fleet(true);
    const replies = await Promise.all(
      apps.flatMap((app) => Array.from({ length: BURST }, () => app.send('/items/slow'))),
    );
    const runs = apps.reduce((sum, app) => sum + app.calls.of('slow'), 0);
    expect(runs).toBe(1);
    expect(replies.map((reply) => reply.status)).toEqual(replies.map(() => 200));
    expect(new Set(replies.map((reply) => json(reply).run))).toEqual(new Set([1]));
    // One MISS (the request that ran it); the rest replayed it, in its instance or another.
    expect(replies.filter((reply) => reply.cache === 'MISS')).toHaveLength(1);
    for (const app of apps) expect(app.cache.inFlight()).toEqual({ reads: 0, flights: 0 });
  });

  it('a stale entry is served at once by every instance while one background run refreshes it for the whole fleet', async () => {
    const apps = await fleet(true);
    expect((await apps[0].send('/news')).cache).toBe('MISS');
    // The write lands after the response is sent; then the entry goes stale on the fleet's clock.
    await pollUntil(
      'the entry stored',
      async () => (await apps[1].send('/news')).cache === 'HIT',
      2_000,
    );
    now += 11_000;
    const replies = await Promise.all(
      apps.flatMap((app) => Array.from({ length: BURST / 4 }, () => app.send('/news'))),
    );
    // Served at once: STALE, or a HIT of the refreshed entry once it landed; never a MISS.
    expect(replies.filter((reply) => reply.cache !== 'STALE' && reply.cache !== 'HIT')).toEqual([]);
    expect(replies.filter((reply) => reply.cache === 'STALE').length).toBeGreaterThan(0);
    await pollUntil(
      'the refreshed entry',
      async () => json(await apps[2].send('/news')).run === 2,
      2_000,
    );
    // The first run, and one refresh between the four instances.
    expect(apps.reduce((sum, app) => sum + app.calls.of('news'), 0)).toBe(2);
  });

  it('a request whose client left while it waited for another instance does not lead: its flight and lease end at once, and the next request is answered without waiting for a deadline', async () => {
    const [winner, waiter] = await fleet(true);
    // The winner's response sets a cookie, so it is not stored: its lease ends without an entry.
    const first = winner.send('/unstorable/slow-cookie');
    await sleep(50);
    const gone = fetch(`${waiter.url}/unstorable/slow-cookie`, {
      signal: AbortSignal.timeout(100),
    }).catch(() => 'left');
    expect(await gone).toBe('left');
    expect((await first).status).toBe(200);
    await nothingInFlight(waiter.cache, SLOW_HANDLER_MS);
    const next = await waiter.send('/unstorable/slow-cookie');
    expect(next.status).toBe(200);
    expect(next.ms).toBeLessThan(3 * SLOW_HANDLER_MS);
  });

  it('without the option each instance runs the handler once', async () => {
    const apps = await fleet(false);
    await Promise.all(
      apps.flatMap((app) => Array.from({ length: BURST / 4 }, () => app.send('/items/slow'))),
    );
    expect(apps.map((app) => app.calls.of('slow'))).toEqual(apps.map(() => 1));
  });
});
