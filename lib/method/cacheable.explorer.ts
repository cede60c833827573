import { Logger } from '@nestjs/common';
import type { ModulesContainer } from '@nestjs/core';
import type { DiscoveryService } from '@nestjs/core';
import type { BaseCache } from '../base-cache.js';
import { CACHEABLE_METADATA, CACHE_EVICT_METADATA } from '../cache.constants.js';
import { getCacheToken } from '../cache.tokens.js';
import { CacheConfigError } from '../errors.js';
import { messages, reasonOf } from '../messages.js';
import {
  cacheableKey,
  type CacheableOptions,
  type CacheEvictOptions,
  tagsFrom,
} from './cacheable.js';

/** What invalidateCacheable() finds on a wrapped @Cacheable method. */
const HANDLE = Symbol('nest-cache:cacheable-handle');

interface Handle {
  cache: BaseCache;
  keyOf(args: readonly unknown[]): string;
}

type AnyMethod = ((...args: unknown[]) => unknown) & { [HANDLE]?: Handle };

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
    // One instance can sit behind several providers (a useExisting alias, a factory returning it):
    // wrapped twice, a @Cacheable call would wait on its own single-flight until getOrSetTimeout.
    const visited = new WeakSet<object>();
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!wrapper.isDependencyTreeStatic()) {
        this.warnIfDecorated(wrapper.metatype);
        continue;
      }
      if (!instance || typeof instance !== 'object') continue;
      if (visited.has(instance)) continue;
      visited.add(instance);
      for (const [name, proto] of methodsOf(instance)) {
        const cacheable: CacheableOptions | undefined = Reflect.getOwnMetadata(
          CACHEABLE_METADATA,
          proto,
          name,
        );
        const evict: CacheEvictOptions | undefined = Reflect.getOwnMetadata(
          CACHE_EVICT_METADATA,
          proto,
          name,
        );
        if (!cacheable && !evict) continue;
        const className = instance.constructor?.name ?? 'Anonymous';
        let method = (instance as Record<string, AnyMethod>)[name]!;
        if (cacheable) this.assertRegistered(cacheable.cache, '@Cacheable', className, name);
        if (evict) this.assertRegistered(evict.cache, '@CacheEvict', className, name);
        if (cacheable && cacheable.cache === this.name)
          method = this.cached(method, cacheable, className, name);
        if (evict && evict.cache === this.name)
          method = this.evicting(method, evict, className, name);
        (instance as Record<string, AnyMethod>)[name] = method;
      }
    }
  }

  private cached(
    original: AnyMethod,
    options: CacheableOptions,
    className: string,
    name: string,
  ): AnyMethod {
    const cache = this.cache;
    const { ttl, staleWhileRevalidate, staleIfError, softTimeout } = options;
    const keyOf = (args: readonly unknown[]) => cacheableKey(options, className, name, args);
    const wrapped: AnyMethod = async function (this: unknown, ...args: unknown[]) {
      const key = keyOf(args);
      const tags = tagsFrom(options.tags, args);
      return cache.getOrSet(key, () => original.apply(this, args), {
        ttl,
        tags,
        staleWhileRevalidate,
        staleIfError,
        softTimeout,
      });
    };
    wrapped[HANDLE] = { cache, keyOf };
    return wrapped;
  }

  private evicting(
    original: AnyMethod,
    options: CacheEvictOptions,
    className: string,
    name: string,
  ): AnyMethod {
    const cache = this.cache;
    const where = `${className}.${name}`;
    const wrapped: AnyMethod = async function (this: unknown, ...args: unknown[]) {
      const result = await original.apply(this, args);
      await evict(cache, options, args, where);
      return result;
    };
    if (original[HANDLE]) wrapped[HANDLE] = original[HANDLE];
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

  private assertRegistered(
    cacheName: string | undefined,
    decorator: string,
    className: string,
    method: string,
  ): void {
    if (cacheName === this.name) return;
    const token = getCacheToken(cacheName);
    for (const module of this.modules.values()) if (module.providers.has(token)) return;
    throw new CacheConfigError(
      messages.cacheNotRegistered(decorator, `${className}.${method}`, cacheName),
    );
  }
}

/**
 * Evicts what `options` says, for a call with `args`: keys, then tags, then all. A key or tag
 * builder that throws, or a backend failure, is logged and never fails the call.
 */
export async function evict(
  cache: BaseCache,
  options: CacheEvictOptions,
  args: readonly unknown[],
  where: string,
): Promise<void> {
  try {
    const keys = tagsFrom(options.keys, args);
    const tags = tagsFrom(options.tags, args);
    if (keys !== undefined) await cache.deleteMany(keys);
    if (tags !== undefined) await cache.invalidateTags(tags);
    if (options.all === true) await cache.clear();
  } catch (error) {
    // A bad key or tag from a builder: the call succeeded, and is not failed for it.
    logger.error(messages.evictFailed(where, reasonOf(error)));
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
