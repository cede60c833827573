/**
 * Waits for `promise` at most `ms`, ignoring its outcome; leaves no timer behind. With `unref`,
 * the wait does not keep the process alive (a wait during shutdown must, or the process could
 * exit before the rest of the shutdown ran).
 */
export async function settleWithin(
  promise: Promise<unknown>,
  ms: number,
  { unref = false }: { unref?: boolean } = {},
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    if (unref) timer.unref();
  });
  try {
    await Promise.race([promise.then(noop, noop), elapsed]);
  } finally {
    clearTimeout(timer);
  }
}

export function noop(): void {}

/**
 * `promise`, or a rejection with `message()` once `ms` has passed without it settling; leaves no
 * timer behind. The work itself is not stopped: only the wait for it ends.
 */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  message: () => string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message())), ms);
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
