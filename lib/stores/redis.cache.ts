import { Logger } from '@nestjs/common';
import type { Cluster, Redis } from 'ioredis';
import { BaseCache, type BaseCacheOptions } from '../base-cache.js';
import { SCAN_BATCH } from '../cache.constants.js';
import type { CacheDriver, DriverEntry, Step } from '../driver.js';
import type { DriverContext } from '../base-cache.js';
import { CacheConfigError, NotACounterError } from '../errors.js';
import { escapeGlob } from '../glob.js';
import { messages, reasonOf } from '../messages.js';
import { noop, settleWithin } from '../settle-within.js';
import { ReadBatch } from './read-batch.js';
import { asBuffer, setInMulti, SlotCommands } from './redis-cluster.js';
import {
  adoptedClusterWarnings,
  isBoundedCluster,
  isClusterClient,
  nodeOptionsOf,
} from './redis-cluster-connection.js';
import { SlotReadBatch } from './redis-slots.js';
import {
  DISCONNECT_TIMEOUT_MS,
  planConnection,
  type RedisCacheOptions,
  type RedisConnection,
} from './redis.connection.js';

export { loadIoredis, type RedisCacheOptions, type RedisTuning } from './redis.connection.js';
export type { RedisClusterOptions } from './redis-cluster-connection.js';
export { hashSlot } from './redis-slots.js';

/** How long close() waits for QUIT to be answered before dropping the connection. */
const QUIT_WAIT_MS = 500;
/** Longest create() waits for the first connection before resolving anyway (fail open meanwhile). */
const MAX_FIRST_ATTEMPT_MS = 2_000;

/**
 * A counter that starts at 0 with an expiry when it is created: SET NX PX, then INCRBY, in one
 * script so that no other client sees the counter without its expiry.
 */
const INCREMENT_WITH_TTL = `redis.call('SET', KEYS[1], '0', 'NX', 'PX', ARGV[2])
return redis.call('INCRBY', KEYS[1], ARGV[1])`;

/**
 * A tag record lives at least until ARGV[1] ms from now (-1: forever): created holding ARGV[2]
 * when missing, its expiry only ever pushed later. PTTL says -1 for a record that never expires.
 */
const TOUCH_TAG = `local ttl = redis.call('PTTL', KEYS[1])
local want = tonumber(ARGV[1])
if ttl == -2 then
  if want < 0 then redis.call('SET', KEYS[1], ARGV[2]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', want) end
elseif ttl >= 0 then
  if want < 0 then redis.call('PERSIST', KEYS[1]) elseif ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
end
return 0`;

/** Compare-and-expire: makes the lease KEYS[1] last ARGV[2] ms only while it holds the token ARGV[1]. */
const RENEW_LEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/** Compare-and-delete: removes the lease KEYS[1] only while it holds the token ARGV[1]. */
const RELEASE_LEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * A tag record holds ARGV[1], the time of its latest invalidation, and lives ARGV[2] ms from now at
 * least: created when missing (a write in progress may still carry the tag), its expiry only
 * pushed later, a record that never expires left so. Plain SET and PX: any Redis with scripting.
 */
const INVALIDATE_TAG = `local ttl = redis.call('PTTL', KEYS[1])
local keep = tonumber(ARGV[2])
if ttl == -1 then redis.call('SET', KEYS[1], ARGV[1])
elseif ttl > keep then redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else redis.call('SET', KEYS[1], ARGV[1], 'PX', keep) end
return 0`;

/**
 * The shared driver, on ioredis. Entries are plain Redis strings under their full key with a PX
 * expiry, so other tools can inspect them; counters are Redis integers (INCRBY).
 *
 * With the client it creates, every call settles within `commandTimeout` whatever Redis does
 * (down at boot, killed, frozen): nothing waits in an offline queue, so a write reported as
 * failed is not replayed later, and the client reconnects by itself forever. A client you pass
 * keeps your settings.
 *
 * On a Redis Cluster (`redis.cluster`, or a Cluster client) every multi-key command is sent per
 * hash slot (see SlotCommands): concurrent gets make one MGET per slot, each slot's read settling
 * its own callers; setMany one MULTI per slot, so all-or-nothing holds per slot, not across
 * slots; deletes one UNLINK per slot; clear() and deleteByPattern() SCAN every master. MOVED and
 * ASK redirections (a resharding, a failover) are followed, not failures.
 */
