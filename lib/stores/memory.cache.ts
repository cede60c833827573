import { getHeapStatistics } from 'node:v8';
import { LRUCache } from 'lru-cache';
import { knownKeysOnly } from '../option-keys.js';
import { BaseCache, type BaseCacheOptions } from '../base-cache.js';
import { DEFAULT_MEMORY_MAX, DEFAULT_MEMORY_MAX_BYTES, SCAN_BATCH } from '../cache.constants.js';
import type { Clock } from '../clock.js';
import type { CacheDriver } from '../driver.js';
import { decodeCounter, encodeCounter } from '../entry.js';
import { CacheConfigError, NotACounterError } from '../errors.js';
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

/** A tag record of the memory driver: kept apart from the LRU, so that eviction never forgets an invalidation. */
interface TagRecord {
  bytes: Buffer;
  expiresAt: number | null;
}

/**
 * The embedded driver: an LRU (lru-cache) of bytes. Values are stored as bytes, so a caller
 * mutating what it stored or read never changes the cache, and byte bounds are exact. Expiry is
 * checked on read: no timer per key. Every method answers synchronously, so it is atomic.
 */
export class MemoryDriver implements CacheDriver {
  readonly name = 'memory';
  /** get() returns the Buffer set() stored (a copy of its own, see ownMemory), never changed. */
  readonly keepsBytes = true;
  private readonly lru: LRUCache<string, Buffer>;
  private readonly maxEntryBytes: number;
  /** Tag records, pruned of expired ones whenever their number doubles (see prune()). */
  private readonly tags = new Map<string, TagRecord>();
  private pruneAt = TAG_PRUNE_MIN;

