import KeyvPostgres from '@keyv/postgres';
import KeyvRedis, { createKeyv } from '@keyv/redis';
import type { StoredData } from 'keyv';
import { afterAll, afterEach, describe, it } from 'vitest';
import { KeyvCache } from '../lib/index.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';
import { usePostgres } from './support/postgres-server.js';
import { useRedis } from './support/redis-server.js';

// The contract every backend keeps, over real Keyv stores: Keyv's in-memory Map, a store that
// cannot list its keys (the generation path), @keyv/redis on a private redis-server (as an adapter,
// and through createKeyv(url), whose Keyv has no namespace: the generation path on a real store)
// and @keyv/postgres on a private PostgreSQL.
const api = { describe, it, afterEach };

/**
 * A Keyv storage adapter that cannot list its keys (as @keyv/memcache, or a store Keyv does not
 * iterate): get, set, delete and clear over a Map, expiry by real time as a server's would be.
 */
class ListlessStore {
  readonly opts = {};
  namespace?: string;
  private readonly entries = new Map<string, { value: string; until: number }>();
  async get<Value>(key: string): Promise<StoredData<Value> | undefined> {
    const entry = this.entries.get(key);
    if (entry && entry.until <= Date.now()) this.entries.delete(key);
    return this.entries.get(key)?.value as StoredData<Value> | undefined;
  }
  async set(key: string, value: string, ttl?: number): Promise<boolean> {
    this.entries.set(key, { value, until: ttl ? Date.now() + ttl : Infinity });
    return true;
  }
  async delete(key: string): Promise<boolean> {
    return (await this.get(key)) !== undefined && this.entries.delete(key);
  }
  async clear(): Promise<void> {
    this.entries.clear();
  }
  on(): this {
    return this;
  }
}

cacheBehaviourSuite(
  'KeyvCache on a Map',
  (options) => KeyvCache.create({ ...options, keyv: { store: new Map() } }),
  api,
);

// A store that cannot list its keys: deleteByPattern clears the namespace (the suite checks that).
cacheBehaviourSuite(
  'KeyvCache on a store without an iterator',
  (options) => KeyvCache.create({ ...options, keyv: { store: new ListlessStore() } }),
  api,
  { listsKeys: false },
);

const redis = useRedis();
cacheBehaviourSuite(
  'KeyvCache on @keyv/redis',
  (options) =>
    KeyvCache.create({
      ...options,
      keyv: { store: new KeyvRedis({ url: redis.url, disableOfflineQueue: true }) },
    }),
  api,
);

// Without a Keyv namespace the adapter's iterator cannot list this cache's keys alone: the bridge
// clears with generations, so deleteByPattern clears the namespace.
cacheBehaviourSuite(
  'KeyvCache on createKeyv(url) of @keyv/redis',
  (options) =>
    KeyvCache.create({
      ...options,
      keyv: { store: createKeyv({ url: redis.url, disableOfflineQueue: true }) },
    }),
  api,
  { listsKeys: false },
);

const postgres = usePostgres();
// Every KeyvPostgres of a URI shares one pool, which disconnect() ends: the caches leave it open
// (afterEach closes them in parallel), and it is ended once, before the server stops.
let pool: KeyvPostgres | undefined;
afterAll(async () => {
  await pool?.disconnect();
});
cacheBehaviourSuite(
  'KeyvCache on @keyv/postgres',
  // keySize: the suite's keys go up to 1,024 characters (longer ones are stored shortened).
  (options) => {
    const store = new KeyvPostgres({ uri: postgres.uri, keySize: 1_200 });
    pool ??= store;
    return KeyvCache.create({ ...options, keyv: { store, disconnect: false } });
  },
  api,
);
