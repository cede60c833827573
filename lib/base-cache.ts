import { createHash, randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import {
  DEFAULT_GET_OR_SET_TIMEOUT,
  DEFAULT_OPERATION_TIMEOUT,
  DEFAULT_PREFIX,
  DEFAULT_TTL,
  MAX_KEY_LENGTH,
  MAX_TAGS,
  MIN_CLOSE_WAIT_MS,
  BREAKER_COOLDOWN_MS,
  BREAKER_THRESHOLD,
} from './cache.constants.js';
import {
  CacheClosedError,
  CacheConfigError,
  FactoryTimeoutError,
  InvalidKeyError,
  InvalidTagError,
  InvalidTtlError,
  NotACounterError,
  OperationTimeoutError,
  UnserializableValueError,
} from './errors.js';
import { type Clock, systemClock } from './clock.js';
import {
  CacheCounters,
  type CacheEventName,
  CacheEvents,
  type CacheListener,
} from './cache-stats.js';
import { Deadlines } from './deadlines.js';
import { type CacheTraceContext, type TracedOperation, traces } from './tracing.js';
import {
  CacheMetrics,
  type CacheMetricsOptions,
  cacheName,
  metricsSettings,
  type ServedBy,
} from './metrics.js';
import {
  type CacheDriver,
  type DriverEntry,
  isPending,
  type MaybePromise,
  type Step,
} from './driver.js';
import { incrementWith, invalidateTagsWith, touchTagsWith } from './driver-fallbacks.js';
import {
  decodeCounter,
  decodeEntry,
  decodeTagTime,
  type Entry,
  type EntryMeta,
  encodeEntry,
  staleFor,
} from './entry.js';
import { type BreakerSettings, type BreakerState, FailurePolicy } from './failure-policy.js';
import { knownKeysOnly } from './option-keys.js';
import { Flights, landingWithin, type Lead } from './flights.js';
import { compileGlob } from './glob.js';
import { messages, reasonOf } from './messages.js';
import {
  defaultSerializer,
  hasLoneSurrogate,
  type Serializer,
  withoutLoneSurrogates,
} from './serializer.js';
import { noop, settleWithin, withDeadline } from './settle-within.js';
import { MAX_TIMER_MS, timeoutToMs, ttlToMs, type Ttl } from './ttl.js';

export type { MaybePromise, Step } from './driver.js';

/** Options every cache understands; CacheModule passes its options through. */
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
   * Where time comes from: a `{ now(): number }` in milliseconds since the epoch. Every freshness,
   * staleness and tag decision reads it, and the memory backend expires entries by it, so a test
   * can drive time instead of sleeping (Redis also drops entries by its own clock, once their
   * last stale window has passed). @default the system clock
   */
  clock?: Clock;
  /**
   * The circuit breaker: after `threshold` backend calls fail in a row, calls fail open at once
   * (without waiting on the backend) for `cooldown`; then calls go through again, and the first
   * success closes it (the first failure opens it again). Its state: `cache.breaker`.
   * @default { threshold: 5, cooldown: '1s' }
   */
  breaker?: { threshold?: number; cooldown?: Exclude<Ttl, null> };
  /**
   * The largest value stored, in bytes as the serializer wrote it: a larger one is not stored
   * (`set()` resolves false, with a warning) and the older entry under its key is removed, so a
   * stale value never survives a failed overwrite. A backend may refuse less (memcached's item
   * size, the memory backend's maxBytes). null: no cap but the backend's.
   * @default 16 MiB
   */
  maxValueBytes?: number | null;
  /**
   * One origin call per fleet: concurrent misses of one key across every instance of the app that
   * shares the store (getOrSet, @Cacheable, CacheInterceptor) share one run of the factory or
   * handler, through a lease in the store (Redis: SET NX PX, released by compare-and-delete once
   * the value is stored). The instances that lose the lease wait for the winner's entry, polling,
   * and run the work themselves only when the lease ends without one (the run failed, or its
   * process died: a lease lasts getOrSetTimeout at most). Stale serving works as without it.
   * While the store fails, every instance runs the work itself (fail open). Without this option
   * single-flight is per process. Needs a backend with leases: 'redis'.
   * @default false
   */
  distributedSingleFlight?: boolean;
  /**
   * What this cache is called in its metrics (`cache.name`). CacheModule sets it to the name it
   * registers the cache under.
   * @default the prefix (two caches must not share a name: their counts would be one series)
   */
  name?: string;
  /**
   * OpenTelemetry metrics (see README, "Stats, events and tracing"): counters of hits, misses,
   * stale entries and errors, through `metrics.getMeterProvider()` of @opentelemetry/api (a no-op,
   * costing nothing, until the app registers an SDK before it creates the cache) or
   * `meterProvider`; `durations: true` adds the histogram of how long each operation took (about
   * 0.9 µs per call with the SDK). `keyGroup` adds a `cache.key_group` attribute (200 groups at
   * most). false: none.
   * @default true
   */
  metrics?: boolean | CacheMetricsOptions;
}

/** How an entry is written: set()'s third argument (a Ttl alone also works). */
export interface SetOptions {
  /** Seconds when a number; the cache default when left out; null never expires. */
  ttl?: Ttl;
  /** Tags of the entry: invalidateTags() of any of them removes it. */
  tags?: string[];
  /**
   * How long past its ttl the entry may still be served by getOrSet (and @Cacheable,
   * CacheInterceptor) at once while one background refresh runs. Needs a ttl.
   */
  staleWhileRevalidate?: Exclude<Ttl, null>;
  /**
   * How long past its ttl the entry may still be served when its refresh fails or times out.
   * Needs a ttl.
   */
  staleIfError?: Exclude<Ttl, null>;
}

/** getOrSet()'s third argument (a Ttl alone also works). */
export interface GetOrSetOptions extends SetOptions {
  /**
   * With staleIfError: when the factory takes longer than this and a stale value exists, the stale
   * value is returned and the factory finishes in the background (its result is then stored).
   */
  softTimeout?: Exclude<Ttl, null>;
}

/** One entry for setMany. */
export interface CacheEntry<T = unknown> extends SetOptions {
  key: string;
  value: T;
}

/** Counters since the cache was created. */
export interface CacheStats {
  hits: number;
  misses: number;
  /** Stale entries served (getOrSet's stale windows, CacheInterceptor's STALE responses). */
  stale: number;
  writes: number;
  deletes: number;
  /** Entries the backend dropped to stay within its bounds (memory, disk). */
  evictions: number;
  /**
   * Backend calls that failed (and failed open) or were skipped by the open circuit breaker.
   * Concurrent reads of one key share one call, so its failure counts once.
   */
  errors: number;
  /** Of the errors, the calls given up after operationTimeout. */
  timeouts: number;
}

/** What a cache gives the driver it composes, when it makes it. */
export interface DriverContext {
  /** The cache's clock. */
  readonly clock: Clock;
  /** The cache's operationTimeout: a driver's own timeouts should stay below it. */
  readonly operationTimeoutMs: number;
  /** Logs a backend problem noticed outside a call (a dropped connection), rate-limited. Never put values or passwords in it. */
  warn(message: string): void;
  /**
   * What every key this cache hands the driver starts with: its entries' namespace is this plus
   * ':', its tag records' this plus '%t:'. A driver that keeps state of its own in the store (a
   * namespace generation, say) names it under this prefix followed by '%' and a letter other than
   * 't' (memcached and Keyv use '%g'), never by ':', so it can collide with no key of the cache.
   */
  readonly keyPrefix: string;
  /** Counts entries the driver dropped to stay within its bounds (stats.evictions). */
  evicted?(count: number): void;
}

/** An entry read and decoded: its metadata and value (a counter has no envelope: plain metadata). */
export interface Found<T = unknown> {
  meta: EntryMeta;
  value: T;
}

/** The write policy of one call, validated: whole milliseconds, tags checked. */
interface Policy {
  ttlMs: number | null;
  /** How long past ttl the entry is kept at all: the larger stale window. */
  keepMs: number;
  swrMs: number;
  sieMs: number;
  softMs: number | undefined;
  tags: readonly string[];
}

const MISS = Symbol('nest-cache:miss');
/** A read that failed (or that the open breaker skipped): a miss, which a tag check must tell apart from a missing record. */
const FAILED = Symbol('nest-cache:failed');
type ReadBytes = Uint8Array | null | undefined | typeof FAILED;
type Read = Entry | typeof MISS;

/**
 * CacheInterceptor's read: the entry of `key` while it may be served at all (fresh or stale), its
 * value shared with concurrent callers (who must never modify it). Not exported from the package.
 */
export const readShared = Symbol('nest-cache:read-shared');
/** How CacheInterceptor counts what it served from a [readShared] read. Not exported from the package. */
export const countServed = Symbol('nest-cache:count-served');
/**
 * CacheInterceptor's write of what a flight produced: dated when the flight started, and dropped
 * when its key or a tag was invalidated meanwhile. Not exported from the package.
 */
export const storeLed = Symbol('nest-cache:store-led');

