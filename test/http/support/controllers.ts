import {
  type CallHandler,
  Controller,
  type ExecutionContext,
  Get,
  Header,
  HttpCode,
  Injectable,
  type NestInterceptor,
  NotFoundException,
  Param,
  Post,
  Query,
  Req,
  Res,
  StreamableFile,
  UseInterceptors,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { map, type Observable } from 'rxjs';
import {
  CacheInterceptor,
  CacheKey,
  CachePerUser,
  CachePublic,
  CacheTTL,
  CacheVary,
  NoCache,
} from '../../../lib/index.js';
import { sleep } from './http.js';

/** How long the slow routes take: long enough that a burst of requests all arrive before it ends. */
export const SLOW_HANDLER_MS = 300;

/** How many times each handler ran, per app (each test starts a fresh app, so counts start at 0). */
@Injectable()
export class HandlerCalls {
  private readonly counts = new Map<string, number>();

  /** Counts one run of `route`; returns the count, so bodies show which run produced them. */
  ran(route: string): number {
    const count = (this.counts.get(route) ?? 0) + 1;
    this.counts.set(route, count);
    return count;
  }

  of(route: string): number {
    return this.counts.get(route) ?? 0;
  }
}

interface HeadersOf {
  headers: Record<string, string | string[] | undefined>;
}

/** The user a request's `Authorization: Bearer <user>` names, if any. */
function bearerUser(request: HeadersOf): string | undefined {
  const header = request.headers.authorization;
  return typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : undefined;
}

/** Ordinary cacheable routes, cached by a controller-level interceptor. */
@Controller('items')
@UseInterceptors(CacheInterceptor)
export class ItemsController {
  constructor(
    private readonly calls: HandlerCalls,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  @Get()
  list(@Query() query: Record<string, unknown>) {
    return { run: this.calls.ran('list'), query };
  }

  @Get('text')
  text() {
    return `plain text, run ${this.calls.ran('text')}`;
  }

  /** Sets a header with @Header and another through the response (passthrough). */
  @Get('counted')
  @Header('X-Total-Count', '42')
  counted(@Res({ passthrough: true }) response: unknown) {
    this.adapterHost.httpAdapter.setHeader(response, 'X-Page', '1');
    return [{ run: this.calls.ran('counted') }];
  }

  /** Answers 203 by setting the status on the response (passthrough), not with @HttpCode. */
  @Get('non-authoritative')
  nonAuthoritative(@Res({ passthrough: true }) response: unknown) {
    this.adapterHost.httpAdapter.status(response, 203);
    return { run: this.calls.ran('non-authoritative') };
  }

  @Get('lang')
  lang(@Req() request: HeadersOf) {
    return { run: this.calls.ran('lang'), lang: request.headers['accept-language'] ?? null };
  }

  @Get('slow')
  async slow() {
    const run = this.calls.ran('slow');
    await sleep(SLOW_HANDLER_MS);
    return { run };
  }

  @Get(':id')
  one(@Param('id') id: string) {
    return { run: this.calls.ran('one'), id };
  }

  @Post()
  create() {
    return { run: this.calls.ran('create') };
  }
}

/** Routes whose responses must never be stored. */
@Controller('unstorable')
@UseInterceptors(CacheInterceptor)
export class UnstorableController {
  constructor(
    private readonly calls: HandlerCalls,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  @Get('cookie')
  cookie(@Res({ passthrough: true }) response: unknown) {
    this.adapterHost.httpAdapter.setHeader(response, 'Set-Cookie', 'session=abc; HttpOnly');
    return { run: this.calls.ran('cookie') };
  }

  @Get('private')
  @Header('Cache-Control', 'private, max-age=60')
  private() {
    return { run: this.calls.ran('private') };
  }

  @Get('no-store')
  @Header('Cache-Control', 'no-store')
  noStore() {
    return { run: this.calls.ran('no-store') };
  }

  @Get('no-cache')
  @Header('Cache-Control', 'no-cache')
  noCache() {
    return { run: this.calls.ran('no-cache') };
  }

  @Get('vary-star')
  @Header('Vary', '*')
  varyStar() {
    return { run: this.calls.ran('vary-star') };
  }

  @Get('created')
  @HttpCode(201)
  created() {
    return { run: this.calls.ran('created') };
  }

  @Get('not-found')
  notFound() {
    this.calls.ran('not-found');
    throw new NotFoundException('no such thing');
  }

  @Get('boom')
  boom() {
    this.calls.ran('boom');
    throw new Error('the handler failed');
  }

  @Get('file')
  file() {
    return new StreamableFile(Buffer.from(`file, run ${this.calls.ran('file')}`), {
      type: 'text/plain',
    });
  }

  /** Sends the response itself (@Res() without passthrough). */
  @Get('raw')
  raw(@Res() response: unknown) {
    this.adapterHost.httpAdapter.reply(response, { run: this.calls.ran('raw') }, 200);
  }

  /** Sends the response itself and also returns it (a body that would pass any size check). */
  @Get('raw-and-returned')
  rawAndReturned(@Res() response: unknown) {
    const body = { run: this.calls.ran('raw-and-returned') };
    this.adapterHost.httpAdapter.reply(response, body, 200);
    return body;
  }

  /** Sets a cookie, slowly: the leader of a burst whose response may not be shared. */
  @Get('slow-cookie')
  async slowCookie(@Res({ passthrough: true }) response: unknown) {
    const run = this.calls.ran('slow-cookie');
    this.adapterHost.httpAdapter.setHeader(response, 'Set-Cookie', `session=${run}`);
    await sleep(SLOW_HANDLER_MS);
    return { run };
  }

  /** Fails on its first run only, slowly. */
  @Get('slow-flaky')
  async slowFlaky() {
    const run = this.calls.ran('slow-flaky');
    await sleep(SLOW_HANDLER_MS);
    if (run === 1) throw new Error('the first run fails');
    return { run };
  }
}

/** Routes that carry credentials, with each way of opting them into the cache. */
@Controller('me')
@UseInterceptors(CacheInterceptor)
export class CredentialsController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get('default')
  byDefault() {
    return { run: this.calls.ran('default') };
  }

  @Get('vary')
  @CacheVary('authorization')
  vary(@Req() request: HeadersOf) {
    return { run: this.calls.ran('vary'), user: bearerUser(request) ?? null };
  }

  @Get('per-user')
  @CachePerUser((context) => bearerUser(context.switchToHttp().getRequest<HeadersOf>()))
  perUser(@Req() request: HeadersOf) {
    return { run: this.calls.ran('per-user'), user: bearerUser(request) ?? null };
  }

  @Get('public')
  @CachePublic()
  public() {
    return { run: this.calls.ran('public') };
  }
}

/** Routes with per-route decorators. */
@Controller('policy')
@UseInterceptors(CacheInterceptor)
export class PolicyController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get('ttl-string')
  @CacheTTL('400ms')
  ttlString() {
    return { run: this.calls.ran('ttl-string') };
  }

  /** A number is seconds: 0.4 is 400 ms. */
  @Get('ttl-number')
  @CacheTTL(0.4)
  ttlNumber() {
    return { run: this.calls.ran('ttl-number') };
  }

  @Get('never')
  @NoCache()
  never() {
    return { run: this.calls.ran('never') };
  }

  @Get('users/:id')
  @CacheKey('user')
  user(@Param('id') id: string) {
    return { run: this.calls.ran('user'), id };
  }
}

/** A controller with no interceptor of its own: cached only when CacheInterceptor is app-wide. */
@Controller('plain')
export class PlainController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get()
  plain() {
    return { run: this.calls.ran('plain') };
  }
}

