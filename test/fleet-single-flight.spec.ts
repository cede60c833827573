import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CacheConfigError, FactoryTimeoutError, MemoryCache } from '../lib/index.js';
import { RedisCache } from '../lib/stores/redis.cache.js';
import { clientCount, startRedisServer, type RedisServerHandle } from './support/redis-server.js';

// distributedSingleFlight: the instances of an app (here, caches with clients of their own, as
// separate processes have) share one run of a cold key's factory through a lease in Redis.
const INSTANCES = 4;
const CALLERS = 200;
const FACTORY_MS = 100;
const GET_OR_SET_TIMEOUT_MS = 1_500;
/** What a lease lasts unrenewed: a third of getOrSetTimeout. */
const LEASE_MS = GET_OR_SET_TIMEOUT_MS / 3;

let redis: RedisServerHandle;
let raw: Redis;
beforeAll(async () => {
  redis = await startRedisServer();
  raw = new Redis(redis.url);
});
afterAll(async () => {
  raw.disconnect();
  await redis.stop();
});

let prefixes = 0;
const open: RedisCache[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((cache) => cache.close()));
});

/** `count` instances of one app: one prefix, a client each. */
async function fleet(count = INSTANCES, prefix = `fleet-${(prefixes += 1)}`) {
  const caches = await Promise.all(
    Array.from({ length: count }, () =>
      RedisCache.create({
        prefix,
        distributedSingleFlight: true,
        getOrSetTimeout: `${GET_OR_SET_TIMEOUT_MS}ms`,
        redis: { url: redis.url, commandTimeout: 200 },
      }),
    ),
  );
  open.push(...caches);
  return caches;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A factory that counts its runs and answers after FACTORY_MS. */
function countedFactory() {
  const runs = { count: 0 };
  const factory = async () => {
    runs.count += 1;
    await sleep(FACTORY_MS);
    return { report: 'fresh', run: runs.count };
  };
  return { runs, factory };
}

/**
 * The lease records left in Redis under `prefix` once the flights have ended: callers get the value
 * before it is written, and the lease goes after the write (within an operationTimeout).
 */
async function leasesLeft(prefix: string): Promise<string[]> {
  const deadline = performance.now() + 1_000;
  for (;;) {
    const keys = await raw.keys(`${prefix}%l:*`);
    if (keys.length === 0 || performance.now() > deadline) return keys;
    await sleep(10);
  }
}

describe('distributedSingleFlight on Redis', () => {
  it(`${INSTANCES} instances x ${CALLERS} concurrent getOrSet of one cold key make one factory call, and every caller gets its value`, async () => {
    const caches = await fleet();
    const { runs, factory } = countedFactory();
    const values = await Promise.all(
      caches.flatMap((cache) =>
        Array.from({ length: CALLERS }, () => cache.getOrSet('report', factory, 60)),
      ),
    );
    expect(runs.count).toBe(1);
    expect(values).toHaveLength(INSTANCES * CALLERS);
    expect(new Set(values.map((value) => JSON.stringify(value)))).toEqual(
      new Set([JSON.stringify({ report: 'fresh', run: 1 })]),
    );
    // The lease is released once the value is stored; nothing stays in flight anywhere.
    expect(await leasesLeft(caches[0].prefix)).toEqual([]);
    for (const cache of caches) expect(cache.inFlight()).toEqual({ reads: 0, flights: 0 });
    // And the value is stored once for the fleet.
    expect(await caches[INSTANCES - 1].get('report')).toEqual({ report: 'fresh', run: 1 });
  });

  it('without the option each instance runs the factory once (single-flight is per process)', async () => {
    const prefix = `fleet-${(prefixes += 1)}`;
    const caches = await Promise.all(
      Array.from({ length: INSTANCES }, () =>
        RedisCache.create({ prefix, redis: { url: redis.url, commandTimeout: 200 } }),
      ),
    );
    open.push(...caches);
    const { runs, factory } = countedFactory();
    await Promise.all(
      caches.flatMap((cache) =>
        Array.from({ length: CALLERS }, () => cache.getOrSet('report', factory, 60)),
      ),
    );
    expect(runs.count).toBe(INSTANCES);
  });

  it('a lease left by an instance that died holds the key until it expires (a third of getOrSetTimeout), no longer: the waiting instance then runs the factory itself, well within its own getOrSetTimeout', async () => {
    const [cache] = await fleet(1);
    // What a holder killed just after taking it leaves behind: its lease, never renewed.
    await raw.set(`${cache.prefix}%l:report`, 'a dead instance', 'PX', LEASE_MS);
    const { runs, factory } = countedFactory();
    const started = performance.now();
    const value = await cache.getOrSet('report', factory, 60);
    const waited = performance.now() - started;
    expect(value).toEqual({ report: 'fresh', run: 1 });
    expect(runs.count).toBe(1);
    // It waited for the lease to expire, then ran the factory.
    expect(waited).toBeGreaterThanOrEqual(LEASE_MS + FACTORY_MS - 20);
    expect(waited).toBeLessThan(GET_OR_SET_TIMEOUT_MS);
    expect(await leasesLeft(cache.prefix)).toEqual([]);
  });

  it('a winner slower than the lease time renews its lease while it runs: the other instance waits for its value instead of running the factory too', async () => {
    const [winner, waiter] = await fleet(2);
    let runs = 0;
    const slow = async () => {
      runs += 1;
      await sleep(LEASE_MS * 2);
      return 'slow but fresh';
    };
    const first = winner.getOrSet('report', slow, 60);
    await sleep(20);
    const second = waiter.getOrSet('report', slow, 60);
    expect(await Promise.all([first, second])).toEqual(['slow but fresh', 'slow but fresh']);
    expect(runs).toBe(1);
  });

  it('when the winner fails, the instances that waited run the factory at the same time, not one after another', async () => {
    const caches = await fleet();
    const starts: number[] = [];
    const failing = async () => {
      starts.push(performance.now());
      await sleep(FACTORY_MS);
      throw new Error('the origin failed');
    };
    const outcomes = await Promise.allSettled(
      caches.map((cache) => cache.getOrSet('report', failing, 60)),
    );
    expect(outcomes.map((outcome) => outcome.status)).toEqual(caches.map(() => 'rejected'));
    expect(starts).toHaveLength(INSTANCES);
    // The winner's run, then the others' together (a poll or two apart at most): one after another
    // they would start a whole run apart, 2 runs from the first to the last.
    const others = starts.slice(1);
    expect(Math.max(...others) - Math.min(...others)).toBeLessThan(1.5 * FACTORY_MS);
    expect(await leasesLeft(caches[0].prefix)).toEqual([]);
  });

  it('close() while a flight holds the lease releases it at once, so the other instances need not wait for it to expire', async () => {
    const [winner] = await fleet(1);
    const slow = winner.getOrSet('report', () => sleep(LEASE_MS * 4).then(() => 'late'), 60);
    await sleep(20);
    expect(await raw.exists(`${winner.prefix}%l:report`)).toBe(1);
    await winner.close();
    expect(await raw.exists(`${winner.prefix}%l:report`)).toBe(0);
    await slow.catch(() => undefined);
  });

  it("close() while a caller waits for another instance: the caller gets its factory's value, not undefined", async () => {
    const [cache] = await fleet(1);
    await raw.set(`${cache.prefix}%l:report`, 'another instance', 'PX', 10_000);
    const { factory } = countedFactory();
    const waiting = cache.getOrSet('report', factory, 60);
    await sleep(30);
    await cache.close();
    expect(await waiting).toEqual({ report: 'fresh', run: 1 });
  });

  it('a lease held past getOrSetTimeout ends the waiting callers with FactoryTimeoutError, as a hung factory does, and leaves no state behind', async () => {
    const [cache] = await fleet(1);
    await raw.set(`${cache.prefix}%l:report`, 'a slow instance', 'PX', 10_000);
    const { runs, factory } = countedFactory();
    await expect(cache.getOrSet('report', factory, 60)).rejects.toThrow(FactoryTimeoutError);
    expect(runs.count).toBe(0);
    expect(cache.inFlight()).toEqual({ reads: 0, flights: 0 });
  });

  it('the winner whose factory fails releases its lease at once: a waiting instance runs the factory itself, without waiting for the lease to expire', async () => {
    const [winner, waiter] = await fleet(2);
    let calls = 0;
    const failing = async () => {
      calls += 1;
      await sleep(FACTORY_MS);
      throw new Error('the origin failed');
    };
    const first = winner.getOrSet('report', failing, 60);
    await sleep(20); // the winner holds the lease now
    const { runs, factory } = countedFactory();
    const started = performance.now();
    const second = waiter.getOrSet('report', factory, 60);
    await expect(first).rejects.toThrow('the origin failed');
    expect(await second).toEqual({ report: 'fresh', run: 1 });
    expect(calls).toBe(1);
    expect(runs.count).toBe(1);
    expect(performance.now() - started).toBeLessThan(GET_OR_SET_TIMEOUT_MS);
  });

  it('an instance with a stale entry serves it at once while another instance holds the lease (staleWhileRevalidate)', async () => {
    const [holder, other] = await fleet(2);
    await other.set('report', { report: 'stale' }, { ttl: '1ms', staleWhileRevalidate: '1m' });
    await sleep(5);
    await raw.set(`${holder.prefix}%l:report`, 'the holder', 'PX', 10_000);
    const { runs, factory } = countedFactory();
    const started = performance.now();
    expect(
      await other.getOrSet('report', factory, { ttl: 60, staleWhileRevalidate: '1m' }),
    ).toEqual({ report: 'stale' });
    expect(performance.now() - started).toBeLessThan(FACTORY_MS);
    expect(runs.count).toBe(0);
  });

  it('with Redis down every instance runs the factory itself (fail open) and answers', async () => {
    const down = await startRedisServer();
    const prefix = `fleet-${(prefixes += 1)}`;
    const caches = await Promise.all(
      Array.from({ length: 2 }, () =>
        RedisCache.create({
          prefix,
          distributedSingleFlight: true,
          redis: { url: down.url, commandTimeout: 200 },
        }),
      ),
    );
    open.push(...caches);
    await down.kill();
    try {
      const { runs, factory } = countedFactory();
      const values = await Promise.all(
        caches.map((cache) => cache.getOrSet('report', factory, 60)),
      );
      expect(values.map((value) => value.report)).toEqual(['fresh', 'fresh']);
      expect(runs.count).toBe(2);
    } finally {
      await down.stop();
    }
  });

  it('a value that is not a boolean is refused before any connection is opened', async () => {
    const before = await clientCount(redis.port);
    await expect(
      RedisCache.create({
        distributedSingleFlight: 'yes' as unknown as boolean,
        redis: { url: redis.url },
      }),
    ).rejects.toThrow(CacheConfigError);
    await sleep(100);
    expect(await clientCount(redis.port)).toBe(before);
  });

  it('is refused with a CacheConfigError naming the fix on a backend without leases, and for a value that is not a boolean', async () => {
    expect(() => new MemoryCache({ distributedSingleFlight: true })).toThrow(CacheConfigError);
    expect(() => new MemoryCache({ distributedSingleFlight: true })).toThrow(
      /distributedSingleFlight needs a backend with leases .* the memory backend has none\. Use backend: 'redis'/,
    );
    expect(() => new MemoryCache({ distributedSingleFlight: 'yes' as unknown as boolean })).toThrow(
      /distributedSingleFlight.*Use true or false/,
    );
  });
});
