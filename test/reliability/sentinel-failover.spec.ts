import { describe, expect, it } from 'vitest';
import { ADAPTERS, useApps } from '../http/support/app.js';
import { ItemsController } from '../http/support/controllers.js';
import {
  CONNECTIONS,
  HOT_PATH,
  sentinelFaultTestCache,
  underLoad,
} from '../http/support/faults.js';
import { sleep } from '../http/support/http.js';
import { clientCount } from '../support/redis-server.js';
import { type SentinelSetup, useSentinelSetup } from '../support/sentinel.js';
import { closeAndReport, figuresTable, watch } from './support/figures.js';

// A Sentinel failover the way production meets it: `redis: { sentinels, name }`, 50 connections
// through CacheInterceptor (half on one cached URL), the master killed 1.5 s in; the Sentinel
// promotes the replica and the client follows it. No request may fail meanwhile, no rejection go
// unhandled, and once the app is closed the promoted replica and the Sentinel have the client
// connections they had before it started (the master's died with it).
const FAULT_AT_MS = 1_500;
const LOAD_MS = 9_000;
/** A failover takes the Sentinel's down-after (500 ms) and an election: a few seconds at most. */
const FAILOVER_WITHIN_MS = 6_000;

const table = figuresTable('Sentinel failover (test/reliability/sentinel-failover.spec.ts)');
const sentinelConnections = (setup: SentinelSetup) => async () => ({
  replica: await clientCount(setup.replica.port),
  sentinel: await clientCount(setup.sentinel.port),
});

describe.each(ADAPTERS)('on $name, Redis behind a Sentinel', (adapter) => {
  const start = useApps();
  const sentinel = useSentinelSetup();

  it(`the master killed under ${CONNECTIONS} connections: every request is answered, the client follows the promoted replica, HITs resume within seconds, no rejection goes unhandled, and app.close() leaves no connection`, async () => {
    const { setup } = sentinel;
    const watching = await watch(sentinelConnections(setup));
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: sentinelFaultTestCache(setup),
    });
    expect((await app.send(HOT_PATH)).status).toBe(200);
    const before = await setup.masterPort();
    expect(before).toBe(setup.master.port);

    const run = await underLoad(app, LOAD_MS, async (sinceStart) => {
      await sleep(FAULT_AT_MS);
      const faultAt = sinceStart();
      await setup.master.kill();
      const deadline = Date.now() + FAILOVER_WITHIN_MS;
      while ((await setup.masterPort()) !== setup.replica.port) {
        if (Date.now() > deadline) throw new Error('the Sentinel did not promote the replica');
        await sleep(50);
      }
      return { faultAt, backAt: sinceStart() };
    });

    await closeAndReport(
      table,
      `${adapter.name}, Sentinel failover (master killed)`,
      app,
      run,
      watching,
    );
  }, 30_000);
});
