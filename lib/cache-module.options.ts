import type { ExecutionContext } from '@nestjs/common';
import type { BaseCache, BaseCacheOptions, DriverContext } from './base-cache.js';
import type { CacheDriver } from './driver.js';
import type { Ttl } from './ttl.js';
import type { DiskCacheOptions } from './stores/disk.cache.js';
import type { KeyvCacheOptions } from './stores/keyv.cache.js';
import type { MemcachedCacheOptions } from './stores/memcached.cache.js';
import type { MemoryCacheOptions } from './stores/memory.cache.js';
import type { RedisCacheOptions } from './stores/redis.cache.js';

/** A backend of your own, as a class: one that extends BaseCache (DriverCache, say); the module constructs it with its options. */
export type CacheBackendClass = new (options: CacheModuleOptions) => BaseCache;

/**
 * Where entries live: 'memory', 'redis', a driver of your own (a CacheDriver, or a function that
 * makes one from the cache's DriverContext), or a class that extends BaseCache.
 */
export type CacheBackend =
  | 'memory'
  | 'redis'
  | 'memcached'
  | 'disk'
  | 'keyv'
  | CacheDriver
  | ((context: DriverContext) => CacheDriver)
  | CacheBackendClass;

/** Options of CacheModule.forRoot / the value forRootAsync's factory resolves to. */
export interface CacheModuleOptions extends BaseCacheOptions {
  /**
   * 'memory' (embedded, per process), 'redis' (shared, needs `npm install ioredis`), 'memcached'
   * (shared, needs `npm install memjs`), 'disk' (persistent, shared by the processes of one
   * machine, needs `npm install lmdb`), 'keyv' (any Keyv storage adapter), a driver
   * of your own (or a function of the DriverContext that makes one), or a class that extends BaseCache.
   * @default 'memory'
   */
  backend?: CacheBackend;
  /** Bounds of the memory backend. @default { max: 10000, maxBytes: 256 MiB (or a quarter of the V8 heap limit when smaller) } */
  memory?: MemoryCacheOptions;
  /**
   * Connection of the redis backend: `{ url }`, ioredis options (host, port, db, username,
   * password, tls, sentinels...), `{ cluster: { nodes: [{ host, port }] } }` for a Redis Cluster,
   * or `{ client }`: an ioredis client (or Cluster client) you own, which the module never closes.
   * @default { url: 'redis://127.0.0.1:6379' }
   */
  redis?: RedisCacheOptions;
  /**
   * Connection of the memcached backend (needs `npm install memjs`): `{ servers, username,
   * password }` with timeouts (commandTimeout, connectTimeout, retries), or `{ client }`: a memjs
   * client you own, which the module never closes.
   * @default { servers: '127.0.0.1:11211' }
   */
  memcached?: MemcachedCacheOptions;
  /** Directory and size bound of the disk backend (needs `npm install lmdb`); `path` is required. */
  disk?: DiskCacheOptions;
  /** The Keyv storage adapter, Keyv instance or Map of the keyv backend (needs `npm install keyv`). */
  keyv?: KeyvCacheOptions;
  /**
   * false turns caching off: CacheInterceptor passes every request through and BaseCache is a
   * no-op that always misses (for local development and tests).
   * @default true
   */
  enabled?: boolean;
  /** Response caching options (CacheInterceptor). */
  http?: HttpCacheOptions;
}

/** Options of response caching (CacheInterceptor), for the whole app. */
export interface HttpCacheOptions {
  /**
   * Request headers every cached route varies on, e.g. ['accept-language']; routes add their own
   * with @CacheVary().
   * @default []
   */
  vary?: string[];
  /**
   * Builds every route's key. Gets the request's context and the key nest-cache would use;
   * returns the key to use, or undefined to bypass the cache for this request.
   * @default the method, path, canonical query and varied headers
   */
  key?: (context: ExecutionContext, defaultKey: string) => string | undefined;
  /**
   * Response statuses that may be stored.
   * @default [200]
   */
  statuses?: number[];
  /**
   * Lets a client's `Cache-Control: no-cache` skip the cached entry (and refresh it). Off by
   * default: anyone could send it on every request and hammer the origin.
   * @default false
   */
  trustClientNoCache?: boolean;
  /**
   * Time to live of cached responses, unless a route sets @CacheTTL().
   * @default the module's ttl
   */
  ttl?: Ttl;
  /** Stale windows of every cached route, unless a route sets @CacheStale(). @default none */
  staleWhileRevalidate?: Exclude<Ttl, null>;
  staleIfError?: Exclude<Ttl, null>;
  /** With staleIfError: see @CacheStale()'s softTimeout. */
  softTimeout?: Exclude<Ttl, null>;
}
