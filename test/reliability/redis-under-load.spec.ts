import { describe, expect, it } from 'vitest';
import { ADAPTERS, usePrivateRedis, useApps } from '../http/support/app.js';
import { ItemsController } from '../http/support/controllers.js';
import {
  CONNECTIONS,
  faultTestCache,
  FAULTS,
  HITS_RESUME_WITHIN_MS,
  HOT_PATH,
  reportFigures,
  SOONER_THAN_A_FLIGHT_MS,
  underLoad,
} from '../http/support/faults.js';
import { nothingInFlight, pollUntil, sleep } from '../http/support/http.js';
import { runLoad, summarize } from '../support/load.js';
import { clientCount } from '../support/redis-server.js';
import { closeAndReport, expectClean, figuresTable, watch } from './support/figures.js';

// Redis faults the way production meets them: under a load of 50 connections, half of them on one
// cached URL (a hot key) and half on 200 others, with the responses already cached. Each fault
// lasts 2 s, starting 1.5 s into a 7.5 s load. Every scenario also counts the unhandled
// rejections until its app is closed, and Redis' client connections before the app started and
// after it was closed.
const redis = usePrivateRedis();
const table = figuresTable('Redis under load (test/reliability/redis-under-load.spec.ts)');
const redisConnections = async () => ({ redis: await clientCount(redis.server.port) });

const FAULT_AT_MS = 1_500;
const FAULT_FOR_MS = 2_000;
const LOAD_MS = 7_500;

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();

  it.each(FAULTS)(
    `Redis $name under ${CONNECTIONS} connections: every request is answered within the bound, HITs resume within seconds, nothing stays in flight, no rejection goes unhandled, and app.close() leaves no connection`,
    async (fault) => {
      const watching = await watch(redisConnections);
      const app = await start({
        adapter,
        controllers: [ItemsController],
        cache: faultTestCache(redis.server),
      });
      await app.send(HOT_PATH);

      const run = await underLoad(app, LOAD_MS, async (sinceStart) => {
        await sleep(FAULT_AT_MS);
        const faultAt = sinceStart();
        await fault.begin(redis.server);
        await sleep(FAULT_FOR_MS);
        await fault.end(redis.server);
        return { faultAt, backAt: sinceStart() };
      });

      await closeAndReport(table, `${adapter.name}, Redis ${fault.name}`, app, run, watching);
    },
    30_000,
  );

  it(`the load stops while Redis is killed, its ${CONNECTIONS} clients leaving mid-request (as wrk does when its time is up): the hot URL is answered at once afterwards, nothing stays in flight, HITs resume once Redis is back, no rejection goes unhandled, and app.close() leaves no connection`, async () => {
    const watching = await watch(redisConnections);
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: faultTestCache(redis.server),
    });
    await app.send(HOT_PATH);
    const started = performance.now();
    const load = runLoad({
      url: app.url,
      path: () => HOT_PATH,
      connections: CONNECTIONS,
      durationMs: 3_000,
      giveUpAfterMs: 2_000, // wrk's default timeout
      leaveAtEnd: true,
    });
    await sleep(1_500);
    const killedAt = performance.now() - started;
    await redis.server.kill();
    const samples = await load;

    let backAt: number;
    try {
      // Sooner than a flight's deadline: a flight left behind by a client that left would show.
      await nothingInFlight(app.cache, SOONER_THAN_A_FLIGHT_MS);
      const during = await app.send(HOT_PATH);
      expect(during.status).toBe(200);
      // Redis is down: the read fails at once, and the handler answers.
      expect(during.ms).toBeLessThan(1_000);
    } finally {
      await redis.server.restart();
      backAt = performance.now();
    }
    await pollUntil(
      'a HIT of the hot URL',
      async () => (await app.send(HOT_PATH)).cache === 'HIT',
      HITS_RESUME_WITHIN_MS,
    );
    const hitsAfterMs = Math.round(performance.now() - backAt);
    // Only the requests in flight when the load stopped went unanswered: none gave up before.
    const gaveUp = samples.filter((sample) => sample.status === 0 && sample.at + sample.ms < 2_900);
    const leftAtEnd = samples.filter((sample) => sample.status === 0 && !gaveUp.includes(sample));
    // Those left mid-request at the end aside, every request was answered 200.
    const failed = samples.filter((sample) => sample.status !== 200 && !leftAtEnd.includes(sample));

    const afterClose = await watching.close(app);
    table.add(
      reportFigures({
        scenario:
          `${adapter.name}, Redis killed as the load stops ` +
          `(${leftAtEnd.length} ${leftAtEnd.length === 1 ? 'client' : 'clients'} leaving mid-request)`,
        sent: samples.length,
        failed: failed.length,
        duringFault: summarize(
          samples.filter((sample) => sample.at >= killedAt && !leftAtEnd.includes(sample)),
        ),
        hitsAfterMs,
        afterClose,
      }),
    );
    expect(gaveUp).toEqual([]);
    expect(failed).toEqual([]);
    expectClean(afterClose);
  }, 30_000);
});
