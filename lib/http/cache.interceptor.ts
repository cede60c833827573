import {
  type CallHandler,
  type ExecutionContext,
  Inject,
  Injectable,
  Logger,
  type NestInterceptor,
  StreamableFile,
  VERSION_NEUTRAL,
} from '@nestjs/common';
import {
  INTERCEPTORS_METADATA,
  RESPONSE_PASSTHROUGH_METADATA,
  ROUTE_ARGS_METADATA,
  VERSION_METADATA,
} from '@nestjs/common/constants.js';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum.js';
import { ApplicationConfig, HttpAdapterHost, Reflector } from '@nestjs/core';
import { type Observable, of, tap } from 'rxjs';
import { BaseCache, readShared } from '../base-cache.js';
import type { CacheModuleOptions } from '../cache-module.options.js';
import {
  CACHE_KEY_METADATA,
  CACHE_PER_USER_METADATA,
  CACHE_PUBLIC_METADATA,
  CACHE_TTL_METADATA,
  CACHE_VARY_METADATA,
  DEFAULT_CACHEABLE_STATUSES,
  NO_CACHE_METADATA,
} from '../cache.constants.js';
import { CACHE_MODULE_OPTIONS } from '../cache.module-definition.js';
import { CacheConfigError } from '../errors.js';
import type { Flights, Lead } from '../flights.js';
import { MAX_RECORDED_BODY_BYTES } from '../cache.constants.js';
import { messages } from '../messages.js';
import { ttlToMs, type Ttl } from '../ttl.js';
import {
  type CachedBody,
  type CachedResponse,
  clientWantsFresh,
  type SentResponse,
  headersNow,
  storedHeaders,
  variesOn,
  hasUnkeyedCredentials,
  whyNotStorable,
} from './cacheability.js';
import type { CacheKeyName, IdentifyUser } from './decorators.js';
import { requestKey } from './request-key.js';
import { SentBody } from './sent-body.js';

/** What the decorators of one route (and its controller) say, read once per route. */
export interface RoutePolicy {
  noCache: boolean;
  ttl: Ttl | undefined;
  name: CacheKeyName | undefined;
  /** Lowercase request headers in the key: the module's `http.vary` plus the route's @CacheVary. */
  vary: string[];
  identify: IdentifyUser | undefined;
  isPublic: boolean;
  /**
   * The handler sends the response itself (@Res() or @Next() without passthrough): Nest would not
   * send what a HIT returns, so the route is never cached.
   */
  sendsItself: boolean;
  /** The API version(s) the handler serves (@Version, or its controller's), part of its key. */
  version: string | undefined;
  /** How HITs are replayed; decided at the route's first cacheable request. */
  replayAs?: 'bytes' | 'value';
}

