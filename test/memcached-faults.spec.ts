import { Logger } from '@nestjs/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type MemcachedDriver, MemcachedCache } from '../lib/stores/memcached.cache.js';
import { startMemcachedServer, type MemcachedServerHandle } from './support/memcached-server.js';
import { freePort } from './support/redis-server.js';

/**
 * Memcached faults the cache must survive, driven with real memcached processes: down at boot,
 * killed under load, frozen (SIGSTOP), restarted, and close() meanwhile. Each describe starts its
 * own server, because it kills or freezes it.
 *
 * The bounds are on hanging, not performance: with commandTimeout 200 ms a call must settle well
 * under SETTLE_MS even on a slow CI machine.
 */
const COMMAND_TIMEOUT_MS = 200;
const SETTLE_MS = 1_500;
const CLOSE_MS = 2_500;
const RECOVERY_MS = 10_000;

// Nothing escapes as an unhandled rejection or an uncaught exception, and nothing reaches the
// console (memjs logs to console.log by default), during the tests or between them.
const escaped: unknown[] = [];
const onEscape = (error: unknown) => void escaped.push(error);
const realConsole = { log: console.log, error: console.error, warn: console.warn };
beforeAll(() => {
  process.on('unhandledRejection', onEscape);
  process.on('uncaughtException', onEscape);
  for (const name of ['log', 'error', 'warn'] as const) {
    console[name] = (...args: unknown[]) => void escaped.push(`console.${name}: ${args.join(' ')}`);
  }
});
afterAll(() => {
  process.off('unhandledRejection', onEscape);
  process.off('uncaughtException', onEscape);
  Object.assign(console, realConsole);
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

function createCache(servers: string, password?: string): Promise<MemcachedCache> {
  return MemcachedCache.create({
    prefix: 'faults',
    memcached: {
      servers,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: COMMAND_TIMEOUT_MS,
      ...(password ? { username: 'cache', password } : {}),
    },
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
async function everyCallFailsOpen(cache: MemcachedCache): Promise<void> {
  const calls = {
    get: [() => cache.get('k'), undefined],
    set: [() => cache.set('k', 'v'), false],
    has: [() => cache.has('k'), false],
    delete: [() => cache.delete('k'), false],
    ttl: [() => cache.ttl('k'), undefined],
    getMany: [() => cache.getMany(['k', 'l']), [undefined, undefined]],
    setMany: [() => cache.setMany([{ key: 'k', value: 1 }]), false],
    deleteMany: [() => cache.deleteMany(['k', 'l']), 0],
    increment: [() => cache.increment('n'), undefined],
    tagged: [() => cache.set('t', 1, { tags: ['x'] }), false],
    invalidateTags: [() => cache.invalidateTags(['x']), undefined],
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
async function worksAgain(cache: MemcachedCache, key: string): Promise<number> {
  const start = Date.now();
  while (!(await cache.set(key, 'back'))) {
    if (Date.now() - start > RECOVERY_MS)
      throw new Error(`the cache did not recover within ${RECOVERY_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(await cache.get(key)).toBe('back');
  return Date.now() - start;
}

/** What waits in the driver and in memjs: increments per key, then requests of each server. */
function queued(cache: MemcachedCache): number {
  const driver = (cache as unknown as { memcached: MemcachedDriver }).memcached;
  let requests = 0;
  for (const server of cache.client.servers) {
    const memjs = server as unknown as Record<
      'responseCallbacks' | 'errorCallbacks' | 'requestTimeouts' | 'connectCallbacks',
      object
    >;
    requests += Math.max(
      Object.keys(memjs.responseCallbacks).length,
      Object.keys(memjs.errorCallbacks).length,
      Object.keys(memjs.requestTimeouts).length,
      Object.keys(memjs.connectCallbacks).length,
    );
  }
  return driver.pendingCounters() + requests;
}

const openSockets = () =>
  process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap').length;
const handles = () =>
  process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap' || name === 'Timeout')
    .length;
/**
 * Sockets and timers once closed sockets are released (a tick later) and BaseCache's own deadline
 * timer has seen that no call is pending (within a quarter of operationTimeout).
 */
async function handlesAfterClose(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 600));
  return handles();
}

describe('memcached is down when the app boots', () => {
  let port: number;
  let cache: MemcachedCache;
  let server: MemcachedServerHandle | undefined;
  beforeAll(async () => {
    port = await freePort(); // nothing listens there yet
  });
  afterAll(async () => {
    await cache?.close();
    await server?.stop();
  });

  it('create() resolves at once, and calls fail open within the bound, logging the outage once and never the password', async () => {
    const created = await timed(() => createCache(`127.0.0.1:${port}`, 's3cret-pass'));
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
    expect(logged.join('\n')).not.toContain('s3cret-pass');
  });

  it('hits resume by themselves once memcached starts on that port', async () => {
    server = await startMemcachedServer({ port });

    await worksAgain(cache, 'after-boot');
  });
});

describe('memcached is killed (SIGKILL) under load, then restarted', () => {
  let server: MemcachedServerHandle;
  let cache: MemcachedCache;
  beforeAll(async () => {
    server = await startMemcachedServer();
    cache = await createCache(server.servers);
  });
  afterAll(async () => {
    await cache.close();
    await server.stop();
  });

  it('calls in flight when it dies, and calls made while it is dead, settle within the bound and fail open', async () => {
    expect(await cache.set('warm', 'hit')).toBe(true);
    const inFlight = Array.from({ length: 200 }, (_, i) =>
      timed(() =>
        i % 3 === 0
          ? cache.get('warm')
          : i % 3 === 1
            ? cache.set(`load-${i}`, i)
            : cache.increment('hot'),
      ),
    );

    await server.kill();
    const settled = await Promise.all(inFlight);
    await everyCallFailsOpen(cache);

    for (const { value, ms } of settled) {
      expect(
        [true, false, 'hit', undefined].includes(value as never) || typeof value === 'number',
      ).toBe(true);
      expect(ms).toBeLessThan(SETTLE_MS);
    }
  });

  it('reads and writes work again by themselves within a few seconds of the restart; the entries from before are gone', async () => {
    await server.restart();

    expect(await worksAgain(cache, 'after-restart')).toBeLessThan(3_000);
    expect(await cache.get('warm')).toBeUndefined();
    expect(await cache.increment('hot')).toBe(1);
  });
});

describe('memcached freezes (SIGSTOP: sockets stay open, nothing answers)', () => {
  let server: MemcachedServerHandle;
  let cache: MemcachedCache;
  beforeAll(async () => {
    server = await startMemcachedServer();
    cache = await createCache(server.servers);
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

  it('under steady load while frozen, sockets and pending calls stay bounded', async () => {
    let maxSockets = 0;
    let maxQueued = 0;
    let slowestWave = 0;
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      const started = performance.now();
      // 50 concurrent callers on a hot key and on others, wave after wave.
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          i % 2 ? cache.get('warm') : cache.set(`k${i}`, i).then(() => cache.increment('n')),
        ),
      );
      maxSockets = Math.max(maxSockets, openSockets());
      maxQueued = Math.max(maxQueued, queued(cache));
      slowestWave = Math.max(slowestWave, performance.now() - started);
    }

    expect(maxSockets).toBeLessThanOrEqual(3); // one connection, replaced after each timeout
    expect(slowestWave).toBeLessThan(SETTLE_MS);
    expect(cache.inFlight()).toEqual({ reads: 0, flights: 0 });
    // At most the generation checks of the last wave (its other requests failed with it).
    expect(maxQueued).toBeLessThanOrEqual(2);
  });

  it('works again after SIGCONT, on one connection (none orphaned by the timeouts)', async () => {
    server.resume();

    await worksAgain(cache, 'after-freeze');
    expect(openSockets()).toBe(1);
  });
});

describe('close() while memcached is unavailable', () => {
  it('resolves within the bound with memcached down, is idempotent, and leaves no socket or timer', async () => {
    const before = handles();
    const cache = await createCache(`127.0.0.1:${await freePort()}`);
    await cache.get('k');

    const closed = await timed(() => Promise.all([cache.close(), cache.close()]));

    expect(closed.ms).toBeLessThan(CLOSE_MS);
    expect(await handlesAfterClose()).toBeLessThanOrEqual(before);
  });

  it('resolves within the bound with memcached frozen, and leaves no socket or timer', async () => {
    const server = await startMemcachedServer();
    try {
      const before = handles();
      const cache = await createCache(server.servers);
      expect(await cache.set('k', 'v')).toBe(true);
      await server.freeze();
      const pending = cache.get('k'); // a request in flight when close() starts

      const closed = await timed(() => cache.close());

      expect(closed.ms).toBeLessThan(CLOSE_MS);
      expect(await pending).toBeUndefined();
      expect(await handlesAfterClose()).toBeLessThanOrEqual(before);
    } finally {
      await server.stop();
    }
  });

  it('a write made just before close() is answered before the connection goes', async () => {
    const server = await startMemcachedServer();
    try {
      const cache = await createCache(server.servers);
      const written = cache.set('last', 'word');
      await cache.close();
      expect(await written).toBe(true);

      const reader = await createCache(server.servers);
      expect(await reader.get('last')).toBe('word');
      await reader.close();
    } finally {
      await server.stop();
    }
  });
});
