import { createHash } from 'node:crypto';
import { Logger } from '@nestjs/common';
import {
  DEFAULT_GET_OR_SET_TIMEOUT,
  DEFAULT_OPERATION_TIMEOUT,
  DEFAULT_PREFIX,
  DEFAULT_TTL,
  MAX_KEY_LENGTH,
  MIN_CLOSE_WAIT_MS,
} from './cache.constants.js';
import {
  CacheClosedError,
  CacheConfigError,
  FactoryTimeoutError,
  InvalidKeyError,
  OperationTimeoutError,
  UnserializableValueError,
} from './errors.js';
import { type Clock, systemClock } from './clock.js';
import { Deadlines } from './deadlines.js';
import { FailurePolicy } from './failure-policy.js';
import { Flights, type Lead } from './flights.js';
import { messages, reasonOf } from './messages.js';
import {
  defaultSerializer,
  hasLoneSurrogate,
  type Serializer,
  withoutLoneSurrogates,
} from './serializer.js';
import { withDeadline } from './settle-within.js';
import { timeoutToMs, ttlToMs, type Ttl } from './ttl.js';

/** Options every backend understands; CacheModule passes its options through. */
export interface BaseCacheOptions {
  /**
   * Key namespace. Keys are stored as `${prefix}:${key}` (a ':' or '%' in the prefix is stored
   * %-escaped, so that no two prefixes overlap), and clear() removes only keys under it.
   * @default 'nest-cache'
   */
  prefix?: string;
  /**
   * Default time to live, in SECONDS when a number ('5m' and the like carry their unit; null never expires).
   * @default 60
   */
  ttl?: Ttl;
  /**
   * How long a single-flight lasts at most: getOrSet callers reject with FactoryTimeoutError when
   * its factory has not settled by then, and requests waiting on another request's response
   * (CacheInterceptor) run the handler themselves. From 1 ms to 24 days.
   * @default '10s'
   */
  getOrSetTimeout?: Exclude<Ttl, null>;
  /**
   * How long one backend call (a read, a write, a delete, clear, close) may take before it fails
   * open: a miss, a dropped write, counted as an error. Every call settles within it whatever the
   * backend does, and so does every caller sharing it. For Redis, keep it above
   * `redis.commandTimeout`. From 1 ms to 24 days.
   * @default '2s'
   */
  operationTimeout?: Exclude<Ttl, null>;
  /** How values become bytes. @default the built-in serializer (see README, "Values") */
  serializer?: Serializer;
  /**
   * Where time comes from: a `{ now(): number }` in milliseconds since the epoch. Pass a clock of
   * your own to drive TTLs in tests instead of sleeping (memory backend; Redis expires entries by
   * its own clock). @default the system clock
   */
  clock?: Clock;
}

/** One entry for setMany. */
export interface CacheEntry<T = unknown> {
  key: string;
  value: T;
  /** Seconds when a number; the cache default when left out. */
  ttl?: Ttl;
}

/** What a backend stores: serialized bytes under a full (prefixed) key, with a ttl in whole milliseconds. */
export interface StoredEntry {
  key: string;
  bytes: Buffer;
  ttlMs: number | null;
}

/** Counters since the cache was created. */
export interface CacheStats {
  hits: number;
  misses: number;
  writes: number;
  deletes: number;
  /**
   * Backend calls that failed (and failed open) or were skipped by the open circuit breaker.
   * Concurrent reads of one key share one call, so its failure counts once.
   */
  errors: number;
}

const MISS = Symbol('nest-cache:miss');

/**
 * The method CacheInterceptor reads with: get(), for a reader that never modifies what it reads.
 * Not exported from the package.
 */
export const readShared = Symbol('nest-cache:read-shared');

/** Bounds one round trip of a multi-step backend call (clear): its outcome, or a rejection after operationTimeout. */
export type Step = <T>(call: PromiseLike<T>) => Promise<T>;

/** A value, or a promise of it: what a backend that can answer synchronously returns. */
export type MaybePromise<T> = T | PromiseLike<T>;

/** Whether a backend answered with a promise (or any thenable) rather than the result itself. */
function isPending<T>(value: MaybePromise<T>): value is PromiseLike<T> {
  return (
    value instanceof Promise ||
    (value !== null &&
      (typeof value === 'object' || typeof value === 'function') &&
      typeof (value as { then?: unknown }).then === 'function')
  );
}