/** Where a tag record lives: beside the namespace, never inside it (see tagKey()). */
const TAG_NAMESPACE = '%t:';
const SERVED_EVENTS = { hits: 'hit', misses: 'miss', stale: 'stale' } as const;
const EVENT_NAMES: ReadonlySet<string> = new Set<CacheEventName>([
  'hit',
  'miss',
  'stale',
  'set',
  'delete',
  'error',
  'breakerOpen',
  'breakerClose',
]);

/** Where the leases of distributedSingleFlight live: beside the namespace too (see leaseKey()). */
const LEASE_NAMESPACE = '%l:';
/** A fleet flight's loser looks for the winner's entry after 5 ms, then twice as late, every 50 ms at most. */
const FIRST_LEASE_POLL_MS = 5;
const MAX_LEASE_POLL_MS = 50;
/**
 * A lease lasts a third of getOrSetTimeout, renewed three times as often while its flight runs: a
 * holder that died holds the key back that long at most, and the instances waiting still have
 * two thirds of their own flight's time to run the work themselves.
 */
const LEASE_SHARE = 3;
const LEASE_RENEWALS = 3;

/**
 * CacheInterceptor's turn in a fleet flight; see BaseCache.fleetTurnOf. Not exported from the
 * package.
 */
export const fleetTurn = Symbol('nest-cache:fleet-turn');

/**
 * The cache, and its injection token: `constructor(private readonly cache: BaseCache) {}`.
 *
 * It does the shared work once (validation, TTL, namespacing, serialization, entry metadata,
 * tags, stale serving, single-flight, fail-open, stats, close) on a driver it composes: a small
 * object of raw operations on full keys and bytes (see CacheDriver). MemoryCache, RedisCache and
 * DriverCache are this class on the memory driver, the Redis driver and a driver of yours.
 */
export abstract class BaseCache {
  /** The key namespace of this cache. */
  readonly prefix: string;
  /** What every stored key of this cache starts with: the escaped prefix and ':'. */
  private readonly namespace: string;
  /** What every tag record of this cache starts with: the escaped prefix and '%t:'. */
  private readonly tagNamespace: string;
  /** What every lease of this cache starts with: the escaped prefix and '%l:'. */
  private readonly leaseNamespace: string;
  /** Whether misses take a lease in the store first: see BaseCacheOptions.distributedSingleFlight. */
  private readonly fleet: boolean;
  /** Names this cache's leases (with a count), so that it releases only its own. */
  private readonly leaseHolder = randomUUID();
  private leasesTaken = 0;
  /** How long a lease lasts unless renewed: a third of getOrSetTimeout (see leaseOrEntry). */
  private readonly leaseMs: number;
  /** The leases this cache holds now (key to token), released by close() too. */
  private readonly heldLeases = new Map<string, string>();
  /**
   * Counters since the cache was created or `stats.reset()`: a property, a live object (see
   * CacheCounters): hits, misses, stale, writes, deletes, evictions, errors, timeouts, and the
   * computed hitRatio and breaker.
   */
  readonly stats: CacheCounters = new CacheCounters(() => this.failures.state());
  /** See on(). */
  private readonly events = new CacheEvents((event, error) => {
    // Said once per event, apart from the backend's rate limit: a listener that throws on every
    // call must not hold the backend's own errors out of the log.
    if (this.listenerWarned.has(event)) return;
    this.listenerWarned.add(event);
    this.logger.warn(messages.listenerFailed(event, reasonOf(error)));
  });
  private readonly listenerWarned = new Set<string>();

  /**
   * Calls `listener` on each `event` of this cache: 'hit', 'miss', 'stale', 'set', 'delete',
   * 'error', 'breakerOpen', 'breakerClose' (see CacheEventMap for what each carries). Returns the
   * function that removes it. Listeners run synchronously within the call: keep them cheap.
   *
   * @example const off = cache.on('miss', ({ key }) => misses.add(1, { key: group(key) }));
   */
  on<E extends CacheEventName>(event: E, listener: CacheListener<E>): () => void {
    if (!EVENT_NAMES.has(event)) {
      throw new TypeError(
        `cache.on("${String(event)}"): no such event. Use one of ${[...EVENT_NAMES].join(', ')}.`,
      );
    }
    return this.events.on(event, listener);
  }

  /** The backend this cache runs on, as its driver names itself: 'memory', 'redis', 'memcached', 'disk', 'keyv', or a driver of yours. */
  get backend(): string {
    return this.driver.name;
  }

  /** One line for the log: the backend and where it keeps entries (never credentials), and the prefix. */
  describe(): string {
    const { name, location } = this.driver;
    return messages.cacheDescribed(name, location, this.prefix);
  }

  /** The circuit breaker now: closed, open (until when) or half-open, and its thresholds. */
  get breaker(): BreakerState {
    return this.failures.state();
  }

  protected readonly logger: Logger;
  /** The driver this cache composes. */
  protected readonly driver: CacheDriver;
  private readonly defaultTtlMs: number | null;
  /** See BaseCacheOptions.maxValueBytes (Infinity: no cap). */
  private readonly maxValueBytes: number;
  /** How long a single-flight lasts at most (getOrSet, CacheInterceptor's waiting requests). */
  readonly getOrSetTimeoutMs: number;
  /** How long one backend call may take before it fails open. */
  readonly operationTimeoutMs: number;
  /** How this cache turns values into bytes and back (CacheInterceptor snapshots values with it). */
  readonly serializer: Serializer;
  /** Where this cache's time comes from. */
  readonly clock: Clock;
  private readonly failures: FailurePolicy;
  /** See BaseCacheOptions.metrics. */
  private readonly metrics: CacheMetrics;
  /** Bounds every backend call by operationTimeout, with one timer. */
  private readonly deadlines: Deadlines;
  /** Single-flights by scope; see singleFlight(). getOrSet's are 'nest-cache:values'. */
  private readonly flightScopes = new Map<string, Flights<unknown>>();
  private readonly valueFlights: Flights<Buffer>;
  /** Backend reads in flight, by full key; see readBytes(). */
  private readonly readsInFlight = new Map<string, Promise<ReadBytes>>();
  /** The entries of backend reads in flight, decoded once for every [readShared] caller. */
  private readonly sharedReads = new Map<string, Promise<Found | undefined>>();
  /** Decoded envelopes of the bytes a driver keeps (see CacheDriver.keepsBytes), by those bytes. */
  private readonly envelopes = new WeakMap<Uint8Array, Entry>();
  /** The latest stamp() given: stamps of this process only ever grow. */
  private lastStamp = -Infinity;
  /** The clock of this cache's flights: a flight starts with a stamp(). */
  private readonly stampClock: Clock = { now: () => this.stamp() };
  /** Fallback read-then-write work in progress, by full key; see serially(). */
  private readonly serialized = new Map<string, Promise<void>>();
  private closing?: Promise<void>;

  protected constructor(
    driver: CacheDriver | ((context: DriverContext) => CacheDriver),
    options: BaseCacheOptions = {},
  ) {
    this.prefix = validPrefix(options.prefix ?? DEFAULT_PREFIX);
    this.namespace = `${escapePrefix(this.prefix)}:`;
    this.tagNamespace = `${escapePrefix(this.prefix)}${TAG_NAMESPACE}`;
    this.leaseNamespace = `${escapePrefix(this.prefix)}${LEASE_NAMESPACE}`;
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
    this.maxValueBytes = validMaxValueBytes(options.maxValueBytes);
    // Checked before the driver opens anything, so that a bad value never leaks a connection.
    const fleet = validFleet(options.distributedSingleFlight);
    const metrics = metricsSettings(options.metrics);
    const name = cacheName(options.name, this.prefix);
    this.serializer = options.serializer ?? defaultSerializer;
    this.clock = validClock(options.clock ?? systemClock);
    this.logger = new Logger(this.constructor.name);
    this.failures = new FailurePolicy(
      this.constructor.name,
      this.logger,
      () => this.clock.now(),
      breakerSettings(options.breaker),
      (state) => {
        if (!this.events.active) return;
        if (state.openUntil === null) this.events.emit('breakerClose', {});
        else {
          const { consecutiveFailures, openUntil } = state;
          this.events.emit('breakerOpen', { consecutiveFailures, openUntil });
        }
      },
    );
    this.valueFlights = this.singleFlight<Buffer>('nest-cache:values');
    this.deadlines = new Deadlines(this.operationTimeoutMs);
    this.driver = validDriver(
      typeof driver === 'function'
        ? driver({
            clock: this.clock,
            operationTimeoutMs: this.operationTimeoutMs,
            warn: (message) => this.failures.warn(message),
            evicted: (count) => void (this.stats.evictions += count),
            keyPrefix: escapePrefix(this.prefix),
          })
        : driver,
    );
    this.leaseMs = Math.max(1, Math.ceil(this.getOrSetTimeoutMs / LEASE_SHARE));
    this.fleet = fleetOption(fleet, this.driver);
    // Last: nothing after it can throw and leave its callback registered with the meter.
    // The meter keeps what it calls back: only a weak reference to this cache, so that a cache
    // nobody closed can still be collected (its callback is removed then).
    const self = new WeakRef(this);
    this.metrics = new CacheMetrics(metrics, name, this.driver.name, (message) =>
      self.deref()?.failures.warn(message),
    );
    if (this.metrics.on) unclosedMetrics.register(this, this.metrics, this.metrics);
  }

