import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { BaseCache, type BaseCacheOptions } from '../base-cache.js';
import { SCAN_BATCH } from '../cache.constants.js';
import type { CacheDriver, DriverEntry, Step } from '../driver.js';
import type { DriverContext } from '../base-cache.js';
import { CacheConfigError, NotACounterError } from '../errors.js';
import { escapeGlob } from '../glob.js';
import { messages, reasonOf } from '../messages.js';
import { noop, settleWithin } from '../settle-within.js';
import { ReadBatch } from './read-batch.js';
import {
  DISCONNECT_TIMEOUT_MS,
  planConnection,
  type RedisCacheOptions,
  type RedisConnection,
} from './redis.connection.js';

export { loadIoredis, type RedisCacheOptions, type RedisTuning } from './redis.connection.js';

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
 */
export class RedisDriver implements CacheDriver {
  readonly name = 'redis';
  /** The ioredis client: the one the driver opened, or the one you passed as `redis.client`. */
  readonly client: Redis;
  private readonly logger = new Logger('RedisCache');
  /** Concurrent gets go out as one MGET; see ReadBatch. */
  private readonly reads = new ReadBatch<Buffer | null>((keys) => this.readMany(keys));
  /** Cleared for good when the server refuses MGET; see readMany(). */
  private multiKeyReads = true;
  private readonly onError = (error: unknown) => {
    this.context.warn(messages.redisUnreachable(this.connection.target, this.reasonOf(error)));
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
    this.client = connection.open();
    this.client.on('error', this.onError);
    if (!connection.owned && !isBounded(this.client)) {
      this.logger.warn(messages.redisClientUnbounded(operationTimeoutMs));
    } else if (outlasts) {
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
    const { status, options } = this.client;
    if (status !== 'connecting' && status !== 'connect') return;
    let settle = noop;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const events = ['ready', 'error', 'close', 'end'] as const;
    for (const event of events) this.client.once(event, settle);
    try {
      await settleWithin(settled, Math.min(options.connectTimeout ?? 1_000, MAX_FIRST_ATTEMPT_MS));
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
    return this.readMany(keys);
  }

  /** One MULTI: every entry is stored, or none. */
  async setMany(entries: DriverEntry[]): Promise<boolean> {
    if (entries.length === 0) return true;
    this.reads.flush();
    const multi = this.client.multi();
    for (const { key, bytes, ttlMs } of entries) {
      if (ttlMs === null) multi.set(key, asBuffer(bytes));
      else multi.set(key, asBuffer(bytes), 'PX', ttlMs);
    }
    const results = await multi.exec();
    if (!results) throw new Error('MULTI was discarded');
    const failed = results.find(([error]) => error);
    if (failed) throw failed[0];
    return true;
  }

  async delete(keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    this.reads.flush();
    return this.client.unlink(keys);
  }

  async ttl(key: string): Promise<number | null | undefined> {
    const ms = await this.client.pttl(key);
    if (ms === -2) return undefined;
    return ms === -1 ? null : ms;
  }

  /** SCAN with MATCH: never KEYS (it blocks Redis). */
  async *scan(prefix: string, pattern: string | undefined, step: Step): AsyncIterable<string[]> {
    this.reads.flush();
    const match = `${escapeGlob(prefix)}${pattern ?? '*'}`;
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

  /** SET NX PX: the lease of distributedSingleFlight, taken unless another instance holds it. */
  async acquireLease(key: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.client.set(key, token, 'PX', ttlMs, 'NX')) === 'OK';
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

  /** The ioredis client: the one RedisCache opened, or the one you passed as `redis.client`. */
  get client(): Redis {
    return this.redis.client;
  }

  protected constructor(options: BaseCacheOptions, connection: RedisConnection) {
    let driver: RedisDriver | undefined;
    super((context) => (driver = new RedisDriver(connection, context)), options);
    this.redis = driver!;
  }
}

async function shutDown(client: Redis): Promise<void> {
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
    // leaves neither socket nor timer behind.
    client.disconnect();
    await settleWithin(ended, DISCONNECT_TIMEOUT_MS + 100);
  } finally {
    client.off('end', onEnd);
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
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

function isBounded(client: Redis): boolean {
  const { enableOfflineQueue, commandTimeout } = client.options;
  return enableOfflineQueue === false && typeof commandTimeout === 'number';
}