export class RedisDriver implements CacheDriver {
  readonly name = 'redis';
  /** host:port, sentinel group or cluster nodes; never credentials. */
  get location(): string {
    return this.connection.target;
  }
  /**
   * The ioredis client: the one the driver opened (a Cluster for `redis.cluster`), or the one you
   * passed as `redis.client`.
   */
  readonly client: Redis | Cluster;
  private readonly logger = new Logger('RedisCache');
  /** Concurrent gets go out as one MGET (one per hash slot on a Cluster); see ReadBatch. */
  private readonly reads: Pick<ReadBatch<Buffer | null>, 'read' | 'flush'>;
  /** The per-slot commands, on a Redis Cluster. */
  private readonly slots: SlotCommands | undefined;
  /** Cleared for good when the server refuses MGET; see readMany(). */
  private multiKeyReads = true;
  private readonly onError = (error: unknown) => {
    const reason = this.reasonOf(error);
    // Refused credentials are not an outage: say which option to check.
    const said = /\b(WRONGPASS|NOAUTH)\b/.test(reason)
      ? messages.redisAuthFailed(this.connection.target, reason)
      : messages.redisUnreachable(this.connection.target, reason);
    this.context.warn(said);
  };
  private readonly onNodeError = (error: unknown, node: unknown) => {
    this.context.warn(messages.redisClusterNodeUnreachable(String(node), this.reasonOf(error)));
  };

  constructor(
    private readonly connection: RedisConnection,
    private readonly context: DriverContext,
  ) {
    const { commandTimeoutMs } = connection;
    const { operationTimeoutMs } = context;
    const outlasts = commandTimeoutMs !== undefined && commandTimeoutMs >= operationTimeoutMs;
    // The cache would give up on commands the client still waits for: refuse the mismatch in our
    // settings; a client of your own keeps yours, with a warning (below).
    if (outlasts && connection.owned) {
      throw new CacheConfigError(
        messages.commandTimeoutOverOperationTimeout(commandTimeoutMs, operationTimeoutMs),
      );
    }
    // Opened only now that the cache options are valid, so a bad option never leaks a connection.
    const client = connection.open();
    this.client = client;
    this.client.on('error', this.onError);
    if (isClusterClient(client)) {
      this.slots = new SlotCommands(client);
      this.reads = new SlotReadBatch(this.slots.readSlot);
      client.on('node error', this.onNodeError);
    } else {
      this.slots = undefined;
      this.reads = new ReadBatch<Buffer | null>((keys) => this.readMany(keys));
    }
    if (connection.owned) return;
    if (isClusterClient(client)) {
      for (const warning of adoptedClusterWarnings(client, operationTimeoutMs)) {
        this.logger.warn(warning);
      }
    } else if (!isBounded(client)) {
      this.logger.warn(messages.redisClientUnbounded(operationTimeoutMs));
    }
    if (outlasts && isBounded(client)) {
      this.logger.warn(
        messages.adoptedCommandTimeoutOverOperationTimeout(commandTimeoutMs!, operationTimeoutMs),
      );
    }
  }

  /**
   * Waits for the first connection attempt to end (ready, or failed: an unreachable Redis fails at
   * once), at most about connectTimeout, so the first calls after boot don't fail needlessly.
   */
  async firstAttempt(): Promise<void> {
    const { status } = this.client;
    if (status !== 'connecting' && status !== 'connect') return;
    const { connectTimeout } = isClusterClient(this.client)
      ? nodeOptionsOf(this.client)
      : this.client.options;
    let settle = noop;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const events = ['ready', 'error', 'close', 'end'] as const;
    for (const event of events) this.client.once(event, settle);
    try {
      await settleWithin(settled, Math.min(connectTimeout ?? 1_000, MAX_FIRST_ATTEMPT_MS));
    } finally {
      for (const event of events) this.client.off(event, settle);
    }
  }

  get(key: string): Promise<Buffer | null> {
    return this.reads.read(key);
  }

  async set(key: string, bytes: Uint8Array, ttlMs: number | null): Promise<boolean> {
    this.reads.flush();
    if (ttlMs === null) await this.client.set(key, asBuffer(bytes));
    else await this.client.set(key, asBuffer(bytes), 'PX', ttlMs);
    return true;
  }