/**
 * The cache, and its injection token: `constructor(private readonly cache: BaseCache) {}`.
 *
 * This class does the shared work once (validation, TTL, namespacing, serialization,
 * single-flight, fail-open, close) so that a backend only implements the raw primitives
 * below on full keys and bytes. Write your own backend by extending it; the behaviour
 * suite in `nest-cache/testing` checks that it keeps the contract.
 */
export abstract class BaseCache {
  /** The key namespace of this cache. */
  readonly prefix: string;
  /** What every stored key of this cache starts with: the escaped prefix and ':'. */
  private readonly namespace: string;
  readonly stats: CacheStats = { hits: 0, misses: 0, writes: 0, deletes: 0, errors: 0 };
  protected readonly logger: Logger;
  private readonly defaultTtlMs: number | null;
  /** How long a single-flight lasts at most (getOrSet, CacheInterceptor's waiting requests). */
  readonly getOrSetTimeoutMs: number;
  /** How long one backend call may take before it fails open. */
  readonly operationTimeoutMs: number;
  /** How this cache turns values into bytes and back (CacheInterceptor snapshots values with it). */
  readonly serializer: Serializer;
  /** Where this cache's time comes from (CacheInterceptor dates its entries with it). */
  readonly clock: Clock;
  private readonly failures: FailurePolicy;
  /** Bounds every backend call by operationTimeout, with one timer. */
  private readonly deadlines: Deadlines;
  /** Single-flights by scope; see singleFlight(). */
  private readonly flightScopes = new Map<string, Flights<unknown>>();
  private readonly valueFlights: Flights<Buffer>;
  /** Backend reads in flight, by full key; see readBytes(). */
  private readonly readsInFlight = new Map<string, Promise<Uint8Array | null | undefined>>();
  /** The values of backend reads in flight, decoded once for every [readShared] caller. */
  private readonly sharedValues = new Map<string, Promise<unknown>>();
  private closing?: Promise<void>;

  constructor(options: BaseCacheOptions = {}) {
    this.prefix = validPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.namespace = `${escapePrefix(this.prefix)}:`;
    this.defaultTtlMs = ttlToMs(
      options.ttl === undefined ? DEFAULT_TTL : options.ttl,
      'CacheModule option "ttl"',
    );
    this.getOrSetTimeoutMs = timeoutToMs(
      options.getOrSetTimeout,
      'getOrSetTimeout',
      DEFAULT_GET_OR_SET_TIMEOUT,
    );
    this.operationTimeoutMs = timeoutToMs(
      options.operationTimeout,
      'operationTimeout',
      DEFAULT_OPERATION_TIMEOUT,
    );
    this.serializer = options.serializer ?? defaultSerializer;
    this.clock = validClock(options.clock ?? systemClock);
    this.logger = new Logger(this.constructor.name);
    this.failures = new FailurePolicy(this.constructor.name, this.logger, () => this.clock.now());
    this.valueFlights = new Flights<Buffer>(this.getOrSetTimeoutMs, this.clock);
    this.deadlines = new Deadlines(this.operationTimeoutMs);
  }

  // ---- backend primitives: full keys, bytes, whole milliseconds -------------------------

  /**
   * The bytes stored under `key`; undefined (or null) when it is missing or expired. A backend
   * that has them at hand may return them directly instead of a promise, which makes get() cheaper.
   */
  protected abstract readEntry(key: string): MaybePromise<Uint8Array | null | undefined>;
  /** Stores the entry; resolves false when the backend refused it (too large, say). */
  protected abstract writeEntry(entry: StoredEntry): MaybePromise<boolean>;
  /** Deletes the keys; resolves how many existed. */
  protected abstract removeEntries(keys: string[]): MaybePromise<number>;
  /** Remaining time to live in ms; null when the entry never expires; undefined when missing. */
  protected abstract entryTtl(key: string): Promise<number | null | undefined>;
  /** Deletes every key that starts with `namespace` (which ends with ':'), and nothing else. */
  /**
   * Deletes every key that starts with `namespace`, in as many round trips as it takes: pass each
   * one through `step`, which gives up on it (and so on clear()) after operationTimeout.
   */
  protected abstract clearNamespace(namespace: string, step: Step): Promise<void>;
  /** Releases what the backend opened. Called once. */
  protected abstract closeBackend(): Promise<void>;