type CacheStatus = 'HIT' | 'MISS' | 'BYPASS';

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
  private readonly warned = new WeakSet<RoutePolicy>();

  constructor(
    protected readonly cache: BaseCache,
    @Inject(CACHE_MODULE_OPTIONS) protected readonly options: CacheModuleOptions,
    protected readonly reflector: Reflector,
    protected readonly adapterHost: HttpAdapterHost,
    private readonly appConfig: ApplicationConfig,
  ) {
    this.http = validHttpOptions(options.http ?? {});
    this.statuses = this.http.statuses ?? DEFAULT_CACHEABLE_STATUSES;
    this.flights = cache.singleFlight<CachedResponse>('nest-cache:responses');
  }

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    if (this.options.enabled === false || context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const request = http.getRequest();
    const response = http.getResponse();
    if (request.method !== 'GET' && request.method !== 'HEAD') return next.handle();
    if (inside.has(request)) {
      this.warnOnce(context, messages.interceptorTwice(pathOf(request)));
      return next.handle();
    }
    inside.add(request);
    try {
      return await this.serve(context, request, response, next);
    } catch (error) {
      inside.delete(request);
      throw error;
    }
  }

  /** A HIT, or the handler's response (led, followed, or alone); see intercept(). */
  private async serve(
    context: ExecutionContext,
    request: any,
    response: any,
    next: CallHandler,
  ): Promise<Observable<unknown>> {
    const key =
      !this.policyFor(context).sendsItself && this.isRequestCacheable(context)
        ? this.keyOrBypass(context)
        : undefined;
    if (key === undefined) {
      this.mark(response, 'BYPASS');
      return this.handled(request, next);
    }
    const fresh = this.http.trustClientNoCache && clientWantsFresh(request.headers);
    if (!fresh) {
      // Shared with the concurrent requests of this key: replay() only reads the entry.
      const cached = await this.cache[readShared]<unknown>(key);
      if (cached !== undefined) {
        const body = this.bodyOf(cached);
        if (body !== NOT_REPLAYABLE) {
          return this.hit(request, response, cached as CachedResponse, body);
        }
        // Decoded, but not an entry this interceptor wrote (or one it can no longer read): a
        // miss, and removed, like an entry that does not decode.
        this.warnOnce(context, messages.malformedResponseEntry(pathOf(request)));
        void this.cache.delete(key);
      }
    }
    // A HEAD response has no body to store; it is answered from the GET entry when there is one.
    const mayLead = request.method === 'GET';
    for (let followed = 0; !fresh && followed < MAX_FLIGHTS_FOLLOWED; followed += 1) {
      // A request whose client left (while it read, or followed) cannot lead: its response would
      // never finish, and the requests following it would wait for nothing.
      if (clientGone(response)) return this.passThrough(request, response, next);
      const lead = mayLead ? this.flights.lead(key) : undefined;
      if (lead) return this.run(context, key, next, lead);
      const flight = this.flights.get(key);
      if (!flight) break;
      const landing = await flight.landing;
      if (landing.kind === 'value') {
        const body = this.bodyOf(landing.value);
        if (body !== NOT_REPLAYABLE) return this.hit(request, response, landing.value, body);
      }
      // The leader's client left: lead the next flight, or follow it. After a response that may
      // not be shared, or a flight that ran out of time, this request runs the handler now.
      if (landing.kind !== 'empty') break;
    }
    return mayLead && !clientGone(response)
      ? this.run(context, key, next, undefined)
      : this.passThrough(request, response, next);
  }

  private hit(request: object, response: unknown, entry: CachedResponse, body: unknown) {
    inside.delete(request);
    return of(this.replay(response, entry, body));
  }

  /** The handler's observable; the request is no longer inside once it ends (see `inside`). */
  private handled(request: object, next: CallHandler): Observable<unknown> {
    const leave = () => void inside.delete(request);
    return next.handle().pipe(tap({ complete: leave, error: leave, unsubscribe: leave }));
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
      version: policy.version,
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
        messages.identifyFailed(
          pathOf(context.switchToHttp().getRequest()),
          error instanceof Error ? error.message : String(error),
        ),
      );
      return undefined;
    }
    if (typeof user === 'string' && user.length > 0) return user;
    if (typeof user === 'number' && Number.isFinite(user)) return String(user);
    return undefined;
  }

  /** Why the response that was sent may not be stored, or undefined when it may. */
  protected isResponseCacheable(sent: SentResponse, context: ExecutionContext): string | undefined {
    return whyNotStorable(sent, this.statuses, this.policyFor(context).vary);
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
        ttl: read<Ttl>(CACHE_TTL_METADATA) ?? this.http.ttl,
        name: read<CacheKeyName>(CACHE_KEY_METADATA),
        vary: [
          ...new Set([
            ...(this.http.vary ?? []).map((header) => header.toLowerCase()),
            ...this.reflector.getAllAndMerge<string[]>(CACHE_VARY_METADATA, targets),
          ]),
        ],
        identify: read<IdentifyUser>(CACHE_PER_USER_METADATA),
        isPublic: read<boolean>(CACHE_PUBLIC_METADATA) === true,
        sendsItself: sendsResponseItself(controller, handler),
        version: versionOf(handler, controller),
      };
      byHandler.set(handler, policy);
    }
    return policy;
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
      this.logger.error(
        messages.keyBuilderFailed(error instanceof Error ? error.message : String(error)),
      );
      return undefined;
    }
  }

  /** A MISS that neither leads nor stores: the handler answers this request only. */
  private passThrough(request: object, response: unknown, next: CallHandler): Observable<unknown> {
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
    next: CallHandler,
    lead: Lead<CachedResponse> | undefined,
  ): Observable<unknown> {
    const { request, response } = requestAndResponse(context);
    this.mark(response, 'MISS');
    const replayAs = this.replayAs(context);
    const raw = rawOf(response);
    // In byte mode the entry keeps the bytes the client received, recorded as they are sent.
    const sentBody = replayAs === 'bytes' ? new SentBody(raw, MAX_RECORDED_BODY_BYTES) : undefined;
    let settled = false;
    const settle = async (entry: CachedResponse | undefined, sent: boolean) => {
      if (settled) return;
      settled = true;
      raw.off('finish', onFinish).off('close', onClose);
      sentBody?.restore();
      // The waiting requests replay it now, without waiting for the write.
      if (entry) lead?.land({ kind: 'value', value: entry });
      // A 304 answers this request's If-None-Match only: a follower may lead the next run.
      else lead?.land({ kind: sent && response.statusCode !== 304 ? 'unshareable' : 'empty' });
      if (entry) await this.write(context, key, entry);
      lead?.end();
    };
    let body: CachedBody | typeof AS_SENT | undefined;
    // Headers set before the handler (middleware, hooks) are set again on every request: see storedHeaders.
    const before = headersNow(response.getHeaders());
    const onFinish = () => {
      let entry: CachedResponse | undefined;
      try {
        const stored = body === AS_SENT ? this.sentText(context, response, sentBody!) : body;
        entry = this.storable(context, response, stored, before);
      } catch (error) {
        // A throwing isResponseCacheable() override, say: the response is served, not stored.
        this.warnOnce(
          context,
          messages.responseNotStored(
            pathOf(request),
            error instanceof Error ? error.message : String(error),
          ),
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
        next: (value) => (body = this.cachedBody(value, replayAs)),
        // A failure is never stored: the flight ends now, before the error response is even sent,
        // so a retry of this very request (a retry interceptor outside) does not wait on it.
        error: () => void settle(undefined, true),
      }),
    );
  }

  /**
   * The body of a byte-mode entry: the text the client received, or undefined when it cannot be
   * replayed as text exactly (over MAX_RECORDED_BODY_BYTES, not UTF-8, or encoded after the
   * handler, by a compression hook, say: the route then stores values from its next MISS on).
   */
  private sentText(
    context: ExecutionContext,
    response: any,
    sentBody: SentBody,
  ): CachedBody | undefined {
    const encoding = response.getHeader('content-encoding');
    if (encoding !== undefined && String(encoding).toLowerCase() !== 'identity') {
      this.policyFor(context).replayAs = 'value';
      this.warnOnce(
        context,
        messages.encodedAfterHandler(pathOf(context.switchToHttp().getRequest())),
      );
      return undefined;
    }
    const bytes = sentBody.bytes();
    if (bytes === undefined) return undefined;
    const text = bytes.toString('utf8');
    return Buffer.from(text).equals(bytes) ? { text } : undefined;
  }

  /** The entry to store for the response that was sent, or undefined when it may not be stored. */
  private storable(
    context: ExecutionContext,
    response: any,
    body: CachedBody | undefined,
    before: Record<string, unknown>,
  ) {
    const sent: SentResponse = {
      status: response.statusCode,
      headers: response.getHeaders(),
      body,
    };
    const policy = this.policyFor(context);
    if (!policy.vary.includes('accept-encoding') && variesOn(sent.headers, 'accept-encoding')) {
      // The body depends on the encoding the client accepts (a compression step, or the handler):
      // from now on the route is keyed by it, so each encoding has an entry of its own.
      policy.vary.push('accept-encoding');
      this.warnOnce(
        context,
        messages.keyedOnAcceptEncoding(pathOf(context.switchToHttp().getRequest())),
      );
      return undefined;
    }
    const why = this.isResponseCacheable(sent, context);
    if (why === undefined && body !== undefined) {
      return {
        status: sent.status,
        headers: storedHeaders(sent.headers, body, before),
        body,
        storedAt: Date.now(),
      };
    }
    if (why?.includes('varies')) {
      this.warnOnce(
        context,
        messages.responseNotStored(pathOf(context.switchToHttp().getRequest()), why),
      );
    }
    return undefined;
  }

  private async write(
    context: ExecutionContext,
    key: string,
    entry: CachedResponse,
  ): Promise<void> {
    try {
      await this.cache.set(key, entry, this.policyFor(context).ttl);
    } catch (error) {
      // A value the serializer cannot store exactly (a class instance, say) is served, not cached.
      this.warnOnce(
        context,
        messages.responseNotStored(
          pathOf(context.switchToHttp().getRequest()),
          error instanceof Error ? error.message : String(error),
        ),
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
      // Nest runs global interceptors, then the controller's, then the route's, outermost first.
      const outermost = [
        ...this.appConfig.getGlobalInterceptors(),
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
  private bodyOf(entry: unknown): unknown {
    if (!isCachedResponse(entry)) return NOT_REPLAYABLE;
    if ('text' in entry.body) return entry.body.text;
    try {
      return this.cache.serializer.deserialize(entry.body.value);
    } catch {
      return NOT_REPLAYABLE;
    }
  }

  private replay(response: unknown, entry: CachedResponse, body: unknown): unknown {
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
      String(Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1_000))),
    );
    this.mark(response, 'HIT');
    return body;
  }

  private mark(response: unknown, status: CacheStatus): void {
    this.adapterHost.httpAdapter.setHeader(response, 'x-cache', status);
  }

  private warnOnce(context: ExecutionContext, message: string): void {
    const policy = this.policyFor(context);
    if (this.warned.has(policy)) return;
    this.warned.add(policy);
    this.logger.warn(message);
  }
}

