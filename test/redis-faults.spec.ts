import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { RedisCache } from '../lib/stores/redis.cache.js';
import { freePort, startRedisServer, type RedisServerHandle } from './support/redis-server.js';

/**
 * Redis faults the cache must survive (F1-F12 of the reliability checklist). Each describe
 * starts its own redis-server, because it kills or freezes it.
 *
 * The bounds are on hanging, not performance: with commandTimeout 200 ms a call must settle
 * well under SETTLE_MS even on a slow CI machine, where ioredis defaults would wait a minute.
 */
const COMMAND_TIMEOUT_MS = 200;
const SETTLE_MS = 1_500;
const CLOSE_MS = 2_500;
const RECOVERY_MS = 10_000;

// F12: nothing escapes as an unhandled rejection, an uncaught exception or an unhandled 'error'
// event (ioredis prints "[ioredis] Unhandled error event" with console.error when nobody listens),
// during the tests or between them.
const escaped: unknown[] = [];
const onEscape = (error: unknown) => void escaped.push(error);
const realConsoleError = console.error;
beforeAll(() => {
  process.on('unhandledRejection', onEscape);
  process.on('uncaughtException', onEscape);
  console.error = (...args: unknown[]) => void escaped.push(args.join(' '));
});
afterAll(() => {
  process.off('unhandledRejection', onEscape);
  process.off('uncaughtException', onEscape);
  console.error = realConsoleError;
  expect(escaped.splice(0)).toEqual([]);
});

let logged: string[];
beforeEach(() => {
  logged = [];
  const capture = (message: unknown) => void logged.push(String(message));
  vi.spyOn(Logger.prototype, 'error').mockImplementation(capture);
  vi.spyOn(Logger.prototype, 'warn').mockImplementation(capture);
});
afterEach(() => {
  vi.restoreAllMocks();
  expect(escaped.splice(0)).toEqual([]);
});

function createCache(url: string): Promise<RedisCache> {
  return RedisCache.create({
    prefix: 'faults',
    redis: { url, commandTimeout: COMMAND_TIMEOUT_MS },
  });
}

/** Runs `call`, resolving its outcome and how long it took to settle. */
async function timed<T>(call: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await call();
  return { value, ms: performance.now() - start };
}

/**
 * One call of each kind, all issued at once (before the circuit breaker can open), each timed.
 * The expected values are what failing open means for each of them.
 */
async function everyCallFailsOpen(cache: RedisCache): Promise<void> {
  const calls = {
    get: [() => cache.get('k'), undefined],
    set: [() => cache.set('k', 'v'), false],
    has: [() => cache.has('k'), false],
    delete: [() => cache.delete('k'), false],
    ttl: [() => cache.ttl('k'), undefined],
    getMany: [() => cache.getMany(['k', 'l']), [undefined, undefined]],
    setMany: [() => cache.setMany([{ key: 'k', value: 1 }]), false],
    deleteMany: [() => cache.deleteMany(['k', 'l']), 0],
    clear: [() => cache.clear(), undefined],
    getOrSet: [() => cache.getOrSet('k', () => 'from the factory'), 'from the factory'],
  } satisfies Record<string, [() => Promise<unknown>, unknown]>;

  const outcomes = await Promise.all(
    Object.entries(calls).map(async ([name, [call, expected]]) => ({
      name,
      expected,
      ...(await timed(call)),
    })),
  );

  for (const { name, expected, value, ms } of outcomes) {
    expect(value, name).toEqual(expected);
    expect(ms, `${name} settled in ${Math.round(ms)} ms`).toBeLessThan(SETTLE_MS);
  }
}

/** Polls until a write and a read go through again; proves the client recovered by itself. */
async function worksAgain(cache: RedisCache, key: string): Promise<void> {
  const deadline = Date.now() + RECOVERY_MS;
  while (!(await cache.set(key, 'back'))) {
    if (Date.now() > deadline)
      throw new Error(`the cache did not recover within ${RECOVERY_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(await cache.get(key)).toBe('back');
}

describe('F1: the app boots while Redis is down', () => {
  let port: number;
  let cache: RedisCache;
  let server: RedisServerHandle | undefined;
  beforeAll(async () => {
    port = await freePort(); // nothing listens there yet
  });
  afterAll(async () => {
    await cache?.close();
    await server?.stop();
  });

  it('create() resolves at once, and calls fail open within the bound, logging the outage once', async () => {
    const created = await timed(() => createCache(`redis://127.0.0.1:${port}`));
    cache = created.value;
    expect(created.ms).toBeLessThan(SETTLE_MS);

    await everyCallFailsOpen(cache);
    for (let i = 0; i < 20; i += 1) await cache.get('k');

    // Rate-limited: one line for the outage, not one per failed call; and one for the breaker's
    // opening, however often it reopened meanwhile.
    const [breaker, outage] = [true, false].map((opening) =>
      logged.filter((line) => /circuit breaker opened/.test(line) === opening),
    );
    expect(outage).toHaveLength(1);
    expect(outage[0]).toContain(`127.0.0.1:${port}`);
    expect(breaker).toHaveLength(1);
  });

  it('hits resume by themselves once Redis starts on that port', async () => {
    server = await startRedisServer({ port });

    await worksAgain(cache, 'after-boot');
  });
});

