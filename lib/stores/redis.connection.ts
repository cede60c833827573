import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { CacheConfigError } from '../errors.js';
import { describe, messages } from '../messages.js';
import { MAX_TIMER_MS } from '../ttl.js';
import {
  BESIDE_CLUSTER,
  isClusterClient,
  nodeOptionsOf,
  planCluster,
  type RedisClusterOptions,
} from './redis-cluster-connection.js';

/** Bounds on waiting for Redis; RedisCache applies them to the client it creates. */
export interface RedisTuning {
  /**
   * Milliseconds a command may wait for its reply before it fails (a miss, or a dropped write).
   * @default 500
   */
  commandTimeout?: number;
  /**
   * Milliseconds a connection attempt may take before it fails and is retried.
   * @default 1000
   */
  connectTimeout?: number;
}

/**
 * ioredis options RedisCache decides itself, so that every call settles fast and no failed write
 * is replayed later. To choose them yourself, pass your own client as `{ client }`.
 */
export type ManagedRedisOption =
  | 'enableOfflineQueue'
  | 'maxRetriesPerRequest'
  | 'autoResendUnfulfilledCommands'
  | 'retryStrategy'
  | 'lazyConnect'
  | 'enableAutoPipelining'
  | 'keyPrefix';

/**
 * Where the redis backend connects:
 * - `{ url }`: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS;
 * - ioredis connection options (host, port, db, username, password, tls, sentinels...);
 * - `{ cluster: { nodes: [{ host, port }] } }`: a Redis Cluster (see RedisClusterOptions), with
 *   the same `commandTimeout` and `connectTimeout` beside `cluster`;
 * - `{ client }`: an ioredis client you own, a `Redis` or a `Cluster`. RedisCache uses it as it
 *   is (its options are yours) and never closes it.
 * @default { url: 'redis://127.0.0.1:6379' }
 */
export type RedisCacheOptions =
  | ({ url: string } & RedisTuning)
  | (Omit<RedisOptions, ManagedRedisOption | keyof RedisTuning> & RedisTuning)
  | ({ cluster: RedisClusterOptions } & RedisTuning)
  | { client: Redis | Cluster };

type RedisConstructor = new (...args: (RedisOptions | string)[]) => Redis;
type ClusterConstructor = new (nodes: ClusterNode[], options: ClusterOptions) => Cluster;

/** A client to use: one RedisCache opens (and closes), or the user's own. */
export interface RedisConnection {
  /** Creates the client; called once, after the cache options were validated. */
  open(): Redis | Cluster;
  /** Whether RedisCache created the client, and so closes it. */
  owned: boolean;
  /** host:port (or socket path, sentinel group, cluster nodes) for messages; never credentials. */
  target: string;
  /** Secrets to scrub from any reason that reaches a log. */
  secrets: string[];
  /** The client's command timeout in ms (its nodes', for a Cluster), when it has one. */
  commandTimeoutMs: number | undefined;
}

const DEFAULT_URL = 'redis://127.0.0.1:6379';
const DEFAULT_COMMAND_TIMEOUT_MS = 500;
const DEFAULT_CONNECT_TIMEOUT_MS = 1_000;
/** Reconnection backoff: 50 ms doubling to this cap, so a returning Redis is found within ~2 s. */
const MAX_RECONNECT_DELAY_MS = 2_000;
const RECONNECT_JITTER_MS = 100;
/** How long close() lets the socket finish before ioredis destroys it (a frozen Redis never answers). */
export const DISCONNECT_TIMEOUT_MS = 1_000;

/**
 * Loads ioredis, an optional peer dependency, when the redis backend is chosen.
 * `importer` is replaceable so the "not installed" message can be tested with ioredis installed.
 */
export async function loadIoredis(
  importer: () => Promise<unknown> = () => import('ioredis'),
): Promise<RedisConstructor> {
  const module = await importIoredis(importer);
  // ioredis is CommonJS: depending on the loader, the class is the namespace's Redis or its default.
  const Redis =
    module.Redis ?? (module.default as { Redis?: unknown } | undefined)?.Redis ?? module.default;
  if (typeof Redis !== 'function') throw new CacheConfigError(messages.ioredisMissing());
  return Redis as RedisConstructor;
}

