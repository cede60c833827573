import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { pollUntil } from './http/support/http.js';
import type { BaseCacheOptions } from '../lib/base-cache.js';
import { CacheConfigError } from '../lib/errors.js';
import { loadIoredis, RedisCache } from '../lib/stores/redis.cache.js';
import { startRedisServer, useRedis, type RedisServerHandle } from './support/redis-server.js';

/** Every cache and raw client a test opens, closed after it even when it fails. */
const opened: { close(): Promise<unknown> }[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((resource) => resource.close()));
  vi.restoreAllMocks();
});

async function cacheOn(
  url: string,
  prefix: string,
  options: BaseCacheOptions = {},
): Promise<RedisCache> {
  const cache = await RedisCache.create({ ...options, prefix, redis: { url } });
  // Leaves nothing behind, even in a Redis given by REDIS_URL.
  opened.push({ close: () => cache.clear().finally(() => cache.close()) });
  return cache;
}

/** A plain ioredis client, to look at what RedisCache wrote the way any other program would. */
function rawClient(url: string): Redis {
  const client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  opened.push({ close: () => client.quit().catch(() => client.disconnect()) });
  return client;
}

async function keysUnder(client: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found.sort();
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('RedisCache on a Redis (REDIS_URL, or a private redis-server)', () => {
  const redis = useRedis();
  /** A namespace of its own per test, so tests can share a Redis (even someone else's). */
  const namespace = () => `nest-cache-test-${randomUUID()}`;

  it('stores a value as a Redis string under `${prefix}:${key}` that expires by PX', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);

    expect(await cache.set('user:1', { name: 'Ada' }, 30)).toBe(true);

    expect(await raw.type(`${prefix}:user:1`)).toBe('string');
    const pttl = await raw.pttl(`${prefix}:user:1`);
    expect(pttl).toBeGreaterThan(29_000);
    expect(pttl).toBeLessThanOrEqual(30_000);
    expect(await cache.get('user:1')).toEqual({ name: 'Ada' });
  });

  it('stores a value with ttl null without any expiry', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);

    await cache.set('forever', 1, null);

    expect(await raw.pttl(`${prefix}:forever`)).toBe(-1);
    expect(await cache.ttl('forever')).toBeNull();
  });

  it('setMany stores every entry with its own expiry', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);

    expect(
      await cache.setMany([
        { key: 'a', value: 'A', ttl: '10s' },
        { key: 'b', value: 'B', ttl: null },
      ]),
    ).toBe(true);

    expect(await raw.pttl(`${prefix}:a`)).toBeGreaterThan(9_000);
    expect(await raw.pttl(`${prefix}:b`)).toBe(-1);
    expect(await cache.getMany(['a', 'missing', 'b'])).toEqual(['A', undefined, 'B']);
  });

  it('concurrent calls, batched by auto-pipelining, each get their own reply', async () => {
    const cache = await cacheOn(redis.url, namespace());
    const keys = Array.from({ length: 2_000 }, (_, i) => `k${i}`);

    const stored = await Promise.all(keys.map((key, i) => cache.set(key, { i })));
    const [values, present, removed] = await Promise.all([
      Promise.all(keys.map((key) => cache.get<{ i: number }>(key))),
      Promise.all(keys.map((key) => cache.has(key))),
      Promise.all(
        keys.map((key, i) => (i % 2 ? cache.delete(`absent-${key}`) : Promise.resolve(false))),
      ),
    ]);

    expect(stored.every(Boolean)).toBe(true);
    expect(values.map((value) => value?.i)).toEqual(keys.map((_, i) => i));
    expect(present.every(Boolean)).toBe(true);
    expect(removed.some(Boolean)).toBe(false);
    expect(cache.stats.errors).toBe(0);
  });

  it.each(['a*', 'a?', 'a[b]', 'a\\b', 'a*[b]?'])(
    'clear() of prefix %s deletes only its own keys, not those its glob characters would match',
    async (globby) => {
      const root = namespace();
      const neighbours = ['ab', 'aXb', 'a', 'a\\b', 'a*', 'a?', 'a[b]', 'a*[b]x'].filter(
        (p) => p !== globby,
      );
      const target = await cacheOn(redis.url, `${root}${globby}`);
      const others = await Promise.all(
        neighbours.map((suffix) => cacheOn(redis.url, `${root}${suffix}`)),
      );
      await target.set('k', 'mine');
      for (const other of others) await other.set('k', 'theirs');

      await target.clear();

      expect(await target.get('k')).toBeUndefined();
      for (const other of others) expect(await other.get('k'), other.prefix).toBe('theirs');
    },
  );

  it('clear() walks more keys than one SCAN batch, with SCAN and UNLINK only (never KEYS or FLUSHDB)', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const neighbour = await cacheOn(redis.url, `${prefix}-neighbour`);
    const raw = rawClient(redis.url);
    const entries = Array.from({ length: 5_000 }, (_, i) => ({ key: `k${i}`, value: i }));
    expect(await cache.setMany(entries)).toBe(true);
    await neighbour.set('k', 'kept');
    // Every other connection is ready first: ioredis' MONITOR can trip over the INFO of a ready
    // check that arrives while it is being set up ("Command queue state error").
    const monitored = rawClient(redis.url);
    await Promise.all([raw.ping(), monitored.ping()]);

    // MONITOR shows what reached Redis from our cache's own connection.
    const monitor = await monitored.monitor();
    opened.push({ close: async () => monitor.disconnect() });
    const ours = `127.0.0.1:${(cache.client as Redis).stream.localPort}`;
    const commands: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source === ours) commands.push(args);
    });

    await cache.clear();
    await cache.client.ping(); // MONITOR has seen everything clear() sent once this answers
    await eventually(async () => commands.some(([name]) => name.toLowerCase() === 'ping'));

    expect(await keysUnder(raw, `${prefix}:*`)).toEqual([]);
    expect(await neighbour.get('k')).toBe('kept');
    const names = new Set(commands.map(([name]) => name.toLowerCase()));
    expect(names).toContain('scan');
    expect(names).toContain('unlink');
    for (const forbidden of ['keys', 'flushdb', 'flushall', 'del'])
      expect(names).not.toContain(forbidden);
    expect(commands.filter(([name]) => name.toLowerCase() === 'scan').length).toBeGreaterThan(1);
  });

  it('reads a value it cannot decode as a miss, and deletes it', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);
    vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    await raw.set(`${prefix}:corrupt`, 'written by another program');

    expect(await cache.get('corrupt')).toBeUndefined();

    await eventually(async () => (await raw.exists(`${prefix}:corrupt`)) === 0);
  });

  it('reads bytes in the 0.1 format (the serializer output alone, first byte 0x01) as a miss, never an error', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    const old = cache.serializer.serialize({ from: '0.1' });
    expect(old[0]).toBe(0x01);
    for (const key of ['k', 'h', 't', 'm', 'g']) await raw.set(`${prefix}:${key}`, old);

    expect(await cache.get('k')).toBeUndefined();
    expect(await cache.has('h')).toBe(false);
    expect(await cache.ttl('t')).toBeUndefined();
    expect(await cache.getMany(['m'])).toEqual([undefined]);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('not an entry of this format'));
    await eventually(async () => (await raw.exists(`${prefix}:k`)) === 0);

    expect(await cache.getOrSet('g', () => ({ from: 'now' }))).toEqual({ from: 'now' });
    await eventually(async () => (await raw.getBuffer(`${prefix}:g`))?.[0] === 0xc7);
    expect(await cache.get('g')).toEqual({ from: 'now' });
    expect(cache.stats.errors).toBe(0);
  });

  it('tag records expire: each lives at most as long as the entries tagged with it (ttl plus stale window), never persistent', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);
    const record = (tag: string) => `${prefix}%t:${tag}`;

    await cache.set('a', 1, { ttl: 30, tags: ['t1', 't2'] });
    await cache.getOrSet('b', () => 2, { ttl: 20, staleWhileRevalidate: 10, tags: ['t3'] });
    await cache.setMany([
      { key: 'c', value: 3, ttl: 5, staleIfError: 5, tags: ['t4'] },
      { key: 'd', value: 4, ttl: 2, tags: ['t5'] },
    ]);
    await eventually(async () => (await raw.exists(record('t3'))) === 1);

    const bounds: Record<string, number> = {
      t1: 30_000,
      t2: 30_000,
      t3: 30_000,
      // setMany touches the tags of its entries together, until the last of them ends.
      t4: 10_000,
      t5: 10_000,
    };
    for (const [tag, most] of Object.entries(bounds)) {
      expect(await raw.type(record(tag)), tag).toBe('string');
      const pttl = await raw.pttl(record(tag));
      expect(pttl, tag).toBeGreaterThan(0);
      expect(pttl, tag).toBeLessThanOrEqual(most);
    }

    // A shorter-lived entry never shortens a record; an invalidation keeps its expiry.
    await cache.set('e', 5, { ttl: 1, tags: ['t1'] });
    expect(await raw.pttl(record('t1'))).toBeGreaterThan(20_000);
    await cache.invalidateTags(['t1']);
    const afterInvalidation = await raw.pttl(record('t1'));
    expect(afterInvalidation).toBeGreaterThan(20_000);
    expect(afterInvalidation).toBeLessThanOrEqual(30_000);
    expect(await cache.getMany(['a', 'e', 'b'])).toEqual([undefined, undefined, 2]);
  });

  it('a never-expiring entry makes its tag record persistent, and an expiring one never takes that back', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);
    const record = `${prefix}%t:forever`;

    await cache.set('a', 1, { ttl: 30, tags: ['forever'] });
    expect(await raw.pttl(record)).toBeGreaterThan(0);
    await cache.set('b', 2, { ttl: null, tags: ['forever'] });
    expect(await raw.pttl(record)).toBe(-1);
    await cache.set('c', 3, { ttl: 30, tags: ['forever'] });
    expect(await raw.pttl(record)).toBe(-1);

    await cache.invalidateTags(['forever']);
    expect(await raw.pttl(record)).toBe(-1);
    expect(await cache.getMany(['a', 'b', 'c'])).toEqual([undefined, undefined, undefined]);
  });

  it('a tag record lost behind the cache (evicted by maxmemory, deleted by hand) makes its entries misses: the invalidation it may have held is not forgotten', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);
    await cache.set('a', 1, { ttl: 30, tags: ['lost', 'kept'] });
    await cache.set('b', 2, { ttl: 30, tags: ['kept'] });
    await raw.del(`${prefix}%t:lost`);
    expect(await cache.getMany(['a', 'b'])).toEqual([undefined, 2]);
    await cache.set('a', 3, { ttl: 30, tags: ['lost', 'kept'] });
    expect(await cache.get('a')).toBe(3);
  });

  it('an invalidation lost with its tag record stays in force once a later write recreates the record', async () => {
    const time = { now: 1_700_000_000_000 };
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix, { clock: { now: () => time.now } });
    const raw = rawClient(redis.url);
    await cache.set('old', 'before', { ttl: 600, tags: ['t'] });
    time.now += 60_000;
    await cache.invalidateTags(['t']);
    await raw.del(`${prefix}%t:t`); // lost: evicted, or its server restarted
    time.now += 60_000;
    await cache.set('new', 'after', { ttl: 600, tags: ['t'] }); // recreates the record
    expect(await cache.getMany(['old', 'new'])).toEqual([undefined, 'after']);
  });

  it('an invalidation by one process reaches the entries another process wrote', async () => {
    const prefix = namespace();
    const time = { now: 1_700_000_000_000 };
    const clock = { now: () => time.now };
    const writer = await cacheOn(redis.url, prefix, { clock });
    const invalidator = await cacheOn(redis.url, prefix, { clock });

    await writer.set('a', 1, { tags: ['t'] });
    await writer.set('b', 2, { tags: ['other'] });
    await invalidator.invalidateTags(['t']);

    expect(await writer.get('a')).toBeUndefined();
    expect(await writer.get('b')).toBe(2);
    time.now += 1; // processes order their writes and invalidations by the millisecond
    await writer.set('a', 'again', { tags: ['t'] });
    expect(await invalidator.get('a')).toBe('again');
  });

  it('an invalidation of a tag no entry carries yet reaches a write another process has in progress', async () => {
    const prefix = namespace();
    const time = { now: 1_700_000_000_000 };
    const clock = { now: () => time.now };
    const writer = await cacheOn(redis.url, prefix, { clock });
    const invalidator = await cacheOn(redis.url, prefix, { clock });
    let release!: (value: string) => void;
    const loading = writer.getOrSet('profile:1', () => new Promise<string>((r) => (release = r)), {
      tags: ['user:1'],
    });
    await pollUntil('the load started', async () => release !== undefined, 2_000, 5);

    time.now += 5; // the user is updated while the old row is being loaded
    await invalidator.invalidateTags(['user:1']);
    release('old row');
    expect(await loading).toBe('old row');
    await pollUntil('the write landed', async () => writer.inFlight().flights === 0, 2_000, 5);

    expect(await writer.get('profile:1')).toBeUndefined();
    expect(await invalidator.get('profile:1')).toBeUndefined();
  });

  it('counters are Redis integers (INCRBY): increments from two processes at once all count', async () => {
    const prefix = namespace();
    const one = await cacheOn(redis.url, prefix);
    const two = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);

    await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? one : two).increment('hits', 1, 60)),
    );

    expect(await raw.get(`${prefix}:hits`)).toBe('200');
    expect(await one.get('hits')).toBe(200);
    const pttl = await raw.pttl(`${prefix}:hits`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
  });

  it('deleteByPattern walks more keys than one SCAN batch, and deletes only the matching ones', async () => {
    const prefix = namespace();
    const cache = await cacheOn(redis.url, prefix);
    const raw = rawClient(redis.url);
    await cache.setMany(Array.from({ length: 2_500 }, (_, i) => ({ key: `k:${i}`, value: i })));
    await cache.setMany(Array.from({ length: 10 }, (_, i) => ({ key: `kept:${i}`, value: i })));

    expect(await cache.deleteByPattern('k:*')).toBe(2_500);

    expect(await keysUnder(raw, `${prefix}:k:*`)).toEqual([]);
    expect((await keysUnder(raw, `${prefix}:kept:*`)).length).toBe(10);
  });

  it('uses a client you pass without changing its options, and close() leaves it open and working', async () => {
    const client = new Redis(redis.url, {
      commandTimeout: 500,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    opened.push({ close: () => client.quit() });
    const optionsBefore = { ...client.options };
    const errorListenersBefore = client.listenerCount('error');
    const cache = await RedisCache.create({ prefix: namespace(), redis: { client } });

    expect(cache.client).toBe(client);
    expect(await cache.set('k', 'v', '1s')).toBe(true);
    await cache.close();

    expect(client.status).toBe('ready');
    expect(await client.ping()).toBe('PONG');
    expect(client.options).toEqual(optionsBefore);
    expect(client.listenerCount('error')).toBe(errorListenersBefore);
  });

  it('warns when the client you pass can wait on an offline queue', async () => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    const client = new Redis(redis.url); // ioredis defaults: offline queue on, no commandTimeout
    opened.push({ close: () => client.quit() });

    await RedisCache.create({ prefix: namespace(), redis: { client } });

    expect(warn).toHaveBeenCalledWith(expect.stringContaining('enableOfflineQueue: false'));
  });
});

