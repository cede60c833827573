/**
 * `npm run bench`: nest-cache against @nestjs/cache-manager, side by side in one run, on Express
 * and Fastify, memory and Redis. See bench/README.md.
 *
 *   npm run bench                  the full run (about 15 minutes), results in bench/results/
 *   npm run bench -- --smoke       a short run (under 2 minutes) for CI, results in a temp folder
 *   BENCH_SMOKE=1 npm run bench    the same
 *   --out DIR                      where to write results.md, results.json, hit-throughput.svg
 *   BENCH_LOAD=autocannon          use autocannon even when wrk is installed
 *
 * Everything runs on 127.0.0.1 against a private redis-server on a free port. The servers under
 * test each run in their own process on core 1; this process, the load generator and redis-server
 * run on core 0. Every phase is bounded in time.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMemcachedServer } from '../test/support/memcached-server.js';
import { startRedisServer, type RedisServerHandle } from '../test/support/redis-server.js';
import {
  type Adapter,
  ADAPTERS,
  BACKENDS,
  bodies,
  type BodySize,
  BODY_SIZES,
  CACHE_LIBRARIES,
  COLD_ORIGIN_MS,
  DISK_WORKERS,
  routes,
  type ServerSetup,
  setupName,
} from './fixtures.js';
import { loadGenerator, type LoadGenerator } from './load.js';
import { burst, type BurstResult, get, serverStats } from './probes.js';
import { killOnExit, onCore, pinSelf, type Server, startServer } from './processes.js';
import {
  type ColdSeries,
  evaluateTargets,
  type FleetSample,
  type FleetSeries,
  type HttpSeries,
  type OutageResult,
  percentile,
  type Results,
  writeResults,
} from './report.js';
import type { BackendsReport } from './store-backends.js';
import type { StoreReport, StoreSettings } from './store-ops.js';

const LOAD_CORE = 0;
const SERVER_CORE = 1;
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const STORE_SCRIPT = fileURLToPath(new URL('./store-ops.js', import.meta.url));
const BACKENDS_SCRIPT = fileURLToPath(new URL('./store-backends.js', import.meta.url));
/** The client timeout of each request of the cold and fleet bursts: no response by then is hung. */
const BURST_TIMEOUT_MS = 10_000;
/** The adapters of the fleet bursts. */
const FLEET_ADAPTERS: Adapter[] = ['fastify'];

interface Settings {
  rounds: number;
  /** Seconds per measured load run (whole seconds: wrk takes no fractions). */
  seconds: number;
  /** Seconds of load on a route right before each measured run of it, not measured. */
  warmupSeconds: number;
  connections: number;
  coldRounds: number;
  coldRequests: number;
  coldOriginMs: number;
  /** Server processes per fleet, and concurrent cold requests to each per fleet burst. */
  fleetInstances: number;
  fleetRequests: number;
  outageRequests: number;
  outageTimeoutMs: number;
  store: StoreSettings;
}

const FULL: Settings = {
  rounds: 5,
  seconds: 3,
  warmupSeconds: 1,
  connections: 50,
  coldRounds: 3,
  coldRequests: 200,
  coldOriginMs: COLD_ORIGIN_MS,
  fleetInstances: 4,
  fleetRequests: 200,
  outageRequests: 100,
  outageTimeoutMs: 3_000,
  store: { rounds: 4, memoryMs: 300, redisMs: 600, redisCallers: 100 },
};

const SMOKE: Settings = {
  ...FULL,
  rounds: 1,
  seconds: 1,
  warmupSeconds: 0,
  coldRounds: 1,
  outageRequests: 50,
  outageTimeoutMs: 2_000,
  store: { rounds: 1, memoryMs: 100, redisMs: 200, redisCallers: 100 },
};

function parseArgs(argv: string[]): { smoke: boolean; out: string | undefined } {
  let smoke = ['1', 'true'].includes(process.env.BENCH_SMOKE ?? '');
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--smoke') smoke = true;
    else if (argv[i] === '--out') out = argv[++i];
    else throw new Error(`Unknown argument "${argv[i]}". Use --smoke and/or --out DIR.`);
  }
  return { smoke, out };
}

function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

