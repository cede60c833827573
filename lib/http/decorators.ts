import { type ExecutionContext, SetMetadata } from '@nestjs/common';
import {
  CACHE_KEY_METADATA,
  CACHE_PER_USER_METADATA,
  CACHE_PUBLIC_METADATA,
  CACHE_STALE_METADATA,
  CACHE_TAGS_METADATA,
  CACHE_TTL_METADATA,
  CACHE_VARY_METADATA,
  NO_CACHE_METADATA,
} from '../cache.constants.js';
import { ttlToMs, type Ttl } from '../ttl.js';

/** Names the entry of a route instead of its path; path parameters and query still key it. */
export type CacheKeyName = string | ((context: ExecutionContext) => string);

/**
 * Tells who is asking, for routes whose response depends on the user: a non-empty string or a
 * finite number (7 and '7' are the same user). Anything else (undefined, '', null, NaN, an object)
 * means nobody known: the request bypasses the cache.
 */
export type IdentifyUser = (context: ExecutionContext) => string | number | null | undefined;

/**
 * How long the route's responses are cached: SECONDS when a number, or with a unit
 * ('30s', '5m', '1h'); null never expires. Checked when the class is defined.
 */
export const CacheTTL = (ttl: Ttl) => {
  ttlToMs(ttl, '@CacheTTL() ttl');
  return SetMetadata(CACHE_TTL_METADATA, ttl);
};

/**
 * Names the cache entry of a route (e.g. for invalidation), replacing its method and path in the
 * key. Path parameters, the query and varied headers stay in the key, so a name never makes
 * /users/1 and /users/2 share an entry.
 */
export const CacheKey = (name: CacheKeyName) => {
  if (typeof name !== 'function' && (typeof name !== 'string' || name.length === 0)) {
    throw new TypeError(
      '@CacheKey() takes a non-empty string or a function of the ExecutionContext.',
    );
  }
  return SetMetadata(CACHE_KEY_METADATA, name);
};

/** Never caches this route (or every route of this controller); responses say X-Cache: BYPASS. */
export const NoCache = () => SetMetadata(NO_CACHE_METADATA, true);

/**
 * Request headers this route's response depends on (e.g. 'accept-language'): each value gets its
 * own entry. Varying on 'authorization' or 'cookie' keys the route per user, so requests that
 * carry them are cached too, each user apart.
 */
export const CacheVary = (...headers: string[]) => {
  for (const header of headers) {
    if (typeof header !== 'string' || header.length === 0) {
      throw new TypeError(
        '@CacheVary() takes request header names, e.g. @CacheVary("accept-language").',
      );
    }
  }
  return SetMetadata(
    CACHE_VARY_METADATA,
    headers.map((header) => header.toLowerCase()),
  );
};

/**
 * Caches the route per user: `identify` returns who is asking (e.g. `(ctx) => ctx.switchToHttp().getRequest().user?.id`),
 * and the identity joins the key (hashed). A request whose user is not identified (see
 * IdentifyUser), or whose `identify` throws, bypasses the cache.
 */
export const CachePerUser = (identify: IdentifyUser) => {
  if (typeof identify !== 'function') {
    throw new TypeError('@CachePerUser() takes a function (context) => user id | undefined.');
  }
  return SetMetadata(CACHE_PER_USER_METADATA, identify);
};

/**
 * Declares the route's response the same for every user, so requests that carry Authorization
 * or Cookie are cached (and served) too. Use only where that is true, e.g. a public catalogue.
 */
export const CachePublic = () => SetMetadata(CACHE_PUBLIC_METADATA, true);

/** Tags of a route's entries: static strings, or built from the request. */
export type CacheTagsSpec = readonly string[] | ((request: any) => string[]);

/**
 * Tags the route's cached responses, so that invalidateTags() (or @CacheEvict({ tags }) on a
 * mutation) ends them: `@CacheTags('products')`, or built from the request:
 * `@CacheTags((req) => [`product:${req.params.id}`])`. A builder that throws, or returns anything
 * but an array of non-empty strings, bypasses the cache for that request (logged once per route).
 */
export const CacheTags = (...tags: [(request: any) => string[]] | string[]) => {
  const spec = typeof tags[0] === 'function' ? tags[0] : tags;
  if (typeof spec !== 'function') {
    for (const tag of spec as unknown[]) {
      if (typeof tag !== 'string' || tag.length === 0) {
        throw new TypeError(
          "@CacheTags() takes non-empty strings, e.g. @CacheTags('products'), or one function of the request returning them.",
        );
      }
    }
  }
  return SetMetadata(CACHE_TAGS_METADATA, spec);
};

/** The stale windows of a route: see CacheStale. They replace the module's (http.staleWhileRevalidate, http.staleIfError) as a whole. */
export interface CacheStaleOptions {
  /** How long past its ttl a response is served at once (X-Cache: STALE) while one refresh runs. */
  staleWhileRevalidate?: Exclude<Ttl, null>;
  /**
   * How long past its ttl a response is served (X-Cache: STALE) when the handler fails with a
   * server error (a 5xx, or any error that is not an HttpException); a 4xx goes through.
   */
  staleIfError?: Exclude<Ttl, null>;
  /**
   * With staleIfError: a request inside that window waits at most this long for the handler; then
   * it is answered from the stale entry (X-Cache: STALE) while the handler finishes in the
   * background, and what it returns is stored.
   */
  softTimeout?: Exclude<Ttl, null>;
}

/**
 * Serves the route's responses stale past their ttl: `@CacheStale({ staleWhileRevalidate: '1m' })`
 * answers at once from the stale entry while one background run of the handler refreshes it;
 * `staleIfError` answers from it when the handler throws. Checked when the class is defined.
 */
export const CacheStale = (options: CacheStaleOptions) => {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(
      "@CacheStale() takes { staleWhileRevalidate?, staleIfError? }, e.g. { staleWhileRevalidate: '1m' }.",
    );
  }
  for (const option of ['staleWhileRevalidate', 'staleIfError', 'softTimeout'] as const) {
    const value = options[option];
    if (value !== undefined && ttlToMs(value, `@CacheStale() ${option}`) === null) {
      throw new TypeError(`@CacheStale() ${option} is a duration, not null.`);
    }
  }
  if (options.softTimeout !== undefined && options.staleIfError === undefined) {
    throw new TypeError(
      '@CacheStale() softTimeout answers from the stale entry when the handler is slow, and there is none without staleIfError: add staleIfError, or drop softTimeout.',
    );
  }
  return SetMetadata(CACHE_STALE_METADATA, options);
};
