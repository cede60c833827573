import {
  Controller,
  Get,
  Inject,
  NotFoundException,
  Post,
  ServiceUnavailableException,
  UseInterceptors,
} from '@nestjs/common';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  BaseCache,
  CacheEvict,
  CacheInterceptor,
  CacheStale,
  CacheTags,
  CacheTTL,
  CacheConfigError,
  type HttpCacheOptions,
  MemoryCache,
} from '../../lib/index.js';
import { ApplicationConfig, HttpAdapterHost, Reflector } from '@nestjs/core';
import { storeLed } from '../../lib/base-cache.js';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  usePrivateMemcached,
} from './support/app.js';
import { HandlerCalls } from './support/controllers.js';
import { json, nothingInFlight, pollUntil, type Reply } from './support/http.js';
import { MASK, maskSsn } from './support/setups.js';

// Stale serving on the cache's clock: staleWhileRevalidate answers at once from the stale entry
// while one background run refreshes it; staleIfError answers from it when the handler fails.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

/** A promise the test resolves: holds a handler run until then. */
class Hold {
  readonly released: Promise<void>;
  release!: () => void;
  constructor() {
    this.released = new Promise((resolve) => (this.release = resolve));
  }
}

/** What the handlers do, set by each test (reset before each). */
const control: { hold: Hold | undefined; fail: 'http' | 'error' | 'not-found' | undefined } = {
  hold: undefined,
  fail: undefined,
};
beforeEach(() => {
  control.hold?.release();
  control.hold = undefined;
  control.fail = undefined;
});

const TTL_S = 10;
const TTL_MS = TTL_S * 1_000;
const WINDOW_MS = 60_000;

/** A class instance a handler returns (an ORM entity, say). */
class Report {
  constructor(readonly run: number) {}
}

@Controller('news')
@UseInterceptors(CacheInterceptor)
class NewsController {
  constructor(
    private readonly calls: HandlerCalls,
    @Inject(BaseCache) private readonly cache: BaseCache,
  ) {}

  /** Waits for control.hold (when set) before answering; then fails while control.fail is set. */
  @Get('swr')
  @CacheTTL(TTL_S)
  @CacheStale({ staleWhileRevalidate: '1m' })
  @CacheTags('news')
  async swr() {
    const run = this.calls.ran('swr');
    await control.hold?.released;
    if (control.fail) throw new ServiceUnavailableException('the origin is down');
    return { run };
  }

  /** Fails while control.fail is set: with a 503, or a plain Error (500). */
  @Get('sie')
  @CacheTTL(TTL_S)
  @CacheStale({ staleIfError: '1m' })
  sie() {
    const run = this.calls.ran('sie');
    if (control.fail === 'http') throw new ServiceUnavailableException('the origin is down');
    if (control.fail === 'error') throw new Error('the origin is down');
    if (control.fail === 'not-found') throw new NotFoundException('gone');
    return { run };
  }

  /** Waits for control.hold, fails while control.fail is set; a request past the ttl waits 100 ms for it. */
  @Get('soft')
  @CacheTTL(TTL_S)
  @CacheStale({ staleIfError: '1m', softTimeout: '100ms' })
  async soft() {
    const run = this.calls.ran('soft');
    await control.hold?.released;
    if (control.fail === 'http') throw new ServiceUnavailableException('the origin is down');
    if (control.fail === 'not-found') throw new NotFoundException('gone');
    return { run };
  }

  /** Returns a class instance: sent as JSON, but not plain data for the serializer. */
  @Get('soft-instance')
  @CacheTTL(TTL_S)
  @CacheStale({ staleIfError: '1m', softTimeout: '100ms' })
  softInstance() {
    return new Report(this.calls.ran('soft-instance'));
  }

  /** Never expires: its stale window never applies. */
  @Get('forever')
  @CacheTTL(null)
  @CacheStale({ staleWhileRevalidate: '1m' })
  forever() {
    return { run: this.calls.ran('forever') };
  }

  /** No @CacheStale: the module's http stale windows apply. */
  @Get('module-window')
  @CacheTTL(TTL_S)
  async moduleWindow() {
    const run = this.calls.ran('module-window');
    await control.hold?.released;
    return { run };
  }

  /** A record with a field the app's serialization hook masks (see maskSsn). */
  @Get('secret')
  @CacheTTL(TTL_S)
  @CacheStale({ staleWhileRevalidate: '1m' })
  secret() {
    return { run: this.calls.ran('secret'), ssn: '123-45-6789' };
  }

  @Post('evict')
  @CacheEvict({ tags: ['news'] })
  evict() {
    return { evicted: true };
  }

