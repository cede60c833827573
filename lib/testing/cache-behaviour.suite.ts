import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BaseCache,
  type BaseCacheOptions,
  DriverCache,
  type DriverContext,
} from '../base-cache.js';
import type { CacheDriver } from '../driver.js';
import {
  CacheClosedError,
  FactoryTimeoutError,
  InvalidKeyError,
  InvalidPatternError,
  InvalidTagError,
  InvalidTtlError,
  NotACounterError,
  UnserializableValueError,
} from '../errors.js';

/** The test functions of your runner (vitest, jest and node:test all have these). */
export interface TestApi {
  describe(name: string, body: () => void): void;
  it(name: string, body: () => Promise<void>): void;
  afterEach(body: () => Promise<void>): void;
}

/** What the backend under test can do, where backends may differ. */
export interface SuiteTraits {
  /**
   * false for a store that cannot list its keys (a driver without `scan`, such as memcached's):
   * deleteByPattern then clears the whole namespace, and the suite checks that instead of
   * selective matching.
   * @default true
   */
  listsKeys?: boolean;
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
  { listsKeys = true }: SuiteTraits = {},
): void {
  const run = `${process.pid}-${++suiteRun}`;
  let made: BaseCache[] = [];
  let count = 0;
  const cache = async (options: BaseCacheOptions = {}): Promise<BaseCache> => {
    const made1 = await create({ prefix: `suite-${run}-${++count}`, ...options });
    made.push(made1);
    return made1;
  };
  /** A cache on a fake clock of its own: advance `time.now` instead of sleeping. */
  const clocked = async (options: BaseCacheOptions = {}) => {
    const time = { now: 1_700_000_000_000 };
    const c = await cache({ clock: { now: () => time.now }, ...options });
    return { c, time };
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

      it('a value over maxValueBytes is not stored: set resolves false, and the older value under its key is removed', async () => {
        const c = await cache({ maxValueBytes: 1_024 });
        await c.set('k', 'small');
        assert.equal(await c.set('k', 'x'.repeat(2_000)), false);
        assert.equal(await c.get('k'), undefined);
        assert.equal(await c.getOrSet('g', () => 'x'.repeat(2_000)), 'x'.repeat(2_000));
        assert.equal(await c.get('g'), undefined);
        assert.equal(await c.set('k', 'x'.repeat(900)), true);
      });

      it('setMany with one value over maxValueBytes stores none, and none of the older values stays', async () => {
        const c = await cache({ maxValueBytes: 1_024 });
        await c.setMany([
          { key: 'a', value: 'old a' },
          { key: 'b', value: 'old b' },
        ]);
        const stored = await c.setMany([
          { key: 'a', value: 'new a' },
          { key: 'b', value: 'x'.repeat(2_000) },
        ]);
        assert.equal(stored, false);
        assert.deepEqual(await c.getMany(['a', 'b']), [undefined, undefined]);
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

    describe('tags', () => {
      it('invalidateTags removes only the entries carrying one of the tags; the others stay', async () => {
        const c = await cache();
        await c.set('a', 'A', { tags: ['x'] });
        await c.set('b', 'B', { tags: ['y'] });
        await c.set('c', 'C', { tags: ['z'] });
        await c.set('d', 'D');
        await c.invalidateTags(['x', 'y']);
        assert.deepEqual(await c.getMany(['a', 'b', 'c', 'd']), [undefined, undefined, 'C', 'D']);
        assert.equal(await c.has('a'), false);
        assert.equal(await c.get('c'), 'C');
      });

      it('getOrSet stores its value with its tags: invalidateTags ends it and the factory runs again', async () => {
        const c = await cache();
        let calls = 0;
        const options = { ttl: 60, tags: ['product:1'] };
        assert.equal(await c.getOrSet('p', () => `v${++calls}`, options), 'v1');
        await landed(c);
        assert.equal(await c.get('p'), 'v1');
        assert.equal(await c.getOrSet('p', () => `v${++calls}`, options), 'v1');
        await c.invalidateTags(['product:1']);
        assert.equal(await c.get('p'), undefined);
        assert.equal(await c.getOrSet('p', () => `v${++calls}`, options), 'v2');
        assert.equal(calls, 2);
      });

      it('setMany stores each entry with its own tags', async () => {
        const c = await cache();
        assert.equal(
          await c.setMany([
            { key: 'a', value: 1, tags: ['odd'] },
            { key: 'b', value: 2, tags: ['even'] },
            { key: 'c', value: 3, tags: ['odd'], ttl: '1h' },
            { key: 'd', value: 4 },
          ]),
          true,
        );
        await c.invalidateTags(['odd']);
        assert.deepEqual(await c.getMany(['a', 'b', 'c', 'd']), [undefined, 2, undefined, 4]);
      });

      it('an entry set after the invalidation is served again (the clock advanced 1 ms)', async () => {
        const { c, time } = await clocked();
        await c.set('k', 'old', { tags: ['t'] });
        await c.invalidateTags(['t']);
        time.now += 1;
        await c.set('k', 'new', { tags: ['t'] });
        assert.equal(await c.get('k'), 'new');
      });

      it('an entry set after the invalidation in the same millisecond is served again', async () => {
        const { c } = await clocked();
        await c.set('k', 'old', { tags: ['t'] });
        await c.invalidateTags(['t']);
        assert.equal(await c.get('k'), undefined);
        await c.set('k', 'new', { tags: ['t'] });
        assert.equal(await c.get('k'), 'new');
        await c.setMany([{ key: 'm', value: 'many', tags: ['t'] }]);
        assert.equal(await c.get('m'), 'many');
      });

      it('a getOrSet started after the invalidation in the same millisecond stores a value that is served', async () => {
        const { c } = await clocked();
        await c.set('k', 'old', { tags: ['t'] });
        await c.invalidateTags(['t']);
        assert.equal(await c.getOrSet('k', () => 'new', { tags: ['t'] }), 'new');
        await landed(c);
        assert.equal(await c.get('k'), 'new');
        let calls = 0;
        assert.equal(await c.getOrSet('k', () => `again ${++calls}`, { tags: ['t'] }), 'new');
        assert.equal(calls, 0);
      });

      it('a second invalidation in the same millisecond reaches an entry set after the first', async () => {
        const { c } = await clocked();
        await c.invalidateTags(['t']);
        await c.set('k', 'between', { tags: ['t'] });
        assert.equal(await c.get('k'), 'between');
        await c.invalidateTags(['t']);
        assert.equal(await c.get('k'), undefined);
        await c.getOrSet('g', () => 'between', { tags: ['t'] });
        await landed(c);
        assert.equal(await c.get('g'), 'between');
        await c.invalidateTags(['t']);
        assert.equal(await c.get('g'), undefined);
      });

      it('tags are checked per entry: an entry with several tags ends when any one of them is invalidated', async () => {
        const c = await cache();
        await c.set('ab', 'AB', { tags: ['a', 'b'] });
        await c.set('bc', 'BC', { tags: ['b', 'c'] });
        await c.set('cd', 'CD', { tags: ['c', 'd'] });
        await c.invalidateTags(['a']);
        assert.deepEqual(await c.getMany(['ab', 'bc', 'cd']), [undefined, 'BC', 'CD']);
        await c.invalidateTags(['d']);
        assert.deepEqual(await c.getMany(['ab', 'bc', 'cd']), [undefined, 'BC', undefined]);
      });

      it('invalidating an unknown tag (or none) is harmless', async () => {
        const c = await cache();
        await c.set('k', 'v', { tags: ['known'] });
        await c.set('plain', 'p');
        await c.invalidateTags(['never-used']);
        await c.invalidateTags([]);
        assert.deepEqual(await c.getMany(['k', 'plain']), ['v', 'p']);
        assert.equal(c.stats.errors, 0);
      });

      it("tags belong to a cache's namespace: another cache's tag of the same name is not invalidated", async () => {
        const mine = await cache();
        const theirs = await cache({ prefix: `${mine.prefix}-neighbour` });
        await mine.set('k', 'mine', { tags: ['t'] });
        await theirs.set('k', 'theirs', { tags: ['t'] });
        await mine.invalidateTags(['t']);
        assert.equal(await mine.get('k'), undefined);
        assert.equal(await theirs.get('k'), 'theirs');
      });

      it('an invalidation racing a write of the same tag is never lost for the entries stored before it', async () => {
        const c = await cache();
        for (let round = 0; round < 20; round += 1) {
          await c.set('old', round, { ttl: 10, tags: ['t'] });
          // The write pushes the tag record's expiry later while the invalidation sets it.
          await Promise.all([
            c.set(`new${round}`, round, { ttl: 100 + round, tags: ['t'] }),
            c.invalidateTags(['t']),
          ]);
          assert.equal(await c.get('old'), undefined, `round ${round}`);
        }
      });

      const badTags: [string, unknown][] = [
        ['a string instead of an array', 't'],
        ['null', null],
        ['an empty string', ['ok', '']],
        ['a number', [42]],
        ['an object', [{}]],
        ['65 tags', Array.from({ length: 65 }, (_, i) => `t${i}`)],
      ];
      for (const [label, tags] of badTags) {
        it(`tags with ${label} → InvalidTagError naming the call, in set, getOrSet, setMany and invalidateTags`, async () => {
          const c = await cache();
          const named = (operation: string) => (error: unknown) => {
            assert.ok(error instanceof InvalidTagError, String(error));
            assert.equal(error.code, 'NEST_CACHE_INVALID_TAG');
            assert.match(error.message, /\btags?\b/i);
            assert.ok(error.message.includes(`${operation}()`), error.message);
            return true;
          };
          await assert.rejects(c.set('k', 1, { tags: tags as string[] }), named('set'));
          let calls = 0;
          await assert.rejects(
            c.getOrSet('k', () => ++calls, { tags: tags as string[] }),
            named('getOrSet'),
          );
          await assert.rejects(
            c.setMany([
              { key: 'ok', value: 1 },
              { key: 'k', value: 1, tags: tags as string[] },
            ]),
            named('setMany'),
          );
          await assert.rejects(c.invalidateTags(tags as string[]), named('invalidateTags'));
          assert.equal(calls, 0);
          assert.deepEqual(await c.getMany(['k', 'ok']), [undefined, undefined]);
        });
      }

      it('64 tags are accepted', async () => {
        const c = await cache();
        const tags = Array.from({ length: 64 }, (_, i) => `t${i}`);
        assert.equal(await c.set('k', 1, { tags }), true);
        await c.invalidateTags(['t63']);
        assert.equal(await c.get('k'), undefined);
      });
    });

    describe('a refresh racing an invalidation', () => {
      const invalidations: [string, (c: BaseCache) => Promise<unknown>][] = [
        ['delete(key)', (c) => c.delete('user:1')],
        ['invalidateTags', (c) => c.invalidateTags(['users'])],
        ['deleteByPattern', (c) => c.deleteByPattern('user:*')],
        ['clear()', (c) => c.clear()],
      ];
      const options = { ttl: 10, tags: ['users'], staleWhileRevalidate: 60 };
      for (const [name, invalidate] of invalidations) {
        it(`a getOrSet whose factory is held while ${name} runs: its value is not stored`, async () => {
          const { c } = await clocked();
          const held = holdable<string>();
          const first = c.getOrSet('user:1', held.factory, options);
          await held.started;
          await invalidate(c);
          held.release('from before');
          assert.equal(await first, 'from before'); // its own caller still gets it
          await landed(c);
          assert.equal(await c.get('user:1'), undefined);
        });

        it(`a caller arriving after ${name} does not join the held flight: its own factory runs, and its value is kept`, async () => {
          const { c } = await clocked();
          const held = holdable<string>();
          const first = c.getOrSet('user:1', held.factory, options);
          await held.started;
          await invalidate(c);
          let calls = 0;
          const second = await c.getOrSet('user:1', () => `after ${++calls}`, options);
          assert.equal(second, 'after 1');
          held.release('from before');
          assert.equal(await first, 'from before');
          await landed(c);
          assert.equal(await c.get('user:1'), 'after 1');
          assert.equal(held.calls, 1);
        });

        it(`a background staleWhileRevalidate refresh racing ${name} is not stored`, async () => {
          const { c, time } = await clocked();
          await c.getOrSet('user:1', () => 'v1', options);
          await landed(c); // its flight ends once its value is stored
          time.now += 11_000;
          const held = holdable<string>();
          assert.equal(await c.getOrSet('user:1', held.factory, options), 'v1'); // stale, at once
          await held.started;
          await invalidate(c);
          let calls = 0;
          assert.equal(await c.getOrSet('user:1', () => `own ${++calls}`, options), 'own 1');
          held.release('refreshed before');
          await landed(c);
          assert.equal(await c.get('user:1'), 'own 1');
          await c.delete('user:1');
          await c.getOrSet('user:1', () => 'v1', options);
          await landed(c); // its flight ends once its value is stored
          time.now += 11_000;
          const again = holdable<string>();
          assert.equal(await c.getOrSet('user:1', again.factory, options), 'v1');
          await again.started;
          await invalidate(c);
          again.release('refreshed before');
          await landed(c);
          assert.equal(await c.get('user:1'), undefined);
        });
      }
    });

    describe('deleteByPattern', () => {
      if (!listsKeys) {
        it("a store that cannot list its keys: any pattern removes every entry of the cache's namespace (never too few), resolves 0, and leaves other namespaces alone", async () => {
          const c = await cache();
          const other = await cache();
          await c.setMany(['user:1', 'user:2', 'other'].map((key) => ({ key, value: key })));
          await other.set('user:1', 'kept');
          assert.equal(await c.deleteByPattern('user:*'), 0);
          assert.deepEqual(await c.getMany(['user:1', 'user:2', 'other']), [
            undefined,
            undefined,
            undefined,
          ]);
          assert.equal(await other.get('user:1'), 'kept');
          await c.set('user:3', 3);
          assert.equal(await c.get('user:3'), 3);
        });
      } else {
        it("'user:*' deletes user:1 and user:2, not users or other, and resolves how many", async () => {
          const c = await cache();
          await c.setMany(
            ['user:1', 'user:2', 'users', 'other', 'user'].map((key) => ({ key, value: key })),
          );
          assert.equal(await c.deleteByPattern('user:*'), 2);
          assert.deepEqual(await c.getMany(['user:1', 'user:2', 'users', 'other', 'user']), [
            undefined,
            undefined,
            'users',
            'other',
            'user',
          ]);
        });

        it("'?' matches exactly one character (an emoji is one)", async () => {
          const c = await cache();
          const keys = ['ka', 'k:', 'k🔑', 'k', 'kab'];
          await c.setMany(keys.map((key) => ({ key, value: key })));
          assert.equal(await c.deleteByPattern('k?'), 3);
          assert.deepEqual(await c.getMany(keys), [undefined, undefined, undefined, 'k', 'kab']);
        });

        it("'[a-c]' matches one character of the range", async () => {
          const c = await cache();
          const keys = ['ka', 'kb', 'kc', 'kd', 'kA', 'k-', 'kab'];
          await c.setMany(keys.map((key) => ({ key, value: key })));
          assert.equal(await c.deleteByPattern('k[a-c]'), 3);
          assert.deepEqual(await c.getMany(keys), [
            undefined,
            undefined,
            undefined,
            'kd',
            'kA',
            'k-',
            'kab',
          ]);
        });

        it("'[^a]' matches one character not in the set", async () => {
          const c = await cache();
          const keys = ['ka', 'kb', 'k*', 'kbb', 'k'];
          await c.setMany(keys.map((key) => ({ key, value: key })));
          assert.equal(await c.deleteByPattern('k[^a]'), 2);
          assert.deepEqual(await c.getMany(keys), ['ka', undefined, undefined, 'kbb', 'k']);
        });

        it("'\\*', '\\?' and '\\[' match the literal character only", async () => {
          const c = await cache();
          const keys = ['a*', 'ab', 'a?', 'a[b]', 'a\\'];
          await c.setMany(keys.map((key) => ({ key, value: key })));
          assert.equal(await c.deleteByPattern('a\\*'), 1);
          assert.equal(await c.deleteByPattern('a\\?'), 1);
          assert.equal(await c.deleteByPattern('a\\[b\\]'), 1);
          assert.equal(await c.deleteByPattern('a\\\\'), 1);
          assert.deepEqual(await c.getMany(keys), [
            undefined,
            'ab',
            undefined,
            undefined,
            undefined,
          ]);
        });

        it("keys holding ':' and glob characters are matched as written", async () => {
          const c = await cache();
          const keys = ['x:*:1', 'x:?:2', 'x:[a]:3', 'x:a:4', 'x::5'];
          await c.setMany(keys.map((key) => ({ key, value: key })));
          assert.equal(await c.deleteByPattern('x:\\*:*'), 1);
          assert.equal(await c.deleteByPattern('x:\\[a\\]:?'), 1);
          assert.equal(await c.deleteByPattern('x:?:*'), 2); // 'x:?:2' and 'x:a:4'
          assert.deepEqual(await c.getMany(keys), [
            undefined,
            undefined,
            undefined,
            undefined,
            'x::5',
          ]);
        });

        it('resolves 0 when nothing matches, and deletes nothing', async () => {
          const c = await cache();
          await c.set('k', 1);
          assert.equal(await c.deleteByPattern('nothing:*'), 0);
          assert.equal(await c.get('k'), 1);
        });

        it("is scoped to the cache's namespace, even when a prefix holds glob characters", async () => {
          const base = `suite-${run}-${++count}`;
          const globby = await cache({ prefix: `${base}a*` });
          const plain = await cache({ prefix: `${base}ab` });
          const short = await cache({ prefix: `${base}a` });
          for (const c of [globby, plain, short]) await c.setMany([{ key: 'k', value: c.prefix }]);
          assert.equal(await globby.deleteByPattern('*'), 1);
          assert.equal(await globby.get('k'), undefined);
          assert.equal(await plain.get('k'), `${base}ab`);
          assert.equal(await short.get('k'), `${base}a`);
          await globby.set('k', 'again');
          assert.equal(await plain.deleteByPattern('*'), 1);
          assert.equal(await globby.get('k'), 'again');
          assert.equal(await short.get('k'), `${base}a`);
        });

        it('keys over 1024 characters (stored shortened) are matched by the key as written', async () => {
          const c = await cache();
          const x = 'x'.repeat(2_000);
          const keys = [`report:${x}:1`, `report:${x}:2`, `other:${x}:1`, `report:${x}y`];
          await c.setMany(keys.map((key, i) => ({ key, value: i })));
          assert.equal(await c.deleteByPattern('report:x*z'), 0);
          assert.equal(await c.deleteByPattern('*:1'), 2);
          assert.deepEqual(await c.getMany(keys), [undefined, 1, undefined, 3]);
          assert.equal(await c.deleteByPattern(`report:${x}?`), 1);
          assert.deepEqual(await c.getMany(keys), [undefined, 1, undefined, undefined]);
          assert.equal(await c.deleteByPattern('report:*'), 1);
          assert.equal(await c.get(keys[1]!), undefined);
        });
      }

      for (const pattern of ['[abc', 'abc\\', '', 42, '[]', '[^]', '[z-a]', null]) {
        it(`a malformed pattern ${JSON.stringify(pattern)} → InvalidPatternError, nothing deleted`, async () => {
          const c = await cache();
          await c.set('abc', 1);
          await assert.rejects(c.deleteByPattern(pattern as string), (error: unknown) => {
            assert.ok(error instanceof InvalidPatternError, String(error));
            assert.equal(error.code, 'NEST_CACHE_INVALID_PATTERN');
            return true;
          });
          assert.equal(await c.get('abc'), 1);
        });
      }
    });

    describe('counters', () => {
      it('a missing counter starts at 0: increment → 1, increment by 5 → 6, decrement by 2 → 4', async () => {
        const c = await cache();
        assert.equal(await c.increment('c'), 1);
        assert.equal(await c.increment('c', 5), 6);
        assert.equal(await c.decrement('c', 2), 4);
        assert.equal(await c.decrement('d'), -1);
      });

      it('get() returns the counter as a number, and has() sees it', async () => {
        const c = await cache();
        await c.increment('c', 41);
        await c.increment('c');
        assert.equal(await c.get('c'), 42);
        assert.equal(await c.has('c'), true);
        assert.deepEqual(await c.getMany(['c', 'missing']), [42, undefined]);
      });

      it('the ttl given at creation applies: ttl() is within (0, given]', async () => {
        const c = await cache();
        await c.increment('c', 1, 30);
        assertBetween(await c.ttl('c'), 0.001, 30);
        await c.increment('forever', 1, null);
        assert.equal(await c.ttl('forever'), null);
        await c.increment('default');
        assertBetween(await c.ttl('default'), 0.001, 60);
      });

      it('later increments keep the expiry the counter was created with', async () => {
        const c = await cache();
        await c.increment('c', 1, 30);
        await c.increment('c', 1, 3_600);
        await c.decrement('c', 1, null);
        await c.increment('c');
        assertBetween(await c.ttl('c'), 0.001, 30);
        assert.equal(await c.get('c'), 2);
      });

      for (const by of [1.5, NaN, Infinity, -Infinity, 2 ** 53, '1', null, {}]) {
        it(`by = ${String(by) === '[object Object]' ? '{}' : (JSON.stringify(by) ?? String(by))} → NotACounterError, nothing stored`, async () => {
          const c = await cache();
          await assert.rejects(c.increment('c', by as number), NotACounterError);
          await assert.rejects(c.decrement('c', by as number), NotACounterError);
          assert.equal(await c.has('c'), false);
        });
      }

      it('incrementing a key that holds a normal value → NotACounterError, and the value is intact', async () => {
        const c = await cache();
        await c.set('k', { n: 1 });
        await c.set('digits', '12');
        await assert.rejects(c.increment('k'), NotACounterError);
        await assert.rejects(c.decrement('k', 1, 30), NotACounterError);
        await assert.rejects(c.increment('digits'), NotACounterError);
        assert.deepEqual(await c.get('k'), { n: 1 });
        assert.equal(await c.get('digits'), '12');
        assert.equal(c.stats.errors, 0);
      });

      it('100 concurrent increments all count', async () => {
        const c = await cache();
        const results = await Promise.all(Array.from({ length: 100 }, () => c.increment('c')));
        assert.equal(await c.get('c'), 100);
        assert.deepEqual(
          [...results].sort((a, b) => a! - b!),
          Array.from({ length: 100 }, (_, i) => i + 1),
        );
        await Promise.all(Array.from({ length: 50 }, () => c.decrement('c', 2)));
        assert.equal(await c.get('c'), 0);
      });
    });

    describe('stale serving in getOrSet (on a fake clock)', () => {
      const swr = { ttl: 10, staleWhileRevalidate: 60 };

      it('within its ttl, the cached value is served and the factory is not called', async () => {
        const { c, time } = await clocked();
        await c.getOrSet('k', () => 'v1', swr);
        await landed(c); // its flight ends once its value is stored
        time.now += 9_999;
        assert.equal(await c.getOrSet('k', () => assert.fail('factory called'), swr), 'v1');
        assert.equal(c.stats.stale, 0);
      });

      it('past its ttl inside staleWhileRevalidate: the stale value at once, one background refresh for 10 concurrent callers, and the next call after it lands sees the new value', async () => {
        const { c, time } = await clocked();
        await c.getOrSet('k', () => 'v1', swr);
        await landed(c); // its flight ends once its value is stored
        time.now += 10_000;
        const held = holdable<string>();
        const results = await Promise.all(
          Array.from({ length: 10 }, () => c.getOrSet('k', held.factory, swr)),
        );
        assert.deepEqual(results, Array(10).fill('v1')); // the refresh is still held
        assert.equal(held.calls, 1);
        assert.equal(c.stats.stale, 10);
        held.release('v2');
        await eventually(async () => (await c.get('k')) === 'v2');
        assert.equal(await c.getOrSet('k', () => assert.fail('factory called'), swr), 'v2');
        assert.equal(held.calls, 1);
      });

      it('past the stale window, the factory runs and the caller waits for it', async () => {
        const { c, time } = await clocked();
        await c.getOrSet('k', () => 'v1', swr);
        await landed(c); // its flight ends once its value is stored
        time.now += 70_000;
        const held = holdable<string>();
        let settled = false;
        const pending = c.getOrSet('k', held.factory, swr).finally(() => (settled = true));
        await held.started;
        await sleep(20);
        assert.equal(settled, false);
        held.release('v2');
        assert.equal(await pending, 'v2');
        assert.equal(c.stats.stale, 0);
      });

      it('staleIfError: past its ttl, a factory that throws → the stale value', async () => {
        const { c, time } = await clocked();
        const sie = { ttl: 10, staleIfError: 60 };
        await c.getOrSet('k', () => 'v1', sie);
        await landed(c); // its flight ends once its value is stored
        time.now += 30_000;
        const failing = () => Promise.reject(new Error('origin down'));
        assert.equal(await c.getOrSet('k', failing, sie), 'v1');
        assert.equal(c.stats.stale, 1);
        assert.equal(await c.getOrSet('k', () => 'v2', sie), 'v2');
      });

      it('staleIfError: a factory that throws with no stale value rejects', async () => {
        const { c, time } = await clocked();
        const sie = { ttl: 10, staleIfError: 60 };
        const failing = () => Promise.reject(new Error('origin down'));
        await assert.rejects(c.getOrSet('k', failing, sie), /origin down/);
        await c.getOrSet('k', () => 'v1', sie);
        await landed(c); // its flight ends once its value is stored
        time.now += 70_001; // past the window too
        await assert.rejects(c.getOrSet('k', failing, sie), /origin down/);
      });

      it('softTimeout with staleIfError: a factory slower than softTimeout → the stale value; its value is stored once it resolves', async () => {
        const { c, time } = await clocked();
        const soft = { ttl: 10, staleIfError: 60, softTimeout: '50ms' as const };
        await c.getOrSet('k', () => 'v1', soft);
        await landed(c); // its flight ends once its value is stored
        time.now += 11_000;
        const held = holdable<string>();
        assert.equal(await c.getOrSet('k', held.factory, soft), 'v1');
        assert.equal(c.stats.stale, 1);
        held.release('v2');
        await eventually(async () => (await c.get('k')) === 'v2');
        assert.equal(held.calls, 1);
      });

      it('get() on a stale entry is a miss, has() is false, ttl() is undefined', async () => {
        const { c, time } = await clocked();
        await c.set('k', 'v1', swr);
        await c.getOrSet('g', () => 'g1', swr);
        await landed(c); // its flight ends once its value is stored
        time.now += 10_000;
        assert.equal(await c.get('k'), undefined);
        assert.equal(await c.has('k'), false);
        assert.equal(await c.ttl('k'), undefined);
        assert.deepEqual(await c.getMany(['k', 'g']), [undefined, undefined]);
        // ...yet getOrSet still serves it, stale.
        const held = holdable<string>();
        assert.equal(await c.getOrSet('k', held.factory, swr), 'v1');
        held.release('v2');
        await landed(c);
      });

      it('stats.stale counts the stale values served', async () => {
        const { c, time } = await clocked();
        await c.getOrSet('a', () => 'a1', swr);
        await c.getOrSet('b', () => 'b1', { ttl: 10, staleIfError: 60 });
        await landed(c); // its flight ends once its value is stored
        time.now += 11_000;
        const held = holdable<string>();
        await c.getOrSet('a', held.factory, swr);
        await c.getOrSet('a', held.factory, swr);
        await c.getOrSet('b', () => Promise.reject(new Error('down')), {
          ttl: 10,
          staleIfError: 60,
        });
        assert.equal(c.stats.stale, 3);
        held.release('a2');
        await landed(c);
      });

      it('a background refresh that fails leaves the stale value served, and the next call tries again', async () => {
        const { c, time } = await clocked();
        await c.getOrSet('k', () => 'v1', swr);
        await landed(c); // its flight ends once its value is stored
        time.now += 11_000;
        let calls = 0;
        const failing = async () => {
          calls += 1;
          throw new Error('origin down');
        };
        assert.equal(await c.getOrSet('k', failing, swr), 'v1');
        await landed(c);
        assert.equal(await c.getOrSet('k', failing, swr), 'v1');
        await landed(c);
        assert.equal(calls, 2);
      });

      it('staleWhileRevalidate or staleIfError with ttl null → InvalidTtlError', async () => {
        const c = await cache();
        await assert.rejects(
          c.getOrSet('k', () => 1, { ttl: null, staleWhileRevalidate: 10 }),
          InvalidTtlError,
        );
        await assert.rejects(c.set('k', 1, { ttl: null, staleIfError: 10 }), InvalidTtlError);
        await assert.rejects(
          c.getOrSet('k', () => 1, { ttl: 10, staleWhileRevalidate: null as never }),
          InvalidTtlError,
        );
        assert.equal(await c.has('k'), false);
      });

      it('softTimeout without staleIfError → InvalidTtlError', async () => {
        const c = await cache();
        let calls = 0;
        await assert.rejects(
          c.getOrSet('k', () => ++calls, { ttl: 10, softTimeout: '50ms' }),
          InvalidTtlError,
        );
        await assert.rejects(
          c.getOrSet('k', () => ++calls, {
            ttl: 10,
            staleWhileRevalidate: 10,
            softTimeout: '50ms',
          }),
          InvalidTtlError,
        );
        assert.equal(calls, 0);
      });
    });

    describe('ttl() and the clock', () => {
      it("right after set('k', v, 1), ttl('k') is never more than 1", async () => {
        const c = await cache();
        for (let i = 0; i < 50; i += 1) {
          await c.set('k', i, 1);
          assertBetween(await c.ttl('k'), 0.001, 1);
        }
      });

      it("right after an invalidation in the same millisecond, ttl('k') is still never more than given", async () => {
        const { c } = await clocked();
        await c.invalidateTags(['t']);
        await c.set('k', 1, { ttl: 1, tags: ['t'] });
        await c.getOrSet('g', () => 1, { ttl: 1, tags: ['t'] });
        await landed(c);
        assertBetween(await c.ttl('k'), 0.001, 1);
        assertBetween(await c.ttl('g'), 0.001, 1);
      });

      it('on a fake clock, ttl() follows the clock, and the entry is a miss once it has passed', async () => {
        const { c, time } = await clocked();
        await c.set('k', 'v', 10);
        await c.getOrSet('g', () => 'g', '10s');
        await landed(c);
        await c.setMany([{ key: 'm', value: 'm', ttl: 10 }]);
        time.now += 4_000;
        for (const key of ['k', 'g', 'm']) assert.equal(await c.ttl(key), 6, key);
        time.now += 5_999;
        assert.equal(await c.ttl('k'), 0.001);
        assert.equal(await c.get('k'), 'v');
        time.now += 1;
        assert.deepEqual(await c.getMany(['k', 'g', 'm']), [undefined, undefined, undefined]);
        assert.equal(await c.ttl('k'), undefined);
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

/** A factory the test holds: it resolves (or rejects) when the test says so. */
function holdable<T>() {
  let release!: (value: T) => void;
  let fail!: (error: unknown) => void;
  let started!: () => void;
  const result = new Promise<T>((resolve, reject) => {
    release = resolve;
    fail = reject;
  });
  const startedPromise = new Promise<void>((resolve) => (started = resolve));
  const held = {
    calls: 0,
    /** Settles once the factory has been called. */
    started: startedPromise,
    factory: (): Promise<T> => {
      held.calls += 1;
      started();
      return result;
    },
    release,
    fail,
  };
  return held;
}

/** Waits until every flight of `c` has ended: what getOrSet produced is stored by then. */
function landed(c: BaseCache): Promise<void> {
  return eventually(() => c.inFlight().flights === 0);
}

/**
 * Waits until `check` holds (a background write landing), polling; never used to wait for a ttl
 * to pass (the tests drive a fake clock for that).
 */
async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 3_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
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
export function driverBehaviourSuite(
  name: string,
  create: DriverFactory,
  api: TestApi,
  traits?: SuiteTraits,
): void {
  cacheBehaviourSuite(name, (options) => new DriverCache(create, options), api, traits);
}
