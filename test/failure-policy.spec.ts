import { describe, expect, it } from 'vitest';
import {
  BREAKER_COOLDOWN_MS,
  BREAKER_THRESHOLD,
  ERROR_LOG_INTERVAL_MS,
} from '../lib/cache.constants.js';
import { FailurePolicy } from '../lib/failure-policy.js';
import { DriverCache } from '../lib/index.js';

function policy(breaker?: { threshold: number; cooldownMs: number }) {
  const clock = { now: 1_000_000 };
  const lines: string[] = [];
  const push = (m: string) => lines.push(m);
  const logger = { error: push, warn: push, log: push };
  const failures = new FailurePolicy('RedisCache', logger, () => clock.now, breaker);
  return { clock, lines, failures };
}

describe('FailurePolicy', () => {
  it('logs the first failure with the operation, the reason and what fail-open means', () => {
    const { lines, failures } = policy();
    failures.failed('get', new Error('Command timed out'));
    expect(lines).toEqual([
      expect.stringMatching(
        /RedisCache get failed \(Command timed out\).*reads are misses, writes are dropped/,
      ),
    ]);
  });

  it('logs at most once per interval, then says how many it held back', () => {
    const { clock, lines, failures } = policy();
    // The breaker's opening is a line of its own (tested below).
    const failureLines = () => lines.filter((line) => !/circuit breaker/.test(line));
    for (let i = 0; i < 50; i++) failures.failed('get', new Error('down'));
    expect(failureLines()).toHaveLength(1);
    clock.now += ERROR_LOG_INTERVAL_MS;
    failures.failed('set', new Error('down'));
    expect(failureLines()).toHaveLength(2);
    expect(failureLines()[1]).toMatch(/49 more cache errors since the last report/);
  });

  it('opens the breaker after consecutive failures and closes it after the cooldown', () => {
    const { clock, failures } = policy();
    for (let i = 1; i < BREAKER_THRESHOLD; i++) failures.failed('get', new Error('down'));
    expect(failures.isOpen()).toBe(false);
    failures.failed('get', new Error('down'));
    expect(failures.isOpen()).toBe(true);
    clock.now += BREAKER_COOLDOWN_MS;
    expect(failures.isOpen()).toBe(false);
  });

  it('a success resets the run of failures', () => {
    const { failures } = policy();
    for (let i = 1; i < BREAKER_THRESHOLD; i++) failures.failed('get', new Error('down'));
    failures.succeeded();
    failures.failed('get', new Error('down'));
    expect(failures.isOpen()).toBe(false);
  });

  it('logs only the error message, never other properties of it', () => {
    const { lines, failures } = policy();
    failures.failed(
      'set',
      Object.assign(new Error('ERR wrong number'), { command: { args: ['secret-value'] } }),
    );
    expect(lines.join()).not.toContain('secret-value');
  });

  it('its state reads closed, then open until the cooldown ends, then half-open until a call succeeds, with the thresholds given', () => {
    const { clock, failures } = policy({ threshold: 2, cooldownMs: 5_000 });
    expect(failures.state()).toEqual({
      state: 'closed',
      consecutiveFailures: 0,
      openUntil: null,
      threshold: 2,
      cooldownMs: 5_000,
    });
    failures.failed('get', new Error('down'));
    expect(failures.state()).toMatchObject({ state: 'closed', consecutiveFailures: 1 });
    failures.failed('get', new Error('down'));
    expect(failures.state()).toMatchObject({ state: 'open', openUntil: clock.now + 5_000 });
    clock.now += 4_999;
    expect(failures.isOpen()).toBe(true);
    clock.now += 1;
    expect(failures.state()).toMatchObject({ state: 'half-open', consecutiveFailures: 2 });
    expect(failures.isOpen()).toBe(false);
    failures.failed('get', new Error('still down'));
    expect(failures.state()).toMatchObject({ state: 'open', openUntil: clock.now + 5_000 });
    clock.now += 5_000;
    failures.succeeded();
    expect(failures.state()).toMatchObject({
      state: 'closed',
      consecutiveFailures: 0,
      openUntil: null,
    });
  });

  it('each transition is logged once per outage: opening (not each reopening after a failed try), and closing', () => {
    const { clock, lines, failures } = policy({ threshold: 3, cooldownMs: 1_000 });
    const breakerLines = () => lines.filter((line) => /circuit breaker/.test(line));
    for (let i = 0; i < 3; i++) failures.failed('get', new Error('down'));
    expect(breakerLines()).toEqual([
      expect.stringMatching(/3 backend calls failed in a row.*opened.*1000 ms/),
    ]);
    for (let tries = 0; tries < 5; tries++) {
      clock.now += 1_000;
      failures.failed('get', new Error('down')); // half-open, the try fails: open again
    }
    expect(breakerLines()).toHaveLength(1);
    failures.succeeded();
    failures.succeeded();
    expect(breakerLines()).toEqual([
      expect.stringMatching(/opened/),
      expect.stringMatching(/answers again; the circuit breaker closed/),
    ]);
  });
});

describe('CacheModule option "breaker"', () => {
  /** A backend that always fails. */
  const down = {
    name: 'down',
    get: () => Promise.reject(new Error('down')),
    set: () => Promise.reject(new Error('down')),
    delete: () => Promise.reject(new Error('down')),
    ttl: () => Promise.reject(new Error('down')),
    async *scan() {},
    close: () => undefined,
  };

  it('its threshold and cooldown are the breaker cache.breaker reads, on the cache clock', async () => {
    const time = { now: 1_700_000_000_000 };
    const cache = new DriverCache(down, {
      clock: { now: () => time.now },
      breaker: { threshold: 2, cooldown: '30s' },
    });
    expect(cache.breaker).toMatchObject({ state: 'closed', threshold: 2, cooldownMs: 30_000 });
    await cache.get('a');
    await cache.get('b');
    expect(cache.breaker).toMatchObject({ state: 'open', openUntil: time.now + 30_000 });
    time.now += 30_000;
    expect(cache.breaker.state).toBe('half-open');
    await cache.close();
  });

  it('defaults to 5 failures in a row and a 1 s cooldown', () => {
    const cache = new DriverCache(down, {});
    expect(cache.breaker).toEqual({
      state: 'closed',
      consecutiveFailures: 0,
      openUntil: null,
      threshold: BREAKER_THRESHOLD,
      cooldownMs: BREAKER_COOLDOWN_MS,
    });
    expect([BREAKER_THRESHOLD, BREAKER_COOLDOWN_MS]).toEqual([5, 1_000]);
  });

  it.each([
    [{ threshold: 0 }, /"breaker.threshold"/],
    [{ threshold: 1.5 }, /"breaker.threshold"/],
    [{ cooldown: null }, /"breaker.cooldown"/],
    [{ thresold: 3 }, /"breaker.thresold"/],
    ['5', /"breaker"/],
  ])('a bad breaker option %j is refused, naming it', (breaker, named) => {
    expect(() => new DriverCache(down, { breaker: breaker as never })).toThrow(named);
  });
});
