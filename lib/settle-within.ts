/**
 * Waits for `promise` at most `ms`, ignoring its outcome; leaves no timer behind. With `unref`,
 * the wait does not keep the process alive (a wait during shutdown must, or the process could
 * exit before the rest of the shutdown ran).
 */
export async function settleWithin(
  promise: PromiseLike<unknown>,
  ms: number,
  { unref = false }: { unref?: boolean } = {},
): Promise<void> {
  await withDeadline(promise, ms, () => new Error('gave up'), { unref }).then(noop, noop);
}

export function noop(): void {}

/**
 * `promise`, or a rejection with `timedOut()` once `ms` has passed without it settling; leaves no
 * timer behind. The work itself is not stopped: only the wait for it ends.
 */
export function withDeadline<T>(
  promise: PromiseLike<T>,
  ms: number,
  timedOut: () => Error,
  { unref = false }: { unref?: boolean } = {},
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timedOut()), ms);
    if (unref) timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
