import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type BaseCacheOptions,
  type CacheDriver,
  DriverCache,
  MemoryDriver,
  CacheConfigError,
  FactoryTimeoutError,
  InvalidTtlError,
  MemoryCache,
  RedisCache,
  type Step,
} from '../lib/index.js';
import { pollUntil } from './http/support/http.js';
import { usePrivateRedis } from './support/redis-server.js';

// Every wait inside nest-cache settles within a bound derived from the options, whatever the
// backend does: answer, reject, or never answer. Time is driven by a fake clock.
const OPERATION_TIMEOUT_MS = 1_000;
/** A backend call is given up between operationTimeout and a quarter more (one timer serves all). */
const GIVEN_UP_BY_MS = OPERATION_TIMEOUT_MS * 1.25;
const GET_OR_SET_TIMEOUT_MS = 3_000;

/** A driver that never answers: every method returns a promise that never settles. */
class SilentDriver implements CacheDriver {
  readonly name = 'silent';
  readonly calls: string[] = [];
  private never(call: string): Promise<never> {
    this.calls.push(call);
    return new Promise<never>(() => {});
  }
  get() {
    return this.never('read');
  }
  set() {
    return this.never('write');
  }
  delete() {
    return this.never('remove');
  }
  ttl() {
    return this.never('ttl');
  }
  async *scan(_prefix: string, _pattern: string | undefined, step: Step) {
    // A walk whose first round trip never answers.
    yield await step(this.never('clear'));
  }
  close() {
    return this.never('close');
  }
}

class SilentCache extends DriverCache {
  constructor(options: BaseCacheOptions) {
    const driver = new SilentDriver();
    super(driver, options);
    this.calls = driver.calls;
  }
  readonly calls: string[];
}

/** A memory driver whose clear() takes 20 round trips of half an operationTimeout each. */
class SteppingCache extends DriverCache {
  steps = 0;
  constructor(options: BaseCacheOptions) {
    super((context) => {
      const driver = new MemoryDriver({}, context.clock);
      return Object.assign(driver, {
        clear: async (_prefixes: string[], step: Step) => {
          for (let i = 0; i < 20; i += 1) {
            await step(new Promise((resolve) => setTimeout(resolve, OPERATION_TIMEOUT_MS / 2)));
            this.steps += 1;
          }
          MemoryDriver.prototype.clear.call(driver);
        },
      });
    }, options);
  }
}

const silent = (options: BaseCacheOptions = {}) =>
  new SilentCache({
    operationTimeout: `${OPERATION_TIMEOUT_MS}ms`,
    getOrSetTimeout: `${GET_OR_SET_TIMEOUT_MS}ms`,
    ...options,
  });

/** Tells whether `promise` has settled (read it after the fake clock advanced). */
function track(promise: Promise<unknown>): { settled: boolean } {
  const state = { settled: false };
  const done = () => {
    state.settled = true;
  };
  promise.then(done, done);
  return state;
}

