import {
  type CallHandler,
  type ExecutionContext,
  Inject,
  Injectable,
  Logger,
  type NestInterceptor,
  StreamableFile,
  type Type,
} from '@nestjs/common';
import {
  INTERCEPTORS_METADATA,
  RESPONSE_PASSTHROUGH_METADATA,
  ROUTE_ARGS_METADATA,
  SSE_METADATA,
  VERSION_METADATA,
} from '@nestjs/common/constants.js';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum.js';
import { ApplicationConfig, HttpAdapterHost, ModuleRef, Reflector } from '@nestjs/core';
import { catchError, mergeMap, type Observable, of, tap, throwError } from 'rxjs';
import {
  BaseCache,
  countServed,
  fleetTurn,
  readShared,
  storeLed,
  type SetOptions,
} from '../base-cache.js';
import type { CacheModuleOptions } from '../cache-module.options.js';
import {
  CACHE_KEY_METADATA,
  CACHE_PER_USER_METADATA,
  CACHE_EVICT_METADATA,
  CACHE_PUBLIC_METADATA,
  CACHE_STALE_METADATA,
  CACHE_TAGS_METADATA,
  CACHE_TTL_METADATA,
  CACHE_VARY_METADATA,
  DEFAULT_CACHEABLE_STATUSES,
  NO_CACHE_METADATA,
} from '../cache.constants.js';
import { CACHE_MODULE_OPTIONS, getCacheOptionsToken, getCacheToken } from '../cache.tokens.js';
import { CacheConfigError } from '../errors.js';
import { staleFor } from '../entry.js';
import {
  type Flights,
  type Landing,
  landingWithin,
  type Lead,
  type SoftTimeout,
} from '../flights.js';
import { MAX_RECORDED_BODY_BYTES } from '../cache.constants.js';
import { messages, reasonOf } from '../messages.js';
import { ttlToMs, type Ttl } from '../ttl.js';
import {
  type CachedBody,
  type CachedResponse,
  clientWantsFresh,
  type SentResponse,
  headersNow,
  isCachedResponse,
  RESPONSE_ENTRY_FORMAT,
  storedHeaders,
  unkeyedVary,
  hasUnkeyedCredentials,
  whyNotStorable,
} from './cacheability.js';
import type { CacheKeyName, CacheStaleOptions, CacheTagsSpec, IdentifyUser } from './decorators.js';
import type { CacheEvictOptions } from '../method/cacheable.js';
import { evict } from '../method/cacheable.explorer.js';
import { requestKey } from './request-key.js';
import { SentBody } from './sent-body.js';

/** What the decorators of one route (and its controller) say, read once per route. */
export interface RoutePolicy {
  noCache: boolean;
  ttl: Ttl | undefined;
  name: CacheKeyName | undefined;
  /**
   * Lowercase request headers in the key: the module's `http.vary` plus the route's @CacheVary
   * (and Accept-Encoding once a response said it varies on it). Replaced, never changed in place.
   */
  vary: readonly string[];
  identify: IdentifyUser | undefined;
  isPublic: boolean;
  /**
   * The handler sends the response itself (@Res() or @Next() without passthrough): Nest would not
   * send what a HIT returns, so the route is never cached.
   */
  sendsItself: boolean;
  /** The API version(s) the handler serves (@Version, or its controller's), part of its key. */
  versions: readonly (string | symbol)[] | undefined;
  /** How HITs are replayed; decided at the route's first cacheable request. */
  replayAs?: 'bytes' | 'value';
  /** The tags of its entries (@CacheTags). */
  tags: CacheTagsSpec | undefined;
  /** Its stale windows (@CacheStale, or the module's http options), in ms; 0 for none. */
  staleWhileRevalidateMs: number;
  staleIfErrorMs: number;
  /** With staleIfErrorMs: how long a request waits for the handler before the stale entry answers. */
  softTimeoutMs: number;
  /** What a successful request of the route evicts (@CacheEvict). */
  evict: CacheEvictOptions | undefined;
}

type CacheStatus = 'HIT' | 'MISS' | 'BYPASS' | 'STALE';

/** A stale entry a request may answer with when its own run fails (staleIfError). */
interface Fallback {
  entry: CachedResponse;
  body: unknown;
}

const NO_HEADERS: [string, string | undefined][] = [];

/**
 * Requests inside a CacheInterceptor right now (from intercept() until the handler's observable
 * ends). When CacheInterceptor is registered twice for a route (app-wide and on the controller),
 * the inner one finds the request here and lets it through: it would otherwise wait on the outer
 * one's flight, which waits on it. A retry from an interceptor outside starts after the first
 * attempt ended, so it is cached as usual.
 */
const inside = new WeakSet<object>();

/**
 * How many flights one request waits on at most: after a flight whose leader's client left (it
 * lands `empty`), the request leads the next one or follows it once more.
 */
const MAX_FLIGHTS_FOLLOWED = 2;

/**
 * Caches whole GET responses: `@UseInterceptors(CacheInterceptor)` on a controller or route, or
 * `{ provide: APP_INTERCEPTOR, useClass: CacheInterceptor }` for the app.
 *
 * Safe by default: only GET 200 responses without Set-Cookie, private/no-store/no-cache or
 * Vary: * are stored; requests carrying Authorization or Cookie bypass the cache unless the
 * route keys per user (@CacheVary('authorization'), @CachePerUser) or is @CachePublic.
 * Concurrent misses of one key run the handler once. A cache failure never fails a request.
 *
 * Subclass it to change the key (`trackBy`) or the rules (`isRequestCacheable`, `isResponseCacheable`).
 */
