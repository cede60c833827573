import { Agent, request as httpRequest } from 'node:http';

/** One request's outcome under load. */
export interface LoadSample {
  /** Its place in the load: the index given to `path` and `giveUpAfterMs`. */
  index: number;
  /** When it was sent, in ms since the load started. */
  at: number;
  ms: number;
  /** HTTP status; 0 when it failed, timed out or was abandoned. */
  status: number;
  /** The X-Cache header, when there was one. */
  cache?: string;
  /** The path requested. */
  path: string;
  /** Why there is no status: 'abandoned' when the client gave up on purpose, else the socket error. */
  error?: string;
}

export interface LoadOptions {
  /** http://127.0.0.1:port */
  url: string;
  /** The path of each request, given its index (one hot URL: a constant). */
  path: (index: number) => string;
  /** Open connections, each sending one request after the other. */
  connections: number;
  /** How long the load runs. */
  durationMs: number;
  /**
   * When the client gives up on a request and closes its socket: a number for every request, or a
   * function of the request's index for clients that leave early on purpose (recorded as
   * 'abandoned'). A request answered in time is never abandoned.
   */
  giveUpAfterMs: number | ((index: number) => number);
  /**
   * At the end of the load, close every connection at once, with its request in flight (as wrk does
   * when its duration ends) instead of waiting for the answers. Those requests are 'abandoned'.
   */
  leaveAtEnd?: boolean;
  /** Ends the load early, when it settles: no request is sent after it. */
  stop?: Promise<unknown>;
}

/**
 * A bounded load of keep-alive connections (like `wrk -cN -dT`): every connection sends its next
 * request as soon as the last one answered or was given up, until durationMs has passed. Resolves
 * with every request's outcome once all of them ended. Targets only the given (loopback) URL.
 */
export async function runLoad(options: LoadOptions): Promise<LoadSample[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const samples: LoadSample[] = [];
  const started = performance.now();
  const deadline = started + options.durationMs;
  const giveUp = options.giveUpAfterMs;
  let index = 0;
  const inFlight = new Set<() => void>();
  let stopped = false;
  void options.stop?.then(() => (stopped = true));
  const worker = async () => {
    while (!stopped && performance.now() < deadline) {
      const i = index++;
      const sample = await send(
        agent,
        options.url,
        options.path(i),
        typeof giveUp === 'number' ? giveUp : giveUp(i),
        i,
        inFlight,
      );
      sample.at -= started;
      samples.push(sample);
    }
  };
  const leaving = options.leaveAtEnd
    ? setTimeout(() => {
        for (const leave of inFlight) leave();
      }, options.durationMs)
    : undefined;
  try {
    await Promise.all(Array.from({ length: options.connections }, worker));
  } finally {
    clearTimeout(leaving);
    agent.destroy();
  }
  return samples;
}

/** One request on its own connection, given up (socket closed) after `giveUpAfterMs`. */
export function requestOnce(url: string, path: string, giveUpAfterMs: number): Promise<LoadSample> {
  const agent = new Agent({ keepAlive: false });
  return send(agent, url, path, giveUpAfterMs).finally(() => agent.destroy());
}

function send(
  agent: Agent,
  url: string,
  path: string,
  giveUpAfterMs: number,
  index = 0,
  inFlight?: Set<() => void>,
): Promise<LoadSample> {
  const at = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const end = (sample: Omit<LoadSample, 'index' | 'at' | 'ms' | 'path'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      inFlight?.delete(leave);
      resolve({ index, at, ms: performance.now() - at, path, ...sample });
    };
    const req = httpRequest(`${url}${path}`, { agent }, (res) => {
      res.resume();
      res.once('end', () =>
        end({ status: res.statusCode ?? 0, cache: res.headers['x-cache'] as string | undefined }),
      );
      res.once('error', (error) => end({ status: 0, error: error.message }));
    });
    const leave = () => {
      end({ status: 0, error: 'abandoned' });
      req.destroy();
    };
    const timer = setTimeout(leave, giveUpAfterMs);
    inFlight?.add(leave);
    req.once('error', (error) => end({ status: 0, error: error.message }));
    req.end();
  });
}

/** The figures a fault test reports and asserts on. */
export interface LoadSummary {
  requests: number;
  ok: number;
  /** Requests that got no answer before the client gave up. */
  unanswered: number;
  p99Ms: number;
  maxMs: number;
}

export function summarize(samples: LoadSample[]): LoadSummary {
  const ms = samples.map((sample) => sample.ms).sort((a, b) => a - b);
  return {
    requests: samples.length,
    ok: samples.filter((sample) => sample.status === 200).length,
    unanswered: samples.filter((sample) => sample.status === 0).length,
    p99Ms: Math.round(ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))] ?? 0),
    maxMs: Math.round(ms[ms.length - 1] ?? 0),
  };
}
