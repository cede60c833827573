import { getHeapStatistics } from 'node:v8';
import { LRUCache } from 'lru-cache';
import {
  BaseCache,
  type BaseCacheOptions,
  type MaybePromise,
  type Step,
  type StoredEntry,
} from '../base-cache.js';
import { DEFAULT_MEMORY_MAX, DEFAULT_MEMORY_MAX_BYTES } from '../cache.constants.js';
import { CacheConfigError } from '../errors.js';
import { messages } from '../messages.js';

/** Bounds of the memory backend. It always has one: an unbounded cache is a memory leak. */
export interface MemoryCacheOptions {
  /**
   * Most entries held; the least recently used is evicted past it.
   * @default 10000
   */
  max?: number;
  /**
   * Most bytes held (serialized values plus keys); the least recently used entries are evicted
   * past it. An entry larger than this on its own is not stored, and the older value under its
   * key is removed.
   * @default 256 MiB, or a quarter of the V8 heap limit when that is smaller
   */
  maxBytes?: number;
}

/**
 * The embedded backend: an LRU (lru-cache) of serialized values. Values are stored as bytes,
 * so a caller mutating what it stored or read never changes the cache, and byte bounds are exact.
 * Expiry is checked on read: no timer per key.
 */
export class MemoryCache extends BaseCache {
  private readonly lru: LRUCache<string, Buffer>;
  private readonly maxEntryBytes: number;

  constructor(options: BaseCacheOptions & { memory?: MemoryCacheOptions } = {}) {
    super(options);
    const max = bound('max', options.memory?.max ?? DEFAULT_MEMORY_MAX);
    const maxBytes = bound('maxBytes', options.memory?.maxBytes ?? defaultMaxBytes());
    this.maxEntryBytes = maxBytes;
    this.lru = new LRUCache<string, Buffer>({
      max,
      maxSize: maxBytes,
      sizeCalculation: (bytes, key) => entrySize(key, bytes),
      ttlAutopurge: false,
      // Expiry follows the cache's clock, so tests can drive it.
      perf: { now: () => this.clock.now() },
      // lru-cache otherwise reuses one clock reading until a timer clears it, which a busy event
      // loop delays: ttl() right after set(k, v, 1) said 1.08 s. Always ask the clock.
      ttlResolution: 0,
    });
  }

  // Synchronous on purpose: BaseCache.get() then resolves without waiting a turn.
  protected readEntry(key: string): Buffer | undefined {
    return this.lru.get(key);
  }

  // Synchronous too: a call that answers at once needs no deadline (see BaseCache.attempt).
  protected writeEntry({ key, bytes, ttlMs }: StoredEntry): MaybePromise<boolean> {
    if (entrySize(key, bytes) > this.maxEntryBytes) {
      // The new value cannot be kept; the old one must not be served in its place.
      this.lru.delete(key);
      return false;
    }
    this.lru.set(key, ownMemory(bytes), { ttl: ttlMs ?? 0 });
    return true;
  }

  protected removeEntries(keys: string[]): MaybePromise<number> {
    let removed = 0;
    for (const key of keys) if (this.lru.delete(key)) removed += 1;
    return removed;
  }

  protected override async hasEntry(key: string): Promise<boolean> {
    return this.lru.has(key);
  }

  protected async entryTtl(key: string): Promise<number | null | undefined> {
    if (!this.lru.has(key)) return undefined;
    const ms = this.lru.getRemainingTTL(key);
    return ms === Infinity ? null : ms;
  }

  protected async clearNamespace(_namespace: string, _step: Step): Promise<void> {
    // This LRU holds only this cache's namespace.
    this.lru.clear();
  }

  protected async closeBackend(): Promise<void> {
    this.lru.clear();
  }
}

/**
 * A small Buffer is often a slice of an 8 KB slab that Node shares between allocations: kept as it
 * is, one tiny entry could hold the whole slab, and maxBytes would count a fraction of the memory
 * held. Entries are kept in memory of their own size.
 */
function ownMemory(bytes: Buffer): Buffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const own = Buffer.allocUnsafeSlow(bytes.byteLength);
  bytes.copy(own);
  return own;
}

/**
 * The default byte bound: a cache-buster flood on a large route must never exhaust the process,
 * whatever `max` is (10000 entries of 1 MB would be 10 GB).
 */
function defaultMaxBytes(): number {
  return Math.min(DEFAULT_MEMORY_MAX_BYTES, Math.floor(getHeapStatistics().heap_size_limit / 4));
}

function entrySize(key: string, bytes: Buffer): number {
  return bytes.length + key.length;
}

function bound(option: 'max' | 'maxBytes', value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new CacheConfigError(messages.unboundedMemory(option, value));
  }
  return value;
}
