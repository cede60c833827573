import { Logger } from '@nestjs/common';
import type { ModulesContainer } from '@nestjs/core';
import type { DiscoveryService } from '@nestjs/core';
import type { BaseCache } from '../base-cache.js';
import { CACHEABLE_METADATA, CACHE_EVICT_METADATA } from '../cache.constants.js';
import { getCacheToken } from '../cache.tokens.js';
import { CacheClosedError, CacheConfigError, FactoryTimeoutError } from '../errors.js';
import { messages, reasonOf } from '../messages.js';
import {
  cacheableKey,
  type CacheableOptions,
  type CacheEvictOptions,
  tagsFrom,
} from './cacheable.js';

/** What invalidateCacheable() finds on a wrapped @Cacheable method. */
const HANDLE = Symbol('nest-cache:cacheable-handle');
/** What a @Cacheable explorer finds on a @CacheEvict wrapper made by another (see onModuleInit). */
const EVICTING = Symbol('nest-cache:evicting');

interface Handle {
  cache: BaseCache;
  keyOf(args: readonly unknown[]): string;
}

interface Evicting {
  /** The method the eviction wraps. */
  inner: AnyMethod;
  /** The same eviction, around another method. */
  around(inner: AnyMethod): AnyMethod;
}

type InstanceWrapper = ReturnType<DiscoveryService['getProviders']>[number];

type AnyMethod = ((...args: unknown[]) => unknown) & { [HANDLE]?: Handle; [EVICTING]?: Evicting };

/** The provider an instance is reached through, as its @Cacheable default keys and messages name it. */
interface ProviderName {
  /** The default key's prefix: the token's name when the token is not the class, else the class name. */
  prefix: string;
  className: string;
  /** The provider, for messages: its token and its module. */
  described: string;
}

/** One decorated method of one instance. */
interface Site {
  instance: Record<string, AnyMethod>;
  method: string;
  provider: ProviderName;
  /** The method, for messages: `Class.method`, with the provider when its token is not the class. */
  where: string;
  cacheable: CacheableOptions | undefined;
  evict: CacheEvictOptions | undefined;
}

/**
 * Wraps the @Cacheable and @CacheEvict methods of every singleton provider that name this
 * explorer's cache, once the application's modules are initialized. One explorer per registered
 * cache: each wraps only the methods that use it, so nothing is wrapped twice.
 */
export class CacheableExplorer {
  constructor(
    private readonly name: string | undefined,
    private readonly cache: BaseCache,
    private readonly discovery: DiscoveryService,
    private readonly modules: ModulesContainer,
  ) {}

  onModuleInit(): void {
    const sites = this.sites();
    this.assertDistinctDefaultKeys(sites);
    for (const { instance, method, provider, where, cacheable, evict } of sites) {
      let wrapped = instance[method]!;
      if (cacheable && cacheable.cache === this.name) {
        // @Cacheable and @CacheEvict on one method, naming different caches, are wrapped by two
        // explorers in either order: the eviction always ends up outside (it runs after every
        // successful call, a hit too), as when both name one cache.
        const outer = wrapped[EVICTING];
        const cached = this.cached(
          outer ? outer.inner : wrapped,
          cacheable,
          provider,
          method,
          where,
        );
        wrapped = outer ? outer.around(cached) : cached;
      }
      if (evict && evict.cache === this.name) wrapped = this.evicting(wrapped, evict, where);
      instance[method] = wrapped;
    }
  }

