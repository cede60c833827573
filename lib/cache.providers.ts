import type { Provider } from '@nestjs/common';
import { BaseCache } from './base-cache.js';
import type { CacheModuleOptions } from './cache-module.options.js';
import { CACHE_MODULE_OPTIONS } from './cache.module-definition.js';
import { CacheConfigError } from './errors.js';
import { messages } from './messages.js';
import { MemoryCache } from './stores/memory.cache.js';
import { NoopCache } from './stores/noop.cache.js';
import { RedisCache } from './stores/redis.cache.js';

/** Options to a cache: the one place that decides which backend a configuration gets. */
export async function createCache(options: CacheModuleOptions = {}): Promise<BaseCache> {
  if (options.enabled === false) return new NoopCache(options);
  const backend = options.backend ?? 'memory';
  if (backend === 'memory') return new MemoryCache(options);
  if (backend === 'redis') return RedisCache.create(options);
  if (typeof backend === 'function' && backend.prototype instanceof BaseCache)
    return new backend(options);
  throw new CacheConfigError(messages.unknownBackend(backend));
}

export const cacheProvider: Provider = {
  provide: BaseCache,
  useFactory: createCache,
  inject: [CACHE_MODULE_OPTIONS],
};
