import type { Redis } from 'ioredis';
import { BaseCache, type BaseCacheOptions, type Step, type StoredEntry } from '../base-cache.js';
import { CacheConfigError } from '../errors.js';
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

/** Keys SCAN looks at per call in clear(); each batch found is UNLINKed before the next SCAN. */
const SCAN_COUNT = 1_000;
/** How long close() waits for QUIT to be answered before dropping the connection. */
const QUIT_WAIT_MS = 500;
/** Longest create() waits for the first connection before resolving anyway (fail open meanwhile). */
const MAX_FIRST_ATTEMPT_MS = 2_000;

/**
 * The shared backend, on ioredis. Entries are plain Redis strings under `${prefix}:${key}`
 * with a PX expiry, so other tools can inspect them.
 *
 * With the client it creates, every call settles within `commandTimeout` whatever Redis does
 * (down at boot, killed, frozen): nothing waits in an offline queue, so a write reported as
 * failed is not replayed later, and the client reconnects by itself forever. A client you pass
 * keeps your settings.
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
    await cache.firstAttempt();
    return cache;
  }

  /** The ioredis client: the one RedisCache opened, or the one you passed as `redis.client`. */
  readonly client: Redis;
  private readonly connection: RedisConnection;
  /** Concurrent gets go out as one MGET; see ReadBatch. */
  private readonly reads = new ReadBatch<Buffer | null>((keys) => this.readMany(keys));
  /** Cleared for good when the server refuses MGET; see readMany(). */
  private multiKeyReads = true;
  private readonly onError = (error: unknown) => {
    this.reportBackendProblem(
      messages.redisUnreachable(this.connection.target, this.reasonOf(error)),
    );
  };

  protected constructor(options: BaseCacheOptions, connection: RedisConnection) {
    super(options);
    const { commandTimeoutMs } = connection;
    const outlasts = commandTimeoutMs !== undefined && commandTimeoutMs >= this.operationTimeoutMs;
    // The cache would give up on commands the client still waits for: refuse the mismatch in our
    // settings; a client of your own keeps yours, with a warning (below).
    if (outlasts && connection.owned) {
      throw new CacheConfigError(
        messages.commandTimeoutOverOperationTimeout(commandTimeoutMs, this.operationTimeoutMs),
      );
    }
    this.connection = connection;
    // Opened only now that the cache options are valid, so a bad option never leaks a connection.
    this.client = connection.open();
    this.client.on('error', this.onError);
    if (!connection.owned && !isBounded(this.client)) {
      this.logger.warn(messages.redisClientUnbounded(this.operationTimeoutMs));
    } else if (outlasts) {
      this.logger.warn(
        messages.adoptedCommandTimeoutOverOperationTimeout(
          commandTimeoutMs!,
          this.operationTimeoutMs,
        ),
      );
    }
  }

  /**
   * Waits for the first connection attempt to end (ready, or failed: an unreachable Redis fails at
   * once), at most about connectTimeout, so the first calls after boot don't fail needlessly.
   */
  private async firstAttempt(): Promise<void> {
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

  protected readEntry(key: string): Promise<Buffer | null> {
    return this.reads.read(key);
  }

  protected async writeEntry({ key, bytes, ttlMs }: StoredEntry): Promise<boolean> {
    this.reads.flush();
    if (ttlMs === null) await this.client.set(key, bytes);
    else await this.client.set(key, bytes, 'PX', ttlMs);
    return true;
  }

  protected override async hasEntry(key: string): Promise<boolean> {
    return (await this.client.exists(key)) === 1;
  }

  protected override async readEntries(keys: string[]): Promise<(Buffer | null)[]> {
    if (keys.length === 0) return [];
    return this.readMany(keys);
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

  /** One MULTI: every entry is stored, or none. */
  protected override async writeEntries(entries: StoredEntry[]): Promise<boolean> {
    if (entries.length === 0) return true;
    const multi = this.client.multi();
    for (const { key, bytes, ttlMs } of entries) {
      if (ttlMs === null) multi.set(key, bytes);
      else multi.set(key, bytes, 'PX', ttlMs);
    }
    const results = await multi.exec();
    if (!results) throw new Error('MULTI was discarded');
    const failed = results.find(([error]) => error);
    if (failed) throw failed[0];
    return true;
  }

  protected async removeEntries(keys: string[]): Promise<number> {
    if (keys.length === 0) return 0;
    this.reads.flush();
    return this.client.unlink(keys);
  }

  protected async entryTtl(key: string): Promise<number | null | undefined> {
    const ms = await this.client.pttl(key);
    if (ms === -2) return undefined;
    return ms === -1 ? null : ms;
  }

  /** SCAN + UNLINK in batches: never KEYS (blocks Redis) nor FLUSHDB (deletes other namespaces). */
  protected async clearNamespace(namespace: string, step: Step): Promise<void> {
    this.reads.flush();
    const match = `${escapeGlob(namespace)}*`;
    let cursor = '0';
    do {
      const [next, keys] = await step(
        this.client.scanBuffer(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT),
      );
      cursor = next.toString();
      if (keys.length > 0) await step(this.client.unlink(keys));
    } while (cursor !== '0');
  }

  /**
   * QUIT (bounded wait), then disconnect; resolves once the socket is closed, within about
   * QUIT_WAIT_MS + DISCONNECT_TIMEOUT_MS even when Redis is frozen. A client you passed is
   * left open: only our listener is removed.
   */
  protected async closeBackend(): Promise<void> {
    this.reads.flush();
    if (this.connection.owned) await this.shutDown(this.client);
    this.client.off('error', this.onError);
  }

  private async shutDown(client: Redis): Promise<void> {
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

  /** An error's message for a log line, with any configured password scrubbed out. */
  private reasonOf(error: unknown): string {
    let reason = reasonOf(error);
    for (const secret of this.connection.secrets) reason = reason.split(secret).join('***');
    return reason;
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

/** Redis glob metacharacters in a prefix match literally, so `a*` never clears `ab:...`. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

function isBounded(client: Redis): boolean {
  const { enableOfflineQueue, commandTimeout } = client.options;
  return enableOfflineQueue === false && typeof commandTimeout === 'number';
}
