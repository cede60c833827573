import 'reflect-metadata';
import { inspect } from 'node:util';
import { ConsoleLogger, type INestApplication, Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { BaseCache, CacheModule, type CacheModuleOptions } from '../lib/index.js';
import { sleep } from './support/server-process.js';
import { startRedisServer, type RedisServerHandle } from './support/redis-server.js';

/**
 * Logs never leak: whatever Redis does (killed, frozen, restarted, refusing the credentials),
 * no line logged while the cache works holds the password of its URL or a value it stores, and
 * the lines do say what went wrong (so the capture is not empty).
 */
const PASSWORD = 's3cret-pw';
const VALUE = 'VALUE-SHOULD-NOT-BE-LOGGED';
/** Its 6-character pieces: a line quoting part of a value leaks too. */
const VALUE_PIECES = Array.from({ length: VALUE.length - 5 }, (_, i) => VALUE.slice(i, i + 6));

const LOGGER_METHODS = ['log', 'error', 'warn', 'debug', 'verbose', 'fatal'] as const;
const CONSOLE_METHODS = ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const;

/** A logged argument as a reader of the log would see it: objects in full, hidden fields too. */
const asText = (arg: unknown) =>
  typeof arg === 'string' ? arg : inspect(arg, { depth: 8, showHidden: true });

let lines: string[];
beforeEach(() => {
  lines = [];
  const keep = (...args: unknown[]) => void lines.push(args.map(asText).join(' '));
  // Every way a line reaches the log: Nest's Logger (instance and static), a ConsoleLogger used
  // directly, the console, and anything written to stdout or stderr.
  for (const method of LOGGER_METHODS) {
    vi.spyOn(Logger.prototype, method).mockImplementation(keep);
    vi.spyOn(Logger, method).mockImplementation(keep);
    vi.spyOn(ConsoleLogger.prototype, method).mockImplementation(keep);
  }
  for (const method of CONSOLE_METHODS) vi.spyOn(console, method).mockImplementation(keep);
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      keep(String(chunk));
      return true;
    });
  }
});
afterEach(() => {
  vi.restoreAllMocks();
});

/**
 * The cache's clock, which its log rate limit reads (one report per 10 s): each phase moves it
 * on, so that every phase gets its lines logged, not only the first outage.
 */
let offset = 0;
const clock = { now: () => Date.now() + offset };
const nextLogWindow = () => void (offset += 11_000);

async function boot(
  url: string,
  more: Pick<CacheModuleOptions, 'serializer'> = {},
): Promise<{ app: INestApplication; cache: BaseCache }> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      CacheModule.forRoot({
        backend: 'redis',
        redis: { url, commandTimeout: 100, connectTimeout: 300 },
        operationTimeout: '300ms',
        breaker: { threshold: 3, cooldown: '100ms' },
        clock,
        prefix: 'logs',
        ttl: '1h',
        ...more,
      }),
    ],
  }).compile();
  const app = moduleRef.createNestApplication();
  await app.init();
  return { app, cache: app.get(BaseCache) };
}

/** Concurrent calls of every kind, on a hot key, with the distinctive value in every write. */
async function workload(cache: BaseCache): Promise<void> {
  nextLogWindow();
  await Promise.all([
    ...Array.from({ length: 10 }, () => cache.get('secret')),
    ...Array.from({ length: 5 }, () => cache.set('secret', { value: VALUE }, { tags: ['t'] })),
    ...Array.from({ length: 5 }, (_, i) => cache.getOrSet(`hot:${i % 2}`, async () => VALUE)),
    cache.getMany(['secret', 'hot:0']),
    cache.setMany([{ key: 'many', value: VALUE }]),
    cache.has('secret'),
    cache.ttl('secret'),
    cache.increment('counter'),
    cache.delete('hot:1'),
    cache.deleteMany(['many', 'nope']),
    cache.deleteByPattern('hot:*'),
    cache.invalidateTags(['t']),
  ]);
}

/** Until the cache stores and reads again (Redis back, the client reconnected), within 10 s. */
async function recovered(cache: BaseCache): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!((await cache.set('probe', VALUE)) && (await cache.get('probe')) === VALUE)) {
    if (Date.now() > deadline) throw new Error('the cache did not recover within 10 s');
    await sleep(50);
  }
}

/** Until a line matching `pattern` is logged (a client's 'error' event comes when it comes). */
async function logged(pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!lines.some((line) => pattern.test(line))) {
    if (Date.now() > deadline) {
      throw new Error(
        `nothing matching ${pattern} was logged within 5 s; logged:\n${lines.join('\n')}`,
      );
    }
    await sleep(20);
  }
}

/** Kills the server, and waits for the lines saying so: the loss, then a refused reconnection. */
async function killed(server: RedisServerHandle): Promise<void> {
  nextLogWindow();
  await server.kill();
  // A write still in flight may fail first, and hold the client's own report back.
  await logged(/RedisCache (cannot use Redis at 127\.0\.0\.1:\d+|\w+ failed)/);
  nextLogWindow();
  // The client's own report of the lost server: the reset connection, or a refused reconnection
  // (ioredis' reconnection attempts do not always report within the wait on a busy machine).
  await logged(
    /RedisCache cannot use Redis at 127\.0\.0\.1:\d+ \((connect ECONNREFUSED|read ECONNRESET)/,
  );
}

function expectNoLeak(secrets: string[]): void {
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    for (const secret of [...secrets, ...VALUE_PIECES]) expect(line, line).not.toContain(secret);
  }
}