  /** Deletes the entry of GET /news/swr through the injected BaseCache. */
  @Post('delete')
  async delete() {
    return { deleted: await this.cache.delete('http:GET:/news/swr?') };
  }

  /** Clears the cache through the injected BaseCache. */
  @Post('clear')
  async clear() {
    await this.cache.clear();
    return { cleared: true };
  }
}

/** The outcomes of every write of a flight's response (the interceptor's runs and refreshes), from now on. */
function recordLedWrites(cache: BaseCache): Promise<boolean>[] {
  const writes: Promise<boolean>[] = [];
  const original = cache[storeLed].bind(cache);
  cache[storeLed] = (...args: Parameters<BaseCache[typeof storeLed]>) => {
    const write = original(...args);
    writes.push(write);
    return write;
  };
  return writes;
}

const summary = (reply: Reply) => [reply.status, reply.cache, json(reply)];

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))(
    'with the $name backend and a clock of its own',
    (backend) => {
      const start = useApps();
      let now = 0;
      const startApp = async (http?: HttpCacheOptions) => {
        now = Date.now();
        const app = await start({
          adapter,
          controllers: [NewsController],
          cache: { ...backend.options(), clock: { now: () => now }, ...(http && { http }) },
        });
        /**
         * Caches `path`: a GET, then the end of its flight (the write), so that the clock moves on
         * from an entry that is stored, not from one still being written (a request arriving
         * during the write replays the response it lands).
         */
        const prime = async (path: string) => {
          await app.send(path);
          await nothingInFlight(app.cache, 2_000);
        };
        return { ...app, prime };
      };

      it('past its ttl, a GET answers at once from the stale entry (X-Cache: STALE) while the refresh is still running', async () => {
        const { send, calls, prime } = await startApp();

        await prime('/news/swr');
        now += TTL_MS + 1_000;
        control.hold = new Hold();
        const stale = await send('/news/swr');

        expect(summary(stale)).toEqual([200, 'STALE', { run: 1 }]);
        expect(calls.of('swr')).toBe(2); // the refresh started, and has not answered
      });

      it('20 concurrent GETs of a stale entry are all answered from it, and run the handler once in the background', async () => {
        const { send, calls, prime } = await startApp();

        await prime('/news/swr');
        now += TTL_MS + 1_000;
        control.hold = new Hold();
        const replies = await Promise.all(Array.from({ length: 20 }, () => send('/news/swr')));

        expect(replies.map(summary)).toEqual(Array(20).fill([200, 'STALE', { run: 1 }]));
        expect(calls.of('swr')).toBe(2);
      });

      it('once the background refresh lands, the next GET is a HIT with the new body', async () => {
        const { send, calls, cache, prime } = await startApp();

        await prime('/news/swr');
        now += TTL_MS + 1_000;
        control.hold = new Hold();
        await send('/news/swr');
        control.hold.release();
        await nothingInFlight(cache, 2_000);
        const after = await send('/news/swr');

        expect(summary(after)).toEqual([200, 'HIT', { run: 2 }]);
        expect(calls.of('swr')).toBe(2);
      });

      it('a background refresh that fails keeps the stale entry: the next GET is STALE with the old body again', async () => {
        const { send, calls, cache, prime } = await startApp();

        await prime('/news/swr');
        now += TTL_MS + 1_000;
        control.fail = 'http';
        const first = await send('/news/swr');
        await nothingInFlight(cache, 2_000);
        const second = await send('/news/swr');

        expect(summary(first)).toEqual([200, 'STALE', { run: 1 }]);
        expect(summary(second)).toEqual([200, 'STALE', { run: 1 }]);
        expect(calls.of('swr')).toBe(3); // each stale GET started one refresh
      });

      it('past the staleWhileRevalidate window, a GET is a MISS: the handler runs for it', async () => {
        const { send, calls, prime } = await startApp();

        await prime('/news/swr');
        now += TTL_MS + WINDOW_MS + 1_000;
        const expired = await send('/news/swr');

        expect(summary(expired)).toEqual([200, 'MISS', { run: 2 }]);
        expect(calls.of('swr')).toBe(2);
      });

      it("the module's http.staleWhileRevalidate applies to a route without @CacheStale", async () => {
        const { send, calls, cache, prime } = await startApp({ staleWhileRevalidate: '1m' });

        await prime('/news/module-window');
        now += TTL_MS + 1_000;
        const stale = await send('/news/module-window');
        await nothingInFlight(cache, 2_000);
        const refreshed = await send('/news/module-window');

        expect(summary(stale)).toEqual([200, 'STALE', { run: 1 }]);
        expect(summary(refreshed)).toEqual([200, 'HIT', { run: 2 }]);
        expect(calls.of('module-window')).toBe(2);
      });

      it('without a stale window (neither @CacheStale nor the module), a GET past the ttl is a MISS', async () => {
        const { send, prime } = await startApp();

        await prime('/news/module-window');
        now += TTL_MS + 1_000;
        const expired = await send('/news/module-window');

        expect(summary(expired)).toEqual([200, 'MISS', { run: 2 }]);
      });

      it.each([
        ['a 503', 'http'],
        ['an Error (500)', 'error'],
      ] as const)(
        'staleIfError: past the ttl, a handler that throws %s answers 200 with the stale body (X-Cache: STALE), counted as a stale hit only',
        async (_what, fail) => {
          const { send, calls, prime, cache } = await startApp();

          await prime('/news/sie');
          now += TTL_MS + 1_000;
          control.fail = fail;
          const before = { ...cache.stats };
          const failed = await send('/news/sie');

          expect(summary(failed)).toEqual([200, 'STALE', { run: 1 }]);
          expect(calls.of('sie')).toBe(2);
          expect(cache.stats.misses - before.misses, 'misses counted').toBe(0);
          expect(cache.stats.stale - before.stale, 'stale hits counted').toBe(1);
        },
      );

      it('staleIfError: 10 concurrent GETs past the ttl, while the handler fails, all answer 200 from the stale entry', async () => {
        const { send, prime } = await startApp();

        await prime('/news/sie');
        now += TTL_MS + 1_000;
        control.fail = 'http';
        const replies = await Promise.all(Array.from({ length: 10 }, () => send('/news/sie')));

        expect(replies.map(summary)).toEqual(Array(10).fill([200, 'STALE', { run: 1 }]));
      });

      it('staleIfError: past the ttl, a client error (404) is the answer: it goes through, and so for 10 concurrent GETs', async () => {
        const { send, prime } = await startApp();

        await prime('/news/sie');
        now += TTL_MS + 1_000;
        control.fail = 'not-found';
        const replies = await Promise.all(Array.from({ length: 10 }, () => send('/news/sie')));

        expect(replies.map((reply) => [reply.status, reply.cache])).toEqual(
          Array(10).fill([404, 'MISS']),
        );
      });

      it('staleIfError: without a stale entry, the error goes through as usual', async () => {
        const { send } = await startApp();

        control.fail = 'http';
        const failed = await send('/news/sie');

        expect([failed.status, failed.cache]).toEqual([503, 'MISS']);
        expect(json(failed)).toMatchObject({ statusCode: 503, message: 'the origin is down' });
      });

      it('staleIfError: past its window, the error goes through as usual', async () => {
        const { send, prime } = await startApp();

        await prime('/news/sie');
        now += TTL_MS + WINDOW_MS + 1_000;
        control.fail = 'http';
        const failed = await send('/news/sie');

        expect([failed.status, failed.cache]).toEqual([503, 'MISS']);
      });

      it('softTimeout: past the ttl, a handler slower than it is answered from the stale entry (STALE), and what it returns later is stored', async () => {
        const { send, calls, cache, prime } = await startApp();

        await prime('/news/soft');
        now += TTL_MS + 1_000;
        control.hold = new Hold();
        const slow = await send('/news/soft');
        control.hold.release();
        await nothingInFlight(cache, 2_000);
        const after = await send('/news/soft');

        expect(summary(slow)).toEqual([200, 'STALE', { run: 1 }]);
        expect(summary(after)).toEqual([200, 'HIT', { run: 2 }]);
        expect(calls.of('soft')).toBe(2);
      });

      it('softTimeout: past the ttl, a handler faster than it answers (MISS), and its response is stored', async () => {
        const { send, prime } = await startApp();

        await prime('/news/soft');
        now += TTL_MS + 1_000;
        const fast = await send('/news/soft');
        const after = await send('/news/soft');

        expect(summary(fast)).toEqual([200, 'MISS', { run: 2 }]);
        expect(summary(after)).toEqual([200, 'HIT', { run: 2 }]);
      });

      it('softTimeout: past the ttl, a handler value the cache cannot store (a class instance) is the answer (MISS), not the stale entry', async () => {
        const { send, prime } = await startApp();

        await prime('/news/soft-instance');
        const cached = await send('/news/soft-instance'); // stored as the JSON sent
        now += TTL_MS + 1_000;
        const fresh = await send('/news/soft-instance');

        expect(summary(cached)).toEqual([200, 'HIT', { run: 1 }]);
        expect(summary(fresh)).toEqual([200, 'MISS', { run: 2 }]);
      });

      it('@CacheTTL(null) under @CacheStale: the entry never expires, and is a HIT a day later', async () => {
        const { send, prime } = await startApp();

        await prime('/news/forever');
        now += 86_400_000;
        const later = await send('/news/forever');

        expect(summary(later)).toEqual([200, 'HIT', { run: 1 }]);
      });

      it('softTimeout: past the ttl, a 503 is answered from the stale entry, a 404 goes through', async () => {
        const { send, prime } = await startApp();

        await prime('/news/soft');
        now += TTL_MS + 1_000;
        control.fail = 'http';
        const unavailable = await send('/news/soft');
        control.fail = 'not-found';
        const missing = await send('/news/soft');

        expect(summary(unavailable)).toEqual([200, 'STALE', { run: 1 }]);
        expect([missing.status, missing.cache]).toEqual([404, 'MISS']);
      });

      it('staleIfError: once the handler succeeds again, its response replaces the stale entry', async () => {
        const { send, prime } = await startApp();

        await prime('/news/sie');
        now += TTL_MS + 1_000;
        control.fail = 'http';
        await send('/news/sie');
        control.fail = undefined;
        const recovered = await send('/news/sie');
        const after = await send('/news/sie');

        expect(summary(recovered)).toEqual([200, 'MISS', { run: 3 }]);
        expect(summary(after)).toEqual([200, 'HIT', { run: 3 }]);
      });

      it.each([
        ['@CacheEvict({ tags }) on a POST', '/news/evict'],
        ['cache.delete(key) through the injected BaseCache', '/news/delete'],
        ['cache.clear() through the injected BaseCache', '/news/clear'],
      ])(
        'an invalidation by %s while a background refresh runs wins: the refresh never brings the response back',
        async (_what, path) => {
          const { send, cache, prime } = await startApp();
          const refreshWrites = recordLedWrites(cache);

          await prime('/news/swr');
          refreshWrites.length = 0;
          now += TTL_MS + 1_000;
          control.hold = new Hold();
          const stale = await send('/news/swr'); // the refresh (run 2) waits on the hold
          const invalidated = await send(path, { method: 'POST' });
          control.hold.release();
          // An invalidated flight leaves the flights at once: wait for the refresh's own write.
          await pollUntil('the refresh to write', async () => refreshWrites.length === 1, 2_000, 5);
          const stored = await refreshWrites[0];
          const after = await send('/news/swr');

          expect(stale.cache).toBe('STALE');
          expect(invalidated.status).toBe(201);
          expect(stored).toBe(false);
          expect(summary(after)).toEqual([200, 'MISS', { run: 3 }]);
        },
      );
    },
  );
});

