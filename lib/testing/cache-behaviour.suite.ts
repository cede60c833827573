import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type BaseCache, type BaseCacheOptions, DriverCache, type DriverContext } from '../base-cache.js';
import type { CacheDriver } from '../driver.js';
import {
  CacheClosedError,
  FactoryTimeoutError,
  InvalidKeyError,
  InvalidTtlError,
  UnserializableValueError,
} from '../errors.js';

/** The test functions of your runner (vitest, jest and node:test all have these). */
export interface TestApi {
  describe(name: string, body: () => void): void;
  it(name: string, body: () => Promise<void>): void;
  afterEach(body: () => Promise<void>): void;
}

/** Makes a cache of the backend under test with the given options (each test uses its own prefix). */
export type CacheFactory = (options: BaseCacheOptions) => BaseCache | Promise<BaseCache>;

let suiteRun = 0;

/**
 * The contract every BaseCache keeps, written once and run unchanged over the memory,
 * Redis and custom backends. Authors of a backend run it from their own tests:
 *
 * ```ts
 * import { describe, it, afterEach } from 'vitest';
 * import { cacheBehaviourSuite } from 'nest-cache/testing';
 * cacheBehaviourSuite('MyCache', (options) => new MyCache(options), { describe, it, afterEach });
 * ```
 */
