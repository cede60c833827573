import { BaseCache, type BaseCacheOptions } from '../base-cache.js';

/** Options of the memcached backend (CacheModule option "memcached"). */
export interface MemcachedCacheOptions {}

/** The memcached backend: BaseCache on its driver. */
export class MemcachedCache extends BaseCache {
  /** Validates the options and opens the store; a bad option is a CacheConfigError naming it. */
  static async create(
    options: BaseCacheOptions & { memcached?: MemcachedCacheOptions } = {},
  ): Promise<MemcachedCache> {
    throw new Error(`the memcached backend is not built yet (${Object.keys(options).length})`);
  }
}
