import { performance } from 'node:perf_hooks';
import { asBuffer, indexedBy, indexEndAt, INDEX_HEAD, storedKeyInIndex } from './disk-format.js';
import type { DiskStore } from './disk-store.js';

/** What a sweep did: records reclaimed because they expired, and evicted for the size bound. */
export interface DiskSweep {
  expired: number;
  evicted: number;
}

/** Eviction starts past this share of maxSize in use, and goes down to EVICT_TO. */
const EVICT_AT = 0.75;
const EVICT_TO = 0.65;
/** Writes are refused once they would take the store past this share of maxSize. */
const REFUSE_AT = 0.9;
/** Records one reclaim transaction removes at most: a short hold of the write lock. */
const SWEEP_BATCH = 500;
/** How long one sweep goes on reclaiming, batch after batch, before it leaves the rest to the next. */
export const SWEEP_BUDGET_MS = 50;
/** LMDB's bytes per node (a record, an index key) besides the key and value, and per page header. */
const NODE_BYTES = 8;
const PAGE_HEADER = 24;

/** Runs `work` in one write transaction of its own; REFUSED when the store had no room. */
export type Transact = <T>(work: () => T) => Promise<T | typeof REFUSED>;
/** A write the store had no room for. */
export const REFUSED = Symbol('nest-cache:disk-refused');

/**
 * The size bound of one store, and its sweep (the only code that removes records by time).
 *
 * The bound is kept before anything is queued: an estimate of the bytes in use (those measured
 * from LMDB's page counts at the last check, plus the footprint of every write queued since) is
 * checked by each write, which is refused once it would pass REFUSE_AT of maxSize. LMDB grows its
 * file only when a write finds too few free pages, so an estimate held under maxSize holds the
 * file under it too, a burst of writes in one event turn included (they are one transaction,
 * which cannot reuse the pages it frees itself: counting every write, an overwrite too, covers
 * that). Past EVICT_AT the sweep runs at once and evicts the records that are to be reclaimed
 * soonest down to EVICT_TO.
 */
export class DiskSpace {
  /** Bytes in use at the last measure. */
  private measured = 0;
  /** Bytes queued since the last measure. */
  private since = 0;
  /** Bytes queued and not settled yet: what a measure cannot see. */
  private pending = 0;
  /** Whether a transaction settled since the last measure, which would then differ. */
  private stale = true;
  private readonly pageSize: number;

  constructor(
    private readonly store: DiskStore,
    readonly maxSize: number,
  ) {
    this.pageSize = (store.entries.getStats() as LmdbStats).pageSize;
  }

  /** About how many bytes of pages a record with this key and value takes, with its index key. */
  footprint(keyBytes: number, valueBytes: number): number {
    const node = NODE_BYTES + keyBytes;
    // LMDB keeps a value over about half a page on pages of its own.
    const value =
      node + valueBytes > this.pageSize / 2
        ? Math.ceil((PAGE_HEADER + valueBytes) / this.pageSize) * this.pageSize
        : valueBytes;
    return node + value + node + INDEX_HEAD;
  }

  /**
   * Accounts for `bytes` about to be queued; false (nothing accounted) when they would take the
   * store past REFUSE_AT. `always`: counted even then (an invalidation must land).
   */
  reserve(bytes: number, always = false): boolean {
    const limit = this.maxSize * REFUSE_AT;
    if (
      !always &&
      this.estimate() + bytes > limit &&
      (!this.stale || this.measure() + bytes > limit)
    ) {
      return false;
    }
    this.since += bytes;
    this.pending += bytes;
    return true;
  }

  /** A transaction that reserved `bytes` has settled (committed or not). */
  settle(bytes: number): void {
    this.pending -= bytes;
    this.stale = true;
  }

  /** Whether the estimate is past EVICT_AT: time to sweep. */
  crowded(): boolean {
    return this.estimate() > this.maxSize * EVICT_AT;
  }

  /**
   * Reclaims the records whose reclaim time has passed, batch after batch while they come back
   * full (yielding to the event loop between them), then evicts past EVICT_AT; within
   * `budgetMs` (SWEEP_BUDGET_MS), leaving the rest to the next sweep. `stopped`: the store is
   * closing.
   */
  async sweep(transact: Transact, stopped: () => boolean, budgetMs: number): Promise<DiskSweep> {
    const done = { expired: 0, evicted: 0 };
    const deadline = performance.now() + budgetMs;
    const more = () => !stopped() && performance.now() < deadline;
    const end = indexEndAt(Date.now());
    for (let full = true; full && more();) {
      const batch = await this.reclaim(transact, end);
      done.expired += batch.removed;
      full = batch.full;
      if (full) await nextTurn();
    }
    if (stopped()) return done;
    let used = this.measure();
    if (used <= this.maxSize * EVICT_AT) return done;
    while (used > this.maxSize * EVICT_TO) {
      const batch = await this.reclaim(transact, undefined, used - this.maxSize * EVICT_TO);
      if (batch.removed === 0) break;
      done.evicted += batch.removed;
      used = this.measure();
      if (!more()) break;
      await nextTurn();
    }
    return done;
  }

  /** The estimate of the bytes in use. */
  private estimate(): number {
    return this.measured + this.since;
  }

  /**
   * Measures the bytes of the pages in use (every database's tree, the free list's, the two meta
   * pages): freed pages are not in use, LMDB reuses them before it grows the file.
   */
  private measure(): number {
    const { root, entries, expiry } = this.store;
    // Stats read the snapshot of this event turn: renew it, to see what just committed.
    root.resetReadTxn();
    const stats = entries.getStats() as LmdbStats;
    const pages = (s: PageStats) => s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
    const indexPages = pages(expiry.getStats() as PageStats);
    this.measured =
      (pages(stats) + indexPages + pages(stats.root) + pages(stats.free) + 2) * stats.pageSize;
    this.since = this.pending;
    this.stale = false;
    return this.measured;
  }

  /**
   * Removes records in the order of the expiry index, in one transaction: at most SWEEP_BATCH,
   * those before `end` when given (expired), or until about `bytes` are freed (eviction, soonest
   * to be reclaimed first). `full`: the batch was, so more may follow.
   */
  private async reclaim(
    transact: Transact,
    end: Buffer | undefined,
    bytes = Infinity,
  ): Promise<{ removed: number; full: boolean }> {
    const { entries, expiry } = this.store;
    const doomed = [...expiry.getKeys({ end, limit: SWEEP_BATCH })].map(asBuffer);
    if (doomed.length === 0) return { removed: 0, full: false };
    const removed = await transact(() => {
      let count = 0;
      let freed = 0;
      for (const indexKey of doomed) {
        if (freed >= bytes) break;
        // Read again inside the transaction: another process may have reclaimed or rewritten it.
        if (!expiry.doesExist(indexKey)) continue;
        const stored = storedKeyInIndex(indexKey);
        // A view lmdb reuses: only its header and length are read.
        const value = entries.getBinaryFast(stored);
        expiry.remove(indexKey);
        // An index key whose record has another reclaim time is stale: only the key goes.
        if (!indexedBy(indexKey, value)) continue;
        entries.remove(stored);
        freed += this.footprint(stored.byteLength, value!.byteLength);
        count += 1;
      }
      return count;
    });
    return { removed: removed === REFUSED ? 0 : removed, full: doomed.length === SWEEP_BATCH };
  }
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface PageStats {
  treeBranchPageCount: number;
  treeLeafPageCount: number;
  overflowPages: number;
}

interface LmdbStats extends PageStats {
  pageSize: number;
  root: PageStats;
  free: PageStats;
}
