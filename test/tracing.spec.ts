import { tracingChannel } from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryCache } from '../lib/index.js';
import { type CacheTraceContext, TRACED } from '../lib/tracing.js';

// Each cache operation is traced on the node:diagnostics_channel tracing channel
// `nest-cache:<operation>`, as APM agents and OpenTelemetry instrumentations subscribe to them.
type Phase = 'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error';

const unsubscribe: (() => void)[] = [];
afterEach(() => {
  for (const off of unsubscribe.splice(0)) off();
});

/** Every phase of every traced operation, in order, with a copy of its context at that phase. */
function traceAll() {
  const seen: { phase: Phase; context: CacheTraceContext }[] = [];
  for (const operation of TRACED) {
    const channel = tracingChannel<object, CacheTraceContext>(`nest-cache:${operation}`);
    const record = (phase: Phase) => (context: CacheTraceContext) =>
      void seen.push({ phase, context: { ...context } });
    const handlers = {
      start: record('start'),
      end: record('end'),
      asyncStart: record('asyncStart'),
      asyncEnd: record('asyncEnd'),
      error: record('error'),
    };
    channel.subscribe(handlers);
    unsubscribe.push(() => channel.unsubscribe(handlers));
  }
  return seen;
}

describe('tracing channels', () => {
  it('a get is traced from start to asyncEnd on nest-cache:get, with the key, the cache, the backend and the result', async () => {
    const cache = new MemoryCache({ prefix: 'traced' });
    await cache.set('a', 42);
    const seen = traceAll();
    expect(await cache.get('a')).toBe(42);
    expect(seen.map(({ phase }) => phase)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
    expect(seen[0]!.context).toEqual({
      operation: 'get',
      cache: 'traced',
      backend: 'memory',
      key: 'a',
    });
    expect(seen.at(-1)!.context).toMatchObject({ operation: 'get', key: 'a', result: 42 });
    await cache.close();
  });

  it('a getOrSet whose factory fails is traced with the error; set, deleteMany and invalidateTags carry their keys and tags', async () => {
    const cache = new MemoryCache();
    const seen = traceAll();
    const failure = new Error('the origin failed');
    await expect(
      cache.getOrSet('b', () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    await cache.set('c', 1, { tags: ['t'] });
    await cache.deleteMany(['c', 'd']);
    await cache.invalidateTags(['t']);
    const errors = seen.filter(({ phase }) => phase === 'error');
    expect(errors).toEqual([
      {
        phase: 'error',
        context: expect.objectContaining({ operation: 'getOrSet', error: failure }),
      },
    ]);
    const starts = seen.filter(({ phase }) => phase === 'start').map(({ context }) => context);
    expect(starts).toEqual([
      expect.objectContaining({ operation: 'getOrSet', key: 'b' }),
      expect.objectContaining({ operation: 'set', key: 'c' }),
      expect.objectContaining({ operation: 'deleteMany', keys: ['c', 'd'] }),
      expect.objectContaining({ operation: 'invalidateTags', tags: ['t'] }),
    ]);
    await cache.close();
  });

  it('with nobody subscribed, nothing is published and results are unchanged', async () => {
    const cache = new MemoryCache();
    const channel = tracingChannel(`nest-cache:get`);
    expect(channel.hasSubscribers).toBe(false);
    await cache.set('a', 1);
    expect(await cache.get('a')).toBe(1);
    await expect(cache.get('')).rejects.toThrow(/key/i);
    await cache.close();
  });
});
