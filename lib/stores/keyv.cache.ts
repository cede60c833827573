import { BaseCache, type BaseCacheOptions } from '../base-cache.js';

/** Options of the keyv backend (CacheModule option "keyv"). */
export interface KeyvCacheOptions {}

/** The keyv backend: BaseCache on its driver. */
export class KeyvCache extends BaseCache {
  /** Validates the options and opens the store; a bad option is a CacheConfigError naming it. */
  static async create(
    options: BaseCacheOptions & { keyv?: KeyvCacheOptions } = {},
  ): Promise<KeyvCache> {
    throw new Error(`the keyv backend is not built yet (${Object.keys(options).length})`);
  }
}
