/** Defaults and internal limits, each decided here once. */

/** Default time to live when neither the call nor the module sets one: 60 seconds. */
export const DEFAULT_TTL = 60;

/** Default key namespace: keys are stored as `${prefix}:${key}`. */
export const DEFAULT_PREFIX = 'nest-cache';

/** Default bound of the memory backend, in entries. */
export const DEFAULT_MEMORY_MAX = 10_000;

/** How long getOrSet waits for a factory before its callers give up: 10 seconds. */
export const DEFAULT_GET_OR_SET_TIMEOUT = '10s';

/** Keys longer than this are shortened to a prefix of them plus their SHA-256. */
export const MAX_KEY_LENGTH = 1_024;

/** At most one backend-failure log line per this many milliseconds. */
export const ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Circuit breaker: after this many consecutive backend failures, calls skip the
 * backend (fail open at once) for BREAKER_COOLDOWN_MS, then one is let through.
 */
export const BREAKER_THRESHOLD = 5;
export const BREAKER_COOLDOWN_MS = 1_000;
