import { describe, expect, it } from 'vitest';
import { runLoad } from '../support/load.js';
import { ADAPTERS, usePrivateRedis, useApps } from './support/app.js';
import { ItemsController } from './support/controllers.js';
import {
  CONNECTIONS,
  expectRecovered,
  faultTestCache,
  FAULTS,
  HITS_RESUME_WITHIN_MS,
  HOT_PATH,
  report,
  SOONER_THAN_A_FLIGHT_MS,
  underLoad,
} from './support/faults.js';
import { nothingInFlight, pollUntil, sleep } from './support/http.js';

// Redis faults the way production meets them: under a load of 50 connections, half of them on one
// cached URL (a hot key) and half on 200 others, with the responses already cached. Each fault
// lasts 2 s, starting 1.5 s into a 7.5 s load.
const redis = usePrivateRedis();

const FAULT_AT_MS = 1_500;
const FAULT_FOR_MS = 2_000;
const LOAD_MS = 7_500;

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();

  it.each(FAULTS)(
    `Redis $name under ${CONNECTIONS} connections: every request is answered within the bound, HITs resume within seconds, nothing stays in flight`,
    async (fault) => {
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

      report(`${adapter.name}, Redis ${fault.name}`, run);
      await expectRecovered(app, run);
    },
    30_000,
  );

  it(`the load stops while Redis is killed, its ${CONNECTIONS} clients leaving mid-request (as wrk does when its time is up): the hot URL is answered at once afterwards, nothing stays in flight, and HITs resume once Redis is back`, async () => {
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: faultTestCache(redis.server),
    });
    await app.send(HOT_PATH);
    const load = runLoad({
      url: app.url,
      path: () => HOT_PATH,
      connections: CONNECTIONS,
      durationMs: 3_000,
      giveUpAfterMs: 2_000, // wrk's default timeout
      leaveAtEnd: true,
    });
    await sleep(1_500);
    await redis.server.kill();
    const samples = await load;

    try {
      // Sooner than a flight's deadline: a flight left behind by a client that left would show.
      await nothingInFlight(app.cache, SOONER_THAN_A_FLIGHT_MS);
      const during = await app.send(HOT_PATH);
      expect(during.status).toBe(200);
      // Redis is down: the read fails at once, and the handler answers.
      expect(during.ms).toBeLessThan(1_000);
    } finally {
      await redis.server.restart();
    }
    await pollUntil(
      'a HIT of the hot URL',
      async () => (await app.send(HOT_PATH)).cache === 'HIT',
      HITS_RESUME_WITHIN_MS,
    );
    // Only the requests in flight when the load stopped went unanswered: none gave up before.
    const gaveUp = samples.filter((sample) => sample.status === 0 && sample.at + sample.ms < 2_900);
    expect(gaveUp).toEqual([]);
  }, 30_000);
});
