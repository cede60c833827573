import {
  BadRequestException,
  Body,
  Controller,
  Delete,
  Get,
  Param,
  Post,
  Put,
  UseInterceptors,
} from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import {
  type BaseCacheOptions,
  CacheEvict,
  CacheInterceptor,
  CacheTags,
  DriverCache,
  MemoryDriver,
} from '../../lib/index.js';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  usePrivateMemcached,
} from './support/app.js';
import { HandlerCalls } from './support/controllers.js';
import { json, nothingInFlight, pollUntil, type Reply } from './support/http.js';

// Routes tagged with @CacheTags, and mutations under @CacheEvict that end their entries once they
// succeed: end to end, on both platforms and both backends.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

/** A catalogue whose GETs are cached and tagged, and whose mutations evict them. */
@Controller('products')
@UseInterceptors(CacheInterceptor)
class ProductsController {
  /** Per app: each test starts a fresh app, so a fresh controller. */
  private readonly names = new Map<string, string>([
    ['1', 'pen'],
    ['2', 'ink'],
  ]);

  constructor(private readonly calls: HandlerCalls) {}

  @Get()
  @CacheTags('products')
  list() {
    return { run: this.calls.ran('list'), names: [...this.names.values()] };
  }

  @Get(':id')
  @CacheTags((req: { params: { id: string } }) => [`product:${req.params.id}`])
  one(@Param('id') id: string) {
    return { run: this.calls.ran(`one:${id}`), id, name: this.names.get(id) ?? null };
  }

  /** Static tags. */
  @Post()
  @CacheEvict({ tags: ['products'] })
  create(@Body() body: { id: string; name: string }) {
    this.names.set(body.id, body.name);
    return { created: body.id };
  }

  /** Tags built from the request. */
  @Put(':id')
  @CacheEvict({ tags: (req: { params: { id: string } }) => [`product:${req.params.id}`] })
  rename(@Param('id') id: string, @Body() body: { name: string }) {
    this.names.set(id, body.name);
    return { renamed: id };
  }

  /** Keys built from the request: the default key of GET /products/:id. */
  @Delete(':id')
  @CacheEvict({
    keys: (req: { params: { id: string } }) => [`http:GET:/products/${req.params.id}?`],
  })
  remove(@Param('id') id: string) {
    this.names.delete(id);
    return { removed: id };
  }

  @Post('clear-all')
  @CacheEvict({ all: true })
  clearAll() {
    this.names.clear();
    return { cleared: true };
  }

  /** Tags built from the request's body. */
  @Post('rename')
  @CacheEvict({ tags: (req: { body: { id: string } }) => [`product:${req.body.id}`] })
  renameByBody(@Body() body: { id: string; name: string }) {
    this.names.set(body.id, body.name);
    return { renamed: body.id };
  }

  /** A mutation whose @CacheEvict tags builder throws. */
  @Post(':id/unevictable')
  @CacheEvict({
    tags: () => {
      throw new Error('no tags today');
    },
  })
  unevictable(@Param('id') id: string) {
    this.names.set(id, 'renamed');
    return { renamed: id };
  }

  /** A mutation refused by the handler (4xx). */
  @Post(':id/rejected')
  @CacheEvict({ tags: (req: { params: { id: string } }) => [`product:${req.params.id}`] })
  rejected(@Param('id') id: string) {
    this.names.set(id, 'half-written');
    throw new BadRequestException('no');
  }

  /** A mutation whose handler fails (5xx). */
  @Post(':id/broken')
  @CacheEvict({ tags: (req: { params: { id: string } }) => [`product:${req.params.id}`] })
  broken(@Param('id') id: string) {
    this.names.set(id, 'half-written');
    throw new Error('the handler failed');
  }
}

/** @CacheTags builders that fail: each request is served without the cache. */
@Controller('bad-tags')
@UseInterceptors(CacheInterceptor)
class BadTagsController {
  constructor(private readonly calls: HandlerCalls) {}

  @Get('throws')
  @CacheTags(() => {
    throw new Error('no tags today');
  })
  throws() {
    return { run: this.calls.ran('throws') };
  }

