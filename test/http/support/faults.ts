import { expect } from 'vitest';
import type { CacheModuleOptions } from '../../../lib/index.js';
import type { MemcachedServerHandle } from '../../support/memcached-server.js';
import type { RedisServerHandle } from '../../support/redis-server.js';
import type { SentinelSetup } from '../../support/sentinel.js';
import { type LoadSample, runLoad, summarize, type LoadSummary } from '../../support/load.js';
import { nothingInFlight } from './http.js';
import type { TestApp } from './app.js';

const COMMAND_TIMEOUT_MS = 200;
const OPERATION_TIMEOUT_MS = 1_000;
const GET_OR_SET_TIMEOUT_MS = 2_000;

/** The bounds of the fault tests: short, so a run takes seconds. */
const FAULT_BOUNDS = {
  operationTimeout: `${OPERATION_TIMEOUT_MS}ms`,
  getOrSetTimeout: `${GET_OR_SET_TIMEOUT_MS}ms`,
} as const;

/** The Redis backend as fault tests run it. */
export function faultTestCache(redis: RedisServerHandle): CacheModuleOptions {
  return {
    backend: 'redis',
    redis: { url: redis.url, commandTimeout: COMMAND_TIMEOUT_MS },
    ...FAULT_BOUNDS,
  };
}

/** The Redis backend through a Sentinel set-up, as fault tests run it. */
export function sentinelFaultTestCache(setup: SentinelSetup): CacheModuleOptions {
  return {
    backend: 'redis',
    redis: {
      sentinels: [{ host: '127.0.0.1', port: setup.sentinel.port }],
      name: setup.name,
      commandTimeout: COMMAND_TIMEOUT_MS,
    },
    ...FAULT_BOUNDS,
  };
}

/** The memcached backend as fault tests run it. */
export function memcachedFaultTestCache(memcached: MemcachedServerHandle): CacheModuleOptions {
  return {
    backend: 'memcached',
    memcached: { servers: memcached.servers, commandTimeout: COMMAND_TIMEOUT_MS },
    ...FAULT_BOUNDS,
  };
}

/**
 * The longest a request may take while Redis is out, from the options above: its read is given up
 * after operationTimeout (up to a quarter more), it follows at most two flights of
 * getOrSetTimeout each, and the handler answers at once; 1 s more for an event loop that also runs
 * the load generator.
 */
export const REQUEST_BOUND_MS = OPERATION_TIMEOUT_MS * 1.25 + 2 * GET_OR_SET_TIMEOUT_MS + 1_000;

/** A flight that never lands ends at getOrSetTimeout: a check of "nothing in flight" must come sooner. */
export const SOONER_THAN_A_FLIGHT_MS = GET_OR_SET_TIMEOUT_MS / 2;

/** How soon after Redis answers again responses are HITs once more (reconnect backoff is at most 2 s). */
export const HITS_RESUME_WITHIN_MS = 5_000;

/** Connections of the load, like `wrk -c50`; half on one hot URL, half on many URLs. */
export const CONNECTIONS = 50;
export const HOT_PATH = '/items/7';
const pathOf = (index: number) => (index % 2 === 0 ? HOT_PATH : `/items/${100 + (index % 400)}`);

/** A fault: what starts it and what ends it (Redis answers PING again once end() resolved). */
export interface Fault {
  name: string;
  begin(redis: RedisServerHandle): Promise<void> | void;
  end(redis: RedisServerHandle): Promise<void> | void;
}

let repeating: NodeJS.Timeout | undefined;

export const FAULTS: Fault[] = [
  {
    name: 'killed (SIGKILL), then restarted',
    begin: (redis) => redis.kill('SIGKILL'),
    end: (redis) => redis.restart(),
  },
  {
    name: 'stopped (SIGTERM), then restarted',
    begin: (redis) => redis.kill('SIGTERM'),
    end: (redis) => redis.restart(),
  },
  {
    name: 'frozen (SIGSTOP), then resumed (SIGCONT)',
    begin: (redis) => redis.freeze(),
    end: (redis) => redis.resume(),
  },
  {
    name: 'closing every client connection (CLIENT KILL) every 100 ms',
    begin: (redis) => {
      repeating = setInterval(() => void redis.killClients().catch(() => {}), 100);
    },
    end: () => clearInterval(repeating),
  },
];

export interface FaultRun {
  samples: LoadSample[];
  summary: LoadSummary;
  /** The requests sent while Redis was out. */
  duringFault: LoadSummary;
  /** ms from the end of the fault (Redis answering again) to the first HIT of the hot URL sent after it. */
  hitsAfterMs: number;
  /** What the run showed once its app was closed, when that was watched (report() prints it). */
  afterClose?: AfterClose;
}

/** Client connections of each server an app used ('redis', 'sentinel'), counting ones left out. */
export type Connections = Record<string, number>;

/** What a scenario shows once its app is closed. */
export interface AfterClose {
  /** Unhandled rejections from before the app started until it was closed. */
  unhandledRejections: number;
  /** Their reasons, for the message of a failed test. */
  rejections?: string[];
  /**
   * Before the app started, while it was open (just before app.close()), and after app.close()
   * (once back to before, or at a deadline).
   */
  connections: { before: Connections; whileOpen?: Connections; after: Connections };
}