  async getMany(keys: string[]): Promise<(Buffer | null)[]> {
    if (keys.length === 0) return [];
    return this.slots ? this.slots.getMany(keys) : this.readMany(keys);
  }

  /**
   * One MULTI: every entry is stored, or none. On a Redis Cluster, one MULTI per hash slot: all or
   * none of each slot's entries are stored, and it rejects when those of a slot were not, the
   * entries of the other slots stored or not (BaseCache then resolves false). While a slot is
   * being migrated its entries are written one SET each (Redis refuses a transaction of several
   * keys then: TRYAGAIN).
   */
  async setMany(entries: DriverEntry[]): Promise<boolean> {
    if (entries.length === 0) return true;
    this.reads.flush();
    if (this.slots) {
      await this.slots.setMany(entries);
      return true;
    }
    await setInMulti(this.client, entries);
    return true;
  }

  /** UNLINK (one per hash slot on a Cluster). */
  async delete(keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    this.reads.flush();
    return this.slots ? this.slots.delete(keys) : this.client.unlink(keys);
  }

  async ttl(key: string): Promise<number | null | undefined> {
    const ms = await this.client.pttl(key);
    if (ms === -2) return undefined;
    return ms === -1 ? null : ms;
  }

  /**
   * SCAN with MATCH: never KEYS (it blocks Redis). On a Cluster, SCAN of every master, walked
   * again when the slots moved meanwhile (see SlotCommands.scan).
   */
  async *scan(prefix: string, pattern: string | undefined, step: Step): AsyncIterable<string[]> {
    this.reads.flush();
    const match = `${escapeGlob(prefix)}${pattern ?? '*'}`;
    if (this.slots) {
      yield* this.slots.scan(match, step);
      return;
    }
    let cursor = '0';
    do {
      const [next, keys] = await step(
        this.client.scan(cursor, 'MATCH', match, 'COUNT', SCAN_BATCH),
      );
      cursor = next;
      if (keys.length > 0) yield keys;
    } while (cursor !== '0');
  }

  async increment(key: string, by: number, ttlMs: number | null): Promise<number> {
    this.reads.flush();
    try {
      const value =
        ttlMs === null
          ? await this.client.incrby(key, by)
          : await this.client.eval(INCREMENT_WITH_TTL, 1, key, by, ttlMs);
      return Number(value);
    } catch (error) {
      // The key holds an entry, not an integer.
      if (/not an integer/i.test(reasonOf(error))) {
        throw new NotACounterError(messages.notACounter(key), { cause: error });
      }
      throw error;
    }
  }

  async touchTags(keys: string[], expiresAt: number | null, createdAt: number): Promise<void> {
    this.reads.flush();
    // One script per record, so that each touches one key (one hash slot, for Redis Cluster).
    const want =
      expiresAt === null ? -1 : Math.max(1, Math.ceil(expiresAt - this.context.clock.now()));
    await Promise.all(
      keys.map((key) => this.client.eval(TOUCH_TAG, 1, key, want, String(createdAt))),
    );
  }

  async invalidateTags(keys: string[], at: number, keepMs: number): Promise<void> {
    this.reads.flush();
    // One script per record, so that each touches one key (one hash slot, for Redis Cluster).
    await Promise.all(
      keys.map((key) => this.client.eval(INVALIDATE_TAG, 1, key, String(at), keepMs)),
    );
  }

  /** PING (on a Cluster, to one node: the client's choice). */
  async ping(): Promise<void> {
    await this.client.ping();
  }

