import { getHeapStatistics } from 'node:v8';
import { Logger } from '@nestjs/common';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type BaseCache,
  type BaseCacheOptions,
  CacheConfigError,
  DriverCache,
  MemoryCache,
  type MemoryDriver,
} from '../lib/index.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';
import { MapDriver } from './support/map-driver.js';

cacheBehaviourSuite('MemoryCache', (options) => new MemoryCache(options), {
  describe,
  it,
  afterEach,
});

describe('MemoryCache bounds', () => {
  it('evicts the least recently used entry past max', async () => {
    const cache = new MemoryCache({ memory: { max: 2 } });
    await cache.set('a', 1);
    await cache.set('b', 2);
    await cache.get('a'); // a is now more recent than b
    await cache.set('c', 3);
    expect(await cache.getMany(['a', 'b', 'c'])).toEqual([1, undefined, 3]);
  });

  it('evicts by bytes past maxBytes', async () => {
    const cache = new MemoryCache({ prefix: 'p', memory: { maxBytes: 2_500 } });
    const kb = 'x'.repeat(1_000);
    await cache.set('a', kb);
    await cache.set('b', kb);
    await cache.set('c', kb);
    expect(await cache.has('a')).toBe(false);
    expect(await cache.getMany(['b', 'c'])).toEqual([kb, kb]);
  });

  it('does not store an entry larger than maxBytes, and drops the older value of its key', async () => {
    const cache = new MemoryCache({ memory: { maxBytes: 1_000 } });
    await cache.set('k', 'small');
    expect(await cache.set('k', 'x'.repeat(2_000))).toBe(false);
    expect(await cache.get('k')).toBeUndefined();
  });

  it.each([0, -1, 1.5, Infinity, NaN, '100'])(
    'refuses memory.max = %s with a CacheConfigError naming the option',
    (max) => {
      expect(() => new MemoryCache({ memory: { max: max as number } })).toThrow(CacheConfigError);
      expect(() => new MemoryCache({ memory: { max: max as number } })).toThrow(/memory\.max/);
    },
  );

  it('is bounded by bytes by default: a flood of 1 MiB values stops at 256 MiB (or a quarter of the heap limit), far below max entries', async () => {
    const cache = new MemoryCache({ prefix: 'flood' });
    const bound = Math.min(256 * 1024 * 1024, getHeapStatistics().heap_size_limit / 4);
    const value = Buffer.alloc(1024 * 1024, 7);
    const keys = Array.from({ length: 400 }, (_, i) => `bust-${i}`);
    for (const key of keys) expect(await cache.set(key, value)).toBe(true);

    const kept = (await cache.getMany(keys)).filter((found) => found !== undefined).length;
    expect(kept * value.length).toBeLessThanOrEqual(bound);
    expect(kept).toBeGreaterThan(bound / value.length / 2);
    expect(await cache.get(keys.at(-1)!)).toEqual(value); // the newest are kept, the oldest evicted
    expect(await cache.get(keys[0]!)).toBeUndefined();
  });

  it('ttl() never says more than the ttl given, even right after set() on a busy event loop', async () => {
    const cache = new MemoryCache({ prefix: 'ttl' });
    let most = 0;
    for (let i = 0; i < 5_000; i += 1) {
      await cache.set(`k${i % 50}`, i, 1);
      most = Math.max(most, (await cache.ttl(`k${i % 50}`)) as number);
    }
    expect(most).toBeLessThanOrEqual(1);
  });

  it('expiry follows the cache clock: with a clock of its own, a test drives TTLs without sleeping', async () => {
    let now = 1_000_000;
    const cache = new MemoryCache({ prefix: 'clock', clock: { now: () => now } });
    await cache.set('k', 'v', 1);

    now += 400;
    expect(await cache.ttl('k')).toBe(0.6);
    now += 599;
    expect(await cache.get('k')).toBe('v');
    now += 2;
    expect(await cache.get('k')).toBeUndefined();
    expect(await cache.ttl('k')).toBeUndefined();
  });

  it('refuses a clock without now()', () => {
    expect(() => new MemoryCache({ clock: {} as never })).toThrow(/"clock".*now\(\)/);
  });

  it('refuses a non-positive memory.maxBytes', () => {
    expect(() => new MemoryCache({ memory: { maxBytes: 0 } })).toThrow(/memory\.maxBytes/);
  });

  it('keeps each entry in memory of its own size, not in a shared 8 KB slab', async () => {
    class PeekingCache extends MemoryCache {
      peek(key: string) {
        return this.driver.get(`${this.prefix}:${key}`) as Buffer;
      }
    }
    const cache = new PeekingCache();
    await cache.set('small', 'hi');
    const stored = cache.peek('small');
    expect(stored.buffer.byteLength).toBe(stored.byteLength);
  });

  it('holds 100k rotating keys within max entries', async () => {
    const cache = new MemoryCache({ memory: { max: 1_000 } });
    for (let i = 0; i < 100_000; i++) await cache.set(`k${i}`, i);
    let present = 0;
    for (let i = 0; i < 100_000; i++) if (await cache.has(`k${i}`)) present += 1;
    expect(present).toBe(1_000);
  });
});

/** A fake clock: tests advance `time.now` instead of sleeping. */
function fakeTime() {
  const time = { now: 1_700_000_000_000 };
  return { time, clock: { now: () => time.now } };
}

