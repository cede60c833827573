/** How many ticks make one bound: a call is given up between 1 and 1 + 1/TICKS bounds after it began. */
const TICKS = 4;

/** A pending call, in a list in the order the calls began. */
interface Pending {
  /** The tick count when the call began. */
  readonly began: number;
  giveUp(): void;
  prev: Pending | undefined;
  next: Pending | undefined;
}

/**
 * Bounds many pending calls with one timer instead of one timer each (a timer per backend read
 * cost a sixth of the throughput of concurrent Redis gets). Calls are given up in the order they
 * began, each between `boundMs` and 1.25 × `boundMs` after it began; the timer runs only while a
 * call is pending. The calls are kept in a linked list, oldest first: adding and removing one is a
 * few pointer writes, and a tick stops at the first call that is not due yet.
 */
export class Deadlines {
  private ticks = 0;
  private oldest: Pending | undefined;
  private newest: Pending | undefined;
  private count = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly boundMs: number) {}

  /** `promise`'s outcome, or a rejection with `timedOut()` once the bound has passed without one. */
  within<T>(promise: PromiseLike<T>, timedOut: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = {
        began: this.ticks,
        giveUp: () => reject(timedOut()),
        prev: this.newest,
        next: undefined,
      };
      if (this.newest) this.newest.next = entry;
      else this.oldest = entry;
      this.newest = entry;
      this.count += 1;
      this.timer ??= setInterval(this.tick, Math.max(1, Math.floor(this.boundMs / TICKS)));
      promise.then(
        (value) => {
          this.remove(entry);
          resolve(value);
        },
        (error: unknown) => {
          this.remove(entry);
          reject(error);
        },
      );
    });
  }

  /** How many calls are pending. */
  get size(): number {
    return this.count;
  }

  private remove(entry: Pending): void {
    // An entry given up on is out of the list already (its prev and next are cleared then).
    if (entry.prev === undefined && this.oldest !== entry) return;
    if (entry.prev) entry.prev.next = entry.next;
    else this.oldest = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.newest = entry.prev;
    entry.prev = entry.next = undefined;
    this.count -= 1;
  }

  private readonly tick = (): void => {
    this.ticks += 1;
    // Began in tick `began`, so at least TICKS whole ticks (one bound) have passed since.
    while (this.oldest && this.ticks - this.oldest.began > TICKS) {
      const entry = this.oldest;
      this.remove(entry);
      entry.giveUp();
    }
    if (this.count === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.ticks = 0;
    }
  };
}
