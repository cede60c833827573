import { Injectable } from '@nestjs/common';
import { ModuleRef, ModulesContainer } from '@nestjs/core';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import type { BaseCache } from '../base-cache.js';
import { registeredCacheNames } from '../cache.module.js';
import { getCacheToken } from '../cache.tokens.js';
import { CacheConfigError, InvalidTtlError } from '../errors.js';
import type { BreakerState } from '../failure-policy.js';
import { messages, reasonOf, redactUrl } from '../messages.js';
import { MAX_TIMER_MS, ttlToMs, type Ttl } from '../ttl.js';

/**
 * How long a health check waits for each cache's ping by default: 1 s, as terminus' own ping
 * checks do, and below the default operationTimeout (2 s), so that a frozen backend answers the
 * health check sooner than it fails a cache call.
 */
export const DEFAULT_HEALTH_TIMEOUT = '1s';

/** What `CacheHealthIndicator.isHealthy(key, options)` takes. */
export interface CacheHealthOptions {
  /**
   * The caches to check, by name; `undefined` stands for the default cache. A name no cache is
   * registered under makes the check down, saying so.
   * @default every cache registered in the application (the default one and every named one)
   * @example { caches: [undefined, 'sessions'] }
   */
  caches?: readonly (string | undefined)[];
  /**
   * How long each cache's ping may take before the cache counts as down, as a Ttl: SECONDS when a
   * number (like every duration of nest-cache), or a string with its unit ('500ms', '2s'). The
   * ping is also bounded by the cache's own operationTimeout: the shorter of the two applies.
   * @default '1s'
   */
  timeout?: Exclude<Ttl, null>;
}

/** One cache in the details of a health check: `details[key].caches[i]`. */
export interface CacheHealth {
  /** The cache's name; null for the default cache. */
  name: string | null;
  /** Its backend, as `cache.backend` names it: 'memory', 'redis', 'memcached', 'disk', 'keyv'... */
  backend: string;
  /** 'down' when its ping failed or timed out, or its circuit breaker is open. */
  status: 'up' | 'down';
  /** How long its ping took, in milliseconds; absent when the ping failed or timed out. */
  pingMs?: number;
  /** Its circuit breaker: see `cache.breaker`. 'half-open' with a good ping is up. */
  breaker: BreakerState['state'];
  /** Why it is down, with any URL user info (a password) hidden; absent when it is up. */
  error?: string;
}

/**
 * A health indicator for @nestjs/terminus: pings every cache (one bounded round trip each, counted
 * nowhere: no stats, no breaker) and reads its circuit breaker. Provide it beside TerminusModule,
 * from `nest-cache/terminus` (the main entry never loads @nestjs/terminus, an optional peer).
 *
 * @example
 * ```ts
 * import { TerminusModule, HealthCheck, HealthCheckService } from '@nestjs/terminus';
 * import { CacheHealthIndicator } from 'nest-cache/terminus';
 *
 * @Controller('health')
 * class HealthController {
 *   constructor(
 *     private readonly health: HealthCheckService,
 *     private readonly cache: CacheHealthIndicator,
 *   ) {}
 *
 *   @Get()
 *   @HealthCheck()
 *   check() {
 *     return this.health.check([() => this.cache.isHealthy('cache', { timeout: '500ms' })]);
 *   }
 * }
 *
 * @Module({ imports: [TerminusModule], controllers: [HealthController], providers: [CacheHealthIndicator] })
 * class HealthModule {}
 * ```
 */
@Injectable()
export class CacheHealthIndicator {
  constructor(
    private readonly healthIndicatorService: HealthIndicatorService,
    private readonly moduleRef: ModuleRef,
    private readonly modules: ModulesContainer,
  ) {}