export function cacheBehaviourSuite(
  name: string,
  create: CacheFactory,
  { describe, it, afterEach }: TestApi,
): void {
  const run = `${process.pid}-${++suiteRun}`;
  let made: BaseCache[] = [];
  let count = 0;
  const cache = async (options: BaseCacheOptions = {}): Promise<BaseCache> => {
    const made1 = await create({ prefix: `suite-${run}-${++count}`, ...options });
    made.push(made1);
    return made1;
  };
  afterEach(async () => {
    await Promise.all(made.map(async (c) => c.isClosed || (await c.clear(), await c.close())));
    made = [];
  });

  describe(`${name}: BaseCache behaviour`, () => {
    describe('get and set', () => {
      it('returns undefined for a key never set', async () => {
        assert.equal(await (await cache()).get('missing'), undefined);
      });

      it('returns what was set, and set resolves true', async () => {
        const c = await cache();
        assert.equal(await c.set('k', { a: 1 }), true);
        assert.deepEqual(await c.get('k'), { a: 1 });
      });

      it('overwrites an existing key', async () => {
        const c = await cache();
        await c.set('k', 1);
        await c.set('k', 2);
        assert.equal(await c.get('k'), 2);
      });

      it('keeps keys with spaces, newlines, NUL and unicode apart and intact', async () => {
        const c = await cache();
        const keys = ['a b', 'a\nb', 'a\r\nb', 'a\0b', 'ключ', '🔑', 'a*b?[c]'];
        await c.setMany(keys.map((key, i) => ({ key, value: i })));
        assert.deepEqual(
          await c.getMany(keys),
          keys.map((_, i) => i),
        );
      });

      it('keeps over-long keys that share a long head apart', async () => {
        const c = await cache();
        const head = 'x'.repeat(5_000);
        await c.set(`${head}1`, 'one');
        await c.set(`${head}2`, 'two');
        assert.equal(await c.get(`${head}1`), 'one');
        assert.equal(await c.get(`${head}2`), 'two');
      });

      it("a key typed as the shortened form of a long key is another entry: it never reads or overwrites the long key's", async () => {
        const c = await cache();
        const long = `report:${'x'.repeat(2_000)}`;
        // The documented form: the first 128 characters, '…#' and the SHA-256 of the UTF-16 code units.
        const hash = createHash('sha256').update(Buffer.from(long, 'utf16le')).digest('hex');
        const lookalike = `${long.slice(0, 128)}…#${hash}`;
        await c.set(long, 'long');
        assert.equal(await c.get(lookalike), undefined);
        await c.set(lookalike, 'lookalike');
        assert.equal(await c.get(long), 'long');
        assert.equal(await c.get(lookalike), 'lookalike');
      });

      it('keeps keys that differ only in a lone surrogate apart (UTF-8 would make them one)', async () => {
        const c = await cache();
        const keys = ['user:\ud800', 'user:\udfff', 'user:\ufffd', 'user:\ud83d\udd11'];
        await c.setMany(keys.map((key, i) => ({ key, value: i })));
        assert.deepEqual(
          await c.getMany(keys),
          keys.map((_, i) => i),
        );
      });

      it('prefixes that extend one another never share storage: shop and shop:eu', async () => {
        const base = `suite-${run}-${++count}`;
        const shop = await cache({ prefix: base });
        const eu = await cache({ prefix: `${base}:eu` });
        await eu.set('k', 'eu');
        await shop.set('eu:k', 'shop');
        assert.equal(await eu.get('k'), 'eu');
        await shop.clear();
        assert.equal(await eu.get('k'), 'eu');
        assert.equal(await shop.get('eu:k'), undefined);
      });
    });

    describe('values read back deep-equal what was stored', () => {
      const values: [string, unknown][] = [
        ['a string', 'héllo'],
        ['an empty string', ''],
        ['an integer', 42],
        ['a float', -1.5],
        ['zero', 0],
        ['true', true],
        ['false', false],
        ['null', null],
        ['an array', [1, 'two', null, [3]]],
        ['a nested object', { a: { b: { c: [1, { d: 'e' }] } } }],
        ['a Date', new Date('2026-11-21T10:00:00.123Z')],
        [
          'a Map',
          new Map<unknown, unknown>([
            ['a', 1],
            [2, { b: 3 }],
          ]),
        ],
        ['a Set', new Set([1, 'two', 3])],
        ['a BigInt', 12345678901234567890n],
        ['a Buffer', Buffer.from([0, 1, 2, 255])],
        ['a Uint8Array', new Uint8Array([9, 8, 7])],
        [
          'a mix of them',
          {
            when: new Date(0),
            tags: new Set(['x']),
            byId: new Map([['1', { at: new Date(1) }]]),
            n: 1n,
          },
        ],
      ];
      for (const [label, value] of values) {
        it(`round-trips ${label}`, async () => {
          const c = await cache();
          await c.set('v', value);
          const back = await c.get('v');
          assert.deepStrictEqual(back, value);
          if (value !== null && typeof value === 'object') {
            assert.equal(Object.getPrototypeOf(back), Object.getPrototypeOf(value));
          }
        });
      }

      it('treats a stored null as a hit, distinct from a miss', async () => {
        const c = await cache();
        await c.set('nothing', null);
        assert.equal(await c.has('nothing'), true);
        let calls = 0;
        assert.equal(await c.getOrSet('nothing', () => ++calls), null);
        assert.equal(calls, 0);
      });

      it('is not changed by mutating the stored or the returned object', async () => {
        const c = await cache();
        const value = { list: [1] };
        await c.set('k', value);
        value.list.push(2);
        const read = (await c.get<{ list: number[] }>('k'))!;
        read.list.push(3);
        assert.deepEqual(await c.get('k'), { list: [1] });
      });
    });

    describe('delete, has, clear', () => {
      it('delete resolves true for an existing key and removes it', async () => {
        const c = await cache();
        await c.set('k', 1);
        assert.equal(await c.delete('k'), true);
        assert.equal(await c.get('k'), undefined);
      });

      it('delete resolves false for a missing key', async () => {
        assert.equal(await (await cache()).delete('missing'), false);
      });

      it('has tells whether a key is stored', async () => {
        const c = await cache();
        await c.set('k', 0);
        assert.equal(await c.has('k'), true);
        assert.equal(await c.has('other'), false);
      });

      it('clear removes every key of this cache', async () => {
        const c = await cache();
        await c.setMany([
          { key: 'a', value: 1 },
          { key: 'b', value: 2 },
        ]);
        await c.clear();
        assert.deepEqual(await c.getMany(['a', 'b']), [undefined, undefined]);
      });

      it("clear leaves another namespace's keys alone", async () => {
        const mine = await cache();
        const theirs = await cache({ prefix: `${mine.prefix}-neighbour` });
        await mine.set('k', 'mine');
        await theirs.set('k', 'theirs');
        await mine.clear();
        assert.equal(await mine.get('k'), undefined);
        assert.equal(await theirs.get('k'), 'theirs');
      });
    });

    describe('many at once', () => {
      it('getMany returns values in order, undefined where missing', async () => {
        const c = await cache();
        await c.set('a', 1);
        await c.set('c', null);
        assert.deepEqual(await c.getMany(['a', 'b', 'c']), [1, undefined, null]);
      });

      it('setMany stores every entry with its own ttl', async () => {
        const c = await cache();
        assert.equal(
          await c.setMany([
            { key: 'a', value: 1, ttl: null },
            { key: 'b', value: 2, ttl: '1h' },
          ]),
          true,
        );
        assert.deepEqual(await c.getMany(['a', 'b']), [1, 2]);
        assert.equal(await c.ttl('a'), null);
        assertBetween(await c.ttl('b'), 3_590, 3_600);
      });

      it('setMany stores nothing when one entry is invalid', async () => {
        const c = await cache();
        await assert.rejects(
          c.setMany([
            { key: 'a', value: 1 },
            { key: 'b', value: undefined },
          ]),
          UnserializableValueError,
        );
        assert.equal(await c.has('a'), false);
      });

      it('deleteMany resolves how many keys existed', async () => {
        const c = await cache();
        await c.setMany([
          { key: 'a', value: 1 },
          { key: 'b', value: 2 },
        ]);
        assert.equal(await c.deleteMany(['a', 'b', 'missing']), 2);
        assert.equal(await c.has('a'), false);
      });
    });

    describe('time to live', () => {
      it('a number ttl is seconds', async () => {
        const c = await cache();
        await c.set('k', 1, 2);
        assertBetween(await c.ttl('k'), 1, 2);
      });

      it("a string ttl carries its unit ('5m' is 300 seconds)", async () => {
        const c = await cache();
        await c.set('k', 1, '5m');
        assertBetween(await c.ttl('k'), 299, 300);
      });

      it('the default ttl is 60 seconds', async () => {
        const c = await cache();
        await c.set('k', 1);
        assertBetween(await c.ttl('k'), 59, 60);
      });

      it('the cache option ttl replaces the default', async () => {
        const c = await cache({ ttl: '10s' });
        await c.set('k', 1);
        assertBetween(await c.ttl('k'), 9, 10);
      });

      it('ttl null never expires, and ttl() says null', async () => {
        const c = await cache();
        await c.set('k', 1, null);
        assert.equal(await c.ttl('k'), null);
      });

      it('ttl() of a missing key is undefined', async () => {
        assert.equal(await (await cache()).ttl('missing'), undefined);
      });

      it('an entry is gone once its ttl has passed', async () => {
        const c = await cache();
        await c.set('k', 1, '150ms');
        assert.equal(await c.get('k'), 1);
        await sleep(400);
        assert.equal(await c.get('k'), undefined);
        assert.equal(await c.has('k'), false);
        assert.equal(await c.ttl('k'), undefined);
      });
    });

    describe('getOrSet', () => {
      it('calls the factory on a miss, caches and returns its value', async () => {
        const c = await cache();
        assert.deepEqual(await c.getOrSet('k', () => ({ built: 1 })), { built: 1 });
        assert.deepEqual(await c.get('k'), { built: 1 });
      });

      it('does not call the factory on a hit', async () => {
        const c = await cache();
        await c.set('k', 'cached');
        assert.equal(await c.getOrSet('k', () => assert.fail('factory called on a hit')), 'cached');
      });

      it('stores the value with the given ttl', async () => {
        const c = await cache();
        await c.getOrSet('k', async () => 1, '1h');
        assertBetween(await c.ttl('k'), 3_590, 3_600);
      });

      it('concurrent callers of a cold key share one factory call', async () => {
        const c = await cache();
        let calls = 0;
        const factory = async () => {
          calls += 1;
          await sleep(50);
          return { n: calls };
        };
        const results = await Promise.all(
          Array.from({ length: 50 }, () => c.getOrSet('k', factory)),
        );
        assert.equal(calls, 1);
        for (const result of results) assert.deepEqual(result, { n: 1 });
        assert.notEqual(results[0], results[1], 'each caller gets its own copy');
      });

      it('a factory error rejects every waiter and caches nothing; the next call retries', async () => {
        const c = await cache();
        let calls = 0;
        const failing = async () => {
          calls += 1;
          await sleep(20);
          throw new Error('origin down');
        };
        const settled = await Promise.allSettled(
          Array.from({ length: 5 }, () => c.getOrSet('k', failing)),
        );
        assert.equal(calls, 1);
        for (const s of settled) {
          assert.equal(s.status, 'rejected');
          assert.equal((s as PromiseRejectedResult).reason.message, 'origin down');
        }
        assert.equal(await c.has('k'), false);
        assert.equal(await c.getOrSet('k', () => 'second try'), 'second try');
      });

      it('waiters of a hung factory reject with FactoryTimeoutError, and the next caller starts afresh', async () => {
        const c = await cache({ getOrSetTimeout: '100ms' });
        const hung = c.getOrSet('k', () => new Promise<never>(() => {}));
        const follower = c.getOrSet('k', () => 'not called: joins the hung flight');
        await assert.rejects(hung, FactoryTimeoutError);
        await assert.rejects(follower, FactoryTimeoutError);
        assert.equal(await c.getOrSet('k', () => 'fresh'), 'fresh');
      });

      it('a factory that returns undefined caches nothing', async () => {
        const c = await cache();
        assert.equal(await c.getOrSet('k', () => undefined), undefined);
        assert.equal(await c.has('k'), false);
      });
    });

    describe('bad input is rejected with a typed error', () => {
      for (const key of ['', 42, null, undefined, {}]) {
        it(`key ${JSON.stringify(key) ?? 'undefined'} → InvalidKeyError`, async () => {
          const c = await cache();
          await assert.rejects(c.get(key as string), InvalidKeyError);
          await assert.rejects(c.set(key as string, 1), InvalidKeyError);
        });
      }

      it('an undefined value → UnserializableValueError that says to store null', async () => {
        await assert.rejects((await cache()).set('k', undefined), (error: Error) => {
          assert.ok(error instanceof UnserializableValueError);
          assert.match(error.message, /null/);
          return true;
        });
      });

      it('a function value → UnserializableValueError, nothing stored', async () => {
        const c = await cache();
        await assert.rejects(c.set('k', { f: () => 1 }), UnserializableValueError);
        assert.equal(await c.has('k'), false);
      });

      for (const ttl of [
        -1,
        0,
        NaN,
        Infinity,
        '5x',
        '',
        'soon',
        [],
        true,
        ' 5m ',
        '\n5s\t',
        1e16,
      ]) {
        it(`ttl ${JSON.stringify(ttl) ?? String(ttl)} → InvalidTtlError, as an argument and as { ttl }`, async () => {
          const c = await cache();
          await assert.rejects(c.set('k', 1, ttl as never), InvalidTtlError);
          await assert.rejects(c.set('k', 1, { ttl: ttl as never }), InvalidTtlError);
          await assert.rejects(
            c.getOrSet('k', () => 1, { ttl: ttl as never }),
            InvalidTtlError,
          );
        });
      }

      it('a ttl over 10 years is refused before it reaches the backend: never an error count, never an open breaker', async () => {
        const c = await cache();
        for (let i = 0; i < 10; i += 1) {
          await assert.rejects(c.set('k', 1, 1e16), InvalidTtlError);
        }
        assert.equal(await c.set('k', 'v', 10 * 365 * 86_400), true);
        assert.equal(await c.get('k'), 'v');
        assert.equal(c.stats.errors, 0);
      });

      it('an array with properties besides its elements → UnserializableValueError, never silently dropped', async () => {
        const c = await cache();
        await assert.rejects(c.set('k', 'abc'.match(/b/)), UnserializableValueError);
        assert.equal(await c.has('k'), false);
      });

      it('nesting deeper than 1,000 levels → UnserializableValueError naming the key', async () => {
        const c = await cache();
        let deep: unknown = 'leaf';
        for (let i = 0; i < 2_600; i += 1) deep = [deep];
        await assert.rejects(c.set('deep-key', deep), (error: unknown) => {
          assert.ok(error instanceof UnserializableValueError);
          assert.match(error.message, /deep-key/);
          assert.match(error.message, /deeper than 1000 levels/);
          return true;
        });
      });
    });

    describe('close', () => {
      it('is idempotent', async () => {
        const c = await cache();
        await c.close();
        await c.close();
        assert.equal(c.isClosed, true);
      });

      it('calls after close reject with CacheClosedError', async () => {
        const c = await cache();
        await c.close();
        await assert.rejects(c.get('k'), CacheClosedError);
        await assert.rejects(c.set('k', 1), CacheClosedError);
        await assert.rejects(c.clear(), CacheClosedError);
      });
    });
  });
}

function assertBetween(actual: number | null | undefined, low: number, high: number): void {
  assert.ok(
    typeof actual === 'number' && actual >= low && actual <= high,
    `expected ${low}..${high}, got ${actual}`,
  );
}

/** Makes the driver under test, from the context of the cache that composes it (its clock...). */
export type DriverFactory = (context: DriverContext) => CacheDriver;

/**
 * The behaviour suite run on a driver of your own, composed by a DriverCache:
 *
 * ```ts
 * import { describe, it, afterEach } from 'vitest';
 * import { driverBehaviourSuite } from 'nest-cache/testing';
 * driverBehaviourSuite('MyDriver', ({ clock }) => new MyDriver(clock), { describe, it, afterEach });
 * ```
 */
export function driverBehaviourSuite(name: string, create: DriverFactory, api: TestApi): void {
  cacheBehaviourSuite(name, (options) => new DriverCache(create, options), api);
}