  /** Override when the backend has a cheaper existence check. */
  protected async hasEntry(key: string): Promise<boolean> {
    return (await this.readEntry(key)) != null;
  }
  /** Override when the backend reads many keys in one round trip; undefined (or null) where missing. */
  protected readEntries(keys: string[]): Promise<(Uint8Array | null | undefined)[]> {
    return Promise.all(keys.map(async (key) => this.readEntry(key)));
  }
  /** Override when the backend writes many entries in one round trip. */
  protected async writeEntries(entries: StoredEntry[]): Promise<boolean> {
    const stored = await Promise.all(entries.map(async (entry) => this.writeEntry(entry)));
    return stored.every(Boolean);
  }

  // ---- the public contract --------------------------------------------------------------

  /** The value stored under `key`, or undefined on a miss (a stored null is a hit). */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    const full = this.keyFor(key, 'get');
    const read = this.readBytes(full);
    const found = this.decode(full, read instanceof Promise ? await read : read);
    return found === MISS ? undefined : (found as T);
  }

  /**
   * get() for a reader that never modifies the value it gets (CacheInterceptor): concurrent callers
   * of one key share one backend read and one decoded value, so a hot entry under load is decoded
   * once per round trip instead of once per caller. Everyone else gets a copy of their own: get().
   */
  async [readShared]<T = unknown>(key: string): Promise<T | undefined> {
    const full = this.keyFor(key, 'get');
    const joined = this.sharedValues.get(full);
    let found: unknown;
    if (joined) found = this.tally(await joined);
    else {
      const read = this.readBytes(full);
      found =
        read instanceof Promise ? await this.decodeShared(full, read) : this.decode(full, read);
    }
    return found === MISS ? undefined : (found as T);
  }

  /**
   * Stores `value` for `ttl` (SECONDS when a number; the cache default when left out).
   * Resolves true when stored, false when the backend dropped it (unavailable, or the
   * entry is too large); it rejects only for bad input.
   */
  async set<T>(key: string, value: T, ttl?: Ttl): Promise<boolean> {
    const entry = this.entryFor({ key, value, ttl }, 'set');
    this.forgetReads([entry.key]);
    const stored = await this.attempt('set', false, () => this.writeEntry(entry));
    if (stored) this.stats.writes += 1;
    return stored;
  }

  /** Deletes `key`; resolves whether it existed. */
  async delete(key: string): Promise<boolean> {
    const full = this.keyFor(key, 'delete');
    return (await this.remove([full])) > 0;
  }

  /** Whether `key` is stored and not expired. */
  async has(key: string): Promise<boolean> {
    const full = this.keyFor(key, 'has');
    return this.attempt('has', false, () => this.hasEntry(full));
  }

  /** Removes every key of this cache's namespace, and only those. */
  async clear(): Promise<void> {
    this.assertOpen('clear');
    this.forgetAllReads();
    // Not bounded as one call: a namespace is cleared in as many round trips as it takes (SCAN on
    // Redis); each is bounded through `step`, and a step given up on ends the walk.
    await this.attempt(
      'clear',
      undefined,
      () => this.clearNamespace(this.namespace, this.clearStep),
      false,
    );
  }

  /** Values for `keys`, in order; undefined where missing. */
  async getMany<T = unknown>(keys: string[]): Promise<(T | undefined)[]> {
    const full = this.keysFor(keys, 'getMany');
    const found = await this.attempt('getMany', [], () => this.readEntries(full));
    return full.map((key, i) => {
      const value = this.decode(key, found[i]);
      return value === MISS ? undefined : (value as T);
    });
  }

  /** Stores every entry, or none when one of them is invalid. Resolves true when all were stored. */
  async setMany<T>(entries: CacheEntry<T>[]): Promise<boolean> {
    if (!Array.isArray(entries))
      throw new TypeError('setMany expects an array of { key, value, ttl? }.');
    const stored = entries.map((entry) => this.entryFor(entry, 'setMany'));
    this.forgetReads(stored.map((entry) => entry.key));
    const ok = await this.attempt('setMany', false, () => this.writeEntries(stored));
    if (ok) this.stats.writes += stored.length;
    return ok;
  }

  /** Deletes `keys`; resolves how many existed. */
  async deleteMany(keys: string[]): Promise<number> {
    return this.remove(this.keysFor(keys, 'deleteMany'));
  }

  /**
   * The cached value of `key`, or the factory's value, cached for `ttl`. Concurrent callers of
   * the same missing key share one factory call; they wait at most `getOrSetTimeout`. A factory
   * error rejects every waiter and caches nothing. A factory that returns undefined caches nothing.
   */
  async getOrSet<T>(key: string, factory: () => T | Promise<T>, ttl?: Ttl): Promise<T> {
    const full = this.keyFor(key, 'getOrSet');
    const ttlMs = this.ttlFor(ttl);
    if (typeof factory !== 'function') {
      throw new TypeError(`getOrSet("${key}") needs a factory function as its second argument.`);
    }
    const read = this.readBytes(full);
    const found = this.decode(full, read instanceof Promise ? await read : read);
    if (found !== MISS) return found as T;

    const lead = this.valueFlights.lead(full);
    if (lead) void this.produce(key, full, factory, ttlMs, lead);
    const landing = await (lead ?? this.valueFlights.get(full)!).landing;
    switch (landing.kind) {
      case 'value':
        // Each caller decodes its own copy, so one caller mutating its value cannot change another's.
        return this.serializer.deserialize(landing.value) as T;
      case 'empty':
      case 'unshareable':
        return undefined as T;
      case 'error':
        throw landing.error;
      case 'timeout':
        throw new FactoryTimeoutError(messages.factoryTimeout(key, landing.waitedMs));
    }
  }

  /**
   * This cache's single-flight for `scope` (created on first use): concurrent callers of one key
   * share one run of the work, and every flight ends within getOrSetTimeout. Scopes starting with
   * 'nest-cache:' are nest-cache's own (CacheInterceptor uses 'nest-cache:responses'); getOrSet's
   * flights are not reachable here.
   */
  singleFlight<V>(scope: string): Flights<V> {
    let flights = this.flightScopes.get(scope);
    if (!flights) {
      this.flightScopes.set(scope, (flights = new Flights(this.getOrSetTimeoutMs, this.clock)));
    }
    return flights as Flights<V>;
  }

  /**
   * What this cache is waiting on right now: backend reads shared by concurrent callers (and the
   * decodes CacheInterceptor shares with them), and single-flights of every scope. Both are 0 once the load stops: every wait is bounded
   * (operationTimeout, getOrSetTimeout) and leaves nothing behind.
   */
  inFlight(): { reads: number; flights: number } {
    let flights = this.valueFlights.size;
    for (const scope of this.flightScopes.values()) flights += scope.size;
    return { reads: this.readsInFlight.size + this.sharedValues.size, flights };
  }

  /** Remaining seconds of `key`; null when it never expires; undefined when it is missing. */
  async ttl(key: string): Promise<number | null | undefined> {
    const full = this.keyFor(key, 'ttl');
    const ms = await this.attempt('ttl', undefined, () => this.entryTtl(full));
    return typeof ms === 'number' ? ms / 1_000 : ms;
  }

  /**
   * Releases the backend. Idempotent; resolves even when the backend is down. Calls made
   * afterwards reject with CacheClosedError. The module calls it at application shutdown.
   */
  close(): Promise<void> {
    // Not through attempt(): an open circuit breaker must not skip releasing the backend.
    this.closing ??= (async () => {
      try {
        // A backend's own shutdown may take longer than one call (RedisCache: QUIT, then up to
        // a second for a frozen server's socket), so close() waits at least MIN_CLOSE_WAIT_MS.
        const ms = Math.max(this.operationTimeoutMs, MIN_CLOSE_WAIT_MS);
        await withDeadline(
          this.closeBackend(),
          ms,
          () => new OperationTimeoutError(messages.operationTimeout('close', ms)),
        );
      } catch (error) {
        this.stats.errors += 1;
        this.failures.failed('close', error);
      }
    })();
    return this.closing;
  }

  /** Whether close() was called. */
  get isClosed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Logs a backend problem noticed outside a call (a dropped connection, say) under the same
   * rate limit as failed calls. Never put values or passwords in `message`.
   */
  protected reportBackendProblem(message: string): void {
    this.failures.warn(message);
  }

  // ---- shared work ----------------------------------------------------------------------

  /**
   * Runs a backend call, failing open: a backend error is counted, logged (rate-limited)
   * and replaced by `fallback`, so a cache problem never fails the caller.
   */
  private async attempt<T>(
    operation: string,
    fallback: T,
    call: () => MaybePromise<T>,
    bounded = true,
  ): Promise<T> {
    if (this.failures.isOpen()) {
      this.stats.errors += 1;
      return fallback;
    }
    try {
      const pending = call();
      let result: T;
      if (!isPending(pending)) result = pending;
      else if (!bounded) result = await pending;
      else result = await this.bounded(operation, pending);
      this.failures.succeeded();
      return result;
    } catch (error) {
      this.stats.errors += 1;
      this.failures.failed(operation, error);
      return fallback;
    }
  }

  private readonly clearStep: Step = (call) => this.bounded('clear', call);

  /**
   * The backend call's outcome, or an OperationTimeoutError once operationTimeout (up to a quarter
   * more: one timer serves every call, see Deadlines) has passed without one.
   */
  private bounded<T>(operation: string, pending: PromiseLike<T>): Promise<T> {
    return this.deadlines.within(
      pending,
      () =>
        new OperationTimeoutError(messages.operationTimeout(operation, this.operationTimeoutMs)),
    );
  }

  /**
   * readEntry, failing open like attempt(): the bytes, or undefined when the entry is missing, the
   * backend failed or the breaker is open. Not async, so that a backend answering synchronously
   * (memory) costs get() no extra turn of the microtask queue: get and getOrSet are the hot path.
   */
  private readBytes(
    full: string,
  ): Uint8Array | null | undefined | Promise<Uint8Array | null | undefined> {
    if (this.failures.isOpen()) {
      this.stats.errors += 1;
      return undefined;
    }
    // Concurrent reads of one key share the backend call in flight (a hot key under load is read
    // once per round trip, not once per caller); each caller still decodes its own copy. The
    // outcome of a shared read is counted once (stats.errors, the circuit breaker), like any call.
    const pending = this.readsInFlight.size === 0 ? undefined : this.readsInFlight.get(full);
    if (pending) return pending;
    let read: MaybePromise<Uint8Array | null | undefined>;
    try {
      read = this.readEntry(full);
    } catch (error) {
      return this.readFailed(error);
    }
    if (!isPending(read)) {
      this.failures.succeeded();
      return read;
    }
    // Bounded, so that a read the backend never answers cannot hold everyone who joins it.
    const shared: Promise<Uint8Array | null | undefined> = this.bounded('get', read).then(
      (bytes) => {
        this.endRead(full, shared);
        return this.readSucceeded(bytes);
      },
      (error: unknown) => {
        this.endRead(full, shared);
        return this.readFailed(error);
      },
    );
    this.readsInFlight.set(full, shared);
    return shared;
  }

  private endRead(full: string, read: Promise<unknown>): void {
    if (this.readsInFlight.get(full) === read) this.readsInFlight.delete(full);
  }

  /** A write or delete of these keys is starting: reads from now on must not join older ones. */
  private forgetReads(full: string[]): void {
    if (this.readsInFlight.size > 0) for (const key of full) this.readsInFlight.delete(key);
    if (this.sharedValues.size > 0) for (const key of full) this.sharedValues.delete(key);
  }

  private forgetAllReads(): void {
    this.readsInFlight.clear();
    this.sharedValues.clear();
  }

  private readonly readSucceeded = (bytes: Uint8Array | null | undefined) => {
    this.failures.succeeded();
    return bytes;
  };

  private readonly readFailed = (error: unknown): undefined => {
    this.stats.errors += 1;
    this.failures.failed('get', error);
    return undefined;
  };

  /** Decodes a pending read once, for every [readShared] caller that joins it meanwhile. */
  private async decodeShared(
    full: string,
    read: Promise<Uint8Array | null | undefined>,
  ): Promise<unknown> {
    // Neither the read (it fails open) nor decode (a corrupt entry is a miss) rejects.
    const shared = read.then((bytes) => this.decode(full, bytes));
    this.sharedValues.set(full, shared);
    const found = await shared;
    if (this.sharedValues.get(full) === shared) this.sharedValues.delete(full);
    return found;
  }

  /** The caller's value, or MISS; counts the hit or miss. */
  private decode(full: string, bytes: Uint8Array | null | undefined): unknown {
    if (bytes == null) return this.tally(MISS);
    try {
      return this.tally(this.serializer.deserialize(bytes));
    } catch (error) {
      // A corrupt entry (written by another program, or an older format) is a miss, and is removed.
      this.failures.warn(messages.corruptEntry(full, reasonOf(error)));
      void this.remove([full]);
      return this.tally(MISS);
    }
  }

  /** Counts what one caller found, a value or MISS, and hands it on. */
  private tally(found: unknown): unknown {
    this.stats[found === MISS ? 'misses' : 'hits'] += 1;
    return found;
  }

  private async remove(full: string[]): Promise<number> {
    this.forgetReads(full);
    const removed = await this.attempt('delete', 0, () => this.removeEntries(full));
    this.stats.deletes += removed;
    return removed;
  }

  /**
   * Runs getOrSet's factory for its flight: lands the value for every caller at once, then stores
   * it; the flight ends after the write, so a caller arriving meanwhile gets the value too.
   */
  private async produce(
    key: string,
    full: string,
    factory: () => unknown,
    ttlMs: number | null,
    lead: Lead<Buffer>,
  ): Promise<void> {
    try {
      const value = await factory();
      if (value === undefined) return; // nothing to cache: end() lands the flight empty
      const bytes = this.encode(key, value);
      lead.land({ kind: 'value', value: bytes });
      this.forgetReads([full]);
      const stored = await this.attempt('set', false, () =>
        this.writeEntry({ key: full, bytes, ttlMs }),
      );
      if (stored) this.stats.writes += 1;
    } catch (error) {
      lead.land({ kind: 'error', error });
    } finally {
      lead.end();
    }
  }

  private entryFor(entry: CacheEntry, operation: string): StoredEntry {
    if (entry === null || typeof entry !== 'object') {
      throw new TypeError(`${operation} expects entries of the form { key, value, ttl? }.`);
    }
    const key = this.keyFor(entry.key, operation);
    return { key, ttlMs: this.ttlFor(entry.ttl), bytes: this.encode(entry.key, entry.value) };
  }

  private encode(key: string, value: unknown): Buffer {
    if (value === undefined) throw new UnserializableValueError(messages.undefinedValue(key));
    try {
      return this.serializer.serialize(value);
    } catch (error) {
      if (!(error instanceof UnserializableValueError)) throw error;
      throw new UnserializableValueError(messages.unserializableAt(key, error.message), {
        cause: error,
      });
    }
  }

  private ttlFor(ttl: Ttl | undefined): number | null {
    return ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl);
  }

  private keysFor(keys: string[], operation: string): string[] {
    if (!Array.isArray(keys)) throw new InvalidKeyError(`${operation} expects an array of keys.`);
    return keys.map((key) => this.keyFor(key, operation));
  }

  private keyFor(key: string, operation: string): string {
    this.assertOpen(operation);
    if (typeof key !== 'string' || key.length === 0)
      throw new InvalidKeyError(messages.invalidKey(key));
    return this.namespace + storedKey(key);
  }

  private assertOpen(operation: string): void {
    if (this.closing) throw new CacheClosedError(messages.closed(operation));
  }
}

