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
