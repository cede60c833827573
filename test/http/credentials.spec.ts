import { describe, expect, it } from 'vitest';
import type { CacheModuleOptions } from '../../lib/index.js';
import { ADAPTERS, useApps } from './support/app.js';
import { CredentialsController, ItemsController } from './support/controllers.js';
import { json } from './support/http.js';

// Requests carrying credentials bypass the cache (neither read nor stored) unless the route keys
// them (@CacheVary('authorization'), @CachePerUser) or is @CachePublic; and what a client's own
// Cache-Control: no-cache does. Whatever the backend: these are the interceptor's decisions.
const CREDENTIALS = [
  { header: 'Authorization', value: 'Bearer alice' },
  { header: 'Cookie', value: 'session=alice' },
];

const as = (user: string) => ({ headers: { authorization: `Bearer ${user}` } });

describe.each(ADAPTERS)('on $name', (adapter) => {
  const start = useApps();
  const startApp = (http: CacheModuleOptions['http'] = {}) =>
    start({ adapter, controllers: [CredentialsController, ItemsController], cache: { http } });

  it.each(CREDENTIALS)(
    'a request carrying $header bypasses: it is not stored, and not served from the cache',
    async ({ header, value }) => {
      const { send, calls } = await startApp();
      const withCredentials = { headers: { [header]: value } };

      const cold = await send('/me/default', withCredentials);
      const anonymous = await send('/me/default');
      const warm = await send('/me/default', withCredentials);

      expect(cold.cache).toBe('BYPASS');
      expect(anonymous.cache).toBe('MISS'); // the bypassed response was not stored
      expect(warm.cache).toBe('BYPASS'); // the anonymous entry is not served to it
      expect(json(warm)).toEqual({ run: 3 });
      expect(calls.of('default')).toBe(3);
    },
  );

  it("@CacheVary('authorization') caches requests carrying Authorization, one entry per token", async () => {
    const { send, calls } = await startApp();

    await send('/me/vary', as('alice'));
    const bob = await send('/me/vary', as('bob'));
    const aliceAgain = await send('/me/vary', as('alice'));
    const bobAgain = await send('/me/vary', as('bob'));

    expect(bob.cache).toBe('MISS');
    expect(aliceAgain.cache).toBe('HIT');
    expect(json(aliceAgain)).toEqual({ run: 1, user: 'alice' });
    expect(bobAgain.cache).toBe('HIT');
    expect(json(bobAgain)).toEqual({ run: 2, user: 'bob' });
    expect(calls.of('vary')).toBe(2);
  });

  it('@CachePerUser caches requests carrying Authorization, one entry per identified user', async () => {
    const { send, calls } = await startApp();

    await send('/me/per-user', as('alice'));
    const bob = await send('/me/per-user', as('bob'));
    const aliceAgain = await send('/me/per-user', as('alice'));
    const bobAgain = await send('/me/per-user', as('bob'));

    expect(bob.cache).toBe('MISS');
    expect(aliceAgain.cache).toBe('HIT');
    expect(json(aliceAgain)).toEqual({ run: 1, user: 'alice' });
    expect(bobAgain.cache).toBe('HIT');
    expect(json(bobAgain)).toEqual({ run: 2, user: 'bob' });
    expect(calls.of('per-user')).toBe(2);
  });

  it('@CachePerUser bypasses a request carrying credentials whose user it cannot identify', async () => {
    const { send, calls } = await startApp();
    const unidentified = { headers: { authorization: 'Basic YWxpY2U6c2VjcmV0' } };

    const first = await send('/me/per-user', unidentified);
    const second = await send('/me/per-user', unidentified);

    expect(first.cache).toBe('BYPASS');
    expect(second.cache).toBe('BYPASS');
    expect(calls.of('per-user')).toBe(2);
  });

  it('@CachePublic caches requests carrying Authorization or Cookie in the one shared entry', async () => {
    const { send, calls } = await startApp();

    const withToken = await send('/me/public', as('alice'));
    const anonymous = await send('/me/public');
    const withCookie = await send('/me/public', { headers: { cookie: 'session=bob' } });

    expect(withToken.cache).toBe('MISS');
    expect(anonymous.cache).toBe('HIT');
    expect(withCookie.cache).toBe('HIT');
    expect(json(withCookie)).toEqual({ run: 1 });
    expect(calls.of('public')).toBe(1);
  });

  it("a client's Cache-Control: no-cache is served from the cache by default", async () => {
    const { send, calls } = await startApp();

    await send('/items/7');
    const noCache = await send('/items/7', { headers: { 'cache-control': 'no-cache' } });

    expect(noCache.cache).toBe('HIT');
    expect(json(noCache)).toEqual({ run: 1, id: '7' });
    expect(calls.of('one')).toBe(1);
  });

  it("with http.trustClientNoCache, a client's Cache-Control: no-cache refreshes the entry: the handler runs and its response is stored", async () => {
    const { send, calls } = await startApp({ trustClientNoCache: true });

    await send('/items/7');
    const refresh = await send('/items/7', { headers: { 'cache-control': 'no-cache' } });
    const after = await send('/items/7');

    expect(refresh.cache).toBe('MISS');
    expect(json(refresh)).toEqual({ run: 2, id: '7' });
    expect(after.cache).toBe('HIT');
    expect(json(after)).toEqual({ run: 2, id: '7' });
    expect(calls.of('one')).toBe(2);
  });
});
