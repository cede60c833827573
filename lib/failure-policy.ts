import { Logger } from '@nestjs/common';
import {
  BREAKER_COOLDOWN_MS,
  BREAKER_THRESHOLD,
  ERROR_LOG_INTERVAL_MS,
} from './cache.constants.js';
import { messages, reasonOf } from './messages.js';

/** The circuit breaker's thresholds, validated (see BaseCacheOptions.breaker). */
export interface BreakerSettings {
  threshold: number;
  cooldownMs: number;
}

/**
 * The circuit breaker, as `cache.breaker` reads it:
 * - 'closed': calls reach the backend;
 * - 'open': `threshold` calls in a row failed, and until `openUntil` calls fail open at once,
 *   without waiting on the backend;
 * - 'half-open': the cooldown has passed with no success since: calls reach the backend again, the
 *   first failure opens it again, the first success closes it.
 */
export interface BreakerState {
  state: 'closed' | 'open' | 'half-open';
  /** Backend calls that failed in a row, up to now. */
  consecutiveFailures: number;
  /** Until when (ms since the epoch, on the cache's clock) it stays open; null when closed. */
  openUntil: number | null;
  threshold: number;
  cooldownMs: number;
}

/**
 * Fail open, but visibly: counts backend failures, logs them at most once per
 * interval (never with values), and opens a circuit breaker after a run of
 * consecutive failures so a frozen backend is not waited on by every call. The
 * breaker's opening and its closing are each logged once per outage.
 */
export class FailurePolicy {
  private consecutive = 0;
  /** 0 while closed: a breaker that is closed costs no clock read. */
  private openUntil = 0;
  private lastLogAt = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly backendName: string,
    private readonly logger: Pick<Logger, 'log' | 'warn' | 'error'>,
    private readonly now: () => number = Date.now,
    private readonly breaker: BreakerSettings = {
      threshold: BREAKER_THRESHOLD,
      cooldownMs: BREAKER_COOLDOWN_MS,
    },
    /** Told of each opening and closing that is logged, with the state right after it. */
    private readonly changed: (state: BreakerState) => void = () => {},
  ) {}

  /** True while the breaker is open: the caller should fail open without calling the backend. */
  isOpen(): boolean {
    return this.openUntil !== 0 && this.openUntil > this.now();
  }

  succeeded(): void {
    this.consecutive = 0;
    if (this.openUntil === 0) return;
    this.openUntil = 0;
    this.logger.log(messages.breakerClosed(this.backendName));
    this.changed(this.state());
  }

  failed(operation: string, error: unknown): void {
    this.consecutive += 1;
    if (this.consecutive >= this.breaker.threshold) {
      const opening = this.openUntil === 0;
      this.openUntil = this.now() + this.breaker.cooldownMs;
      // Once per outage: reopening after a failed try in the half-open state says nothing new.
      if (opening) {
        this.logger.warn(
          messages.breakerOpened(this.backendName, this.consecutive, this.breaker.cooldownMs),
        );
        this.changed(this.state());
      }
    }
    this.report(operation, reasonOf(error));
  }

  /** A problem that is not a backend outage (a corrupt entry, a dropped write), logged under the same limit. */
  warn(message: string): void {
    if (this.mayLog()) this.logger.warn(message);
  }

  state(): BreakerState {
    const { threshold, cooldownMs } = this.breaker;
    const consecutiveFailures = this.consecutive;
    if (this.openUntil === 0) {
      return { state: 'closed', consecutiveFailures, openUntil: null, threshold, cooldownMs };
    }
    const state = this.openUntil > this.now() ? 'open' : 'half-open';
    return { state, consecutiveFailures, openUntil: this.openUntil, threshold, cooldownMs };
  }

  private report(operation: string, reason: string): void {
    if (!this.mayLog()) return;
    this.logger.error(
      messages.backendFailing(this.backendName, operation, reason, this.suppressed),
    );
    this.suppressed = 0;
  }

  private mayLog(): boolean {
    const now = this.now();
    if (now - this.lastLogAt < ERROR_LOG_INTERVAL_MS) {
      this.suppressed += 1;
      return false;
    }
    this.lastLogAt = now;
    return true;
  }
}
