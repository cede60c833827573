import { BaseCache, type BaseCacheOptions, type DriverContext } from '../base-cache.js';
import { SCAN_BATCH } from '../cache.constants.js';
import type { CacheDriver, DriverEntry, Step } from '../driver.js';
import { decodeCounter, encodeCounter } from '../entry.js';
import { CacheConfigError, NotACounterError } from '../errors.js';
import { messages, reasonOf } from '../messages.js';
import { knownKeysOnly } from '../option-keys.js';
import {
  asBuffer,
  decodeRecord,
  type DiskRecord,
  ENTRY_KIND,
  encodeRecord,
  HEADER_BYTES,
  indexKeyOf,
  isLongKey,
  rangeOf,
  storedKeyOf,
  TAG_KIND,
} from './disk-format.js';
import { type DiskStore, type LmdbOpen, openStore, preparePath } from './disk-store.js';
import { DiskSpace, type DiskSweep, REFUSED, SWEEP_BUDGET_MS } from './disk-sweep.js';

export type { DiskSweep } from './disk-sweep.js';

/** Where the disk backend keeps its store, and how large it may grow. */
export interface DiskCacheOptions {
  /**
   * The directory of the store (created when missing; it must hold nothing else). Every process
   * that opens the same directory shares the cache: the workers of a Node cluster or of PM2.
   * Required: where a persistent cache lives is a deployment decision (a volume in a container, a
   * directory the app's user may write), and a guessed default (a temporary directory cleared at
   * boot, one relative to the working directory) would quietly give a cache that does not persist
   * or is not shared.
   */
  path: string;
  /**
   * How large the store's data file may grow, in bytes (at least 1 MiB). Past 75% of it in use,
   * the entries that expire soonest are evicted (entries that never expire last) down to 65%; a
   * write that would take it past 90% is dropped until eviction has made room. Each write is
   * counted before it is queued, so a burst of writes within one event turn is held to the bound
   * too. An entry larger than an eighth of it is not stored. Give every process that shares the
   * store the same value.
   * @default 1 GiB
   */
  maxSize?: number;
}

/** The default bound on disk: 1 GiB. Disk is cheap, but a cache must never fill it. */
export const DEFAULT_DISK_MAX_SIZE = 1024 * 1024 * 1024;
const MIN_DISK_MAX_SIZE = 1024 * 1024;
/** The largest entry, as a share of maxSize. */
const MAX_ENTRY_SHARE = 1 / 8;
/** How often each process sweeps: expired records, then the size bound. */
const SWEEP_INTERVAL_MS = 1_000;
/**
 * How long a tag record is kept past the entries that carry it: their reclaim times are computed
 * a few ms apart from real time, and a record reclaimed first would revive an invalidated entry.
 */
const TAG_GRACE_MS = 60_000;
/** increment() on a key that holds something else. */
const NOT_A_COUNTER = Symbol('nest-cache:not-a-counter');

type LmdbModule = { open: LmdbOpen };

/**
 * Loads lmdb, an optional peer dependency, when the disk backend is chosen.
 * `importer` is replaceable so the "not installed" message can be tested with lmdb installed.
 */
export async function loadLmdb(
  importer: () => Promise<unknown> = () => import('lmdb'),
): Promise<LmdbOpen> {
  let loaded: unknown;
  try {
    loaded = await importer();
  } catch (error) {
    if (isLmdbMissing(error)) throw new CacheConfigError(messages.lmdbMissing(), { cause: error });
    throw error;
  }
  const module = loaded as Partial<LmdbModule> & { default?: Partial<LmdbModule> };
  const open = module.open ?? module.default?.open;
  if (typeof open !== 'function') throw new CacheConfigError(messages.lmdbMissing());
  return open;
}

