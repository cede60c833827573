/** What a test needs of one HTTP exchange: status, exact body bytes, headers and how long it took. */
export interface Reply {
  status: number;
  /** The body as UTF-8 text. */
  text: string;
  /** The body exactly as received. */
  bytes: Buffer;
  headers: Headers;
  /** The X-Cache header: 'HIT', 'MISS', 'BYPASS', or null when the interceptor did not run. */
  cache: string | null;
  /** Milliseconds from sending the request to having read the whole body. */
  ms: number;
}

/** A request never waits longer than this: a hang fails the test with a clear message, not a timeout. */
const REQUEST_TIMEOUT_MS = 5_000;

/** Sends one request to `base + path` and reads the whole response. */
export async function request(base: string, path: string, init: RequestInit = {}): Promise<Reply> {
  const start = performance.now();
  const response = await fetch(`${base}${path}`, {
    ...init,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  return {
    status: response.status,
    text: bytes.toString('utf8'),
    bytes,
    headers: response.headers,
    cache: response.headers.get('x-cache'),
    ms: performance.now() - start,
  };
}

/** The parsed JSON body of a reply. */
export function json<T = Record<string, unknown>>(reply: Reply): T {
  return JSON.parse(reply.text) as T;
}

/**
 * Calls `attempt` until it returns true, or fails after `deadlineMs`: for waiting on a TTL to run
 * out or on Redis to come back, without a fixed sleep.
 */
export async function pollUntil(
  what: string,
  attempt: () => Promise<boolean>,
  deadlineMs: number,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await attempt())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${deadlineMs} ms`);
    await sleep(intervalMs);
  }
}

/** Waits until the cache has no shared read and no flight left, or fails after `withinMs`. */
export async function nothingInFlight(
  cache: { inFlight(): { reads: number; flights: number } },
  withinMs: number,
): Promise<void> {
  let last = cache.inFlight();
  await pollUntil(
    `nothing left in flight (last seen: ${JSON.stringify(last)})`,
    async () => {
      last = cache.inFlight();
      return last.reads === 0 && last.flights === 0;
    },
    withinMs,
    10,
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