/** A global interceptor (outside CacheInterceptor) that wraps every body in `{ data }`. */
export class WrapInDataInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((data) => ({ data })));
  }
}

/**
 * A global interceptor that masks the digits of every `card` field: the body changes, its length
 * does not (like a redacting serializer).
 */
export class MaskCardInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next
      .handle()
      .pipe(
        map((body) =>
          body !== null && typeof body === 'object' && 'card' in body
            ? { ...body, card: String(body.card).replace(/\d/g, '*') }
            : body,
        ),
      );
  }
}

/** A route returning a card number, behind a controller-level CacheInterceptor. */
@Controller('cards')
@UseInterceptors(CacheInterceptor)
export class CardsController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get('mine')
  mine() {
    return { run: this.calls.ran('card'), card: '4111-1111' };
  }
}

/**
 * A global interceptor that changes the handler's object in place, per request: it stamps who is
 * asking (header x-user) into the body. What the cache stored must not carry one user's stamp.
 */
export class StampViewerInPlaceInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const viewer = context.switchToHttp().getRequest().headers['x-user'];
    return next.handle().pipe(
      map((body) => {
        if (body !== null && typeof body === 'object') Object.assign(body, { viewer });
        return body;
      }),
    );
  }
}

/** A DTO class, as a ClassSerializerInterceptor outside the cache would shape it. */
export class ProfileDto {
  constructor(
    readonly name: string,
    readonly run: number,
  ) {}
}

/** Returns a class instance, behind a controller-level CacheInterceptor. */
@Controller('profiles')
@UseInterceptors(CacheInterceptor)
export class ProfilesController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get('mine')
  mine() {
    return new ProfileDto('ada', this.calls.ran('profile'));
  }
}
