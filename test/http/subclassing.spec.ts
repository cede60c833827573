import {
  Controller,
  type ExecutionContext,
  Get,
  Header,
  Injectable,
  Param,
  UseInterceptors,
} from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { CacheInterceptor, type SentResponse } from '../../lib/index.js';
import { ADAPTERS, useApps } from './support/app.js';
import { HandlerCalls } from './support/controllers.js';

/** Keys by tenant (a header) on top of the default key, through the protected hook. */
@Injectable()
class TenantCacheInterceptor extends CacheInterceptor {
  protected override trackBy(context: ExecutionContext): string | undefined {
    const tenant = context.switchToHttp().getRequest().headers['x-tenant'];
    const key = super.trackBy(context);
    return tenant === undefined || key === undefined ? undefined : `tenant=${tenant}:${key}`;
  }
}

/** Never caches requests marked as previews, whatever else holds. */
@Injectable()
class NoPreviewInterceptor extends CacheInterceptor {
  protected override isRequestCacheable(context: ExecutionContext): boolean {
    return (
      context.switchToHttp().getRequest().headers['x-preview'] === undefined &&
      super.isRequestCacheable(context)
    );
  }
}

/** Also refuses responses the handler marks as drafts. */
@Injectable()
class NoDraftInterceptor extends CacheInterceptor {
  protected override isResponseCacheable(
    sent: SentResponse,
    context: ExecutionContext,
  ): string | undefined {
    return sent.headers['x-draft'] !== undefined
      ? 'it is a draft'
      : super.isResponseCacheable(sent, context);
  }
}

@Controller('tenant')
@UseInterceptors(TenantCacheInterceptor)
class TenantController {
  constructor(private readonly calls: HandlerCalls) {}
  @Get(':id') one(@Param('id') id: string) {
    return { id, run: this.calls.ran('tenant') };
  }
}

@Controller('preview')
@UseInterceptors(NoPreviewInterceptor)
class PreviewController {
  constructor(private readonly calls: HandlerCalls) {}
  @Get() one() {
    return { run: this.calls.ran('preview') };
  }
}

@Controller('draft')
@UseInterceptors(NoDraftInterceptor)
class DraftController {
  constructor(private readonly calls: HandlerCalls) {}
  @Get() @Header('x-draft', '1') one() {
    return { run: this.calls.ran('draft') };
  }
}

@Controller('varies')
@UseInterceptors(CacheInterceptor)
class VariesController {
  constructor(private readonly calls: HandlerCalls) {}
  @Get() @Header('vary', 'x-flavour') one() {
    return { run: this.calls.ran('varies') };
  }
}

describe.each(ADAPTERS)('on $name', (adapter) => {
  const start = useApps();

  it('a subclass can key by tenant with trackBy: tenants never share an entry', async () => {
    const { send, calls } = await start({ adapter, controllers: [TenantController] });
    await send('/tenant/1', { headers: { 'x-tenant': 'a' } });
    const otherTenant = await send('/tenant/1', { headers: { 'x-tenant': 'b' } });
    const sameTenant = await send('/tenant/1', { headers: { 'x-tenant': 'a' } });
    expect(otherTenant.cache).toBe('MISS');
    expect(sameTenant.cache).toBe('HIT');
    expect(calls.of('tenant')).toBe(2);
  });

  it('a subclass trackBy returning undefined bypasses the cache', async () => {
    const { send, calls } = await start({ adapter, controllers: [TenantController] });
    const first = await send('/tenant/1');
    await send('/tenant/1');
    expect(first.cache).toBe('BYPASS');
    expect(calls.of('tenant')).toBe(2);
  });

  it('a subclass can refuse requests with isRequestCacheable', async () => {
    const { send, calls } = await start({ adapter, controllers: [PreviewController] });
    await send('/preview');
    const preview = await send('/preview', { headers: { 'x-preview': '1' } });
    const normal = await send('/preview');
    expect(preview.cache).toBe('BYPASS');
    expect(normal.cache).toBe('HIT');
    expect(calls.of('preview')).toBe(2);
  });

  it('a subclass can refuse responses with isResponseCacheable', async () => {
    const { send, calls } = await start({ adapter, controllers: [DraftController] });
    await send('/draft');
    const second = await send('/draft');
    expect(second.cache).toBe('MISS');
    expect(calls.of('draft')).toBe(2);
  });

  it('a response that varies on a header the key does not include is not stored', async () => {
    const { send, calls } = await start({ adapter, controllers: [VariesController] });
    await send('/varies');
    const second = await send('/varies');
    expect(second.cache).toBe('MISS');
    expect(calls.of('varies')).toBe(2);
  });

  it('a response that varies on a header the key includes is stored per value', async () => {
    const { send, calls } = await start({
      adapter,
      controllers: [VariesController],
      cache: { http: { vary: ['x-flavour'] } },
    });
    await send('/varies', { headers: { 'x-flavour': 'salt' } });
    const salt = await send('/varies', { headers: { 'x-flavour': 'salt' } });
    const sweet = await send('/varies', { headers: { 'x-flavour': 'sweet' } });
    expect(salt.cache).toBe('HIT');
    expect(sweet.cache).toBe('MISS');
    expect(calls.of('varies')).toBe(2);
  });
});
