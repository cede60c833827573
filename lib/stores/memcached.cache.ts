import { Buffer } from 'node:buffer';
import { BaseCache, type BaseCacheOptions, type DriverContext } from '../base-cache.js';
import type { CacheDriver, Step } from '../driver.js';
import { decodeCounter, encodeCounter } from '../entry.js';
import { CacheConfigError, NotACounterError } from '../errors.js';
import { messages } from '../messages.js';
import { noop, settleWithin } from '../settle-within.js';
import {
  type MemcachedCacheOptions,
  type MemcachedConnection,
  type MemjsClient,
  planConnection,
} from './memcached-connection.js';
import { decodeItem, encodeItem, type Item, storeExtras } from './memcached-format.js';
import { MemcachedGenerations, REDO, type RunOptions } from './memcached-generations.js';
import { Opcode, Status, Wire } from './memcached-wire.js';

export {
  loadMemjs,
  type MemcachedCacheOptions,
  type MemcachedClientOptions,
  type MemcachedLimits,
  type MemcachedServerOptions,
  type MemcachedTuning,
  type MemjsClient,
} from './memcached-connection.js';

/** How long close() lets requests already sent be answered before it drops the connections. */
const DRAIN_WAIT_MS = 500;
/** Longest create() waits for the first round trip before resolving anyway (fail open meanwhile). */
const MAX_FIRST_ATTEMPT_MS = 2_000;
/** Compare-and-swap tries of one update before it is given up (other clients kept winning). */
const MAX_CAS_TRIES = 16;

/**
 * The memcached driver, on memjs (binary protocol). Each value is stored with a small header
 * holding its expiry on the cache's clock, under a key memcached accepts (see memcachedKey()), in
 * the current generation of its namespace (see generations.ts: how clear() works without listing
 * keys). Counters and tag records are updated atomically across processes by compare-and-swap.
 *
 * With the client it creates, every request fails within (retries + 1) × (connectTimeout +
 * commandTimeout) whatever memcached does (down at boot, killed, frozen), and no socket outlives
 * a failed request or close(). A call of several round trips sends no write once fewer than that
 * bound is left of its operationTimeout, so that no write it sends is answered after the cache
 * reported the call failed. A client you pass keeps your settings (and its bound is yours).
 */
export class MemcachedDriver implements CacheDriver {
  readonly name = 'memcached';
  /** The memjs client: the one the driver opened, or the one you passed as `memcached.client`. */
  readonly client: MemjsClient;
  private readonly wire: Wire;
  private readonly generations: MemcachedGenerations;
  /** The last increment of each key made here, settled or not; see increment(). */
  private readonly counters = new Map<string, Promise<void>>();
  private closed = false;

  constructor(
    private readonly connection: MemcachedConnection,
    private readonly context: DriverContext,
  ) {
    const { requestBoundMs, target } = connection;
    // The cache would give up on requests the client still waits for.
    if (requestBoundMs >= context.operationTimeoutMs) {
      throw new CacheConfigError(
        messages.memcachedTimeoutOverOperationTimeout(requestBoundMs, context.operationTimeoutMs),
      );
    }
    // Opened only now that the cache options are valid (memjs connects on the first request).
    // Once closed, the failures close() causes are not news.
    this.client = connection.open((line) => {
      if (!this.closed) context.warn(messages.memcachedClientSaid(target, this.scrub(line)));
    });
    this.wire = new Wire(this.client, connection.makeRequest);
    this.generations = new MemcachedGenerations(this.wire, context.keyPrefix);
  }

  /** Reads the namespace generation once (at most MAX_FIRST_ATTEMPT_MS), so the first calls need no extra round trip. */
  async firstAttempt(): Promise<void> {
    await settleWithin(this.generations.warmUp(), MAX_FIRST_ATTEMPT_MS);
  }

  get(key: string): Promise<Buffer | undefined> {
    return this.generations.run(
      key,
      async (itemKey) => (await this.read(itemKey))?.body,
      undefined,
    );
  }

  set(key: string, bytes: Uint8Array, ttlMs: number | null): Promise<boolean> {
    const value = encodeItem(bytes, this.expiresAt(ttlMs));
    const store =
      value.byteLength > this.connection.maxValueBytes
        ? (itemKey: string) => this.refuse(key, itemKey, value, 'memcached.maxValueBytes')
        : (itemKey: string) => this.store(key, itemKey, value, ttlMs);
    return this.generations.run(key, store, REDO, { deadline: this.deadline() });
  }

  async delete(keys: string[]): Promise<number> {
    const deadline = this.deadline();
    const removed = await Promise.all(
      keys.map((key) =>
        this.generations.run(key, (itemKey) => this.remove(itemKey), REDO, { deadline }),
      ),
    );
    return removed.filter(Boolean).length;
  }

