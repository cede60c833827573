import { BaseCache, type StoredEntry } from '../base-cache.js';

/**
 * The cache of `enabled: false`: keeps nothing, so every read misses and getOrSet always runs its
 * factory. Input is still validated, so code that works with caching off works with it on.
 */
export class NoopCache extends BaseCache {
  protected async readEntry(): Promise<undefined> {
    return undefined;
  }
  protected async writeEntry(_entry: StoredEntry): Promise<boolean> {
    return false;
  }
  protected async removeEntries(): Promise<number> {
    return 0;
  }
  protected async entryTtl(): Promise<undefined> {
    return undefined;
  }
  protected async clearNamespace(): Promise<void> {}
  protected async closeBackend(): Promise<void> {}
}