/** One scenario's figures: a line of its log, a row of its file's table. */
export interface Figures {
  scenario: string;
  /** Requests sent, and those not answered 200. */
  sent: number;
  failed: number;
  /** The latencies of the requests sent during the fault. */
  duringFault: { requests: number; p99Ms: number; maxMs: number };
  /** ms from the end of the fault to the first HIT of the hot URL. */
  hitsAfterMs: number;
  afterClose?: AfterClose;
}

/**
 * Runs the load of CONNECTIONS connections for `durationMs` while `schedule` breaks and mends
 * Redis; resolves once every request has ended. `schedule` gets the time since the load started
 * and resolves when Redis is good again for the rest of the run; it returns when (ms since the
 * start) the first fault began and the last one ended.
 */
export async function underLoad(
  app: TestApp,
  durationMs: number,
  schedule: (sinceStart: () => number) => Promise<{ faultAt: number; backAt: number }>,
  { stopAfterMs }: { stopAfterMs?: number } = {},
): Promise<FaultRun> {
  const started = performance.now();
  let stop = (): void => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const load = runLoad({
    stop: stopped,
    url: app.url,
    path: pathOf,
    connections: CONNECTIONS,
    durationMs,
    // Far above the bound: a request still unanswered then is a hang.
    giveUpAfterMs: 3 * REQUEST_BOUND_MS,
  });
  const { faultAt, backAt } = await schedule(() => performance.now() - started);
  if (stopAfterMs !== undefined) setTimeout(stop, stopAfterMs);
  const samples = await load;
  const firstHit = samples
    .filter((sample) => sample.path === HOT_PATH && sample.at >= backAt && sample.cache === 'HIT')
    .reduce((first, sample) => Math.min(first, sample.at), Infinity);
  return {
    samples,
    summary: summarize(samples),
    duringFault: summarize(samples.filter((sample) => sample.at >= faultAt && sample.at < backAt)),
    hitsAfterMs: Math.round(firstHit - backAt),
  };
}

/** A run's figures, for report() and a table of a file's scenarios. */
export function figuresOf(what: string, run: FaultRun): Figures {
  const { summary, duringFault } = run;
  return {
    scenario: what,
    sent: summary.requests,
    failed: summary.requests - summary.ok,
    duringFault: {
      requests: duringFault.requests,
      p99Ms: duringFault.p99Ms,
      maxMs: duringFault.maxMs,
    },
    hitsAfterMs: run.hitsAfterMs,
    ...(run.afterClose && { afterClose: run.afterClose }),
  };
}

/**
 * Connections as "0 → 1 → 0" (before, while open, after close), or by server:
 * "replica 0 → 1 → 0, sentinel 0 → 0 → 0".
 */
export function formatConnections(connections: AfterClose['connections']): string {
  const { before, whileOpen, after } = connections;
  const servers = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  const one = (server: string) =>
    [before, ...(whileOpen ? [whileOpen] : []), after]
      .map((counts) => counts[server] ?? '?')
      .join(' → ');
  return servers.length === 1
    ? one(servers[0]!)
    : servers.map((server) => `${server} ${one(server)}`).join(', ');
}

/** "430 ms", or "none" when the hot URL was no HIT again. */
export function formatMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms} ms` : 'none';
}

/** Prints a scenario's figures on one line. */
export function reportFigures(figures: Figures): Figures {
  const { duringFault, afterClose } = figures;
  console.log(
    `${figures.scenario}: ${figures.sent} sent, ${figures.failed} failed; ` +
      `during the fault ${duringFault.requests} requests, p99 ${duringFault.p99Ms} ms, ` +
      `max ${duringFault.maxMs} ms; ` +
      `HITs ${formatMs(figures.hitsAfterMs)} after the backend was back` +
      (afterClose
        ? `; ${afterClose.unhandledRejections} unhandled rejections; ` +
          `connections ${formatConnections(afterClose.connections)} (before, open, closed)`
        : ''),
  );
  return figures;
}

/** One line of figures per run, for the log (and the notes of whoever changes this code). */
export function report(what: string, run: FaultRun): Figures {
  return reportFigures(figuresOf(what, run));
}

/** What every fault run must show: every request answered in time, HITs back, nothing in flight. */
export async function expectRecovered(app: TestApp, run: FaultRun): Promise<void> {
  const { summary } = run;
  expect(summary.unanswered, 'requests left without an answer').toBe(0);
  expect(summary.ok, 'requests answered 200').toBe(summary.requests);
  expect(summary.maxMs, 'the slowest request (ms)').toBeLessThanOrEqual(REQUEST_BOUND_MS);
  expect(run.hitsAfterMs, 'ms until the hot URL is a HIT again').toBeLessThanOrEqual(
    HITS_RESUME_WITHIN_MS,
  );
  // Shared reads and flights end within their bounds once the load stops.
  await nothingInFlight(app.cache, REQUEST_BOUND_MS);
}
