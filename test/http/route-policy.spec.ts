import { describe, expect, it } from 'vitest';
import type { CacheModuleOptions } from '../../lib/index.js';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  type TestApp,
  usePrivateMemcached,
} from './support/app.js';
import { ItemsController, PolicyController } from './support/controllers.js';
import { json, pollUntil } from './support/http.js';

// How long a route's responses live (@CacheTTL, http.ttl), and @NoCache.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

/** Tolerance between the test's clock and the backend's when checking an expiry's lower bound. */
const CLOCK_SLACK_MS = 15;

/**
 * Requests `path` until it is a MISS again; resolves how long after the first request that was.
 * The entry was stored after the first request started, so it cannot expire sooner than its ttl.
 */
async function msUntilExpired(send: TestApp['send'], path: string): Promise<number> {
  const startedAt = Date.now();
  const miss = await send(path);
  const hit = await send(path);
  expect(miss.cache).toBe('MISS');
  expect(hit.cache).toBe('HIT');
  await pollUntil('the entry expiring', async () => (await send(path)).cache === 'MISS', 3_000, 25);
  return Date.now() - startedAt;
}

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();
    const startApp = (http: CacheModuleOptions['http'] = {}) =>
      start({
        adapter,
        controllers: [ItemsController, PolicyController],
        cache: { ...backend.options(), ttl: 60, http },
      });

    it("@CacheTTL('400ms'): the entry is served until it expires, 400 ms after it was stored", async () => {
      const { send, calls } = await startApp();

      const ms = await msUntilExpired(send, '/policy/ttl-string');

      expect(ms).toBeGreaterThanOrEqual(400 - CLOCK_SLACK_MS);
      expect(calls.of('ttl-string')).toBe(2);
    });

    it('@CacheTTL(0.4) counts seconds: the entry is served until it expires, 400 ms after it was stored', async () => {
      const { send, calls } = await startApp();

      const ms = await msUntilExpired(send, '/policy/ttl-number');

      expect(ms).toBeGreaterThanOrEqual(400 - CLOCK_SLACK_MS);
      expect(calls.of('ttl-number')).toBe(2);
    });

    it("http.ttl sets the ttl of routes without @CacheTTL ('400ms' over the module's 60 s)", async () => {
      const { send, calls } = await startApp({ ttl: '400ms' });

      const ms = await msUntilExpired(send, '/items/7');

      expect(ms).toBeGreaterThanOrEqual(400 - CLOCK_SLACK_MS);
      expect(calls.of('one')).toBe(2);
    });

    it('@NoCache: every request is a BYPASS that runs the handler', async () => {
      const { send, calls } = await startApp();

      const first = await send('/policy/never');
      const second = await send('/policy/never');

      expect(first.cache).toBe('BYPASS');
      expect(second.cache).toBe('BYPASS');
      expect(json(second)).toEqual({ run: 2 });
      expect(calls.of('never')).toBe(2);
    });
  });
});
