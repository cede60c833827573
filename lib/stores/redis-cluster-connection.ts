import type { Cluster, ClusterOptions, NatMap, RedisOptions } from 'ioredis';
import { CacheConfigError } from '../errors.js';
import { messages } from '../messages.js';
import { knownKeysOnly } from '../option-keys.js';
import { MAX_TIMER_MS } from '../ttl.js';

/**
 * A Redis Cluster for the redis backend: `redis: { cluster: { nodes: [{ host, port }] } }`.
 * RedisCache creates an ioredis Cluster client on it with the same fail-fast settings as for a
 * single Redis (no offline queue, nothing resent, reconnecting forever), and sends every
 * multi-key command per hash slot.
 */
export interface RedisClusterOptions {
  /**
   * Nodes to start from: one reachable node is enough, the client asks it for the others and for
   * the slot map (CLUSTER SLOTS). More than one lets the cache start while one of them is down.
   */
  nodes: { host: string; port: number }[];
  /** ACL user of every node. @default none (the default user) */
  username?: string;
  /** Password of every node (of `username`, or requirepass). @default none */
  password?: string;
  /** TLS to every node: tls.connect() options (`{}` for the system's CAs). @default none (plain TCP) */
  tls?: RedisOptions['tls'];
  /**
   * Maps the address a node announces to the one to reach it at (the cluster behind NAT or in
   * Docker): `{ '10.0.0.5:6379': { host: 'redis-1.example', port: 6379 } }`, or a function.
   * @default none
   */
  natMap?: NatMap;
  /**
   * Milliseconds between refreshes of the slot map. A MOVED redirection refreshes it at once, so
   * this bounds how long a node that came back unnoticed stays unused.
   * @default 5000
   */
  slotsRefreshInterval?: number;
  /**
   * Milliseconds one refresh of the slot map (CLUSTER SLOTS, on a node at a time) may take before
   * the next node is asked.
   * @default 1000
   */
  slotsRefreshTimeout?: number;
}

const KNOWN_KEYS = [
  'nodes',
  'username',
  'password',
  'tls',
  'natMap',
  'slotsRefreshInterval',
  'slotsRefreshTimeout',
] as const;

const CLUSTER_LEVEL = [
  'retryStrategy',
  'enableOfflineQueue',
  'lazyConnect',
  'enableAutoPipelining',
] as const;

/** What `redis` may hold beside `cluster`. */
export const BESIDE_CLUSTER = ['cluster', 'commandTimeout', 'connectTimeout'] as const;

const DEFAULT_SLOTS_REFRESH_INTERVAL_MS = 5_000;
const DEFAULT_SLOTS_REFRESH_TIMEOUT_MS = 1_000;
/** ioredis' default: how many redirections and retries one command may take. */
const MAX_REDIRECTIONS = 16;

/** A Cluster client to create, and what messages may say of it. */
export interface ClusterPlan {
  nodes: { host: string; port: number }[];
  options: ClusterOptions;
  /** The startup nodes, for messages. */
  target: string;
  secrets: string[];
}

/**
 * Validates `redis.cluster` and makes the Cluster client's options from the fail-fast settings of a
 * single Redis (`tuning`): those of each node, plus the cluster's own.
 */