const NOT_REPLAYABLE = Symbol('nest-cache:not-replayable');

/** A byte-mode body before it is sent: the entry will keep the bytes sent (see sentText). */
const AS_SENT = Symbol('nest-cache:as-sent');

/** Whether `value` has the shape of an entry storable() made: anything else is never replayed. */
function isCachedResponse(value: unknown): value is CachedResponse {
  if (value === null || typeof value !== 'object') return false;
  const { status, headers, body, storedAt } = value as Partial<CachedResponse>;
  return (
    typeof status === 'number' &&
    Number.isInteger(status) &&
    status >= 100 &&
    status <= 599 &&
    isHeaderRecord(headers) &&
    typeof body === 'object' &&
    body !== null &&
    (('text' in body && typeof body.text === 'string') ||
      ('value' in body && body.value instanceof Uint8Array)) &&
    typeof storedAt === 'number' &&
    Number.isFinite(storedAt)
  );
}

function isHeaderRecord(headers: unknown): headers is Record<string, string | string[]> {
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return false;
  for (const value of Object.values(headers)) {
    if (typeof value === 'string') continue;
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) return false;
  }
  return true;
}

function requestAndResponse(context: ExecutionContext): { request: any; response: any } {
  const http = context.switchToHttp();
  return { request: http.getRequest(), response: http.getResponse() };
}

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
 * controller's. Handlers of other versions answer the same path, so the version joins the key.
 */
function versionOf(handler: object, controller: object): string | undefined {
  const version: unknown =
    Reflect.getMetadata(VERSION_METADATA, handler) ??
    Reflect.getMetadata(VERSION_METADATA, controller);
  if (version === undefined) return undefined;
  const versions = Array.isArray(version) ? version : [version];
  return versions.map((v) => (v === VERSION_NEUTRAL ? 'neutral' : String(v))).join(',');
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
  return http;
}