@Injectable()
export class CacheInterceptor implements NestInterceptor {
  protected readonly logger = new Logger('CacheInterceptor');
  private readonly http: NonNullable<CacheModuleOptions['http']>;
  private readonly statuses: readonly number[];
  /** Concurrent misses of one key run the handler once; shared by every interceptor of the cache. */
  private readonly flights: Flights<CachedResponse>;
  private readonly policies = new WeakMap<object, WeakMap<object, RoutePolicy>>();
  /** The kinds of warning already given per route: each is logged once per route. */
  private readonly warned = new WeakMap<RoutePolicy, Set<string>>();

  constructor(
    protected readonly cache: BaseCache,
    @Inject(CACHE_MODULE_OPTIONS) protected readonly options: CacheModuleOptions,
    protected readonly reflector: Reflector,
    protected readonly adapterHost: HttpAdapterHost,
    private readonly appConfig: ApplicationConfig,
    private readonly moduleRef: ModuleRef,
  ) {
    this.http = validHttpOptions(options.http ?? {});
    this.statuses = this.http.statuses ?? DEFAULT_CACHEABLE_STATUSES;
    this.flights = cache.singleFlight<CachedResponse>('nest-cache:responses');
  }

  /**
   * CacheInterceptor on the named cache `name` (CacheModule.forRoot({ name })):
   * `@UseInterceptors(CacheInterceptor.withCache('pages'))`.
   */
  static withCache(name: string): Type<CacheInterceptor> {
    let named = namedInterceptors.get(name);
    if (!named) {
      @Injectable()
      class NamedCacheInterceptor extends CacheInterceptor {
        constructor(
          @Inject(getCacheToken(name)) cache: BaseCache,
          @Inject(getCacheOptionsToken(name)) options: CacheModuleOptions,
          reflector: Reflector,
          adapterHost: HttpAdapterHost,
          appConfig: ApplicationConfig,
          moduleRef: ModuleRef,
        ) {
          super(cache, options, reflector, adapterHost, appConfig, moduleRef);
        }
      }
      namedInterceptors.set(name, (named = NamedCacheInterceptor));
    }
    return named;
  }

