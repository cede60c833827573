import { Logger } from '@nestjs/common';
import memjs from 'memjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { CacheConfigError } from '../lib/errors.js';
import { type MemjsClient, loadMemjs } from '../lib/stores/memcached-connection.js';
import { planConnection } from '../lib/stores/memcached-connection.js';
import { expiration, memcachedKey } from '../lib/stores/memcached-format.js';
import { MemcachedCache } from '../lib/stores/memcached.cache.js';
import { usePrivateMemcached } from './support/memcached-server.js';

const memcached = usePrivateMemcached();
let raw: memjs.Client;
beforeAll(() => {
  raw = memjs.Client.create(memcached.server.servers, { logger: { log() {} }, retries: 1 });
});
afterAll(() => raw.close());

let logged: string[];
beforeEach(() => {
  logged = [];
  const capture = (message: unknown) => void logged.push(String(message));
  vi.spyOn(Logger.prototype, 'error').mockImplementation(capture);
  vi.spyOn(Logger.prototype, 'warn').mockImplementation(capture);
});
let made: MemcachedCache[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(made.map((cache) => cache.close()));
  made = [];
});

let count = 0;
/** A cache on the private memcached; `prefix` shared by two caches stands for two processes. */
async function cache(
  options: Parameters<typeof MemcachedCache.create>[0] = {},
): Promise<MemcachedCache> {
  const made1 = await MemcachedCache.create({
    prefix: `mc-${process.pid}-${++count}`,
    ...options,
    memcached: { servers: memcached.server.servers, ...options.memcached },
  });
  made.push(made1);
  return made1;
}

/** Two caches on one namespace, each with its own client: two processes sharing memcached. */
async function twoProcesses(): Promise<[MemcachedCache, MemcachedCache]> {
  const a = await cache();
  const b = await cache({ prefix: a.prefix });
  return [a, b];
}

/** The raw item a cache stores for `key` (prefix without ':' or '%', plain key), or null. */
async function rawItem(prefix: string, key: string): Promise<Buffer | null> {
  const generation = (await raw.get(`${prefix}%g`)).value!.toString();
  return (await raw.get(`${prefix}@${generation}:${key}`)).value;
}