  /** The decorated methods of the singleton providers, each instance once. */
  private sites(): Site[] {
    // One instance can sit behind several providers (a useExisting alias, a factory returning it):
    // wrapped twice, a @Cacheable call would wait on its own single-flight until getOrSetTimeout.
    const providers = new Map<object, InstanceWrapper[]>();
    for (const wrapper of this.discovery.getProviders()) {
      if (!wrapper.isDependencyTreeStatic()) {
        this.warnIfDecorated(wrapper.metatype);
        continue;
      }
      const instance: unknown = wrapper.instance;
      if (!instance || typeof instance !== 'object') continue;
      const found = providers.get(instance);
      if (found) found.push(wrapper);
      else providers.set(instance, [wrapper]);
    }
    const sites: Site[] = [];
    for (const [instance, wrappers] of providers) {
      let provider: ProviderName | undefined;
      for (const [method, proto] of methodsOf(instance)) {
        const cacheable: CacheableOptions | undefined = Reflect.getOwnMetadata(
          CACHEABLE_METADATA,
          proto,
          method,
        );
        const evict: CacheEvictOptions | undefined = Reflect.getOwnMetadata(
          CACHE_EVICT_METADATA,
          proto,
          method,
        );
        if (!cacheable && !evict) continue;
        provider ??= providerName(instance, wrappers);
        const where =
          provider.prefix === provider.className
            ? `${provider.className}.${method}`
            : `${provider.className}.${method} (provider ${provider.prefix})`;
        if (cacheable) this.assertRegistered(cacheable.cache, '@Cacheable', where);
        if (evict) this.assertRegistered(evict.cache, '@CacheEvict', where);
        sites.push({
          instance: instance as Record<string, AnyMethod>,
          method,
          provider,
          where,
          cacheable,
          evict,
        });
      }
    }
    return sites;
  }

  /**
   * Two instances whose default keys would share a prefix (two providers of one class under
   * tokens with one name, two same-named classes) would return each other's entries: refused at
   * startup. Among this explorer's methods only: the entries of another cache live apart.
   */
  private assertDistinctDefaultKeys(sites: readonly Site[]): void {
    const seen = new Map<string, Site>();
    for (const site of sites) {
      const { cacheable } = site;
      if (!cacheable || cacheable.cache !== this.name || cacheable.key !== undefined) continue;
      const key = `${site.provider.prefix}.${site.method}`;
      const first = seen.get(key);
      if (!first) {
        seen.set(key, site);
      } else if (first.instance !== site.instance) {
        throw new CacheConfigError(
          messages.cacheableKeyShared(
            key,
            first.provider.described,
            site.provider.described,
            first.instance.constructor === site.instance.constructor,
          ),
        );
      }
    }
  }

  private cached(
    original: AnyMethod,
    options: CacheableOptions,
    provider: ProviderName,
    name: string,
    where: string,
  ): AnyMethod {
    const cache = this.cache;
    const { ttl, staleWhileRevalidate, staleIfError, softTimeout } = options;
    const keyOf = (args: readonly unknown[]) =>
      cacheableKey(options, provider.prefix, name, args, where);
    const wrapped: AnyMethod = async function (this: unknown, ...args: unknown[]) {
      const key = keyOf(args);
      const tags = tagsFrom(options.tags, args);
      // This call's own run of the method, if the flight was its to lead.
      let own: Promise<unknown> | undefined;
      const factory = () => (own = Promise.resolve(original.apply(this, args)));
      try {
        return await cache.getOrSet(key, factory, {
          ttl,
          tags,
          staleWhileRevalidate,
          staleIfError,
          softTimeout,
        });
      } catch (error) {
        // The cache could not serve the call, which must not fail for it: a method slower than
        // getOrSetTimeout (the caller that runs it awaits its own run, a caller that waited on it
        // runs it itself), a closed cache (run the method). Input errors still reject.
        if (error instanceof FactoryTimeoutError || error instanceof CacheClosedError) {
          return own ?? original.apply(this, args);
        }
        throw error;
      }
    };
    wrapped[HANDLE] = { cache, keyOf };
    return wrapped;
  }

  private evicting(original: AnyMethod, options: CacheEvictOptions, where: string): AnyMethod {
    const cache = this.cache;
    const wrapped: AnyMethod = async function (this: unknown, ...args: unknown[]) {
      const result = await original.apply(this, args);
      await evict(cache, options, args, where);
      return result;
    };
    if (original[HANDLE]) wrapped[HANDLE] = original[HANDLE];
    wrapped[EVICTING] = {
      inner: original,
      around: (inner) => this.evicting(inner, options, where),
    };
    return wrapped;
  }

