import { describe, expect, it } from 'vitest';
import { ADAPTERS, useApps } from '../http/support/app.js';
import { ItemsController } from '../http/support/controllers.js';
import {
  CONNECTIONS,
  expectRecovered,
  HOT_PATH,
  report,
  sentinelFaultTestCache,
  underLoad,
} from '../http/support/faults.js';
import { sleep } from '../http/support/http.js';
import { useSentinelSetup } from '../support/sentinel.js';

// A Sentinel failover the way production meets it: `redis: { sentinels, name }`, 50 connections
// through CacheInterceptor (half on one cached URL), the master killed 1.5 s in; the Sentinel
// promotes the replica and the client follows it. No request may fail meanwhile.
const FAULT_AT_MS = 1_500;
const LOAD_MS = 9_000;
/** A failover takes the Sentinel's down-after (500 ms) and an election: a few seconds at most. */
const FAILOVER_WITHIN_MS = 6_000;

describe.each(ADAPTERS)('on $name, Redis behind a Sentinel', (adapter) => {
  const start = useApps();
  const sentinel = useSentinelSetup();

  it(`the master killed under ${CONNECTIONS} connections: every request is answered, the client follows the promoted replica, and HITs resume within seconds`, async () => {
    const { setup } = sentinel;
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

    report(`${adapter.name}, Sentinel failover (master killed)`, run);
    await expectRecovered(app, run);
  }, 30_000);
});
