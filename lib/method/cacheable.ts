import type { GetOrSetOptions } from '../base-cache.js';
import { CACHEABLE_METADATA, CACHE_EVICT_METADATA } from '../cache.constants.js';
import { CacheConfigError, InvalidKeyError } from '../errors.js';
import { messages } from '../messages.js';
import type { Ttl } from '../ttl.js';
import { argumentsKey } from './argument-key.js';

/** What @Cacheable() takes. */
export interface CacheableOptions {
  /** Seconds when a number; the cache default when left out. */
  ttl?: Ttl;
  /**
   * The key: a string (for a method whose result does not depend on its arguments), or a function
   * of the arguments. @default `${Class}.${method}(${the arguments, keyed stably})`, where Class is
   * the provider's token when it is not the class itself (a string, a symbol's description: one
   * `{ provide: 'GITHUB', useFactory: () => new ApiClient(url) }` keys `GITHUB.get(...)`). Two
   * providers that would share a default key are a CacheConfigError at startup.
   */
  key?: string | ((...args: any[]) => string);
  /** Tags of the entry: static, or a function of the arguments. */
  tags?: string[] | ((...args: any[]) => string[]);
  /** The named cache to use (CacheModule.forRoot({ name })). @default the default cache */
  cache?: string;
  staleWhileRevalidate?: GetOrSetOptions['staleWhileRevalidate'];
  staleIfError?: GetOrSetOptions['staleIfError'];
  softTimeout?: GetOrSetOptions['softTimeout'];
}

/** What @CacheEvict() takes; at least one of keys, tags and all. */
export interface CacheEvictOptions {
  /**
   * Keys to delete. On a provider method, strings or a function of its arguments; on a route, a
   * function of the request (its params, query, body). Route entries are easier to reach by tag.
   */
  keys?: string[] | ((...args: any[]) => string[]);
  /** Tags to invalidate: static, or a function (of the method's arguments; of the request on a route). */
  tags?: string[] | ((...args: any[]) => string[]);
  /** Clears the whole cache (its namespace). */
  all?: boolean;
  /**
   * The named cache to evict from. @default on a provider method, the default cache; on a route,
   * the cache of the CacheInterceptor it runs under
   */
  cache?: string;
}

/**
 * Caches what a provider method returns, keyed by its class, name and arguments (see
 * CacheableOptions.key): concurrent calls with the same arguments run it once (single-flight), and
 * a cache problem never fails the call (it runs the method). The method then returns a Promise,
 * even when it was synchronous. Works on singleton providers (Nest's default scope) once the
 * module is initialized; invalidate one entry with invalidateCacheable().
 */
export function Cacheable(options: CacheableOptions = {}): MethodDecorator {
  checkOptions(options, '@Cacheable');
  return (target, property, descriptor) => {
    if (typeof descriptor.value !== 'function') {
      throw new CacheConfigError(messages.decoratorOnNonMethod('@Cacheable', String(property)));
    }
    Reflect.defineMetadata(CACHEABLE_METADATA, options, target, property);
  };
}

/**
 * Evicts entries after the method (or, on a route under CacheInterceptor, the request) succeeds;
 * never after a failure. The method then returns a Promise, settled once the eviction is done.
 */
export function CacheEvict(options: CacheEvictOptions): MethodDecorator {
  checkOptions(options, '@CacheEvict');
  if (options.keys === undefined && options.tags === undefined && options.all !== true) {
    throw new CacheConfigError(messages.evictsNothing());
  }
  return (target, property, descriptor) => {
    if (typeof descriptor.value !== 'function') {
      throw new CacheConfigError(messages.decoratorOnNonMethod('@CacheEvict', String(property)));
    }
    Reflect.defineMetadata(CACHE_EVICT_METADATA, options, target, property);
    // On a route, CacheInterceptor finds it on the handler itself.
    Reflect.defineMetadata(CACHE_EVICT_METADATA, options, descriptor.value);
  };
}

/**
 * The key of one call of a @Cacheable method. `prefix` starts the default key (the provider's
 * token, or its class); `where` names the method in error messages.
 */
export function cacheableKey(
  options: CacheableOptions,
  prefix: string,
  method: string,
  args: readonly unknown[],
  where = `${prefix}.${method}`,
): string {
  if (typeof options.key === 'string') return options.key;
  if (typeof options.key === 'function') {
    const key = options.key(...args);
    if (typeof key !== 'string' || key.length === 0) {
      throw new InvalidKeyError(messages.cacheableKeyInvalid(where, key));
    }
    return key;
  }
  return `${prefix}.${method}(${argumentsKey(args, where)})`;
}

/** Tags given statically, or built from the arguments. */
export function tagsFrom(
  tags: string[] | ((...args: any[]) => string[]) | undefined,
  args: readonly unknown[],
): string[] | undefined {
  return typeof tags === 'function' ? tags(...args) : tags;
}

function checkOptions(options: object, decorator: string): void {
  if (options === null || typeof options !== 'object') {
    throw new CacheConfigError(
      messages.invalidOption(decorator, options, 'Pass an options object, e.g. { ttl: 60 }.'),
    );
  }
}
