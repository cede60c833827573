/**
 * The one source of time: milliseconds since the epoch. Every time nest-cache reads (when an
 * entry was stored, its age, when the breaker may close, how long a flight waited, when a memory
 * entry expires) comes from the cache's clock, so a test can drive time with a clock of its own
 * instead of sleeping. Waiting (timeouts, deadlines) uses the runtime's timers, which fake-timer
 * libraries drive.
 */
export interface Clock {
  now(): number;
}

/** The system clock. */
export const systemClock: Clock = { now: () => Date.now() };