/**
 * The disk driver, on LMDB (lmdb): persistent, and shared by the processes of one machine, which
 * open the same directory at once. Reads are synchronous (a memory-mapped B-tree read, each a
 * copy of its own); every write is an LMDB write transaction (lmdb batches those of one event
 * turn into one commit; each write is a child transaction of it, so one that fails leaves nothing
 * behind), so counters and tag records are atomic across processes.
 *
 * Expiry is judged by the cache's clock (each record keeps its expiry on it). Each record also
 * has a reclaim time from real time, in an expiry index ordered by it: every second a sweep
 * removes those past it, off the hot path, and eviction removes the soonest to be reclaimed
 * first when the store nears its size bound (see DiskSpace, disk-sweep.ts). Tag records sort after the entries of
 * the same time, and live TAG_GRACE_MS longer, so eviction never forgets an invalidation that an
 * entry still on disk needs.
 */
export class DiskDriver implements CacheDriver {
  readonly name = 'disk';
  get location(): string {
    return this.store.path;
  }
  private readonly store: DiskStore;
  private readonly space: DiskSpace;
  private readonly timer: NodeJS.Timeout;
  private checking = false;
  private sweeping: Promise<DiskSweep> | undefined;
  /** This process's latest write of each key whose transaction has not settled yet; see visible(). */
  private readonly inFlight = new Map<string, PendingWrite>();
  private closed = false;
  /** Transactions queued and not yet settled: close() waits for them. */
  private readonly writing = new Set<Promise<unknown>>();