export function planCluster(cluster: unknown, tuning: RedisOptions): ClusterPlan {
  if (cluster === null || typeof cluster !== 'object' || Array.isArray(cluster)) {
    throw new CacheConfigError(messages.redisClusterOptions(cluster));
  }
  if ('keyPrefix' in cluster) throw new CacheConfigError(messages.redisClusterKeyPrefix());
  knownKeysOnly('redis.cluster', cluster, KNOWN_KEYS);
  const options = cluster as Partial<RedisClusterOptions>;
  const nodes = validNodes(options.nodes);
  for (const option of ['username', 'password'] as const) {
    const value = options[option];
    if (value !== undefined && typeof value !== 'string') {
      throw new CacheConfigError(messages.redisClusterString(option, value));
    }
  }
  const { tls, natMap } = options;
  if (tls !== undefined && (tls === null || typeof tls !== 'object' || Array.isArray(tls))) {
    throw new CacheConfigError(messages.redisClusterTls(tls));
  }
  if (
    natMap !== undefined &&
    typeof natMap !== 'function' &&
    (natMap === null || typeof natMap !== 'object' || Array.isArray(natMap))
  ) {
    throw new CacheConfigError(messages.redisClusterNatMap(natMap));
  }
  // Options of a single Redis that a Cluster takes at its own level (or decides per node itself).
  const node: RedisOptions = { ...tuning };
  for (const option of CLUSTER_LEVEL) delete node[option];
  const commandTimeout = tuning.commandTimeout!;
  return {
    nodes,
    options: {
      redisOptions: {
        ...node,
        ...(options.username !== undefined && { username: options.username }),
        ...(options.password !== undefined && { password: options.password }),
        ...(tls !== undefined && { tls }),
      },
      // Always a number: the client reconnects forever, and the app boots with the cluster down.
      clusterRetryStrategy: tuning.retryStrategy as (times: number) => number,
      // Fail at once while the cluster is not ready, instead of queueing. (ioredis still queues a
      // command on a node's own connection while that connection is being made, whatever this
      // says: a command given up on then may be written once it connects, within connectTimeout.)
      enableOfflineQueue: false,
      enableReadyCheck: true,
      // ioredis hands the ASK and MOVED redirections of an automatic pipeline to the caller instead
      // of following them, so every read and write of a slot being migrated would fail. Reads are
      // batched per slot by RedisDriver instead.
      enableAutoPipelining: false,
      // A replica lags: it can serve an entry just deleted, or miss a tag record just invalidated.
      scaleReads: 'master',
      maxRedirections: MAX_REDIRECTIONS,
      // Retries of a command whose node is lost (until the slot map says where its slot went) or
      // says CLUSTERDOWN: all of them within commandTimeout, so a command that keeps failing fails
      // open before operationTimeout instead of being retried after the cache gave up on it.
      retryDelayOnFailover: Math.max(1, Math.floor(commandTimeout / MAX_REDIRECTIONS)),
      retryDelayOnClusterDown: Math.max(1, Math.floor(commandTimeout / MAX_REDIRECTIONS)),
      // TRYAGAIN: a multi-key command on a slot half migrated. Its retries take a quarter of
      // commandTimeout at most; then RedisDriver sends the keys one command each (which follow the
      // ASK redirection to wherever each key is).
      retryDelayOnTryAgain: Math.max(1, Math.floor(commandTimeout / (4 * MAX_REDIRECTIONS))),
      retryDelayOnMoved: 0,
      slotsRefreshInterval: refreshMs(
        'slotsRefreshInterval',
        options.slotsRefreshInterval,
        DEFAULT_SLOTS_REFRESH_INTERVAL_MS,
      ),
      slotsRefreshTimeout: refreshMs(
        'slotsRefreshTimeout',
        options.slotsRefreshTimeout,
        DEFAULT_SLOTS_REFRESH_TIMEOUT_MS,
      ),
      ...(natMap !== undefined && { natMap }),
      lazyConnect: false,
      keyPrefix: '',
    },
    target: `the cluster nodes ${nodes.map(({ host, port }) => `${host}:${port}`).join(', ')}`,
    secrets: options.password ? [options.password] : [],
  };
}

/** An ioredis Cluster client (`new Cluster(...)`), told apart from a single Redis client. */
export function isClusterClient(client: unknown): client is Cluster {
  return (client as { isCluster?: unknown } | null)?.isCluster === true;
}

/** The options an adopted Cluster client's nodes run with. */
export function nodeOptionsOf(client: Cluster): NonNullable<ClusterOptions['redisOptions']> {
  return client.options.redisOptions ?? {};
}

/** Whether every command of the Cluster client settles in bounded time whatever its nodes do. */
export function isBoundedCluster(client: Cluster): boolean {
  return (
    client.options.enableOfflineQueue === false &&
    typeof nodeOptionsOf(client).commandTimeout === 'number'
  );
}

/** What to say of a Cluster client you passed whose settings keep the cache from working well. */
export function adoptedClusterWarnings(client: Cluster, operationMs: number): string[] {
  const warnings: string[] = [];
  if (!isBoundedCluster(client)) warnings.push(messages.redisClusterClientUnbounded(operationMs));
  if (client.options.enableAutoPipelining) warnings.push(messages.redisClusterAutoPipelining());
  const { scaleReads } = client.options;
  if (scaleReads !== undefined && scaleReads !== 'master') {
    const described = typeof scaleReads === 'function' ? 'a function' : `'${String(scaleReads)}'`;
    warnings.push(messages.redisClusterReplicaReads(described));
  }
  return warnings;
}

function validNodes(nodes: unknown): { host: string; port: number }[] {
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new CacheConfigError(messages.redisClusterNodes('redis.cluster.nodes', nodes));
  }
  return nodes.map((node: unknown, i) => {
    const { host, port } = (node ?? {}) as { host?: unknown; port?: unknown };
    if (
      node === null ||
      typeof node !== 'object' ||
      typeof host !== 'string' ||
      host.length === 0 ||
      typeof port !== 'number' ||
      !Number.isInteger(port) ||
      port < 1 ||
      port > 65_535
    ) {
      throw new CacheConfigError(messages.redisClusterNodes(`redis.cluster.nodes[${i}]`, node));
    }
    return { host, port };
  });
}

function refreshMs(
  option: 'slotsRefreshInterval' | 'slotsRefreshTimeout',
  value: unknown,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value <= 0 ||
    value > MAX_TIMER_MS
  ) {
    throw new CacheConfigError(messages.redisClusterMilliseconds(option, value, fallback));
  }
  return value;
}
