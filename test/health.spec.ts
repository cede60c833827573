import 'reflect-metadata';
import { Controller, Get, type INestApplication, Module, type Type } from '@nestjs/common';
import type { AbstractHttpAdapter } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BaseCache,
  CacheConfigError,
  CacheModule,
  type CacheModuleOptions,
  getCacheToken,
  InvalidTtlError,
} from 'nest-cache';
import { type CacheHealth, CacheHealthIndicator } from 'nest-cache/terminus';
import { MapDriver } from './support/map-driver.js';
import { type RedisServerHandle, startRedisServer } from './support/redis-server.js';

const ADAPTERS: { name: string; create: () => AbstractHttpAdapter }[] = [
  { name: 'express', create: () => new ExpressAdapter() },
  { name: 'fastify', create: () => new FastifyAdapter() },
];

/** The health check's timeout in these tests, well below Redis' operationTimeout (2 s). */
const TIMEOUT_MS = 300;

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly cache: CacheHealthIndicator,
  ) {}

  /** Every registered cache. */
  @Get()
  @HealthCheck()
  all() {
    return this.health.check([() => this.cache.isHealthy('cache', { timeout: '300ms' })]);
  }

  /** One named cache, under a key of its own. */
  @Get('sessions')
  @HealthCheck()
  sessions() {
    return this.health.check([() => this.cache.isHealthy('sessions', { caches: ['sessions'] })]);
  }

  /** A cache nobody registered. */
  @Get('missing')
  @HealthCheck()
  missing() {
    return this.health.check([() => this.cache.isHealthy('cache', { caches: ['nope'] })]);
  }
}

/** A health module as an app writes one: TerminusModule, the controller, the indicator. */
@Module({
  imports: [TerminusModule.forRoot({ logger: false })],
  controllers: [HealthController],
  providers: [CacheHealthIndicator],
})
class HealthModule {}

interface Health {
  status: string;
  info: Record<string, { status: string; caches: CacheHealth[] }>;
  error: Record<string, { status: string; caches: CacheHealth[] }>;
  details: Record<string, { status: string; caches: CacheHealth[] }>;
}

const apps: INestApplication[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});

async function start(
  caches: (CacheModuleOptions & { name?: string })[],
  adapter: AbstractHttpAdapter = new ExpressAdapter(),
): Promise<{ app: INestApplication; get: (path?: string) => Promise<Reply> }> {
  const moduleRef = await Test.createTestingModule({
    imports: [...caches.map((options) => CacheModule.forRoot(options)), HealthModule],
  }).compile();
  const app = moduleRef.createNestApplication(adapter, { logger: false });
  apps.push(app);
  await app.listen(0, '127.0.0.1');
  const base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return {
    app,
    get: async (path = '/health') => {
      const started = performance.now();
      const response = await fetch(base + path);
      const text = await response.text();
      return {
        status: response.status,
        text,
        body: JSON.parse(text) as Health,
        ms: performance.now() - started,
      };
    },
  };
}

interface Reply {
  status: number;
  text: string;
  body: Health;
  ms: number;
}

/** Asks until `done(reply)` or the deadline passes; resolves the last reply either way. */
async function pollUntil(
  ask: () => Promise<Reply>,
  done: (reply: Reply) => boolean,
  deadlineMs = 10_000,
): Promise<Reply> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    const reply = await ask();
    if (done(reply) || performance.now() > deadline) return reply;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function cacheNamed(reply: Reply, key: string, name: string | null): CacheHealth | undefined {
  return reply.body.details[key]?.caches.find((cache) => cache.name === name);
}

describe.each(ADAPTERS)('CacheHealthIndicator on memory caches ($name)', ({ create }) => {
  it('is up for the default cache and every named cache, with their details', async () => {
    const { get } = await start([{}, { name: 'sessions' }], create());
    const reply = await get();
    expect(reply.status).toBe(200);
    expect(reply.body.status).toBe('ok');
    expect(reply.body.info.cache!.status).toBe('up');
    const caches = reply.body.info.cache!.caches;
    expect(caches.map((cache) => cache.name).sort()).toEqual([null, 'sessions'].sort());
    for (const cache of caches) {
      expect(cache).toMatchObject({ status: 'up', backend: 'memory', breaker: 'closed' });
      expect(cache.pingMs).toBeGreaterThanOrEqual(0);
      expect(cache.error).toBeUndefined();
    }
  });

  it('checks only the caches listed, under the key given', async () => {
    const { get } = await start([{}, { name: 'sessions' }], create());
    const reply = await get('/health/sessions');
    expect(reply.status).toBe(200);
    expect(reply.body.info.sessions!.caches.map((cache) => cache.name)).toEqual(['sessions']);
  });

  it('is down (503) for a cache name nobody registered, saying which and how to fix it', async () => {
    const { get } = await start([{}], create());
    const reply = await get('/health/missing');
    expect(reply.status).toBe(503);
    expect(cacheNamed(reply, 'cache', 'nope')).toMatchObject({
      status: 'down',
      error: expect.stringContaining('CacheModule.forRoot({ name: "nope" })'),
    });
  });

  it('is down (503) while the circuit breaker is open, even though the ping answers', async () => {
    const driver = new FlakyDriver();
    const { app, get } = await start(
      [{ backend: driver, breaker: { threshold: 2, cooldown: '1m' } }, { name: 'sessions' }],
      create(),
    );
    expect((await get()).status).toBe(200);
    driver.failing = true;
    const cache = app.get(BaseCache);
    await cache.get('a');
    await cache.get('b');
    expect(cache.breaker.state).toBe('open');

    const reply = await get();
    expect(reply.status).toBe(503);
    expect(reply.body.status).toBe('error');
    const broken = cacheNamed(reply, 'cache', null)!;
    expect(broken).toMatchObject({ status: 'down', backend: 'map', breaker: 'open' });
    expect(broken.pingMs).toBeGreaterThanOrEqual(0);
    expect(broken.error).toContain('circuit breaker is open');
    // The other cache is still reported, up.
    expect(cacheNamed(reply, 'cache', 'sessions')).toMatchObject({ status: 'up' });
  });
});