  @Get('not-an-array')
  @CacheTags((() => 'products') as unknown as () => string[])
  notAnArray() {
    return { run: this.calls.ran('not-an-array') };
  }

  @Get('empty-tag')
  @CacheTags(() => [''])
  emptyTag() {
    return { run: this.calls.ran('empty-tag') };
  }

  @Get('not-strings')
  @CacheTags((() => [7, null]) as unknown as () => string[])
  notStrings() {
    return { run: this.calls.ran('not-strings') };
  }
}

const put = (name: string): RequestInit => ({
  method: 'PUT',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ name }),
});
const post = (body?: unknown): RequestInit => ({
  method: 'POST',
  ...(body !== undefined && {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  }),
});

const summary = (reply: Reply) => [reply.status, reply.cache, json(reply)];

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();
    const startApp = (clock?: { now(): number }) =>
      start({
        adapter,
        controllers: [ProductsController, BadTagsController],
        cache: { ...backend.options(), ...(clock && { clock }) },
      });

    it('@CacheEvict({ tags: [static] }): after the POST succeeds, the next GET of a tagged route is a MISS with the new data', async () => {
      const { send } = await startApp();

      await send('/products');
      const cached = await send('/products');
      const created = await send('/products', post({ id: '3', name: 'nib' }));
      const after = await send('/products');

      expect(cached.cache).toBe('HIT');
      expect(created.status).toBe(201);
      expect(summary(after)).toEqual([200, 'MISS', { run: 2, names: ['pen', 'ink', 'nib'] }]);
    });

    it('@CacheEvict({ tags: (req) => ... }): a PUT ends the entry of that product only', async () => {
      const { send } = await startApp();

      await send('/products/1');
      await send('/products/2');
      const renamed = await send('/products/1', put('quill'));
      const one = await send('/products/1');
      const other = await send('/products/2');

      expect(renamed.status).toBe(200);
      expect(summary(one)).toEqual([200, 'MISS', { run: 2, id: '1', name: 'quill' }]);
      expect(summary(other)).toEqual([200, 'HIT', { run: 1, id: '2', name: 'ink' }]);
    });

    it('@CacheEvict({ keys: (req) => ... }): a DELETE ends the entry under that key only', async () => {
      const { send } = await startApp();

      await send('/products/1');
      await send('/products/2');
      const removed = await send('/products/1', { method: 'DELETE' });
      const one = await send('/products/1');
      const other = await send('/products/2');

      expect(removed.status).toBe(200);
      expect(summary(one)).toEqual([200, 'MISS', { run: 2, id: '1', name: null }]);
      expect(summary(other)).toEqual([200, 'HIT', { run: 1, id: '2', name: 'ink' }]);
    });

    it('@CacheEvict({ all: true }): after the POST, every cached route is a MISS', async () => {
      const { send } = await startApp();

      await send('/products');
      await send('/products/2');
      const cleared = await send('/products/clear-all', post());
      const list = await send('/products');
      const one = await send('/products/2');

      expect(cleared.status).toBe(201);
      expect(summary(list)).toEqual([200, 'MISS', { run: 2, names: [] }]);
      expect(summary(one)).toEqual([200, 'MISS', { run: 2, id: '2', name: null }]);
    });

    it('@CacheEvict({ tags: (req) => ... }) can build the tags from the request body', async () => {
      const { send } = await startApp();

      await send('/products/2');
      const renamed = await send('/products/rename', post({ id: '2', name: 'ink (blue)' }));
      const after = await send('/products/2');

      expect(renamed.status).toBe(201);
      expect(summary(after)).toEqual([200, 'MISS', { run: 2, id: '2', name: 'ink (blue)' }]);
    });

    it('a @CacheEvict builder that throws fails nothing: the mutation succeeds, and nothing is evicted', async () => {
      const { send } = await startApp();

      await send('/products/1');
      const renamed = await send('/products/1/unevictable', post());
      const after = await send('/products/1');

      expect([renamed.status, json(renamed)]).toEqual([201, { renamed: '1' }]);
      expect(summary(after)).toEqual([200, 'HIT', { run: 1, id: '1', name: 'pen' }]);
    });

    it('a mutation whose handler throws a 4xx evicts nothing: the GET stays a HIT', async () => {
      const { send } = await startApp();

      await send('/products/1');
      const rejected = await send('/products/1/rejected', post());
      const after = await send('/products/1');

      expect(rejected.status).toBe(400);
      expect(summary(after)).toEqual([200, 'HIT', { run: 1, id: '1', name: 'pen' }]);
    });

    it('a mutation whose handler throws (a 500) evicts nothing: the GET stays a HIT', async () => {
      const { send } = await startApp();

      await send('/products/1');
      const broken = await send('/products/1/broken', post());
      const after = await send('/products/1');

      expect(broken.status).toBe(500);
      expect(summary(after)).toEqual([200, 'HIT', { run: 1, id: '1', name: 'pen' }]);
    });

    it('the response run again after an eviction is cached again, even when the clock has not moved since', async () => {
      const now = Date.now();
      const { send, cache } = await startApp({ now: () => now });

      await send('/products/1');
      await nothingInFlight(cache, 2_000); // stored, and its tag recorded
      await send('/products/1', put('quill'));
      const rerun = await send('/products/1');
      const after = await send('/products/1');

      expect(summary(rerun)).toEqual([200, 'MISS', { run: 2, id: '1', name: 'quill' }]);
      expect(summary(after)).toEqual([200, 'HIT', { run: 2, id: '1', name: 'quill' }]);
    });

    it.each([
      ['throws', 'throws'],
      ['returns a string, not an array', 'not-an-array'],
      ['returns an empty tag', 'empty-tag'],
      ['returns tags that are not strings', 'not-strings'],
    ])(
      'a @CacheTags builder that %s bypasses the cache (X-Cache: BYPASS, 200), never a 5xx',
      async (_what, route) => {
        const { send, calls } = await startApp();

        const first = await send(`/bad-tags/${route}`);
        const second = await send(`/bad-tags/${route}`);

        expect(summary(first)).toEqual([200, 'BYPASS', { run: 1 }]);
        expect(summary(second)).toEqual([200, 'BYPASS', { run: 2 }]);
        expect(calls.of(route)).toBe(2);
      },
    );
  });
});