describe('a backend that never answers', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('50 concurrent gets of one key share one read, and all resolve undefined at operationTimeout; the next get reads afresh', async () => {
    const cache = silent();
    const gets = Array.from({ length: 50 }, () => cache.get('k'));
    const first = track(gets[0]!);

    await vi.advanceTimersByTimeAsync(OPERATION_TIMEOUT_MS - 1);
    expect(first.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(GIVEN_UP_BY_MS - OPERATION_TIMEOUT_MS + 1);

    expect(await Promise.all(gets)).toEqual(Array(50).fill(undefined));
    expect(cache.calls).toEqual(['read']);
    expect(cache.stats.errors).toBe(1);
    expect(cache.inFlight()).toEqual({ reads: 0, flights: 0 });
    void cache.get('k');
    expect(cache.calls).toEqual(['read', 'read']);
  });

  it('every one-call operation resolves with its fail-open result at operationTimeout', async () => {
    const cache = silent();
    const calls = {
      set: cache.set('k', 1),
      delete: cache.delete('k'),
      has: cache.has('k'),
      ttl: cache.ttl('k'),
      getMany: cache.getMany(['a', 'b']),
      setMany: cache.setMany([{ key: 'a', value: 1 }]),
      deleteMany: cache.deleteMany(['a', 'b']),
    };

    await vi.advanceTimersByTimeAsync(GIVEN_UP_BY_MS);

    expect(await calls.set).toBe(false);
    expect(await calls.delete).toBe(false);
    expect(await calls.has).toBe(false);
    expect(await calls.ttl).toBeUndefined();
    expect(await calls.getMany).toEqual([undefined, undefined]);
    expect(await calls.setMany).toBe(false);
    expect(await calls.deleteMany).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('clear(): a round trip that never answers is given up at operationTimeout, and clear() resolves (failing open)', async () => {
    const cache = silent();
    const clearing = track(cache.clear());

    await vi.advanceTimersByTimeAsync(GIVEN_UP_BY_MS);

    expect(clearing.settled).toBe(true);
    expect(cache.stats.errors).toBe(1);
  });

  it('clear() is not given up as a whole: a walk of many round trips, each answering, runs to its end', async () => {
    const cache = new SteppingCache({ operationTimeout: `${OPERATION_TIMEOUT_MS}ms` });
    const clearing = track(cache.clear());

    await vi.advanceTimersByTimeAsync(10 * OPERATION_TIMEOUT_MS);

    expect(clearing.settled).toBe(true);
    expect(cache.steps).toBe(20);
    expect(cache.stats.errors).toBe(0);
  });

  it('close() resolves after 2.5 s (a backend shutdown may take longer than one call), or operationTimeout when that is longer', async () => {
    const cache = silent();
    const closing = track(cache.close());

    await vi.advanceTimersByTimeAsync(2_500 - 1);
    expect(closing.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);

    expect(closing.settled).toBe(true);
    expect(cache.isClosed).toBe(true);
  });

  it('close() with an operationTimeout longer than 2.5 s waits operationTimeout', async () => {
    const cache = silent({ operationTimeout: '4s' });
    const closing = track(cache.close());

    await vi.advanceTimersByTimeAsync(4_000 - 1);
    expect(closing.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);

    expect(closing.settled).toBe(true);
  });

  it('getOrSet: the read fails open at operationTimeout, then the factory runs and its value is returned', async () => {
    const cache = silent();
    const value = cache.getOrSet('k', () => 'fresh');

    await vi.advanceTimersByTimeAsync(GIVEN_UP_BY_MS);

    expect(await value).toBe('fresh');
  });
});

describe('a factory that settles after its flight ran out of time', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('its value is not stored: a delete after the deadline, which no flight could mark, still holds', async () => {
    const cache = new MemoryCache({ getOrSetTimeout: `${GET_OR_SET_TIMEOUT_MS}ms` });
    await cache.set('k', 'old');
    await cache.delete('k');
    let release!: (value: string) => void;
    const call = cache.getOrSet('k', () => new Promise<string>((r) => (release = r)));
    const outcome = call.catch((error: unknown) => error);

    await vi.advanceTimersByTimeAsync(GET_OR_SET_TIMEOUT_MS);
    expect(await outcome).toBeInstanceOf(FactoryTimeoutError);
    await cache.delete('k'); // the data changed meanwhile: nothing in flight to mark any more
    release('stale');
    await vi.advanceTimersByTimeAsync(0);

    expect(await cache.get('k')).toBeUndefined();
  });

  it('nor does it overwrite what a newer flight stored', async () => {
    const cache = new MemoryCache({ getOrSetTimeout: `${GET_OR_SET_TIMEOUT_MS}ms` });
    let release!: (value: string) => void;
    const first = cache.getOrSet('k', () => new Promise<string>((r) => (release = r)));
    void first.catch(() => {});

    await vi.advanceTimersByTimeAsync(GET_OR_SET_TIMEOUT_MS);
    expect(await cache.getOrSet('k', () => 'newer')).toBe('newer');
    release('older');
    await vi.advanceTimersByTimeAsync(0);

    expect(await cache.get('k')).toBe('newer');
  });
});

describe('a factory that never settles', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('20 concurrent getOrSet calls run it once and all reject with FactoryTimeoutError at getOrSetTimeout; the next call runs the factory again', async () => {
    const cache = new MemoryCache({ getOrSetTimeout: `${GET_OR_SET_TIMEOUT_MS}ms` });
    let runs = 0;
    const factory = () => {
      runs += 1;
      return new Promise<never>(() => {});
    };
    const calls = Array.from({ length: 20 }, () => cache.getOrSet('k', factory));
    const outcomes = Promise.allSettled(calls);

    await vi.advanceTimersByTimeAsync(GET_OR_SET_TIMEOUT_MS);

    const results = await outcomes;
    expect(runs).toBe(1);
    for (const result of results) {
      expect(result.status).toBe('rejected');
      expect((result as PromiseRejectedResult).reason).toBeInstanceOf(FactoryTimeoutError);
    }
    expect(cache.inFlight()).toEqual({ reads: 0, flights: 0 });
    void cache.getOrSet('k', factory).catch(() => {});
    expect(runs).toBe(2);
  });
});

