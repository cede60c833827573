import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Flights } from '../lib/flights.js';

// The one single-flight mechanism (getOrSet and CacheInterceptor): every flight ends by its
// deadline, whatever its leader does. Time is driven by a fake clock.
const BOUND_MS = 1_000;

describe('Flights', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('one leader per key: lead() gives nothing while a flight of the key is in progress; other keys are apart', () => {
    const flights = new Flights<string>(BOUND_MS);

    const first = flights.lead('k');
    const second = flights.lead('k');
    const other = flights.lead('other');

    expect(first).toBeDefined();
    expect(second).toBeUndefined();
    expect(other).toBeDefined();
    expect(flights.get('k')).toBe(first);
    expect(flights.size).toBe(2);
  });

  it('followers get what the leader lands, at once; the flight stays joinable until end()', async () => {
    const flights = new Flights<string>(BOUND_MS);
    const lead = flights.lead('k')!;
    const follower = flights.get('k')!.landing;

    lead.land({ kind: 'value', value: 'v' });
    const late = flights.get('k')!.landing;
    lead.end();

    expect(await follower).toEqual({ kind: 'value', value: 'v' });
    expect(await late).toEqual({ kind: 'value', value: 'v' });
    expect(flights.get('k')).toBeUndefined();
    expect(flights.size).toBe(0);
  });

  it('a leader that never lands nor ends: at the deadline its followers get a timeout, the key is free and no timer is left', async () => {
    const flights = new Flights<string>(BOUND_MS);
    const lead = flights.lead('k')!;
    const follower = flights.get('k')!.landing;

    await vi.advanceTimersByTimeAsync(BOUND_MS - 1);
    expect(flights.size).toBe(1);
    await vi.advanceTimersByTimeAsync(1);

    expect(await follower).toEqual({ kind: 'timeout', waitedMs: BOUND_MS });
    expect(flights.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(flights.lead('k')).toBeDefined(); // the next caller starts afresh
    lead.land({ kind: 'value', value: 'too late' }); // a late landing changes nothing
    lead.end();
  });

  it('a flight that landed but whose leader never calls end() (a write that hangs) still ends at the deadline', async () => {
    const flights = new Flights<string>(BOUND_MS);
    flights.lead('k')!.land({ kind: 'value', value: 'v' });

    await vi.advanceTimersByTimeAsync(BOUND_MS);

    expect(flights.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('end() without a landing gives the followers "empty", and clears the deadline', async () => {
    const flights = new Flights<string>(BOUND_MS);
    const lead = flights.lead('k')!;
    const follower = flights.get('k')!.landing;

    lead.end();

    expect(await follower).toEqual({ kind: 'empty' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a flight that ended does not remove the newer flight of its key', () => {
    const flights = new Flights<string>(BOUND_MS);
    const old = flights.lead('k')!;
    old.land({ kind: 'empty' });
    old.end();
    const newer = flights.lead('k')!;

    old.end();

    expect(flights.get('k')).toBe(newer);
  });
});
