import { EventEmitter } from 'node:events';
import { Logger } from '@nestjs/common';
import KeyvPostgres from '@keyv/postgres';
import KeyvRedis, { createKeyv } from '@keyv/redis';
import Keyv, { type StoredData } from 'keyv';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { CacheConfigError, KeyvCache } from '../lib/index.js';
import { loadKeyv } from '../lib/stores/keyv.cache.js';
import { usePostgres } from './support/postgres-server.js';
import { usePrivateRedis } from './support/redis-server.js';

// Nothing escapes as an unhandled rejection or an uncaught exception, in any test of this file.
const escaped: unknown[] = [];
const onEscape = (error: unknown) => void escaped.push(error);
beforeAll(() => {
  process.on('unhandledRejection', onEscape);
  process.on('uncaughtException', onEscape);
});
afterAll(() => {
  process.off('unhandledRejection', onEscape);
  process.off('uncaughtException', onEscape);
});

let logged: string[];
const made: KeyvCache[] = [];
beforeEach(() => {
  logged = [];
  const capture = (message: unknown) => void logged.push(String(message));
  vi.spyOn(Logger.prototype, 'warn').mockImplementation(capture);
  vi.spyOn(Logger.prototype, 'error').mockImplementation(capture);
});
afterEach(async () => {
  await Promise.all(made.splice(0).map((c) => c.close()));
  vi.restoreAllMocks();
  expect(escaped.splice(0)).toEqual([]);
});

async function cache(options: Parameters<typeof KeyvCache.create>[0]): Promise<KeyvCache> {
  const c = await KeyvCache.create(options);
  made.push(c);
  return c;
}

/** What Keyv stored under `key` in a Map store, parsed: { value, expires }. */
function raw(map: Map<unknown, unknown>, key: string): { value: unknown; expires?: number } {
  return JSON.parse(map.get(key) as string) as { value: unknown; expires?: number };
}

/** A Keyv storage adapter over a Map that cannot list its keys, with switches for faults. */
class TestStore extends EventEmitter {
  opts: Record<string, unknown> = {};
  namespace?: string;
  readonly entries = new Map<string, string>();
  /** 'reject': every call rejects; 'hang': no call ever settles. */
  fault: 'reject' | 'hang' | undefined;
  disconnects = 0;
  private call<T>(answer: () => T): Promise<T> {
    if (this.fault === 'reject') return Promise.reject(new Error('store unreachable'));
    if (this.fault === 'hang') return new Promise<T>(() => {});
    return Promise.resolve(answer());
  }
  get<Value>(key: string): Promise<StoredData<Value> | undefined> {
    return this.call(() => this.entries.get(key) as StoredData<Value> | undefined);
  }
  set(key: string, value: string): Promise<boolean> {
    return this.call(() => (this.entries.set(key, value), true));
  }
  delete(key: string): Promise<boolean> {
    return this.call(() => this.entries.delete(key));
  }
  clear(): Promise<void> {
    return this.call(() => this.entries.clear());
  }
  async disconnect(): Promise<void> {
    this.disconnects += 1;
  }
}

