/**
 * Requests the load generator cannot make: one-off requests that check a route, a burst of
 * concurrent cold requests, and requests during a Redis outage. Every request has a timeout and
 * goes to 127.0.0.1.
 */
import { Agent, request } from 'node:http';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  ms: number;
}

/** One GET; rejects with HungError when no complete response came within `timeoutMs`. */
export function get(url: string, timeoutMs = 5_000, agent?: Agent): Promise<Reply> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          ms: performance.now() - start,
        });
      });
      res.on('error', fail);
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new HungError(url, timeoutMs));
    }, timeoutMs);
    function fail(error: Error) {
      clearTimeout(timer);
      reject(error);
    }
    req.on('error', fail);
    req.end();
  });
}

export class HungError extends Error {
  constructor(url: string, timeoutMs: number) {
    super(`GET ${url} got no response within ${timeoutMs} ms`);
  }
}

/** What a server counted so far: origin calls of its cached routes, and its CPU time. */
export async function serverStats(
  base: string,
): Promise<{ originCalls: number; cpuMicros: number }> {
  const reply = await get(`${base}/bench/stats`);
  return JSON.parse(reply.body.toString()) as { originCalls: number; cpuMicros: number };
}

export interface BurstResult {
  ok: number;
  /** Non-2xx responses and connection errors. */
  failed: number;
  /** No response within the client timeout. */
  hung: number;
  /** Latencies of the successful responses, in ms. */
  latencies: number[];
}

/** Sends `count` GETs of `url` at once, each on its own connection, and waits for all of them. */
export async function burst(url: string, count: number, timeoutMs: number): Promise<BurstResult> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const result: BurstResult = { ok: 0, failed: 0, hung: 0, latencies: [] };
  await Promise.all(
    Array.from({ length: count }, async () => {
      try {
        const reply = await get(url, timeoutMs, agent);
        if (reply.status >= 200 && reply.status < 300) {
          result.ok += 1;
          result.latencies.push(reply.ms);
        } else {
          result.failed += 1;
        }
      } catch (error) {
        if (error instanceof HungError) result.hung += 1;
        else result.failed += 1;
      }
    }),
  );
  agent.destroy();
  return result;
}
