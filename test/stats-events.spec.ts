import { Logger } from '@nestjs/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type BaseCache,
  type CacheEventMap,
  type CacheEventName,
  DriverCache,
  MemoryCache,
  MemoryDriver,
} from '../lib/index.js';
import { RedisCache } from '../lib/stores/redis.cache.js';
import { startRedisServer, type RedisServerHandle } from './support/redis-server.js';

// cache.stats (a live object: counters, hitRatio, breaker, reset) and cache.on(event): each
// counter and each event on memory and on Redis, the way a dashboard or a metrics exporter reads
// them.
let redis: RedisServerHandle;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis.stop();
});

let now = Date.now();
const clock = { now: () => now };
const open: BaseCache[] = [];
beforeEach(() => {
  vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
  vi.spyOn(Logger.prototype, 'error').mockImplementation(() => {});
  vi.spyOn(Logger.prototype, 'log').mockImplementation(() => {});
});
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(open.splice(0).map((cache) => cache.close()));
});

let prefixes = 0;
const BACKENDS: { name: string; create: () => Promise<BaseCache> }[] = [
  { name: 'memory', create: async () => new MemoryCache({ clock }) },
  {
    name: 'redis',
    create: () =>
      RedisCache.create({
        clock,
        prefix: `stats-${(prefixes += 1)}`,
        redis: { url: redis.url, commandTimeout: 200 },
      }),
  },
];

/** Every event of `cache`, in order, as [name, payload]. */
function record(cache: BaseCache) {
  const seen: [CacheEventName, unknown][] = [];
  const names: CacheEventName[] = ['hit', 'miss', 'stale', 'set', 'delete', 'error'];
  for (const name of names) cache.on(name, (event) => seen.push([name, event]));
  return seen;
}

