/**
 * Store operations, in a process of its own pinned to the server core: nest-cache's BaseCache
 * against raw lru-cache / ioredis (the ceilings) and cache-manager (what @nestjs/cache-manager
 * calls), on memory and on the bench's redis-server. Prints one JSON line: StoreReport.
 *
 * Settings: BENCH_STORE (JSON StoreSettings); REDIS_URL.
 */
import 'reflect-metadata';
import { tracingChannel } from 'node:diagnostics_channel';
import { Injectable, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { createCache as createCacheManager } from 'cache-manager';
import { createKeyv } from '@keyv/redis';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  Cacheable,
  CacheModule,
  type CacheModuleOptions,
  MemoryCache,
  RedisCache,
} from '../lib/index.js';
import { MAP_AWAITED, REDIS_RAW, REDIS_TUNED, storeValue } from './fixtures.js';
import { asyncRate, syncRate } from './rates.js';

export interface StoreSettings {
  rounds: number;
  /** Milliseconds per measurement. */
  memoryMs: number;
  redisMs: number;
  /** Callers that each await their next call as soon as the last one settles (Redis). */
  redisCallers: number;
}

export type StoreOperation =
  'get' | 'set' | 'getMany' | 'getOrSet hit' | '@Cacheable hit' | 'get, one hot key';
export const STORE_OPERATIONS: StoreOperation[] = [
  'get',
  'set',
  'getMany',
  'getOrSet hit',
  '@Cacheable hit',
  'get, one hot key',
];

/**
 * The memory get HIT subjects that measure what metrics and tracing cost, each against
 * 'nest-cache, metrics: false': 'nest-cache' is the default (metrics on, no SDK registered: the
 * global no-op MeterProvider).
 */
export type OverheadSubject =
  | 'nest-cache, metrics: false'
  | 'nest-cache'
  | 'nest-cache, SDK MeterProvider'
  | 'nest-cache, tracing subscriber';

/** Calls per second of every subject and operation, one sample per round. */
export interface StoreReport {
  memory: Record<string, Partial<Record<StoreOperation, number[]>>>;
  redis: Record<string, Partial<Record<StoreOperation, number[]>>>;
  settings: StoreSettings;
}

/** An operation gets the number of its caller, which picks the key it uses. */
type Subject = Partial<Record<StoreOperation, (caller: number) => unknown>>;

const settings = JSON.parse(process.env.BENCH_STORE ?? '{}') as StoreSettings;
const redisUrl = process.env.REDIS_URL!;
/** getMany reads this many keys per call. */
const MANY = 10;
const keys = Array.from({ length: MANY }, (_, i) => `k${i}`);
/** Redis callers each use a key of their own (but 'get, one hot key'), so no read can be shared. */
const callerKeys = Array.from({ length: settings.redisCallers }, (_, i) => `k${i}`);
const TTL_SECONDS = 600;

/** A provider with a @Cacheable method, as an app has one: its value is storeValue. */
@Injectable()
class Reports {
  @Cacheable({ ttl: TTL_SECONDS })
  async find(_key: string): Promise<object> {
    return storeValue;
  }
}

/** A Nest application context with one CacheModule and the Reports provider, its entries warmed. */
async function cacheableApp(options: CacheModuleOptions, warm: readonly string[]) {
  @Module({ imports: [CacheModule.forRoot(options)], providers: [Reports] })
  class BenchModule {}
  Logger.overrideLogger(false);
  const app = await NestFactory.createApplicationContext(BenchModule, { logger: false });
  const reports = app.get(Reports);
  for (const key of warm) await reports.find(key);
  return { reports, close: () => app.close() };
}