  // ---- reads ------------------------------------------------------------------------------

  /** The value stored under `key`, or undefined on a miss (a stored null is a hit). Stale entries are misses here. */
  get<T = unknown>(key: string): Promise<T | undefined> {
    if (!traces.get.hasSubscribers && !this.metrics.timing) return this.untracedGet<T>(key);
    return this.observed(
      'get',
      key,
      () => this.untracedGet<T>(key),
      () => ({ key }),
    );
  }

  private async untracedGet<T = unknown>(key: string): Promise<T | undefined> {
    const full = this.keyFor(key, 'get');
    // Awaited only when pending: on memory, a hit costs no turn of the microtask queue, and one
    // clock reading.
    const now = this.clock.now();
    const read = this.readEntry(full, now);
    const entry = read instanceof Promise ? await read : read;
    if (entry === MISS || !this.isFresh(entry, now))
      return this.tally(undefined, 'misses', key, 'get');
    const value = this.valueOf(full, entry);
    return value === MISS ? undefined : (this.tally(value, 'hits', key, 'get') as T);
  }

  /** Whether `key` holds a fresh entry. */
  has(key: string): Promise<boolean> {
    if (!traces.has.hasSubscribers && !this.metrics.timing) return this.untracedHas(key);
    return this.observed(
      'has',
      key,
      () => this.untracedHas(key),
      () => ({ key }),
    );
  }

  private async untracedHas(key: string): Promise<boolean> {
    const full = this.keyFor(key, 'has');
    const entry = await this.readEntry(full);
    return entry !== MISS && this.isFresh(entry);
  }

  /** Values for `keys`, in order; undefined where missing (or stale). */
  getMany<T = unknown>(keys: string[]): Promise<(T | undefined)[]> {
    if (!traces.getMany.hasSubscribers && !this.metrics.timing)
      return this.untracedGetMany<T>(keys);
    return this.observed(
      'getMany',
      undefined,
      () => this.untracedGetMany<T>(keys),
      () => ({ keys }),
    );
  }

  private async untracedGetMany<T = unknown>(keys: string[]): Promise<(T | undefined)[]> {
    const full = this.keysFor(keys, 'getMany');
    const found = await this.attempt('getMany', [], () =>
      this.driver.getMany
        ? this.driver.getMany(full)
        : Promise.all(full.map(async (key) => this.driver.get(key))),
    );
    return Promise.all(
      full.map(async (stored, i) => {
        // Counted under the key as given (listeners and key groups see no prefix).
        const key = keys[i]!;
        const entry = await this.opened(stored, found[i]);
        if (entry === MISS || !this.isFresh(entry))
          return this.tally(undefined, 'misses', key, 'getMany');
        const value = this.valueOf(stored, entry);
        return value === MISS ? undefined : (this.tally(value, 'hits', key, 'getMany') as T);
      }),
    );
  }

  /** Remaining fresh seconds of `key`; null when it never expires; undefined when it is missing or stale. */
  ttl(key: string): Promise<number | null | undefined> {
    if (!traces.ttl.hasSubscribers && !this.metrics.timing) return this.untracedTtl(key);
    return this.observed(
      'ttl',
      key,
      () => this.untracedTtl(key),
      () => ({ key }),
    );
  }

  private async untracedTtl(key: string): Promise<number | null | undefined> {
    const full = this.keyFor(key, 'ttl');
    const entry = await this.readEntry(full);
    if (entry === MISS || !this.isFresh(entry)) return undefined;
    if (isCounter(entry)) {
      // A counter has no envelope: its expiry is the driver's.
      const ms = await this.attempt('ttl', undefined, () => this.driver.ttl(full));
      return typeof ms === 'number' ? ms / 1_000 : ms;
    }
    return entry.freshUntil === null ? null : (entry.freshUntil - this.clock.now()) / 1_000;
  }

  /**
   * See readShared: the entry while it may be served (fresh or stale), decoded once per backend
   * read for every concurrent caller. Counts nothing: the caller counts what it serves (count()).
   */
  async [readShared]<T = unknown>(key: string): Promise<Found<T> | undefined> {
    const full = this.keyFor(key, 'get');
    const joined = this.sharedReads.get(full);
    if (joined) return (await joined) as Found<T> | undefined;
    const read = this.readBytes(full);
    if (!(read instanceof Promise)) {
      const entry = this.opened(full, read, this.clock.now(), true);
      return (
        entry instanceof Promise ? this.foundOf(full, await entry) : this.foundOf(full, entry)
      ) as Found<T> | undefined;
    }
    // One promise for every caller of this read: the bytes, opened and decoded once.
    const shared = read.then((bytes) => {
      const entry = this.opened(full, bytes);
      return entry instanceof Promise
        ? entry.then((opened) => this.foundOf(full, opened))
        : this.foundOf(full, entry);
    });
    this.sharedReads.set(full, shared);
    try {
      return (await shared) as Found<T> | undefined;
    } finally {
      if (this.sharedReads.get(full) === shared) this.sharedReads.delete(full);
    }
  }

  /**
   * See fleetTurnOf, for CacheInterceptor's flights: 'run', or the entry another instance stored
   * (decoded, shared like a [readShared] read), or 'over'.
   */
  [fleetTurn](key: string, lead: Lead<unknown>): 'run' | Promise<Found | 'run' | 'over'> {
    if (!this.fleet) return 'run';
    // Not keyFor(): a background refresh may get here after close() (leaseOrEntry then says 'run').
    return this.leaseOrEntry(this.namespace + storedKey(key), lead);
  }

  /**
   * Runs an operation traced (when its channel has subscribers: see tracing.ts) and timed (when
   * metrics record durations). The public methods call it only when one of the two is on: then
   * what it allocates costs little beside what a subscriber or an SDK costs.
   */
  private observed<T>(
    operation: TracedOperation,
    key: string | undefined,
    run: () => Promise<T>,
    fields: () => Pick<CacheTraceContext, 'key' | 'keys' | 'pattern' | 'tags'>,
  ): Promise<T> {
    const trace = traces[operation];
    const call = trace.hasSubscribers
      ? () => trace.tracePromise(run, this.traceContext(operation, fields()))
      : run;
    return this.metrics.timing ? this.metrics.timed(operation, key, call) : call();
  }

  /** What a tracing channel's subscribers get of an operation (see CacheTraceContext). */
  private traceContext(
    operation: TracedOperation,
    fields: Pick<CacheTraceContext, 'key' | 'keys' | 'pattern' | 'tags'>,
  ): CacheTraceContext {
    return { operation, cache: this.prefix, backend: this.driver.name, ...fields };
  }

  /** See countServed: counts what a [readShared] caller served. */
  [countServed](what: 'hits' | 'misses' | 'stale', key: string): void {
    this.served(what, key, 'interceptor');
  }

  // ---- writes -----------------------------------------------------------------------------

  /**
   * Stores `value`. The third argument is a ttl (SECONDS when a number; the cache default when
   * left out) or `{ ttl, tags, staleWhileRevalidate, staleIfError }`. Resolves true when stored,
   * false when the backend dropped it (unavailable, or the entry is too large); it rejects only
   * for bad input.
   */
  set<T>(key: string, value: T, options?: Ttl | SetOptions): Promise<boolean> {
    if (!traces.set.hasSubscribers && !this.metrics.timing)
      return this.untracedSet(key, value, options);
    return this.observed(
      'set',
      key,
      () => this.untracedSet(key, value, options),
      () => ({ key }),
    );
  }

  private async untracedSet<T>(
    key: string,
    value: T,
    options?: Ttl | SetOptions,
  ): Promise<boolean> {
    const full = this.keyFor(key, 'set');
    const policy = this.policyFor(options, 'set');
    const bytes = this.encode(key, value);
    return this.store(key, full, bytes, policy, this.stamp(), undefined);
  }

  /** Stores every entry, or none when one of them is invalid. Resolves true when all were stored. */
  setMany<T>(entries: CacheEntry<T>[]): Promise<boolean> {
    if (!traces.setMany.hasSubscribers && !this.metrics.timing)
      return this.untracedSetMany(entries);
    return this.observed(
      'setMany',
      undefined,
      () => this.untracedSetMany(entries),
      () => ({
        keys: Array.isArray(entries) ? entries.map((entry) => entry?.key) : undefined,
      }),
    );
  }

  private async untracedSetMany<T>(entries: CacheEntry<T>[]): Promise<boolean> {
    if (!Array.isArray(entries))
      throw new TypeError('setMany expects an array of { key, value, ttl?, tags? }.');
    const storedAt = this.stamp();
    const prepared = entries.map((entry) => {
      if (entry === null || typeof entry !== 'object') {
        throw new TypeError('setMany expects entries of the form { key, value, ttl?, tags? }.');
      }
      const full = this.keyFor(entry.key, 'setMany');
      const policy = this.policyFor(entry, 'setMany');
      const body = this.encode(entry.key, entry.value);
      return {
        full,
        policy,
        body,
        entry: this.driverEntry(entry.key, full, body, policy, storedAt),
      };
    });
    this.forget(prepared.map(({ full }) => full));
    // None is stored when one is too large, and none of the older values survives the overwrite.
    if (entries.filter((entry, i) => this.oversize(entry.key, prepared[i]!.body)).length > 0) {
      await this.remove(prepared.map(({ full }) => full));
      return false;
    }
    const tags = [...new Set(prepared.flatMap(({ policy }) => policy.tags))];
    if (tags.length > 0) {
      const expiresAt = latest(prepared.map(({ policy }) => this.keptUntil(policy, storedAt)));
      if (!(await this.touchTags(tags, expiresAt))) return false;
    }
    const all = prepared.map(({ entry }) => entry);
    const ok = await this.attempt('setMany', false, () =>
      this.driver.setMany
        ? this.driver.setMany(all)
        : Promise.all(all.map(async (e) => this.driver.set(e.key, e.bytes, e.ttlMs))).then((r) =>
            r.every(Boolean),
          ),
    );
    if (ok) this.wrote(entries.map((entry) => entry.key));
    return ok;
  }

