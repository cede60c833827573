import { Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { metrics } from '@opentelemetry/api';
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  MetricReader,
} from '@opentelemetry/sdk-metrics';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type BaseCache,
  type BaseCacheOptions,
  CacheConfigError,
  CacheModule,
  type CacheDriver,
  createCache,
  DriverCache,
  getCacheToken,
  MemoryCache,
} from '../lib/index.js';
import { RedisCache } from '../lib/stores/redis.cache.js';
import { startRedisServer, type RedisServerHandle } from './support/redis-server.js';

// OpenTelemetry metrics (BaseCacheOptions.metrics), read the way an app's SDK reads them: a real
// @opentelemetry/sdk-metrics MeterProvider, and a reader the test collects from.

/** A pull reader: the test decides when the SDK collects. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

interface Point<V = number> {
  attributes: Record<string, unknown>;
  value: V;
}

/** Every point of the metric `name` that the SDK collects now. */
async function points<V = number>(reader: MetricReader, name: string): Promise<Point<V>[]> {
  const { resourceMetrics, errors } = await reader.collect();
  expect(errors).toEqual([]);
  const found: Point<V>[] = [];
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      for (const point of metric.dataPoints as DataPoint<V>[]) {
        found.push({ attributes: point.attributes, value: point.value });
      }
    }
  }
  return found;
}

/** Every metric name nest-cache's meter reports now. */
async function names(reader: MetricReader): Promise<string[]> {
  const { resourceMetrics } = await reader.collect();
  return resourceMetrics.scopeMetrics
    .filter((scope) => scope.scope.name === 'nest-cache')
    .flatMap((scope) => scope.metrics.filter((m) => m.dataPoints.length > 0))
    .map((metric) => metric.descriptor.name);
}

/** The value of the point whose attributes are exactly `attributes`. */
function valueAt<V>(found: Point<V>[], attributes: Record<string, unknown>): V | undefined {
  return found.find((point) => equalAttributes(point.attributes, attributes))?.value;
}

function equalAttributes(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

let redis: RedisServerHandle;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis.stop();
});

let reader: TestReader;
let provider: MeterProvider;
const open: BaseCache[] = [];
let warnings: string[];
beforeEach(() => {
  reader = new TestReader();
  provider = new MeterProvider({ readers: [reader] });
  warnings = [];
  vi.spyOn(Logger.prototype, 'warn').mockImplementation((message) => {
    warnings.push(String(message));
  });
  vi.spyOn(Logger.prototype, 'error').mockImplementation(() => {});
  vi.spyOn(Logger.prototype, 'log').mockImplementation(() => {});
});
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(open.splice(0).map((cache) => cache.close()));
  await provider.shutdown();
  metrics.disable();
});

let prefixes = 0;
const BACKENDS: {
  backend: string;
  create: (options: BaseCacheOptions) => Promise<BaseCache>;
}[] = [
  // Named 'default' here (a cache left unnamed is named by its prefix: see the CacheModule test).
  {
    backend: 'memory',
    create: async (options) => new MemoryCache({ name: 'default', ...options }),
  },
  {
    backend: 'redis',
    create: (options) =>
      RedisCache.create({
        name: 'default',
        prefix: `metrics-${(prefixes += 1)}`,
        redis: { url: redis.url },
        ...options,
      }),
  },
];

async function started(create: () => Promise<BaseCache>): Promise<BaseCache> {
  const cache = await create();
  open.push(cache);
  return cache;
}