/** Exit codes of a process ended by a signal. */
const SIGNAL_EXIT_CODES = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const;

async function main(): Promise<void> {
  // Ended by a signal, Node skips the 'exit' handlers that kill the servers and the redis-server
  // this run started; exiting on the signal runs them.
  for (const [signal, code] of Object.entries(SIGNAL_EXIT_CODES)) {
    process.once(signal, () => process.exit(code));
  }
  const started = Date.now();
  const { smoke, out } = parseArgs(process.argv.slice(2));
  const settings = smoke ? SMOKE : FULL;
  const outDir =
    out ?? (smoke ? join(tmpdir(), 'nest-cache-bench-smoke') : join(ROOT, 'bench', 'results'));

  const pinned = pinSelf(LOAD_CORE);
  if (!pinned) log('taskset not found (util-linux): processes are not pinned to cores.');
  const load = loadGenerator(LOAD_CORE, process.env.BENCH_LOAD);
  log(`${smoke ? 'Smoke' : 'Full'} run; load generator: ${load.name}; results -> ${outDir}`);

  // Started after pinning, so it shares the load generator's core, not the servers'.
  const redis = await startRedisServer();
  const memcached = await startMemcachedServer();
  // The disk setups' stores, one folder each (bench/apps.ts), removed at the end.
  process.env.BENCH_DISK_ROOT = mkdtempSync(join(tmpdir(), 'nest-cache-bench-disk-'));
  const servers: Server[] = [];
  try {
    log('Store operations...');
    const store = await storeOperations(STORE_SCRIPT, settings.store, {
      REDIS_URL: redis.url,
    });
    log('Store operations of memcached, disk and the Keyv bridge...');
    const backends = await storeOperations<BackendsReport>(BACKENDS_SCRIPT, settings.store, {
      REDIS_URL: redis.url,
      MEMCACHED_SERVERS: memcached.servers,
    });

    log('Starting the servers under test...');
    for (const setup of serverSetups()) {
      servers.push(await startServer(setup, SERVER_CORE, redis.url));
    }
    const targets = await checkedTargets(servers);

    log(
      `HIT throughput: ${targets.length} routes x ${settings.rounds} runs of ${settings.seconds} s...`,
    );
    const http = await throughput(load, targets, settings);

    log(`Cold bursts of ${settings.coldRequests} requests...`);
    const cold = await coldBursts(servers, settings);

    log(
      `Fleet bursts: ${settings.fleetInstances} instances x ${settings.fleetRequests} cold requests...`,
    );
    const fleet = await fleetBursts(redis.url, settings);

    log('Redis outage...');
    const outage = await redisOutage(servers, redis, settings);

    const partial = {
      mode: smoke ? ('smoke' as const) : ('full' as const),
      startedAt: new Date(started).toISOString(),
      durationSeconds: (Date.now() - started) / 1_000,
      machine: machine(load, pinned),
      settings: { ...settings },
      http,
      store,
      backends,
      cold,
      fleet,
      outage,
    };
    const results: Results = { ...partial, targets: evaluateTargets(partial) };
    const files = await writeResults(outDir, results);
    log('');
    for (const target of results.targets) {
      const shown =
        target.unit === 'x' ? `${target.measured.toFixed(2)}x` : `${target.measured} calls`;
      log(`${target.met ? 'met   ' : 'MISSED'} ${target.name}: ${shown}`);
    }
    log(`\nWrote ${files.join(', ')} in ${Math.round(results.durationSeconds)} s.`);
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await Promise.all([redis.stop(), memcached.stop()]);
    rmSync(process.env.BENCH_DISK_ROOT, { recursive: true, force: true });
  }
}

function serverSetups(): ServerSetup[] {
  return ADAPTERS.flatMap((adapter): ServerSetup[] => [
    { adapter, library: 'reference' },
    ...CACHE_LIBRARIES.flatMap((library) =>
      BACKENDS.map((backend) => ({ adapter, library, backend })),
    ),
    { adapter, library: 'nest-cache', backend: 'disk' },
    { adapter, library: 'nest-cache', backend: 'disk', workers: DISK_WORKERS },
  ]);
}