  /** Deletes `key`; resolves whether it existed. */
  delete(key: string): Promise<boolean> {
    if (!traces.delete.hasSubscribers && !this.metrics.timing) return this.untracedDelete(key);
    return this.observed(
      'delete',
      key,
      () => this.untracedDelete(key),
      () => ({ key }),
    );
  }

  private async untracedDelete(key: string): Promise<boolean> {
    const full = this.keyFor(key, 'delete');
    this.valueFlightsInvalidate((k) => k === key);
    const count = await this.remove([full]);
    this.removed([key], count);
    return count > 0;
  }

  /** Deletes `keys`; resolves how many existed. */
  deleteMany(keys: string[]): Promise<number> {
    if (!traces.deleteMany.hasSubscribers && !this.metrics.timing)
      return this.untracedDeleteMany(keys);
    return this.observed(
      'deleteMany',
      undefined,
      () => this.untracedDeleteMany(keys),
      () => ({ keys }),
    );
  }

  private async untracedDeleteMany(keys: string[]): Promise<number> {
    const full = this.keysFor(keys, 'deleteMany');
    const doomed = new Set(keys);
    this.valueFlightsInvalidate((k) => doomed.has(k));
    const count = await this.remove(full);
    this.removed(keys, count);
    return count;
  }

  /**
   * Deletes every key of this cache matching `pattern`, a glob in Redis' syntax matched against
   * the keys as you wrote them: `*` any run of characters, `?` one, `[abc]`, `[a-z]`, `[^a]`,
   * `\` escapes. Walks the namespace (SCAN on Redis, never KEYS). Resolves how many were deleted.
   */
  deleteByPattern(pattern: string): Promise<number> {
    if (!traces.deleteByPattern.hasSubscribers && !this.metrics.timing)
      return this.untracedDeleteByPattern(pattern);
    return this.observed(
      'deleteByPattern',
      undefined,
      () => this.untracedDeleteByPattern(pattern),
      () => ({ pattern }),
    );
  }

  private async untracedDeleteByPattern(pattern: string): Promise<number> {
    this.assertOpen('deleteByPattern');
    const glob = compileGlob(pattern);
    this.valueFlightsInvalidate((key) => glob.regex.test(key));
    this.forgetAll();
    const { scan, clear } = this.driver;
    if (!scan) {
      // A store that cannot list its keys: every entry of the namespace goes (never too few).
      const cleared = await this.attempt(
        'deleteByPattern',
        false,
        async () => (await clear!.call(this.driver, [this.namespace], this.scanStep), true),
      );
      if (cleared) {
        this.failures.warn(messages.patternClearsNamespace(this.driver.name, pattern));
        this.removed(undefined, 0);
      }
      return 0;
    }
    let removed = 0;
    const sweep = async (hint: string | undefined) => {
      for await (const batch of scan.call(this.driver, this.namespace, hint, this.scanStep)) {
        const plain: string[] = [];
        const shortened: string[] = [];
        for (const full of batch) {
          const key = full.slice(this.namespace.length);
          if (looksShortened(key)) shortened.push(full);
          else if (glob.regex.test(key)) plain.push(full);
        }
        // A shortened key is matched by the user's key its entry keeps.
        if (shortened.length > 0) {
          const bytes = await this.scanStep(
            Promise.resolve(
              this.driver.getMany
                ? this.driver.getMany(shortened)
                : Promise.all(shortened.map(async (k) => this.driver.get(k))),
            ),
          );
          shortened.forEach((full, i) => {
            const entry = bytes[i] == null ? undefined : decodeEntry(bytes[i]!);
            if (entry?.key !== undefined && glob.regex.test(entry.key)) plain.push(full);
          });
        }
        if (plain.length > 0)
          removed += await this.scanStep(Promise.resolve(this.driver.delete(plain)));
      }
    };
    await this.attempt(
      'deleteByPattern',
      undefined,
      async () => {
        await sweep(glob.hint);
        // A key stored shortened (too long, or with a lone surrogate) need not match the hint.
        if (glob.hint !== '*') await sweep('*…#*');
      },
      false,
    );
    this.stats.deletes += removed;
    this.removed(undefined, removed);
    return removed;
  }

  /**
   * Invalidates every entry tagged with one of `tags`, in every process sharing the backend: they
   * are misses from now on. Costs one write per tag, whatever the number of entries.
   */
  invalidateTags(tags: string[]): Promise<void> {
    if (!traces.invalidateTags.hasSubscribers && !this.metrics.timing)
      return this.untracedInvalidateTags(tags);
    return this.observed(
      'invalidateTags',
      undefined,
      () => this.untracedInvalidateTags(tags),
      () => ({ tags }),
    );
  }

  private async untracedInvalidateTags(tags: string[]): Promise<void> {
    this.assertOpen('invalidateTags');
    const valid = validTags(tags, 'invalidateTags');
    if (valid.length === 0) return;
    const doomed = new Set(valid);
    this.valueFlightsInvalidate((_key, leadTags) => leadTags.some((tag) => doomed.has(tag)));
    // Later than every write started before it, here or (within its millisecond) elsewhere;
    // earlier than every write this process starts later.
    const at = this.invalidationStamp();
    const keys = valid.map((tag) => this.tagKey(tag));
    this.forget(keys);
    // A shared read that checked its entry's tags before now must not be joined from now on.
    this.sharedReads.clear();
    // A record created now must outlive every write in progress that may carry the tag.
    const keepMs = this.longestWriteMs();
    await this.attempt('invalidateTags', undefined, () =>
      this.driver.invalidateTags
        ? this.driver.invalidateTags(keys, at, keepMs)
        : Promise.all(
            keys.map((key) =>
              this.serially(key, () => invalidateTagsWith(this.driver, [key], at, keepMs)),
            ),
          ),
    );
    this.removed(undefined, 0);
  }

  /**
   * How long a write may still land after its run started: the longest flight, then its write
   * (given up after operationTimeout and a quarter).
   */
  private longestWriteMs(): number {
    return this.getOrSetTimeoutMs + Math.ceil(this.operationTimeoutMs * 1.25);
  }

  /** Removes every key of this cache's namespace (and its tag records), and only those. */
  clear(): Promise<void> {
    if (!traces.clear.hasSubscribers && !this.metrics.timing) return this.untracedClear();
    return this.observed(
      'clear',
      undefined,
      () => this.untracedClear(),
      () => ({}),
    );
  }

  private async untracedClear(): Promise<void> {
    this.assertOpen('clear');
    this.valueFlightsInvalidate(() => true);
    this.forgetAll();
    const prefixes = [this.namespace, this.tagNamespace];
    // Not bounded as one call: a namespace is cleared in as many round trips as it takes (SCAN on
    // Redis); each is bounded through `step`, and a step given up on ends the walk.
    await this.attempt(
      'clear',
      undefined,
      async () => {
        const { scan, clear } = this.driver;
        if (clear) return clear.call(this.driver, prefixes, this.scanStep);
        for (const prefix of prefixes) {
          for await (const keys of scan!.call(this.driver, prefix, undefined, this.scanStep)) {
            await this.scanStep(Promise.resolve(this.driver.delete(keys)));
          }
        }
      },
      false,
    );
    this.removed(undefined, 0);
  }

  /**
   * Adds `by` (default 1) to the counter under `key`, atomically on Redis, and resolves the new
   * value; a missing counter starts at 0 and gets `ttl` (the cache default when left out; later
   * calls keep its expiry). Resolves undefined when the backend is unavailable. Rejects with
   * NotACounterError when `by` is not a safe integer or the key holds another value.
   */
  increment(key: string, by = 1, ttl?: Ttl): Promise<number | undefined> {
    if (!traces.increment.hasSubscribers && !this.metrics.timing)
      return this.untracedIncrement(key, by, ttl);
    return this.observed(
      'increment',
      key,
      () => this.untracedIncrement(key, by, ttl),
      () => ({ key }),
    );
  }

  private async untracedIncrement(key: string, by = 1, ttl?: Ttl): Promise<number | undefined> {
    const full = this.keyFor(key, 'increment');
    if (typeof by !== 'number' || !Number.isSafeInteger(by)) {
      throw new NotACounterError(messages.invalidIncrement(key, by));
    }
    const ttlMs = this.ttlFor(ttl, 'increment');
    this.valueFlightsInvalidate((k) => k === key);
    this.forget([full]);
    const value = await this.attempt('increment', undefined, () =>
      this.driver.increment
        ? this.driver.increment(full, by, ttlMs)
        : this.serially(full, () => incrementWith(this.driver, full, by, ttlMs)),
    );
    if (value !== undefined) this.wrote([key]);
    return value;
  }

