import {
  type DynamicModule,
  type InjectionToken,
  Logger,
  Module,
  type ModuleMetadata,
  type OptionalFactoryDependency,
  type Provider,
  type Type,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, ModulesContainer } from '@nestjs/core';
import type { BaseCache } from './base-cache.js';
import type { CacheModuleOptions } from './cache-module.options.js';
import { createCache } from './cache.providers.js';
import { getCacheOptionsToken, getCacheToken, validName } from './cache.tokens.js';
import { CacheConfigError } from './errors.js';
import { CacheableExplorer } from './method/cacheable.explorer.js';
import { messages } from './messages.js';

/** What forRoot() takes beside the cache options. */
export interface CacheRegistration {
  /**
   * Registers a named cache beside the default one, injected with @InjectCache(name). Without a
   * prefix of its own, its keys live under the prefix `name`.
   */
  name?: string;
  /** Makes the cache (and its options) injectable in every module. @default false */
  isGlobal?: boolean;
}

/** What a `useClass` / `useExisting` options provider of forRootAsync implements. */
export interface CacheOptionsFactory {
  createCacheOptions(): CacheModuleOptions | Promise<CacheModuleOptions>;
}

/** forRootAsync()'s argument: where the options come from. */
export interface CacheModuleAsyncOptions
  extends CacheRegistration, Pick<ModuleMetadata, 'imports'> {
  useFactory?: (...args: any[]) => CacheModuleOptions | Promise<CacheModuleOptions>;
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useClass?: Type<CacheOptionsFactory>;
  useExisting?: Type<CacheOptionsFactory>;
  /** Providers the options factory needs, besides those of `imports`. */
  extraProviders?: Provider[];
}

/**
 * `CacheModule.forRoot({ backend, ttl, prefix, isGlobal, name, memory, redis, http })` or
 * `CacheModule.forRootAsync({ imports, inject, useFactory | useClass | useExisting, isGlobal, name })`.
 * Provides BaseCache (or, with `name`, the token of getCacheToken(name)), and closes it at
 * application shutdown (after the HTTP server stopped).
 */
@Module({})
export class CacheModule {
  static forRoot(options: CacheModuleOptions & CacheRegistration = {}): DynamicModule {
    const { name, isGlobal, ...cacheOptions } = options;
    return this.register(name, isGlobal, [
      { provide: getCacheOptionsToken(name), useValue: cacheOptions },
    ]);
  }

  static forRootAsync(options: CacheModuleAsyncOptions): DynamicModule {
    const { name, isGlobal, imports = [], extraProviders = [] } = options;
    const token = getCacheOptionsToken(name);
    let providers: Provider[];
    if (options.useFactory) {
      providers = [
        { provide: token, useFactory: options.useFactory, inject: options.inject ?? [] },
      ];
    } else if (options.useClass || options.useExisting) {
      const factoryClass = (options.useClass ?? options.useExisting)!;
      providers = [
        {
          provide: token,
          useFactory: (f: CacheOptionsFactory) => f.createCacheOptions(),
          inject: [factoryClass],
        },
        ...(options.useClass ? [options.useClass] : []),
      ];
    } else {
      throw new CacheConfigError(
        messages.invalidOption(
          'forRootAsync',
          options,
          'Give useFactory (with inject), useClass or useExisting.',
        ),
      );
    }
    const module = this.register(name, isGlobal, [...providers, ...extraProviders]);
    return { ...module, imports: [...(module.imports ?? []), ...imports] };
  }

  private static register(
    name: string | undefined,
    isGlobal: boolean | undefined,
    optionProviders: Provider[],
  ): DynamicModule {
    if (name !== undefined) validName(name);
    const cacheToken = getCacheToken(name);
    const optionsToken = getCacheOptionsToken(name);
    const cacheProvider: Provider = {
      provide: cacheToken,
      useFactory: async (options: CacheModuleOptions, modules: ModulesContainer) => {
        assertRegisteredOnce(modules, cacheToken, name);
        // A named cache is called by its name in its metrics, and without a prefix of its own,
        // its keys live under its name too.
        const cache = await createCache(
          name !== undefined && isOptions(options)
            ? { ...options, name, prefix: options.prefix === undefined ? name : options.prefix }
            : options,
        );
        // One line per cache at startup: which backend it really uses (never credentials).
        new Logger('CacheModule').log(messages.cacheReady(name, cache.describe()));
        return cache;
      },
      inject: [optionsToken, ModulesContainer],
    };
    const closer: Provider = {
      provide: `nest-cache:closer:${name ?? ''}`,
      useFactory: (cache: BaseCache) => ({
        onApplicationShutdown: () => cache.close(),
      }),
      inject: [cacheToken],
    };
    const explorer: Provider = {
      provide: `nest-cache:explorer:${name ?? ''}`,
      useFactory: (cache: BaseCache, discovery: DiscoveryService, modules: ModulesContainer) =>
        new CacheableExplorer(name, cache, discovery, modules),
      inject: [cacheToken, DiscoveryService, ModulesContainer],
    };
    // Not exported: registeredCacheNames() finds it in each CacheModule of the application.
    const registration: Provider = { provide: REGISTRATION, useValue: { name } };
    return {
      module: CacheModule,
      global: isGlobal === true,
      imports: [DiscoveryModule],
      providers: [...optionProviders, cacheProvider, closer, explorer, registration],
      exports: [cacheToken, optionsToken],
    };
  }
}

/** The token of each registration's record of its cache's name; see registeredCacheNames(). */
const REGISTRATION = 'nest-cache:registration';

/**
 * The names of the caches registered in this application (undefined: the default cache), in the
 * order Nest scanned their modules. For CacheHealthIndicator; not exported from the package.
 */
export function registeredCacheNames(modules: ModulesContainer): (string | undefined)[] {
  const names: (string | undefined)[] = [];
  for (const module of modules.values()) {
    if (module.metatype !== CacheModule) continue;
    const record = module.providers.get(REGISTRATION)?.instance as { name?: string } | undefined;
    if (record) names.push(record.name);
  }
  return names;
}

function isOptions(options: unknown): options is CacheModuleOptions {
  return options !== null && typeof options === 'object';
}

/** Two registrations of one cache name in one application: refused, naming it. */
function assertRegisteredOnce(
  modules: ModulesContainer,
  token: string | typeof BaseCache,
  name: string | undefined,
): void {
  let registrations = 0;
  for (const module of modules.values()) {
    if (module.metatype === CacheModule && module.providers.has(token)) registrations += 1;
  }
  if (registrations > 1) throw new CacheConfigError(messages.cacheRegisteredTwice(name));
}