  constructor(
    open: LmdbOpen,
    path: string,
    maxSize: number,
    private readonly context: DriverContext,
  ) {
    // Opened only now that the cache options are valid, so a bad option never leaks a store.
    this.store = openStore(open, path);
    this.space = new DiskSpace(this.store, maxSize);
    this.timer = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  get(key: string): Buffer | undefined {
    return this.visible(key, this.context.clock.now())?.bytes;
  }

  getMany(keys: string[]): (Buffer | undefined)[] {
    const now = this.context.clock.now();
    return keys.map((key) => this.visible(key, now)?.bytes);
  }

  ttl(key: string): number | null | undefined {
    const now = this.context.clock.now();
    const record = this.visible(key, now);
    if (!record) return undefined;
    return record.expiresAt === Infinity ? null : record.expiresAt - now;
  }

  async set(key: string, bytes: Uint8Array, ttlMs: number | null): Promise<boolean> {
    return this.setMany([{ key, bytes, ttlMs }]);
  }

  /** One write transaction: every entry, or none. */
  async setMany(entries: DriverEntry[]): Promise<boolean> {
    if (entries.length === 0) return true;
    const largest = this.space.maxSize * MAX_ENTRY_SHARE;
    const size = entries.reduce(
      (sum, { key, bytes }) => sum + this.footprint(key, bytes.byteLength),
      0,
    );
    const fits = entries.every(({ bytes }) => bytes.byteLength <= largest) && this.room(size);
    // The new values cannot be kept; the old ones must not be served in their place.
    const writes = this.prepare(
      fits ? entries : entries.map(({ key }) => ({ key, bytes: null, ttlMs: null })),
      ENTRY_KIND,
    );
    return (await this.commit(writes, fits ? size : 0)) && fits;
  }

  async delete(keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const now = this.context.clock.now();
    // Counted before they go: what this process can see of them now.
    const existing = keys.filter((key) => this.visible(key, now) !== undefined).length;
    const writes = this.prepare(
      keys.map((key) => ({ key, bytes: null, ttlMs: null })),
      ENTRY_KIND,
    );
    return (await this.commit(writes, 0)) ? existing : 0;
  }

  async increment(key: string, by: number, ttlMs: number | null): Promise<number> {
    const stored = storedKeyOf(key);
    const size = this.footprint(key, 32);
    if (!this.room(size)) throw this.fullError();
    const value = await this.write(() => {
      const now = this.context.clock.now();
      const record = this.live(stored, now);
      if (!record) {
        this.put(key, stored, encodeCounter(by), this.expiryOf(ttlMs), ENTRY_KIND);
        return by;
      }
      const current = decodeCounter(record.bytes);
      if (current === undefined) return NOT_A_COUNTER;
      const next = current + by;
      const times = { expiresAt: record.expiresAt, reclaimAt: record.reclaimAt };
      this.put(key, stored, encodeCounter(next), times, ENTRY_KIND);
      return next;
    }, size);
    if (value === NOT_A_COUNTER) throw new NotACounterError(messages.notACounter(key));
    if (value === REFUSED) throw this.fullError();
    return value;
  }

  async touchTags(keys: string[], expiresAt: number | null, createdAt: number): Promise<void> {
    const size = this.tagsFootprint(keys);
    if (!this.room(size)) throw this.fullError();
    const stored = keys.map((key) => ({ key, stored: storedKeyOf(key) }));
    const touched = await this.write(() => {
      const now = this.context.clock.now();
      const wanted = this.expiryOf(expiresAt === null ? null : Math.max(1, expiresAt - now));
      for (const { key, stored: at } of stored) {
        const record = this.live(at, now);
        const times = tagTimes(wanted, record);
        if (!record) this.put(key, at, encodeCounter(createdAt), times, TAG_KIND);
        else if (times.expiresAt !== record.expiresAt || times.reclaimAt !== record.reclaimAt) {
          this.put(key, at, record.bytes, times, TAG_KIND);
        }
      }
    }, size);
    // An entry whose tags could not be recorded must not be written: BaseCache drops it.
    if (touched === REFUSED) throw this.fullError();
  }

  async invalidateTags(keys: string[], at: number, keepMs: number): Promise<void> {
    const stored = keys.map((key) => ({ key, stored: storedKeyOf(key) }));
    // Never refused: an invalidation must land even when the store is full.
    const size = this.tagsFootprint(keys);
    this.space.reserve(size, true);
    const invalidated = await this.write(() => {
      const now = this.context.clock.now();
      const keep = this.expiryOf(keepMs);
      for (const { key, stored: where } of stored) {
        const record = this.live(where, now);
        this.put(key, where, encodeCounter(at), tagTimes(keep, record), TAG_KIND);
      }
    }, size);
    if (invalidated === REFUSED) throw this.fullError();
  }

  /** The full keys that start with `prefix`, in batches read from a fresh snapshot each. */
  async *scan(prefix: string, _pattern: string | undefined, step: Step): AsyncIterable<string[]> {
    await step(this.barrier());
    let after: Buffer | undefined;
    for (;;) {
      const batch = await step(Promise.resolve(this.rangeBatch(prefix, after)));
      if (batch.stored.length === 0) return;
      after = batch.stored[batch.stored.length - 1];
      if (batch.keys.length > 0) yield batch.keys;
    }
  }

  /** Removes every record under the prefixes, SCAN_BATCH a transaction, each bounded by `step`. */
  async clear(prefixes: string[], step: Step): Promise<void> {
    await step(this.barrier());
    for (const prefix of prefixes) {
      let after: Buffer | undefined;
      for (;;) {
        const batch = this.rangeBatch(prefix, after);
        if (batch.stored.length === 0) break;
        after = batch.stored[batch.stored.length - 1];
        const doomed = batch.matching;
        await step(this.write(() => doomed.forEach((key) => this.remove(key)), 0));
      }
    }
  }

  /**
   * Reclaims the records whose reclaim time has passed, then evicts near the size bound (see
   * DiskSpace.sweep) for `budgetMs` at most. Runs every second by itself; concurrent calls share
   * one sweep.
   */
  sweep(budgetMs = SWEEP_BUDGET_MS): Promise<DiskSweep> {
    this.sweeping ??= this.sweepOnce(budgetMs).finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(budgetMs: number): Promise<DiskSweep> {
    if (this.closed) return { expired: 0, evicted: 0 };
    try {
      const done = await this.space.sweep(
        (work) => this.write(work, 0),
        () => this.closed,
        budgetMs,
      );
      if (done.evicted > 0) this.context.evicted?.(done.evicted);
      return done;
    } catch (error) {
      // Off the hot path: nobody awaits a sweep but tests; a failure is logged, the next one retries.
      if (!this.closed) {
        this.context.warn(messages.diskWriteFailed(this.store.path, reasonOf(error)));
      }
      return { expired: 0, evicted: 0 };
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.closed = true;
    await this.sweeping?.catch(() => undefined);
    // Writes already queued commit (or fail) before the store closes under them.
    await Promise.allSettled(this.writing);
    await this.store.root.close();
  }

  // ---- records ----------------------------------------------------------------------------

  /**
   * What this process reads for `full`: the record of its latest write still in flight (lmdb
   * commits at the end of the event turn, and a caller may read before that: a getOrSet's value
   * lands before it is stored), else the store's, while it has not expired.
   */
  private visible(full: string, now: number): DiskRecord | undefined {
    const pending = this.inFlight.size === 0 ? undefined : this.inFlight.get(full);
    const record = pending
      ? decodeRecord(pending.value ?? undefined)
      : this.read(storedKeyOf(full));
    return record && record.expiresAt > now ? record : undefined;
  }

  /** Encodes writes now (their times too), and makes them visible to this process's reads. */
  private prepare(
    entries: { key: string; bytes: Uint8Array | null; ttlMs: number | null }[],
    kind: number,
  ): PendingWrite[] {
    return entries.map(({ key, bytes, ttlMs }) => {
      const stored = storedKeyOf(key);
      const times = this.expiryOf(ttlMs);
      const value =
        bytes === null
          ? null
          : encodeRecord(key, stored, bytes, times.expiresAt, times.reclaimAt, kind);
      const write: PendingWrite = { full: key, stored, value, reclaimAt: times.reclaimAt, kind };
      this.inFlight.set(key, write);
      return write;
    });
  }

  /** Stores prepared writes in one transaction (`reserved`: their bytes, see DiskSpace); false when the store had no room. */
  private async commit(writes: PendingWrite[], reserved: number): Promise<boolean> {
    try {
      const done = await this.write(() => writes.forEach((write) => this.apply(write)), reserved);
      return done !== REFUSED;
    } finally {
      this.settled(writes);
    }
  }

  /** Inside a write transaction: stores a prepared write (or removes, for a deletion). */
  private apply(write: PendingWrite): void {
    if (write.value === null) this.remove(write.stored);
    else this.putValue(write.stored, write.value, write.reclaimAt, write.kind);
  }

  /** Their transaction has settled: reads go to the store again (unless a later write is in flight). */
  private settled(writes: PendingWrite[]): void {
    for (const write of writes) {
      if (this.inFlight.get(write.full) === write) this.inFlight.delete(write.full);
    }
  }

  /** Settles once every write this process queued before it has committed. */
  private barrier(): Promise<unknown> {
    return this.write(() => undefined, 0);
  }

  /** The record under `stored` while it has not expired by the cache's clock. */
  private live(stored: Buffer, now: number): DiskRecord | undefined {
    const record = this.read(stored);
    return record && record.expiresAt > now ? record : undefined;
  }

  private read(stored: Buffer): DiskRecord | undefined {
    // lmdb's get copies the value (getBinaryFast would hand out a buffer it reuses); inside a
    // write transaction it reads that transaction's state.
    return decodeRecord(this.store.entries.get(stored));
  }

  /** Writes a record and its index key, replacing the old record's. Inside a write transaction. */
  private put(
    full: string,
    stored: Buffer,
    bytes: Uint8Array,
    times: { expiresAt: number; reclaimAt: number },
    kind: number,
  ): void {
    const value = encodeRecord(full, stored, bytes, times.expiresAt, times.reclaimAt, kind);
    this.putValue(stored, value, times.reclaimAt, kind);
  }

  private putValue(stored: Buffer, value: Buffer, reclaimAt: number, kind: number): void {
    const old = this.read(stored);
    if (old) this.store.expiry.remove(indexKeyOf(old.reclaimAt, old.kind, stored));
    this.store.entries.put(stored, value);
    this.store.expiry.put(indexKeyOf(reclaimAt, kind, stored), EMPTY);
  }

  /** Removes a record and its index key; false when there was none. Inside a write transaction. */
  private remove(stored: Buffer, record = this.read(stored)): boolean {
    if (!record) return false;
    this.store.expiry.remove(indexKeyOf(record.reclaimAt, record.kind, stored));
    this.store.entries.remove(stored);
    return true;
  }

  /** A record's times for a ttl from now: its expiry on the cache's clock, its reclaim time on real time. */
  private expiryOf(ttlMs: number | null): { expiresAt: number; reclaimAt: number } {
    if (ttlMs === null) return { expiresAt: Infinity, reclaimAt: Infinity };
    return { expiresAt: this.context.clock.now() + ttlMs, reclaimAt: Date.now() + ttlMs };
  }

  /**
   * The next SCAN_BATCH stored keys of `prefix` after `after`, read synchronously (no read
   * transaction is held across a wait), with the full keys of those that do start with it.
   */
  private rangeBatch(
    prefix: string,
    after: Buffer | undefined,
  ): { stored: Buffer[]; keys: string[]; matching: Buffer[] } {
    const range = rangeOf(prefix);
    const start = after ? Buffer.concat([after, ZERO]) : range.start;
    const stored: Buffer[] = [];
    const keys: string[] = [];
    const matching: Buffer[] = [];
    const now = this.context.clock.now();
    for (const { key, value } of this.store.entries.getRange({
      start,
      end: range.end,
      limit: SCAN_BATCH,
    })) {
      const at = asBuffer(key);
      stored.push(at);
      const record = decodeRecord(value);
      const full = isLongKey(at) ? record?.fullKey : at.toString('utf8');
      if (full === undefined || !full.startsWith(prefix)) continue;
      matching.push(at);
      if (record && record.expiresAt > now) keys.push(full);
    }
    return { stored, keys, matching };
  }

  // ---- writes and the size bound ------------------------------------------------------------

  /**
   * Runs `work` in an LMDB write transaction: a child transaction of the batch lmdb commits for
   * this event turn, so a `work` that throws leaves none of its writes (lmdb commits the batch
   * even when one callback throws; a child transaction is aborted alone: see lmdb's
   * executeTxnCallbacks). `reserved`: the bytes DiskSpace counted for it. A store out of space
   * resolves REFUSED, with a warning, and triggers eviction; other errors reject (BaseCache fails
   * open).
   */
  private async write<T>(work: () => T, reserved: number): Promise<T | typeof REFUSED> {
    // lmdb runs a queued transaction on a later turn: one queued after close() would throw there,
    // out of any caller's reach (an uncaught exception).
    if (this.closed) {
      this.space.settle(reserved);
      throw new Error(messages.diskStoreClosed(this.store.path));
    }
    const transaction = this.store.entries.childTransaction(work);
    this.writing.add(transaction);
    try {
      return await transaction;
    } catch (error) {
      if (!isOutOfSpace(error)) throw error;
      this.context.warn(messages.diskWriteFailed(this.store.path, reasonOf(error)));
      this.checkSoon();
      return REFUSED;
    } finally {
      this.writing.delete(transaction);
      this.space.settle(reserved);
    }
  }

  /**
   * Whether `bytes` more may be written (DiskSpace counts them); warns when not. Either way,
   * a store near its bound is swept at once.
   */
  private room(bytes: number): boolean {
    const fits = this.space.reserve(bytes);
    if (!fits) this.context.warn(messages.diskStoreFull(this.store.path, this.space.maxSize));
    if (!fits || this.space.crowded()) this.checkSoon();
    return fits;
  }

  private fullError(): Error {
    return new Error(messages.diskStoreFull(this.store.path, this.space.maxSize));
  }

  /** About the bytes a record of `full` with a value of `bytes` takes (see DiskSpace.footprint). */
  private footprint(full: string, bytes: number): number {
    return this.space.footprint(Buffer.byteLength(full), HEADER_BYTES + bytes);
  }

  /** About the bytes the tag records of `keys` take: a counter each. */
  private tagsFootprint(keys: string[]): number {
    return keys.reduce((sum, key) => sum + this.footprint(key, 32), 0);
  }

  private checkSoon(): void {
    if (this.checking || this.closed) return;
    this.checking = true;
    setImmediate(() => {
      this.checking = false;
      void this.sweep();
    });
  }
}

/** A write queued for the next transaction. */
interface PendingWrite {
  full: string;
  stored: Buffer;
  /** The record to store; null: delete it. */
  value: Buffer | null;
  reclaimAt: number;
  kind: number;
}

const EMPTY = Buffer.alloc(0);
const ZERO = Buffer.alloc(1);

/** A tag record's times: at least `wanted`, never earlier than it had; reclaimed TAG_GRACE_MS after its entries. */
function tagTimes(
  wanted: { expiresAt: number; reclaimAt: number },
  record?: DiskRecord,
): { expiresAt: number; reclaimAt: number } {
  return {
    expiresAt: Math.max(wanted.expiresAt, record?.expiresAt ?? 0),
    reclaimAt: Math.max(wanted.reclaimAt + TAG_GRACE_MS, record?.reclaimAt ?? 0),
  };
}

/** Storage-full failures: the disk (ENOSPC), or LMDB's map or transaction size. */
function isOutOfSpace(error: unknown): boolean {
  return /MDB_MAP_FULL|MDB_TXN_FULL|ENOSPC|No space left/i.test(reasonOf(error));
}

function isLmdbMissing(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    message.includes('lmdb')
  );
}

function validMaxSize(value: unknown): number {
  if (value === undefined) return DEFAULT_DISK_MAX_SIZE;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < MIN_DISK_MAX_SIZE) {
    throw new CacheConfigError(
      messages.invalidOption(
        'disk.maxSize',
        value,
        `Use a whole number of bytes, at least ${MIN_DISK_MAX_SIZE} (1 MiB); the default is ${DEFAULT_DISK_MAX_SIZE} (1 GiB).`,
      ),
    );
  }
  return value;
}

/** The disk backend: BaseCache on a DiskDriver. */
export class DiskCache extends BaseCache {
  /**
   * Validates the options, loads lmdb and opens the store. Throws CacheConfigError for a bad
   * option, a path that cannot hold the store, a store another program wrote or a newer format,
   * and when lmdb is not installed.
   */
  static async create(
    options: BaseCacheOptions & { disk?: DiskCacheOptions } = {},
  ): Promise<DiskCache> {
    const disk: unknown = options.disk;
    if (disk === null || typeof disk !== 'object' || Array.isArray(disk)) {
      throw new CacheConfigError(messages.diskPathRequired(undefined));
    }
    knownKeysOnly('disk', disk, ['path', 'maxSize']);
    const { path, maxSize } = disk as Partial<DiskCacheOptions>;
    const size = validMaxSize(maxSize);
    const absolute = preparePath(path);
    const open = await loadLmdb();
    return new DiskCache(options, open, absolute, size);
  }

  private readonly disk: DiskDriver;

  protected constructor(options: BaseCacheOptions, open: LmdbOpen, path: string, maxSize: number) {
    let driver: DiskDriver | undefined;
    super((context) => (driver = new DiskDriver(open, path, maxSize, context)), options);
    this.disk = driver!;
  }

  /**
   * Reclaims expired records and enforces disk.maxSize now, rather than at the next sweep (each
   * process sweeps every second by itself), for `budgetMs` at most (default 50). Resolves what it
   * removed.
   */
  sweep(budgetMs?: number): Promise<DiskSweep> {
    return this.disk.sweep(budgetMs);
  }
}