describe('options', () => {
  const invalid: [string, unknown, RegExp][] = [
    ['not an object', 'localhost', /"memcached"/],
    ['servers: a number', { servers: 42 }, /"memcached\.servers"/],
    ['servers: an empty list', { servers: [] }, /"memcached\.servers"/],
    ['servers: not host:port', { servers: 'a:b:c' }, /"memcached\.servers".*not host:port/],
    ['servers: a port over 65535', { servers: 'h:99999' }, /port outside 1-65535/],
    ['servers: credentials inside', { servers: 'me:hunter2@h:1' }, /memcached\.username/],
    ['username without password', { username: 'me' }, /"memcached\.password"/],
    ['password without username', { password: 'hunter2' }, /"memcached\.username"/],
    ['commandTimeout 0', { commandTimeout: 0 }, /"memcached\.commandTimeout".*default 500/],
    ['commandTimeout 1.5', { commandTimeout: 1.5 }, /"memcached\.commandTimeout"/],
    ['connectTimeout "1s"', { connectTimeout: '1s' }, /"memcached\.connectTimeout"/],
    ['retries -1', { retries: -1 }, /"memcached\.retries"/],
    ['retries 11', { retries: 11 }, /"memcached\.retries"/],
    ['client: not a memjs client', { client: {} }, /"memcached\.client".*memjs/],
  ];
  for (const [label, options, message] of invalid) {
    it(`${label} → CacheConfigError naming the option, never echoing a password`, async () => {
      const creating = MemcachedCache.create({ memcached: options as never });
      await expect(creating).rejects.toThrow(CacheConfigError);
      await expect(creating).rejects.toThrow(message);
      await expect(creating).rejects.not.toThrow(/hunter2/);
    });
  }

  it("defaults: '127.0.0.1:11211', each request bounded at 1 s (connect 500 ms + answer 500 ms, no retry)", async () => {
    const planned = await planConnection(undefined);
    expect(planned.target).toBe('127.0.0.1:11211');
    expect(planned.requestBoundMs).toBe(1_000);
    expect(planned.owned).toBe(true);
  });

  it('timeouts that outlast operationTimeout are refused, naming both options', async () => {
    await expect(
      cache({ operationTimeout: '1s', memcached: { commandTimeout: 600 } }),
    ).rejects.toThrow(/memcached\.commandTimeout.*operationTimeout/s);
    await expect(cache({ memcached: { retries: 2 } })).rejects.toThrow(
      /3400 ms.*not below "operationTimeout" \(2000 ms\)/,
    );
    // 2 × (400 + 400) + 200 = 1800 ms: fits.
    const fits = await cache({
      memcached: { retries: 1, commandTimeout: 400, connectTimeout: 400 },
    });
    expect(await fits.set('k', 1)).toBe(true);
  });

  it('memjs not installed → CacheConfigError saying npm install memjs', async () => {
    const missing = Object.assign(new Error("Cannot find package 'memjs'"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    await expect(loadMemjs(() => Promise.reject(missing))).rejects.toThrow(CacheConfigError);
    await expect(loadMemjs(() => Promise.reject(missing))).rejects.toThrow(/npm install memjs/);
  });

  it('{ client }: the cache uses your client and never closes it; a slow one gets a warning', async () => {
    const client = memjs.Client.create(memcached.server.servers, { logger: { log() {} } });
    try {
      const mine = await cache({ memcached: { client: client as unknown as MemjsClient } });
      expect(mine.client).toBe(client);
      expect(await mine.set('k', 'v')).toBe(true);
      expect(await mine.get('k')).toBe('v');
      // memjs' defaults: 2 tries of up to 1 s to connect and 0.5 s to answer, 200 ms apart.
      expect(logged.join('\n')).toMatch(/"memcached\.client" may wait 3200 ms/);

      await mine.close();

      expect(await client.set('still-open', 'yes')).toBe(true);
    } finally {
      client.close();
    }
  });
});

describe('keys memcached accepts', () => {
  it('a short printable key is kept as it is; others are hashed, within 250 bytes, never equal to a plain key', () => {
    expect(memcachedKey('shop:user:42')).toBe('shop:user:42');
    const hashed = ['a b', 'a\nb', 'ключ', 'x'.repeat(251), 'a~b', 'a\u007fb'].map(memcachedKey);
    for (const key of hashed) {
      expect(Buffer.byteLength(key)).toBeLessThanOrEqual(250);
      expect(key).toMatch(/^[\x21-\x7d]*~[A-Za-z0-9_-]{43}$/);
    }
    expect(new Set(hashed).size).toBe(hashed.length);
    // A plain key never holds '~', so none can be typed to equal a hashed one.
    expect(memcachedKey(hashed[0]!)).not.toBe(hashed[0]);
  });

  it('entries live under `${prefix}@${generation}:${key}`, with the logical expiry in a header', async () => {
    const c = await cache();
    await c.set('user:1', 'v', 30);
    const item = await rawItem(c.prefix, 'user:1');
    expect(item).not.toBeNull();
    expect(item![0]).toBe(0xe7);
    expect(item!.readDoubleLE(1) - Date.now()).toBeGreaterThan(29_000);
  });
});

describe("memcached's rules", () => {
  it('an expiration over 30 days is sent as an absolute Unix time, so the entry lives', async () => {
    const now = Date.now();
    expect(expiration(30 * 86_400_000 - 5_000, now)).toBe(30 * 86_400 - 4);
    expect(expiration(40 * 86_400_000, now)).toBe(Math.ceil(now / 1_000) + 40 * 86_400 + 1);
    const c = await cache();
    // Sent as 3456000 seconds, memcached would read a time in 1970: expired at once.
    expect(await c.set('long', 'lived', '40d')).toBe(true);
    expect(await c.get('long')).toBe('lived');
    expect(await c.ttl('long')).toBeGreaterThan(39 * 86_400);
  });

  it('a value over the item size is not stored: set resolves false, the older entry is gone, and a warning says why', async () => {
    const c = await cache();
    expect(await c.set('report', 'small')).toBe(true);

    expect(await c.set('report', Buffer.alloc(2 * 1024 * 1024, 1))).toBe(false);

    expect(await c.get('report')).toBeUndefined();
    expect(logged.join('\n')).toMatch(/"[^"]*:report" .*larger than its item size.*-I/);
    expect(c.stats.errors).toBe(0);
  });
});

describe('clear() and deleteByPattern() across processes (namespace generations)', () => {
  it("a clear in one process is seen by the other's next read, and later writes are seen by both", async () => {
    const [a, b] = await twoProcesses();
    await a.set('k', 'before');
    expect(await b.get('k')).toBe('before');

    await b.clear();

    expect(await a.get('k')).toBeUndefined();
    await a.set('k', 'after');
    expect(await b.get('k')).toBe('after');
  });

  it('a delete, an invalidation or an increment from a process that has not seen the clear yet still reaches the new entries', async () => {
    const [a, b] = await twoProcesses();
    await a.set('warm', 1); // a knows the current generation
    await b.clear();
    await b.setMany([
      { key: 'doomed', value: 'new' },
      { key: 'tagged', value: 'new', tags: ['x'] },
    ]);
    await b.increment('n', 5);

    expect(await a.delete('doomed')).toBe(true);
    expect(await b.get('doomed')).toBeUndefined();

    const [c, d] = await twoProcesses();
    await c.set('warm', 1);
    await d.clear();
    await d.set('tagged', 'new', { tags: ['x'] });
    await c.invalidateTags(['x']);
    expect(await d.get('tagged')).toBeUndefined();

    const [e, f] = await twoProcesses();
    await e.set('warm', 1);
    await f.clear();
    await f.increment('n', 5);
    expect(await e.increment('n')).toBe(6);
  });

  it('a generation record evicted by memcached makes the namespace look cleared, and the cache goes on', async () => {
    const c = await cache();
    await c.set('k', 'v');
    await raw.delete(`${c.prefix}%g`);

    expect(await c.get('k')).toBeUndefined();
    expect(await c.set('k', 'again')).toBe(true);
    expect(await c.get('k')).toBe('again');
  });

  it("deleteByPattern clears this cache's whole namespace (only it), resolves 0 and logs why", async () => {
    const c = await cache();
    const neighbour = await cache({ prefix: `${c.prefix}-neighbour` });
    await c.setMany([
      { key: 'user:1', value: 1 },
      { key: 'other', value: 2 },
    ]);
    await neighbour.set('user:1', 'theirs');

    expect(await c.deleteByPattern('user:*')).toBe(0);

    expect(await c.getMany(['user:1', 'other'])).toEqual([undefined, undefined]);
    expect(await neighbour.get('user:1')).toBe('theirs');
    expect(logged.join('\n')).toMatch(/cannot list its keys/);
  });
});

describe('counters and tags across processes', () => {
  it('increments from two processes at once all count (compare-and-swap)', async () => {
    const [a, b] = await twoProcesses();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).increment('hits')),
    );

    expect(await a.get('hits')).toBe(200);
    expect([...results].sort((x, y) => x! - y!)).toEqual(
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
  });

  it('a counter expires by the cache clock: once its ttl has passed it starts again at 0', async () => {
    const time = { now: 1_700_000_000_000 };
    const c = await cache({ clock: { now: () => time.now } });
    expect(await c.increment('window', 1, 10)).toBe(1);
    expect(await c.decrement('window', 3)).toBe(-2);
    time.now += 10_000;

    expect(await c.get('window')).toBeUndefined();
    expect(await c.increment('window')).toBe(1);
  });

  it('an invalidation in one process ends the tagged entries the other wrote', async () => {
    const [a, b] = await twoProcesses();
    await a.set('p', 'v', { tags: ['product:1'] });
    await b.invalidateTags(['product:1']);
    expect(await a.get('p')).toBeUndefined();
  });
});

describe('several servers', () => {
  const second = usePrivateMemcached();

  it('keys spread over the servers; a clear reaches all of them; with one server down the others still serve their keys', async () => {
    const servers = [memcached.server.servers, second.server.servers];
    const c = await cache({ memcached: { servers, commandTimeout: 200, connectTimeout: 200 } });
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    await c.setMany(keys.map((key) => ({ key, value: key })));
    expect(await c.getMany(keys)).toEqual(keys);

    await c.clear();
    expect(await c.getMany(keys)).toEqual(keys.map(() => undefined));

    await c.setMany(keys.map((key) => ({ key, value: key })));
    await second.server.kill();
    // One get each: a getMany fails open as a whole when one of its reads fails.
    const values = await Promise.all(keys.map((key) => c.get(key)));
    const served = values.filter((value) => value !== undefined);
    await second.server.restart();
    // Each server holds some keys (memjs hashes them); the generation is known, so a check that
    // fails on the dead server keeps the reads of the live one.
    expect(served.length).toBeGreaterThan(0);
    expect(served.length).toBeLessThan(keys.length);
  });
});
