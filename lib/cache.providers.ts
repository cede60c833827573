import { BaseCache, DriverCache } from './base-cache.js';
import type { CacheModuleOptions } from './cache-module.options.js';
import { CacheConfigError } from './errors.js';
import { messages } from './messages.js';
import { DiskCache } from './stores/disk.cache.js';
import { KeyvCache } from './stores/keyv.cache.js';
import { MemcachedCache } from './stores/memcached.cache.js';
import { MemoryCache } from './stores/memory.cache.js';
import { NoopCache } from './stores/noop.cache.js';
import { RedisCache } from './stores/redis.cache.js';

/** Options to a cache: the one place that decides which backend a configuration gets. */
export async function createCache(options: CacheModuleOptions = {}): Promise<BaseCache> {
  if (options === null || typeof options !== 'object') {
    throw new CacheConfigError(
      messages.invalidOption(
        'options',
        options,
        'Pass an object of CacheModule options (or nothing).',
      ),
    );
  }
  if (options.enabled === false) return new NoopCache(options);
  const backend = options.backend ?? 'memory';
  if (backend === 'memory') return new MemoryCache(options);
  if (backend === 'redis') return RedisCache.create(options);
  if (backend === 'memcached') return MemcachedCache.create(options);
  if (backend === 'disk') return DiskCache.create(options);
  if (backend === 'keyv') return KeyvCache.create(options);
  if (typeof backend === 'function' && backend.prototype instanceof BaseCache) {
    return new (backend as new (options: CacheModuleOptions) => BaseCache)(options);
  }
  // A driver, or a function that makes one from the cache's context (clock, operationTimeout).
  const isClass =
    typeof backend === 'function' && /^class\b/.test(Function.prototype.toString.call(backend));
  if (
    (typeof backend === 'function' && !isClass) ||
    (typeof backend === 'object' && backend !== null)
  ) {
    return new DriverCache(backend as never, options);
  }
  throw new CacheConfigError(messages.unknownBackend(backend));
}
