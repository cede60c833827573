import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { describe, expect, it } from 'vitest';
import {
  BaseCache,
  CacheConfigError,
  CacheModule,
  type CacheModuleOptions,
  type CacheOptionsFactory,
  DriverCache,
  InvalidTtlError,
  MemoryCache,
} from '../lib/index.js';
import { MapDriver } from './support/map-driver.js';

@Injectable()
class ReportService {
  constructor(readonly cache: BaseCache) {} // injected by type, no @Inject
}

async function start(imports: unknown[], providers: unknown[] = [ReportService]) {
  const moduleRef = await Test.createTestingModule({ imports, providers } as never).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return { app, cache: app.get(ReportService).cache };
}

describe('CacheModule.forRoot', () => {
  it('injects BaseCache by type, backed by memory by default', async () => {
    const { app, cache } = await start([CacheModule.forRoot({})]);
    expect(cache).toBeInstanceOf(MemoryCache);
    await cache.set('k', 1);
    expect(await cache.get('k')).toBe(1);
    await app.close();
  });

  it('passes ttl and prefix to the cache', async () => {
    const { app, cache } = await start([CacheModule.forRoot({ ttl: '5m', prefix: 'reports' })]);
    expect(cache.prefix).toBe('reports');
    await cache.set('k', 1);
    expect(await cache.ttl('k')).toBeGreaterThan(299);
    await app.close();
  });

  it('constructs a custom backend class with the module options', async () => {
    const { app, cache } = await start([
      CacheModule.forRoot({ backend: ({ clock }) => new MapDriver(clock), prefix: 'custom' }),
    ]);
    expect(cache).toBeInstanceOf(DriverCache);
    expect(cache.prefix).toBe('custom');
    await app.close();
  });

  it('closes the cache at application shutdown', async () => {
    const { app, cache } = await start([CacheModule.forRoot({})]);
    expect(cache.isClosed).toBe(false);
    await app.close();
    expect(cache.isClosed).toBe(true);
  });

  it('is visible only to importing modules unless isGlobal', async () => {
    @Module({ providers: [ReportService], exports: [ReportService] })
    class FeatureModule {}

    const local = Test.createTestingModule({
      imports: [CacheModule.forRoot({}), FeatureModule],
    }).compile();
    await expect(local).rejects.toThrow(/BaseCache/);

    const global = await Test.createTestingModule({
      imports: [CacheModule.forRoot({ isGlobal: true }), FeatureModule],
    }).compile();
    expect(global.get(ReportService).cache).toBeInstanceOf(MemoryCache);
    await global.close();
  });
});

describe('CacheModule.forRootAsync', () => {
  it('useFactory with ConfigService', async () => {
    const { app, cache } = await start([
      CacheModule.forRootAsync({
        imports: [
          ConfigModule.forRoot({
            ignoreEnvFile: true,
            load: [() => ({ CACHE_BACKEND: 'memory', CACHE_PREFIX: 'cfg' })],
          }),
        ],
        inject: [ConfigService],
        useFactory: (config: ConfigService) => ({
          backend: config.get('CACHE_BACKEND'),
          prefix: config.get('CACHE_PREFIX'),
        }),
      }),
    ]);
    expect(cache).toBeInstanceOf(MemoryCache);
    expect(cache.prefix).toBe('cfg');
    await app.close();
  });

  it('useClass', async () => {
    @Injectable()
    class CacheConfig implements CacheOptionsFactory {
      createCacheOptions(): CacheModuleOptions {
        return { prefix: 'from-class' };
      }
    }
    const { app, cache } = await start([CacheModule.forRootAsync({ useClass: CacheConfig })]);
    expect(cache.prefix).toBe('from-class');
    await app.close();
  });

  it('useExisting', async () => {
    @Injectable()
    class CacheConfig implements CacheOptionsFactory {
      async createCacheOptions(): Promise<CacheModuleOptions> {
        return { prefix: 'from-existing' };
      }
    }
    @Module({ providers: [CacheConfig], exports: [CacheConfig] })
    class ConfigHolder {}

    const { app, cache } = await start([
      CacheModule.forRootAsync({ imports: [ConfigHolder], useExisting: CacheConfig }),
    ]);
    expect(cache.prefix).toBe('from-existing');
    await app.close();
  });

  it('isGlobal', async () => {
    @Module({ providers: [ReportService], exports: [ReportService] })
    class FeatureModule {}
    const moduleRef = await Test.createTestingModule({
      imports: [
        CacheModule.forRootAsync({ isGlobal: true, useFactory: () => ({ prefix: 'g' }) }),
        FeatureModule,
      ],
    }).compile();
    expect(moduleRef.get(ReportService).cache.prefix).toBe('g');
    await moduleRef.close();
  });
});

describe('bad configuration fails at bootstrap with the option and the fix', () => {
  const boot = (options: CacheModuleOptions) =>
    Test.createTestingModule({ imports: [CacheModule.forRoot(options)] }).compile();

  it('an unknown backend', async () => {
    await expect(boot({ backend: 'couchbase' as never })).rejects.toThrow(CacheConfigError);
    await expect(boot({ backend: 'couchbase' as never })).rejects.toThrow(
      /"backend".*'memory'.*'redis'.*extends BaseCache/,
    );
  });

  it('a class that does not extend BaseCache', async () => {
    class NotACache {}
    await expect(boot({ backend: NotACache as never })).rejects.toThrow(/extends BaseCache/);
  });

  it('an invalid ttl', async () => {
    await expect(boot({ ttl: -1 })).rejects.toThrow(InvalidTtlError);
    await expect(boot({ ttl: '5 minutes' as never })).rejects.toThrow(/CacheModule option "ttl"/);
  });

  it('an empty prefix', async () => {
    await expect(boot({ prefix: '' })).rejects.toThrow(/"prefix"/);
  });

  it('an unbounded memory backend', async () => {
    await expect(boot({ memory: { max: Infinity } })).rejects.toThrow(/memory\.max/);
  });

  it('a malformed Redis URL', async () => {
    await expect(boot({ backend: 'redis', redis: { url: 'http://nope' } })).rejects.toThrow(
      /redis\.url/,
    );
  });
});
