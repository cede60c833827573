import { Logger } from '@nestjs/common';
import {
  BREAKER_COOLDOWN_MS,
  BREAKER_THRESHOLD,
  ERROR_LOG_INTERVAL_MS,
} from './cache.constants.js';
import { messages, reasonOf } from './messages.js';

/**
 * Fail open, but visibly: counts backend failures, logs them at most once per
 * interval (never with values), and opens a circuit breaker after a run of
 * consecutive failures so a frozen backend is not waited on by every call.
 */
export class FailurePolicy {
  private consecutive = 0;
  private openUntil = 0;
  private lastLogAt = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly backendName: string,
    private readonly logger: Pick<Logger, 'warn' | 'error'>,
    private readonly now: () => number = Date.now,
  ) {}

  /** True while the breaker is open: the caller should fail open without calling the backend. */
  isOpen(): boolean {
    // Every read asks; a breaker that never opened costs no clock read.
    return this.openUntil !== 0 && this.openUntil > this.now();
  }

  succeeded(): void {
    this.consecutive = 0;
  }

  failed(operation: string, error: unknown): void {
    this.consecutive += 1;
    if (this.consecutive >= BREAKER_THRESHOLD) this.openUntil = this.now() + BREAKER_COOLDOWN_MS;
    this.report(operation, reasonOf(error));
  }

  /** A problem that is not a backend outage (a corrupt entry, a dropped write), logged under the same limit. */
  warn(message: string): void {
    if (this.mayLog()) this.logger.warn(message);
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
