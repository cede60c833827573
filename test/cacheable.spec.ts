import 'reflect-metadata';
import {
  Injectable,
  type INestApplication,
  Logger,
  Module,
  type OnApplicationBootstrap,
  Scope,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  BaseCache,
  CacheConfigError,
  CacheEvict,
  CacheModule,
  Cacheable,
  getCacheToken,
  InjectCache,
  InvalidKeyError,
  InvalidTagError,
  invalidateCacheable,
  UnkeyableArgumentError,
  UnserializableValueError,
} from '../lib/index.js';
import { freePort, usePrivateRedis } from './support/redis-server.js';
import { nothingInFlight } from './http/support/http.js';

let apps: INestApplication[] = [];
afterEach(async () => {
  for (const app of apps) await app.close();
  apps = [];
});

/** A real Nest application with the default cache (and whatever else `imports` adds). */
async function start(
  providers: unknown[],
  imports: unknown[] = [CacheModule.forRoot({})],
): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports, providers } as never).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  apps.push(app);
  await app.init();
  return app;
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

@Injectable()
class Reports {
  runs = 0;
  calls: unknown[][] = [];

  @Cacheable()
  async find(...args: unknown[]): Promise<{ run: number }> {
    this.runs += 1;
    this.calls.push(args);
    return { run: this.runs };
  }

  @Cacheable()
  double(n: number): number {
    this.runs += 1;
    return n * 2;
  }

  @Cacheable({ key: 'reports:all' })
  async all(filter?: string): Promise<string> {
    this.runs += 1;
    return `all ${filter ?? ''} #${this.runs}`;
  }

  @Cacheable({ key: (id: number) => `report:${id}`, ttl: 300 })
  async byId(id: number): Promise<string> {
    this.runs += 1;
    return `report ${id} #${this.runs}`;
  }

  @Cacheable({ tags: ['reports'] })
  async tagged(id: number): Promise<string> {
    this.runs += 1;
    return `tagged ${id} #${this.runs}`;
  }

  @Cacheable({ tags: (id: number) => [`report:${id}`] })
  async taggedById(id: number): Promise<string> {
    this.runs += 1;
    return `by id ${id} #${this.runs}`;
  }

  notCached(id: number): number {
    return id;
  }
}

const reports = async (imports?: unknown[]) => {
  const app = await start([Reports], imports);
  return { app, service: app.get(Reports), cache: app.get(BaseCache) };
};

