import 'reflect-metadata';
import {
  Controller,
  Get,
  type INestApplication,
  Injectable,
  Post,
  type Type,
  UseInterceptors,
} from '@nestjs/common';
import type { AbstractHttpAdapter } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BaseCache,
  CacheEvict,
  CacheInterceptor,
  CacheModule,
  CacheTags,
  getCacheToken,
  InjectCache,
} from '../../lib/index.js';
import { ADAPTERS, backends, usePrivateRedis, usePrivateMemcached } from './support/app.js';
import { HandlerCalls } from './support/controllers.js';
import { json, nothingInFlight, request, type Reply } from './support/http.js';

// A named cache (CacheModule.forRoot({ name })) beside the default one: a controller under
// CacheInterceptor.withCache(name) stores its responses there, and @CacheEvict({ cache: name })
// evicts from it.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

/** Holds the named cache as a provider injects it. */
@Injectable()
class PagesProbe {
  constructor(@InjectCache('pages') readonly pages: BaseCache) {}
}

@Controller('pages')
@UseInterceptors(CacheInterceptor.withCache('pages'))
class PagesController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get('home')
  @CacheTags('pages')
  home() {
    return { run: this.calls.ran('home') };
  }

  /** Under the named cache's interceptor, evicting from the named cache. */
  @Post('publish')
  @CacheEvict({ cache: 'pages', tags: ['pages'] })
  publish() {
    return { published: true };
  }
}

/** Under the default cache's interceptor, with the same tag. */
@Controller('articles')
@UseInterceptors(CacheInterceptor)
class ArticlesController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get('latest')
  @CacheTags('pages')
  latest() {
    return { run: this.calls.ran('latest') };
  }

  /** Under the default cache's interceptor, evicting from the named cache only. */
  @Post('publish-pages')
  @CacheEvict({ cache: 'pages', tags: ['pages'] })
  publishPages() {
    return { published: true };
  }
}

const HOME_KEY = 'http:GET:/pages/home?';
const LATEST_KEY = 'http:GET:/articles/latest?';

interface NamedApp {
  app: INestApplication;
  defaultCache: BaseCache;
  pages: BaseCache;
  probe: PagesProbe;
  send(path: string, init?: RequestInit): Promise<Reply>;
  /** Waits until neither cache has a read or a flight (a write) in progress. */
  settled(): Promise<void>;
}

let apps = 0;

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const open: INestApplication[] = [];
    afterEach(async () => {
      // As startApp does: let a write of a response just sent reach Redis before QUIT.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all(open.splice(0).map((app) => app.close()));
    });

    const start = async (controllers: Type[]): Promise<NamedApp> => {
      apps += 1;
      const unique = `named-test-${process.pid}-${apps}`;
      const moduleRef = await Test.createTestingModule({
        imports: [
          CacheModule.forRoot({ ...backend.options(), prefix: `${unique}-default` }),
          CacheModule.forRoot({ ...backend.options(), name: 'pages', prefix: `${unique}-pages` }),
        ],
        controllers,
        providers: [HandlerCalls, PagesProbe],
      }).compile();
      const app = moduleRef.createNestApplication(adapter.create() as AbstractHttpAdapter, {
        logger: false,
      });
      open.push(app);
      await app.listen(0, '127.0.0.1');
      const url = await app.getUrl();
      const defaultCache = app.get(BaseCache);
      const pages = moduleRef.get<BaseCache>(getCacheToken('pages') as string);
      return {
        app,
        defaultCache,
        pages,
        probe: app.get(PagesProbe),
        send: (path, init) => request(url, path, init),
        settled: async () => {
          await nothingInFlight(defaultCache, 2_000);
          await nothingInFlight(pages, 2_000);
        },
      };
    };

    it('CacheInterceptor.withCache(name) stores the entry in the named cache, not in the default one', async () => {
      const { send, pages, defaultCache, probe, settled } = await start([PagesController]);

      const miss = await send('/pages/home');
      await settled();
      const hit = await send('/pages/home');

      expect([miss.cache, hit.cache, json(hit)]).toEqual(['MISS', 'HIT', { run: 1 }]);
      expect(probe.pages).toBe(pages);
      expect(pages).not.toBe(defaultCache);
      expect(await pages.get(HOME_KEY)).toMatchObject({ status: 200 });
      expect(await defaultCache.get(HOME_KEY)).toBeUndefined();
    });

    it('@CacheEvict({ cache, tags }) under CacheInterceptor.withCache(name) evicts from the named cache', async () => {
      const { send, pages, settled } = await start([PagesController]);

      await send('/pages/home');
      await settled();
      const before = await pages.get(HOME_KEY);
      const published = await send('/pages/publish', { method: 'POST' });
      const evicted = await pages.get(HOME_KEY);
      const after = await send('/pages/home');

      expect(before).toMatchObject({ status: 200 });
      expect(published.status).toBe(201);
      expect(evicted).toBeUndefined();
      expect([after.cache, json(after)]).toEqual(['MISS', { run: 2 }]);
    });

    it('@CacheEvict({ cache, tags }) under the default CacheInterceptor evicts from the named cache only', async () => {
      const { send, pages, defaultCache, settled } = await start([
        PagesController,
        ArticlesController,
      ]);

      await send('/pages/home');
      await send('/articles/latest');
      await settled();
      const published = await send('/articles/publish-pages', { method: 'POST' });
      const evicted = await pages.get(HOME_KEY);
      const kept = await defaultCache.get(LATEST_KEY);
      const home = await send('/pages/home');
      const latest = await send('/articles/latest');

      expect(published.status).toBe(201);
      expect(evicted).toBeUndefined();
      expect(kept).toMatchObject({ status: 200 });
      expect([home.cache, json(home)]).toEqual(['MISS', { run: 2 }]);
      expect([latest.cache, json(latest)]).toEqual(['HIT', { run: 1 }]);
    });
  });
});