/** loadIoredis, for ioredis' Cluster client class. */
export async function loadIoredisCluster(
  importer: () => Promise<unknown> = () => import('ioredis'),
): Promise<ClusterConstructor> {
  const module = await importIoredis(importer);
  const Cluster = module.Cluster ?? (module.default as { Cluster?: unknown } | undefined)?.Cluster;
  if (typeof Cluster !== 'function') throw new CacheConfigError(messages.ioredisMissing());
  return Cluster as ClusterConstructor;
}

async function importIoredis(
  importer: () => Promise<unknown>,
): Promise<{ Redis?: unknown; Cluster?: unknown; default?: unknown }> {
  try {
    return (await importer()) as { Redis?: unknown; Cluster?: unknown; default?: unknown };
  } catch (error) {
    if (isIoredisMissing(error))
      throw new CacheConfigError(messages.ioredisMissing(), { cause: error });
    throw error;
  }
}

/** Validates options.redis and plans the client, loading ioredis only when RedisCache creates one. */
export async function planConnection(
  options: RedisCacheOptions | undefined,
): Promise<RedisConnection> {
  const redis: unknown = options ?? { url: DEFAULT_URL };
  if (redis === null || typeof redis !== 'object' || Array.isArray(redis)) {
    throw new CacheConfigError(
      messages.invalidOption(
        'redis',
        redis,
        'Use { url }, ioredis connection options, or { client }.',
      ),
    );
  }
  if ('client' in redis) return adopt(redis.client);

  const tuning = failFast(redis as RedisTuning);
  if ('cluster' in redis) {
    const beside = Object.keys(redis).filter(
      (key) => !(BESIDE_CLUSTER as readonly string[]).includes(key),
    );
    if (beside.length > 0) throw new CacheConfigError(messages.redisClusterBeside(beside));
    const plan = planCluster(redis.cluster, tuning);
    const Cluster = await loadIoredisCluster();
    return {
      open: () => new Cluster(plan.nodes, plan.options),
      owned: true,
      target: plan.target,
      secrets: plan.secrets,
      commandTimeoutMs: tuning.commandTimeout,
    };
  }
  if ('url' in redis) {
    const url = validUrl(redis.url);
    const parsed = new URL(url);
    const Redis = await loadIoredis();
    return {
      // ioredis lets the earlier argument win, so a query string cannot undo the fail-fast settings.
      open: () => new Redis(tuning, url),
      owned: true,
      target: `${parsed.hostname}:${parsed.port || 6379}`,
      secrets: parsed.password ? [decodeURIComponent(parsed.password)] : [],
      commandTimeoutMs: tuning.commandTimeout,
    };
  }

  const connection = redis as RedisOptions;
  if (connection.keyPrefix) {
    throw new CacheConfigError(
      messages.invalidOption(
        'redis.keyPrefix',
        connection.keyPrefix,
        'Use the CacheModule option "prefix" instead: clear() must know the namespace it deletes.',
      ),
    );
  }
  const Redis = await loadIoredis();
  return {
    open: () => new Redis({ ...connection, ...tuning }),
    owned: true,
    target: targetOf(connection),
    secrets: [connection.password, connection.sentinelPassword].filter((s): s is string =>
      Boolean(s),
    ),
    commandTimeoutMs: tuning.commandTimeout,
  };
}

/**
 * The ioredis settings that make every call settle fast and fail open (ioredis defaults wait
 * over a minute while Redis is down, and replay queued writes the caller saw fail).
 */
