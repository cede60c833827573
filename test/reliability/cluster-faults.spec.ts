import { describe, expect, it } from 'vitest';
import type { CacheModuleOptions } from '../../lib/index.js';
import { hashSlot } from '../../lib/stores/redis.cache.js';
import { ADAPTERS, COMMAND_TIMEOUT_MS, useApps, type TestApp } from '../http/support/app.js';
import { ItemsController } from '../http/support/controllers.js';
import { CONNECTIONS, HOT_PATH, underLoad } from '../http/support/faults.js';
import { sleep } from '../http/support/http.js';
import { type RedisClusterHandle, useRedisCluster } from '../support/redis-cluster.js';
import { clientCount } from '../support/redis-server.js';
import { closeAndReport, figuresTable, watch } from './support/figures.js';

// Redis Cluster faults the way production meets them: 50 connections through CacheInterceptor,
// half on one cached URL (a hot key), on a cluster of three masters without replicas. A short
// cluster-node-timeout and slot map refreshes every 500 ms make recovery a matter of seconds.
const cluster = useRedisCluster({ masters: 3, nodeTimeoutMs: 500 });

const FAULT_AT_MS = 1_500;
const DOWN_FOR_MS = 2_000;
const LOAD_MS = 8_000;

const table = figuresTable('Redis Cluster (test/reliability/cluster-faults.spec.ts)');
/** The client connections of every master, as the other reliability files count them. */
const clusterConnections = async () => {
  const counts: Record<string, number> = {};
  for (const [i, node] of cluster.cluster.nodes.entries()) {
    counts[`master ${i + 1}`] = await clientCount(node.port);
  }
  return counts;
};

/** The Redis Cluster backend with the bounds of the other fault tests (see faultTestCache). */
function clusterFaultTestCache(redis: RedisClusterHandle): CacheModuleOptions {
  return {
    backend: 'redis',
    redis: {
      cluster: { nodes: redis.addresses, slotsRefreshInterval: 500, slotsRefreshTimeout: 300 },
      commandTimeout: COMMAND_TIMEOUT_MS,
    },
    operationTimeout: '1000ms',
    getOrSetTimeout: '2000ms',
  };
}

/** The stored key of the hot URL's response, and the node that holds it. */
async function hotEntry(app: TestApp): Promise<{ key: string; node: number }> {
  for (let node = 0; node < cluster.cluster.nodes.length; node += 1) {
    const [key] = await cluster.cluster.keysOn(node, `${app.prefix}:*${HOT_PATH}?*`);
    if (key) return { key, node };
  }
  throw new Error(`no node holds the response of ${HOT_PATH}`);
}

describe.each(ADAPTERS)('on $name, Redis Cluster of three masters', (adapter) => {
  const start = useApps();

  const warmApp = async () => {
    await cluster.cluster.settled();
    const watching = await watch(clusterConnections);
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: clusterFaultTestCache(cluster.cluster),
    });
    await app.send(HOT_PATH);
    expect((await app.send(HOT_PATH)).cache).toBe('HIT');
    return { app, watching };
  };

  it(`the master holding the hot URL killed (SIGKILL) under ${CONNECTIONS} connections, restarted 2 s later: every request is answered (its slots fail open, the others' keep hitting), and HITs resume once it rejoined`, async () => {
    const { app, watching } = await warmApp();
    const { node } = await hotEntry(app);
    const master = cluster.cluster.nodes[node]!;
    let down = { from: 0, to: 0 };

    const run = await underLoad(app, LOAD_MS, async (sinceStart) => {
      await sleep(FAULT_AT_MS);
      const faultAt = sinceStart();
      await master.kill('SIGKILL');
      await sleep(DOWN_FOR_MS);
      // With its old cluster config file: the same id, the same slots (its keys are gone).
      await master.restart();
      down = { from: faultAt, to: sinceStart() };
      return { faultAt, backAt: down.to };
    });

    await closeAndReport(
      table,
      `${adapter.name}, Redis Cluster master killed, restarted`,
      app,
      run,
      watching,
    );
    // The other masters kept serving their slots meanwhile: the URLs stored there were HITs.
    const hitsWhileDown = run.samples.filter(
      (sample) => sample.cache === 'HIT' && sample.at >= down.from && sample.at < down.to,
    );
    expect(hitsWhileDown.length, 'HITs while the master was down').toBeGreaterThan(0);
    await cluster.cluster.settled();
  }, 40_000);

  it(`the hot URL's slot migrated to another master under ${CONNECTIONS} connections (half of its keys moved, 1.5 s, then the rest): every request is answered, no cache call fails, HITs go on`, async () => {
    const { app, watching } = await warmApp();
    const { key, node } = await hotEntry(app);
    const slot = hashSlot(key);
    const to = (node + 1) % cluster.cluster.nodes.length;

    const run = await underLoad(app, LOAD_MS, async (sinceStart) => {
      await sleep(FAULT_AT_MS);
      const faultAt = sinceStart();
      await cluster.cluster.migrateSlot(slot, node, to, { pauseMs: 1_500 });
      return { faultAt, backAt: sinceStart() };
    });

    await closeAndReport(
      table,
      `${adapter.name}, Redis Cluster slot of the hot URL migrated`,
      app,
      run,
      watching,
    );
    expect(await cluster.cluster.ownerOf(slot)).toBe(to);
    expect(app.cache.stats.errors, 'cache calls that failed open').toBe(0);
    // The hot URL was served from the cache during the migration too.
    const hits = run.samples.filter(
      (sample) =>
        sample.path === HOT_PATH &&
        sample.cache === 'HIT' &&
        sample.at >= FAULT_AT_MS &&
        sample.at < FAULT_AT_MS + 1_500,
    );
    expect(hits.length).toBeGreaterThan(0);
  }, 40_000);
});