describe.each(BACKENDS)('metrics on $backend', ({ backend, create }) => {
  const on = (operation: string, more: Record<string, unknown> = {}) => ({
    'cache.name': 'default',
    'cache.backend': backend,
    'cache.operation': operation,
    ...more,
  });

  it('nest_cache.hits, .misses and .stale count what each operation served, with the cache name, backend and operation', async () => {
    let now = Date.now();
    const clock = { now: () => now };
    const cache = await started(() =>
      create({ clock, metrics: { meterProvider: provider, durations: true } }),
    );
    await cache.set('a', 1);
    expect(await cache.get('a')).toBe(1);
    expect(await cache.get('a')).toBe(1);
    expect(await cache.get('missing')).toBeUndefined();
    expect(await cache.getMany(['a', 'missing'])).toEqual([1, undefined]);
    expect(await cache.getOrSet('a', () => 2)).toBe(1);
    await cache.set('news', 'old', { ttl: 10, staleWhileRevalidate: 60 });
    now += 11_000;
    expect(await cache.getOrSet('news', () => 'new', { ttl: 10, staleWhileRevalidate: 60 })).toBe(
      'old',
    );
    const hits = await points(reader, 'nest_cache.hits');
    expect(hits).toHaveLength(3);
    expect(valueAt(hits, on('get'))).toBe(2);
    expect(valueAt(hits, on('getMany'))).toBe(1);
    expect(valueAt(hits, on('getOrSet'))).toBe(1);
    const misses = await points(reader, 'nest_cache.misses');
    expect(misses).toHaveLength(2);
    expect(valueAt(misses, on('get'))).toBe(1);
    expect(valueAt(misses, on('getMany'))).toBe(1);
    expect(await points(reader, 'nest_cache.stale')).toEqual([
      { attributes: on('getOrSet'), value: 1 },
    ]);
    // Cumulative, as cache.stats: the same totals at the next collection.
    expect(valueAt(await points(reader, 'nest_cache.hits'), on('get'))).toBe(2);
  });

  it('nest_cache.operation.duration records each operation once, in seconds, with its attributes', async () => {
    const cache = await started(() =>
      create({ metrics: { meterProvider: provider, durations: true } }),
    );
    await cache.set('a', 1);
    await cache.get('a');
    await cache.get('b');
    await cache.getMany(['a', 'b']);
    await cache.delete('a');
    await cache.increment('n');
    const durations = await points<Histogram>(reader, 'nest_cache.operation.duration');
    const counts = Object.fromEntries(
      durations.map(({ attributes, value }) => [attributes['cache.operation'], value.count]),
    );
    expect(counts).toEqual({ set: 1, get: 2, getMany: 1, delete: 1, increment: 1 });
    for (const { attributes, value } of durations) {
      expect(attributes).toEqual(on(String(attributes['cache.operation'])));
      // Seconds: a call on a local backend takes well under one.
      expect(value.sum).toBeGreaterThan(0);
      expect(value.sum).toBeLessThan(1);
      expect(value.buckets.boundaries[0]).toBe(0.000005);
    }
  });

  it('keyGroup adds cache.key_group to single-key operations (undefined: none), never to multi-key ones', async () => {
    const cache = await started(() =>
      create({
        metrics: {
          meterProvider: provider,
          durations: true,
          keyGroup: (key) => (key.includes(':') ? key.split(':')[0] : undefined),
        },
      }),
    );
    await cache.set('user:1', 1);
    await cache.get('user:1');
    await cache.get('post:9');
    await cache.get('plain');
    await cache.getMany(['user:1']);
    const hits = await points(reader, 'nest_cache.hits');
    expect(valueAt(hits, on('get', { 'cache.key_group': 'user' }))).toBe(1);
    // getMany counts each key it served under the key's group; its duration has none.
    expect(valueAt(hits, on('getMany', { 'cache.key_group': 'user' }))).toBe(1);
    const misses = await points(reader, 'nest_cache.misses');
    expect(valueAt(misses, on('get', { 'cache.key_group': 'post' }))).toBe(1);
    expect(valueAt(misses, on('get'))).toBe(1);
    const durations = await points<Histogram>(reader, 'nest_cache.operation.duration');
    expect(valueAt(durations, on('set', { 'cache.key_group': 'user' }))?.count).toBe(1);
    expect(valueAt(durations, on('get', { 'cache.key_group': 'user' }))?.count).toBe(1);
    expect(valueAt(durations, on('get'))?.count).toBe(1);
    expect(valueAt(durations, on('getMany'))?.count).toBe(1);
  });

  it('nest_cache.errors counts failed backend calls with their operation and error.type', async () => {
    const cache = await started(() =>
      create({
        metrics: { meterProvider: provider, durations: true },
        operationTimeout: '100ms',
        breaker: { threshold: 1, cooldown: '1m' },
        redis: { url: redis.url, commandTimeout: 50 },
      } as BaseCacheOptions),
    );
    await cache.set('a', 1);
    // A backend that answers nothing: the read times out, then the open breaker skips the next.
    const driver = (cache as unknown as { driver: CacheDriver }).driver;
    vi.spyOn(driver, 'get').mockImplementation(() => new Promise(() => {}));
    if (driver.getMany) vi.spyOn(driver, 'getMany').mockImplementation(() => new Promise(() => {}));
    expect(await cache.get('a')).toBeUndefined();
    expect(await cache.get('a')).toBeUndefined();
    expect(cache.stats).toMatchObject({ errors: 2, timeouts: 1 });
    const errors = await points(reader, 'nest_cache.errors');
    expect(errors).toHaveLength(2);
    expect(valueAt(errors, on('get', { 'error.type': 'timeout' }))).toBe(1);
    expect(valueAt(errors, on('get', { 'error.type': 'breaker_open' }))).toBe(1);
  });
});

