import { Inject } from '@nestjs/common';
import { BaseCache } from './base-cache.js';
import { CacheConfigError } from './errors.js';
import { messages } from './messages.js';

/**
 * The injection token of the cache registered as `CacheModule.forRoot({ name })`: BaseCache itself
 * for the default cache (no name), a token of its own for a named one. For `inject: [...]`.
 */
export function getCacheToken(name?: string): string | typeof BaseCache {
  return name === undefined ? BaseCache : `nest-cache:cache:${validName(name)}`;
}

/** Injection token of the resolved options of the cache `name` (CacheInterceptor reads them). */
export function getCacheOptionsToken(name?: string): string {
  return name === undefined ? CACHE_MODULE_OPTIONS : `nest-cache:options:${validName(name)}`;
}

/** Injection token of the resolved options of the default cache. */
export const CACHE_MODULE_OPTIONS = 'nest-cache:options';

/**
 * Injects the cache registered as `CacheModule.forRoot({ name })`:
 * `constructor(@InjectCache('sessions') private readonly sessions: BaseCache) {}`.
 * Without a name, the default cache (the same as injecting BaseCache by type).
 */
export function InjectCache(name?: string): PropertyDecorator & ParameterDecorator {
  return Inject(getCacheToken(name));
}

/** A cache name: a non-empty string. */
export function validName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new CacheConfigError(
      messages.invalidOption(
        'name',
        name,
        "Name a cache with a non-empty string, e.g. 'sessions'; leave it out for the default cache.",
      ),
    );
  }
  return name;
}