interface LoadTarget {
  server: Server;
  route: HttpSeries['route'];
  size: BodySize;
  path: string;
}

/**
 * The routes to load, each checked first: it answers 200 with exactly the expected body, and a
 * cached route answers HIT from its second request on.
 */
async function checkedTargets(servers: Server[]): Promise<LoadTarget[]> {
  const targets: LoadTarget[] = [];
  for (const server of servers) {
    const kinds =
      server.setup.library === 'reference' ? (['plain', 'noop'] as const) : (['cached'] as const);
    for (const route of kinds) {
      for (const size of BODY_SIZES)
        targets.push({ server, route, size, path: routes[route](size) });
    }
  }
  for (const { server, route, size, path } of targets) {
    await get(`${server.url}${path}`);
    const reply = await get(`${server.url}${path}`);
    const expected = JSON.stringify(bodies[size]);
    const problem =
      reply.status !== 200
        ? `status ${reply.status}`
        : reply.body.toString() !== expected
          ? 'a body other than the expected JSON'
          : route === 'cached' && reply.headers['x-cache'] !== 'HIT'
            ? `X-Cache ${String(reply.headers['x-cache'])} on the second request`
            : undefined;
    if (problem) throw new Error(`${server.name} ${path} answered ${problem}.\n${server.log()}`);
  }
  return targets;
}

/**
 * Every route, `rounds` times, taking turns within each round, each run right after a warm-up run.
 * The server's CPU time and origin calls are read around each run.
 */
async function throughput(
  load: LoadGenerator,
  targets: LoadTarget[],
  settings: Settings,
): Promise<HttpSeries[]> {
  const series = targets.map((target): HttpSeries => ({
    adapter: target.server.setup.adapter,
    library: target.server.setup.library,
    ...(target.server.setup.backend && { backend: target.server.setup.backend }),
    ...(target.server.setup.workers && { workers: target.server.setup.workers }),
    route: target.route,
    size: target.size,
    samples: [],
  }));
  for (let round = 1; round <= settings.rounds; round++) {
    for (const [i, target] of targets.entries()) {
      // Each run is preceded by load on the same route: a server that sat idle while the others
      // were measured starts cold (about 10% more CPU per request over a 3 s run, measured), so
      // without this the route measured after another route of its own server is favoured.
      if (settings.warmupSeconds > 0) {
        await load.run(`${target.server.url}${target.path}`, {
          connections: settings.connections,
          seconds: settings.warmupSeconds,
        });
      }
      const before = await serverStats(target.server.url);
      const result = await load.run(`${target.server.url}${target.path}`, {
        connections: settings.connections,
        seconds: settings.seconds,
      });
      const after = await serverStats(target.server.url);
      series[i]!.samples.push({
        requestsPerSecond: result.requestsPerSecond,
        p50Ms: result.p50Ms,
        p99Ms: result.p99Ms,
        errors: result.errors,
        cpuMicrosPerRequest: (after.cpuMicros - before.cpuMicros) / Math.max(1, result.requests),
        originCalls: after.originCalls - before.originCalls,
      });
      if (result.errors > 0 || after.originCalls !== before.originCalls) {
        log(
          `  warning: ${target.server.name} ${target.path}: ${result.errors} errors, ${after.originCalls - before.originCalls} handler calls`,
        );
      }
    }
    log(`  run ${round}/${settings.rounds} done`);
  }
  return series;
}

/** Concurrent GETs of a new key on each cached server in turn: how often does the handler run? */
async function coldBursts(servers: Server[], settings: Settings): Promise<ColdSeries[]> {
  const cached = servers.filter((server) => server.setup.library !== 'reference');
  const series = cached.map((server): ColdSeries => ({
    adapter: server.setup.adapter,
    library: server.setup.library,
    backend: server.setup.backend!,
    ...(server.setup.workers && { workers: server.setup.workers }),
    requests: settings.coldRequests,
    samples: [],
  }));
  for (let round = 1; round <= settings.coldRounds; round++) {
    for (const [i, server] of cached.entries()) {
      const before = await serverStats(server.url);
      const result = await burst(
        `${server.url}${routes.cold(`${Date.now()}-${round}`)}`,
        settings.coldRequests,
        BURST_TIMEOUT_MS,
      );
      const after = await serverStats(server.url);
      series[i]!.samples.push({
        originCalls: after.originCalls - before.originCalls,
        ok: result.ok,
        failed: result.failed,
        hung: result.hung,
        p99Ms: percentile(result.latencies, 99),
      });
    }
  }
  return series;
}

