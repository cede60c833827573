import {
  Controller,
  Get,
  Header,
  type INestApplication,
  Req,
  Res,
  UseInterceptors,
  Version,
} from '@nestjs/common';
import { CacheInterceptor, CachePerUser } from '../../../lib/index.js';
import { HttpAdapterHost } from '@nestjs/core';
import { HandlerCalls } from './controllers.js';
import { sleep } from './http.js';

interface HeadersOf {
  headers: Record<string, string | string[] | undefined>;
}

const header = (request: HeadersOf, name: string) => request.headers[name] as string | undefined;

/** A record with a field that a serialization hook of the app masks. */
@Controller('secrets')
@UseInterceptors(CacheInterceptor)
export class SecretsController {
  constructor(private readonly calls: HandlerCalls) {}

  /** The same body on every run, so a revalidation matches its ETag. */
  @Get('stable')
  stable() {
    this.calls.ran('stable');
    return { name: 'Ann' };
  }

  @Get('me')
  me() {
    return { run: this.calls.ran('secrets'), name: 'Ann', ssn: '123-45-6789' };
  }
}

/** One path, two handlers: version 1 and version 2 (header, media-type or URI versioning). */
@Controller('catalog')
@UseInterceptors(CacheInterceptor)
export class VersionedController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get()
  @Version('1')
  v1() {
    return { version: 1, run: this.calls.ran('v1') };
  }

  @Get()
  @Version('2')
  v2() {
    return { version: 2, run: this.calls.ran('v2') };
  }
}

/** Routes cached per user, with identify functions of every kind. */
@Controller('who')
@UseInterceptors(CacheInterceptor)
export class IdentityController {
  constructor(private readonly calls: HandlerCalls) {}

  /** The user is the bearer token's name: '' for `Bearer ` alone, undefined without the header. */
  @Get('bearer')
  @CachePerUser((ctx) => {
    const value = header(ctx.switchToHttp().getRequest(), 'authorization');
    return value?.startsWith('Bearer ') ? value.slice(7) : undefined;
  })
  bearer(@Req() request: HeadersOf) {
    return { run: this.calls.ran('bearer'), auth: header(request, 'authorization') ?? null };
  }

  /** A numeric id, as `req.user?.id` usually is. */
  @Get('numeric')
  @CachePerUser((ctx) => {
    const value = header(ctx.switchToHttp().getRequest(), 'x-user-id');
    return value === undefined ? undefined : Number(value);
  })
  numeric(@Req() request: HeadersOf) {
    return { run: this.calls.ran('numeric'), id: header(request, 'x-user-id') ?? null };
  }

  @Get('throws')
  @CachePerUser(() => {
    throw new Error('no session store');
  })
  throws() {
    return { run: this.calls.ran('throws') };
  }
}

/** Headers the handler sets (one per run), beside those a middleware or hook sets before it. */
@Controller('headers')
@UseInterceptors(CacheInterceptor)
export class HeadersController {
  constructor(
    private readonly calls: HandlerCalls,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  @Get()
  @Header('x-decorated', 'yes')
  handler(@Res({ passthrough: true }) response: unknown) {
    const run = this.calls.ran('headers');
    this.adapterHost.httpAdapter.setHeader(response, 'x-handler-run', String(run));
    return { run };
  }
}

/** A handler whose body depends on Accept-Encoding, and says so; slow, so a burst shares a flight. */
@Controller('encoding')
@UseInterceptors(CacheInterceptor)
export class EncodingController {
  constructor(
    private readonly calls: HandlerCalls,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  @Get()
  async encoding(@Req() request: HeadersOf, @Res({ passthrough: true }) response: unknown) {
    this.adapterHost.httpAdapter.setHeader(response, 'Vary', 'Accept-Encoding');
    const run = this.calls.ran('encoding');
    await sleep(100);
    return { run, encoding: header(request, 'accept-encoding') ?? null };
  }
}

/** What maskSsn() puts in place of a social security number. */
export const MASK = '***-**-****';

/** Masks `ssn` the way each framework lets an app do it: a json replacer, a preSerialization hook. */
export function maskSsn(adapter: string) {
  return (app: INestApplication) => {
    const instance = app.getHttpAdapter().getInstance() as {
      set(name: string, value: unknown): void;
      addHook(name: string, hook: (...args: any[]) => unknown): void;
    };
    if (adapter === 'express') {
      instance.set('json replacer', (key: string, value: unknown) =>
        key === 'ssn' ? MASK : value,
      );
    } else {
      instance.addHook(
        'preSerialization',
        async (_req: unknown, _reply: unknown, payload: unknown) =>
          payload !== null && typeof payload === 'object' && 'ssn' in payload
            ? { ...payload, ssn: MASK }
            : payload,
      );
    }
  };
}
