import 'reflect-metadata';
import { Inject, Injectable, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  BaseCache,
  CacheConfigError,
  CacheModule,
  type CacheModuleOptions,
  type CacheOptionsFactory,
  getCacheToken,
  InjectCache,
  MemoryCache,
  RedisCache,
} from '../lib/index.js';
import { usePrivateRedis } from './support/redis-server.js';

@Injectable()
class SessionStore {
  constructor(
    @InjectCache('sessions') readonly sessions: BaseCache,
    readonly cache: BaseCache, // the default cache, by type
  ) {}
}

@Injectable()
class SessionsOnly {
  constructor(@InjectCache('sessions') readonly sessions: BaseCache) {}
}

async function start(imports: unknown[], providers: unknown[] = [SessionStore]) {
  const moduleRef = await Test.createTestingModule({ imports, providers } as never).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return { app, moduleRef };
}

describe('named caches: registration and injection', () => {
  it('@InjectCache(name) injects the named cache, a cache of its own beside the default one', async () => {
    const { app } = await start([
      CacheModule.forRoot({}),
      CacheModule.forRoot({ name: 'sessions', backend: 'memory' }),
    ]);
    const { sessions, cache } = app.get(SessionStore);
    expect(sessions).toBeInstanceOf(MemoryCache);
    expect(cache).toBeInstanceOf(MemoryCache);
    expect(sessions).not.toBe(cache);
    await sessions.set('k', 'session');
    expect(await sessions.get('k')).toBe('session');
    expect(await cache.get('k')).toBeUndefined();
    await app.close();
  });

  it('@InjectCache() without a name injects the default cache', async () => {
    @Injectable()
    class DefaultUser {
      constructor(
        @InjectCache() readonly viaDecorator: BaseCache,
        readonly byType: BaseCache,
      ) {}
    }
    const { app } = await start(
      [CacheModule.forRoot({}), CacheModule.forRoot({ name: 'sessions' })],
      [DefaultUser],
    );
    const { viaDecorator, byType } = app.get(DefaultUser);
    expect(viaDecorator).toBe(byType);
    expect(viaDecorator.prefix).toBe('nest-cache');
    await app.close();
  });

  it('getCacheToken(name) resolves the named cache through moduleRef.get', async () => {
    const { app, moduleRef } = await start([
      CacheModule.forRoot({}),
      CacheModule.forRoot({ name: 'sessions' }),
    ]);
    const viaToken = moduleRef.get<BaseCache>(getCacheToken('sessions'));
    expect(viaToken).toBe(app.get(SessionStore).sessions);
    expect(moduleRef.get(getCacheToken())).toBe(app.get(SessionStore).cache);
    await app.close();
  });

  it('getCacheToken(name) works in the inject list of a provider factory', async () => {
    const { app, moduleRef } = await start(
      [CacheModule.forRoot({ name: 'sessions' })],
      [
        {
          provide: 'SESSION_PREFIX',
          useFactory: (sessions: BaseCache) => `prefix is ${sessions.prefix}`,
          inject: [getCacheToken('sessions')],
        },
      ],
    );
    expect(moduleRef.get('SESSION_PREFIX')).toBe('prefix is sessions');
    await app.close();
  });

  it("getCacheToken(name) works in another cache's forRootAsync inject list", async () => {
    const { app } = await start([
      CacheModule.forRoot({ name: 'sessions', isGlobal: true }),
      CacheModule.forRootAsync({
        inject: [getCacheToken('sessions')],
        useFactory: (sessions: BaseCache) => ({ prefix: `after-${sessions.prefix}` }),
      }),
    ]);
    expect(app.get(SessionStore).cache.prefix).toBe('after-sessions');
    await app.close();
  });

  it('a named cache without a prefix of its own gets its name as prefix', async () => {
    const { app } = await start(
      [CacheModule.forRoot({ name: 'sessions', backend: 'memory' })],
      [SessionsOnly],
    );
    expect(app.get(SessionsOnly).sessions.prefix).toBe('sessions');
    await app.close();
  });

  it('a named cache with a prefix of its own keeps it', async () => {
    const { app } = await start(
      [CacheModule.forRoot({ name: 'sessions', prefix: 'sess-v2' })],
      [SessionsOnly],
    );
    expect(app.get(SessionsOnly).sessions.prefix).toBe('sess-v2');
    await app.close();
  });

  it('a named cache does not provide BaseCache: injecting it by type needs a default cache', async () => {
    const compiled = Test.createTestingModule({
      imports: [CacheModule.forRoot({ name: 'sessions' })],
      providers: [SessionStore],
    }).compile();
    await expect(compiled).rejects.toThrow(/BaseCache/);
  });

  it('a named cache is visible only to importing modules unless isGlobal', async () => {
    @Module({ providers: [SessionsOnly], exports: [SessionsOnly] })
    class FeatureModule {}

    const local = Test.createTestingModule({
      imports: [CacheModule.forRoot({ name: 'sessions' }), FeatureModule],
    }).compile();
    await expect(local).rejects.toThrow(/nest-cache:cache:sessions/);

    const global = await Test.createTestingModule({
      imports: [CacheModule.forRoot({ name: 'sessions', isGlobal: true }), FeatureModule],
    }).compile();
    expect(global.get(SessionsOnly).sessions.prefix).toBe('sessions');
    await global.close();
  });

  it('one registration object imported by two modules is one cache, not an error', async () => {
    const SessionsCache = CacheModule.forRoot({ name: 'sessions', ttl: 30 });
    @Module({ imports: [SessionsCache], providers: [SessionsOnly], exports: [SessionsOnly] })
    class FeatureModule {}
    @Injectable()
    class RootUser {
      constructor(@InjectCache('sessions') readonly sessions: BaseCache) {}
    }
    const { app } = await start([SessionsCache, FeatureModule], [RootUser]);
    expect(app.get(RootUser).sessions).toBe(app.get(SessionsOnly).sessions);
    await app.close();
  });

  it("two forRoot() calls with equal options are one cache under Nest's 'deep-hash' module ids", async () => {
    @Module({
      imports: [CacheModule.forRoot({ name: 'sessions', ttl: 30 })],
      providers: [SessionsOnly],
      exports: [SessionsOnly],
    })
    class FeatureModule {}
    @Injectable()
    class RootUser {
      constructor(@InjectCache('sessions') readonly sessions: BaseCache) {}
    }
    const moduleRef = await Test.createTestingModule(
      {
        imports: [CacheModule.forRoot({ name: 'sessions', ttl: 30 }), FeatureModule],
        providers: [RootUser],
      },
      { moduleIdGeneratorAlgorithm: 'deep-hash' },
    ).compile();
    expect(moduleRef.get(RootUser).sessions).toBe(moduleRef.get(SessionsOnly).sessions);
    await moduleRef.close();
  });

  it("two forRoot() calls with equal options are two registrations under Nest's default module ids: refused", async () => {
    const compiled = Test.createTestingModule({
      imports: [
        CacheModule.forRoot({ name: 'sessions', ttl: 30 }),
        CacheModule.forRoot({ name: 'sessions', ttl: 30 }),
      ],
    }).compile();
    await expect(compiled).rejects.toThrow(CacheConfigError);
  });
});

