import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_BATCH_KEYS } from '../lib/stores/read-batch.js';
import { RedisCache } from '../lib/stores/redis.cache.js';
import { startRedisServer, usePrivateRedis } from './support/redis-server.js';

/** Calls of each command since the last CONFIG RESETSTAT, from INFO commandstats. */
async function commandCalls(admin: Redis): Promise<Record<string, number>> {
  const info = await admin.info('commandstats');
  const calls: Record<string, number> = {};
  for (const [, name, count] of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
    calls[name!] = Number(count);
  }
  return calls;
}

// A private redis-server, so that the commands counted are this file's only.
describe('RedisCache sends the gets made in one turn as one MGET', () => {
  const redis = usePrivateRedis();
  let admin: Redis;
  let cache: RedisCache;

  beforeAll(() => {
    admin = new Redis(redis.server.url);
  });
  afterAll(async () => {
    await admin.quit();
  });
  beforeEach(async () => {
    cache = await RedisCache.create({ prefix: 'batch', redis: { url: redis.server.url } });
  });
  afterEach(async () => {
    await cache.close();
    await admin.flushdb();
  });

  async function storeKeys(count: number): Promise<string[]> {
    const keys = Array.from({ length: count }, (_, i) => `k${i}`);
    await cache.setMany(keys.map((key, i) => ({ key, value: { i } })));
    await admin.config('RESETSTAT');
    return keys;
  }

  it('concurrent gets of different keys reach Redis as one MGET, and each caller gets its own value', async () => {
    const keys = await storeKeys(100);

    const values = await Promise.all(keys.map((key) => cache.get<{ i: number }>(key)));

    expect(values.map((value) => value?.i)).toEqual(keys.map((_, i) => i));
    const calls = await commandCalls(admin);
    expect(calls.mget).toBe(1);
    expect(calls.get).toBeUndefined();
  });

  it(`more than ${MAX_BATCH_KEYS} gets in one turn are split into MGETs of at most ${MAX_BATCH_KEYS} keys`, async () => {
    const keys = await storeKeys(MAX_BATCH_KEYS * 2 + 10);

    const values = await Promise.all(keys.map((key) => cache.get<{ i: number }>(key)));

    expect(values.map((value) => value?.i)).toEqual(keys.map((_, i) => i));
    expect((await commandCalls(admin)).mget).toBe(3);
  });

  it('a missing key in a batch is a miss for its caller only', async () => {
    await storeKeys(2);

    const values = await Promise.all(['k0', 'absent', 'k1'].map((key) => cache.get(key)));

    expect(values).toEqual([{ i: 0 }, undefined, { i: 1 }]);
    expect(cache.stats).toMatchObject({ hits: 2, misses: 1, errors: 0 });
  });

  it('a write or delete never overtakes a get made before it, and a get made after it sees it', async () => {
    await cache.set('k', 'old');

    const before = cache.get('k');
    const written = cache.set('k', 'new');
    const after = cache.get('k');
    const deletedBefore = cache.get('k');
    const deleted = cache.delete('k');
    const afterDelete = cache.get('k');

    expect(await before).toBe('old');
    expect(await written).toBe(true);
    expect(await after).toBe('new');
    expect(await deletedBefore).toBe('new');
    expect(await deleted).toBe(true);
    expect(await afterDelete).toBeUndefined();
  });

  it('a get made just before close() is still answered', async () => {
    await cache.set('k', 'value');

    const read = cache.get('k');
    await cache.close();

    expect(await read).toBe('value');
  });
});

describe('RedisCache on a Redis that refuses MGET reads one key per GET instead', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  function captureWarnings(): string[] {
    const warned: string[] = [];
    vi.spyOn(Logger.prototype, 'warn').mockImplementation((message) => void warned.push(message));
    return warned;
  }

  /**
   * Stores three keys, then reads them: concurrent gets and a getMany at once (two MGETs refused
   * together), then gets again. Every read must hit, and MGET must not be sent after the refusal.
   */
  async function readsThrough(url: string, admin: Redis): Promise<void> {
    const cache = await RedisCache.create({ prefix: 'refused', redis: { url } });
    try {
      const keys = ['a', 'b', 'c'];
      const values = keys.map((key) => `value of ${key}`);
      for (const key of keys) expect(await cache.set(key, `value of ${key}`)).toBe(true);

      const [one, many] = await Promise.all([
        Promise.all(keys.map((key) => cache.get(key))),
        cache.getMany(keys),
      ]);
      const mgetsBefore = (await commandCalls(admin)).mget ?? 0;
      const again = await Promise.all(keys.map((key) => cache.get(key)));

      expect([one, many, again]).toEqual([values, values, values]);
      expect((await commandCalls(admin)).mget ?? 0).toBe(mgetsBefore);
      expect(cache.stats).toMatchObject({ hits: 9, misses: 0, errors: 0 });
    } finally {
      await cache.close();
    }
  }

  it('an ACL user without MGET (NOPERM): every read still hits, and one warning says to allow +mget', async () => {
    const server = await startRedisServer({
      args: ['--user', 'cache', 'on', '>secret', '~*', '&*', '+@all', '-mget'],
    });
    const admin = new Redis(server.url);
    try {
      const warned = captureWarnings();

      await readsThrough(`redis://cache:secret@127.0.0.1:${server.port}`, admin);

      expect(warned).toHaveLength(1);
      expect(warned[0]).toMatch(/NOPERM.*\+mget/s);
    } finally {
      await admin.quit();
      await server.stop();
    }
  });

  it('an ACL user that may not read the keys at all: reads fail open, and MGET is not blamed', async () => {
    const server = await startRedisServer({
      args: ['--user', 'cache', 'on', '>secret', '~elsewhere:*', '&*', '+@all'],
    });
    try {
      const warned = captureWarnings();
      const cache = await RedisCache.create({
        prefix: 'refused',
        redis: { url: `redis://cache:secret@127.0.0.1:${server.port}` },
      });

      const values = await Promise.all(['a', 'b'].map((key) => cache.get(key)));
      await cache.close();

      expect(values).toEqual([undefined, undefined]);
      expect(cache.stats.errors).toBe(2);
      expect(warned.join('\n')).not.toContain('MGET');
    } finally {
      await server.stop();
    }
  });

  it('a Redis that wants the keys of one command in one hash slot (CROSSSLOT): every read still hits', async () => {
    const config = join(tmpdir(), `nest-cache-test-nodes-${randomUUID()}.conf`);
    const server = await startRedisServer({
      args: ['--cluster-enabled', 'yes', '--cluster-config-file', config],
    });
    const admin = new Redis(server.url);
    try {
      // One node serving every slot: single-key commands work, multi-key ones across slots do not.
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      for (let tries = 0; ; tries++) {
        const info = String(await admin.call('CLUSTER', 'INFO'));
        if (info.includes('cluster_state:ok')) break;
        if (tries === 100) throw new Error(`the one-node cluster did not become ready:\n${info}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const warned = captureWarnings();

      await readsThrough(server.url, admin);

      expect(warned).toHaveLength(1);
      expect(warned[0]).toMatch(/CROSSSLOT.*hash slot/s);
    } finally {
      await admin.quit();
      await server.stop();
      rmSync(config, { force: true });
    }
  });
});