  /** increment(key, -by, ttl). */
  async decrement(key: string, by = 1, ttl?: Ttl): Promise<number | undefined> {
    if (typeof by !== 'number' || !Number.isSafeInteger(by)) {
      throw new NotACounterError(messages.invalidIncrement(key, by));
    }
    return this.increment(key, -by, ttl);
  }

  // ---- getOrSet ---------------------------------------------------------------------------

  /**
   * The cached value of `key`, or the factory's value, cached. The third argument is a ttl or
   * `{ ttl, tags, staleWhileRevalidate, staleIfError, softTimeout }`. Concurrent callers of the
   * same missing key share one factory call; they wait at most `getOrSetTimeout`. A factory error
   * rejects every waiter and caches nothing (unless a stale value may be served instead, see
   * staleIfError). A factory that returns undefined caches nothing.
   */
  getOrSet<T>(
    key: string,
    factory: () => T | PromiseLike<T>,
    options?: Ttl | GetOrSetOptions,
  ): Promise<T> {
    if (!traces.getOrSet.hasSubscribers && !this.metrics.timing)
      return this.untracedGetOrSet(key, factory, options);
    return this.observed(
      'getOrSet',
      key,
      () => this.untracedGetOrSet(key, factory, options),
      () => ({ key }),
    );
  }

  private async untracedGetOrSet<T>(
    key: string,
    factory: () => T | PromiseLike<T>,
    options?: Ttl | GetOrSetOptions,
  ): Promise<T> {
    const full = this.keyFor(key, 'getOrSet');
    const policy = this.policyFor(options, 'getOrSet');
    if (typeof factory !== 'function') {
      throw new TypeError(`getOrSet("${key}") needs a factory function as its second argument.`);
    }
    const now = this.clock.now();
    const read = this.readEntry(full, now);
    const entry = read instanceof Promise ? await read : read;
    let fallback: Entry | undefined;
    if (entry !== MISS) {
      if (this.isFresh(entry, now)) {
        const value = this.valueOf(full, entry);
        if (value !== MISS) return this.tally(value, 'hits', key, 'getOrSet') as T;
      } else if (staleFor(entry, now) < policy.swrMs) {
        const value = this.valueOf(full, entry);
        if (value !== MISS) {
          this.refresh(key, full, factory, policy);
          return this.tally(value, 'stale', key, 'getOrSet') as T;
        }
      } else if (staleFor(entry, now) < policy.sieMs) fallback = entry;
    }
    const lead = this.valueFlights.lead(key, policy.tags);
    if (lead) void this.produce(key, full, factory, policy, lead);
    // No flight to lead means one to follow: lead() and get() run in the same turn.
    const flight = lead ?? this.valueFlights.get(key)!;
    const landing =
      fallback && policy.softMs !== undefined
        ? await landingWithin(flight.landing, policy.softMs)
        : await flight.landing;
    if (landing.kind === 'value') {
      this.served('misses', key, 'getOrSet');
      // Each caller decodes its own copy, so one caller mutating its value cannot change another's.
      return this.serializer.deserialize(landing.value) as T;
    }
    if (fallback && landing.kind !== 'empty' && landing.kind !== 'unshareable') {
      const value = this.valueOf(full, fallback);
      if (value !== MISS) return this.tally(value, 'stale', key, 'getOrSet') as T;
    }
    this.served('misses', key, 'getOrSet');
    switch (landing.kind) {
      case 'empty':
      case 'unshareable':
        return undefined as T;
      case 'error':
        throw landing.error;
      case 'timeout':
      case 'soft-timeout':
        throw new FactoryTimeoutError(messages.factoryTimeout(key, landing.waitedMs));
    }
  }

  /**
   * This cache's single-flight for `scope` (created on first use): concurrent callers of one key
   * share one run of the work, and every flight ends within getOrSetTimeout. Scopes starting with
   * 'nest-cache:' are nest-cache's own: getOrSet and @Cacheable use 'nest-cache:values',
   * CacheInterceptor 'nest-cache:responses'. Every invalidation (delete, tags, pattern, clear)
   * reaches the flights of every scope.
   */
  singleFlight<V>(scope: string): Flights<V> {
    let flights = this.flightScopes.get(scope);
    if (!flights) {
      const made = new Flights<unknown>(this.getOrSetTimeoutMs, this.stampClock);
      this.flightScopes.set(scope, (flights = made));
    }
    return flights as Flights<V>;
  }

  /**
   * What this cache is waiting on right now: backend reads shared by concurrent callers (and the
   * decodes CacheInterceptor shares with them), and single-flights of every scope. Both are 0 once
   * the load stops: every wait is bounded (operationTimeout, getOrSetTimeout) and leaves nothing behind.
   */
  inFlight(): { reads: number; flights: number } {
    let flights = 0;
    for (const scope of this.flightScopes.values()) flights += scope.size;
    return { reads: this.readsInFlight.size + this.sharedReads.size, flights };
  }

  /**
   * See storeLed: stores what the flight `lead` produced for `key`, unless the key or one of its
   * tags was invalidated since the flight started. Resolves whether it was stored.
   */
  async [storeLed](
    key: string,
    value: unknown,
    options: SetOptions,
    lead: Lead<unknown>,
  ): Promise<boolean> {
    const full = this.keyFor(key, 'set');
    const policy = this.policyFor({ ...options, tags: [...lead.tags] }, 'set');
    // Dated when its flight started (a stamp): an invalidation since then reaches it.
    return this.store(key, full, this.encode(key, value), policy, lead.startedAt, lead);
  }

  /**
   * Releases the backend. Idempotent; resolves even when the backend is down. Calls made
   * afterwards reject with CacheClosedError. The module calls it at application shutdown.
   */
  close(): Promise<void> {
    // Not through attempt(): an open circuit breaker must not skip releasing the backend.
    this.closing ??= (async () => {
      try {
        // A driver's own shutdown may take longer than one call (Redis: QUIT, then up to a
        // second for a frozen server's socket), so close() waits at least MIN_CLOSE_WAIT_MS.
        const ms = Math.max(this.operationTimeoutMs, MIN_CLOSE_WAIT_MS);
        await withDeadline(
          this.releaseHeldLeases().then(() => this.driver.close()),
          ms,
          () => new OperationTimeoutError(messages.operationTimeout('close', ms)),
        );
      } catch (error) {
        this.failure('close', error);
      } finally {
        this.metrics.close();
        unclosedMetrics.unregister(this.metrics);
      }
    })();
    return this.closing;
  }

  /** At close(): the leases of flights still running, released (a quarter of close()'s wait at most). */
  private async releaseHeldLeases(): Promise<void> {
    if (this.heldLeases.size === 0) return;
    const releases = [...this.heldLeases].map(([lease, token]) => this.releaseLease(lease, token));
    await settleWithin(Promise.all(releases), MIN_CLOSE_WAIT_MS / 4);
  }

  /**
   * One round trip to the backend, for health checks: the driver's ping (Redis: PING), or a read
   * of a key nothing writes. Bounded by operationTimeout; not skipped by an open circuit breaker,
   * and counted nowhere (stats, breaker). Resolves how many milliseconds it took; rejects with the
   * backend's error, or an OperationTimeoutError.
   */
  async ping(): Promise<number> {
    this.assertOpen('ping');
    const started = performance.now();
    const call = this.driver.ping ? this.driver.ping() : this.driver.get(this.leaseNamespace);
    await this.bounded('ping', Promise.resolve(call));
    return performance.now() - started;
  }

  /** Whether close() was called. */
  get isClosed(): boolean {
    return this.closing !== undefined;
  }

  // ---- shared work ------------------------------------------------------------------------

  /**
   * Runs a backend call, failing open: a backend error is counted, logged (rate-limited)
   * and replaced by `fallback`, so a cache problem never fails the caller. A NotACounterError
   * is the caller's mistake, not the backend's: it rejects.
   */
  private async attempt<T>(
    operation: string,
    fallback: T,
    call: () => MaybePromise<T>,
    bounded = true,
  ): Promise<T> {
    if (this.failures.isOpen()) {
      this.skipped(operation);
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
      if (error instanceof NotACounterError) {
        this.failures.succeeded();
        throw error;
      }
      this.failure(operation, error);
      return fallback;
    }
  }

  /** Bounds one round trip of a walk (clear, deleteByPattern). */
  private readonly scanStep: Step = (call) => this.bounded('scan', call);

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
   * The entry of `full` while it is kept (fresh or stale), or MISS: not stored, not decodable (an
   * older format), or invalidated by a tag. Synchronous when the driver is and the entry has no
   * tags: get() on memory then costs no extra turn of the microtask queue.
   */
  private readEntry(full: string, now = this.clock.now()): Read | Promise<Read> {
    const read = this.readBytes(full);
    // readBytes and opened make Promises or plain results, never other thenables.
    return read instanceof Promise
      ? read.then((bytes) => this.opened(full, bytes, now))
      : this.opened(full, read, now, true);
  }