describe('named caches: forRootAsync', () => {
  it('useFactory with inject and imports', async () => {
    const { app } = await start(
      [
        CacheModule.forRootAsync({
          name: 'sessions',
          imports: [
            ConfigModule.forRoot({
              ignoreEnvFile: true,
              load: [() => ({ SESSION_TTL: 120 })],
            }),
          ],
          inject: [ConfigService],
          useFactory: (config: ConfigService) => ({
            backend: 'memory',
            ttl: config.get<number>('SESSION_TTL'),
          }),
        }),
      ],
      [SessionsOnly],
    );
    const { sessions } = app.get(SessionsOnly);
    expect(sessions).toBeInstanceOf(MemoryCache);
    expect(sessions.prefix).toBe('sessions');
    await sessions.set('k', 1);
    const ttl = await sessions.ttl('k');
    expect(ttl).toBeGreaterThan(110);
    expect(ttl).toBeLessThanOrEqual(120);
    await app.close();
  });

  it('useClass', async () => {
    @Injectable()
    class SessionCacheConfig implements CacheOptionsFactory {
      createCacheOptions(): CacheModuleOptions {
        return { prefix: 'sessions-from-class' };
      }
    }
    const { app } = await start(
      [CacheModule.forRootAsync({ name: 'sessions', useClass: SessionCacheConfig })],
      [SessionsOnly],
    );
    expect(app.get(SessionsOnly).sessions.prefix).toBe('sessions-from-class');
    await app.close();
  });

  it('useClass whose options leave the prefix out gets the name as prefix', async () => {
    @Injectable()
    class SessionCacheConfig implements CacheOptionsFactory {
      async createCacheOptions(): Promise<CacheModuleOptions> {
        return { ttl: 10 };
      }
    }
    const { app } = await start(
      [CacheModule.forRootAsync({ name: 'sessions', useClass: SessionCacheConfig })],
      [SessionsOnly],
    );
    expect(app.get(SessionsOnly).sessions.prefix).toBe('sessions');
    await app.close();
  });

  it('useExisting', async () => {
    @Injectable()
    class SessionCacheConfig implements CacheOptionsFactory {
      createCacheOptions(): CacheModuleOptions {
        return { prefix: 'sessions-from-existing' };
      }
    }
    @Module({ providers: [SessionCacheConfig], exports: [SessionCacheConfig] })
    class ConfigHolder {}
    const { app } = await start(
      [
        CacheModule.forRootAsync({
          name: 'sessions',
          imports: [ConfigHolder],
          useExisting: SessionCacheConfig,
        }),
      ],
      [SessionsOnly],
    );
    expect(app.get(SessionsOnly).sessions.prefix).toBe('sessions-from-existing');
    await app.close();
  });
});

