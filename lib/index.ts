export {
  CacheModule,
  type CacheModuleAsyncOptions,
  type CacheOptionsFactory,
  type CacheRegistration,
} from './cache.module.js';
export {
  CACHE_MODULE_OPTIONS,
  getCacheOptionsToken,
  getCacheToken,
  InjectCache,
} from './cache.tokens.js';
export {
  Cacheable,
  CacheEvict,
  type CacheableOptions,
  type CacheEvictOptions,
} from './method/cacheable.js';
export { invalidateCacheable } from './method/cacheable.explorer.js';
export type {
  CacheBackend,
  CacheBackendClass,
  CacheModuleOptions,
} from './cache-module.options.js';
export { createCache } from './cache.providers.js';
export {
  BaseCache,
  DriverCache,
  type BaseCacheOptions,
  type CacheEntry,
  type CacheStats,
  type DriverContext,
  type Found,
  type GetOrSetOptions,
  type SetOptions,
} from './base-cache.js';
export type { CacheDriver, DriverEntry, MaybePromise, Step } from './driver.js';
export type { BreakerState } from './failure-policy.js';
export { TRACED, type CacheTraceContext, type TracedOperation } from './tracing.js';
export type { CacheMetricsOptions } from './metrics.js';
export {
  CacheCounters,
  type CacheEventMap,
  type CacheEventName,
  type CacheListener,
} from './cache-stats.js';
export { ENTRY_FORMAT, type EntryMeta } from './entry.js';
export { MemoryDriver } from './stores/memory.cache.js';
export { RedisDriver } from './stores/redis.cache.js';
export { MemcachedDriver } from './stores/memcached.cache.js';
export { DiskDriver } from './stores/disk.cache.js';
export { KeyvDriver } from './stores/keyv.cache.js';
export type { Flight, Flights, Landing, Lead } from './flights.js';
export { systemClock, type Clock } from './clock.js';
export { MemoryCache, type MemoryCacheOptions } from './stores/memory.cache.js';
export {
  RedisCache,
  type RedisCacheOptions,
  type RedisClusterOptions,
} from './stores/redis.cache.js';
export {
  MemcachedCache,
  type MemcachedCacheOptions,
  type MemcachedClientOptions,
  type MemcachedServerOptions,
} from './stores/memcached.cache.js';
export { DiskCache, type DiskCacheOptions, type DiskSweep } from './stores/disk.cache.js';
export { KeyvCache, type KeyvCacheOptions, type KeyvStore } from './stores/keyv.cache.js';
export type { Ttl, TtlUnit } from './ttl.js';
export type { Serializer } from './serializer.js';
export {
  CacheClosedError,
  CacheConfigError,
  CorruptEntryError,
  FactoryTimeoutError,
  InvalidKeyError,
  InvalidPatternError,
  InvalidTagError,
  InvalidTtlError,
  NotACounterError,
  UnkeyableArgumentError,
  OperationTimeoutError,
  UnserializableValueError,
} from './errors.js';
export { CacheInterceptor, type RoutePolicy } from './http/cache.interceptor.js';
export {
  CacheKey,
  CachePerUser,
  CachePublic,
  CacheStale,
  CacheTags,
  CacheTTL,
  CacheVary,
  NoCache,
  type CacheKeyName,
  type CacheStaleOptions,
  type CacheTagsSpec,
  type IdentifyUser,
} from './http/decorators.js';
export type { CachedResponse, SentResponse } from './http/cacheability.js';
export type { HttpCacheOptions } from './cache-module.options.js';
export { NoopCache } from './stores/noop.cache.js';