describe('KeyvCache options', () => {
  it('without keyv.store → CacheConfigError naming keyv.store and how to pass one', async () => {
    for (const options of [{}, { keyv: {} as never }]) {
      const error = await KeyvCache.create(options).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CacheConfigError);
      expect((error as Error).message).toMatch(/"keyv\.store".*new KeyvRedis/);
    }
  });

  it.each([
    ['keyv', 'redis://x', /"keyv": "redis:\/\/x"/],
    ['keyv', [], /"keyv": an array/],
    ['keyv.store', 'redis://x', /"keyv\.store": "redis:\/\/x"\. Pass a Keyv storage adapter/],
    ['keyv.store', { get() {} }, /"keyv\.store": a object\. Pass a Keyv storage adapter/],
    ['keyv.disconnect', 'yes', /"keyv\.disconnect": "yes"\. Use true/],
  ])('a malformed %s (%j) → CacheConfigError naming it', async (option, value, message) => {
    const keyv =
      option === 'keyv'
        ? value
        : option === 'keyv.store'
          ? { store: value }
          : { store: new Map(), disconnect: value };
    const error = await KeyvCache.create({ keyv: keyv as never }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CacheConfigError);
    expect((error as Error).message).toMatch(message);
  });

  it('keyv not installed → CacheConfigError saying npm install keyv; other import errors pass through', async () => {
    const missing = Object.assign(new Error("Cannot find package 'keyv' imported from /app"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    const error = await loadKeyv(() => Promise.reject(missing)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CacheConfigError);
    expect((error as Error).message).toMatch(/npm install keyv/);
    const broken = new SyntaxError('Unexpected token');
    await expect(loadKeyv(() => Promise.reject(broken))).rejects.toBe(broken);
  });

  it('a Keyv instance lends its store and namespace; its default ttl never applies (ttl null stays forever)', async () => {
    const map = new Map();
    const theirs = new Keyv({ store: map, namespace: 'app', ttl: 1_000 });
    const c = await cache({ prefix: 'p', keyv: { store: theirs } });
    await c.set('k', 'v', null);
    expect([...map.keys()]).toEqual(['app:p:k']);
    expect(raw(map, 'app:p:k').expires).toBeUndefined();
    expect(await c.ttl('k')).toBeNull();
    // Their instance reads what the cache wrote under the same namespace: one store.
    expect(typeof (await theirs.get('p:k'))).toBe('string');
  });

  it('a failing store is an error of the cache even through a Keyv instance that swallows them (throwOnErrors: false)', async () => {
    const store = new TestStore();
    const c = await cache({ keyv: { store: new Keyv({ store }) } });
    store.fault = 'reject';
    expect(await c.get('k')).toBeUndefined();
    expect(await c.set('k', 1)).toBe(false);
    expect(c.stats.errors).toBe(2);
    expect(logged.join('\n')).toMatch(/store unreachable/);
  });

  it('close() disconnects the store (default), or leaves it open with disconnect: false', async () => {
    const owned = new TestStore();
    const kept = new TestStore();
    const adopted = new TestStore();
    const a = await KeyvCache.create({ keyv: { store: owned } });
    const b = await KeyvCache.create({ keyv: { store: kept, disconnect: false } });
    const c = await KeyvCache.create({ keyv: { store: new Keyv({ store: adopted }) } });
    await Promise.all([a.close(), b.close(), c.close()]);
    expect([owned.disconnects, kept.disconnects, adopted.disconnects]).toEqual([1, 0, 1]);
  });
});

describe('KeyvCache semantics', () => {
  it("a value is one base64 string in Keyv's { value, expires }: never JSON inside JSON, ~4/3 of the entry", async () => {
    const map = new Map();
    const c = await cache({ prefix: 'p', keyv: { store: map } });
    const value = { text: 'x'.repeat(10_000), quote: '"' };
    await c.set('k', value);
    const stored = map.get('keyv:p:k') as string;
    const { value: inner } = raw(map, 'keyv:p:k');
    expect(typeof inner).toBe('string');
    const bytes = Buffer.from(inner as string, 'base64');
    expect(bytes[0]).toBe(0x6b);
    // The serialized value (10,025 bytes of JSON), the envelope (27), our header (14), in base64,
    // plus Keyv's wrapper: no escaping of the value's quotes.
    expect(stored.length).toBeLessThanOrEqual(Math.ceil((10_025 + 27 + 14) / 3) * 4 + 64);
    expect(await c.get('k')).toEqual(value);
  });

  it("expiry follows the cache's clock; Keyv's own expiry (real time, same ttl) only reclaims", async () => {
    const map = new Map();
    const time = { now: 1_700_000_000_000 };
    const c = await cache({ prefix: 'p', clock: { now: () => time.now }, keyv: { store: map } });
    const before = Date.now();
    await c.set('k', 'v', 10);
    const { expires } = raw(map, 'keyv:p:k');
    expect(expires).toBeGreaterThanOrEqual(before + 10_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 10_000);
    time.now += 9_999;
    expect(await c.ttl('k')).toBeCloseTo(0.001);
    expect(await c.get('k')).toBe('v');
    time.now += 1;
    expect(await c.get('k')).toBeUndefined();
    expect(await c.ttl('k')).toBeUndefined();
    expect(map.has('keyv:p:k')).toBe(true); // Keyv's expiry has not come: still stored, a miss
  });

  it("clear() and deleteByPattern('*') leave other data of a shared Keyv namespace alone", async () => {
    const map = new Map();
    const other = new Keyv({ store: map });
    await other.set('session:1', 'theirs');
    const c = await cache({ prefix: 'p', keyv: { store: map } });
    const neighbour = await cache({ prefix: 'p2', keyv: { store: map } });
    await c.set('a', 1);
    await neighbour.set('a', 2);
    expect(await c.deleteByPattern('*')).toBe(1);
    await c.set('b', 1, { tags: ['t'] });
    await c.clear();
    expect(await c.get('b')).toBeUndefined();
    expect(await other.get('session:1')).toBe('theirs');
    expect(await neighbour.get('a')).toBe(2);
  });

  it('keys with NUL and SOH are stored escaped (no NUL reaches the store), read back and listed', async () => {
    const map = new Map();
    const c = await cache({ prefix: 'p', keyv: { store: map } });
    const keys = ['a\0b', 'a\u0001b', 'a\u00010', 'a\u0001\u0001'];
    await c.setMany(keys.map((key, i) => ({ key, value: i })));
    expect([...map.keys()].some((key) => String(key).includes('\0'))).toBe(false);
    expect(await c.getMany(keys)).toEqual([0, 1, 2, 3]);
    expect(await c.deleteByPattern('a?b')).toBe(2);
    expect(await c.getMany(keys)).toEqual([undefined, undefined, 2, 3]);
  });

  it('a write then a read of the key, started back to back, reads what was written', async () => {
    const c = await cache({ keyv: { store: new Map() } });
    for (let i = 0; i < 20; i += 1) {
      const [, read] = await Promise.all([c.set('k', i), c.get('k')]);
      expect(read).toBe(i);
    }
  });
});

describe('KeyvCache on a store that cannot list its keys', () => {
  it("deleteByPattern clears this cache's namespace only, resolves 0 and says so", async () => {
    const store = new TestStore();
    const c = await cache({ prefix: 'p', keyv: { store } });
    const neighbour = await cache({ prefix: 'p2', keyv: { store } });
    await c.setMany([
      { key: 'user:1', value: 1 },
      { key: 'other', value: 2 },
    ]);
    await neighbour.set('user:1', 'kept');
    expect(await c.deleteByPattern('user:*')).toBe(0);
    expect(await c.getMany(['user:1', 'other'])).toEqual([undefined, undefined]);
    expect(await neighbour.get('user:1')).toBe('kept');
    expect(logged.join('\n')).toMatch(/cannot list its keys, so every entry/);
    await c.set('user:2', 3);
    expect(await c.get('user:2')).toBe(3);
  });

  it('a clear() in one process is seen by another at its next read', async () => {
    const store = new TestStore();
    const a = await cache({ prefix: 'p', keyv: { store } });
    const b = await cache({ prefix: 'p', keyv: { store } });
    await b.set('k', 'old');
    expect(await a.get('k')).toBe('old');
    await a.clear();
    expect(await b.get('k')).toBeUndefined();
    await b.set('k', 'new');
    expect(await a.get('k')).toBe('new');
  });

  it('a lost generation record (evicted, deleted) makes older entries misses, and the cache goes on', async () => {
    const store = new TestStore();
    const c = await cache({ prefix: 'p', keyv: { store } });
    await c.set('k', 'v');
    expect(await c.get('k')).toBe('v');
    expect(store.entries.delete('keyv:p%g')).toBe(true);
    expect(await c.get('k')).toBeUndefined();
    await c.set('k', 'w');
    expect(await c.get('k')).toBe('w');
  });
});

describe('KeyvCache fails open', () => {
  it('a store that rejects: misses and dropped writes, counted, never a rejection', async () => {
    const store = new TestStore();
    const time = { now: 1_700_000_000_000 };
    const c = await cache({ clock: { now: () => time.now }, keyv: { store } });
    await c.set('k', 1, null);
    store.fault = 'reject';
    expect(await c.get('k')).toBeUndefined();
    expect(await c.set('k', 2)).toBe(false);
    expect(await c.getMany(['k', 'j'])).toEqual([undefined, undefined]);
    expect(await c.increment('n')).toBeUndefined();
    await c.clear();
    expect(c.stats.errors).toBeGreaterThanOrEqual(5);
    store.fault = undefined;
    time.now += 3_600_000; // past the circuit breaker's cooldown
    expect(await c.get('k')).toBe(1);
  });

  it('a store that never answers: every call settles within operationTimeout', async () => {
    const store = new TestStore();
    const c = await cache({ operationTimeout: '100ms', keyv: { store } });
    await c.set('k', 1);
    store.fault = 'hang';
    const start = performance.now();
    const results = await Promise.all([c.get('k'), c.set('k', 2), c.get('k'), c.delete('k')]);
    expect(results).toEqual([undefined, false, undefined, false]);
    expect(performance.now() - start).toBeLessThan(400);
  });

  it("the store's error events are logged without its password", async () => {
    const store = new TestStore();
    store.opts = { url: 'redis://user:s3cr%3At@db.internal:6379' };
    await cache({ keyv: { store } });
    store.emit('error', new Error('auth failed for redis://user:s3cr:t@db.internal:6379 (s3cr:t)'));
    const line = logged.join('\n');
    expect(line).toMatch(
      /The Keyv store TestStore reported an error \(auth failed for redis:\/\/\*\*\*@db\.internal:6379 \(\*\*\*\)\)/,
    );
    expect(line).not.toMatch(/s3cr/);
  });
});

describe('KeyvCache on @keyv/redis when redis-server dies', () => {
  const redis = usePrivateRedis();

  it('calls fail open within operationTimeout, nothing escapes, and the cache works again once the server is back', async () => {
    // The adapter as users make it: node-redis defaults (an offline queue, reconnecting).
    const c = await cache({
      prefix: 'faults',
      operationTimeout: '300ms',
      keyv: { store: new KeyvRedis(redis.server.url) },
    });
    await c.set('k', 'before');
    expect(await c.get('k')).toBe('before');

    await redis.server.kill();
    const start = performance.now();
    const load = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? c.get('k') : c.set(`k${i}`, i))),
    );
    expect(performance.now() - start).toBeLessThan(1_000);
    // Reads are misses, writes are dropped.
    expect(load.filter((_, i) => i % 2).every((result) => result === undefined)).toBe(true);
    expect(load.filter((_, i) => !(i % 2)).every((result) => result === false)).toBe(true);
    expect(logged.join('\n')).toMatch(/KeyvRedis reported an error|failed/);

    await redis.server.restart();
    const deadline = Date.now() + 10_000;
    while (!(await c.set('k', 'after')) || (await c.get('k')) !== 'after') {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await c.get('k')).toBe('after');
  }, 20_000);

  it('what @keyv/redis swallows (its throwOnErrors is off by default) fails the call: an invalidation, a delete, a read are counted errors', async () => {
    const store = new KeyvRedis({ url: redis.server.url, disableOfflineQueue: true });
    const c = await KeyvCache.create({ prefix: 'swallowed', keyv: { store } });
    expect(store.throwOnErrors).toBe(true); // turned on while the cache is open
    await c.set('k', 1, { tags: ['t'] });
    await redis.server.kill();
    // Offline now: node-redis refuses every command at once, and @keyv/redis (throwOnErrors
    // aside) would answer "no record", "nothing deleted", "a miss".
    await vi.waitFor(() => expect((store.client as { isReady: boolean }).isReady).toBe(false));
    await c.invalidateTags(['t']);
    expect(await c.delete('k')).toBe(false);
    expect(await c.get('k')).toBeUndefined();
    expect(c.stats.errors).toBe(3);
    await redis.server.restart();
    await c.close();
    expect(store.throwOnErrors).toBe(false); // given back as it was
  });
});

