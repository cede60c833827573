/**
 * Store operations of the backends beyond memory and Redis, in a process of its own pinned to the
 * server core: nest-cache on memcached, disk (LMDB) and the Keyv bridge, each against its raw
 * client on the same store (memjs, lmdb, Keyv). Prints one JSON line: BackendsReport.
 *
 * Settings: BENCH_STORE (JSON StoreSettings); MEMCACHED_SERVERS; REDIS_URL (the Keyv store).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import { open } from 'lmdb';
import memjs from 'memjs';
import { type BaseCache, DiskCache, KeyvCache, MemcachedCache } from '../lib/index.js';
import { storeValue } from './fixtures.js';
import { asyncRate } from './rates.js';
import type { StoreSettings } from './store-ops.js';

export type BackendOperation = 'get' | 'set' | 'getMany';
export const BACKEND_OPERATIONS: BackendOperation[] = ['get', 'set', 'getMany'];
export type ExtraBackend = 'memcached' | 'disk' | 'keyv';

/** Calls per second of each subject ('nest-cache' and the raw client) and operation, per round. */
export type BackendsReport = Record<
  ExtraBackend,
  { raw: string; samples: Record<string, Partial<Record<BackendOperation, number[]>>> }
>;

type Subject = Record<BackendOperation, (caller: number) => unknown>;

const settings = JSON.parse(process.env.BENCH_STORE ?? '{}') as StoreSettings;
const MANY = 10;
const TTL_SECONDS = 600;
const callerKeys = Array.from({ length: settings.redisCallers }, (_, i) => `k${i}`);
const many = callerKeys.slice(0, MANY);
const json = JSON.stringify(storeValue);
const bytes = Buffer.from(json);

/** Every operation of both subjects, taking turns within each round; the first round warms up. */
async function measure(subjects: Record<string, Subject>, ms: number) {
  const samples: Record<string, Partial<Record<BackendOperation, number[]>>> = {};
  for (let round = 0; round <= settings.rounds; round++) {
    for (const operation of BACKEND_OPERATIONS) {
      for (const [name, subject] of Object.entries(subjects)) {
        const value = await asyncRate(subject[operation], settings.redisCallers, ms);
        if (round > 0) ((samples[name] ??= {})[operation] ??= []).push(value);
      }
    }
  }
  return samples;
}

/** The raw client against nest-cache's same calls, on the entries warmed here (the raw side warms its own). */
async function compare(raw: string, subject: Subject, ours: BaseCache, ms: number) {
  for (const key of callerKeys) await ours.set(key, storeValue);
  const samples = await measure(
    {
      [raw]: subject,
      'nest-cache': {
        get: (i) => ours.get(callerKeys[i]!),
        set: (i) => ours.set(callerKeys[i]!, storeValue),
        getMany: () => ours.getMany(many),
      },
    },
    ms,
  );
  return { raw, samples };
}

async function memcached(servers: string): Promise<BackendsReport['memcached']> {
  const raw = memjs.Client.create(servers, { timeout: 0.5, retries: 0, logger: { log() {} } });
  const ours = await MemcachedCache.create({
    ttl: TTL_SECONDS,
    prefix: 'bench-ours',
    memcached: { servers },
  });
  const rawKey = (key: string) => `bench-raw:${key}`;
  for (const key of callerKeys) await raw.set(rawKey(key), json, { expires: TTL_SECONDS });
  const report = await compare(
    'memjs (no decode)',
    {
      get: (i) => raw.get(rawKey(callerKeys[i]!)),
      set: (i) => raw.set(rawKey(callerKeys[i]!), json, { expires: TTL_SECONDS }),
      // memjs has no multi-get: one GET per key, sent together.
      getMany: () => Promise.all(many.map((key) => raw.get(rawKey(key)))),
    },
    ours,
    settings.redisMs,
  );
  await ours.close();
  raw.close();
  return report;
}

async function disk(): Promise<BackendsReport['disk']> {
  const dir = mkdtempSync(join(tmpdir(), 'nest-cache-bench-disk-'));
  try {
    // The durability nest-cache's store has: lmdb's default sync mode.
    const raw = open({ path: join(dir, 'raw'), encoding: 'binary' });
    const ours = await DiskCache.create({
      ttl: TTL_SECONDS,
      prefix: 'bench-ours',
      disk: { path: join(dir, 'ours') },
    });
    for (const key of callerKeys) await raw.put(key, bytes);
    const report = await compare(
      'lmdb (getBinary, no decode)',
      {
        get: async (i) => raw.getBinary(callerKeys[i]!),
        set: (i) => raw.put(callerKeys[i]!, bytes),
        getMany: async () => many.map((key) => raw.getBinary(key)),
      },
      ours,
      settings.memoryMs,
    );
    await ours.close();
    await raw.close();
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function keyv(redisUrl: string): Promise<BackendsReport['keyv']> {
  const raw = new Keyv({ store: new KeyvRedis(redisUrl), namespace: 'bench-raw' });
  const ours = await KeyvCache.create({
    ttl: TTL_SECONDS,
    prefix: 'bench-ours',
    keyv: { store: new KeyvRedis(redisUrl) },
  });
  for (const key of callerKeys) await raw.set(key, storeValue, TTL_SECONDS * 1_000);
  const report = await compare(
    'Keyv + @keyv/redis',
    {
      get: (i) => raw.get(callerKeys[i]!),
      set: (i) => raw.set(callerKeys[i]!, storeValue, TTL_SECONDS * 1_000),
      getMany: () => raw.getMany(many),
    },
    ours,
    settings.redisMs,
  );
  await ours.close();
  await raw.disconnect();
  return report;
}

async function main(): Promise<void> {
  const report: BackendsReport = {
    memcached: await memcached(process.env.MEMCACHED_SERVERS!),
    disk: await disk(),
    keyv: await keyv(process.env.REDIS_URL!),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `store operations of the other backends failed: ${error instanceof Error ? error.stack : String(error)}\n`,
  );
  process.exit(1);
});