describe('metrics: the errors of a real outage', () => {
  it('a killed redis-server counts errors of the operations that failed, by error.type', async () => {
    const own = await startRedisServer();
    try {
      const cache = await started(() =>
        RedisCache.create({
          redis: { url: own.url, commandTimeout: 200 },
          metrics: { meterProvider: provider, durations: true },
        }),
      );
      await cache.set('a', 1);
      await own.kill();
      expect(await cache.get('a')).toBeUndefined();
      expect(await cache.set('b', 2)).toBe(false);
      const errors = await points(reader, 'nest_cache.errors');
      const operations = errors.map(({ attributes }) => attributes['cache.operation']).sort();
      expect(operations).toEqual(['get', 'set']);
      for (const { attributes, value } of errors) {
        expect(attributes).toMatchObject({ 'cache.name': 'nest-cache', 'cache.backend': 'redis' });
        expect(typeof attributes['error.type']).toBe('string');
        expect(value).toBe(1);
      }
    } finally {
      await own.stop();
    }
  });
});

describe('metrics options', () => {
  it('past 200 key groups, the others are recorded as "other" (warned once)', async () => {
    const cache = await started(
      async () =>
        new MemoryCache({
          name: 'default',
          metrics: { meterProvider: provider, durations: true, keyGroup: (key) => key },
        }),
    );
    for (let i = 0; i < 210; i++) await cache.get(`k${i}`);
    const misses = await points(reader, 'nest_cache.misses');
    expect(misses).toHaveLength(201);
    expect(valueAt(misses, { ...base('memory', 'get'), 'cache.key_group': 'other' })).toBe(10);
    expect(valueAt(misses, { ...base('memory', 'get'), 'cache.key_group': 'k199' })).toBe(1);
    expect(warnings.filter((w) => w.includes('200 distinct groups'))).toHaveLength(1);
  });

  it('a keyGroup that throws is warned about, and the operation recorded without a group', async () => {
    const cache = await started(
      async () =>
        new MemoryCache({
          name: 'default',
          metrics: {
            meterProvider: provider,
            durations: true,
            keyGroup: () => {
              throw new Error('no group');
            },
          },
        }),
    );
    expect(await cache.get('a')).toBeUndefined();
    expect(await points(reader, 'nest_cache.misses')).toEqual([
      { attributes: base('memory', 'get'), value: 1 },
    ]);
    expect(warnings.some((w) => w.includes('"metrics.keyGroup" threw (no group)'))).toBe(true);
  });

  it('metrics: false records nothing, even with a global MeterProvider', async () => {
    metrics.setGlobalMeterProvider(provider);
    const cache = await started(async () => new MemoryCache({ metrics: false }));
    await cache.set('a', 1);
    await cache.get('a');
    await cache.get('b');
    expect(await names(reader)).toEqual([]);
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1 });
  });

  it('the default records its counters (no duration histogram: metrics.durations is off) through the global MeterProvider once the app has registered one', async () => {
    metrics.setGlobalMeterProvider(provider);
    const cache = await started(async () => new MemoryCache());
    await cache.set('a', 1);
    await cache.get('a');
    expect((await names(reader)).sort()).toEqual(['nest_cache.hits']);
    const { resourceMetrics } = await reader.collect();
    const scope = resourceMetrics.scopeMetrics.find((s) => s.scope.name === 'nest-cache')!.scope;
    expect(scope.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('the default, with no SDK registered (the global no-op), records nothing and works', async () => {
    const cache = await started(async () => new MemoryCache());
    await cache.set('a', 1);
    expect(await cache.get('a')).toBe(1);
    expect(await cache.getOrSet('b', () => 2)).toBe(2);
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1 });
    // A provider registered after the cache was made does not reach it: register the SDK first.
    metrics.setGlobalMeterProvider(provider);
    await cache.get('a');
    expect(await names(reader)).toEqual([]);
  });

  it('CacheModule names its caches: cache.name is the registration name, or the prefix of the default cache', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        CacheModule.forRoot({ metrics: { meterProvider: provider, durations: true } }),
        CacheModule.forRoot({
          name: 'sessions',
          metrics: { meterProvider: provider, durations: true },
        }),
      ],
    }).compile();
    try {
      await moduleRef.get<BaseCache>(getCacheToken()).get('a');
      await moduleRef.get<BaseCache>(getCacheToken('sessions')).get('a');
      const misses = await points(reader, 'nest_cache.misses');
      expect(misses.map(({ attributes }) => attributes['cache.name']).sort()).toEqual([
        'nest-cache',
        'sessions',
      ]);
    } finally {
      await moduleRef.close();
    }
  });

  it('close() hands the meter its callback back (the SDK keeps no closed cache), once', async () => {
    const meter = provider.getMeter('nest-cache');
    const removed = vi.spyOn(meter, 'removeBatchObservableCallback');
    const cache = new MemoryCache({ metrics: { meterProvider: { getMeter: () => meter } } });
    await cache.get('a');
    expect(await names(reader)).toContain('nest_cache.misses');
    await cache.close();
    await cache.close();
    expect(removed).toHaveBeenCalledTimes(1);
  });

  it.each([
    ['a string', 'yes'],
    ['null', null],
    ['an array', []],
    ['a misspelt key', { keygroup: () => 'x' }],
    ['a keyGroup that is not a function', { keyGroup: 'user' }],
    ['a meterProvider without getMeter', { meterProvider: {} }],
  ])('a bad metrics option (%s) is a CacheConfigError naming it', async (_, metricsOption) => {
    const bad = () => new MemoryCache({ metrics: metricsOption as never });
    expect(bad).toThrow(CacheConfigError);
    expect(bad).toThrow(/metrics/);
    await expect(createCache({ metrics: metricsOption as never })).rejects.toThrow(
      CacheConfigError,
    );
  });

  it('a bad name is a CacheConfigError naming it', () => {
    expect(() => new MemoryCache({ name: '' })).toThrow(CacheConfigError);
    expect(() => new MemoryCache({ name: 7 as never })).toThrow(/"name"/);
  });

  it('a driver of your own records under its own backend name', async () => {
    const store = new Map<string, Uint8Array>();
    const driver: CacheDriver = {
      name: 'mine',
      get: (key) => store.get(key),
      set: (key, bytes) => (store.set(key, bytes), true),
      delete: (keys) => keys.filter((key) => store.delete(key)).length,
      ttl: () => undefined,
      clear: () => store.clear(),
      close: () => undefined,
    };
    const cache = await started(
      async () =>
        new DriverCache(driver, {
          name: 'custom',
          metrics: { meterProvider: provider, durations: true },
        }),
    );
    await cache.get('a');
    expect(await points(reader, 'nest_cache.misses')).toEqual([
      {
        attributes: { 'cache.name': 'custom', 'cache.backend': 'mine', 'cache.operation': 'get' },
        value: 1,
      },
    ]);
  });
});

function base(backend: string, operation: string) {
  return { 'cache.name': 'default', 'cache.backend': backend, 'cache.operation': operation };
}