  ttl(key: string): Promise<number | null | undefined> {
    return this.generations.run(
      key,
      async (itemKey) => {
        const item = await this.read(itemKey);
        if (!item) return undefined;
        return item.expiresAt === null ? null : item.expiresAt - this.context.clock.now();
      },
      undefined,
    );
  }

  /**
   * The counter is an item like any other (its decimal digits behind the header), so it may go
   * negative and expires by the cache's clock; memcached's own incr/decr could do neither. Each
   * update is a compare-and-swap, atomic across processes. The increments of one key made here
   * wait for each other, so that they do not compete, but each for one request bound at most
   * (then it goes ahead: the compare-and-swap keeps it exact): a request that never settles
   * holds up no other.
   */
  increment(key: string, by: number, ttlMs: number | null): Promise<number> {
    const run: Required<RunOptions> = {
      steps: 'many',
      deadline: this.deadline(),
      renewals: this.generations.renewals,
    };
    const previous = this.counters.get(key);
    const counted = previous
      ? settleWithin(
          previous,
          this.connection.requestBoundMs || this.context.operationTimeoutMs,
        ).then(() => this.count(key, by, ttlMs, run))
      : this.count(key, by, ttlMs, run);
    const settled = counted.then(noop, noop);
    this.counters.set(key, settled);
    void settled.then(() => {
      if (this.counters.get(key) === settled) this.counters.delete(key);
    });
    return counted;
  }

  async touchTags(keys: string[], expiresAt: number | null, createdAt: number): Promise<void> {
    const created = Buffer.from(String(createdAt), 'latin1');
    await this.updateAll(keys, (current) => {
      if (current && outlives(current.expiresAt, expiresAt)) return undefined;
      return { body: current?.body ?? created, expiresAt };
    });
  }

  async invalidateTags(keys: string[], at: number, keepMs: number): Promise<void> {
    const body = Buffer.from(String(at), 'latin1');
    await this.updateAll(keys, (current) => {
      const keepUntil = this.context.clock.now() + keepMs;
      if (!current) return { body, expiresAt: keepUntil };
      const { expiresAt } = current;
      return { body, expiresAt: expiresAt === null ? null : Math.max(expiresAt, keepUntil) };
    });
  }

  /** A fresh generation for each prefix: what was stored under them can no longer be reached. */
  async clear(prefixes: string[], step: Step): Promise<void> {
    await Promise.all(prefixes.map((prefix) => step(this.generations.renew(prefix))));
  }

  /**
   * Lets the requests already sent be answered (at most DRAIN_WAIT_MS), then destroys the
   * connections: bounded even when memcached is frozen, and no socket or timer is left. A client
   * you passed is left open.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (!this.connection.owned) return;
    // Generation checks go out on the next tick: let them go before the drain.
    await new Promise((resolve) => setImmediate(resolve));
    await this.wire.drain(DRAIN_WAIT_MS);
    this.client.close();
  }

  /** How many increments wait or run, by key (for tests). */
  pendingCounters(): number {
    return this.counters.size;
  }

  /** The item under `itemKey` while it lives by the cache's clock. */
  private async read(itemKey: string): Promise<Item | undefined> {
    const reply = await this.wire.request(Opcode.GET, itemKey);
    if (reply.status === Status.NOT_FOUND) return undefined;
    if (reply.status !== Status.OK) throw this.wire.unexpected(Opcode.GET, reply);
    return this.live(reply.value);
  }

  /** The item in `value` unless it expired by the cache's clock (or is not one of ours). */
  private live(value: Buffer): Item | undefined {
    const item = decodeItem(value);
    if (!item) return undefined;
    return item.expiresAt === null || this.context.clock.now() < item.expiresAt ? item : undefined;
  }

  private async store(
    key: string,
    itemKey: string,
    value: Buffer,
    ttlMs: number | null,
  ): Promise<boolean> {
    const reply = await this.wire.request(Opcode.SET, itemKey, storeExtras(ttlMs), value);
    if (reply.status === Status.OK) return true;
    if (reply.status !== Status.TOO_LARGE) throw this.wire.unexpected(Opcode.SET, reply);
    return this.refuse(key, itemKey, value, "memcached's item size");
  }

  /** Not stored: the entry it replaces is removed (so a stale value never survives), with a warning. */
  private async refuse(key: string, itemKey: string, value: Buffer, limit: string) {
    await this.remove(itemKey);
    this.context.warn(messages.memcachedValueTooLarge(key, value.byteLength, limit));
    return false;
  }

  private async remove(itemKey: string): Promise<boolean> {
    const reply = await this.wire.request(Opcode.DELETE, itemKey);
    if (reply.status === Status.OK) return true;
    if (reply.status === Status.NOT_FOUND) return false;
    throw this.wire.unexpected(Opcode.DELETE, reply);
  }

