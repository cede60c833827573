import { describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  backends,
  useApps,
  usePrivateRedis,
  usePrivateMemcached,
} from './support/app.js';
import {
  CardsController,
  ItemsController,
  MaskCardInterceptor,
  ProfilesController,
  StampViewerInPlaceInterceptor,
  WrapInDataInterceptor,
} from './support/controllers.js';
import { json } from './support/http.js';

// Interceptors registered outside CacheInterceptor (here: global ones, with CacheInterceptor on
// the controller) must run on every HIT too, so the cache keeps the handler's value, not the bytes
// those interceptors produced for one request.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();

    it('an envelope interceptor outside CacheInterceptor wraps the cached value on a HIT', async () => {
      const { send, calls } = await start({
        adapter,
        cache: backend.options(),
        controllers: [ItemsController],
        outerInterceptors: [new WrapInDataInterceptor()],
      });
      const miss = await send('/items/7');
      const hit = await send('/items/7');
      expect(miss.cache).toBe('MISS');
      expect(hit.cache).toBe('HIT');
      expect(json(hit)).toEqual({ data: { run: 1, id: '7' } });
      expect(hit.bytes.equals(miss.bytes)).toBe(true);
      expect(calls.of('one')).toBe(1);
    });

    it('a masking interceptor outside CacheInterceptor masks every HIT too', async () => {
      const { send } = await start({
        adapter,
        cache: backend.options(),
        controllers: [CardsController],
        outerInterceptors: [new MaskCardInterceptor()],
      });
      await send('/cards/mine');
      const hit = await send('/cards/mine');
      expect(hit.cache).toBe('HIT');
      expect(json(hit)).toEqual({ run: 1, card: '****-****' });
    });

    it('an entry of stored bytes under a route whose HITs go through an outer interceptor is a miss: the mask is never skipped', async () => {
      const { send, cache } = await start({
        adapter,
        cache: backend.options(),
        controllers: [CardsController],
        outerInterceptors: [new MaskCardInterceptor()],
      });
      await send('/cards/mine'); // the route is known to store values from here on
      await cache.set('http:GET:/cards/mine?', {
        format: 2,
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: { text: '{"run":0,"card":"4111-1111"}' },
        storedAt: 0,
      });

      const reply = await send('/cards/mine');

      expect(reply.cache).toBe('MISS');
      expect(json(reply)).toEqual({ run: 2, card: '****-****' });
    });

    it("an interceptor outside that changes the handler's object in place cannot taint the cached value", async () => {
      const { send } = await start({
        adapter,
        cache: backend.options(),
        controllers: [ItemsController],
        outerInterceptors: [new StampViewerInPlaceInterceptor()],
      });
      const alice = await send('/items/7', { headers: { 'x-user': 'alice' } });
      const bob = await send('/items/7', { headers: { 'x-user': 'bob' } });
      expect(json(alice)).toEqual({ run: 1, id: '7', viewer: 'alice' });
      expect(bob.cache).toBe('HIT');
      expect(json(bob)).toEqual({ run: 1, id: '7', viewer: 'bob' });
    });

    it('a class instance under an interceptor outside CacheInterceptor is served, not cached (it would lose its class)', async () => {
      const { send, calls } = await start({
        adapter,
        cache: backend.options(),
        controllers: [ProfilesController],
        outerInterceptors: [new WrapInDataInterceptor()],
      });
      await send('/profiles/mine');
      const second = await send('/profiles/mine');
      expect(second.cache).toBe('MISS');
      expect(json(second)).toEqual({ data: { name: 'ada', run: 2 } });
      expect(calls.of('profile')).toBe(2);
    });
  });
});
