/**
 * What every process of the benchmark agrees on: the setups under test, their routes and the
 * response bodies. The servers return these bodies; the load generator checks it received them.
 */

export type Adapter = 'express' | 'fastify';
/** 'reference' serves the uncached and do-nothing-interceptor routes; the others add a cache. */
export type Library = 'reference' | 'nest-cache' | 'incumbent';
export type Backend = 'memory' | 'redis' | 'disk';
export type BodySize = '1k' | '100k';

/** One server process under test. */
export interface ServerSetup {
  adapter: Adapter;
  library: Library;
  /** Absent for the reference server, which has no cache. */
  backend?: Backend;
  /** Worker processes sharing the port (node:cluster), as PM2 runs an app; absent: one process. */
  workers?: number;
  /**
   * The cache's key prefix (nest-cache's `prefix`, Keyv's `namespace`): servers given the same one
   * share their entries, as the instances of one app do. Absent: one of its own, from its pid.
   */
  prefix?: string;
  /** nest-cache's `distributedSingleFlight` option (Redis only); absent: off. */
  distributedSingleFlight?: boolean;
}

export const ADAPTERS: Adapter[] = ['fastify', 'express'];
export const BODY_SIZES: BodySize[] = ['1k', '100k'];
export const CACHE_LIBRARIES = ['nest-cache', 'incumbent'] as const;
/** The backends both libraries have; nest-cache also runs on disk, in one process and in two. */
export const BACKENDS: Backend[] = ['memory', 'redis'];
export const DISK_WORKERS = 2;

/** How the libraries are named in the output. */
export const LIBRARY_LABELS: Record<Library, string> = {
  reference: 'reference',
  'nest-cache': 'nest-cache',
  incumbent: '@nestjs/cache-manager',
};

/** Time to live of cached responses: longer than any run, so a HIT route stays a HIT. */
export const CACHE_TTL_SECONDS = 600;
/** How long the handler of the cold route works (an awaited delay), so concurrent misses overlap. */
export const COLD_ORIGIN_MS = 50;

/**
 * Routes. `plain` has no interceptor, `noop` a do-nothing interceptor, `cached` the library's
 * CacheInterceptor; `cold` is cached too and counts how often its handler runs.
 */
export const routes = {
  plain: (size: BodySize) => `/plain/${size}`,
  noop: (size: BodySize) => `/noop/${size}`,
  cached: (size: BodySize) => `/cached/${size}`,
  cold: (round: string) => `/cold?round=${round}`,
  /** Origin calls of the cold route and CPU time of the process so far, as JSON. Not cached. */
  stats: '/bench/stats',
} as const;

export function setupName(setup: ServerSetup): string {
  const workers = setup.workers ? `, ${setup.workers} workers` : '';
  const distributed = setup.distributedSingleFlight ? ', distributedSingleFlight' : '';
  return setup.backend
    ? `${setup.adapter} ${LIBRARY_LABELS[setup.library]} ${setup.backend}${workers}${distributed}`
    : `${setup.adapter} ${LIBRARY_LABELS[setup.library]}`;
}

/** One product record: the unit of the response bodies (and of the serializer bench's values). */
export function record(i: number) {
  return {
    id: i,
    sku: `SKU-${String(i).padStart(6, '0')}`,
    title: `Product number ${i}, a fairly ordinary thing`,
    price: Math.round(i * 137.31) / 100,
    inStock: i % 3 !== 0,
    tags: ['catalog', i % 2 === 0 ? 'even' : 'odd'],
    updatedAt: '2026-11-21T13:46:00.000Z',
  };
}

/** A JSON object of records whose serialized form is exactly `bytes` long (ASCII). */
function bodyOf(bytes: number) {
  const items: ReturnType<typeof record>[] = [];
  const size = () => JSON.stringify({ total: items.length, items, note: '' }).length;
  while (size() <= bytes) items.push(record(items.length));
  items.pop();
  return { total: items.length, items, note: '.'.repeat(bytes - size()) };
}

/** The response bodies, built once: a handler returns the same object on every request. */
export const bodies: Record<BodySize, object> = {
  '1k': bodyOf(1_024),
  '100k': bodyOf(100 * 1_024),
};

/** The fastest any awaited get can be: the reference of the memory store operations. */
export const MAP_AWAITED = 'Map (awaited)';
/** Names of the raw ioredis subjects of the store operations. */
export const REDIS_RAW = 'ioredis (auto-pipelining, no decode)';
export const REDIS_TUNED = "ioredis getBuffer, nest-cache's client settings";

/** A small value for the store operations (about 100 bytes as JSON). */
export const storeValue = {
  id: 42,
  name: 'Ada Lovelace',
  email: 'ada@example.com',
  roles: ['admin', 'ops'],
  active: true,
};