function failFast(redis: RedisTuning): RedisOptions {
  const commandTimeout = milliseconds(
    'commandTimeout',
    redis.commandTimeout,
    DEFAULT_COMMAND_TIMEOUT_MS,
  );
  return {
    commandTimeout,
    connectTimeout: milliseconds(
      'connectTimeout',
      redis.connectTimeout,
      DEFAULT_CONNECT_TIMEOUT_MS,
    ),
    // A connection that stops answering (frozen server, dropped network without FIN) is replaced,
    // instead of waiting minutes for TCP keep-alive to notice.
    socketTimeout: Math.min(Math.max(4 * commandTimeout, 2_000), MAX_TIMER_MS),
    disconnectTimeout: DISCONNECT_TIMEOUT_MS,
    // Fail at once while disconnected; nothing is queued, so no failed write lands later.
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    // Commands in flight when the connection drops fail at once, instead of at commandTimeout.
    maxRetriesPerRequest: 0,
    // Always a number: the client reconnects forever by itself, and the app boots with Redis down.
    retryStrategy: reconnectDelay,
    lazyConnect: false,
    enableAutoPipelining: true,
    keyPrefix: '',
  };
}

function reconnectDelay(attempt: number): number {
  const backoff = Math.min(
    50 * 2 ** Math.max(0, Math.min(attempt - 1, 16)),
    MAX_RECONNECT_DELAY_MS,
  );
  return backoff + Math.floor(Math.random() * RECONNECT_JITTER_MS);
}

function adopt(client: unknown): RedisConnection {
  const candidate = client as Partial<Redis> | null;
  if (
    !candidate ||
    typeof candidate.getBuffer !== 'function' ||
    typeof candidate.mgetBuffer !== 'function' ||
    typeof candidate.on !== 'function'
  ) {
    throw new CacheConfigError(
      messages.invalidOption(
        'redis.client',
        client,
        'Pass an ioredis client: new Redis(...) or new Cluster(...) from the ioredis package.',
      ),
    );
  }
  const cluster = isClusterClient(candidate);
  // A Cluster copies the keyPrefix of its redisOptions to its own options.
  const options: RedisOptions = cluster
    ? { ...nodeOptionsOf(candidate), keyPrefix: candidate.options.keyPrefix }
    : (candidate.options ?? {});
  if (options.keyPrefix) {
    throw new CacheConfigError(
      messages.invalidOption(
        'redis.client',
        'a client with keyPrefix',
        'Create the client without keyPrefix and use the CacheModule option "prefix": clear() must know the namespace it deletes.',
      ),
    );
  }
  return {
    open: () => client as Redis | Cluster,
    owned: false,
    target: cluster ? 'the Redis Cluster of "redis.client"' : targetOf(options),
    secrets: [options.password, options.sentinelPassword].filter((s): s is string => Boolean(s)),
    commandTimeoutMs: options.commandTimeout,
  };
}

function validUrl(url: unknown): string {
  if (typeof url !== 'string')
    throw new CacheConfigError(messages.badRedisUrl(describe(url), 'is not a string'));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CacheConfigError(messages.badRedisUrl(url, 'is not a valid URL'));
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new CacheConfigError(
      messages.badRedisUrl(url, 'does not start with redis:// or rediss://'),
    );
  }
  if (!parsed.hostname) throw new CacheConfigError(messages.badRedisUrl(url, 'has no host'));
  try {
    decodeURIComponent(parsed.username + parsed.password);
  } catch {
    throw new CacheConfigError(messages.badRedisUrl(url, 'has user info with broken %-escapes'));
  }
  if (!/^\/?(\d+)?$/.test(parsed.pathname)) {
    throw new CacheConfigError(
      messages.badRedisUrl(
        url,
        `has a database "${parsed.pathname.slice(1)}" that is not a number`,
      ),
    );
  }
  return url;
}

function milliseconds(option: keyof RedisTuning, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value <= 0 ||
    value > MAX_TIMER_MS
  ) {
    throw new CacheConfigError(
      messages.invalidOption(
        `redis.${option}`,
        value,
        `Use a positive whole number of milliseconds, at most ${MAX_TIMER_MS} (default ${fallback}).`,
      ),
    );
  }
  return value;
}

function targetOf(options: RedisOptions): string {
  if (options.sentinels?.length) return `the master "${options.name ?? 'mymaster'}" of sentinels`;
  if (options.path) return options.path;
  return `${options.host ?? 'localhost'}:${options.port ?? 6379}`;
}

function isIoredisMissing(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    message.includes('ioredis')
  );
}