/** A memory backend whose tag invalidations wait until the test releases them (a slow Redis). */
class HeldInvalidationsCache extends DriverCache {
  readonly held: (() => void)[] = [];
  constructor(options: BaseCacheOptions) {
    super((context) => {
      const driver = new MemoryDriver({}, context.clock);
      const invalidateTags = driver.invalidateTags.bind(driver);
      return Object.assign(driver, {
        invalidateTags: async (keys: string[], at: number, keepMs: number) => {
          await new Promise<void>((resolve) => this.held.push(resolve));
          invalidateTags(keys, at, keepMs);
        },
      });
    }, options);
  }
  release(): void {
    for (const release of this.held.splice(0)) release();
  }
}

describe.each(ADAPTERS)('on $name, with tag invalidations that take long', (adapter) => {
  const start = useApps();

  it('the response of a @CacheEvict mutation is sent only once the eviction is done: a GET sent right after it is a MISS', async () => {
    const app = await start({
      adapter,
      controllers: [ProductsController],
      cache: { backend: HeldInvalidationsCache },
    });
    const cache = app.cache as HeldInvalidationsCache;

    await app.send('/products/1');
    let answered = false;
    const renaming = app.send('/products/1', put('quill')).then((reply) => {
      answered = true;
      return reply;
    });
    try {
      await pollUntil('the invalidation to start', async () => cache.held.length === 1, 2_000, 5);
      const answeredWhileHeld = answered;
      cache.release();
      const renamed = await renaming;
      const after = await app.send('/products/1');

      expect(answeredWhileHeld).toBe(false);
      expect(renamed.status).toBe(200);
      expect(summary(after)).toEqual([200, 'MISS', { run: 2, id: '1', name: 'quill' }]);
    } finally {
      cache.release();
    }
  });
});