describe('timeouts out of the range of a timer', () => {
  it.each([['25d'], ['30d'], [2 ** 31 / 1_000]])(
    'getOrSetTimeout %s is refused at construction, naming the option (Node would fire it after 1 ms)',
    (value) => {
      expect(() => new MemoryCache({ getOrSetTimeout: value as never })).toThrow(InvalidTtlError);
      expect(() => new MemoryCache({ getOrSetTimeout: value as never })).toThrow(
        /getOrSetTimeout.*24\.8 days/,
      );
    },
  );

  it('getOrSetTimeout 24d is accepted, and a getOrSet under it waits for its factory', async () => {
    const cache = new MemoryCache({ getOrSetTimeout: '24d' });
    const value = await cache.getOrSet('k', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      return 'v';
    });

    expect(value).toBe('v');
  });

  it.each([['getOrSetTimeout'], ['operationTimeout']])(
    '%s: null is refused (a wait must end)',
    (option) => {
      expect(() => new MemoryCache({ [option]: null })).toThrow(new RegExp(`${option}.*must end`));
    },
  );

  it('operationTimeout 25d is refused, naming the option', () => {
    expect(() => new MemoryCache({ operationTimeout: '25d' })).toThrow(/operationTimeout/);
  });
});

describe('Redis timeouts', () => {
  it('redis.commandTimeout at or above operationTimeout is refused at startup, naming both options', async () => {
    await expect(
      RedisCache.create({ operationTimeout: '500ms', redis: { commandTimeout: 500 } }),
    ).rejects.toThrow(/redis\.commandTimeout.*operationTimeout/);
    await expect(
      RedisCache.create({ operationTimeout: '500ms', redis: { commandTimeout: 500 } }),
    ).rejects.toBeInstanceOf(CacheConfigError);
  });

  it.each([['commandTimeout'], ['connectTimeout']])(
    'redis.%s over 2^31-1 ms is refused at startup, naming the option',
    async (option) => {
      await expect(RedisCache.create({ redis: { [option]: 2 ** 31 } })).rejects.toThrow(
        new RegExp(`redis\\.${option}.*at most 2147483647`),
      );
    },
  );
});

describe('a Redis client of your own whose commandTimeout outlasts operationTimeout', () => {
  const redis = usePrivateRedis();

  it('is used as it is (it keeps your settings), and with Redis frozen its calls still settle within operationTimeout', async () => {
    const client = new Redis(redis.server.url, {
      commandTimeout: 5_000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    client.on('error', () => {});
    const cache = await RedisCache.create({
      prefix: `outlasting-${Date.now()}`,
      operationTimeout: '300ms',
      redis: { client },
    });
    try {
      await cache.set('k', 'v');
      expect(await cache.get('k')).toBe('v');
      await redis.server.freeze();
      const started = performance.now();
      expect(await cache.get('k')).toBeUndefined();
      expect(performance.now() - started).toBeLessThan(300 * 1.25 + 1_000);
    } finally {
      redis.server.resume();
      await cache.close();
      client.disconnect();
    }
  });
});

describe('a Redis client of your own without bounds (offline queue, no command timeout)', () => {
  const redis = usePrivateRedis();

  const adopt = async () => {
    const client = new Redis(redis.server.url, { lazyConnect: false });
    client.on('error', () => {});
    const cache = await RedisCache.create({
      prefix: `unbounded-${Date.now()}`,
      operationTimeout: '300ms',
      redis: { client },
    });
    return { client, cache };
  };

  it('Redis frozen: get, set and getOrSet still settle within operationTimeout', async () => {
    const { client, cache } = await adopt();
    await cache.set('k', 'v');
    await redis.server.freeze();
    try {
      const started = performance.now();
      const [got, stored, computed] = await Promise.all([
        cache.get('k'),
        cache.set('k', 'w'),
        cache.getOrSet('other', () => 'fresh'),
      ]);
      const ms = performance.now() - started;

      expect(got).toBeUndefined();
      expect(stored).toBe(false);
      expect(computed).toBe('fresh');
      // The read gives up, then getOrSet's factory runs; a busy machine gets a second of slack.
      expect(ms).toBeLessThan(2 * 300 * 1.25 + 1_000);
      // getOrSet's flight ends once its write gave up too.
      await pollUntil(
        'nothing in flight',
        async () => cache.inFlight().flights === 0 && cache.inFlight().reads === 0,
        300 * 1.25 + 1_000,
      );
    } finally {
      redis.server.resume();
      await cache.close();
      client.disconnect();
    }
  });

  it('Redis killed: calls queued offline settle within operationTimeout; when Redis returns and the queue answers late, nothing breaks', async () => {
    const { client, cache } = await adopt();
    await redis.server.kill();
    try {
      const started = performance.now();
      const got = await cache.get('k');
      expect(got).toBeUndefined();
      expect(performance.now() - started).toBeLessThan(300 * 1.25 + 1_000);
    } finally {
      await redis.server.restart();
    }
    // The offline queue is flushed on reconnect: its late answers reach nobody.
    await pollUntil('the client reconnected', async () => client.status === 'ready', 5_000);
    await cache.set('k', 'after');
    expect(await cache.get('k')).toBe('after');
    await cache.close();
    client.disconnect();
  });
});