  intercept(
    context: ExecutionContext,
    next: CallHandler,
  ): Observable<unknown> | Promise<Observable<unknown>> {
    if (this.options.enabled === false || context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const request = http.getRequest();
    const policy = this.policyFor(context);
    if (policy.evict) return this.evictAfter(context, request, next, policy.evict);
    if (request.method !== 'GET' && request.method !== 'HEAD') return next.handle();
    if (inside.has(request)) {
      this.warnOnce(context, 'twice', messages.interceptorTwice(pathOf(request)));
      return next.handle();
    }
    return this.serve(context, policy, request, http.getResponse(), next);
  }

  /** A HIT, or the handler's response (led, followed, or alone); see intercept(). */
  private async serve(
    context: ExecutionContext,
    policy: RoutePolicy,
    request: any,
    response: any,
    next: CallHandler,
  ): Promise<Observable<unknown>> {
    // The headers this request's key is built with: policy.vary is replaced, never changed in
    // place, when the route learns to vary on Accept-Encoding (see storable()).
    const vary = policy.vary;
    const key =
      !policy.sendsItself && this.isRequestCacheable(context)
        ? this.keyOrBypass(context)
        : undefined;
    const tags = key === undefined ? undefined : this.tagsOrBypass(context, policy);
    if (key === undefined || tags === undefined) {
      this.mark(response, 'BYPASS');
      return this.handled(request, next);
    }
    // A HEAD response has no body to store; it is answered from the GET entry when there is one.
    const mayLead = request.method === 'GET';
    const fresh = this.http.trustClientNoCache && clientWantsFresh(request.headers);
    let fallback: Fallback | undefined;
    if (!fresh) {
      // Shared with the concurrent requests of this key: replay() only reads the entry.
      const found = await this.cache[readShared]<unknown>(key);
      if (found !== undefined) {
        const cached = found.value as CachedResponse;
        const body = this.bodyOf(context, cached, vary);
        if (body !== NOT_REPLAYABLE) {
          const staleMs = staleFor(found.meta, this.cache.clock.now());
          if (staleMs < 0) {
            this.cache[countServed]('hits', key);
            return this.hit(response, cached, body, 'HIT');
          }
          if (staleMs < policy.staleWhileRevalidateMs) {
            this.cache[countServed]('stale', key);
            if (mayLead) this.refresh(context, request, key, tags, next, cached);
            return this.hit(response, cached, body, 'STALE');
          }
          if (staleMs < policy.staleIfErrorMs) fallback = { entry: cached, body };
        }
        // Decoded, but not an entry this interceptor wrote (or one it can no longer read, or one
        // that varies on a header this key lacks): a miss, which the next response stored
        // replaces. Not deleted here: a delete would invalidate the flight a concurrent request
        // leads, and every request sharing this read would run the handler.
        else this.warnOnce(context, 'malformed', messages.malformedResponseEntry(pathOf(request)));
      }
    }
    for (let followed = 0; !fresh && followed < MAX_FLIGHTS_FOLLOWED; followed += 1) {
      // A request whose client left (while it read, or followed) cannot lead: its response would
      // never finish, and the requests following it would wait for nothing.
      if (clientGone(response)) return this.passThrough(request, response, next, key);
      const lead = mayLead ? this.flights.lead(key, tags) : undefined;
      if (lead && fallback && policy.softTimeoutMs > 0) {
        return this.runWithin(context, request, response, key, tags, next, lead, fallback);
      }
      let landing: Landing<CachedResponse> | SoftTimeout;
      if (lead) {
        // With distributedSingleFlight, another instance may be running the handler already.
        const turn = this.cache[fleetTurn](key, lead);
        const verdict = turn === 'run' ? turn : await turn;
        if (verdict === 'run') {
          // Its client may have left while it waited: then it cannot lead (see above).
          if (turn === 'run' || !clientGone(response)) {
            return this.run(context, key, vary, next, lead, fallback);
          }
          lead.end();
          return this.passThrough(request, response, next, key);
        }
        // Its entry, for whoever followed this flight too; or the flight ran out of time waiting.
        if (verdict !== 'over')
          lead.land({ kind: 'value', value: verdict.value as CachedResponse });
        lead.end();
        landing = await lead.landing;
      } else {
        const flight = this.flights.get(key);
        if (!flight) break;
        landing =
          fallback && policy.softTimeoutMs > 0
            ? await landingWithin(flight.landing, policy.softTimeoutMs)
            : await flight.landing;
      }
      if (landing.kind === 'value') {
        const body = this.bodyOf(context, landing.value, vary);
        if (body !== NOT_REPLAYABLE) {
          // Not found in the cache: waited for another request's run, as getOrSet counts it.
          this.cache[countServed]('misses', key);
          return this.hit(response, landing.value, body, 'HIT');
        }
      }
      // The leader's run failed with a server error or ran out of time: the stale entry answers
      // (staleIfError). After a response that may not be shared (a 4xx, say) this request runs
      // the handler itself, below.
      if (
        fallback &&
        ((landing.kind === 'error' && isServerError(landing.error)) ||
          landing.kind === 'timeout' ||
          landing.kind === 'soft-timeout')
      ) {
        this.cache[countServed]('stale', key);
        return this.hit(response, fallback.entry, fallback.body, 'STALE');
      }
      // The leader's client left: lead the next flight, or follow it. After a response that may
      // not be shared, or a flight that ran out of time, this request runs the handler now.
      if (landing.kind !== 'empty') break;
    }
    if (!mayLead || clientGone(response)) return this.passThrough(request, response, next, key);
    // A run nobody follows (a flight of the key is in progress) still goes through a lead of its
    // own, so that its write is dated when it started and invalidations reach it.
    const lead = this.flights.lead(key, tags) ?? this.flights.detached(key, tags);
    if (fallback && policy.softTimeoutMs > 0) {
      return this.runWithin(context, request, response, key, tags, next, lead, fallback);
    }
    return this.run(context, key, vary, next, lead, fallback);
  }

  private hit(
    response: unknown,
    entry: CachedResponse,
    body: unknown,
    status: 'HIT' | 'STALE' | 'MISS',
  ): Observable<unknown> {
    return of(this.replay(response, entry, body, status));
  }

  /**
   * Refreshes a stale entry in the background (staleWhileRevalidate): runs the handler once more,
   * while this request is answered from the stale entry, and stores what it returns with the
   * stale entry's status and headers. Nothing is sent from this run. One refresh per key at a
   * time: it leads the key's flight. A failure is logged, and the stale entry stays.
   */
  private refresh(
    context: ExecutionContext,
    request: object,
    key: string,
    tags: readonly string[],
    next: CallHandler,
    stale: CachedResponse,
    lead = this.flights.lead(key, tags),
  ): () => unknown {
    if (!lead) return () => NO_VALUE;
    let value: unknown = NO_VALUE;
    let ended = false;
    const end = async (entry: CachedResponse | undefined, error?: unknown) => {
      if (ended) return;
      ended = true;
      if (entry) {
        lead.land({ kind: 'value', value: entry });
        await this.write(context, key, entry, lead);
      } else lead.land(error === undefined ? { kind: 'unshareable' } : { kind: 'error', error });
      lead.end();
    };
    const run = () =>
      this.handled(request, next).subscribe({
        next: (v) => (value = v),
        complete: () => {
          let entry: CachedResponse | undefined;
          const body = value === NO_VALUE ? undefined : this.refreshedBody(value);
          if (body !== undefined) {
            // The ETag described the stale bytes; Express computes one for the new body on a HIT.
            const { etag: _etag, ...headers } = stale.headers;
            entry = { ...stale, headers, body, storedAt: this.cache.clock.now() };
          } else {
            this.warnOnce(
              context,
              'refresh-not-stored',
              messages.refreshNotStored(routePath(context)),
            );
          }
          void end(entry);
        },
        error: (error: unknown) => {
          // A client error (a 4xx) is an answer, not a failure of the refresh.
          if (isServerError(error)) {
            this.warnOnce(
              context,
              'refresh',
              messages.refreshFailed(`GET ${pathOf(request as any)}`, reasonOf(error)),
            );
          }
          void end(undefined, error);
        },
      });
    // Started once this request's stale response is on its way, so that nothing the run does to
    // the response (a passthrough header, a cookie) reaches it; stopped at the flight's deadline.
    const start = () => {
      const subscription = run();
      void lead.landing.then((landing) => {
        if (landing.kind === 'timeout') subscription.unsubscribe();
      });
    };
    const timer = setImmediate(() => {
      // With distributedSingleFlight, another instance may be refreshing the entry already.
      const turn = this.cache[fleetTurn](key, lead);
      if (turn === 'run') return start();
      void turn.then((verdict) => {
        if (verdict === 'run') return start();
        if (verdict !== 'over')
          lead.land({ kind: 'value', value: verdict.value as CachedResponse });
        lead.end();
      });
    });
    void lead.landing.then(() => clearImmediate(timer));
    return () => value;
  }

  /**
   * A request inside staleIfError on a route with a softTimeout: the handler runs as a refresh
   * (see refresh()), and this request waits for it at most softTimeout. Its response then, or on a
   * server error or at the soft timeout the stale entry (X-Cache: STALE), while the run goes on and
   * stores what it returns. A client error (4xx) is the answer, and goes through.
   */
  private async runWithin(
    context: ExecutionContext,
    request: object,
    response: unknown,
    key: string,
    tags: readonly string[],
    next: CallHandler,
    lead: Lead<CachedResponse>,
    fallback: Fallback,
  ): Promise<Observable<unknown>> {
    const handlerValue = this.refresh(context, request, key, tags, next, fallback.entry, lead);
    const policy = this.policyFor(context);
    const landing = await landingWithin(lead.landing, policy.softTimeoutMs);
    if (landing.kind === 'value') {
      const body = this.bodyOf(context, landing.value, policy.vary);
      if (body !== NOT_REPLAYABLE) {
        this.cache[countServed]('misses', key);
        return this.hit(response, landing.value, body, 'MISS');
      }
    }
    // The handler answered with a value that may not be stored (not plain data, null, a stream):
    // it is the answer, not stored.
    const value = handlerValue();
    if (landing.kind === 'unshareable' && value !== NO_VALUE) {
      this.cache[countServed]('misses', key);
      this.mark(response, 'MISS');
      return of(value);
    }
    if (landing.kind === 'error' && !isServerError(landing.error)) {
      this.cache[countServed]('misses', key);
      this.mark(response, 'MISS');
      return throwError(() => landing.error);
    }
    this.cache[countServed]('stale', key);
    return this.hit(response, fallback.entry, fallback.body, 'STALE');
  }

  /**
   * The body a background refresh stores: always the handler's value, serialized. Nothing is sent
   * from a refresh, so the bytes the app's serialization hooks would make of it (a json replacer,
   * a preSerialization hook) are unknown: stored as text they would be replayed without them. A
   * HIT of a value goes through the framework's send, and its hooks, again.
   */
  private refreshedBody(value: unknown): CachedBody | undefined {
    const body = this.cachedBody(value, 'value');
    return body === AS_SENT ? undefined : body;
  }

  /** Runs a route under @CacheEvict, then evicts what it says once the handler succeeded. */
  private evictAfter(
    context: ExecutionContext,
    request: object,
    next: CallHandler,
    options: CacheEvictOptions,
  ): Observable<unknown> {
    const where = `${(request as { method?: string }).method ?? ''} ${routePath(context)}`;
    return next.handle().pipe(
      mergeMap(async (value) => {
        const cache = options.cache === undefined ? this.cache : this.namedCache(options.cache);
        if (cache) await evict(cache, options, [request], where);
        else
          this.warnOnce(
            context,
            'evict',
            messages.cacheNotRegistered('@CacheEvict', where, options.cache),
          );
        return value;
      }),
    );
  }

  private namedCache(name: string): BaseCache | undefined {
    try {
      return this.moduleRef.get<BaseCache>(getCacheToken(name) as string, { strict: false });
    } catch {
      return undefined;
    }
  }

  /**
   * The tags of this request's entry (@CacheTags), or undefined to bypass the cache: the builder
   * threw or returned something else than an array of non-empty strings (never a 5xx).
   */
  private tagsOrBypass(
    context: ExecutionContext,
    policy: RoutePolicy,
  ): readonly string[] | undefined {
    if (policy.tags === undefined) return NO_TAGS;
    try {
      const tags =
        typeof policy.tags === 'function'
          ? policy.tags(context.switchToHttp().getRequest())
          : policy.tags;
      if (Array.isArray(tags) && tags.every((tag) => typeof tag === 'string' && tag.length > 0)) {
        return tags;
      }
      throw new TypeError(
        `it returned ${Array.isArray(tags) ? 'an array with a tag that is not a non-empty string' : typeof tags}`,
      );
    } catch (error) {
      this.warnOnce(context, 'tags', messages.tagsFailed(routePath(context), reasonOf(error)));
      return undefined;
    }
  }

  /**
   * The handler's observable. The request is inside a CacheInterceptor from the moment it is
   * subscribed until it ends (see `inside`); a HIT never is.
   */
  private handled(request: object, next: CallHandler): Observable<unknown> {
    const leave = () => void inside.delete(request);
    return next.handle().pipe(
      tap({
        subscribe: () => inside.add(request),
        complete: leave,
        error: leave,
        unsubscribe: leave,
      }),
    );
  }

  /**
   * The cache key of this request, or undefined to bypass the cache. By default: method, path,
   * canonical query, varied headers and the user of @CachePerUser, or the route's @CacheKey name
   * with its path parameters; the module's `http.key` option may replace it.
   */
  protected trackBy(context: ExecutionContext): string | undefined {
    const policy = this.policyFor(context);
    const request = context.switchToHttp().getRequest();
    const user = policy.identify ? this.userOf(context) : undefined;
    // A route cached per user never shares an entry between users, nor with unknown ones.
    if (policy.identify && user === undefined) return undefined;
    const key = requestKey({
      name: typeof policy.name === 'function' ? policy.name(context) : policy.name,
      method: 'GET',
      path: pathOf(request),
      params: request.params ?? {},
      query: request.query ?? {},
      versions: policy.versions,
      headers:
        policy.vary.length === 0
          ? NO_HEADERS
          : policy.vary.map((header) => [header, request.headers[header]]),
      user,
    });
    return this.http.key ? this.http.key(context, key) : key;
  }

  /**
   * Whether this request may be served from and stored in the cache: not under @NoCache; on a
   * @CachePerUser route, only when its user is identified; otherwise carrying no credentials
   * (Authorization, Cookie) unless the route keys them or is @CachePublic.
   */
  protected isRequestCacheable(context: ExecutionContext): boolean {
    const policy = this.policyFor(context);
    if (policy.noCache) return false;
    if (policy.identify) return this.userOf(context) !== undefined;
    if (policy.isPublic) return true;
    const { headers } = context.switchToHttp().getRequest();
    return !hasUnkeyedCredentials(headers, policy.vary);
  }

  /**
   * The user of a @CachePerUser route: what its `identify` returns when that is a non-empty string
   * or a finite number (7 and '7' are one user); undefined for anything else, or when it throws.
   */
  private userOf(context: ExecutionContext): string | undefined {
    let user: unknown;
    try {
      user = this.policyFor(context).identify!(context);
    } catch (error) {
      this.warnOnce(
        context,
        'identify',
        messages.identifyFailed(routePath(context), reasonOf(error)),
      );
      return undefined;
    }
    if (typeof user === 'string' && user.length > 0) return user;
    if (typeof user === 'number' && Number.isFinite(user)) return String(user);
    return undefined;
  }

  /** Why the response that was sent may not be stored, or undefined when it may. */
  protected isResponseCacheable(sent: SentResponse, context: ExecutionContext): string | undefined {
    return whyNotStorable(sent, this.statuses, sent.keyedHeaders ?? this.policyFor(context).vary);
  }

  /** The decorators of the route and its controller, read once per route. */
  protected policyFor(context: ExecutionContext): RoutePolicy {
    const controller = context.getClass();
    const handler = context.getHandler();
    let byHandler = this.policies.get(controller);
    if (!byHandler) this.policies.set(controller, (byHandler = new WeakMap()));
    let policy = byHandler.get(handler);
    if (!policy) {
      const targets = [handler, controller];
      const read = <T>(key: string) =>
        this.reflector.getAllAndOverride<T | undefined>(key, targets);
      policy = {
        noCache: read<boolean>(NO_CACHE_METADATA) === true,
        ttl: routeTtl(read<Ttl>(CACHE_TTL_METADATA), this.http.ttl),
        name: read<CacheKeyName>(CACHE_KEY_METADATA),
        vary: [
          ...new Set([
            ...(this.http.vary ?? []).map((header) => header.toLowerCase()),
            ...this.reflector.getAllAndMerge<string[]>(CACHE_VARY_METADATA, targets),
          ]),
        ],
        identify: read<IdentifyUser>(CACHE_PER_USER_METADATA),
        isPublic: read<boolean>(CACHE_PUBLIC_METADATA) === true,
        // An event stream (@Sse) is never a cacheable response either.
        sendsItself:
          sendsResponseItself(controller, handler) ||
          Reflect.getMetadata(SSE_METADATA, handler) === true,
        versions: versionsOf(handler, controller),
        tags: read<CacheTagsSpec>(CACHE_TAGS_METADATA),
        ...this.staleWindows(read<CacheStaleOptions>(CACHE_STALE_METADATA)),
        evict: Reflect.getMetadata(CACHE_EVICT_METADATA, handler),
      };
      byHandler.set(handler, policy);
    }
    return policy;
  }

  /** A route's stale windows: its @CacheStale, else the module's http options. */
  private staleWindows(route: CacheStaleOptions | undefined): {
    staleWhileRevalidateMs: number;
    staleIfErrorMs: number;
    softTimeoutMs: number;
  } {
    const windows = route ?? this.http;
    const ms = (value: Ttl | undefined) => (value === undefined ? 0 : (ttlToMs(value) ?? 0));
    return {
      staleWhileRevalidateMs: ms(windows.staleWhileRevalidate),
      staleIfErrorMs: ms(windows.staleIfError),
      softTimeoutMs: ms(windows.softTimeout),
    };
  }

  /** A key builder that throws bypasses the cache for that request: the request is still served. */
  private keyOrBypass(context: ExecutionContext): string | undefined {
    try {
      const key = this.trackBy(context);
      if (key === undefined || (typeof key === 'string' && key.length > 0)) return key;
      throw new TypeError(
        `the key is ${typeof key === 'string' ? 'empty' : `a ${typeof key}`}, not a non-empty string`,
      );
    } catch (error) {
      this.logger.error(messages.keyBuilderFailed(reasonOf(error)));
      return undefined;
    }
  }

  /** A MISS that neither leads nor stores: the handler answers this request only. */
  private passThrough(
    request: object,
    response: unknown,
    next: CallHandler,
    key: string,
  ): Observable<unknown> {
    this.cache[countServed]('misses', key);
    this.mark(response, 'MISS');
    return this.handled(request, next);
  }

  /**
   * Runs the handler (a MISS). Once the response is sent, hands it to the requests that waited on
   * `lead` and stores it if it may be; the flight ends only after the write, so a request arriving
   * in between replays it too instead of running the handler again. The write is bounded by the
   * cache's operationTimeout and the flight by getOrSetTimeout, whatever the socket or the backend
   * does.
   */
  private run(
    context: ExecutionContext,
    key: string,
    vary: readonly string[],
    next: CallHandler,
    lead: Lead<CachedResponse>,
    fallback: Fallback | undefined,
  ): Observable<unknown> {
    const http = context.switchToHttp();
    const request = http.getRequest();
    const response = http.getResponse();
    // With a stale entry to fall back on, the count waits for the handler: a server error answered
    // from the stale entry is a stale hit, not a miss as well.
    let counted = false;
    const countMiss = () => {
      if (counted) return;
      counted = true;
      this.cache[countServed]('misses', key);
    };
    if (!fallback) countMiss();
    this.mark(response, 'MISS');
    const replayAs = this.replayAs(context);
    const raw = rawOf(response);
    // In byte mode the entry keeps the bytes the client received, recorded as they are sent, once
    // the handler's value is known to be storable (a stream or a file is never recorded).
    let sentBody: SentBody | undefined;
    let handlerValue: unknown;
    let settled = false;
    const settle = async (entry: CachedResponse | undefined, sent: boolean, failure?: unknown) => {
      if (settled) return;
      settled = true;
      raw.off('finish', onFinish).off('close', onClose);
      sentBody?.restore();
      // The waiting requests replay it now, without waiting for the write.
      if (entry) lead.land({ kind: 'value', value: entry });
      // A server error: waiting requests that have a stale entry answer with it (staleIfError).
      else if (failure !== undefined) lead.land({ kind: 'error', error: failure });
      // A 304 answers this request's If-None-Match only: a follower may lead the next run.
      else lead.land({ kind: sent && response.statusCode !== 304 ? 'unshareable' : 'empty' });
      if (entry) await this.write(context, key, entry, lead);
      lead.end();
    };
    let body: CachedBody | typeof AS_SENT | undefined;
    // Headers set before the handler (middleware, hooks) are set again on every request: see storedHeaders.
    const before = headersNow(response.getHeaders());
    const onFinish = () => {
      let entry: CachedResponse | undefined;
      try {
        const stored =
          body === AS_SENT ? this.sentBodyOf(context, response, sentBody, handlerValue) : body;
        entry = this.storable(context, response, stored, before, vary);
      } catch (error) {
        // A throwing isResponseCacheable() override, say: the response is served, not stored.
        this.warnOnce(
          context,
          'not-stored',
          messages.responseNotStored(pathOf(request), reasonOf(error)),
        );
      }
      void settle(entry, true);
    };
    // The client left before the response was complete.
    const onClose = () => void settle(undefined, false);
    // Listeners on a response whose socket had closed already would never fire (intercept() does
    // not lead for one); the flight's deadline covers any other way they could stay silent.
    raw.once('finish', onFinish).once('close', onClose);
    return this.handled(request, next).pipe(
      tap({
        next: (value) => {
          countMiss();
          body = this.cachedBody(value, replayAs);
          if (body === AS_SENT && !raw.headersSent) {
            handlerValue = value;
            sentBody = new SentBody(raw, MAX_RECORDED_BODY_BYTES);
          }
        },
        // A failure is never stored: the flight ends now, before the error response is even sent,
        // so a retry of this very request (a retry interceptor outside) does not wait on it.
        complete: countMiss,
        error: (error: unknown) =>
          void settle(undefined, true, isServerError(error) ? error : undefined),
      }),
      // With a stale entry (staleIfError), a server error is answered from it; a client error
      // (4xx: not found, forbidden) is the answer, and goes through.
      catchError((error: unknown) => {
        if (!fallback || raw.headersSent || !isServerError(error)) {
          countMiss();
          throw error;
        }
        this.cache[countServed]('stale', key);
        return of(this.replay(response, fallback.entry, fallback.body, 'STALE'));
      }),
    );
  }

  /**
   * The body of a byte-mode entry: the text the client received, when it is exactly what the
   * handler's value serializes to. Otherwise something after the handler changed the bytes (a
   * json replacer, a serialization or onSend hook, compression) and replaying them would skip or
   * repeat that step: the route stores the handler's value from now on, and every HIT goes
   * through the framework's send again.
   */
  private sentBodyOf(
    context: ExecutionContext,
    response: any,
    sentBody: SentBody | undefined,
    value: unknown,
  ): CachedBody | undefined {
    // A 304, an error page: never stored, and no evidence about what the route sends.
    if (!this.statuses.includes(response.statusCode)) return undefined;
    const sent = sentBody?.bytes();
    if (sent === undefined) return undefined; // over MAX_RECORDED_BODY_BYTES
    let expected: string | undefined;
    try {
      expected = typeof value === 'string' ? value : JSON.stringify(value);
    } catch {
      return undefined; // Nest could not have sent it either
    }
    if (expected !== undefined && sent.equals(Buffer.from(expected))) return { text: expected };
    this.policyFor(context).replayAs = 'value';
    this.warnOnce(context, 'values', messages.replayedAsValues(routePath(context)));
    try {
      return { value: this.cache.serializer.serialize(value) };
    } catch {
      return undefined; // not plain data: served, not stored
    }
  }

  /** The entry to store for the response that was sent, or undefined when it may not be stored. */
  private storable(
    context: ExecutionContext,
    response: any,
    body: CachedBody | undefined,
    before: Record<string, unknown>,
    vary: readonly string[],
  ): CachedResponse | undefined {
    const sent: SentResponse = {
      status: response.statusCode,
      headers: response.getHeaders(),
      body,
      keyedHeaders: vary,
    };
    const unkeyed = unkeyedVary(sent.headers, vary);
    if (unkeyed.includes('accept-encoding')) this.learnAcceptEncoding(context);
    const why = this.isResponseCacheable(sent, context);
    if (why === undefined && body !== undefined) {
      return {
        format: RESPONSE_ENTRY_FORMAT,
        status: sent.status,
        headers: storedHeaders(sent.headers, body, before),
        body,
        storedAt: this.cache.clock.now(),
      };
    }
    if (why !== undefined && unkeyed.length > 0) {
      this.warnOnce(context, 'varies', messages.responseNotStored(routePath(context), why));
    }
    return undefined;
  }

  /**
   * The route's responses depend on the encoding the client accepts (a compression step, or the
   * handler, says Vary: Accept-Encoding): from now on its default key includes it, so each
   * encoding has an entry of its own. A key of your own (http.key, trackBy) is not changed: such
   * responses are then never stored, until the key includes the encoding and the route says so
   * with @CacheVary('accept-encoding').
   */
  private learnAcceptEncoding(context: ExecutionContext): void {
    const policy = this.policyFor(context);
    const defaultKey =
      this.http.key === undefined && this.trackBy === CacheInterceptor.prototype.trackBy;
    if (!defaultKey || policy.vary.includes('accept-encoding')) return;
    policy.vary = [...policy.vary, 'accept-encoding'];
    this.warnOnce(context, 'accept-encoding', messages.keyedOnAcceptEncoding(routePath(context)));
  }

  /**
   * Stores a response as the run `lead` produced it: dated when it started, with its tags, and
   * dropped when its key or a tag was invalidated since, or its deadline passed.
   */
  private async write(
    context: ExecutionContext,
    key: string,
    entry: CachedResponse,
    lead: Lead<CachedResponse>,
  ): Promise<void> {
    const policy = this.policyFor(context);
    // An entry that never expires is never stale: its route's stale windows do not apply.
    const expires = policy.ttl !== null && (policy.ttl !== undefined || this.options.ttl !== null);
    const window = (ms: number) => (expires && ms > 0 ? (`${ms}ms` as const) : undefined);
    const options: SetOptions = {
      ttl: policy.ttl,
      staleWhileRevalidate: window(policy.staleWhileRevalidateMs),
      staleIfError: window(policy.staleIfErrorMs),
    };
    try {
      await this.cache[storeLed](key, entry, options, lead as Lead<unknown>);
    } catch (error) {
      // A value the serializer cannot store exactly (a class instance, say) is served, not cached.
      this.warnOnce(
        context,
        'not-stored',
        messages.responseNotStored(routePath(context), reasonOf(error)),
      );
    }
  }

  /**
   * 'bytes' when CacheInterceptor is the outermost interceptor of the route: then nothing runs
   * after it, and a HIT can send the stored text without serializing again. 'value' otherwise, so
   * that interceptors outside it (masking, envelopes, serializers) run on every HIT too.
   */
  private replayAs(context: ExecutionContext): 'bytes' | 'value' {
    const policy = this.policyFor(context);
    if (policy.replayAs === undefined) {
      // Nest runs the global interceptors, then the request-scoped global ones (ApplicationConfig
      // lists them apart), then the controller's, then the route's: the first is the outermost.
      const outermost = [
        ...this.appConfig.getGlobalInterceptors(),
        ...this.appConfig.getGlobalRequestInterceptors(),
        ...(this.reflector.get<unknown[]>(INTERCEPTORS_METADATA, context.getClass()) ?? []),
        ...(this.reflector.get<unknown[]>(INTERCEPTORS_METADATA, context.getHandler()) ?? []),
      ][0];
      policy.replayAs = outermost === this || outermost === this.constructor ? 'bytes' : 'value';
    }
    return policy.replayAs;
  }

  /**
   * The handler's value in the form it is stored: as text, a string as it is and an object or
   * array as JSON (what Nest's Express and Fastify adapters send); as a value, serialized now.
   * undefined for what is never stored: streams, files, Buffers, empty bodies, and values the
   * serializer cannot keep exactly (a class instance would come back without its class, and an
   * outer ClassSerializerInterceptor could no longer apply its @Exclude rules).
   */
  private cachedBody(
    value: unknown,
    replayAs: 'bytes' | 'value',
  ): CachedBody | typeof AS_SENT | undefined {
    if (value === null || (typeof value !== 'object' && typeof value !== 'string'))
      return undefined;
    if (
      value instanceof StreamableFile ||
      value instanceof Uint8Array ||
      typeof (value as { pipe?: unknown }).pipe === 'function'
    ) {
      return undefined;
    }
    // In byte mode the body is what the client receives: known once it is sent (see sentText).
    if (replayAs === 'bytes') return AS_SENT;
    try {
      return { value: this.cache.serializer.serialize(value) };
    } catch {
      return undefined; // not plain data: served, not stored
    }
  }

  /**
   * What a HIT of `entry` returns (the stored text, or a fresh copy of the stored value), or
   * NOT_REPLAYABLE when `entry` is not a well-formed response entry.
   */
  private bodyOf(context: ExecutionContext, entry: unknown, vary: readonly string[]): unknown {
    if (!isCachedResponse(entry)) return NOT_REPLAYABLE;
    // Stored bytes on a route whose HITs must go through the interceptors outside it (an entry
    // from before the route switched to values, or from another instance or version).
    if ('text' in entry.body && this.replayAs(context) === 'value') return NOT_REPLAYABLE;
    if (entry.headers['vary'] !== undefined) {
      // Written by an older version, or by a process that keyed the route otherwise.
      const unkeyed = unkeyedVary(entry.headers, vary);
      if (unkeyed.includes('accept-encoding')) this.learnAcceptEncoding(context);
      if (unkeyed.length > 0) return NOT_REPLAYABLE;
    }
    if ('text' in entry.body) return entry.body.text;
    try {
      return this.cache.serializer.deserialize(entry.body.value);
    } catch {
      return NOT_REPLAYABLE;
    }
  }

  private replay(
    response: unknown,
    entry: CachedResponse,
    body: unknown,
    status: 'HIT' | 'STALE' | 'MISS',
  ): unknown {
    const adapter = this.adapterHost.httpAdapter;
    adapter.status(response, entry.status);
    for (const name of Object.keys(entry.headers)) {
      const value = entry.headers[name]!;
      // The entry is shared with concurrent requests: a list handed on could be appended to.
      adapter.setHeader(response, name, (Array.isArray(value) ? [...value] : value) as string);
    }
    adapter.setHeader(
      response,
      'age',
      String(Math.max(0, Math.floor((this.cache.clock.now() - entry.storedAt) / 1_000))),
    );
    this.mark(response, status);
    return body;
  }

  private mark(response: unknown, status: CacheStatus): void {
    this.adapterHost.httpAdapter.setHeader(response, 'x-cache', status);
  }

  private warnOnce(context: ExecutionContext, kind: string, message: string): void {
    const policy = this.policyFor(context);
    let given = this.warned.get(policy);
    if (!given) this.warned.set(policy, (given = new Set()));
    if (given.has(kind)) return;
    given.add(kind);
    this.logger.warn(message);
  }
}

const NOT_REPLAYABLE = Symbol('nest-cache:not-replayable');

const NO_TAGS: readonly string[] = Object.freeze([]);

/** A handler run that has not produced a value (yet). */
const NO_VALUE = Symbol('nest-cache:no-value');

/** CacheInterceptor.withCache(name), one class per name: the same class is the same interceptor. */
const namedInterceptors = new Map<string, Type<CacheInterceptor>>();

/**
 * Whether a handler's error is the server's (a 5xx, or anything that is not an HttpException, which
 * Nest answers with 500): what staleIfError covers, as RFC 5861 does.
 */
function isServerError(error: unknown): boolean {
  const status = (error as { getStatus?: () => unknown } | null)?.getStatus?.();
  return typeof status !== 'number' || status >= 500;
}

/** A route's @CacheTTL (null: never expires), else the module's http.ttl. */
function routeTtl(route: Ttl | undefined, module: Ttl | undefined): Ttl | undefined {
  return route === undefined ? module : route;
}

/** A byte-mode body before it is sent: the entry will keep the bytes sent (see sentText). */
const AS_SENT = Symbol('nest-cache:as-sent');

/** Node's ServerResponse: Express's response itself, Fastify's reply.raw. */
function rawOf(response: any): any {
  return response.raw ?? response;
}

/** Whether the client is gone already: its response can no longer be sent (nor finish). */
function clientGone(response: unknown): boolean {
  const raw = rawOf(response) as { destroyed?: boolean; closed?: boolean };
  return raw.destroyed === true || raw.closed === true;
}

/**
 * The version(s) a handler is declared for, as Nest routes them: its own @Version, else its
 * controller's (VERSION_NEUTRAL stays a symbol). Handlers of other versions answer the same path,
 * so the versions join the key.
 */
function versionsOf(handler: object, controller: object): (string | symbol)[] | undefined {
  const version: unknown =
    Reflect.getMetadata(VERSION_METADATA, handler) ??
    Reflect.getMetadata(VERSION_METADATA, controller);
  if (version === undefined) return undefined;
  return (Array.isArray(version) ? version : [version]).map((v) =>
    typeof v === 'symbol' ? v : String(v),
  );
}

/** Whether the handler takes @Res() or @Next() without passthrough, as Nest decides it. */
function sendsResponseItself(controller: object, handler: object): boolean {
  const method = methodNameOf(controller, handler);
  const args: Record<string, unknown> =
    Reflect.getMetadata(ROUTE_ARGS_METADATA, controller, method) ?? {};
  const takesResponse = Object.keys(args).some((key) => {
    const type = Number(key.split(':')[0]);
    return type === RouteParamtypes.RESPONSE || type === RouteParamtypes.NEXT;
  });
  return (
    takesResponse && Reflect.getMetadata(RESPONSE_PASSTHROUGH_METADATA, controller, method) !== true
  );
}

/**
 * The name under which the controller holds `handler` (its function's own name can differ: a
 * decorator that wraps the method), found on the prototype chain as Nest's router does.
 */
function methodNameOf(controller: object, handler: object): string | symbol {
  const prototype = (controller as { prototype?: object }).prototype;
  for (
    let proto = prototype;
    proto && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const name of Reflect.ownKeys(proto)) {
      if (Object.getOwnPropertyDescriptor(proto, name)?.value === handler) return name;
    }
  }
  return (handler as { name?: string }).name ?? '';
}

