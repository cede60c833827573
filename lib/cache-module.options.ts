import type { BaseCache, BaseCacheOptions } from './base-cache.js';
import type { MemoryCacheOptions } from './stores/memory.cache.js';
import type { RedisCacheOptions } from './stores/redis.cache.js';

/** A backend of your own: a class that extends BaseCache; the module constructs it with its options. */
export type CacheBackendClass = new (options: CacheModuleOptions) => BaseCache;

/** Where entries live. */
export type CacheBackend = 'memory' | 'redis' | CacheBackendClass;

/** Options of CacheModule.forRoot / the value forRootAsync's factory resolves to. */
export interface CacheModuleOptions extends BaseCacheOptions {
  /**
   * 'memory' (embedded, per process), 'redis' (shared, needs `npm install ioredis`),
   * or a class that extends BaseCache.
   * @default 'memory'
   */
  backend?: CacheBackend;
  /** Bounds of the memory backend. @default { max: 10000 } */
  memory?: MemoryCacheOptions;
  /**
   * Connection of the redis backend: `{ url }`, ioredis options (host, port, db, username,
   * password, tls...), or `{ client }`: an ioredis client you own, which the module never closes.
   * @default { url: 'redis://127.0.0.1:6379' }
   */
  redis?: RedisCacheOptions;
}
