import { createServer, type Server, type Socket } from 'node:net';
import { Logger } from '@nestjs/common';
import memjs from 'memjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { CacheConfigError } from '../lib/errors.js';
import { type MemjsClient, loadMemjs } from '../lib/stores/memcached-connection.js';
import { planConnection } from '../lib/stores/memcached-connection.js';
import { expiration, memcachedKey } from '../lib/stores/memcached-format.js';
import { type MemcachedDriver, MemcachedCache } from '../lib/stores/memcached.cache.js';
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
    memcached:
      options.memcached && 'client' in options.memcached
        ? options.memcached
        : { servers: memcached.server.servers, ...options.memcached },
  });
  made.push(made1);
  return made1;
}

/** The driver under a cache, for what only it can tell. */
const driverOf = (c: MemcachedCache) => (c as unknown as { memcached: MemcachedDriver }).memcached;

type Perform = MemjsClient['perform'];
/**
 * Puts `wrap` between the cache's driver and memjs: it gets each request (key, opcode, request
 * id) and the real perform. Returns the undo.
 */
function intercept(
  c: MemcachedCache,
  wrap: (key: string, opcode: number, forward: () => void, answer: Parameters<Perform>[3]) => void,
): () => void {
  const client = c.client;
  const real = client.perform.bind(client);
  client.perform = (key, request, seq, callback, retries) =>
    wrap(key, request[1]!, () => real(key, request, seq, callback, retries), callback);
  return () => {
    client.perform = real;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
    [
      'a memjs connection string as the whole option',
      'cache:hunter2@10.0.0.1:11211',
      /"memcached": a string/,
    ],
    [
      'client: a connection string',
      { client: 'cache:hunter2@10.0.0.1:11211' },
      /"memcached\.client"/,
    ],
    ['password: not a string', { username: 'me', password: ['hunter2'] }, /"memcached\.password"/],
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
    ['maxValueBytes 0', { maxValueBytes: 0 }, /"memcached\.maxValueBytes".*default 1048576/],
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

  it('a memjs without the internals the driver relies on → CacheConfigError naming memjs ~1.3.2', async () => {
    const older = { Client: class {}, Server: class {}, Utils: { makeRequestBuffer() {} } };
    await expect(loadMemjs(() => Promise.resolve(older))).rejects.toThrow(CacheConfigError);
    await expect(loadMemjs(() => Promise.resolve(older))).rejects.toThrow(
      /memjs ~1\.3\.2.*Client\.prototype\.perform.*npm install memjs@~1\.3\.2/,
    );
    await expect(loadMemjs()).resolves.toBeDefined();
  });

  it('credentials come from the options only, never from MEMCACHIER_* / MEMCACHE_* variables', async () => {
    const names = [
      'MEMCACHIER_USERNAME',
      'MEMCACHIER_PASSWORD',
      'MEMCACHE_USERNAME',
      'MEMCACHE_PASSWORD',
    ];
    for (const name of names) process.env[name] = `from-env-${name}`;
    try {
      const c = await cache();
      for (const server of c.client.servers) {
        const { username, password } = server as unknown as {
          username?: string;
          password?: string;
        };
        expect([username, password]).toEqual([undefined, undefined]);
      }
      expect(await c.set('k', 'v')).toBe(true);
      const named = await cache({ memcached: { username: 'me', password: 'mine' } });
      expect(named.client.servers[0]).toMatchObject({ username: 'me', password: 'mine' });
    } finally {
      for (const name of names) delete process.env[name];
    }
  });

  it('{ client }: the cache uses your client and never closes it', async () => {
    const client = memjs.Client.create(memcached.server.servers, { logger: { log() {} } });
    try {
      const mine = await cache({ memcached: { client: client as unknown as MemjsClient } });
      expect(mine.client).toBe(client);
      expect(await mine.set('k', 'v')).toBe(true);
      expect(await mine.get('k')).toBe('v');

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

  it('a value over maxValueBytes is refused here: set resolves false, the older entry (which memcached keeps) is removed, and a warning says why', async () => {
    const c = await cache();
    expect(await c.set('report', 'small')).toBe(true);
    let sent = 0;
    intercept(c, (key, opcode, forward) => {
      if (key.endsWith(':report') && opcode === 0x01) sent += 1;
      forward();
    });

    // Over the default 1 MiB; memcached never sees it, so only the driver can remove 'small'.
    expect(await c.set('report', Buffer.alloc(1024 * 1024, 1))).toBe(false);

    expect(sent).toBe(0);
    expect(await c.get('report')).toBeUndefined();
    expect(logged.join('\n')).toMatch(/"[^"]*:report" .*larger than memcached\.maxValueBytes/);
    expect(c.stats.errors).toBe(0);
  });

  it('a value under maxValueBytes that memcached refuses (over -I) is not stored either, with a warning', async () => {
    const c = await cache({ memcached: { maxValueBytes: 4 * 1024 * 1024 } });
    expect(await c.set('report', 'small')).toBe(true);

    expect(await c.set('report', Buffer.alloc(2 * 1024 * 1024, 1))).toBe(false);

    expect(await c.get('report')).toBeUndefined();
    expect(logged.join('\n')).toMatch(/"[^"]*:report" .*larger than memcached's item size.*-I/);
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
    await b.set('doomed', 'new');

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

  it('a set or an increment in flight when clear() is called here is cleared, as with memory', async () => {
    const c = await cache();
    await c.set('warm', 1);

    const set = c.set('k', 'v');
    const counted = c.increment('n', 5);
    await c.clear();
    await Promise.all([set, counted]);

    expect(await c.get('k')).toBeUndefined();
    expect(await c.get('n')).toBeUndefined();
  });

  it('a tag scope generation that is lost (evicted, a restarted server) never brings an invalidated entry back', async () => {
    const [a, b] = await twoProcesses();
    await a.set('p', 'v', { tags: ['product:1'] });
    await b.invalidateTags(['product:1']);

    await raw.delete(`${a.prefix}%g%t`);

    expect(await a.get('p')).toBeUndefined();
    expect(await b.get('p')).toBeUndefined();
    expect(await a.get('p')).toBeUndefined();
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

  it('an update that keeps losing its compare-and-swap is given up after 16 tries, logged as contended', async () => {
    const c = await cache();
    await c.set('warm', 1);
    let writes = 0;
    // Another client wins every write: EXISTS for a SET with its CAS token, NOT_STORED for an ADD.
    intercept(c, (key, opcode, forward, answer) => {
      if (!key.endsWith(':hot') || (opcode !== 0x01 && opcode !== 0x02)) return forward();
      writes += 1;
      const header = { status: opcode === 0x01 ? 0x02 : 0x05, cas: Buffer.alloc(8) };
      answer?.(null, { header, val: Buffer.alloc(0), extras: Buffer.alloc(0) });
    });

    expect(await c.increment('hot')).toBeUndefined();

    expect(writes).toBe(16);
    expect(c.stats.errors).toBe(1);
    expect(logged.join('\n')).toMatch(/changed by other clients 16 times/);
  });

  it('an increment whose round trips outlast operationTimeout sends no late write: reported failed, never applied', async () => {
    const c = await cache({
      operationTimeout: '1s',
      memcached: { commandTimeout: 300, connectTimeout: 300 },
    });
    await c.set('warm', 1);
    // 450 ms on the way out of every request: the read answers after the last moment (1 s − 600 ms)
    // a write may be sent so that memcached answers it within operationTimeout.
    const undo = intercept(c, (_key, _opcode, forward) => void setTimeout(forward, 450));

    expect(await c.increment('n')).toBeUndefined();
    await sleep(1_000); // anything still on its way has landed
    undo();

    expect(c.stats.errors).toBe(1);
    expect(await c.get('n')).toBeUndefined();
  });

  it('an increment that never settles holds up the next ones of its key for one request bound only', async () => {
    const c = await cache({
      operationTimeout: '500ms',
      memcached: { commandTimeout: 100, connectTimeout: 100 },
    });
    await c.set('warm', 1);
    const undo = intercept(c, (key, _opcode, forward) => {
      if (!key.endsWith(':stuck')) forward(); // no answer, ever
    });
    const stuck = c.increment('stuck');
    const queued = [c.increment('stuck'), c.increment('stuck')];

    expect(await Promise.all([stuck, ...queued])).toEqual([undefined, undefined, undefined]);
    undo();

    expect(await c.increment('stuck')).toBe(1);
    expect(await c.increment('stuck')).toBe(2);
    expect(driverOf(c).pendingCounters()).toBe(0);
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
  const bothServers = () => [memcached.server.servers, second.server.servers];
  const fast = { commandTimeout: 200, connectTimeout: 200 };
  /** The private memcached whose server holds the entries' generation record of `c`. */
  const recordHolder = (c: MemcachedCache) => {
    const client = c.client as unknown as { server(key: string): { port: number } };
    return client.server(`${c.prefix}%g`).port === memcached.server.port ? memcached : second;
  };

  it('keys spread over the servers, and a clear reaches all of them', async () => {
    const c = await cache({ memcached: { servers: bothServers(), ...fast } });
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    await c.setMany(keys.map((key) => ({ key, value: key })));
    expect(await c.getMany(keys)).toEqual(keys);

    await c.clear();
    expect(await c.getMany(keys)).toEqual(keys.map(() => undefined));
  });

  it('with the server of the generation record down, every read is a miss (a clear may have been missed); with another one down, the rest are served', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    // One get each: a getMany fails open as a whole when one of its reads fails.
    const readAll = (c: MemcachedCache) => Promise.all(keys.map((key) => c.get(key)));
    for (const downIsHolder of [true, false]) {
      const c = await cache({ memcached: { servers: bothServers(), ...fast } });
      await c.setMany(keys.map((key) => ({ key, value: key })));
      const holder = recordHolder(c);
      const down = downIsHolder ? holder : holder === memcached ? second : memcached;
      await down.server.kill();
      const served = (await readAll(c)).filter((value) => value !== undefined);
      await down.server.restart();

      if (downIsHolder) expect(served).toEqual([]);
      else {
        // Each server holds some keys (memjs hashes them).
        expect(served.length).toBeGreaterThan(0);
        expect(served.length).toBeLessThan(keys.length);
      }
    }
  });
});

describe("memjs' quirks", () => {
  let silent: Server;
  const held: Socket[] = [];
  /** A TCP server that accepts connections and never answers. */
  let silentServers: string;
  beforeAll(async () => {
    silent = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentServers = `127.0.0.1:${(silent.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  it('requests go on past 2^31 of them (memjs would wrap its request id to a negative number)', async () => {
    const c = await cache();
    c.client.seq = 2 ** 31 - 3;
    for (let i = 0; i < 5; i += 1) {
      expect(await c.set(`k${i}`, i)).toBe(true);
      expect(await c.get(`k${i}`)).toBe(i);
    }
    expect(c.client.seq).toBeGreaterThan(0);
    expect(c.client.seq).toBeLessThan(100);
  });

  it('a connection failed (a timeout) while a new one opens leaves no socket behind', async () => {
    const openSockets = () =>
      process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap').length;
    const c = await cache();
    expect(await c.set('warm', 1)).toBe(true);
    const before = openSockets();

    // What a request timeout does; the next request opens a connection before the failed one
    // has emitted 'close' (memjs' handler of which then forgot the new connection).
    (c.client.servers[0] as unknown as { error(reason: unknown): void }).error(
      new Error('socket timed out waiting on response.'),
    );
    expect(await c.get('warm')).toBe(1);
    await sleep(20);
    expect(await c.get('warm')).toBe(1);
    await sleep(20);

    expect(openSockets()).toBe(before);
  });

  it('a refused SASL authentication is logged as such, not as "undefined"', async () => {
    const time = { now: 1_700_000_000_000 };
    const c = await cache({
      clock: { now: () => time.now },
      memcached: { servers: silentServers, commandTimeout: 200, connectTimeout: 200 },
    });
    time.now += 60_000; // past the log's rate limit
    logged = [];
    const read = c.get('k');
    await sleep(20); // the request is written
    // What memjs does when memcached answers the authentication with "auth error".
    (c.client.servers[0] as unknown as { error(reason: unknown): void }).error(
      'Memcached server authentication failed!',
    );

    expect(await read).toBeUndefined();
    expect(logged.join('\n')).toMatch(/with error - Memcached server authentication failed!/);
    expect(logged.join('\n')).not.toMatch(/undefined/);
  });

  it('a request failed by close() logs nothing', async () => {
    const time = { now: 1_700_000_000_000 };
    const c = await cache({
      clock: { now: () => time.now },
      memcached: { servers: silentServers, commandTimeout: 1_000, connectTimeout: 200 },
    });
    time.now += 60_000;
    logged = [];
    const read = c.get('k');
    await sleep(20);

    await c.close();

    expect(await read).toBeUndefined();
    expect(logged.join('\n')).not.toMatch(/cannot use memcached/);
  });
});