  constructor(
    options: MemoryCacheOptions = {},
    private readonly clock: Clock,
    /** Told of each entry evicted to stay within max and maxBytes (stats.evictions). */
    onEvict?: (count: number) => void,
  ) {
    // A misspelt bound (maxEntries) would leave the default in force without a word.
    knownKeysOnly('memory', options, ['max', 'maxBytes']);
    const max = bound('max', options.max ?? DEFAULT_MEMORY_MAX);
    const maxBytes = bound('maxBytes', options.maxBytes ?? defaultMaxBytes());
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
      ...(onEvict && {
        dispose: (_bytes: Buffer, _key: string, reason: LRUCache.DisposeReason) => {
          if (reason === 'evict') onEvict(1);
        },
      }),
    });
  }

  /**
   * How many tag records the driver holds right now, expired ones not yet pruned included. Read
   * only; for tests of their bound (see prune()).
   */
  get tagRecords(): number {
    return this.tags.size;
  }

  get(key: string): Buffer | undefined {
    return this.lru.get(key) ?? (this.tags.size === 0 ? undefined : this.liveTag(key)?.bytes);
  }

  set(key: string, bytes: Uint8Array, ttlMs: number | null): boolean {
    if (entrySize(key, bytes) > this.maxEntryBytes) {
      // The new value cannot be kept; the old one must not be served in its place.
      this.lru.delete(key);
      return false;
    }
    this.lru.set(key, ownMemory(bytes), { ttl: ttlMs ?? 0 });
    return true;
  }

  delete(keys: string[]): number {
    let removed = 0;
    for (const key of keys) if (this.lru.delete(key) || this.tags.delete(key)) removed += 1;
    return removed;
  }

  ttl(key: string): number | null | undefined {
    if (this.lru.has(key)) {
      const ms = this.lru.getRemainingTTL(key);
      return ms === Infinity ? null : ms;
    }
    const tag = this.liveTag(key);
    if (!tag) return undefined;
    return tag.expiresAt === null ? null : tag.expiresAt - this.clock.now();
  }

  async *scan(prefix: string): AsyncIterable<string[]> {
    // A snapshot: the caller deletes while it walks.
    const keys = [...this.lru.keys(), ...this.tags.keys()].filter((key) => key.startsWith(prefix));
    for (let i = 0; i < keys.length; i += SCAN_BATCH) yield keys.slice(i, i + SCAN_BATCH);
  }

  clear(): void {
    // This driver holds one cache's keys only.
    this.lru.clear();
    this.tags.clear();
  }

  close(): void {
    this.clear();
  }

  increment(key: string, by: number, ttlMs: number | null): number {
    const bytes = this.lru.get(key);
    if (bytes === undefined) {
      this.set(key, encodeCounter(by), ttlMs);
      return by;
    }
    const current = decodeCounter(bytes);
    if (current === undefined) throw new NotACounterError(messages.notACounter(key));
    const value = current + by;
    const remaining = this.lru.getRemainingTTL(key);
    this.set(key, encodeCounter(value), remaining === Infinity ? null : Math.max(1, remaining));
    return value;
  }

  touchTags(keys: string[], expiresAt: number | null, createdAt: number): void {
    for (const key of keys) {
      const tag = this.liveTag(key);
      if (!tag) this.tags.set(key, { bytes: encodeCounter(createdAt), expiresAt });
      else if (tag.expiresAt !== null && (expiresAt === null || expiresAt > tag.expiresAt)) {
        tag.expiresAt = expiresAt;
      }
    }
    if (this.tags.size >= this.pruneAt) this.prune();
  }

  invalidateTags(keys: string[], at: number, keepMs: number): void {
    const keepUntil = this.clock.now() + keepMs;
    for (const key of keys) {
      const tag = this.liveTag(key);
      if (!tag) this.tags.set(key, { bytes: encodeCounter(at), expiresAt: keepUntil });
      else {
        tag.bytes = encodeCounter(at);
        if (tag.expiresAt !== null && tag.expiresAt < keepUntil) tag.expiresAt = keepUntil;
      }
    }
    if (this.tags.size >= this.pruneAt) this.prune();
  }

  private liveTag(key: string): TagRecord | undefined {
    const tag = this.tags.get(key);
    if (tag?.expiresAt != null && tag.expiresAt <= this.clock.now()) {
      this.tags.delete(key);
      return undefined;
    }
    return tag;
  }

  /**
   * Drops expired tag records. Runs when the records have doubled since the last prune, so the
   * map holds at most twice the records that have not expired (plus TAG_PRUNE_MIN), at an
   * amortized constant cost per touch.
   */
  private prune(): void {
    const now = this.clock.now();
    for (const [key, tag] of this.tags) {
      if (tag.expiresAt !== null && tag.expiresAt <= now) this.tags.delete(key);
    }
    this.pruneAt = Math.max(TAG_PRUNE_MIN, this.tags.size * 2);
  }
}

/** Below this many tag records the memory driver never prunes them. */
const TAG_PRUNE_MIN = 1_000;

/**
 * The embedded cache: BaseCache on a MemoryDriver.
 */
export class MemoryCache extends BaseCache {
  constructor(options: BaseCacheOptions & { memory?: MemoryCacheOptions } = {}) {
    super(
      (context) =>
        new MemoryDriver(options.memory, context.clock, (count) => context.evicted?.(count)),
      options,
    );
  }
}

/**
 * A small Buffer is often a slice of an 8 KB slab that Node shares between allocations: kept as it
 * is, one tiny entry could hold the whole slab, and maxBytes would count a fraction of the memory
 * held. Entries are kept in memory of their own size.
 */
function ownMemory(bytes: Uint8Array): Buffer {
  if (
    Buffer.isBuffer(bytes) &&
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength
  ) {
    return bytes;
  }
  const own = Buffer.allocUnsafeSlow(bytes.byteLength);
  own.set(bytes);
  return own;
}

/**
 * The default byte bound: a cache-buster flood on a large route must never exhaust the process,
 * whatever `max` is (10000 entries of 1 MB would be 10 GB).
 */
function defaultMaxBytes(): number {
  return Math.min(DEFAULT_MEMORY_MAX_BYTES, Math.floor(getHeapStatistics().heap_size_limit / 4));
}

function entrySize(key: string, bytes: Uint8Array): number {
  return bytes.byteLength + key.length;
}

function bound(option: 'max' | 'maxBytes', value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new CacheConfigError(messages.unboundedMemory(option, value));
  }
  return value;
}
