import { Buffer } from 'node:buffer';
import { Logger } from '@nestjs/common';
import { BaseCache, type BaseCacheOptions, type DriverContext } from '../base-cache.js';
import type { CacheDriver, Step } from '../driver.js';
import { decodeCounter, encodeCounter } from '../entry.js';
import { CacheConfigError, NotACounterError } from '../errors.js';
import { messages } from '../messages.js';
import { settleWithin } from '../settle-within.js';
import {
  type MemcachedCacheOptions,
  type MemcachedConnection,
  type MemjsClient,
  planConnection,
} from './memcached-connection.js';
import { decodeItem, encodeItem, type Item, storeExtras } from './memcached-format.js';
import { Generations, REDO } from './memcached-generations.js';
import { Opcode, Status, Wire } from './memcached-wire.js';

export {
  loadMemjs,
  type MemcachedCacheOptions,
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
/** A tag record created by touchTags: never invalidated. */
const NEVER_INVALIDATED = Buffer.from('0', 'latin1');

/** One increment() waiting for its turn on its key. */
interface CounterCall {
  by: number;
  ttlMs: number | null;
  /** performance.now() when it was called. */
  since: number;
  resolve(value: number): void;
  reject(error: unknown): void;
}

/**
 * The memcached driver, on memjs (binary protocol). Each value is stored with a small header
 * holding its expiry on the cache's clock, under a key memcached accepts (see memcachedKey()), in
 * the current generation of its namespace (see Generations: how clear() works without listing
 * keys). Counters and tag records are updated atomically across processes by compare-and-swap.
 *
 * With the client it creates, every call settles within about (retries + 1) × (connectTimeout +
 * commandTimeout) whatever memcached does (down at boot, killed, frozen), and no socket outlives
 * a failed request or close(). A client you pass keeps your settings.
 */
export class MemcachedDriver implements CacheDriver {
  readonly name = 'memcached';
  /** The memjs client: the one the driver opened, or the one you passed as `memcached.client`. */
  readonly client: MemjsClient;
  private readonly wire: Wire;
  private readonly generations: Generations;
  private readonly logger = new Logger('MemcachedCache');
  /** Increments of each key that wait for the one in flight; see increment(). */
  private readonly counters = new Map<string, CounterCall[]>();
  private closed = false;

  constructor(
    private readonly connection: MemcachedConnection,
    private readonly context: DriverContext,
  ) {
    const { requestBoundMs, owned, target } = connection;
    const { operationTimeoutMs } = context;
    const outlasts = requestBoundMs >= operationTimeoutMs;
    // The cache would give up on requests the client still waits for: refuse the mismatch in our
    // settings; a client of your own keeps yours, with a warning.
    if (outlasts && owned) {
      throw new CacheConfigError(
        messages.memcachedTimeoutOverOperationTimeout(requestBoundMs, operationTimeoutMs),
      );
    }
    // Opened only now that the cache options are valid (memjs connects on the first request).
    this.client = connection.open((line) =>
      context.warn(messages.memcachedClientSaid(target, this.scrub(line))),
    );
    if (outlasts) {
      this.logger.warn(messages.adoptedMemcachedClientSlow(requestBoundMs, operationTimeoutMs));
    }
    this.wire = new Wire(this.client, connection.makeRequest);
    this.generations = new Generations(this.wire, context.keyPrefix);
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
    return this.generations.run(key, (itemKey) => this.store(key, itemKey, value, ttlMs), REDO);
  }

  async delete(keys: string[]): Promise<number> {
    const removed = await Promise.all(
      keys.map((key) => this.generations.run(key, (itemKey) => this.remove(itemKey), REDO)),
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
   * update is a compare-and-swap, atomic across processes; the increments of one key made here
   * while one is in flight are applied together by the next one, so that they do not compete.
   */
  increment(key: string, by: number, ttlMs: number | null): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const call: CounterCall = { by, ttlMs, since: performance.now(), resolve, reject };
      const waiting = this.counters.get(key);
      if (waiting) waiting.push(call);
      else {
        this.counters.set(key, []);
        void this.count(key, [call]);
      }
    });
  }

  async touchTags(keys: string[], expiresAt: number | null): Promise<void> {
    await Promise.all(
      keys.map((key) =>
        this.generations.run(
          key,
          (itemKey) =>
            this.update(itemKey, (current) => {
              if (current && outlives(current.expiresAt, expiresAt)) return undefined;
              return { body: current?.body ?? NEVER_INVALIDATED, expiresAt };
            }),
          REDO,
          'many',
        ),
      ),
    );
  }

  async invalidateTags(keys: string[], at: number, keepMs: number): Promise<void> {
    const body = Buffer.from(String(at), 'latin1');
    await Promise.all(
      keys.map((key) =>
        this.generations.run(
          key,
          (itemKey) =>
            this.update(itemKey, (current) => {
              const keepUntil = this.context.clock.now() + keepMs;
              if (!current) return { body, expiresAt: keepUntil };
              const { expiresAt } = current;
              return {
                body,
                expiresAt: expiresAt === null ? null : Math.max(expiresAt, keepUntil),
              };
            }),
          REDO,
          'many',
        ),
      ),
    );
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

  /** The item under `itemKey` while it lives by the cache's clock; bytes another program wrote, as they are. */
  private async read(itemKey: string): Promise<Item | undefined> {
    const reply = await this.wire.request(Opcode.GET, itemKey);
    if (reply.status === Status.NOT_FOUND) return undefined;
    if (reply.status !== Status.OK) throw this.wire.unexpected(Opcode.GET, reply);
    const item = decodeItem(reply.value) ?? { body: reply.value, expiresAt: null };
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
    // memcached itself unlinks the item a too-large SET would replace; removed here as well, so
    // that a stale value never survives a failed overwrite whatever the server does.
    await this.remove(itemKey);
    this.context.warn(messages.memcachedValueTooLarge(key, value.byteLength));
    return false;
  }

  private async remove(itemKey: string): Promise<boolean> {
    const reply = await this.wire.request(Opcode.DELETE, itemKey);
    if (reply.status === Status.OK) return true;
    if (reply.status === Status.NOT_FOUND) return false;
    throw this.wire.unexpected(Opcode.DELETE, reply);
  }

  /**
   * Applies `batch` (increments of `key`, in call order) in one update, then the increments that
   * arrived meanwhile, as the next batch.
   */
  private async count(key: string, batch: CounterCall[]): Promise<void> {
    try {
      const totals = await this.generations.run(
        key,
        (itemKey) => this.addUp(key, itemKey, batch),
        REDO,
        'many',
      );
      batch.forEach((call, i) => call.resolve(totals[i]!));
    } catch (error) {
      for (const call of batch) call.reject(error);
    }
    const now = performance.now();
    const next: CounterCall[] = [];
    for (const call of this.counters.get(key) ?? []) {
      // The cache gave up on a call that waited operationTimeout: its increment is dropped, so an
      // increment reported as failed never lands later.
      if (this.closed) call.reject(new Error('the cache was closed'));
      else if (now - call.since >= this.context.operationTimeoutMs) {
        call.reject(new Error('given up: it waited for other increments of its key too long'));
      } else next.push(call);
    }
    if (next.length === 0) {
      this.counters.delete(key);
      return;
    }
    this.counters.set(key, []);
    void this.count(key, next);
  }

  /** Adds the batch to the counter; resolves the value each call makes it. */
  private async addUp(key: string, itemKey: string, batch: CounterCall[]): Promise<number[]> {
    let totals: number[] = [];
    await this.update(itemKey, (current) => {
      let value = 0;
      // A missing (or expired) counter starts at 0 with the ttl of the call that creates it.
      let expiresAt = this.expiresAt(batch[0]!.ttlMs);
      if (current && (current.expiresAt === null || this.context.clock.now() < current.expiresAt)) {
        const counter = decodeCounter(current.body);
        if (counter === undefined) throw new NotACounterError(messages.notACounter(key));
        value = counter;
        expiresAt = current.expiresAt;
      }
      totals = batch.map((call) => (value += call.by));
      return { body: encodeCounter(value), expiresAt };
    });
    return totals;
  }

  /**
   * Replaces the item under `itemKey` with what `change` makes of it (undefined: leave it as it
   * is), atomically: a compare-and-swap, tried again while another client changes the item
   * between the read and the write.
   */
  private async update(
    itemKey: string,
    change: (current: Item | undefined) => Item | undefined,
  ): Promise<void> {
    for (let tries = 1; tries <= MAX_CAS_TRIES; tries += 1) {
      const found = await this.wire.request(Opcode.GET, itemKey);
      if (found.status !== Status.OK && found.status !== Status.NOT_FOUND) {
        throw this.wire.unexpected(Opcode.GET, found);
      }
      const current =
        found.status === Status.OK
          ? (decodeItem(found.value) ?? { body: found.value, expiresAt: null })
          : undefined;
      const next = change(current);
      if (!next) return;
      const ttlMs =
        next.expiresAt === null
          ? null
          : Math.max(1, Math.ceil(next.expiresAt - this.context.clock.now()));
      const value = encodeItem(next.body, next.expiresAt);
      const opcode = current ? Opcode.SET : Opcode.ADD;
      const written = await this.wire.request(
        opcode,
        itemKey,
        storeExtras(ttlMs),
        value,
        current ? found.cas : undefined,
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