describe('@Cacheable on a provider method', () => {
  it('the second call with equal arguments does not run the method', async () => {
    const { service } = await reports();
    expect(await service.find(1, 'a')).toEqual({ run: 1 });
    expect(await service.find(1, 'a')).toEqual({ run: 1 });
    expect(service.runs).toBe(1);
  });

  it('runs the method with its arguments and the instance as `this`', async () => {
    const { service } = await reports();
    await service.find(7, { q: 'x' });
    expect(service.calls).toEqual([[7, { q: 'x' }]]);
  });

  it('a synchronous method returns a Promise once wrapped, and is cached', async () => {
    const { service } = await reports();
    const first: unknown = service.double(21);
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toBe(42);
    expect(await service.double(21)).toBe(42);
    expect(service.runs).toBe(1);
  });

  it('the default key does not depend on the order of keys inside argument objects', async () => {
    const { service } = await reports();
    const first = await service.find({ a: 1, b: { c: 2, d: 3 } });
    const second = await service.find({ b: { d: 3, c: 2 }, a: 1 });
    expect(second).toEqual(first);
    expect(service.runs).toBe(1);
  });

  it('different arguments miss', async () => {
    const { service } = await reports();
    await service.find({ a: 1, b: 2 });
    await service.find({ a: 1, b: 3 });
    await service.find(1);
    await service.find('1');
    await service.find([1]);
    expect(service.runs).toBe(5);
  });

  it('trailing undefined arguments are one call with the shorter one', async () => {
    const { service } = await reports();
    await service.find(1);
    await service.find(1, undefined);
    expect(service.runs).toBe(1);
  });

  it('the same object passed twice (shared, not a cycle) is keyable', async () => {
    const { service } = await reports();
    const shared = { id: 1 };
    await service.find([shared, shared]);
    await service.find([{ id: 1 }, { id: 1 }]);
    expect(service.runs).toBe(1);
  });

  class Point {
    constructor(
      readonly x: number,
      readonly y: number,
    ) {}
  }
  const cycle: Record<string, unknown> = { id: 1 };
  cycle.self = cycle;

  it.each([
    ['a function', () => 1, /argument 1 is function/],
    ['a symbol', Symbol('s'), /argument 1 is symbol/],
    ['a class instance without toJSON', new Point(1, 2), /argument 1 is an instance of Point/],
    ['a Map', new Map([[1, 2]]), /argument 1 is an instance of Map/],
    ['a cycle', cycle, /argument 1\.self is a cycle/],
    [
      'a Map nested in an object',
      { filter: new Map() },
      /argument 1\.filter is an instance of Map/,
    ],
  ])(
    'an argument that is %s rejects with UnkeyableArgumentError naming the method and argument, without running it',
    async (_what, argument, where) => {
      const { service } = await reports();
      const call = service.find(argument);
      await expect(call).rejects.toThrow(UnkeyableArgumentError);
      await expect(call).rejects.toThrow(/Reports\.find/);
      await expect(call).rejects.toThrow(where);
      expect(service.runs).toBe(0);
    },
  );

  it('an unkeyable second argument is named as argument 2', async () => {
    const { service } = await reports();
    await expect(service.find(1, () => 2)).rejects.toThrow(/Reports\.find: its argument 2 is/);
  });

  it('a class instance with toJSON is keyed by what toJSON returns', async () => {
    class Money {
      constructor(
        readonly amount: number,
        readonly currency: string,
      ) {}
      toJSON() {
        return { amount: this.amount, currency: this.currency };
      }
    }
    const { service } = await reports();
    await service.find(new Money(5, 'EUR'));
    await service.find(new Money(5, 'EUR'));
    await service.find(new Money(6, 'EUR'));
    expect(service.runs).toBe(2);
  });

  it('a string key: every call shares one entry, stored at that key', async () => {
    const { service, cache } = await reports();
    expect(await service.all('x')).toBe('all x #1');
    expect(await service.all('y')).toBe('all x #1');
    expect(service.runs).toBe(1);
    expect(await cache.get('reports:all')).toBe('all x #1');
  });

  it('a key function: the entry is stored at the key it returns, with the ttl option', async () => {
    const { service, cache } = await reports();
    expect(await service.byId(3)).toBe('report 3 #1');
    expect(await service.byId(3)).toBe('report 3 #1');
    expect(service.runs).toBe(1);
    expect(await cache.get('report:3')).toBe('report 3 #1');
    const ttl = await cache.ttl('report:3');
    expect(ttl).toBeGreaterThan(290);
    expect(ttl).toBeLessThanOrEqual(300);
  });

  it('static tags: after cache.invalidateTags the method runs again', async () => {
    const { service, cache } = await reports();
    expect(await service.tagged(1)).toBe('tagged 1 #1');
    expect(await service.tagged(1)).toBe('tagged 1 #1');
    await cache.invalidateTags(['reports']);
    expect(await service.tagged(1)).toBe('tagged 1 #2');
    expect(service.runs).toBe(2);
  });

  it('tags built from the arguments: invalidating one tag reruns only the calls tagged with it', async () => {
    const { service, cache } = await reports();
    await service.taggedById(1);
    await service.taggedById(2);
    await cache.invalidateTags(['report:1']);
    expect(await service.taggedById(1)).toBe('by id 1 #3');
    expect(await service.taggedById(2)).toBe('by id 2 #2');
    expect(service.runs).toBe(3);
  });

  it('a key function that returns no string rejects with InvalidKeyError, without running the method', async () => {
    @Injectable()
    class BadKey {
      runs = 0;
      @Cacheable({ key: () => 42 as never })
      async load(): Promise<number> {
        this.runs += 1;
        return 1;
      }
    }
    const app = await start([BadKey]);
    const service = app.get(BadKey);
    await expect(service.load()).rejects.toThrow(InvalidKeyError);
    expect(service.runs).toBe(0);
  });

  it('a method that resolves undefined is not cached: it runs on every call', async () => {
    @Injectable()
    class Nothing {
      runs = 0;
      @Cacheable()
      async load(): Promise<undefined> {
        this.runs += 1;
        return undefined;
      }
    }
    const app = await start([Nothing]);
    const service = app.get(Nothing);
    expect(await service.load()).toBeUndefined();
    expect(await service.load()).toBeUndefined();
    expect(service.runs).toBe(2);
  });

  it('a caller mutating the value it got does not change what the next call gets', async () => {
    const { service } = await reports();
    const first = await service.find(1);
    first.run = 99;
    expect(await service.find(1)).toEqual({ run: 1 });
  });

  it('20 concurrent calls with the same arguments run the method once (single-flight)', async () => {
    const gate = deferred();
    @Injectable()
    class Slow {
      runs = 0;
      @Cacheable()
      async load(id: number): Promise<string> {
        this.runs += 1;
        await gate.promise;
        return `loaded ${id}`;
      }
    }
    const app = await start([Slow]);
    const service = app.get(Slow);
    const calls = Array.from({ length: 20 }, () => service.load(9));
    await new Promise((resolve) => setTimeout(resolve, 20));
    gate.resolve();
    expect(await Promise.all(calls)).toEqual(Array(20).fill('loaded 9'));
    expect(service.runs).toBe(1);
  });

  it('a method error propagates to the caller and is not cached', async () => {
    @Injectable()
    class Flaky {
      runs = 0;
      @Cacheable()
      async load(id: number): Promise<string> {
        this.runs += 1;
        if (this.runs === 1) throw new Error('origin down');
        return `loaded ${id}`;
      }
    }
    const app = await start([Flaky]);
    const service = app.get(Flaky);
    await expect(service.load(1)).rejects.toThrow('origin down');
    expect(await service.load(1)).toBe('loaded 1');
    expect(await service.load(1)).toBe('loaded 1');
    expect(service.runs).toBe(2);
  });

  it('a synchronous method that throws rejects, and is not cached', async () => {
    @Injectable()
    class Flaky {
      runs = 0;
      @Cacheable()
      parse(text: string): number {
        this.runs += 1;
        if (this.runs === 1) throw new SyntaxError('bad');
        return text.length;
      }
    }
    const app = await start([Flaky]);
    const service = app.get(Flaky);
    await expect(service.parse('abc')).rejects.toThrow(SyntaxError);
    expect(await service.parse('abc')).toBe(3);
    expect(service.runs).toBe(2);
  });

  it("cache: 'sessions' stores in the named cache, not in the default one", async () => {
    @Injectable()
    class Sessions {
      runs = 0;
      constructor(@InjectCache('sessions') readonly sessions: BaseCache) {}
      @Cacheable({ cache: 'sessions', key: (id: string) => `session:${id}` })
      async load(id: string): Promise<string> {
        this.runs += 1;
        return `session ${id}`;
      }
    }
    const app = await start(
      [Sessions],
      [CacheModule.forRoot({}), CacheModule.forRoot({ name: 'sessions' })],
    );
    const service = app.get(Sessions);
    expect(await service.load('s1')).toBe('session s1');
    expect(await service.load('s1')).toBe('session s1');
    expect(service.runs).toBe(1);
    expect(await service.sessions.get('session:s1')).toBe('session s1');
    expect(await app.get(BaseCache).get('session:s1')).toBeUndefined();
  });

  it("cache: 'sessions' works with only the named cache registered", async () => {
    @Injectable()
    class Sessions {
      runs = 0;
      @Cacheable({ cache: 'sessions' })
      async load(id: string): Promise<string> {
        this.runs += 1;
        return `session ${id}`;
      }
    }
    const app = await start([Sessions], [CacheModule.forRoot({ name: 'sessions' })]);
    const service = app.get(Sessions);
    await service.load('a');
    await service.load('a');
    expect(service.runs).toBe(1);
  });

  it('naming a cache no module registers fails app.init() with CacheConfigError naming it', async () => {
    @Injectable()
    class Orphan {
      @Cacheable({ cache: 'nowhere' })
      async load(): Promise<number> {
        return 1;
      }
    }
    const moduleRef = await Test.createTestingModule({
      imports: [CacheModule.forRoot({})],
      providers: [Orphan],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    const init = app.init();
    await expect(init).rejects.toThrow(CacheConfigError);
    await expect(init).rejects.toThrow(/@Cacheable on Orphan\.load uses the cache "nowhere"/);
    await app.close();
  });

  it('a default-cache @Cacheable when only a named cache is registered fails app.init() with CacheConfigError', async () => {
    @Injectable()
    class NeedsDefault {
      @Cacheable()
      async load(): Promise<number> {
        return 1;
      }
    }
    const moduleRef = await Test.createTestingModule({
      imports: [CacheModule.forRoot({ name: 'sessions' })],
      providers: [NeedsDefault],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await expect(app.init()).rejects.toThrow(/NeedsDefault\.load uses the cache \(default\)/);
    await app.close();
  });

  it('is cached when called from onApplicationBootstrap (warming)', async () => {
    @Injectable()
    class Warmed implements OnApplicationBootstrap {
      runs = 0;
      @Cacheable()
      async daily(): Promise<string> {
        this.runs += 1;
        return 'daily';
      }
      async onApplicationBootstrap(): Promise<void> {
        await this.daily();
      }
    }
    const app = await start([Warmed]);
    const service = app.get(Warmed);
    expect(await service.daily()).toBe('daily');
    expect(service.runs).toBe(1);
  });

  it('invalidateCacheable(service.method, ...args) deletes that one entry; the others stay', async () => {
    const { service } = await reports();
    await service.find(1);
    await service.find(2);
    expect(await invalidateCacheable(service.find, 1)).toBe(true);
    expect(await service.find(1)).toEqual({ run: 3 });
    expect(await service.find(2)).toEqual({ run: 2 });
    expect(service.runs).toBe(3);
  });

  it('invalidateCacheable uses the key option of the method', async () => {
    const { service, cache } = await reports();
    await service.byId(5);
    await service.byId(6);
    await invalidateCacheable(service.byId, 5);
    expect(await cache.has('report:5')).toBe(false);
    expect(await cache.has('report:6')).toBe(true);
  });

  it('invalidateCacheable resolves false when there was no entry', async () => {
    const { service } = await reports();
    expect(await invalidateCacheable(service.find, 'never called')).toBe(false);
  });

  it('invalidateCacheable rejects with a TypeError for a function that is not @Cacheable', async () => {
    const { service } = await reports();
    await expect(invalidateCacheable(service.notCached, 1)).rejects.toThrow(TypeError);
    await expect(invalidateCacheable(() => 1)).rejects.toThrow(/needs a @Cacheable method/);
    // The method as the class holds it, not as the instance does.
    await expect(invalidateCacheable(Reports.prototype.find, 1)).rejects.toThrow(TypeError);
  });

  it('a subclass overriding a @Cacheable method without the decorator is not cached', async () => {
    @Injectable()
    class BaseReports {
      runs = 0;
      @Cacheable()
      async find(id: number): Promise<string> {
        this.runs += 1;
        return `base ${id}`;
      }
    }
    @Injectable()
    class LiveReports extends BaseReports {
      override async find(id: number): Promise<string> {
        this.runs += 1;
        return `live ${id}`;
      }
    }
    const app = await start([LiveReports]);
    const service = app.get(LiveReports);
    expect(await service.find(1)).toBe('live 1');
    expect(await service.find(1)).toBe('live 1');
    expect(service.runs).toBe(2);
  });

  it('a subclass inheriting a @Cacheable method without overriding it is cached', async () => {
    @Injectable()
    class BaseReports {
      runs = 0;
      @Cacheable()
      async find(id: number): Promise<string> {
        this.runs += 1;
        return `base ${id}`;
      }
    }
    @Injectable()
    class InheritingReports extends BaseReports {}
    const app = await start([InheritingReports]);
    const service = app.get(InheritingReports);
    await service.find(1);
    await service.find(1);
    expect(service.runs).toBe(1);
  });

  it('a @Cacheable method of a request-scoped provider is reported at startup: it cannot be wrapped', async () => {
    @Injectable({ scope: Scope.REQUEST })
    class PerRequest {
      @Cacheable()
      async find(): Promise<string> {
        return 'x';
      }
    }
    const warned: string[] = [];
    const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation((message: unknown) => {
      warned.push(String(message));
    });
    try {
      await start([PerRequest]);
    } finally {
      warn.mockRestore();
    }
    expect(
      warned.filter((m) => m.includes('PerRequest.find') && m.includes('request-scoped')),
    ).toHaveLength(1);
  });

  it.each([
    ['a useExisting alias', { provide: 'REPORTS', useExisting: Reports }],
    [
      'a factory returning the instance',
      { provide: 'REPORTS', useFactory: (reports: Reports) => reports, inject: [Reports] },
    ],
  ])('a provider also reachable through %s is wrapped once', async (_what, alias) => {
    // Wrapped twice, the call would wait on its own single-flight until getOrSetTimeout.
    const app = await start([Reports, alias], [CacheModule.forRoot({ getOrSetTimeout: '1s' })]);
    const service = app.get(Reports);
    expect(app.get('REPORTS')).toBe(service);
    expect(await service.find(1)).toEqual({ run: 1 });
    expect(await service.find(1)).toEqual({ run: 1 });
    expect(service.runs).toBe(1);
    // Keyed by the class (the provider whose token it is), not by the alias.
    expect(await app.get(BaseCache).has('Reports.find(1)')).toBe(true);
  });
});

@Injectable()
class Catalog {
  runs = 0;
  updates = 0;

  @Cacheable({ key: (id: number) => `item:${id}`, tags: ['x'] })
  async item(id: number): Promise<string> {
    this.runs += 1;
    return `item ${id} #${this.runs}`;
  }

  @CacheEvict({ tags: ['x'] })
  async touchAll(): Promise<string> {
    this.updates += 1;
    return 'touched';
  }

  @CacheEvict({ keys: ['item:1'] })
  async touchOne(): Promise<void> {
    this.updates += 1;
  }

  @CacheEvict({ keys: (id: number) => [`item:${id}`] })
  async update(id: number): Promise<number> {
    this.updates += 1;
    return id;
  }

  @CacheEvict({ tags: (tag: string) => [tag] })
  async invalidate(_tag: string): Promise<void> {
    this.updates += 1;
  }

  @CacheEvict({ all: true })
  async reset(): Promise<void> {
    this.updates += 1;
  }

  @CacheEvict({ keys: (id: number) => [`item:${id}`], tags: ['x'] })
  async failingUpdate(_id: number): Promise<void> {
    this.updates += 1;
    throw new Error('write failed');
  }

  @CacheEvict({ keys: ['item:1'] })
  renameSync(name: string): string {
    this.updates += 1;
    return name.toUpperCase();
  }

  @CacheEvict({
    keys: () => {
      throw new Error('bad builder');
    },
  })
  async brokenBuilder(): Promise<string> {
    return 'done';
  }

  @CacheEvict({
    keys: () => {
      throw new Error('bad builder');
    },
    tags: ['x'],
    all: true,
  })
  async brokenKeysThenTags(): Promise<string> {
    return 'done';
  }

  @CacheEvict({
    tags: () => {
      throw new Error('bad tags');
    },
    all: true,
  })
  async brokenTagsThenAll(): Promise<string> {
    return 'done';
  }
}

const catalog = async (imports?: unknown[]) => {
  const app = await start([Catalog], imports);
  return { app, service: app.get(Catalog), cache: app.get(BaseCache) };
};

describe('@CacheEvict on a provider method', () => {
  it("a @Cacheable entry tagged 'x' is recomputed after a @CacheEvict({ tags: ['x'] }) method ran", async () => {
    const { service } = await catalog();
    expect(await service.item(1)).toBe('item 1 #1');
    expect(await service.item(1)).toBe('item 1 #1');
    expect(await service.touchAll()).toBe('touched');
    expect(await service.item(1)).toBe('item 1 #2');
    expect(service.runs).toBe(2);
  });

  it('static keys: the key is deleted once the method succeeded, the others stay', async () => {
    const { service, cache } = await catalog();
    await service.item(1);
    await service.item(2);
    await service.touchOne();
    expect(await cache.has('item:1')).toBe(false);
    expect(await cache.has('item:2')).toBe(true);
  });

  it('keys built from the arguments', async () => {
    const { service, cache } = await catalog();
    await service.item(1);
    await service.item(2);
    expect(await service.update(2)).toBe(2);
    expect(await cache.has('item:1')).toBe(true);
    expect(await cache.has('item:2')).toBe(false);
  });

  it('tags built from the arguments', async () => {
    const { service } = await catalog();
    await service.item(1);
    await service.invalidate('y');
    expect(await service.item(1)).toBe('item 1 #1');
    await service.invalidate('x');
    expect(await service.item(1)).toBe('item 1 #2');
  });

  it('all: true clears the cache', async () => {
    const { service, cache } = await catalog();
    await cache.set('other', 1);
    await service.item(1);
    await service.reset();
    expect(await cache.has('other')).toBe(false);
    expect(await cache.has('item:1')).toBe(false);
  });

  it('after the method throws, nothing is evicted and the error propagates', async () => {
    const { service, cache } = await catalog();
    await service.item(1);
    await expect(service.failingUpdate(1)).rejects.toThrow('write failed');
    expect(service.updates).toBe(1);
    expect(await cache.has('item:1')).toBe(true);
    expect(await service.item(1)).toBe('item 1 #1');
  });

  it('a synchronous method returns a Promise of its result, settled after the eviction', async () => {
    const { service, cache } = await catalog();
    await service.item(1);
    const result: unknown = service.renameSync('abc');
    expect(result).toBeInstanceOf(Promise);
    expect(await result).toBe('ABC');
    expect(await cache.has('item:1')).toBe(false);
  });

  it('a keys builder that throws does not fail the call', async () => {
    const { service } = await catalog();
    expect(await service.brokenBuilder()).toBe('done');
  });

  const logged = async (run: () => Promise<unknown>): Promise<string[]> => {
    const errors: string[] = [];
    const spy = vi.spyOn(Logger.prototype, 'error').mockImplementation((message: unknown) => {
      errors.push(String(message));
    });
    try {
      await run();
    } finally {
      spy.mockRestore();
    }
    return errors;
  };

  it('a keys builder that throws still lets the tags be invalidated and the cache be cleared', async () => {
    const { service, cache } = await catalog();
    await service.item(1);
    await cache.set('other', 1);
    const errors = await logged(async () => {
      expect(await service.brokenKeysThenTags()).toBe('done');
    });
    expect(await service.item(1)).toBe('item 1 #2'); // its tag 'x' was invalidated
    expect(await cache.has('other')).toBe(false); // all: true cleared it
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/Catalog\.brokenKeysThenTags/);
    expect(errors[0]).toMatch(/keys/);
    expect(errors[0]).toMatch(/bad builder/);
  });

  it('a tags builder that throws still lets the cache be cleared, and is logged on its own', async () => {
    const { service, cache } = await catalog();
    await cache.set('other', 1);
    const errors = await logged(async () => {
      expect(await service.brokenTagsThenAll()).toBe('done');
    });
    expect(await cache.has('other')).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/tags/);
    expect(errors[0]).toMatch(/bad tags/);
  });

  it("cache: 'sessions' evicts from the named cache only", async () => {
    @Injectable()
    class Sessions {
      constructor(@InjectCache('sessions') readonly sessions: BaseCache) {}
      @CacheEvict({ cache: 'sessions', keys: (id: string) => [`session:${id}`] })
      async logout(_id: string): Promise<void> {}
    }
    const app = await start(
      [Sessions],
      [CacheModule.forRoot({}), CacheModule.forRoot({ name: 'sessions' })],
    );
    const service = app.get(Sessions);
    const main = app.get(BaseCache);
    await service.sessions.set('session:s1', 'in sessions');
    await main.set('session:s1', 'in main');
    await service.logout('s1');
    expect(await service.sessions.has('session:s1')).toBe(false);
    expect(await main.get('session:s1')).toBe('in main');
  });

  it('naming a cache no module registers fails app.init() with CacheConfigError', async () => {
    @Injectable()
    class Orphan {
      @CacheEvict({ cache: 'nowhere', all: true })
      async reset(): Promise<void> {}
    }
    const moduleRef = await Test.createTestingModule({
      imports: [CacheModule.forRoot({})],
      providers: [Orphan],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await expect(app.init()).rejects.toThrow(
      /@CacheEvict on Orphan\.reset uses the cache "nowhere"/,
    );
    await app.close();
  });

  it.each([
    ['the cached one registered first', ['a', 'b']],
    ['the evicting one registered first', ['b', 'a']],
  ])(
    '@Cacheable and @CacheEvict on one method, on two caches (%s): the eviction runs after every call, hits too',
    async (_order, names) => {
      @Injectable()
      class Both {
        runs = 0;
        @Cacheable({ cache: 'a', key: 'both' })
        @CacheEvict({ cache: 'b', keys: ['x'] })
        async load(): Promise<number> {
          this.runs += 1;
          return 1;
        }
      }
      const app = await start(
        [Both],
        names.map((name) => CacheModule.forRoot({ name })),
      );
      const service = app.get(Both);
      const b = app.get<BaseCache>(getCacheToken('b') as string);
      expect(await service.load()).toBe(1);
      await b.set('x', 1);
      expect(await service.load()).toBe(1); // a hit
      expect(service.runs).toBe(1);
      expect(await b.has('x')).toBe(false);
      expect(await invalidateCacheable(service.load)).toBe(true);
    },
  );

  it('@CacheEvict({}) with nothing to evict throws CacheConfigError at decoration', () => {
    expect(() => CacheEvict({})).toThrow(CacheConfigError);
    expect(() => CacheEvict({ all: false })).toThrow(/needs something to evict/);
  });
});

/** A class named ApiClient, a new one at each call (two same-named classes of two modules). */
function apiClientClass() {
  @Injectable()
  class ApiClient {
    runs = 0;
    constructor(readonly base: string = 'https://default') {}
    @Cacheable()
    async get(path: string): Promise<string> {
      this.runs += 1;
      return `${this.base}${path}`;
    }
  }
  return ApiClient;
}

describe('@Cacheable default keys of providers sharing a class', () => {
  const ApiClient = apiClientClass();
  const GITHUB = { provide: 'GITHUB', useFactory: () => new ApiClient('https://github') };
  const GITLAB = { provide: 'GITLAB', useFactory: () => new ApiClient('https://gitlab') };

  it('two providers of one class under string tokens each get their own entries', async () => {
    const app = await start([GITHUB, GITLAB]);
    const github = app.get<InstanceType<typeof ApiClient>>('GITHUB');
    const gitlab = app.get<InstanceType<typeof ApiClient>>('GITLAB');
    expect(await github.get('/user')).toBe('https://github/user');
    expect(await gitlab.get('/user')).toBe('https://gitlab/user');
    expect(await github.get('/user')).toBe('https://github/user');
    expect(await gitlab.get('/user')).toBe('https://gitlab/user');
    expect([github.runs, gitlab.runs]).toEqual([1, 1]);
    // The token is the default key's prefix.
    const cache = app.get(BaseCache);
    expect(await cache.get('GITHUB.get("/user")')).toBe('https://github/user');
    expect(await cache.get('GITLAB.get("/user")')).toBe('https://gitlab/user');
  });

  it('a symbol token: its description is the prefix', async () => {
    const token = Symbol('GITHUB');
    const app = await start([
      { provide: token, useFactory: () => new ApiClient('https://github') },
      GITLAB,
    ]);
    const github = app.get<InstanceType<typeof ApiClient>>(token);
    const gitlab = app.get<InstanceType<typeof ApiClient>>('GITLAB');
    expect(await github.get('/user')).toBe('https://github/user');
    expect(await gitlab.get('/user')).toBe('https://gitlab/user');
    expect(await app.get(BaseCache).get('GITHUB.get("/user")')).toBe('https://github/user');
  });

  it('invalidateCacheable deletes the entry of that provider only', async () => {
    const app = await start([GITHUB, GITLAB]);
    const github = app.get<InstanceType<typeof ApiClient>>('GITHUB');
    const gitlab = app.get<InstanceType<typeof ApiClient>>('GITLAB');
    await github.get('/user');
    await gitlab.get('/user');
    expect(await invalidateCacheable(github.get, '/user')).toBe(true);
    await github.get('/user');
    await gitlab.get('/user');
    expect([github.runs, gitlab.runs]).toEqual([2, 1]);
  });

  it('a class provider keeps the class name as the prefix', async () => {
    const { service, cache } = await reports();
    await service.find(1);
    expect(await cache.has('Reports.find(1)')).toBe(true);
  });

  async function initError(imports: unknown[], providers: unknown[] = []): Promise<unknown> {
    const moduleRef = await Test.createTestingModule({
      imports: [CacheModule.forRoot({}), ...imports],
      providers,
    } as never).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    apps.push(app);
    return app.init().then(
      () => undefined,
      (error: unknown) => error,
    );
  }

  it('two same-named classes of two modules fail app.init() with CacheConfigError naming both', async () => {
    const First = apiClientClass();
    const Second = apiClientClass();
    @Module({ providers: [{ provide: First, useFactory: () => new First('https://github') }] })
    class GithubModule {}
    @Module({ providers: [{ provide: Second, useFactory: () => new Second('https://gitlab') }] })
    class GitlabModule {}
    const error = await initError([GithubModule, GitlabModule]);
    expect(error).toBeInstanceOf(CacheConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/ApiClient\.get/);
    expect(message).toMatch(/GithubModule/);
    expect(message).toMatch(/GitlabModule/);
    expect(message).toMatch(/key/);
    expect(message).toMatch(/tokens with distinct names/);
  });

  it('two symbol tokens with one description fail app.init() with CacheConfigError', async () => {
    const error = await initError(
      [],
      [
        { provide: Symbol('API'), useFactory: () => new ApiClient('https://github') },
        { provide: Symbol('API'), useFactory: () => new ApiClient('https://gitlab') },
      ],
    );
    expect(error).toBeInstanceOf(CacheConfigError);
    expect((error as Error).message).toMatch(/API\.get/);
    expect((error as Error).message).toMatch(/tokens with distinct names/);
  });

  it('same-named classes whose methods have a key option start (the key is theirs)', async () => {
    const keyed = (prefix: string) => {
      @Injectable()
      class ApiClient {
        @Cacheable({ key: (path: string) => `${prefix}:${path}` })
        async get(path: string): Promise<string> {
          return `${prefix}${path}`;
        }
      }
      return ApiClient;
    };
    const First = keyed('gh');
    const Second = keyed('gl');
    @Module({ providers: [First] })
    class GithubModule {}
    @Module({ providers: [Second] })
    class GitlabModule {}
    expect(await initError([GithubModule, GitlabModule])).toBeUndefined();
  });

  it('two providers of one class on different caches do not collide (their entries live apart)', async () => {
    const onCache = (cache: string | undefined) => {
      @Injectable()
      class ApiClient {
        @Cacheable({ cache })
        async get(path: string): Promise<string> {
          return `${cache}${path}`;
        }
      }
      return ApiClient;
    };
    @Module({ providers: [onCache(undefined)] })
    class DefaultModule {}
    @Module({ providers: [onCache('other')] })
    class OtherModule {}
    expect(
      await initError([CacheModule.forRoot({ name: 'other' }), DefaultModule, OtherModule]),
    ).toBeUndefined();
  });
});

describe('@Cacheable when the cache cannot serve the call', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  @Injectable()
  class SlowOrigin {
    runs = 0;
    @Cacheable()
    async load(id: number): Promise<string> {
      this.runs += 1;
      await sleep(400);
      return `loaded ${id}`;
    }
    @Cacheable()
    async failSlowly(): Promise<string> {
      this.runs += 1;
      await sleep(400);
      throw new Error('origin down');
    }
  }

  const slow = async () => {
    const app = await start([SlowOrigin], [CacheModule.forRoot({ getOrSetTimeout: '200ms' })]);
    return app.get(SlowOrigin);
  };

  it('a method slower than getOrSetTimeout: the caller that ran it gets its result', async () => {
    const service = await slow();
    expect(await service.load(1)).toBe('loaded 1');
    expect(service.runs).toBe(1);
  });

  it('a method slower than getOrSetTimeout: a caller waiting on it runs it itself', async () => {
    const service = await slow();
    const [leader, follower] = await Promise.all([service.load(1), service.load(1)]);
    expect(leader).toBe('loaded 1');
    expect(follower).toBe('loaded 1');
    expect(service.runs).toBe(2);
  });

  it('a slow method that then fails rejects with its own error, not FactoryTimeoutError', async () => {
    const service = await slow();
    await expect(service.failSlowly()).rejects.toThrow('origin down');
    expect(service.runs).toBe(1);
  });

  it('after cache.close() the method runs (uncached) instead of rejecting', async () => {
    const { service, cache } = await reports();
    expect(await service.find(1)).toEqual({ run: 1 });
    await cache.close();
    expect(await service.find(1)).toEqual({ run: 2 });
    expect(await service.find(1)).toEqual({ run: 3 });
  });

  it('after cache.close() an unkeyable argument still rejects, without running the method', async () => {
    const { service, cache } = await reports();
    await cache.close();
    await expect(service.find(() => 1)).rejects.toThrow(UnkeyableArgumentError);
    expect(service.runs).toBe(0);
  });

  it('input errors still reject: a bad tag, a value the cache cannot store', async () => {
    @Injectable()
    class BadInput {
      @Cacheable({ tags: [''] })
      async badTag(): Promise<number> {
        return 1;
      }
      @Cacheable()
      async unstorable(): Promise<unknown> {
        return new (class Row {
          id = 1;
        })();
      }
    }
    const app = await start([BadInput]);
    const service = app.get(BadInput);
    await expect(service.badTag()).rejects.toThrow(InvalidTagError);
    await expect(service.unstorable()).rejects.toThrow(UnserializableValueError);
  });
});

describe('@Cacheable on a Redis default cache', () => {
  const redis = usePrivateRedis();

  it('a second application sharing the Redis gets the entry without running the method', async () => {
    const imports = () => [
      CacheModule.forRoot({ backend: 'redis', redis: { url: redis.server.url }, prefix: 'cbl' }),
    ];
    const first = await start([Reports], imports());
    const second = await start([Reports], imports());
    expect(await first.get(Reports).byId(1)).toBe('report 1 #1');
    expect(await second.get(Reports).byId(1)).toBe('report 1 #1');
    expect(second.get(Reports).runs).toBe(0);
  });

  it('invalidateTags in one application reruns the method in the other', async () => {
    const imports = () => [
      CacheModule.forRoot({ backend: 'redis', redis: { url: redis.server.url }, prefix: 'cbl2' }),
    ];
    const first = await start([Reports], imports());
    const second = await start([Reports], imports());
    expect(await first.get(Reports).tagged(1)).toBe('tagged 1 #1');
    // The value is returned before it is stored, and a call arriving while it is being stored
    // shares it (by design: no second run for it); let the write land first.
    await nothingInFlight(first.get(BaseCache), 2_000);
    await second.get(BaseCache).invalidateTags(['reports']);
    expect(await first.get(Reports).tagged(1)).toBe('tagged 1 #2');
  });

  it('with Redis unreachable, the method still runs and its value is returned', async () => {
    const port = await freePort(); // nothing listens there
    const app = await start(
      [Reports],
      [CacheModule.forRoot({ backend: 'redis', redis: { url: `redis://127.0.0.1:${port}` } })],
    );
    const service = app.get(Reports);
    expect(await service.byId(1)).toBe('report 1 #1');
    expect(await service.byId(1)).toBe('report 1 #2');
  });
});
