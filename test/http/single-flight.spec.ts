import { describe, expect, it } from 'vitest';
import { type BaseCacheOptions, DriverCache, MemoryDriver, type Ttl } from '../../lib/index.js';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  usePrivateMemcached,
} from './support/app.js';
import { ItemsController, UnstorableController } from './support/controllers.js';
import { json, type Reply, sleep } from './support/http.js';

// Concurrent requests for one cold key run the handler once per process; when the leader's
// response may not be shared, the followers run the handler themselves.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

const BURST = 50;

function burst(
  send: (path: string) => Promise<Reply>,
  path: string,
  size: number,
): Promise<Reply[]> {
  return Promise.all(Array.from({ length: size }, () => send(path)));
}

const count = (replies: Reply[], cache: string) =>
  replies.filter((reply) => reply.cache === cache).length;

/** A memory backend whose writes wait until the test releases them (a slow or frozen Redis). */
class HeldWritesCache extends DriverCache {
  readonly held: (() => void)[] = [];
  constructor(options: BaseCacheOptions) {
    super((context) => {
      const driver = new MemoryDriver({}, context.clock);
      const set = driver.set.bind(driver);
      return Object.assign(driver, {
        set: async (key: string, bytes: Uint8Array, ttlMs: number | null) => {
          await new Promise<void>((resolve) => this.held.push(resolve));
          return set(key, bytes, ttlMs);
        },
      });
    }, options);
  }
  release(): void {
    for (const release of this.held.splice(0)) release();
  }
}

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();
    const startApp = () =>
      start({
        adapter,
        controllers: [ItemsController, UnstorableController],
        cache: backend.options(),
      });

    it(`a burst of ${BURST} concurrent requests for a cold key runs the handler once, and every request gets its response`, async () => {
      const { send, calls } = await startApp();

      const replies = await burst(send, '/items/slow', BURST);

      expect(calls.of('slow')).toBe(1);
      expect(replies.map((reply) => reply.status)).toEqual(Array(BURST).fill(200));
      expect(new Set(replies.map((reply) => reply.text))).toEqual(
        new Set([JSON.stringify({ run: 1 })]),
      );
      expect(count(replies, 'MISS')).toBe(1);
      expect(count(replies, 'HIT')).toBe(BURST - 1);
    });

    it('when the leader sets a cookie, each follower runs the handler itself and gets its own response', async () => {
      const { send, calls } = await startApp();

      const replies = await burst(send, '/unstorable/slow-cookie', 5);

      expect(calls.of('slow-cookie')).toBe(5);
      const runs = replies.map((reply) => json<{ run: number }>(reply).run);
      expect(new Set(runs)).toEqual(new Set([1, 2, 3, 4, 5]));
      for (const reply of replies) {
        expect(reply.headers.get('set-cookie')).toBe(`session=${json<{ run: number }>(reply).run}`);
      }
    });

    it('a failing leader caches nothing: only its own request fails; the followers run the handler themselves', async () => {
      const { send, calls } = await startApp();

      const replies = await burst(send, '/unstorable/slow-flaky', 5);
      const after = await send('/unstorable/slow-flaky');

      expect(calls.of('slow-flaky')).toBe(5);
      expect(replies.filter((reply) => reply.status === 500)).toHaveLength(1);
      const served = replies.filter((reply) => reply.status === 200);
      expect(new Set(served.map((reply) => json<{ run: number }>(reply).run))).toEqual(
        new Set([2, 3, 4, 5]),
      );
      expect(after.status).toBe(200);
    });
  });
});

describe.each(ADAPTERS)('on $name, with writes that take long', (adapter) => {
  const start = useApps();
  const startApp = async (getOrSetTimeout?: Ttl) => {
    const app = await start({
      adapter,
      controllers: [ItemsController],
      cache: { backend: HeldWritesCache, ...(getOrSetTimeout && { getOrSetTimeout }) },
    });
    return { ...app, cache: app.cache as HeldWritesCache };
  };

  it('the requests that waited for the leader are answered without waiting for its write, and one arriving during the write replays it too', async () => {
    const { send, calls, cache } = await startApp();

    try {
      const replies = await burst(send, '/items/slow', 5);
      const duringWrite = await send('/items/slow');

      expect(cache.held).toHaveLength(1); // the entry is still being written
      expect(calls.of('slow')).toBe(1);
      expect(replies.map((reply) => reply.status)).toEqual(Array(5).fill(200));
      expect(count(replies, 'HIT')).toBe(4);
      expect(duringWrite.cache).toBe('HIT');
      expect(duringWrite.text).toBe(JSON.stringify({ run: 1 }));
    } finally {
      cache.release();
    }
  });

  it('a write that never ends stops being replayed after getOrSetTimeout: the next request runs the handler', async () => {
    const { send, calls, cache } = await startApp('300ms');

    try {
      const first = await send('/items/slow');
      await sleep(500);
      const later = await send('/items/slow');

      expect(first.cache).toBe('MISS');
      expect(later.cache).toBe('MISS');
      expect(calls.of('slow')).toBe(2);
    } finally {
      cache.release();
    }
  });
});
