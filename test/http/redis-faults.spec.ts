import { describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  type TestApp,
  usePrivateMemcached,
} from './support/app.js';
import { ItemsController } from './support/controllers.js';
import { json, pollUntil } from './support/http.js';

// Fail open over HTTP: Redis killed (SIGKILL) or frozen (SIGSTOP) never becomes a 5xx or a hang,
// and once Redis is back, responses are served from it again. Each test leaves the server running.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

/** Upper bound of one request while Redis is down or frozen (commandTimeout is 200 ms). */
const SERVED_WITHIN_MS = 2_000;
/** How long Redis may take to be used again once it is back (reconnection backs off up to 2 s). */
const RECOVERY_MS = 10_000;

/** Requests `path` while Redis is out: each is answered by the handler, with 200, in bounded time. */
async function servedByTheHandler(app: TestApp, path: string, requests: number): Promise<void> {
  const before = app.calls.of('one');
  for (let i = 1; i <= requests; i += 1) {
    const reply = await app.send(path);
    expect(reply.status).toBe(200);
    expect(json(reply)).toEqual({ run: before + i, id: '7' });
    expect(reply.ms, `request ${i} took ${Math.round(reply.ms)} ms`).toBeLessThan(SERVED_WITHIN_MS);
  }
}

/** Polls until a request for `path` is a HIT: Redis stores and serves responses again. */
async function hitsResume(app: TestApp, path: string): Promise<void> {
  await pollUntil(
    'a HIT from Redis',
    async () => (await app.send(path)).cache === 'HIT',
    RECOVERY_MS,
    100,
  );
}

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();
  const startWarm = async () => {
    const [, redisBackend] = backends(redis, memcached);
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: redisBackend!.options(),
    });
    await app.send('/items/7');
    expect((await app.send('/items/7')).cache).toBe('HIT');
    return app;
  };

  it('Redis killed mid-test: every request is served by the handler with 200, each within 2 s', async () => {
    const app = await startWarm();
    await redis.server.kill();
    try {
      await servedByTheHandler(app, '/items/7', 8);
    } finally {
      await redis.server.restart();
    }
  });

  it('Redis back after being killed: responses are stored and served as HITs again', async () => {
    const app = await startWarm();
    await redis.server.kill();
    await servedByTheHandler(app, '/items/7', 2);
    await redis.server.restart();

    await hitsResume(app, '/items/7');
  });

  it('Redis frozen mid-test: every request is served by the handler with 200, each within 2 s', async () => {
    const app = await startWarm();
    await redis.server.freeze();
    try {
      await servedByTheHandler(app, '/items/7', 8);
    } finally {
      redis.server.resume();
    }
  });

  it('Redis back after being frozen: responses are served as HITs again', async () => {
    const app = await startWarm();
    await redis.server.freeze();
    try {
      await servedByTheHandler(app, '/items/7', 2);
    } finally {
      redis.server.resume();
    }

    await hitsResume(app, '/items/7');
  });
});