describe('F2: Redis is killed (SIGKILL) under load', () => {
  let server: RedisServerHandle;
  let cache: RedisCache;
  beforeAll(async () => {
    server = await startRedisServer();
    cache = await createCache(server.url);
  });
  afterAll(async () => {
    await cache.close();
    await server.stop();
  });

  it('calls in flight when it dies, and calls made while it is dead, settle within the bound and fail open', async () => {
    expect(await cache.set('warm', 'hit')).toBe(true);
    const inFlight = Array.from({ length: 200 }, (_, i) =>
      timed(() => (i % 2 ? cache.get('warm') : cache.set(`load-${i}`, i))),
    );

    await server.kill();
    const settled = await Promise.all(inFlight);
    await everyCallFailsOpen(cache);

    for (const { value, ms } of settled) {
      expect([true, false, 'hit', undefined]).toContain(value);
      expect(ms).toBeLessThan(SETTLE_MS);
    }
  });

  it('reads and writes work again by themselves after Redis restarts', async () => {
    await server.restart();

    await worksAgain(cache, 'after-restart');
  });
});

describe('F3: Redis freezes (SIGSTOP: sockets stay open, nothing answers)', () => {
  let server: RedisServerHandle;
  let cache: RedisCache;
  beforeAll(async () => {
    server = await startRedisServer();
    cache = await createCache(server.url);
  });
  afterAll(async () => {
    server.resume();
    await cache.close();
    await server.stop();
  });

  it('every call settles within the bound and fails open while it is frozen', async () => {
    expect(await cache.set('warm', 'hit')).toBe(true);

    await server.freeze();

    await everyCallFailsOpen(cache);
  });

  it('works again after SIGCONT', async () => {
    server.resume();

    await worksAgain(cache, 'after-freeze');
  });
});

describe('F5: a write reported as failed never lands later', () => {
  let server: RedisServerHandle;
  let cache: RedisCache;
  let other: Redis;
  beforeAll(async () => {
    server = await startRedisServer();
    cache = await createCache(server.url);
    other = new Redis(server.url);
  });
  afterAll(async () => {
    await other.quit();
    await cache.close();
    await server.stop();
  });

  it('a set() made while the connection is down resolves false and is not replayed on reconnection', async () => {
    // Data that outlives the dropped connection: the server was not wiped in between.
    await other.set('earlier', 'kept');
    const connectionId = await cache.client.client('ID');
    const down = new Promise((resolve) => cache.client.once('reconnecting', resolve));
    const backUp = new Promise((resolve) => cache.client.once('ready', resolve));

    await other.client('KILL', 'ID', String(connectionId));
    await down;
    // With ioredis' offline queue this write would wait and be sent once the client reconnects.
    const failedWrite = await cache.set('written-while-down', 'must not land');
    await backUp;
    await cache.client.ping(); // anything replayed at reconnection has been executed once this answers

    expect(failedWrite).toBe(false);
    expect(await other.exists('faults:written-while-down')).toBe(0);
    expect(await other.get('earlier')).toBe('kept');
  });
});

describe('F11: close() while Redis is unavailable', () => {
  const handles = () =>
    process
      .getActiveResourcesInfo()
      .filter((name) => name === 'TCPSocketWrap' || name === 'Timeout').length;

  it('resolves within about 2 s with Redis down, is idempotent, and leaves no socket or timer', async () => {
    const before = handles();
    const cache = await createCache(`redis://127.0.0.1:${await freePort()}`);
    await cache.get('k');

    const closed = await timed(() => Promise.all([cache.close(), cache.close()]));

    expect(closed.ms).toBeLessThan(CLOSE_MS);
    expect(handles()).toBeLessThanOrEqual(before);
  });

  it('resolves within about 2 s with Redis frozen, and leaves no socket or timer', async () => {
    const server = await startRedisServer();
    try {
      const before = handles();
      const cache = await createCache(server.url);
      expect(await cache.set('k', 'v')).toBe(true);
      await server.freeze();

      const closed = await timed(() => cache.close());

      expect(closed.ms).toBeLessThan(CLOSE_MS);
      expect(handles()).toBeLessThanOrEqual(before);
    } finally {
      await server.stop();
    }
  });
});
