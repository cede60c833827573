import { describe, expect, it } from 'vitest';
import { InvalidTtlError } from '../lib/index.js';
import { ttlToMs } from '../lib/ttl.js';

describe('ttlToMs', () => {
  it.each([
    [60, 60_000],
    [0.5, 500],
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1_500],
  ] as const)('reads %j as %d ms (numbers are seconds)', (ttl, ms) => {
    expect(ttlToMs(ttl)).toBe(ms);
  });

  it('reads null as never expires', () => {
    expect(ttlToMs(null)).toBeNull();
  });

  it.each([
    [-1, /not positive/],
    [0, /not positive/],
    [NaN, /NaN/],
    [Infinity, /Infinity; use null/],
    ['5x', /unknown|known unit/],
    ['5 minutes', /known unit/],
    ['-5s', /known unit/],
    [0.0001, /under 1 ms/],
    [{}, /not a number/],
  ])('rejects %s with an InvalidTtlError that says why', (ttl, why) => {
    expect(() => ttlToMs(ttl as never)).toThrow(InvalidTtlError);
    expect(() => ttlToMs(ttl as never)).toThrow(why);
  });

  it('names the option in the message and explains the units', () => {
    expect(() => ttlToMs(-5, 'CacheModule option "ttl"')).toThrow(
      /Invalid CacheModule option "ttl": -5 .*SECONDS/,
    );
  });
});