/** What a key shortened by storedKey() ends with: '…#' and 64 hex digits. */
const SHORTENED = /…#[0-9a-f]{64}$/;

/**
 * The key as a backend stores it: the key itself, or a readable head and a SHA-256 of its UTF-16
 * code units when it is longer than MAX_KEY_LENGTH, holds a lone surrogate (which UTF-8, and so
 * Redis, would turn into U+FFFD), or already looks like a shortened key (so a key typed to look
 * like another's shortened form never reaches its entry). Distinct keys never share an entry.
 */
function storedKey(key: string): string {
  if (key.length <= MAX_KEY_LENGTH && !hasLoneSurrogate(key) && !looksShortened(key)) return key;
  const hash = createHash('sha256').update(Buffer.from(key, 'utf16le')).digest('hex');
  // The head is only for people reading the keys; a surrogate cut in half or alone becomes U+FFFD.
  return `${withoutLoneSurrogates(key.slice(0, 128))}…#${hash}`;
}

/** Whether `key` ends like a shortened key; the regular expression runs only on the rare key that might. */
function looksShortened(key: string): boolean {
  const hash = key.length - 64;
  return hash >= 2 && key.charCodeAt(hash - 1) === 0x23 && SHORTENED.test(key);
}

/** '%' and ':' %-escaped: then the first ':' of a stored key ends its prefix, and prefixes never overlap. */
function escapePrefix(prefix: string): string {
  return prefix.replace(/[%:]/g, (c) => (c === '%' ? '%25' : '%3A'));
}

function validClock(clock: unknown): Clock {
  if (typeof (clock as Clock | null)?.now !== 'function') {
    throw new CacheConfigError(
      messages.invalidOption(
        'clock',
        clock,
        'Use an object with a now() method returning milliseconds since the epoch.',
      ),
    );
  }
  return clock as Clock;
}

function validPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length === 0 || hasLoneSurrogate(prefix))
    throw new CacheConfigError(messages.invalidPrefix(prefix));
  return prefix;
}
