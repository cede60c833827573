import { describe, it } from 'vitest';
import { ADAPTERS, usePrivateRedis, useApps } from './support/app.js';
import { ItemsController } from './support/controllers.js';
import {
  CONNECTIONS,
  expectRecovered,
  faultTestCache,
  FAULTS,
  HOT_PATH,
  report,
  underLoad,
} from './support/faults.js';
import { sleep } from './support/http.js';

// A chaos run: for about 30 s under a load of 50 connections, Redis is broken and mended over and
// over, each fault in turn (killed, stopped, frozen, connections closed), for 0.4 to 2 s each, with
// 0.2 to 1.5 s of health in between. The schedule is fixed (a seeded generator gives the same 14
// faults and durations every run), so a failure can be replayed; the load goes on 4 s after the
// last fault ended, however long the restarts took.
const redis = usePrivateRedis();

const FAULT_COUNT = 14;
const AFTER_MS = 4_000;

/** A small deterministic generator (mulberry32): the same "random" durations every run. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const random = seeded(8);
const SCHEDULE = Array.from({ length: FAULT_COUNT }, (_, i) => ({
  fault: FAULTS[i % FAULTS.length]!,
  downMs: Math.round(400 + random() * 1_600),
  upMs: Math.round(200 + random() * 1_300),
}));
const CHAOS_MS = SCHEDULE.reduce((sum, step) => sum + step.downMs + step.upMs, 0);

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();

  it(`Redis broken and mended ${FAULT_COUNT} times (${Math.round(CHAOS_MS / 1_000)} s) under ${CONNECTIONS} connections: every request is answered within the bound, HITs resume, nothing stays in flight`, async () => {
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: faultTestCache(redis.server),
    });
    await app.send(HOT_PATH);

    const run = await underLoad(
      app,
      // A cap only: the load stops AFTER_MS after the last fault.
      2 * CHAOS_MS + 30_000,
      async (sinceStart) => {
        await sleep(500);
        const faultAt = sinceStart();
        let backAt = faultAt;
        for (const { fault, downMs, upMs } of SCHEDULE) {
          await fault.begin(redis.server);
          await sleep(downMs);
          await fault.end(redis.server);
          backAt = sinceStart();
          await sleep(upMs);
        }
        return { faultAt, backAt };
      },
      { stopAfterMs: AFTER_MS },
    );

    report(`${adapter.name}, chaos`, run);
    await expectRecovered(app, run);
  }, 120_000);
});