describe('a Redis URL with a password (requirepass)', () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer({ args: ['--requirepass', PASSWORD] });
  });
  afterAll(() => server.stop());

  it('logs outages (killed, restarted, frozen) without the password or a stored value', async () => {
    const { app, cache } = await boot(`redis://:${PASSWORD}@127.0.0.1:${server.port}`);
    try {
      await workload(cache);
      expect(await cache.getOrSet('up', async () => VALUE)).toBe(VALUE);

      await killed(server);
      await workload(cache);
      await workload(cache);
      await server.restart();
      await recovered(cache);
      await workload(cache);

      await server.freeze();
      await workload(cache);
      await workload(cache);
      server.resume();
      await recovered(cache);

      await server.kill('SIGTERM');
      await workload(cache);
    } finally {
      await app.close();
    }
    expectNoLeak([PASSWORD]);
    // The lines name the problems: the refused connection, the timeouts, the breaker.
    const log = lines.join('\n');
    expect(log).toMatch(/RedisCache \w+ failed \(Command timed out\)/);
    expect(log).toMatch(/circuit breaker opened/);
    expect(log).toMatch(/circuit breaker closed/);
  });
});

describe('a Redis URL with a user and a password (an ACL user)', () => {
  const USER = 'cache-user';
  const USER_PASSWORD = 'us3r-acl-pw';
  let server: RedisServerHandle;
  const createUser = async () => {
    const admin = new Redis(server.url);
    await admin.call('ACL', 'SETUSER', USER, 'on', `>${USER_PASSWORD}`, '~*', '&*', '+@all');
    await admin.quit();
  };
  beforeAll(async () => {
    server = await startRedisServer();
    await createUser();
  });
  afterAll(() => server.stop());

  it('logs the outage and the refused credentials (the user gone after a restart) without them', async () => {
    const url = `redis://${USER}:${USER_PASSWORD}@127.0.0.1:${server.port}`;
    const { app, cache } = await boot(url);
    try {
      await workload(cache);
      expect(await cache.getOrSet('up', async () => VALUE)).toBe(VALUE);

      await killed(server);
      await workload(cache);
      // A fresh server without the user: the client's AUTH is refused until it exists again.
      await server.restart();
      nextLogWindow();
      await logged(/WRONGPASS/);
      await workload(cache);
      await workload(cache);
      await createUser();
      await recovered(cache);
      await workload(cache);
    } finally {
      await app.close();
    }
    expectNoLeak([USER_PASSWORD]);
    const log = lines.join('\n');
    expect(log).toMatch(/circuit breaker closed/);
  });
});

describe('credentials Redis refuses', () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer({ args: ['--requirepass', PASSWORD] });
  });
  afterAll(() => server.stop());

  it('a wrong password: logs WRONGPASS, never the password given or the right one', async () => {
    const wrong = 'wr0ng-pw-given';
    const { app, cache } = await boot(`redis://:${wrong}@127.0.0.1:${server.port}`);
    try {
      await workload(cache);
      await workload(cache);
    } finally {
      await app.close();
    }
    expectNoLeak([wrong, PASSWORD]);
    expect(lines.join('\n')).toMatch(/WRONGPASS/);
    expect(lines.join('\n')).toContain('Check the username and password');
  });

  it('no password: logs NOAUTH, never a stored value', async () => {
    const { app, cache } = await boot(`redis://127.0.0.1:${server.port}`);
    try {
      await workload(cache);
      await workload(cache);
    } finally {
      await app.close();
    }
    expectNoLeak([PASSWORD]);
    expect(lines.join('\n')).toMatch(/NOAUTH/);
  });
});

describe('an entry another serializer wrote (a rolling deploy that changes "serializer")', () => {
  let server: RedisServerHandle;
  beforeAll(async () => {
    server = await startRedisServer({ args: ['--requirepass', PASSWORD] });
  });
  afterAll(() => server.stop());

  /** A common serializer of one's own: JSON, whose parse errors quote the start of the input. */
  const json = {
    serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
    deserialize: (bytes: Uint8Array) => JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown,
  };

  /** The line logged for the entry the JSON serializer refused, kept for the known-leak test. */
  let decodeLine: string | undefined;

  it('logs the corrupt entry, naming its key, a miss, without the password or the value', async () => {
    const url = `redis://:${PASSWORD}@127.0.0.1:${server.port}`;
    const writer = await boot(url);
    const reader = await boot(url, { serializer: json });
    try {
      expect(await writer.cache.set('written-before', VALUE)).toBe(true);
      expect(await reader.cache.get('written-before')).toBeUndefined(); // a miss, and removed
    } finally {
      await writer.app.close();
      await reader.app.close();
    }
    decodeLine = lines.find((line) => line.includes('"logs:written-before" could not be decoded'));
    expect(decodeLine).toBeDefined();
    expect(decodeLine).not.toContain(PASSWORD);
    lines = lines.filter((line) => line !== decodeLine); // that line's value: the test below
    expectNoLeak([PASSWORD]);
  });

  // The serializer's own message is not logged: JSON.parse quotes the first characters of the
  // bytes it refused ('Unexpected token ..., "VALUE-S"... is not valid JSON'), and it was (fixed).
  it('logs no part of the value of that entry', () => {
    for (const piece of VALUE_PIECES) expect(decodeLine, piece).not.toContain(piece);
  });
});