describe('KeyvCache on @keyv/redis', () => {
  const redis = usePrivateRedis();
  const prefixes = { next: 0 };
  const prefix = () => `r${(prefixes.next += 1)}`;

  it("createKeyv(url) (no Keyv namespace): clear() and deleteByPattern('*') remove keys with '::' too, everywhere, and nothing else of the database", async () => {
    const { url } = redis.server;
    const theirs = createKeyv(url); // another application's data in the same database
    await theirs.set('app::session', 'theirs');
    await theirs.set('p:x', 'theirs too');
    const p = prefix();
    const a = await cache({ prefix: p, keyv: { store: createKeyv(url) } });
    const b = await cache({ prefix: p, keyv: { store: createKeyv(url) } });
    await a.setMany([
      { key: 'a::b', value: 1 },
      { key: 'c', value: 2 },
    ]);
    expect(await b.getMany(['a::b', 'c'])).toEqual([1, 2]);
    await a.clear();
    expect(await b.getMany(['a::b', 'c'])).toEqual([undefined, undefined]);
    await b.set('a::b', 3);
    expect(await a.get('a::b')).toBe(3);
    await a.deleteByPattern('*');
    expect(await b.get('a::b')).toBeUndefined();
    expect(await theirs.get('app::session')).toBe('theirs');
    expect(await theirs.get('p:x')).toBe('theirs too');
    await theirs.disconnect();
  });

  // The generation path on a real store (createKeyv(url)), and on a store without an iterator.
  const shared = new TestStore();
  const stores: [string, () => Keyv | TestStore][] = [
    ['createKeyv(url) of @keyv/redis', () => createKeyv(redis.server.url)],
    ['a store without an iterator', () => shared],
  ];

  it.each(stores)(
    'deleteByPattern on %s keeps the tag records: a value computed before an invalidation is never served',
    async (_name, store) => {
      const p = prefix();
      const [a, b, c] = await Promise.all(
        [1, 2, 3].map(() => cache({ prefix: p, keyv: { store: store() } })),
      );
      await b.get('k'); // B knows the generations
      await b.getOrSet(
        'k',
        async () => {
          await a.invalidateTags(['t']);
          await a.deleteByPattern('unrelated:*');
          // A fresh entry of the tag: it would recreate a record lost to deleteByPattern.
          await a.set('fresh', 1, { tags: ['t'] });
          return 'computed before the invalidation';
        },
        { tags: ['t'] },
      );
      // B stores what its flight produced once its callers have it.
      await vi.waitFor(() => expect(b.inFlight().flights).toBe(0));
      expect(await c.get('k')).toBeUndefined();
      expect(await c.get('fresh')).toBe(1);
      expect(c.stats.errors + b.stats.errors + a.stats.errors).toBe(0);
    },
  );

  it.each(stores)(
    'a write on %s that raced a clear of another process is done again under the new generation',
    async (_name, store) => {
      const p = prefix();
      const a = await cache({ prefix: p, keyv: { store: store() } });
      const b = await cache({ prefix: p, keyv: { store: store() } });
      await a.set('k', 'old'); // A knows the generation
      await b.clear(); // A does not know the new one
      expect(await a.set('k', 'new')).toBe(true);
      expect(await b.get('k')).toBe('new');
      await a.set('t', 1, { tags: ['tag'] });
      await b.deleteByPattern('*');
      await a.invalidateTags(['tag']);
      await a.set('t', 2, { tags: ['tag'] });
      expect(await b.get('t')).toBe(2);
    },
  );
});

