import {
  type CallHandler,
  type ExecutionContext,
  Injectable,
  Logger,
  type NestInterceptor,
} from '@nestjs/common';
import { retry } from 'rxjs';
import { describe, expect, it, vi } from 'vitest';
import { NoopCache } from '../../lib/index.js';
import { ADAPTERS, useApps } from './support/app.js';
import {
  ItemsController,
  PlainController,
  SLOW_HANDLER_MS,
  UnstorableController,
} from './support/controllers.js';

/** Retries a failed request once, as resilience interceptors do. */
@Injectable()
class RetryOnceInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(retry(1));
  }
}
import { json } from './support/http.js';

// Where CacheInterceptor applies: the controllers that use it, or every route when it is app-wide;
// and `enabled: false`, which turns it (and BaseCache) off.
describe.each(ADAPTERS)('on $name', (adapter) => {
  const start = useApps();

  it('controller-level: routes of a controller with @UseInterceptors(CacheInterceptor) are cached, the others untouched', async () => {
    const { send, calls } = await start({
      adapter,
      controllers: [ItemsController, PlainController],
    });

    await send('/items/7');
    const cached = await send('/items/7');
    await send('/plain');
    const plain = await send('/plain');

    expect(cached.cache).toBe('HIT');
    expect(calls.of('one')).toBe(1);
    expect(plain.cache).toBeNull();
    expect(json(plain)).toEqual({ run: 2 });
    expect(calls.of('plain')).toBe(2);
  });

  it('app-wide (APP_INTERCEPTOR): routes of a controller without @UseInterceptors are cached', async () => {
    const { send, calls } = await start({ adapter, controllers: [PlainController], appWide: true });

    const miss = await send('/plain');
    const hit = await send('/plain');

    expect(miss.cache).toBe('MISS');
    expect(hit.cache).toBe('HIT');
    expect(json(hit)).toEqual({ run: 1 });
    expect(calls.of('plain')).toBe(1);
  });

  it('registered twice (APP_INTERCEPTOR and @UseInterceptors on the controller): a MISS takes one handler run, not a getOrSetTimeout, and the next request is a HIT', async () => {
    const { send, calls } = await start({
      adapter,
      controllers: [ItemsController],
      appWide: true,
    });

    const miss = await send('/items/slow');
    const hit = await send('/items/slow');

    expect(miss.cache).toBe('MISS');
    expect(miss.ms).toBeLessThan(SLOW_HANDLER_MS + 1_000);
    expect(hit.cache).toBe('HIT');
    expect(json(hit)).toEqual({ run: 1 });
    expect(calls.of('slow')).toBe(1);
  });

  it('registered twice: the warning names the route, once', async () => {
    const warn = vi.spyOn(Logger.prototype, 'warn');
    try {
      const { send } = await start({ adapter, controllers: [ItemsController], appWide: true });

      await send('/items/slow');
      await send('/items/7');
      await send('/items/7');

      const twice = warn.mock.calls.filter(([message]) => /runs twice/.test(String(message)));
      expect(twice.map(([message]) => String(message).match(/GET \S+/)?.[0])).toEqual([
        'GET /items/slow',
        'GET /items/7',
      ]);
    } finally {
      warn.mockRestore();
    }
  });

  it('a retry interceptor outside CacheInterceptor: the retried request is cached as usual, not taken for a second registration', async () => {
    const { send, calls } = await start({
      adapter,
      controllers: [UnstorableController],
      outerInterceptors: [new RetryOnceInterceptor()],
    });

    const retried = await send('/unstorable/slow-flaky');
    const next = await send('/unstorable/slow-flaky');

    expect(retried.status).toBe(200);
    expect(next.cache).toBe('HIT');
    expect(calls.of('slow-flaky')).toBe(2);
  });

  it('enabled: false: requests pass through (no X-Cache header, the handler runs every time) and BaseCache always misses', async () => {
    const { send, calls, cache } = await start({
      adapter,
      controllers: [ItemsController, PlainController],
      appWide: true,
      cache: { enabled: false },
    });

    const first = await send('/items/7');
    const second = await send('/items/7');
    const appWide = await send('/plain');
    await cache.set('k', 'v');

    expect(first.cache).toBeNull();
    expect(second.cache).toBeNull();
    expect(appWide.cache).toBeNull();
    expect(json(second)).toEqual({ run: 2, id: '7' });
    expect(calls.of('one')).toBe(2);
    expect(cache).toBeInstanceOf(NoopCache);
    expect(await cache.get('k')).toBeUndefined();
  });
});
