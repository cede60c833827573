import { describe, expect, it } from 'vitest';
import {
  BREAKER_COOLDOWN_MS,
  BREAKER_THRESHOLD,
  ERROR_LOG_INTERVAL_MS,
} from '../lib/cache.constants.js';
import { FailurePolicy } from '../lib/failure-policy.js';

function policy() {
  const clock = { now: 1_000_000 };
  const lines: string[] = [];
  const logger = { error: (m: string) => lines.push(m), warn: (m: string) => lines.push(m) };
  return { clock, lines, failures: new FailurePolicy('RedisCache', logger, () => clock.now) };
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
    for (let i = 0; i < 50; i++) failures.failed('get', new Error('down'));
    expect(lines).toHaveLength(1);
    clock.now += ERROR_LOG_INTERVAL_MS;
    failures.failed('set', new Error('down'));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/49 more cache errors since the last report/);
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
});