async function measure(
  subjects: Record<string, Subject>,
  rate: (name: string, op: (caller: number) => unknown) => Promise<number>,
): Promise<StoreReport['memory']> {
  const samples: StoreReport['memory'] = {};
  // The first round warms the JIT up and is not kept. Subjects take turns within a round, so
  // anything that slows the machine for a while hits them alike.
  for (let round = 0; round <= settings.rounds; round++) {
    for (const operation of STORE_OPERATIONS) {
      for (const [name, subject] of Object.entries(subjects)) {
        const op = subject[operation];
        if (!op) continue;
        const value = await rate(name, op);
        if (round === 0) continue;
        ((samples[name] ??= {})[operation] ??= []).push(value);
      }
    }
  }
  return samples;
}

/** An SDK reader that never exports: what recording costs, without the export. */
class IdleReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** A subscriber of every event of the nest-cache:get tracing channel, doing nothing. */
const getSubscriber = {
  start() {},
  end() {},
  asyncStart() {},
  asyncEnd() {},
  error() {},
};

async function memory(): Promise<StoreReport['memory']> {
  const lru = new LRUCache<string, object>({ max: 10_000, ttl: TTL_SECONDS * 1_000 });
  const map = new Map<string, object>();
  const ours = new MemoryCache({ ttl: TTL_SECONDS });
  // The overhead rows: each a cache of its own, all read side by side with `ours` (the default).
  const meterProvider = new MeterProvider({ readers: [new IdleReader()] });
  const bare = new MemoryCache({ ttl: TTL_SECONDS, metrics: false });
  const withSdk = new MemoryCache({ ttl: TTL_SECONDS, metrics: { meterProvider } });
  const traced = new MemoryCache({ ttl: TTL_SECONDS, metrics: false });
  const incumbent = createCacheManager({ ttl: TTL_SECONDS * 1_000 });
  for (const key of keys) {
    lru.set(key, storeValue);
    map.set(key, storeValue);
    for (const cache of [ours, bare, withSdk, traced]) await cache.set(key, storeValue);
    await incumbent.set(key, storeValue);
  }
  const build = () => storeValue;
  const app = await cacheableApp({ backend: 'memory', ttl: TTL_SECONDS }, ['k0']);
  const overhead: Record<Exclude<OverheadSubject, 'nest-cache'>, MemoryCache> = {
    'nest-cache, metrics: false': bare,
    'nest-cache, SDK MeterProvider': withSdk,
    'nest-cache, tracing subscriber': traced,
  };
  const subjects: Record<string, Subject> = {
    'lru-cache (sync, no copy)': {
      get: () => lru.get('k0'),
      set: () => lru.set('k0', storeValue),
      getMany: () => keys.map((key) => lru.get(key)),
      'getOrSet hit': () => lru.get('k0') ?? build(),
    },
    [MAP_AWAITED]: { get: async () => map.get('k0') },
    'nest-cache': {
      get: () => ours.get('k0'),
      set: () => ours.set('k0', storeValue),
      getMany: () => ours.getMany(keys),
      'getOrSet hit': () => ours.getOrSet('k0', build),
      '@Cacheable hit': () => app.reports.find('k0'),
    },
    ...Object.fromEntries(
      Object.entries(overhead).map(([name, cache]) => [name, { get: () => cache.get('k0') }]),
    ),
    'cache-manager': {
      get: () => incumbent.get('k0'),
      set: () => incumbent.set('k0', storeValue),
      getMany: () => incumbent.mget(keys),
      'getOrSet hit': () => incumbent.wrap('k0', build),
      // @nestjs/cache-manager has no method decorator: its read-through is wrap().
      '@Cacheable hit': () => incumbent.wrap('k0', build),
    },
  };
  const getChannel = tracingChannel('nest-cache:get');
  const samples = await measure(subjects, async (name, op) => {
    if (name.includes('sync,')) return syncRate(op, settings.memoryMs);
    // The channel is global: subscribed only while its own row runs.
    if (name !== 'nest-cache, tracing subscriber') return asyncRate(op, 1, settings.memoryMs);
    getChannel.subscribe(getSubscriber);
    try {
      return await asyncRate(op, 1, settings.memoryMs);
    } finally {
      getChannel.unsubscribe(getSubscriber);
    }
  });
  await Promise.all([
    ours.close(),
    app.close(),
    ...Object.values(overhead).map((cache) => cache.close()),
  ]);
  await meterProvider.shutdown();
  return samples;
}