describe('named caches: bad registrations', () => {
  it('two registrations of one name with different options fail with CacheConfigError naming it', async () => {
    const compiled = Test.createTestingModule({
      imports: [
        CacheModule.forRoot({ name: 'sessions', ttl: 30 }),
        CacheModule.forRoot({ name: 'sessions', ttl: 60 }),
      ],
    }).compile();
    await expect(compiled).rejects.toThrow(CacheConfigError);
    await expect(
      Test.createTestingModule({
        imports: [
          CacheModule.forRoot({ name: 'sessions', ttl: 30 }),
          CacheModule.forRoot({ name: 'sessions', ttl: 60 }),
        ],
      }).compile(),
    ).rejects.toThrow(/"sessions" twice/);
  });

  it('two registrations of one name, one of them async, fail with CacheConfigError naming it', async () => {
    @Module({ imports: [CacheModule.forRoot({ name: 'sessions' })] })
    class FeatureModule {}
    const compiled = Test.createTestingModule({
      imports: [
        CacheModule.forRootAsync({ name: 'sessions', useFactory: () => ({ ttl: 5 }) }),
        FeatureModule,
      ],
    }).compile();
    await expect(compiled).rejects.toThrow(CacheConfigError);
    await expect(
      Test.createTestingModule({
        imports: [
          CacheModule.forRootAsync({ name: 'sessions', useFactory: () => ({ ttl: 5 }) }),
          FeatureModule,
        ],
      }).compile(),
    ).rejects.toThrow(/"sessions" twice/);
  });

  it('two registrations of the default cache with different options fail with CacheConfigError', async () => {
    const boot = () =>
      Test.createTestingModule({
        imports: [CacheModule.forRoot({ ttl: 30 }), CacheModule.forRoot({ ttl: 60 })],
      }).compile();
    await expect(boot()).rejects.toThrow(CacheConfigError);
    await expect(boot()).rejects.toThrow(/registers the default cache twice/);
  });

  it('a second name beside the first is not a duplicate', async () => {
    @Injectable()
    class TwoNamed {
      constructor(
        @InjectCache('sessions') readonly sessions: BaseCache,
        @InjectCache('reports') readonly reports: BaseCache,
      ) {}
    }
    const { app } = await start(
      [CacheModule.forRoot({ name: 'sessions' }), CacheModule.forRoot({ name: 'reports' })],
      [TwoNamed],
    );
    const { sessions, reports } = app.get(TwoNamed);
    expect([sessions.prefix, reports.prefix]).toEqual(['sessions', 'reports']);
    await app.close();
  });

  it('an empty name fails with CacheConfigError (forRoot, forRootAsync, getCacheToken, InjectCache)', () => {
    expect(() => CacheModule.forRoot({ name: '' })).toThrow(CacheConfigError);
    expect(() => CacheModule.forRootAsync({ name: '', useFactory: () => ({}) })).toThrow(
      CacheConfigError,
    );
    expect(() => getCacheToken('')).toThrow(CacheConfigError);
    expect(() => InjectCache('')).toThrow(CacheConfigError);
  });

  it('a name that is not a string fails with CacheConfigError naming the option', () => {
    expect(() => CacheModule.forRoot({ name: 42 as never })).toThrow(CacheConfigError);
    expect(() => CacheModule.forRoot({ name: 42 as never })).toThrow(/"name"/);
    expect(() => CacheModule.forRootAsync({ name: 42 as never, useFactory: () => ({}) })).toThrow(
      CacheConfigError,
    );
    expect(() => getCacheToken(42 as never)).toThrow(CacheConfigError);
  });
});