// Two instances of one app sharing Redis (or one restarted): the second one serves and refreshes
// entries the first one stored, before it has sent a response of that route itself.
describe.each(ADAPTERS)('on $name, two instances sharing the Redis backend', (adapter) => {
  const start = useApps();

  it("a background refresh in an instance that has not served the route yet keeps the app's serialization hook: its HITs stay masked", async () => {
    let now = Date.now();
    const prefix = `stale-shared-${process.pid}-${adapter.name}-${now}`;
    const startInstance = () =>
      start({
        adapter,
        controllers: [NewsController],
        cache: {
          backend: 'redis',
          redis: { url: redis.server.url },
          prefix,
          clock: { now: () => now },
        },
        configure: maskSsn(adapter.name),
      });
    const first = await startInstance();
    const second = await startInstance();

    const miss = await first.send('/news/secret');
    await nothingInFlight(first.cache, 2_000);
    now += TTL_MS + 1_000;
    const stale = await second.send('/news/secret');
    await nothingInFlight(second.cache, 2_000);
    const hit = await second.send('/news/secret');

    expect([miss.cache, json(miss)]).toEqual(['MISS', { run: 1, ssn: MASK }]);
    expect([stale.cache, json(stale)]).toEqual(['STALE', { run: 1, ssn: MASK }]);
    expect([hit.cache, json(hit)]).toEqual(['HIT', { run: 1, ssn: MASK }]);
  });
});

describe('softTimeout needs staleIfError', () => {
  it('@CacheStale({ softTimeout }) without staleIfError throws a TypeError naming both, when the class is defined', () => {
    expect(() => CacheStale({ softTimeout: '100ms' })).toThrow(/softTimeout.*staleIfError/);
  });

  it('the module option http.softTimeout without http.staleIfError is a CacheConfigError naming it', () => {
    const make = () =>
      new CacheInterceptor(
        new MemoryCache(),
        { http: { softTimeout: '100ms' } },
        new Reflector(),
        new HttpAdapterHost(),
        new ApplicationConfig(),
        undefined as never,
      );
    expect(make).toThrow(CacheConfigError);
    expect(make).toThrow(/http\.softTimeout.*staleIfError/);
  });
});