describe('KeyvCache on @keyv/postgres', () => {
  const postgres = usePostgres();
  // One pool per URI in the process, which disconnect() ends: ended once, before the server stops.
  const stores: KeyvPostgres[] = [];
  afterAll(async () => {
    await stores[0]?.disconnect();
  });
  function postgresStore(options: { table?: string } = {}): KeyvPostgres {
    const store = new KeyvPostgres({ uri: postgres.uri, ...options });
    stores.push(store);
    return store;
  }

  it("a listing that fails (@keyv/postgres's iterator reports an error and stops) fails clear() and deleteByPattern: counted and logged, never a silent success", async () => {
    // @keyv/postgres quotes the table name in its iterator only: with a mixed-case one, every
    // listing fails while reads and writes work.
    const store = postgresStore({ table: 'Mixed' });
    const c = await cache({ prefix: 'listing', keyv: { store, disconnect: false } });
    await c.set('k', 1);
    expect(await c.get('k')).toBe(1);
    await c.clear();
    expect(c.stats.errors).toBe(1);
    expect(await c.deleteByPattern('*')).toBe(0);
    expect(c.stats.errors).toBe(2);
    expect(logged.join('\n')).toMatch(/Iterator failed/);
    expect(await c.get('k')).toBe(1); // not cleared, and the cache says so
  });

  it('close() gives the adapter back as it was: no listener or namespace of a closed cache stays, and a late error crashes nothing', async () => {
    const store = postgresStore();
    for (let i = 0; i < 3; i += 1) {
      const c = await KeyvCache.create({
        prefix: 'given-back',
        keyv: { store, disconnect: false },
      });
      expect(store.namespace).toBe('keyv');
      await c.set('k', i);
      expect(await c.get('k')).toBe(i);
      await c.close();
    }
    // At most one no-op listener, holding nothing of the caches: an EventEmitter without one
    // would throw on the adapter's next 'error'.
    expect(store.listenerCount('error')).toBeLessThanOrEqual(1);
    expect(store.namespace).toBeUndefined();
    expect(() => store.emit('error', new Error('late'))).not.toThrow();
  });
});
