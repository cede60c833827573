import { type Clock, systemClock } from './clock.js';

/**
 * How a flight ended, as every caller that waited on it sees it:
 * - `value`: the leader's result;
 * - `error`: the leader's work failed (getOrSet hands its factory's error to every waiter);
 * - `empty`: the leader produced nothing (getOrSet's factory returned undefined; the client of
 *   CacheInterceptor's leader left before its response was sent): a waiter may lead another run;
 * - `unshareable`: the leader's result was its own (a response that may not be stored, such as
 *   one that sets a cookie or failed): every waiter runs the work itself;
 * - `timeout`: the flight ran out of time before the leader landed it.
 */
export type Landing<V> =
  | { kind: 'value'; value: V }
  | { kind: 'error'; error: unknown }
  | { kind: 'empty' }
  | { kind: 'unshareable' }
  | { kind: 'timeout'; waitedMs: number };

/** A flight in progress: what a follower waits on. */
export interface Flight<V> {
  /** Settles (never rejects) when the leader lands the flight, or at its deadline at the latest. */
  readonly landing: Promise<Landing<V>>;
}

/** The leader's handle on its flight. */
export interface Lead<V> extends Flight<V> {
  /** The key the flight produces. */
  readonly key: string;
  /** When the flight started, by the clock of its Flights: what its result is dated with. */
  readonly startedAt: number;
  /** The tags of what the flight produces: invalidateTags() of one of them invalidates it. */
  readonly tags: readonly string[];
  /**
   * Whether what the flight produces may still be stored: false once its key (or one of its tags)
   * was invalidated after it started, since its result may predate the invalidation (new callers
   * no longer join it), and false once its deadline passed (a result that late is not stored: an
   * invalidation meanwhile could not have reached it, and a newer flight may have stored since).
   */
  readonly mayStore: boolean;
  /** Hands the outcome to everyone waiting, now. Later calls, and calls after the deadline, do nothing. */
  land(landing: Landing<V>): void;
  /**
   * Ends the flight: the next caller of the key starts a new one. The flight stays joinable between
   * land() and end() (while its value is being written, say), and ends by itself at its deadline.
   */
  end(): void;
  /** Runs `callback` once the flight has ended (at once when it has): what a lease waits on to be released. */
  onEnd(callback: () => void): void;
}

const EMPTY: Landing<never> = { kind: 'empty' };

/**
 * Single-flight: concurrent callers of one key share one run of the work. The one mechanism
 * behind getOrSet and CacheInterceptor.
 *
 * Bounded by construction: every flight has a deadline (`boundMs` after it started), at which it
 * lands `timeout` if it has not landed yet and leaves the map, whatever the leader does or fails
 * to do (a hung factory, a socket that closed without telling anyone). So no caller waits longer
 * than the bound, no state outlives it, and one timer per flight serves all its followers.
 */
export class Flights<V> {
  private readonly inFlight = new Map<string, Lead<V>>();
  /** Runs nobody follows (see detached()), kept only so that invalidations reach them. */
  private readonly unfollowed = new Set<Lead<V>>();

  constructor(
    readonly boundMs: number,
    private readonly clock: Clock = systemClock,
  ) {}

  /** How many flights (and detached runs) are in progress (0 once the load stops and the bound has passed). */
  get size(): number {
    return this.inFlight.size + this.unfollowed.size;
  }

  /** The flight of `key` in progress, to follow; undefined when there is none. */
  get(key: string): Flight<V> | undefined {
    return this.inFlight.size === 0 ? undefined : this.inFlight.get(key);
  }

  /**
   * Starts a flight of `key`, led by the caller, producing something tagged `tags`; undefined
   * when one is in progress already.
   */
  lead(key: string, tags: readonly string[] = NO_TAGS): Lead<V> | undefined {
    if (this.inFlight.has(key)) return undefined;
    const lead = this.start(key, tags, true);
    this.inFlight.set(key, lead);
    return lead;
  }

  /**
   * A run of `key` that nobody follows (one flight of the key is in progress already): what it
   * produces is stored under the same rules as a flight's (see Lead.mayStore), so invalidations
   * reach it and it ends at the same deadline.
   */
  detached(key: string, tags: readonly string[] = NO_TAGS): Lead<V> {
    const lead = this.start(key, tags, false);
    this.unfollowed.add(lead);
    return lead;
  }

  private start(key: string, tags: readonly string[], followed: boolean): Lead<V> {
    const started = this.clock.now();
    let settle!: (landing: Landing<V>) => void;
    let landed = false;
    let ended = false;
    let onEnded: (() => void)[] | undefined;
    const landing = new Promise<Landing<V>>((resolve) => (settle = resolve));
    const lead: Lead<V> & { mayStore: boolean } = {
      landing,
      key,
      startedAt: started,
      tags,
      mayStore: true,
      land: (outcome) => {
        if (landed) return;
        landed = true;
        settle(outcome);
      },
      end: () => {
        if (ended) return;
        ended = true;
        clearTimeout(deadline);
        lead.land(EMPTY); // a flight ended without landing has nothing to share
        if (!followed) this.unfollowed.delete(lead);
        else if (this.inFlight.get(key) === lead) this.inFlight.delete(key);
        if (onEnded) for (const callback of onEnded.splice(0)) callback();
      },
      onEnd: (callback) => {
        if (ended) callback();
        else (onEnded ??= []).push(callback);
      },
    };
    const deadline = setTimeout(() => {
      lead.mayStore = false;
      lead.land({ kind: 'timeout', waitedMs: Math.round(this.clock.now() - started) });
      lead.end();
    }, this.boundMs);
    // A flight never keeps the process alive: at shutdown nobody waits for it any more.
    deadline.unref();
    return lead;
  }

  /**
   * Marks the flights whose key or tags `matches` says were invalidated (see Lead.invalidated) and
   * detaches them: the next caller of such a key starts a flight of its own.
   */
  invalidate(matches: (key: string, tags: readonly string[]) => boolean): void {
    for (const [key, lead] of this.inFlight) {
      if (!matches(key, lead.tags)) continue;
      (lead as { mayStore: boolean }).mayStore = false;
      this.inFlight.delete(key);
    }
    for (const lead of this.unfollowed) {
      if (matches(lead.key, lead.tags)) {
        (lead as { mayStore: boolean }).mayStore = false;
      }
    }
  }
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/** What a caller that stopped waiting for a flight after its soft timeout sees. */
export interface SoftTimeout {
  kind: 'soft-timeout';
  waitedMs: number;
}

/**
 * The flight's landing, or a soft timeout after `ms` (the flight goes on): for callers that have a
 * stale value to fall back on (softTimeout).
 */
export function landingWithin<V>(
  landing: Promise<Landing<V>>,
  ms: number,
): Promise<Landing<V> | SoftTimeout> {
  let timer: NodeJS.Timeout | undefined;
  const soft = new Promise<SoftTimeout>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'soft-timeout', waitedMs: ms }), ms);
    timer.unref();
  });
  return Promise.race([landing, soft]).finally(() => clearTimeout(timer));
}