describe('RedisCache connections (a private redis-server, to count them exactly)', () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server.stop();
  });

  it('a cache created from a URL opens exactly one connection, and close() leaves none of ours', async () => {
    const admin = rawClient(server.url);
    const admins = 1;
    const connections = async () =>
      String(await admin.client('LIST'))
        .trim()
        .split('\n').length - admins;
    const handles = () =>
      process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap').length;
    await admin.ping();
    const handlesBefore = handles();

    const cache = await RedisCache.create({ redis: { url: server.url } });
    await cache.set('k', 1);
    expect(await connections()).toBe(1);

    await cache.close();
    await eventually(async () => (await connections()) === 0);
    expect(handles()).toBe(handlesBefore);
    expect(cache.client.status).toBe('end');
  });

  it('never puts the password in a log line or an error', async () => {
    const password = 'S3cret-Not-For-Logs';
    const guarded = await startRedisServer({ args: ['--requirepass', 'the-right-one'] });
    try {
      const logged: unknown[] = [];
      const capture = (...args: unknown[]) => void logged.push(args);
      for (const level of ['log', 'warn', 'error', 'debug', 'verbose', 'fatal'] as const) {
        vi.spyOn(Logger.prototype, level).mockImplementation(capture);
      }
      for (const level of ['log', 'warn', 'error'] as const)
        vi.spyOn(console, level).mockImplementation(capture);

      const fromUrl = await RedisCache.create({
        redis: { url: `redis://:${password}@127.0.0.1:${guarded.port}` },
      });
      const fromOptions = await RedisCache.create({
        redis: { host: '127.0.0.1', port: guarded.port, password },
      });
      for (const cache of [fromUrl, fromOptions]) {
        expect(await cache.set('k', 1)).toBe(false);
        expect(await cache.get('k')).toBeUndefined();
        await cache.close();
      }
      const thrown = await RedisCache.create({
        redis: { url: `redis://:${password}@127.0.0.1:port` },
      }).catch((error: unknown) => error);

      expect(thrown).toBeInstanceOf(CacheConfigError);
      expect(logged.length).toBeGreaterThan(0); // the failures were reported...
      expect(JSON.stringify(logged)).toMatch(/WRONGPASS|NOAUTH|auth/i);
      expect(JSON.stringify(logged)).not.toContain(password); // ...without the password
      expect(String(thrown)).not.toContain(password);
    } finally {
      await guarded.stop();
    }
  });
});