  /** SET NX PX: the lease of distributedSingleFlight, taken unless another instance holds it. */
  async acquireLease(key: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.client.set(key, token, 'PX', ttlMs, 'NX')) === 'OK';
  }

  /** PEXPIRE of the lease only while it holds `token`. */
  async renewLease(key: string, token: string, ttlMs: number): Promise<void> {
    await this.client.eval(RENEW_LEASE, 1, key, token, ttlMs);
  }

  /** Deletes the lease only while it holds `token`: one that expired and was taken since stays. */
  async releaseLease(key: string, token: string): Promise<void> {
    await this.client.eval(RELEASE_LEASE, 1, key, token);
  }

  /**
   * QUIT (bounded wait), then disconnect; resolves once the socket is closed, within about
   * QUIT_WAIT_MS + DISCONNECT_TIMEOUT_MS even when Redis is frozen. A client you passed is
   * left open: only our listener is removed.
   */
  async close(): Promise<void> {
    this.reads.flush();
    if (this.connection.owned) await shutDown(this.client);
    this.client.off('error', this.onError);
    this.client.off('node error', this.onNodeError);
  }

  /**
   * One MGET; one GET per key where the server refuses MGET: an ACL without it (NOPERM), or a
   * proxy or serverless Redis that wants the keys of one command in one hash slot (CROSSSLOT).
   */
  private async readMany(keys: string[]): Promise<(Buffer | null)[]> {
    if (this.multiKeyReads) {
      try {
        return await this.client.mgetBuffer(keys);
      } catch (error) {
        if (!refusesMultiKeyReads(error)) throw error;
        // Several batches can be refused at once: the first one says so.
        if (this.multiKeyReads) {
          this.multiKeyReads = false;
          this.logger.warn(messages.redisMgetRefused(this.reasonOf(error)));
        }
      }
    }
    return Promise.all(keys.map((key) => this.client.getBuffer(key)));
  }

  /** An error's message for a log line, with any configured password scrubbed out. */
  private reasonOf(error: unknown): string {
    let reason = reasonOf(error);
    for (const secret of this.connection.secrets) reason = reason.split(secret).join('***');
    return reason;
  }
}

/**
 * The shared cache: BaseCache on a RedisDriver.
 */
export class RedisCache extends BaseCache {
  /**
   * Creates the cache and its client (or adopts `options.redis.client`). Waits for the first
   * connection attempt only (an unreachable Redis fails it at once): the app boots with Redis
   * down, the cache fails open meanwhile and recovers by itself when Redis returns.
   * Throws CacheConfigError for malformed options or when ioredis is not installed.
   */
  static async create(
    options: BaseCacheOptions & { redis?: RedisCacheOptions } = {},
  ): Promise<RedisCache> {
    const cache = new RedisCache(options, await planConnection(options.redis));
    await cache.redis.firstAttempt();
    return cache;
  }

  private readonly redis: RedisDriver;

  /**
   * The ioredis client: the one RedisCache opened (a Cluster for `redis.cluster`), or the one you
   * passed as `redis.client`.
   */
  get client(): Redis | Cluster {
    return this.redis.client;
  }

  protected constructor(options: BaseCacheOptions, connection: RedisConnection) {
    let driver: RedisDriver | undefined;
    super((context) => (driver = new RedisDriver(connection, context)), options);
    this.redis = driver!;
  }
}

async function shutDown(client: Redis | Cluster): Promise<void> {
  if (client.status === 'end') return;
  let onEnd = noop;
  const ended = new Promise<void>((resolve) => (onEnd = resolve));
  client.once('end', onEnd);
  try {
    // Auto-pipelining sends queued commands on the next turn of the event loop; let them go
    // first, or a write made just before shutdown would be cut off by QUIT.
    await new Promise((resolve) => setImmediate(resolve));
    if (client.status === 'ready') await settleWithin(client.quit(), QUIT_WAIT_MS);
    if ((client.status as string) === 'end') return;
    // disconnect() also clears a pending reconnect timer. ioredis then destroys the socket after
    // DISCONNECT_TIMEOUT_MS if the server never closes its side (frozen); while reconnecting no
    // 'end' comes at all and its destroy timer runs out the same way. Waiting that long at most
    // leaves neither socket nor timer behind. (A Cluster does the same on each node's connection.)
    // A Cluster between two attempts to reach its nodes holds no connection, and never says 'end'.
    const idle = isClusterClient(client) && client.nodes().length === 0;
    client.disconnect();
    if (!idle) await settleWithin(ended, DISCONNECT_TIMEOUT_MS + 100);
  } finally {
    client.off('end', onEnd);
  }
}

/**
 * The ACL forbids the MGET command itself (not the keys: then GET fails too), or the server wants
 * the keys of one command in one hash slot.
 */
function refusesMultiKeyReads(error: unknown): boolean {
  return (
    error instanceof Error &&
    (/^CROSSSLOT\b/.test(error.message) || /^NOPERM\b.*'mget'/i.test(error.message))
  );
}

function isBounded(client: Redis | Cluster): boolean {
  if (isClusterClient(client)) return isBoundedCluster(client);
  const { enableOfflineQueue, commandTimeout } = client.options;
  return enableOfflineQueue === false && typeof commandTimeout === 'number';
}