describe.each(BACKENDS)('stats and events on $name', ({ create }) => {
  const start = async () => {
    const cache = await create();
    open.push(cache);
    return cache;
  };

  it('get, set, getOrSet and delete count hits, misses, writes and deletes, and emit hit, miss, set and delete with the key', async () => {
    const cache = await start();
    const seen = record(cache);
    await cache.set('a', 1);
    expect(await cache.get('a')).toBe(1);
    expect(await cache.get('missing')).toBeUndefined();
    expect(await cache.getOrSet('b', () => 2)).toBe(2);
    // getOrSet hands its value out first and stores it right after.
    while (cache.inFlight().flights > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await cache.setMany([
      { key: 'c', value: 3 },
      { key: 'd', value: 4 },
    ]);
    expect(await cache.delete('a')).toBe(true);
    expect(await cache.deleteMany(['c', 'd', 'nope'])).toBe(2);
    expect(cache.stats).toMatchObject({ hits: 1, misses: 2, writes: 4, deletes: 3, errors: 0 });
    expect(seen).toEqual([
      ['set', { key: 'a' }],
      ['hit', { key: 'a' }],
      ['miss', { key: 'missing' }],
      ['miss', { key: 'b' }],
      ['set', { key: 'b' }],
      ['set', { key: 'c' }],
      ['set', { key: 'd' }],
      ['delete', { keys: ['a'], count: 1 }],
      ['delete', { keys: ['c', 'd', 'nope'], count: 2 }],
    ]);
  });

  it('a stale entry served counts as stale and emits stale; hitRatio is (hits + stale) / (hits + stale + misses)', async () => {
    const cache = await start();
    const seen = record(cache);
    expect(cache.stats.hitRatio).toBe(0);
    await cache.set('news', 'old', { ttl: 10, staleWhileRevalidate: 60 });
    now += 11_000;
    expect(await cache.getOrSet('news', () => 'new', { ttl: 10, staleWhileRevalidate: 60 })).toBe(
      'old',
    );
    expect(await cache.get('other')).toBeUndefined();
    expect(cache.stats.stale).toBe(1);
    expect(seen).toContainEqual(['stale', { key: 'news' }]);
    expect(cache.stats.hitRatio).toBe(0.5);
  });

  it('deleteByPattern emits delete without keys and with its count', async () => {
    const cache = await start();
    await cache.setMany([
      { key: 'user:1', value: 1 },
      { key: 'user:2', value: 2 },
    ]);
    const seen = record(cache);
    expect(await cache.deleteByPattern('user:*')).toBe(2);
    expect(seen).toEqual([['delete', { keys: undefined, count: 2 }]]);
  });

  it('stats.reset() sets every counter to 0, and JSON.stringify gives every field with hitRatio and breaker', async () => {
    const cache = await start();
    await cache.set('a', 1);
    await cache.get('a');
    expect(JSON.parse(JSON.stringify(cache.stats))).toEqual({
      hits: 1,
      misses: 0,
      stale: 0,
      writes: 1,
      deletes: 0,
      evictions: 0,
      errors: 0,
      timeouts: 0,
      hitRatio: 1,
      breaker: 'closed',
    });
    cache.stats.reset();
    expect(JSON.parse(JSON.stringify(cache.stats))).toMatchObject({
      hits: 0,
      writes: 0,
      hitRatio: 0,
    });
  });

  it('a listener that throws is logged and never fails the call; the function on() returns removes the listener', async () => {
    const cache = await start();
    const off = cache.on('set', () => {
      throw new Error('a buggy listener');
    });
    expect(await cache.set('a', 1)).toBe(true);
    off();
    let calls = 0;
    const offHit = cache.on('hit', () => (calls += 1));
    await cache.get('a');
    offHit();
    await cache.get('a');
    expect(calls).toBe(1);
    expect(() => cache.on('hits' as 'hit', () => {})).toThrow(/no such event.*hit, miss/);
  });
});

describe('errors, timeouts and the breaker on Redis', () => {
  it('a killed Redis counts errors and emits error; past the threshold the breaker opens (breakerOpen, stats.breaker "open") and closes after a success once Redis is back (breakerClose)', async () => {
    const server = await startRedisServer();
    const cache = await RedisCache.create({
      clock,
      breaker: { threshold: 2, cooldown: '1s' },
      redis: { url: server.url, commandTimeout: 200 },
    });
    open.push(cache);
    const seen = record(cache);
    const transitions: (CacheEventMap['breakerOpen'] | 'closed')[] = [];
    cache.on('breakerOpen', (event) => transitions.push(event));
    cache.on('breakerClose', () => transitions.push('closed'));
    try {
      await server.kill();
      expect(await cache.get('a')).toBeUndefined();
      expect(await cache.get('b')).toBeUndefined();
      expect(cache.stats.errors).toBe(2);
      expect(seen.filter(([name]) => name === 'error')).toHaveLength(2);
      expect(seen.find(([name]) => name === 'error')?.[1]).toMatchObject({ operation: 'get' });
      expect(cache.stats.breaker).toBe('open');
      expect(transitions).toEqual([{ consecutiveFailures: 2, openUntil: now + 1_000 }]);
      await server.restart();
      const deadline = Date.now() + 5_000;
      while (cache.stats.breaker !== 'closed' && Date.now() < deadline) {
        now += 1_001; // the cooldown, on the cache's clock: the next call tries Redis again
        await cache.get('a');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(transitions.at(-1)).toBe('closed');
    } finally {
      await server.stop();
    }
  });
});

describe('events of whole-namespace operations, and the stats object', () => {
  it('clear and invalidateTags emit delete without keys (count 0: not counted)', async () => {
    const cache = new MemoryCache();
    open.push(cache);
    await cache.set('a', 1, { tags: ['t'] });
    const seen = record(cache);
    await cache.invalidateTags(['t']);
    await cache.clear();
    expect(seen).toEqual([
      ['delete', { keys: undefined, count: 0 }],
      ['delete', { keys: undefined, count: 0 }],
    ]);
  });

  it('cache.stats is plain data: structuredClone and Object.keys see the counters only', async () => {
    const cache = new MemoryCache();
    open.push(cache);
    await cache.set('a', 1);
    expect(structuredClone(cache.stats)).toMatchObject({ writes: 1 });
    expect(Object.keys(cache.stats).sort()).toEqual(
      ['deletes', 'errors', 'evictions', 'hits', 'misses', 'stale', 'timeouts', 'writes'].sort(),
    );
  });

  it('a listener that throws on every call is warned about once, and does not hold back the backend errors of the log', async () => {
    const warned: string[] = [];
    const logged: string[] = [];
    vi.spyOn(Logger.prototype, 'warn').mockImplementation(
      (m: unknown) => void warned.push(String(m)),
    );
    vi.spyOn(Logger.prototype, 'error').mockImplementation(
      (m: unknown) => void logged.push(String(m)),
    );
    const cache = new DriverCache(
      (context) =>
        Object.assign(new MemoryDriver({}, context.clock), {
          get: () => Promise.reject(new Error('the backend failed')),
        }),
      {},
    );
    open.push(cache);
    cache.on('miss', () => {
      throw new Error('a buggy listener');
    });
    await cache.get('a');
    await cache.get('b');
    expect(warned.filter((line) => line.includes('listener'))).toHaveLength(1);
    expect(logged.some((line) => line.includes('the backend failed'))).toBe(true);
  });
});

describe('timeouts and evictions', () => {
  it('a Redis command that times out (frozen server) counts as an error and a timeout', async () => {
    const server = await startRedisServer();
    const cache = await RedisCache.create({ redis: { url: server.url, commandTimeout: 100 } });
    open.push(cache);
    try {
      await server.freeze();
      expect(await cache.get('a')).toBeUndefined();
      expect(cache.stats).toMatchObject({ errors: 1, timeouts: 1 });
    } finally {
      server.resume();
      await server.stop();
    }
  });

  it('a call given up after operationTimeout counts as an error and a timeout', async () => {
    const cache = new DriverCache(
      (context) =>
        Object.assign(new MemoryDriver({}, context.clock), {
          get: () => new Promise<never>(() => {}),
        }),
      { operationTimeout: '50ms' },
    );
    open.push(cache);
    const seen = record(cache);
    expect(await cache.get('a')).toBeUndefined();
    expect(cache.stats).toMatchObject({ errors: 1, timeouts: 1 });
    expect(seen).toContainEqual(['error', expect.objectContaining({ operation: 'get' })]);
  });

  it('the memory backend counts the entries it evicts to stay within max', async () => {
    const cache = new MemoryCache({ memory: { max: 2 } });
    open.push(cache);
    await cache.set('a', 1);
    await cache.set('b', 2);
    await cache.set('c', 3);
    await cache.set('d', 4);
    expect(cache.stats.evictions).toBe(2);
  });
});

describe('CacheInterceptor', () => {
  it('counts and emits the misses and HITs it serves, with the request key', async () => {
    const { startApp, ADAPTERS } = await import('./http/support/app.js');
    const { ItemsController } = await import('./http/support/controllers.js');
    const { nothingInFlight } = await import('./http/support/http.js');
    const app = await startApp({ adapter: ADAPTERS[0]!, controllers: [ItemsController] });
    try {
      const seen = record(app.cache);
      await app.send('/items/7');
      // The response is stored once it has been sent.
      await nothingInFlight(app.cache, 1_000);
      await app.send('/items/7');
      expect(app.cache.stats).toMatchObject({ misses: 1, hits: 1 });
      const served = seen.filter(([name]) => name === 'hit' || name === 'miss');
      expect(served.map(([name]) => name)).toEqual(['miss', 'hit']);
      const keys = served.map(([, event]) => (event as { key: string }).key);
      expect(keys[0]).toBe(keys[1]);
      expect(keys[0]).toContain('/items/7');
    } finally {
      await app.close();
    }
  });
});