describe('named caches: shutdown', () => {
  it('each named cache is closed at application shutdown', async () => {
    @Injectable()
    class AllCaches {
      constructor(
        readonly cache: BaseCache,
        @InjectCache('sessions') readonly sessions: BaseCache,
        @InjectCache('reports') readonly reports: BaseCache,
      ) {}
    }
    const { app } = await start(
      [
        CacheModule.forRoot({}),
        CacheModule.forRoot({ name: 'sessions' }),
        CacheModule.forRootAsync({ name: 'reports', useFactory: () => ({}) }),
      ],
      [AllCaches],
    );
    const { cache, sessions, reports } = app.get(AllCaches);
    expect([cache.isClosed, sessions.isClosed, reports.isClosed]).toEqual([false, false, false]);
    await app.close();
    expect([cache.isClosed, sessions.isClosed, reports.isClosed]).toEqual([true, true, true]);
  });
});

describe('named caches beside a default Redis cache', () => {
  const redis = usePrivateRedis();

  it('a named memory cache and the default Redis cache each use their own backend', async () => {
    const { app } = await start([
      CacheModule.forRoot({ backend: 'redis', redis: { url: redis.server.url }, prefix: 'main' }),
      CacheModule.forRoot({ name: 'sessions', backend: 'memory' }),
    ]);
    const { cache, sessions } = app.get(SessionStore);
    expect(cache).toBeInstanceOf(RedisCache);
    expect(sessions).toBeInstanceOf(MemoryCache);

    const admin = new Redis(redis.server.url);
    try {
      await cache.set('k', 'in redis');
      await sessions.set('k', 'in memory');
      expect(await admin.exists('main:k')).toBe(1);
      expect(await admin.keys('sessions*')).toEqual([]);
      expect(await cache.get('k')).toBe('in redis');
      expect(await sessions.get('k')).toBe('in memory');
    } finally {
      await admin.quit();
    }
    await app.close();
    expect(cache.isClosed).toBe(true);
    expect(sessions.isClosed).toBe(true);
  });

  it('a named Redis cache without a prefix stores its keys under its name', async () => {
    const { app } = await start(
      [
        CacheModule.forRoot({
          name: 'sessions',
          backend: 'redis',
          redis: { url: redis.server.url },
        }),
      ],
      [SessionsOnly],
    );
    const { sessions } = app.get(SessionsOnly);
    const admin = new Redis(redis.server.url);
    try {
      await sessions.set('abc', 1);
      expect(await admin.exists('sessions:abc')).toBe(1);
    } finally {
      await admin.quit();
    }
    await app.close();
  });
});

describe('InjectCache(name)', () => {
  it('is the same as @Inject(getCacheToken(name))', async () => {
    @Injectable()
    class Both {
      constructor(
        @InjectCache('sessions') readonly a: BaseCache,
        @Inject(getCacheToken('sessions')) readonly b: BaseCache,
      ) {}
    }
    const { app } = await start([CacheModule.forRoot({ name: 'sessions' })], [Both]);
    expect(app.get(Both).a).toBe(app.get(Both).b);
    await app.close();
  });
});