describe('RedisCache options', () => {
  it.each([
    ['localhost:6379', 'does not start with redis://'],
    ['http://127.0.0.1:6379', 'does not start with redis://'],
    ['redis://127.0.0.1:port', 'is not a valid URL'],
    ['redis://127.0.0.1:99999', 'is not a valid URL'],
    ['redis://127.0.0.1:6379/cache', 'not a number'],
    ['redis://', 'has no host'],
  ])(
    'rejects the malformed URL %s with a CacheConfigError naming redis.url',
    async (url, problem) => {
      const error = await RedisCache.create({ redis: { url } }).catch((thrown: unknown) => thrown);

      expect(error).toBeInstanceOf(CacheConfigError);
      expect((error as Error).message).toContain('"redis.url"');
      expect((error as Error).message).toContain(problem);
    },
  );

  it('rejects keyPrefix, which clear() could not see, pointing to the "prefix" option', async () => {
    const error = await RedisCache.create({ redis: { keyPrefix: 'app:' } as never }).catch(
      (thrown: unknown) => thrown,
    );

    expect(error).toBeInstanceOf(CacheConfigError);
    expect((error as Error).message).toContain('"prefix"');
  });

  it('loadIoredis turns "ioredis is not installed" into a CacheConfigError saying to npm install ioredis', async () => {
    const notInstalled = async () => {
      throw Object.assign(
        new Error("Cannot find package 'ioredis' imported from /app/dist/redis.cache.js"),
        {
          code: 'ERR_MODULE_NOT_FOUND',
        },
      );
    };

    const error = await loadIoredis(notInstalled).catch((thrown: unknown) => thrown);

    expect(error).toBeInstanceOf(CacheConfigError);
    expect((error as Error).message).toContain('npm install ioredis');
  });

  it('loadIoredis lets other loading errors through unchanged', async () => {
    const broken = new SyntaxError('Unexpected token in ioredis/built/index.js');

    await expect(loadIoredis(async () => Promise.reject(broken))).rejects.toBe(broken);
  });

  it('loadIoredis loads the installed ioredis client class', async () => {
    expect(await loadIoredis()).toBe(Redis);
  });
});
