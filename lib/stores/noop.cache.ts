import { BaseCache, type BaseCacheOptions } from '../base-cache.js';
import type { CacheDriver } from '../driver.js';

/** A driver that keeps nothing. */
export const noopDriver: CacheDriver = {
  name: 'noop',
  get: () => undefined,
  set: () => false,
  delete: () => 0,
  ttl: () => undefined,
  async *scan() {},
  close: () => undefined,
};

/**
 * The cache of `enabled: false`: keeps nothing, so every read misses and getOrSet always runs its
 * factory. Input is still validated, so code that works with caching off works with it on.
 */
export class NoopCache extends BaseCache {
  constructor(options: BaseCacheOptions = {}) {
    super(noopDriver, options);
  }
}