  /** Adds `by` to the counter; resolves its new value. */
  private count(
    key: string,
    by: number,
    ttlMs: number | null,
    run: Required<RunOptions>,
  ): Promise<number> {
    let value = 0;
    const add = async (itemKey: string) => {
      await this.update(itemKey, run.deadline, (current) => {
        // A missing (or expired) counter starts at 0 with the ttl of the call that creates it.
        if (!current) {
          value = by;
          return { body: encodeCounter(value), expiresAt: this.expiresAt(ttlMs) };
        }
        const counter = decodeCounter(current.body);
        if (counter === undefined) throw new NotACounterError(messages.notACounter(key));
        value = counter + by;
        return { body: encodeCounter(value), expiresAt: current.expiresAt };
      });
      return value;
    };
    return this.generations.run(key, add, REDO, run);
  }

  /** update() on each key, under its generation. */
  private async updateAll(
    keys: string[],
    change: (current: Item | undefined) => Item | undefined,
  ): Promise<void> {
    const deadline = this.deadline();
    await Promise.all(
      keys.map((key) =>
        this.generations.run(key, (itemKey) => this.update(itemKey, deadline, change), REDO, {
          steps: 'many',
          deadline,
        }),
      ),
    );
  }

  /**
   * Replaces the item under `itemKey` with what `change` makes of it (undefined: leave it as it
   * is), atomically: a compare-and-swap, tried again while another client changes the item
   * between the read and the write. No write is sent after `deadline`.
   */
  private async update(
    itemKey: string,
    deadline: number,
    change: (current: Item | undefined) => Item | undefined,
  ): Promise<void> {
    for (let tries = 1; tries <= MAX_CAS_TRIES; tries += 1) {
      const found = await this.wire.request(Opcode.GET, itemKey);
      const exists = found.status === Status.OK;
      if (!exists && found.status !== Status.NOT_FOUND) {
        throw this.wire.unexpected(Opcode.GET, found);
      }
      const next = change(exists ? this.live(found.value) : undefined);
      if (!next) return;
      if (performance.now() > deadline) throw new Error(messages.memcachedPastDeadline(itemKey));
      const ttlMs =
        next.expiresAt === null
          ? null
          : Math.max(1, Math.ceil(next.expiresAt - this.context.clock.now()));
      const value = encodeItem(next.body, next.expiresAt);
      const opcode = exists ? Opcode.SET : Opcode.ADD;
      const written = await this.wire.request(
        opcode,
        itemKey,
        storeExtras(ttlMs),
        value,
        exists ? found.cas : undefined,
      );
      if (written.status === Status.OK) return;
      // Written or deleted by another client since it was read: read it again.
      if (
        written.status !== Status.EXISTS &&
        written.status !== Status.NOT_FOUND &&
        written.status !== Status.NOT_STORED
      ) {
        throw this.wire.unexpected(opcode, written);
      }
    }
    throw new Error(messages.memcachedContended(itemKey, MAX_CAS_TRIES));
  }

  /**
   * performance.now() after which a call begun now sends no more writes: a write sent then is
   * answered (or failed) by the end of its operationTimeout.
   */
  private deadline(): number {
    return performance.now() + this.context.operationTimeoutMs - this.connection.requestBoundMs;
  }

  /** When an item written now with `ttlMs` expires, on the cache's clock. */
  private expiresAt(ttlMs: number | null): number | null {
    return ttlMs === null ? null : this.context.clock.now() + ttlMs;
  }

  /** A line for a log, with any configured password scrubbed out. */
  private scrub(line: string): string {
    let scrubbed = line;
    for (const secret of this.connection.secrets) scrubbed = scrubbed.split(secret).join('***');
    return scrubbed;
  }
}

/** Whether an expiry is at least as late as `wanted` (null: never expires). */
function outlives(expiresAt: number | null, wanted: number | null): boolean {
  return expiresAt === null || (wanted !== null && expiresAt >= wanted);
}

/** The memcached backend: BaseCache on a MemcachedDriver. */
export class MemcachedCache extends BaseCache {
  /**
   * Creates the cache and its memjs client (or adopts `options.memcached.client`), and reads the
   * namespace generation once, waiting at most about connectTimeout + commandTimeout: the app
   * boots with memcached down, the cache fails open meanwhile and recovers by itself when
   * memcached returns. Throws CacheConfigError for malformed options or when memjs is not installed.
   */
  static async create(
    options: BaseCacheOptions & { memcached?: MemcachedCacheOptions } = {},
  ): Promise<MemcachedCache> {
    const cache = new MemcachedCache(options, await planConnection(options.memcached));
    await cache.memcached.firstAttempt();
    return cache;
  }

  private readonly memcached: MemcachedDriver;

  /** The memjs client: the one MemcachedCache opened, or the one you passed as `memcached.client`. */
  get client(): MemjsClient {
    return this.memcached.client;
  }

  protected constructor(options: BaseCacheOptions, connection: MemcachedConnection) {
    let driver: MemcachedDriver | undefined;
    super((context) => (driver = new MemcachedDriver(connection, context)), options);
    this.memcached = driver!;
  }
}