  /**
   * Decodes what was read, and checks its tags. `atOnce`: the driver answered synchronously, so a
   * driver that keeps its bytes (see CacheDriver.keepsBytes) handed out the object it stores.
   */
  private opened(
    full: string,
    bytes: ReadBytes,
    now = this.clock.now(),
    atOnce = false,
  ): Read | Promise<Read> {
    if (bytes == null || bytes === FAILED) return MISS;
    const entry = atOnce && this.driver.keepsBytes ? this.decodedOnce(bytes) : decoded(bytes);
    if (entry === undefined) {
      // Another program's bytes, or an older format: a miss, and removed.
      this.failures.warn(messages.corruptEntry(full, 'not an entry of this format'));
      void this.remove([full]);
      return MISS;
    }
    if (!isKept(entry, now)) return MISS;
    if (entry.tags.length === 0) return entry;
    return this.tagsAllow(entry).then((verdict) => {
      if (verdict === 'valid') return entry;
      // Invalidated: removed. Unknown (a record could not be read): a miss, but kept, since it
      // may well be valid (and the stale copy staleIfError needs).
      if (verdict === 'invalidated') void this.remove([full]);
      return MISS;
    });
  }

  /** The envelope of bytes the driver keeps, decoded at their first read only. */
  private decodedOnce(bytes: Uint8Array): Entry | undefined {
    const known = this.envelopes.get(bytes);
    if (known) return known;
    const entry = decoded(bytes);
    if (entry) this.envelopes.set(bytes, entry);
    return entry;
  }

  /** Whether no tag of `entry` was invalidated after it was stored. */
  private async tagsAllow(entry: Entry): Promise<'valid' | 'invalidated' | 'unknown'> {
    const records = await Promise.all(
      entry.tags.map(async (tag) => this.readBytes(this.tagKey(tag))),
    );
    let verdict: 'valid' | 'unknown' = 'valid';
    for (const bytes of records) {
      // A record that could not be read may hold an invalidation: the entry cannot be served.
      // Every tagged write creates its records first, living as long as the entry at least: a
      // record missing now was lost (evicted by the store, on a server that restarted), and an
      // invalidation may have been lost with it. The entry is not served (nor deleted: the store
      // may only be unreachable in part); its next write recreates the record (see touchTags).
      if (bytes === FAILED || bytes == null) verdict = 'unknown';
      else {
        const at = decodeTagTime(bytes);
        if (at !== undefined && at >= entry.storedAt) return 'invalidated';
      }
    }
    return verdict;
  }

  /** The decoded value of `entry`, or MISS when the serializer refuses its bytes (removed). */
  private valueOf(full: string, entry: Entry): unknown {
    if (isCounter(entry)) return (entry as CounterEntry).counter;
    try {
      return this.serializer.deserialize(entry.body);
    } catch (error) {
      // A corrupt entry (written by another program, or an older format) is a miss, and is removed.
      // The error's kind only: a serializer's message may quote the bytes (JSON.parse does).
      const kind =
        error instanceof Error ? `the serializer threw ${error.name}` : 'the serializer threw';
      this.failures.warn(messages.corruptEntry(full, kind));
      void this.remove([full]);
      return MISS;
    }
  }

  private foundOf(full: string, entry: Read): Found | undefined {
    if (entry === MISS) return undefined;
    const value = this.valueOf(full, entry);
    return value === MISS ? undefined : { meta: entry, value };
  }

  private isFresh(entry: EntryMeta, now = this.clock.now()): boolean {
    return entry.freshUntil === null || now < entry.freshUntil;
  }

