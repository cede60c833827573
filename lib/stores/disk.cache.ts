import { BaseCache, type BaseCacheOptions } from '../base-cache.js';

/** Options of the disk backend (CacheModule option "disk"). */
export interface DiskCacheOptions {}

/** The disk backend: BaseCache on its driver. */
export class DiskCache extends BaseCache {
  /** Validates the options and opens the store; a bad option is a CacheConfigError naming it. */
  static async create(
    options: BaseCacheOptions & { disk?: DiskCacheOptions } = {},
  ): Promise<DiskCache> {
    throw new Error(`the disk backend is not built yet (${Object.keys(options).length})`);
  }
}
