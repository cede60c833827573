/** A value, or a promise of it: what a driver that can answer synchronously returns. */
export type MaybePromise<T> = T | PromiseLike<T>;

/** Bounds one round trip of a multi-step driver call (scan): its outcome, or a rejection after operationTimeout. */
export type Step = <T>(call: PromiseLike<T>) => Promise<T>;

/** What a driver stores: bytes under a full key, with a time to live in whole milliseconds (null: never expires). */
export interface DriverEntry {
  key: string;
  bytes: Uint8Array;
  ttlMs: number | null;
}

/**
 * A backend: raw operations on full keys and bytes. BaseCache composes one and does everything
 * else (keys, TTL, serialization, entry metadata, tags, fail-open, breaker, stats, single-flight,
 * close), so a driver is small: memory, Redis and a custom store each implement this interface.
 *
 * Every method may answer directly instead of with a promise (memory does: reads then cost no turn
 * of the microtask queue). Every call is bounded by the cache's operationTimeout, and a driver
 * error fails open: a driver throws or rejects freely and never needs to catch.
 *
 * A driver declares what it does natively by implementing the optional methods: `getMany` and
 * `setMany` (batching), `increment` (atomic counters), `touchTags` and `invalidateTags` (atomic tag
 * records), `clear`. Without them BaseCache does the work with the required methods; counters and
 * tag records are then atomic only within one process (fine for an in-process store).
 *
 * `nest-cache/testing` runs the behaviour suite against a driver: `driverBehaviourSuite`.
 */
export interface CacheDriver {
  /** Names the backend in log lines: 'memory', 'redis'. */
  readonly name: string;
  /** Where it keeps entries, for the startup log line: 'redis 10.0.0.1:6379'. Never credentials. */
  readonly location?: string;
  /**
   * Declares that get() hands out the very object it stored, unchanged until the key is written
   * again (with a new object): an in-process store. BaseCache then decodes each entry's envelope
   * once, not on every read. Leave it out unless that holds.
   */
  readonly keepsBytes?: boolean;

  /** The bytes stored under `key`; undefined (or null) when it is missing or expired. */
  get(key: string): MaybePromise<Uint8Array | null | undefined>;
  /** Stores the bytes; resolves false when the driver refused them (too large, say). */
  set(key: string, bytes: Uint8Array, ttlMs: number | null): MaybePromise<boolean>;
  /** Deletes the keys; resolves how many existed. */
  delete(keys: string[]): MaybePromise<number>;
  /** Remaining time to live in ms; null when the key never expires; undefined when it is missing. */
  ttl(key: string): MaybePromise<number | null | undefined>;
  /** Releases what the driver opened. Called once. */
  close(): MaybePromise<void>;
  /**
   * The keys that start with `prefix`, in batches, each round trip through `step`. `pattern` is a
   * hint (a Redis-style glob, already escaped, for the rest of the key): a driver may use it to
   * send fewer keys, or ignore it; BaseCache filters the keys exactly either way.
   *
   * A store that cannot list its keys (Memcached) leaves scan out and implements `clear`; then
   * deleteByPattern clears the whole namespace (it can only over-invalidate, never miss a key).
   */
  scan?(prefix: string, pattern: string | undefined, step: Step): AsyncIterable<string[]>;

  /** Reads many keys in one round trip; undefined (or null) where missing. */
  getMany?(keys: string[]): MaybePromise<(Uint8Array | null | undefined)[]>;
  /** Writes many entries in one round trip: all, or none. */
  setMany?(entries: DriverEntry[]): MaybePromise<boolean>;
  /**
   * Adds `by` to the integer counter under `key` (stored as its decimal ASCII digits), atomically;
   * a missing counter starts at 0 and gets `ttlMs`. Resolves the new value. Rejects with
   * NotACounterError when the key holds something else.
   */
  increment?(key: string, by: number, ttlMs: number | null): MaybePromise<number>;
  /**
   * Creates each tag record missing, holding `createdAt` (ms since the epoch, a whole number, as
   * String() writes it), and makes each live until `expiresAt` (ms since the epoch; null: forever)
   * at least, atomically per record. A record that exists keeps what it holds. (A record missing
   * while entries carry its tag was lost, with whatever invalidation it held: holding `createdAt`,
   * it acts as an invalidation at that time, so the older entries are misses.)
   */
  touchTags?(keys: string[], expiresAt: number | null, createdAt: number): MaybePromise<void>;
  /**
   * Sets each tag record to `at` (ms since the epoch, as String() writes it: it may have a
   * fraction), atomically per record: a record keeps its expiry, pushed to `keepMs` from now at
   * least; a missing one is created to live `keepMs` (writes in progress may still carry the tag).
   */
  invalidateTags?(keys: string[], at: number, keepMs: number): MaybePromise<void>;
  /**
   * Deletes every key that starts with one of `prefixes`, natively (an LRU of its own: clear it;
   * a store that cannot list keys: move to a new namespace generation). Required without `scan`.
   */
  clear?(prefixes: string[], step: Step): MaybePromise<void>;

  /** One round trip to the store, for health checks (Redis: PING); without it, a get. */
  ping?(): MaybePromise<unknown>;

  /**
   * Takes the lease `key` for `ttlMs` unless another holder has it (Redis: SET NX PX), storing
   * `token`; resolves whether it was taken. With renewLease and releaseLease, what the
   * `distributedSingleFlight` option needs: a store every instance of the app shares.
   */
  acquireLease?(key: string, token: string, ttlMs: number): MaybePromise<boolean>;
  /** Makes the lease `key` last `ttlMs` from now if it still holds `token`, atomically. */
  renewLease?(key: string, token: string, ttlMs: number): MaybePromise<void>;
  /** Removes the lease `key` if it still holds `token` (compare-and-delete), atomically. */
  releaseLease?(key: string, token: string): MaybePromise<void>;
}

/** Whether a driver answered with a promise (or any thenable) rather than the result itself. */
export function isPending<T>(value: MaybePromise<T>): value is PromiseLike<T> {
  return (
    value instanceof Promise ||
    (value !== null &&
      (typeof value === 'object' || typeof value === 'function') &&
      typeof (value as { then?: unknown }).then === 'function')
  );
}
