import type { BreakerState } from './failure-policy.js';

/**
 * What `cache.on(event, listener)` hands each listener. Keys are the keys you gave the cache (no
 * prefix). Listeners run synchronously inside the cache call: keep them cheap; one that throws is
 * logged (rate-limited) and never fails the call.
 */
export interface CacheEventMap {
  /** A fresh entry served: get, getOrSet, @Cacheable, a CacheInterceptor HIT. */
  hit: { key: string };
  /** No entry to serve: the caller runs (or waited for) the factory or handler. */
  miss: { key: string };
  /** A stale entry served (staleWhileRevalidate, staleIfError). */
  stale: { key: string };
  /** An entry stored (one event per entry of a setMany). */
  set: { key: string };
  /**
   * Entries removed: `keys` for delete and deleteMany; undefined for deleteByPattern, clear and
   * invalidateTags (`count` is what they removed, 0 where the backend cannot count).
   */
  delete: { keys: readonly string[] | undefined; count: number };
  /** A backend call that failed (and failed open), or gave up after operationTimeout. */
  error: { operation: string; error: unknown };
  /** The circuit breaker opened: calls fail open at once until `openUntil` (the cache's clock). */
  breakerOpen: { consecutiveFailures: number; openUntil: number };
  /** The circuit breaker closed again: a call succeeded. */
  breakerClose: Record<string, never>;
}

/** The events `cache.on()` takes: 'hit', 'miss', 'stale', 'set', 'delete', 'error', 'breakerOpen', 'breakerClose'. */
export type CacheEventName = keyof CacheEventMap;
/** A listener of one event, given what that event carries (see CacheEventMap). */
export type CacheListener<E extends CacheEventName> = (event: CacheEventMap[E]) => void;

/**
 * The listeners of one cache. `active` counts them, so that a call with nobody listening pays one
 * property read (no payload is built).
 */
export class CacheEvents {
  active = 0;
  private readonly listeners = new Map<CacheEventName, Set<CacheListener<never>>>();

  constructor(private readonly listenerFailed: (event: string, error: unknown) => void) {}

  /** Adds `listener` to `event`; returns the function that removes it again. */
  on<E extends CacheEventName>(event: E, listener: CacheListener<E>): () => void {
    if (typeof listener !== 'function') {
      throw new TypeError(`cache.on("${event}", listener) needs a function as its listener.`);
    }
    let set = this.listeners.get(event) as Set<CacheListener<E>> | undefined;
    if (!set) this.listeners.set(event, (set = new Set()) as Set<CacheListener<never>>);
    if (!set.has(listener)) {
      set.add(listener);
      this.active += 1;
    }
    const listeners = set;
    return () => {
      if (listeners.delete(listener)) this.active -= 1;
    };
  }

  emit<E extends CacheEventName>(event: E, payload: CacheEventMap[E]): void {
    const set = this.listeners.get(event) as Set<CacheListener<E>> | undefined;
    if (!set || set.size === 0) return;
    for (const listener of set) {
      try {
        const returned: unknown = listener(payload);
        // An async listener's rejection would otherwise go unhandled (and end the process).
        if (returned instanceof Promise)
          returned.catch((error) => this.listenerFailed(event, error));
      } catch (error) {
        this.listenerFailed(event, error);
      }
    }
  }
}

/**
 * `cache.stats`: counters since the cache was created or last reset, a live object (read it any
 * time; it changes as the cache works). `hitRatio` and `breaker` are computed when read;
 * `reset()` sets the counters to 0; JSON.stringify gives every field.
 */
export class CacheCounters {
  hits = 0;
  misses = 0;
  /** Stale entries served (getOrSet's stale windows, CacheInterceptor's STALE responses). */
  stale = 0;
  /** Entries stored. */
  writes = 0;
  /** Entries removed by delete, deleteMany, deleteByPattern, invalidateTags (where counted). */
  deletes = 0;
  /** Entries the backend dropped to stay within its bounds (memory's max and maxBytes; disk's maxSize). */
  evictions = 0;
  /**
   * Backend calls that failed (and failed open) or were skipped by the open circuit breaker.
   * Concurrent reads of one key share one call, so its failure counts once.
   */
  errors = 0;
  /** Of the errors, the calls given up after operationTimeout. */
  timeouts = 0;

  readonly #breakerNow: () => BreakerState;

  constructor(breakerNow: () => BreakerState) {
    this.#breakerNow = breakerNow;
  }

  /** (hits + stale) / (hits + stale + misses): what was served from the cache; 0 before any read. */
  get hitRatio(): number {
    const served = this.hits + this.stale;
    const all = served + this.misses;
    return all === 0 ? 0 : served / all;
  }

  /** The circuit breaker's state now (cache.breaker has its details). */
  get breaker(): BreakerState['state'] {
    return this.#breakerNow().state;
  }

  /** Sets every counter to 0 (the breaker is left as it is). */
  reset(): void {
    this.hits = this.misses = this.stale = this.writes = this.deletes = 0;
    this.evictions = this.errors = this.timeouts = 0;
  }

  toJSON() {
    const { hits, misses, stale, writes, deletes, evictions, errors, timeouts } = this;
    return {
      hits,
      misses,
      stale,
      writes,
      deletes,
      evictions,
      errors,
      timeouts,
      hitRatio: this.hitRatio,
      breaker: this.breaker,
    };
  }
}