/** The instances of one app: server processes of one setup, sharing its prefix. */
interface Fleet {
  setup: ServerSetup;
  instances: Server[];
}

/**
 * Per adapter: nest-cache on Redis with distributedSingleFlight, the same without it, and
 * @nestjs/cache-manager on Redis. Each fleet has a prefix of its own, which its instances share.
 */
function fleetSetups(): ServerSetup[] {
  return FLEET_ADAPTERS.flatMap((adapter): ServerSetup[] => [
    { adapter, library: 'nest-cache', backend: 'redis', distributedSingleFlight: true },
    { adapter, library: 'nest-cache', backend: 'redis' },
    { adapter, library: 'incumbent', backend: 'redis' },
  ]).map((setup) => ({ ...setup, prefix: `fleet-${setupName(setup).replace(/[^\w-]+/g, '-')}` }));
}

/**
 * The same concurrent cold requests to every instance of each fleet at once: how often does the
 * handler run across the fleet? The fleets take turns within each round, as the cold bursts do.
 * Their servers run for this phase only (so the outage phase leaves them out), on the server core.
 */
async function fleetBursts(redisUrl: string, settings: Settings): Promise<FleetSeries[]> {
  const started: Server[] = [];
  try {
    const fleets: Fleet[] = [];
    for (const setup of fleetSetups()) {
      fleets.push({ setup, instances: await startFleet(setup, settings, redisUrl, started) });
    }
    // As a measured load run follows a warm-up run: the fresh processes' first burst is unmeasured.
    if (settings.warmupSeconds > 0) {
      for (const fleet of fleets) await fleetBurst(fleet, 'warm-up', settings);
    }
    const series = fleets.map(({ setup }): FleetSeries => ({
      adapter: setup.adapter,
      library: setup.library,
      backend: setup.backend!,
      distributedSingleFlight: setup.distributedSingleFlight ?? false,
      instances: settings.fleetInstances,
      requestsPerInstance: settings.fleetRequests,
      samples: [],
    }));
    for (let round = 1; round <= settings.coldRounds; round++) {
      for (const [i, fleet] of fleets.entries()) {
        const sample = await fleetBurst(fleet, `${Date.now()}-${round}`, settings);
        series[i]!.samples.push(sample);
        if (sample.failed > 0 || sample.hung > 0) {
          log(
            `  warning: ${setupName(fleet.setup)} fleet: ${sample.failed} failed, ${sample.hung} hung`,
          );
        }
      }
    }
    return series;
  } finally {
    await Promise.all(started.map((server) => server.stop()));
  }
}

/** Starts the instances of one fleet together; each one started is added to `started`. */
async function startFleet(
  setup: ServerSetup,
  settings: Settings,
  redisUrl: string,
  started: Server[],
): Promise<Server[]> {
  const outcomes = await Promise.allSettled(
    Array.from({ length: settings.fleetInstances }, () =>
      startServer(setup, SERVER_CORE, redisUrl),
    ),
  );
  const instances: Server[] = [];
  for (const outcome of outcomes) {
    if (outcome.status === 'fulfilled') instances.push(outcome.value);
  }
  started.push(...instances);
  const failed = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  return instances;
}

/** One new cold URL, `fleetRequests` concurrent GETs of it to each instance, all at once. */
async function fleetBurst(fleet: Fleet, round: string, settings: Settings): Promise<FleetSample> {
  const path = routes.cold(`fleet-${round}`);
  const stats = () => Promise.all(fleet.instances.map((server) => serverStats(server.url)));
  const before = await stats();
  const results = await Promise.all(
    fleet.instances.map((server) =>
      burst(`${server.url}${path}`, settings.fleetRequests, BURST_TIMEOUT_MS),
    ),
  );
  const after = await stats();
  const perInstance = after.map((stat, i) => stat.originCalls - before[i]!.originCalls);
  const total = (count: (result: BurstResult) => number) =>
    results.reduce((sum, result) => sum + count(result), 0);
  return {
    originCalls: perInstance.reduce((sum, calls) => sum + calls, 0),
    originCallsPerInstance: perInstance,
    ok: total((result) => result.ok),
    failed: total((result) => result.failed),
    hung: total((result) => result.hung),
    p99Ms: percentile(
      results.flatMap((result) => result.latencies),
      99,
    ),
  };
}