/** A driver whose reads fail on demand while its ping still answers: only the breaker says down. */
class FlakyDriver extends MapDriver {
  failing = false;

  override async get(key: string): Promise<Uint8Array | undefined> {
    if (this.failing) throw new Error('the store is failing');
    return super.get(key);
  }

  async ping(): Promise<void> {}
}

describe('CacheHealthIndicator on Redis (a private redis-server with a password)', () => {
  let redis: RedisServerHandle;
  const url = () => `redis://:secret@127.0.0.1:${redis.port}`;

  beforeAll(async () => {
    redis = await startRedisServer({ args: ['--requirepass', 'secret'] });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('is up while Redis runs, down (503) after it is killed, up again after its restart', async () => {
    const { get } = await start([{ backend: 'redis', redis: { url: url() } }, { name: 'local' }]);
    const up = await get();
    expect(up.status).toBe(200);
    expect(cacheNamed(up, 'cache', null)).toMatchObject({
      status: 'up',
      backend: 'redis',
      breaker: 'closed',
    });

    await redis.kill();
    const down = await pollUntil(get, (reply) => reply.status === 503);
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('error');
    const failed = cacheNamed(down, 'cache', null)!;
    expect(failed).toMatchObject({ status: 'down', backend: 'redis' });
    expect(failed.pingMs).toBeUndefined();
    expect(failed.error).toEqual(expect.any(String));
    expect(down.body.error.cache!.status).toBe('down');
    // The memory cache beside it is reported up; the check as a whole is down.
    expect(cacheNamed(down, 'cache', 'local')).toMatchObject({ status: 'up' });
    // A dead Redis answers at once (refused connections): within the timeout, with slack for CI.
    expect(down.ms).toBeLessThan(TIMEOUT_MS + 1_000);
    expect(down.text).not.toContain('secret');

    await redis.restart();
    const back = await pollUntil(get, (reply) => reply.status === 200);
    expect(back.status).toBe(200);
    expect(cacheNamed(back, 'cache', null)).toMatchObject({ status: 'up' });
  }, 30_000);

  it('answers 503 within its timeout when Redis is frozen, long before operationTimeout', async () => {
    const { get } = await start([{ backend: 'redis', redis: { url: url() } }]);
    expect((await pollUntil(get, (reply) => reply.status === 200)).status).toBe(200);
    await redis.freeze();
    try {
      const down = await get();
      expect(down.status).toBe(503);
      expect(cacheNamed(down, 'cache', null)!.error).toContain(
        `no answer to the health check's ping within ${TIMEOUT_MS} ms`,
      );
      // At least the timeout, and well under the 2 s operationTimeout that bounds cache calls.
      expect(down.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
      expect(down.ms).toBeLessThan(1_500);
      expect(down.text).not.toContain('secret');
    } finally {
      redis.resume();
    }
    expect((await pollUntil(get, (reply) => reply.status === 200)).status).toBe(200);
  });

  it('never shows a password from the URL, even when the backend error quotes it', async () => {
    // A backend whose error echoes its URL, as some clients do.
    const leaky = new FlakyDriver();
    leaky.ping = async () => {
      throw new Error(`connect ECONNREFUSED ${url()} (redis://user:secret@other:6379)`);
    };
    const { get } = await start([{ backend: leaky }]);
    const reply = await get();
    expect(reply.status).toBe(503);
    expect(reply.text).not.toContain('secret');
    expect(cacheNamed(reply, 'cache', null)!.error).toContain('ECONNREFUSED redis://***@127.0.0.1');
  });
});

describe('CacheHealthIndicator.isHealthy() options', () => {
  async function indicator(): Promise<CacheHealthIndicator> {
    const { app } = await start([{}]);
    return app.get(CacheHealthIndicator);
  }

  it('defaults to the key "cache" and every registered cache', async () => {
    const result = await (await indicator()).isHealthy();
    expect(result.cache).toMatchObject({ status: 'up', caches: [{ name: null }] });
  });

  it('refuses an invalid timeout or caches list, naming the option', async () => {
    const health = await indicator();
    await expect(health.isHealthy('cache', { timeout: 0 })).rejects.toThrow(InvalidTtlError);
    await expect(health.isHealthy('cache', { timeout: null as never })).rejects.toThrow(
      /option "timeout"/,
    );
    await expect(health.isHealthy('cache', { caches: [''] })).rejects.toThrow(CacheConfigError);
    await expect(health.isHealthy('cache', { caches: 'sessions' as never })).rejects.toThrow(
      /option "caches"/,
    );
  });

  it('is down when there is no cache to check (an empty caches list): a check of nothing proves nothing', async () => {
    const result = await (await indicator()).isHealthy('cache', { caches: [] });
    expect(result.cache).toMatchObject({
      status: 'down',
      caches: [],
      error: expect.stringContaining('no cache to check'),
    });
  });

  it('reports a closed cache down instead of rejecting', async () => {
    const { app } = await start([{}]);
    await app.get<BaseCache>(getCacheToken() as Type<BaseCache>).close();
    const result = await app.get(CacheHealthIndicator).isHealthy();
    expect(result.cache).toMatchObject({
      status: 'down',
      caches: [{ status: 'down', error: expect.stringContaining('closed cache') }],
    });
  });
});