  /**
   * Checks the default cache and every named cache (or those of `options.caches`), concurrently:
   * each is up when its ping answers within `options.timeout` and its circuit breaker is not
   * open. The result is up when every cache is, down otherwise (terminus then answers 503), with
   * `{ caches: CacheHealth[] }` as its details. Never rejects for a backend problem.
   *
   * @param key The key of the result in terminus' `info` / `error` / `details`. @default 'cache'
   * @param options See CacheHealthOptions. @default every registered cache, a 1 s timeout
   * @throws CacheConfigError or InvalidTtlError for an invalid option (a mistake in code).
   * @example
   * ```ts
   * this.health.check([() => this.cache.isHealthy('sessions', { caches: ['sessions'] })]);
   * // { status: 'ok', info: { sessions: { status: 'up', caches: [
   * //   { name: 'sessions', backend: 'redis', status: 'up', pingMs: 0.4, breaker: 'closed' } ] } } }
   * ```
   */
  async isHealthy<const Key extends string = 'cache'>(
    key: Key = 'cache' as Key,
    options: CacheHealthOptions = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const timeoutMs = validTimeout(options.timeout);
    const names = options.caches ?? registeredCacheNames(this.modules);
    if (!Array.isArray(names) || names.some((name) => !isCacheName(name))) {
      throw new CacheConfigError(messages.invalidHealthCaches(options.caches));
    }
    const indicator = this.healthIndicatorService.check(key);
    const caches = await Promise.all(
      [...new Set<string | undefined>(names)].map((name) => this.checkOne(name, timeoutMs)),
    );
    // A check of nothing proves nothing: no cache registered (or an empty list) is down.
    if (caches.length === 0) return indicator.down({ caches, error: messages.healthNoCaches() });
    return caches.every((cache) => cache.status === 'up')
      ? indicator.up({ caches })
      : indicator.down({ caches });
  }

  private async checkOne(name: string | undefined, timeoutMs: number): Promise<CacheHealth> {
    const cache = this.cacheNamed(name);
    if (!cache) {
      return {
        name: name ?? null,
        backend: 'none',
        status: 'down',
        breaker: 'closed',
        error: messages.healthUnknownCache(name),
      };
    }
    const ping = await pingWithin(cache, timeoutMs);
    const breaker = cache.breaker;
    const error =
      'error' in ping
        ? ping.error
        : breaker.state === 'open'
          ? messages.healthBreakerOpen(breaker.consecutiveFailures, breaker.openUntil)
          : undefined;
    return {
      name: name ?? null,
      backend: cache.backend,
      status: error === undefined ? 'up' : 'down',
      ...('ms' in ping && { pingMs: Math.round(ping.ms * 100) / 100 }),
      breaker: breaker.state,
      ...(error !== undefined && { error }),
    };
  }

  /** The cache registered under `name`, from whichever module registered it. */
  private cacheNamed(name: string | undefined): BaseCache | undefined {
    try {
      return this.moduleRef.get<BaseCache>(getCacheToken(name), { strict: false });
    } catch {
      // Nest's UnknownElementException: nothing is registered under the token.
      return undefined;
    }
  }
}

/** The ping's duration, or why it failed (never rejects), within `timeoutMs`. */
async function pingWithin(
  cache: BaseCache,
  timeoutMs: number,
): Promise<{ ms: number } | { error: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<{ error: string }>((resolve) => {
    timer = setTimeout(() => resolve({ error: messages.healthPingTimeout(timeoutMs) }), timeoutMs);
  });
  const ping = Promise.resolve()
    .then(() => cache.ping())
    .then(
      (ms) => ({ ms }),
      (error: unknown) => ({ error: withoutUserInfo(reasonOf(error)) }),
    );
  try {
    return await Promise.race([ping, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A backend's error message with the user info of every URL in it hidden (redactUrl, word by
 * word): a client may echo the URL it connects to, and a health endpoint is often public.
 */
function withoutUserInfo(reason: string): string {
  return reason
    .split(/(\s+)/)
    .map((word) => (word.includes('@') ? redactUrl(word) : word))
    .join('');
}

function validTimeout(timeout: Exclude<Ttl, null> | undefined): number {
  const where = 'CacheHealthIndicator.isHealthy() option "timeout"';
  const ms = ttlToMs(timeout === undefined ? DEFAULT_HEALTH_TIMEOUT : timeout, where);
  if (ms === null || ms > MAX_TIMER_MS) {
    throw new InvalidTtlError(
      messages.invalidTtl(
        where,
        timeout,
        ms === null
          ? 'is null, but a wait must end: give a duration'
          : `is over ${MAX_TIMER_MS} ms (about 24.8 days), the longest timer Node runs`,
      ),
    );
  }
  return ms;
}

function isCacheName(name: unknown): name is string | undefined {
  return name === undefined || (typeof name === 'string' && name.length > 0);
}