describe('counters expire by the cache clock (memory and a Map driver)', () => {
  const backends: [string, (options: BaseCacheOptions) => BaseCache][] = [
    ['MemoryCache', (options) => new MemoryCache(options)],
    ['a Map driver', (options) => new DriverCache(({ clock }) => new MapDriver(clock), options)],
  ];

  it.each(backends)(
    '%s: a counter lives for the ttl given when it was created, later increments keep that expiry, and it starts over once expired',
    async (_, make) => {
      const { time, clock } = fakeTime();
      const cache = make({ prefix: 'counters', clock });

      expect(await cache.increment('c', 1, 10)).toBe(1);
      expect(await cache.ttl('c')).toBe(10);
      time.now += 4_000;
      expect(await cache.increment('c', 1, 100)).toBe(2);
      expect(await cache.decrement('c', 1, null)).toBe(1);
      expect(await cache.ttl('c')).toBe(6);
      time.now += 5_999;
      expect(await cache.get('c')).toBe(1);
      time.now += 2; // just past: the LRU expires an entry once its ttl is exceeded
      expect(await cache.get('c')).toBeUndefined();
      expect(await cache.has('c')).toBe(false);
      expect(await cache.ttl('c')).toBeUndefined();

      expect(await cache.increment('c', 5, 30)).toBe(5);
      expect(await cache.ttl('c')).toBe(30);
    },
  );

  it.each(backends)(
    '%s: a counter created without a ttl gets the cache default',
    async (_, make) => {
      const { time, clock } = fakeTime();
      const cache = make({ prefix: 'counters', clock, ttl: '20s' });

      await cache.increment('c');
      expect(await cache.ttl('c')).toBe(20);
      time.now += 20_001;
      expect(await cache.get('c')).toBeUndefined();
    },
  );
});

describe('MemoryCache and entries of an older format', () => {
  class RawCache extends MemoryCache {
    /** Writes bytes as they are under the key's full name, as an older nest-cache would have. */
    writeRaw(key: string, bytes: Uint8Array): void {
      void this.driver.set(`${this.prefix}:${key}`, bytes, null);
    }
    readRaw(key: string): Uint8Array | undefined {
      return this.driver.get(`${this.prefix}:${key}`) as Uint8Array | undefined;
    }
  }

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('reads bytes in the 0.1 format (the serializer output alone, first byte 0x01) as a miss, never an error', async () => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    const cache = new RawCache({ prefix: 'old' });
    const old = cache.serializer.serialize({ from: '0.1' });
    expect(old[0]).toBe(0x01);
    cache.writeRaw('k', old);
    cache.writeRaw('h', old);
    cache.writeRaw('t', old);
    cache.writeRaw('m', old);

    expect(await cache.get('k')).toBeUndefined();
    expect(await cache.has('h')).toBe(false);
    expect(await cache.ttl('t')).toBeUndefined();
    expect(await cache.getMany(['m'])).toEqual([undefined]);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('not an entry of this format'));
    expect(cache.readRaw('k')).toBeUndefined(); // removed

    cache.writeRaw('g', old);
    expect(await cache.getOrSet('g', () => ({ from: 'now' }))).toEqual({ from: 'now' });
    expect(await cache.get('g')).toEqual({ from: 'now' });
    expect(cache.readRaw('g')?.[0]).toBe(0xc7); // an envelope of this format replaced it
    expect(cache.stats.errors).toBe(0);
  });

  it('increment() over bytes of the 0.1 format rejects with NotACounterError and leaves them', async () => {
    vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    const cache = new RawCache({ prefix: 'old' });
    cache.writeRaw('c', cache.serializer.serialize(7));

    await expect(cache.increment('c')).rejects.toMatchObject({ code: 'NEST_CACHE_NOT_A_COUNTER' });
  });
});

describe('MemoryDriver tag records stay bounded', () => {
  class PeekingCache extends MemoryCache {
    get tagRecords(): number {
      return (this.driver as MemoryDriver).tagRecords;
    }
  }

  it('records of expired entries are pruned as new tags keep coming: the number of records stays bounded', async () => {
    const { time, clock } = fakeTime();
    const cache = new PeekingCache({ prefix: 'tags', clock, memory: { max: 100_000 } });
    const perRound = 1_000; // 100 entries of 10 distinct tags each
    let most = 0;
    for (let round = 0; round < 20; round += 1) {
      for (let i = 0; i < 100; i += 1) {
        const tags = Array.from({ length: 10 }, (_, j) => `r${round}:e${i}:t${j}`);
        expect(await cache.set(`r${round}:e${i}`, i, { ttl: 1, tags })).toBe(true);
        most = Math.max(most, cache.tagRecords);
      }
      time.now += 2_000; // every entry of this round (and its tag records) has expired
    }

    // Without pruning: 20,000 records. The bound: twice the live ones, plus the 1,000 kept below
    // which the driver never prunes.
    expect(most).toBeLessThanOrEqual(2 * perRound + 1_000);
    expect(cache.tagRecords).toBeLessThanOrEqual(2 * perRound + 1_000);
  });

  it('pruning keeps the records of live entries: invalidating their tags still works', async () => {
    const { time, clock } = fakeTime();
    const cache = new PeekingCache({ prefix: 'tags', clock, memory: { max: 100_000 } });
    await cache.set('long-lived', 'kept', { ttl: '1h', tags: ['keep'] });
    for (let round = 0; round < 10; round += 1) {
      for (let i = 0; i < 500; i += 1)
        await cache.set(`r${round}:${i}`, i, { ttl: 1, tags: [`r${round}:${i}`] });
      time.now += 2_000;
    }
    expect(cache.tagRecords).toBeLessThan(5_000);
    expect(await cache.get('long-lived')).toBe('kept');

    await cache.invalidateTags(['keep']);
    expect(await cache.get('long-lived')).toBeUndefined();
  });
});
