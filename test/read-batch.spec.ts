import { describe, expect, it } from 'vitest';
import { MAX_BATCH_KEYS, ReadBatch } from '../lib/stores/read-batch.js';

// ReadBatch on its own, with a stand-in for MGET; test/redis-read-batch.spec.ts runs it on Redis.
describe('ReadBatch', () => {
  it('reads made in one turn become one multi-key read, and each caller gets its own answer', async () => {
    const batches: string[][] = [];
    const batch = new ReadBatch<string>(async (keys) => {
      batches.push(keys);
      return keys.map((key) => key.toUpperCase());
    });

    const values = await Promise.all(['a', 'b', 'c'].map((key) => batch.read(key)));

    expect(values).toEqual(['A', 'B', 'C']);
    expect(batches).toEqual([['a', 'b', 'c']]);
  });

  it(`a batch is sent as soon as it holds ${MAX_BATCH_KEYS} keys`, async () => {
    const sizes: number[] = [];
    const batch = new ReadBatch<number>(async (keys) => {
      sizes.push(keys.length);
      return keys.map(Number);
    });

    const keys = Array.from({ length: MAX_BATCH_KEYS + 1 }, (_, i) => String(i));
    const values = await Promise.all(keys.map((key) => batch.read(key)));

    expect(values).toEqual(keys.map(Number));
    expect(sizes).toEqual([MAX_BATCH_KEYS, 1]);
  });

  it.each([
    ['rejects', () => Promise.reject(new Error('MGET failed')), /MGET failed/],
    [
      'throws',
      () => {
        throw new Error('client closed');
      },
      /client closed/,
    ],
    ['answers fewer values than keys', async () => ['only one'], /a read of 2 keys answered/],
    ['answers something that is not a list', async () => 'nonsense', /a read of 2 keys answered/],
  ])(
    'when the multi-key read %s, every caller of the batch is rejected',
    async (_, readMany, message) => {
      const batch = new ReadBatch<string>(readMany as (keys: string[]) => Promise<string[]>);

      const results = await Promise.allSettled([batch.read('a'), batch.read('b')]);

      for (const result of results) {
        expect(result.status).toBe('rejected');
        expect(String((result as PromiseRejectedResult).reason)).toMatch(message);
      }
    },
  );

  it('flush() sends the reads queued so far at once', async () => {
    const batches: string[][] = [];
    const batch = new ReadBatch<string>(async (keys) => {
      batches.push(keys);
      return keys;
    });

    const first = batch.read('a');
    batch.flush();
    const second = batch.read('b');

    expect(batches).toEqual([['a']]);
    expect(await Promise.all([first, second])).toEqual(['a', 'b']);
    expect(batches).toEqual([['a'], ['b']]);
  });
});
