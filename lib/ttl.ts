import { InvalidTtlError } from './errors.js';
import { messages } from './messages.js';

/** The units a Ttl string may carry: milliseconds, seconds, minutes, hours, days ('500ms', '5m'). */
export type TtlUnit = 'ms' | 's' | 'm' | 'h' | 'd';

/**
 * A time to live.
 * - a number is **seconds** (not milliseconds): `60` is one minute, `0.5` is 500 ms;
 * - a string carries its unit: `'500ms'`, `'30s'`, `'5m'`, `'1h'`, `'1d'`;
 * - `null` means the entry never expires.
 */
export type Ttl = number | `${number}${TtlUnit}` | null;

const UNIT_MS: Record<TtlUnit, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const TTL_STRING = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * The longest time to live: 10 years. Every backend keeps it as given (Redis refuses expiries past
 * 2^63 ms, Memcached's absolute expiry times stop in 2038); longer is almost always a unit mistake,
 * and null says "never expires".
 */
export const MAX_TTL_MS = 10 * 365 * UNIT_MS.d;

/**
 * Turns a Ttl into whole milliseconds (null: never expires). `where` names the
 * argument or option in the error, e.g. 'ttl' or 'CacheModule option "ttl"'.
 */
export function ttlToMs(ttl: Ttl, where = 'ttl'): number | null {
  if (ttl === null) return null;
  if (typeof ttl !== 'number' && typeof ttl !== 'string') {
    throw new InvalidTtlError(messages.invalidTtl(where, ttl, 'is not a number, a string or null'));
  }
  const ms = typeof ttl === 'number' ? ttl * 1_000 : stringToMs(ttl, where);
  if (Number.isNaN(ms)) throw new InvalidTtlError(messages.invalidTtl(where, ttl, 'is NaN'));
  if (ms === Infinity) {
    throw new InvalidTtlError(
      messages.invalidTtl(where, ttl, 'is Infinity; use null for never expires'),
    );
  }
  if (ms <= 0) {
    throw new InvalidTtlError(
      messages.invalidTtl(where, ttl, 'is not positive; to remove an entry call delete()'),
    );
  }
  if (ms < 1) throw new InvalidTtlError(messages.invalidTtl(where, ttl, 'is under 1 ms'));
  if (ms > MAX_TTL_MS) {
    throw new InvalidTtlError(
      messages.invalidTtl(
        where,
        ttl,
        'is over 10 years, the longest ttl; use null for never expires',
      ),
    );
  }
  return Math.round(ms);
}

/** The longest delay a Node timer takes (about 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A duration nest-cache waits with a timer (a timeout option): whole milliseconds, positive and at
 * most MAX_TIMER_MS. `option` names it in the error, e.g. 'getOrSetTimeout'. Out of range is an
 * error at startup, not a silent clamp: Node would turn a longer delay into 1 ms.
 */
export function timeoutToMs(value: Ttl | undefined, option: string, fallback: Ttl): number {
  // null is refused at run time too: JavaScript callers and forRootAsync factories can pass it.
  const where = `CacheModule option "${option}"`;
  const ms = ttlToMs(value === undefined ? fallback : value, where);
  if (ms === null) {
    throw new InvalidTtlError(
      messages.invalidTimeout(option, value, 'is null, but a wait must end: give a duration'),
    );
  }
  if (ms > MAX_TIMER_MS) {
    throw new InvalidTtlError(
      messages.invalidTimeout(
        option,
        value,
        `is over ${MAX_TIMER_MS} ms (about 24.8 days), the longest timer Node runs`,
      ),
    );
  }
  return ms;
}

function stringToMs(ttl: string, where: string): number {
  // No trimming: ' 5m ' is refused like any other malformed string, as lru-cache would.
  const match = TTL_STRING.exec(ttl);
  if (!match) {
    throw new InvalidTtlError(
      messages.invalidTtl(where, ttl, 'is not a number followed by a known unit (ms, s, m, h, d)'),
    );
  }
  return Number(match[1]) * UNIT_MS[match[2] as TtlUnit];
}
