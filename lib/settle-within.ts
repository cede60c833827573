/** Waits for `promise` at most `ms`, ignoring its outcome; leaves no timer behind. */
export async function settleWithin(promise: PromiseLike<unknown>, ms: number): Promise<void> {
  await withDeadline(promise, ms, () => new Error('gave up')).then(noop, noop);
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
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timedOut()), ms);
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
