import { describe, expect, it } from 'vitest';
import { ADAPTERS, usePrivateRedis, useApps, COMMAND_TIMEOUT_MS } from './support/app.js';
import { ItemsController } from './support/controllers.js';
import { json } from './support/http.js';

// distributedSingleFlight through CacheInterceptor: the instances of one app (Nest apps of their
// own, each with its own Redis client, sharing the prefix as a fleet does) answer a burst of
// concurrent requests for one cold URL with one run of the handler between them.
const redis = usePrivateRedis();

const INSTANCES = 4;
const BURST = 200;
let fleets = 0;

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();
  const fleet = async (distributedSingleFlight: boolean) => {
    fleets += 1;
    const prefix = `http-fleet-${process.pid}-${fleets}`;
    return Promise.all(
      Array.from({ length: INSTANCES }, () =>
        start({
          adapter,
          controllers: [ItemsController],
          cache: {
            backend: 'redis',
            prefix,
            distributedSingleFlight,
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

  it('without the option each instance runs the handler once', async () => {
    const apps = await fleet(false);
    await Promise.all(
      apps.flatMap((app) => Array.from({ length: BURST / 4 }, () => app.send('/items/slow'))),
    );
    expect(apps.map((app) => app.calls.of('slow'))).toEqual(apps.map(() => 1));
  });
});
