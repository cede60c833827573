export { CacheModule } from './cache.module.js';
export { CACHE_MODULE_OPTIONS, type CacheOptionsFactory } from './cache.module-definition.js';
export type {
  CacheBackend,
  CacheBackendClass,
  CacheModuleOptions,
} from './cache-module.options.js';
export { createCache } from './cache.providers.js';
export {
  BaseCache,
  type BaseCacheOptions,
  type CacheEntry,
  type CacheStats,
  type MaybePromise,
  type Step,
  type StoredEntry,
} from './base-cache.js';
export type { Flight, Flights, Landing, Lead } from './flights.js';
export { systemClock, type Clock } from './clock.js';
export { MemoryCache, type MemoryCacheOptions } from './stores/memory.cache.js';
export { RedisCache, type RedisCacheOptions } from './stores/redis.cache.js';
export type { Ttl, TtlUnit } from './ttl.js';
export type { Serializer } from './serializer.js';
export {
  CacheClosedError,
  CacheConfigError,
  CorruptEntryError,
  FactoryTimeoutError,
  InvalidKeyError,
  InvalidTtlError,
  OperationTimeoutError,
  UnserializableValueError,
} from './errors.js';
export { CacheInterceptor, type RoutePolicy } from './http/cache.interceptor.js';
export {
  CacheKey,
  CachePerUser,
  CachePublic,
  CacheTTL,
  CacheVary,
  NoCache,
  type CacheKeyName,
  type IdentifyUser,
} from './http/decorators.js';
export type { CachedResponse, SentResponse } from './http/cacheability.js';
export type { HttpCacheOptions } from './cache-module.options.js';
export { NoopCache } from './stores/noop.cache.js';
