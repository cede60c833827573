/** Most keys one multi-key read carries; more keys queued in one turn make more reads. */
export const MAX_BATCH_KEYS = 256;

export interface Waiter<V> {
  resolve(value: V): void;
  reject(error: unknown): void;
}

/**
 * Coalesces single-key reads into one multi-key read (a Redis MGET): one command, one reply and
 * one callback for many callers, instead of one each. (Redis Cluster would need one batch per
 * hash slot: MGET refuses keys of different slots.)
 *
 * A batch is sent on process.nextTick: it holds the reads of one synchronous stretch of code and
 * of the promise callbacks that follow it (a Promise.all; the callers one reply woke up). Waiting
 * longer (setImmediate) would also join the reads of other requests of the same event-loop turn,
 * but measured slower on cached 1 KB routes (0.8x), as every read then waits a turn more; those
 * reads still reach Redis in one write, through ioredis' auto-pipelining.
 *
 * A write must call flush() before it is sent, so that it never overtakes a read made before it.
 * (That keeps the order only for commands that go through the same auto-pipeline queue as the
 * batch: ioredis sends a MULTI at once.)
 */
export class ReadBatch<V> {
  private keys: string[] = [];
  private waiters: Waiter<V>[] = [];
  private scheduled = false;

  constructor(private readonly readMany: (keys: string[]) => Promise<V[]>) {}

  read(key: string): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      this.keys.push(key);
      this.waiters.push({ resolve, reject });
      if (this.keys.length >= MAX_BATCH_KEYS) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        process.nextTick(this.flush);
      }
    });
  }

  /** Sends the reads queued so far, now. */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.keys.length === 0) return;
    const { keys, waiters } = this;
    this.keys = [];
    this.waiters = [];
    sendReads(keys, waiters, this.readMany);
  };
}

/**
 * Reads `keys` with `read` and settles each waiter with its value, in order. Every waiter settles,
 * whatever `read` does: throws, rejects, or answers something odd.
 */
export function sendReads<V>(
  keys: string[],
  waiters: Waiter<V>[],
  read: (keys: string[]) => Promise<V[]>,
): void {
  new Promise<V[]>((resolve) => resolve(read(keys)))
    .then((values) => {
      if (!Array.isArray(values) || values.length !== keys.length) {
        throw new TypeError(`a read of ${keys.length} keys answered ${String(values)}`);
      }
      for (let i = 0; i < waiters.length; i++) waiters[i]!.resolve(values[i]!);
    })
    .catch((error: unknown) => {
      for (const waiter of waiters) waiter.reject(error); // no-op for those already settled
    });
}
