import { getHeapStatistics } from 'node:v8';
import { afterEach, describe, expect, it } from 'vitest';
import { CacheConfigError, MemoryCache } from '../lib/index.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';

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