  /**
   * readEntry, failing open like attempt(): the bytes, or undefined when the entry is missing, the
   * backend failed or the breaker is open. Not async, so that a backend answering synchronously
   * (memory) costs get() no extra turn of the microtask queue: get and getOrSet are the hot path.
   */
  private readBytes(full: string): ReadBytes | Promise<ReadBytes> {
    if (this.failures.isOpen()) {
      this.skipped('get');
      return FAILED;
    }
    // Concurrent reads of one key share the backend call in flight (a hot key under load is read
    // once per round trip, not once per caller); each caller still decodes its own copy. The
    // outcome of a shared read is counted once (stats.errors, the circuit breaker), like any call.
    const pending = this.readsInFlight.size === 0 ? undefined : this.readsInFlight.get(full);
    if (pending) return pending;
    let read: MaybePromise<Uint8Array | null | undefined>;
    try {
      read = this.driver.get(full);
    } catch (error) {
      return this.readFailed(error);
    }
    if (!isPending(read)) {
      this.failures.succeeded();
      return read;
    }
    // Bounded, so that a read the backend never answers cannot hold everyone who joins it.
    const shared: Promise<ReadBytes> = this.bounded('get', read).then(
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
  private forget(full: string[]): void {
    if (this.readsInFlight.size > 0) for (const key of full) this.readsInFlight.delete(key);
    if (this.sharedReads.size > 0) for (const key of full) this.sharedReads.delete(key);
  }

  private forgetAll(): void {
    this.readsInFlight.clear();
    this.sharedReads.clear();
  }

  /** An invalidation reaches the flights of every scope: what they produce is not stored. */
  private valueFlightsInvalidate(matches: (key: string, tags: readonly string[]) => boolean): void {
    for (const flights of this.flightScopes.values()) flights.invalidate(matches);
  }

  private readonly readSucceeded = (bytes: Uint8Array | null | undefined) => {
    this.failures.succeeded();
    return bytes;
  };

  private readonly readFailed = (error: unknown): typeof FAILED => {
    this.failure('get', error);
    return FAILED;
  };

  /** Counts what one caller got, and hands it on. */
  private tally<T>(value: T, what: 'hits' | 'misses' | 'stale', key: string, by: ServedBy): T {
    this.served(what, key, by);
    return value;
  }

  /**
   * Counts one caller served a hit, a miss or a stale entry of `key` (by an operation, or
   * CacheInterceptor), tells the listeners and the metrics.
   */
  private served(what: 'hits' | 'misses' | 'stale', key: string, by: ServedBy): void {
    this.stats[what] += 1;
    if (this.events.active) this.events.emit(SERVED_EVENTS[what], { key });
    if (this.metrics.on) this.metrics.served(what, by, key);
  }

  /** Whether a value's bytes pass maxValueBytes (said in a warning, rate-limited). */
  private oversize(key: string, body: Buffer): boolean {
    if (body.byteLength <= this.maxValueBytes) return false;
    this.failures.warn(messages.valueTooLarge(key, body.byteLength, this.maxValueBytes));
    return true;
  }

  private async remove(full: string[]): Promise<number> {
    this.forget(full);
    const removed = await this.attempt('delete', 0, () => this.driver.delete(full));
    this.stats.deletes += removed;
    return removed;
  }

  /** Counts entries stored, and tells the listeners. */
  private wrote(keys: readonly string[]): void {
    this.stats.writes += keys.length;
    if (this.events.active) for (const key of keys) this.events.emit('set', { key });
  }

  /** Tells the listeners entries were removed (remove() counts them). */
  private removed(keys: readonly string[] | undefined, count: number): void {
    if (this.events.active) this.events.emit('delete', { keys, count });
  }

  /** Counts a backend call that failed (a timeout too), feeds the breaker, tells the listeners. */
  private failure(operation: string, error: unknown): void {
    this.stats.errors += 1;
    if (isTimeout(error)) this.stats.timeouts += 1;
    this.failures.failed(operation, error);
    if (this.events.active) this.events.emit('error', { operation, error });
    if (this.metrics.on) this.metrics.failed(operation, error);
  }

  /** Counts a backend call the open circuit breaker skipped (failed open at once). */
  private skipped(operation: string): void {
    this.stats.errors += 1;
    if (this.metrics.on) this.metrics.failed(operation, undefined);
  }

  /**
   * Writes one entry: its tag records first (an entry whose tags could not be recorded could not
   * be invalidated, so it is not written), then the entry, unless the flight that produced it was
   * invalidated meanwhile.
   */
  private async store(
    key: string,
    full: string,
    bytes: Buffer,
    policy: Policy,
    storedAt: number,
    lead: Lead<unknown> | undefined,
  ): Promise<boolean> {
    if (lead && !lead.mayStore) return false;
    if (this.oversize(key, bytes)) {
      await this.remove([full]);
      return false;
    }
    if (policy.tags.length > 0) {
      const touched = await this.touchTags(policy.tags, this.keptUntil(policy, storedAt));
      if (!touched) return false;
    }
    // Checked again: an invalidation may have come while the tags were touched.
    if (lead && !lead.mayStore) return false;
    const entry = this.driverEntry(key, full, bytes, policy, storedAt);
    this.forget([full]);
    const stored = await this.attempt('set', false, () =>
      this.driver.set(entry.key, entry.bytes, entry.ttlMs),
    );
    if (stored) this.wrote([key]);
    return stored;
  }

  /**
   * Makes the tag records live as long as an entry kept until `expiresAt`; false when that failed.
   * A record created now holds a time earlier than any write in progress can be dated (the longest
   * flight, then its write): if it was lost, the entries written before the loss, which an
   * invalidation it held may have reached, are misses; the writes in progress are not.
   */
  private touchTags(tags: readonly string[], expiresAt: number | null): Promise<boolean> {
    const keys = tags.map((tag) => this.tagKey(tag));
    const now = this.clock.now();
    const createdAt = Math.floor(now - this.longestWriteMs());
    return this.attempt('set', false, () => {
      if (!this.driver.touchTags) {
        return Promise.all(
          keys.map((key) =>
            this.serially(key, () => touchTagsWith(this.driver, [key], expiresAt, now, createdAt)),
          ),
        ).then(() => true);
      }
      // Synchronous on memory: no deadline needed (see attempt()).
      const touched = this.driver.touchTags(keys, expiresAt, createdAt);
      return isPending(touched) ? Promise.resolve(touched).then(() => true) : true;
    });
  }

  private driverEntry(
    key: string,
    full: string,
    body: Buffer,
    policy: Policy,
    storedAt: number,
  ): DriverEntry {
    const now = this.clock.now();
    // Fresh from when it was dated, or from now when dated just after an invalidation (see
    // stamp()): never for longer than its ttl.
    const freshUntil = policy.ttlMs === null ? null : Math.min(storedAt, now) + policy.ttlMs;
    const staleUntil = freshUntil === null ? null : freshUntil + policy.keepMs;
    // A shortened key keeps the user's key in its entry, for deleteByPattern().
    const shortened = full.length !== this.namespace.length + key.length;
    const bytes = encodeEntry(
      { storedAt, freshUntil, staleUntil, tags: policy.tags, key: shortened ? key : undefined },
      body,
    );
    // The driver keeps it until its last stale window ends (at least 1 ms: it was just made).
    const ttlMs = staleUntil === null ? null : Math.max(1, Math.ceil(staleUntil - now));
    return { key: full, bytes, ttlMs };
  }

  /** Until when an entry of `policy` stored at `storedAt` is kept: its tag records must live as long. */
  private keptUntil(policy: Policy, storedAt: number): number | null {
    return policy.ttlMs === null ? null : storedAt + policy.ttlMs + policy.keepMs;
  }

  /**
   * What a write (or the flight that produces it) is dated with when it starts: the clock's time,
   * or TIE_MS after the previous stamp when the clock has not moved past it. Stamps of this
   * process strictly grow (an invalidation's too, see invalidationStamp()), so an invalidation is
   * dated after every write that started before it and before every write that starts later, even
   * within one millisecond (or on a clock a test holds still).
   */
  private stamp(): number {
    return this.stampAfter(this.clock.now());
  }

  /**
   * An invalidation's stamp: the end of its millisecond (just before the next one), so that it also
   * reaches the writes another process started within that millisecond, whose stamps this process
   * cannot order against its own. A write this process starts after it is dated later still.
   */
  private invalidationStamp(): number {
    return this.stampAfter(Math.floor(this.clock.now()) + 1 - TIE_MS);
  }

  private stampAfter(at: number): number {
    this.lastStamp = at > this.lastStamp ? at : this.lastStamp + TIE_MS;
    return this.lastStamp;
  }

  /**
   * Runs a fallback's read-then-write of `key` (a counter, a tag record: see driver-fallbacks)
   * once the one queued before it has settled, so that it is atomic within the process whatever
   * the driver: each of its awaits would otherwise let another call's read in between. The queue
   * waits on each for operationTimeout at most, so a driver call that never settles cannot hold it.
   */
  private serially<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.serialized.get(key);
    const run = before ? before.then(work) : work();
    const done = this.bounded('serial', run).then(noop, noop);
    this.serialized.set(key, done);
    void done.then(() => {
      if (this.serialized.get(key) === done) this.serialized.delete(key);
    });
    return run;
  }

  /**
   * Runs getOrSet's factory for its flight: lands the value for every caller at once, then stores
   * it, dated when the flight started (a stamp()); the flight ends after the
   * write, so a caller arriving meanwhile gets the value too.
   */
  private async produce(
    key: string,
    full: string,
    factory: () => unknown,
    policy: Policy,
    lead: Lead<Buffer>,
  ): Promise<void> {
    try {
      const turn = this.fleetTurnOf(full, lead);
      const verdict = turn === 'run' ? turn : await turn;
      if (verdict === 'over') return; // the flight ran out of time waiting for another instance
      if (verdict !== 'run') {
        // Another instance ran the factory and stored its value.
        lead.land({ kind: 'value', value: this.encode(key, verdict.value) });
        return;
      }
      const value = await factory();
      if (value === undefined) return; // nothing to cache: end() lands the flight empty
      const bytes = this.encode(key, value);
      lead.land({ kind: 'value', value: bytes });
      await this.store(key, full, bytes, policy, lead.startedAt, lead as Lead<unknown>);
    } catch (error) {
      lead.land({ kind: 'error', error });
    } finally {
      lead.end();
    }
  }

  /**
   * Fleet single-flight (distributedSingleFlight): whether this instance runs the work of `lead`,
   * the flight of `full`. Without the option: 'run', at once. With it: 'run' once this instance
   * holds the key's lease (released when the flight ends); or the fresh entry another instance
   * stored while this one waited; or 'over' once the flight's deadline passed meanwhile.
   */
  private fleetTurnOf(full: string, lead: Lead<unknown>): 'run' | Promise<Found | 'run' | 'over'> {
    return this.fleet ? this.leaseOrEntry(full, lead) : 'run';
  }

  /**
   * Takes the lease of `full`, or waits for the entry of the instance that holds it: looks for
   * it after FIRST_LEASE_POLL_MS, then twice as late each time (MAX_LEASE_POLL_MS at most).
   *
   * - Taken at once: this instance runs the work ('run'), renewing the lease while its flight
   *   lasts, and releases it when the flight ends (after its write).
   * - Held by another instance: the winner's entry once it is stored. When the lease ends without
   *   one (the winner's run failed or stored nothing, or its process died), every waiting instance
   *   runs the work itself ('run'), as without the option, rather than one after another.
   * - The store failing (or the open breaker), or this cache closing: 'run', as without the option.
   * - The flight's deadline passed meanwhile: 'over'.
   *
   * Whenever the lease is taken the entry is read once more: a winner may have stored it and
   * released its lease since this instance last looked.
   */
  private async leaseOrEntry(full: string, lead: Lead<unknown>): Promise<Found | 'run' | 'over'> {
    const lease = this.leaseNamespace + full.slice(this.namespace.length);
    this.leasesTaken += 1;
    const token = `${this.leaseHolder}:${this.leasesTaken}`;
    const driver = this.driver as Required<CacheDriver>;
    let over = false;
    void lead.landing.then(() => (over = true));
    for (let poll = 0; ; poll += 1) {
      if (poll > 0) {
        await sleep(Math.min(FIRST_LEASE_POLL_MS * 2 ** (poll - 1), MAX_LEASE_POLL_MS));
        if (over) return 'over';
        const found = await this.freshFound(full);
        if (found) return found;
      }
      if (this.closing) return 'run';
      // After the first try, a lease of 1 ms: a probe of whether the winner's lease has ended,
      // left to vanish by itself so that the other instances waiting find it ended too.
      const probe = poll > 0;
      const taken = await this.attempt('lease', undefined, () =>
        driver.acquireLease(lease, token, probe ? 1 : this.leaseMs),
      );
      if (taken === undefined) return 'run';
      if (!taken) continue;
      if (!probe) this.heldLeases.set(lease, token);
      const found = await this.freshFound(full);
      if (over || found || probe) {
        if (!probe) void this.releaseLease(lease, token);
        return over ? 'over' : (found ?? 'run');
      }
      const renewal = setInterval(
        () =>
          void this.attempt('lease', undefined, () =>
            driver.renewLease(lease, token, this.leaseMs),
          ),
        this.leaseMs / LEASE_RENEWALS,
      );
      renewal.unref();
      // Released once the value is stored (the flight ends after its write), so that an instance
      // waiting finds the entry before it could take the lease.
      lead.onEnd(() => {
        clearInterval(renewal);
        void this.releaseLease(lease, token);
      });
      return 'run';
    }
  }

  /** The fresh entry of `full` from a read sent now (not joining one sent before), decoded; or undefined. */
  private async freshFound(full: string): Promise<Found | undefined> {
    this.forget([full]);
    const found = this.foundOf(full, await this.readEntry(full));
    return found && this.isFresh(found.meta) ? found : undefined;
  }

  /**
   * Releases a lease this cache holds, bounded by operationTimeout but not skipped by the open
   * breaker: a lease left behind would hold every other instance back until it expires.
   */
  private async releaseLease(lease: string, token: string): Promise<void> {
    if (this.heldLeases.get(lease) === token) this.heldLeases.delete(lease);
    try {
      await this.bounded('lease', Promise.resolve(this.driver.releaseLease!(lease, token)));
    } catch (error) {
      this.failure('lease', error);
    }
  }

  /** One background refresh of a stale entry; a failure is logged, and the stale entry stays. */
  private refresh(key: string, full: string, factory: () => unknown, policy: Policy): void {
    const lead = this.valueFlights.lead(key, policy.tags);
    if (!lead) return; // a refresh (or a miss's flight) is running already
    void this.produce(key, full, factory, policy, lead);
    void lead.landing.then((landing) => {
      if (landing.kind === 'error' || landing.kind === 'timeout') {
        const reason =
          landing.kind === 'error'
            ? reasonOf(landing.error)
            : `no value within ${landing.waitedMs} ms`;
        this.failures.warn(messages.refreshFailed(key, reason));
      }
    });
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

  /** A call's ttl, stale windows and tags, checked: the one place they are read. */
  private policyFor(
    options: Ttl | SetOptions | GetOrSetOptions | undefined,
    operation: string,
  ): Policy {
    if (Array.isArray(options)) {
      throw new InvalidTtlError(
        messages.invalidTtl(`${operation} ttl`, options, 'is not a ttl nor an options object'),
      );
    }
    if (options === undefined || options === null || typeof options !== 'object') {
      return {
        ttlMs: this.ttlFor(options as Ttl | undefined, operation),
        keepMs: 0,
        swrMs: 0,
        sieMs: 0,
        softMs: undefined,
        tags: NO_TAGS,
      };
    }
    const { ttl, tags, staleWhileRevalidate, staleIfError } = options;
    const softTimeout = (options as GetOrSetOptions).softTimeout;
    const ttlMs = this.ttlFor(ttl, operation);
    const plain =
      tags === undefined &&
      staleWhileRevalidate === undefined &&
      staleIfError === undefined &&
      softTimeout === undefined;
    // The usual options ({ ttl } alone, as @Cacheable passes them): nothing more to check.
    if (plain) return { ttlMs, keepMs: 0, swrMs: 0, sieMs: 0, softMs: undefined, tags: NO_TAGS };
    const window = (name: string, value: Ttl | undefined): number => {
      if (value === undefined) return 0;
      const ms = ttlToMs(value, `${operation} option "${name}"`);
      if (ms === null) throw new InvalidTtlError(messages.staleWindowNull(operation, name));
      if (ttlMs === null) throw new InvalidTtlError(messages.staleWithoutTtl(operation, name));
      return ms;
    };
    const swrMs = window('staleWhileRevalidate', staleWhileRevalidate);
    const sieMs = window('staleIfError', staleIfError);
    let softMs: number | undefined;
    if (softTimeout !== undefined) {
      softMs = window('softTimeout', softTimeout);
      if (softMs > MAX_TIMER_MS) throw new InvalidTtlError(messages.softTimeoutTooLong(operation));
      if (sieMs === 0) throw new InvalidTtlError(messages.softTimeoutWithoutStale(operation));
    }
    return {
      ttlMs,
      keepMs: Math.max(swrMs, sieMs),
      swrMs,
      sieMs,
      softMs,
      tags: tags === undefined ? NO_TAGS : validTags(tags, operation),
    };
  }

  private ttlFor(ttl: Ttl | undefined, operation: string): number | null {
    return ttl === undefined ? this.defaultTtlMs : ttlToMs(ttl, `${operation} ttl`);
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

  private tagKey(tag: string): string {
    return this.tagNamespace + storedKey(tag);
  }

  private assertOpen(operation: string): void {
    if (this.closing) throw new CacheClosedError(messages.closed(operation));
  }
}

/**
 * A cache on a driver of your own: `new DriverCache(myDriver, options)`, or
 * `CacheModule.forRoot({ backend: (context) => myDriver })`.
 */
export class DriverCache extends BaseCache {
  constructor(
    driver: CacheDriver | ((context: DriverContext) => CacheDriver),
    options: BaseCacheOptions = {},
  ) {
    super(driver, options);
  }
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/**
 * How much later than the previous stamp a stamp is when the clock has not moved (see stamp()): a
 * power of two, which a float64 holds exactly beside today's times in ms, and so small that stamps
 * run ahead of the clock only past a thousand writes and invalidations within one millisecond.
 */
const TIE_MS = 2 ** -10;

/** A counter read back: no envelope, so plain metadata around its number. */
interface CounterEntry extends Entry {
  counter: number;
}

/** The entry in `bytes`: an envelope, or a counter; undefined for anything else. */
function decoded(bytes: Uint8Array): Entry | undefined {
  return decodeEntry(bytes) ?? counterEntry(bytes);
}

function counterEntry(bytes: Uint8Array): CounterEntry | undefined {
  const counter = decodeCounter(bytes);
  if (counter === undefined) return undefined;
  return { storedAt: 0, freshUntil: null, staleUntil: null, tags: NO_TAGS, body: bytes, counter };
}

function isCounter(entry: Entry): entry is CounterEntry {
  return (entry as Partial<CounterEntry>).counter !== undefined;
}

/** Whether the entry may still be served at all (fresh, or inside its stale window). */
function isKept(entry: EntryMeta, now: number): boolean {
  return entry.staleUntil === null || now < entry.staleUntil;
}

function latest(times: (number | null)[]): number | null {
  return times.includes(null) ? null : Math.max(...(times as number[]));
}

function validTags(tags: unknown, operation: string): readonly string[] {
  if (!Array.isArray(tags)) throw new InvalidTagError(messages.invalidTags(operation, tags));
  if (tags.length > MAX_TAGS)
    throw new InvalidTagError(messages.tooManyTags(operation, tags.length));
  for (const tag of tags) {
    if (
      typeof tag !== 'string' ||
      tag.length === 0 ||
      hasLoneSurrogate(tag) ||
      Buffer.byteLength(tag) > 65_535
    ) {
      throw new InvalidTagError(messages.invalidTag(operation, tag));
    }
  }
  return [...new Set(tags as string[])];
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

/** The default value size cap: 16 MiB, far above a response or a record, far below a flood. */
const DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024;

function validMaxValueBytes(value: unknown): number {
  if (value === undefined) return DEFAULT_MAX_VALUE_BYTES;
  if (value === null) return Infinity;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new CacheConfigError(
      messages.invalidOption(
        'maxValueBytes',
        value,
        `Use a whole number of bytes, at least 1 (default ${DEFAULT_MAX_VALUE_BYTES}), or null for no cap but the backend's.`,
      ),
    );
  }
  return value;
}

function breakerSettings(breaker: BaseCacheOptions['breaker']): BreakerSettings {
  if (breaker === undefined)
    return { threshold: BREAKER_THRESHOLD, cooldownMs: BREAKER_COOLDOWN_MS };
  if (breaker === null || typeof breaker !== 'object' || Array.isArray(breaker)) {
    throw new CacheConfigError(
      messages.invalidOption('breaker', breaker, "Use { threshold?: 5, cooldown?: '1s' }."),
    );
  }
  knownKeysOnly('breaker', breaker, ['threshold', 'cooldown']);
  const { threshold = BREAKER_THRESHOLD } = breaker;
  if (!Number.isSafeInteger(threshold) || threshold < 1) {
    throw new CacheConfigError(
      messages.invalidOption(
        'breaker.threshold',
        threshold,
        `Use a whole number of failures in a row, at least 1 (default ${BREAKER_THRESHOLD}).`,
      ),
    );
  }
  const cooldownMs = timeoutToMs(breaker.cooldown, 'breaker.cooldown', `${BREAKER_COOLDOWN_MS}ms`);
  return { threshold, cooldownMs };
}

const REQUIRED_DRIVER_METHODS = ['get', 'set', 'delete', 'ttl', 'close'] as const;

/** distributedSingleFlight, checked. */
function validFleet(value: unknown): boolean {
  if (value === undefined || value === false) return false;
  if (value === true) return true;
  throw new CacheConfigError(
    messages.invalidOption('distributedSingleFlight', value, 'Use true or false (default false).'),
  );
}

/** distributedSingleFlight against what the driver can do; a driver that cannot is closed first. */
function fleetOption(fleet: boolean, driver: CacheDriver): boolean {
  if (!fleet) return false;
  const leases = ['acquireLease', 'renewLease', 'releaseLease'] as const;
  if (leases.every((method) => typeof driver[method] === 'function')) return true;
  void Promise.resolve()
    .then(() => driver.close())
    .catch(noop);
  throw new CacheConfigError(messages.noLeases(driver.name));
}

/**
 * A call given up for time: ours (operationTimeout), or the client's own, which on Redis
 * (commandTimeout, kept below operationTimeout) and memcached comes first ("Command timed out").
 */
function isTimeout(error: unknown): boolean {
  return (
    error instanceof OperationTimeoutError ||
    (error instanceof Error && /\btimed out\b/i.test(error.message))
  );
}

/** Removes the meter callback of a cache collected without close(). */
const unclosedMetrics = new FinalizationRegistry<CacheMetrics>((metrics) => metrics.close());

/** A pause that never keeps the process alive. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function validDriver(driver: unknown): CacheDriver {
  const has = (method: string) =>
    typeof (driver as Record<string, unknown> | null)?.[method] === 'function';
  const missing: string[] = REQUIRED_DRIVER_METHODS.filter((method) => !has(method));
  if (!has('scan') && !has('clear')) missing.push('scan (or clear)');
  if (missing.length > 0) throw new CacheConfigError(messages.invalidDriver(driver, missing));
  return driver as CacheDriver;
}

function validPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length === 0 || hasLoneSurrogate(prefix))
    throw new CacheConfigError(messages.invalidPrefix(prefix));
  return prefix;
}