/**
 * Freezes the bench's redis-server, then kills it, while every Redis-backed server gets a burst
 * of GETs of its (until then cached) 1 KB route. The servers are hit at the same time: this
 * counts failed and hung requests, it does not time them against each other.
 */
async function redisOutage(
  servers: Server[],
  redis: RedisServerHandle,
  settings: Settings,
): Promise<OutageResult[]> {
  const onRedis = servers.filter((server) => server.setup.backend === 'redis');
  const results: OutageResult[] = [];
  const hitAll = async (mode: OutageResult['mode']) => {
    const outcomes = await Promise.all(
      onRedis.map((server) =>
        burst(
          `${server.url}${routes.cached('1k')}`,
          settings.outageRequests,
          settings.outageTimeoutMs,
        ),
      ),
    );
    outcomes.forEach((outcome, i) =>
      results.push({
        mode,
        adapter: onRedis[i]!.setup.adapter,
        library: onRedis[i]!.setup.library,
        requests: settings.outageRequests,
        ok: outcome.ok,
        failed: outcome.failed,
        hung: outcome.hung,
        maxMs: outcome.latencies.length > 0 ? Math.max(...outcome.latencies) : NaN,
      }),
    );
  };
  await redis.freeze();
  try {
    await hitAll('frozen (SIGSTOP)');
  } finally {
    redis.resume();
  }
  // Let the clients notice Redis is back before it goes away for good.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  await redis.kill();
  await hitAll('killed (SIGKILL)');
  return results;
}

/** Runs a store-operations script on the server core and returns its report. */
async function storeOperations<T = StoreReport>(
  script: string,
  settings: StoreSettings,
  env: Record<string, string>,
): Promise<T> {
  const [command, args] = onCore(SERVER_CORE, process.execPath, [script]);
  const child = spawn(command, args, {
    env: { ...process.env, ...env, BENCH_STORE: JSON.stringify(settings) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  killOnExit(child);
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const limitMs = 600_000;
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${script} exited with ${code}`);
  return JSON.parse(stdout) as T;
}

function machine(load: LoadGenerator, pinned: boolean): Record<string, string> {
  const version = (name: string) => {
    try {
      const manifest = readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8');
      return (JSON.parse(manifest) as { version: string }).version;
    } catch {
      return 'not installed';
    }
  };
  let redisVersion = 'unknown';
  try {
    redisVersion =
      /v=([\d.]+)/.exec(execFileSync('redis-server', ['--version']).toString())?.[1] ??
      redisVersion;
  } catch {
    // left as unknown
  }
  return {
    CPU: `${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    'OS kernel': release(),
    Node: process.version,
    NestJS: `@nestjs/core ${version('@nestjs/core')}, fastify ${version('fastify')}, express ${version('express')}`,
    'nest-cache': `${(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version} (this checkout), ioredis ${version('ioredis')}, lru-cache ${version('lru-cache')}`,
    incumbent: `@nestjs/cache-manager ${version('@nestjs/cache-manager')}, cache-manager ${version('cache-manager')}, keyv ${version('keyv')}, @keyv/redis ${version('@keyv/redis')}`,
    Redis: `redis-server ${redisVersion}, private, on a free port of 127.0.0.1`,
    'load generator': load.name,
    pinning: pinned
      ? `servers under test on core ${SERVER_CORE} (one process each, taskset); load generator, redis-server and this script on core ${LOAD_CORE}`
      : 'none (taskset not available)',
  };
}

if (!existsSync(join(ROOT, 'bench', 'run.ts'))) {
  throw new Error(
    `run.js expects to run from its build folder inside the repo (found root ${ROOT}).`,
  );
}
main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
