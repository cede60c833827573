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
// 0.2 to 1.5 s of health in between. The sequence is the same every run (a seeded generator), so a
// failure can be replayed. The load goes on 4 s after the last fault.
const redis = usePrivateRedis();

const CHAOS_MS = 30_000;
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

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();

  it(`Redis toggled for ${CHAOS_MS / 1_000} s under ${CONNECTIONS} connections: every request is answered within the bound, HITs resume, nothing stays in flight`, async () => {
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: faultTestCache(redis.server),
    });
    await app.send(HOT_PATH);
    const random = seeded(8);

    const run = await underLoad(app, CHAOS_MS + AFTER_MS, async (sinceStart) => {
      await sleep(500);
      const faultAt = sinceStart();
      for (let i = 0; sinceStart() < CHAOS_MS; i += 1) {
        const fault = FAULTS[i % FAULTS.length]!;
        await fault.begin(redis.server);
        await sleep(400 + random() * 1_600);
        await fault.end(redis.server);
        await sleep(200 + random() * 1_300);
      }
      return { faultAt, backAt: sinceStart() };
    });

    report(`${adapter.name}, chaos`, run);
    await expectRecovered(app, run);
  }, 60_000);
});