  /**
   * A request-scoped or transient provider is made per request: its methods are never wrapped, so
   * its decorators would do nothing. Says so once, at startup, instead of silently.
   */
  private warnIfDecorated(metatype: unknown): void {
    const proto = (metatype as { prototype?: object } | null | undefined)?.prototype;
    if (!proto) return;
    for (const [name, owner] of methodsOf(Object.create(proto) as object)) {
      for (const key of [CACHEABLE_METADATA, CACHE_EVICT_METADATA]) {
        const options: { cache?: string } | undefined = Reflect.getOwnMetadata(key, owner, name);
        if (options && options.cache === this.name) {
          const decorator = key === CACHEABLE_METADATA ? '@Cacheable' : '@CacheEvict';
          logger.warn(
            messages.decoratorNotStatic(
              decorator,
              `${(metatype as { name?: string }).name ?? 'Anonymous'}.${name}`,
            ),
          );
        }
      }
    }
  }

  private assertRegistered(cacheName: string | undefined, decorator: string, where: string): void {
    if (cacheName === this.name) return;
    const token = getCacheToken(cacheName);
    for (const module of this.modules.values()) if (module.providers.has(token)) return;
    throw new CacheConfigError(messages.cacheNotRegistered(decorator, where, cacheName));
  }
}

/**
 * Evicts what `options` says, for a call with `args`: keys, then tags, then all, each on its own
 * (a bad key does not skip the tags). A key or tag builder that throws, or a backend failure, is
 * logged and never fails the call.
 */
export async function evict(
  cache: BaseCache,
  options: CacheEvictOptions,
  args: readonly unknown[],
  where: string,
): Promise<void> {
  await evictStep(where, 'keys', async () => {
    const keys = tagsFrom(options.keys, args);
    if (keys !== undefined) await cache.deleteMany(keys);
  });
  await evictStep(where, 'tags', async () => {
    const tags = tagsFrom(options.tags, args);
    if (tags !== undefined) await cache.invalidateTags(tags);
  });
  if (options.all === true) await evictStep(where, 'all', () => cache.clear());
}

async function evictStep(
  where: string,
  step: 'keys' | 'tags' | 'all',
  run: () => Promise<unknown>,
): Promise<void> {
  try {
    await run();
  } catch (error) {
    // A bad key or tag from a builder: the call succeeded, and is not failed for it.
    logger.error(messages.evictStepFailed(where, step, reasonOf(error)));
  }
}

const logger = new Logger('Cacheable');

/**
 * Invalidates the entry of one call of a @Cacheable method (Ravyn's `invalidate(fn, *args)`):
 * `await invalidateCacheable(this.reports.find, 42)`. Pass the method as the instance holds it.
 * Resolves whether an entry existed.
 */
export async function invalidateCacheable(method: unknown, ...args: unknown[]): Promise<boolean> {
  const handle = (method as AnyMethod | undefined)?.[HANDLE];
  if (!handle) throw new TypeError(messages.notCacheable(method));
  return handle.cache.delete(handle.keyOf(args));
}

/**
 * How the default keys and messages name `instance`: after the provider whose token is its class
 * if there is one, else the first that is not an alias.
 */
function providerName(instance: object, wrappers: readonly InstanceWrapper[]): ProviderName {
  const ctor: unknown = instance.constructor;
  const className = (typeof ctor === 'function' && ctor.name) || 'Anonymous';
  const wrapper =
    wrappers.find((w) => w.token === ctor) ?? wrappers.find((w) => !w.isAlias) ?? wrappers[0]!;
  const token: unknown = wrapper.token;
  let prefix = className;
  let shown = className;
  if (token !== ctor) {
    if (typeof token === 'string') [prefix, shown] = [token, JSON.stringify(token)];
    else if (typeof token === 'symbol') [prefix, shown] = [token.description ?? '', String(token)];
    else if (typeof token === 'function') [prefix, shown] = [token.name, token.name];
    prefix ||= className;
  }
  const module = wrapper.host?.name;
  const described =
    `${shown}${token === ctor ? '' : ` (an instance of ${className})`}` +
    (module ? ` of module ${module}` : '');
  return { prefix, className, described };
}

/** The methods of `instance`, each with the prototype that defines it (the most derived one). */
function methodsOf(instance: object): [string, object][] {
  const found = new Map<string, object>();
  for (
    let proto = Object.getPrototypeOf(instance);
    proto && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name === 'constructor' || found.has(name)) continue;
      const descriptor = Object.getOwnPropertyDescriptor(proto, name);
      if (typeof descriptor?.value === 'function') found.set(name, proto);
    }
  }
  return [...found];
}