/** The path of the request in `context`, for messages. */
function routePath(context: ExecutionContext): string {
  return pathOf(context.switchToHttp().getRequest());
}

/** The path as the client sent it, without the query. */
function pathOf(request: { originalUrl?: string; url: string }): string {
  const url = request.originalUrl ?? request.url;
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

function validHttpOptions(
  http: NonNullable<CacheModuleOptions['http']>,
): NonNullable<CacheModuleOptions['http']> {
  if (
    http.statuses !== undefined &&
    (!Array.isArray(http.statuses) ||
      !http.statuses.every((s) => Number.isInteger(s) && s >= 100 && s <= 599))
  ) {
    throw new CacheConfigError(
      messages.invalidOption(
        'http.statuses',
        http.statuses,
        'Use an array of HTTP statuses, e.g. [200, 203].',
      ),
    );
  }
  if (
    http.vary !== undefined &&
    (!Array.isArray(http.vary) || !http.vary.every((h) => typeof h === 'string' && h.length > 0))
  ) {
    throw new CacheConfigError(
      messages.invalidOption(
        'http.vary',
        http.vary,
        "Use an array of request header names, e.g. ['accept-language'].",
      ),
    );
  }
  if (http.key !== undefined && typeof http.key !== 'function') {
    throw new CacheConfigError(
      messages.invalidOption(
        'http.key',
        http.key,
        'Use a function (context, defaultKey) => key | undefined.',
      ),
    );
  }
  if (http.ttl !== undefined) ttlToMs(http.ttl, 'CacheModule option "http.ttl"');
  for (const option of ['staleWhileRevalidate', 'staleIfError', 'softTimeout'] as const) {
    const value = http[option];
    if (value !== undefined && ttlToMs(value, `CacheModule option "http.${option}"`) === null) {
      throw new CacheConfigError(
        messages.invalidOption(`http.${option}`, value, "Use a duration, e.g. '1m'."),
      );
    }
  }
  if (http.softTimeout !== undefined && http.staleIfError === undefined) {
    throw new CacheConfigError(
      messages.invalidOption(
        'http.softTimeout',
        http.softTimeout,
        'It answers from the stale entry when the handler is slow, and there is none without "http.staleIfError": add it, or drop softTimeout.',
      ),
    );
  }
  return http;
}
