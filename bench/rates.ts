/** Calls per second of an operation, for the store benchmarks. */

/** Where results go so the engine cannot drop the calls as unused. */
export let sink: unknown;

/** Calls per second of a synchronous operation. */
export function syncRate(op: (caller: number) => unknown, ms: number): number {
  let calls = 0;
  const start = performance.now();
  const end = start + ms;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 256; i++) sink = op(0);
    calls += 256;
    now = performance.now();
  }
  return calls / ((now - start) / 1_000);
}

/** Calls per second of an async operation, with `callers` concurrent callers. */
export async function asyncRate(
  op: (caller: number) => unknown,
  callers: number,
  ms: number,
): Promise<number> {
  let calls = 0;
  const start = performance.now();
  const end = start + ms;
  const caller = async (_: unknown, caller: number) => {
    while (performance.now() < end) {
      for (let i = 0; i < 32; i++) sink = await op(caller);
      calls += 32;
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  return calls / ((performance.now() - start) / 1_000);
}