async function redis(): Promise<StoreReport['redis']> {
  const rawClient = new Redis(redisUrl, { enableAutoPipelining: true });
  // The settings nest-cache gives the client it creates (lib/stores/redis.connection.ts), and the
  // Buffer replies it reads: what the same GET costs before BaseCache does anything.
  const tuned = new Redis(redisUrl, {
    enableAutoPipelining: true,
    commandTimeout: 500,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
  });
  const ours = await RedisCache.create({
    ttl: TTL_SECONDS,
    prefix: 'bench-ours',
    redis: { url: redisUrl },
  });
  const incumbent = createCacheManager({
    stores: [createKeyv(redisUrl, { namespace: 'bench-incumbent' })],
    ttl: TTL_SECONDS * 1_000,
  });
  const json = JSON.stringify(storeValue);
  const rawKey = (key: string) => `bench-raw:${key}`;
  for (const key of callerKeys) {
    await rawClient.set(rawKey(key), json, 'PX', TTL_SECONDS * 1_000);
    await ours.set(key, storeValue);
    await incumbent.set(key, storeValue);
  }
  const rawKeys = callerKeys.map(rawKey);
  const rawMany = rawKeys.slice(0, MANY);
  const build = () => storeValue;
  const app = await cacheableApp(
    { backend: 'redis', ttl: TTL_SECONDS, prefix: 'bench-cacheable', redis: { url: redisUrl } },
    callerKeys,
  );
  const subjects: Record<string, Subject> = {
    [REDIS_RAW]: {
      get: (i) => rawClient.get(rawKeys[i]!),
      set: (i) => rawClient.set(rawKeys[i]!, json, 'PX', TTL_SECONDS * 1_000),
      getMany: () => rawClient.mget(rawMany),
      // What a read-through does on a hit: one GET.
      'getOrSet hit': (i) => rawClient.get(rawKeys[i]!),
      'get, one hot key': () => rawClient.get(rawKeys[0]!),
    },
    [REDIS_TUNED]: { get: (i) => tuned.getBuffer(rawKeys[i]!) },
    'nest-cache': {
      get: (i) => ours.get(callerKeys[i]!),
      set: (i) => ours.set(callerKeys[i]!, storeValue),
      getMany: () => ours.getMany(keys),
      'getOrSet hit': (i) => ours.getOrSet(callerKeys[i]!, build),
      '@Cacheable hit': (i) => app.reports.find(callerKeys[i]!),
      'get, one hot key': () => ours.get(keys[0]!),
    },
    'cache-manager + @keyv/redis': {
      get: (i) => incumbent.get(callerKeys[i]!),
      set: (i) => incumbent.set(callerKeys[i]!, storeValue),
      getMany: () => incumbent.mget(keys),
      'getOrSet hit': (i) => incumbent.wrap(callerKeys[i]!, build),
      '@Cacheable hit': (i) => incumbent.wrap(callerKeys[i]!, build),
      'get, one hot key': () => incumbent.get(keys[0]!),
    },
  };
  const samples = await measure(subjects, (_, op) =>
    asyncRate(op, settings.redisCallers, settings.redisMs),
  );
  await Promise.all([
    ours.close(),
    app.close(),
    incumbent.disconnect(),
    rawClient.quit(),
    tuned.quit(),
  ]);
  return samples;
}

async function main(): Promise<void> {
  const report: StoreReport = { memory: await memory(), redis: await redis(), settings };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `store operations failed: ${error instanceof Error ? error.stack : String(error)}\n`,
  );
  process.exit(1);
});
