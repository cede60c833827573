/**
 * What a run found, and how it is written: results.json (every sample), results.md (medians and
 * ratios, the targets) and hit-throughput.svg (a chart drawn here, no dependency).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as prettier from 'prettier';
import {
  ADAPTERS,
  type Adapter,
  type Backend,
  BODY_SIZES,
  type BodySize,
  DISK_WORKERS,
  type Library,
  LIBRARY_LABELS,
  MAP_AWAITED,
  REDIS_RAW,
} from './fixtures.js';
import type { BackendsReport } from './store-backends.js';
import type { OverheadSubject, StoreOperation, StoreReport } from './store-ops.js';

export interface HttpSample {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU time the server process spent per request served. */
  cpuMicrosPerRequest: number;
  /** Handler calls during the run: 0 on a route answered from the cache. */
  originCalls: number;
}

/** One measured route of one server. */
export interface HttpSeries {
  adapter: Adapter;
  library: Library;
  backend?: Backend;
  /** Worker processes sharing the port; absent: one process. */
  workers?: number;
  /** plain: no interceptor; noop: a do-nothing interceptor; cached: the library's interceptor. */
  route: 'plain' | 'noop' | 'cached';
  size: BodySize;
  samples: HttpSample[];
}

export interface ColdSample {
  originCalls: number;
  ok: number;
  failed: number;
  hung: number;
  p99Ms: number;
}

export interface ColdSeries {
  adapter: Adapter;
  library: Library;
  backend: Backend;
  workers?: number;
  requests: number;
  samples: ColdSample[];
}

/** One fleet burst: the same concurrent cold requests sent to every instance of a fleet at once. */
export interface FleetSample extends ColdSample {
  /** Handler runs of each instance; originCalls is their sum. */
  originCallsPerInstance: number[];
}

/** Instances of one setup, separate processes sharing one Redis prefix, as one app's fleet. */
export interface FleetSeries {
  adapter: Adapter;
  library: Library;
  backend: Backend;
  /** nest-cache's distributedSingleFlight option. */
  distributedSingleFlight: boolean;
  instances: number;
  /** Concurrent requests sent to each instance per burst. */
  requestsPerInstance: number;
  samples: FleetSample[];
}

export interface OutageResult {
  mode: 'frozen (SIGSTOP)' | 'killed (SIGKILL)';
  adapter: Adapter;
  library: Library;
  requests: number;
  ok: number;
  failed: number;
  hung: number;
  /** Slowest successful response, ms. */
  maxMs: number;
}

export interface Target {
  name: string;
  measured: number;
  goal: number;
  /** How the measured value reads: '1.23x' or '1 call'. */
  unit: 'x' | 'calls';
  /** Goal is a maximum (origin calls) rather than a minimum (ratios). */
  atMost?: boolean;
  met: boolean;
  /** For scale: a reference ratio from the same run that bounds or frames the goal. */
  ceiling?: { label: string; measured: number };
}

export interface Results {
  mode: 'full' | 'smoke';
  startedAt: string;
  durationSeconds: number;
  machine: Record<string, string>;
  settings: Record<string, unknown>;
  http: HttpSeries[];
  store: StoreReport;
  backends: BackendsReport;
  cold: ColdSeries[];
  fleet: FleetSeries[];
  outage: OutageResult[];
  targets: Target[];
}

// ---- arithmetic ------------------------------------------------------------------------

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The median of the per-round ratios a[i] / b[i]: rounds ran back to back, so drift cancels. */
export function medianRatio(a: number[], b: number[]): number {
  return median(a.slice(0, b.length).map((value, i) => value / b[i]!));
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// ---- lookups ---------------------------------------------------------------------------

export function findSeries(
  http: HttpSeries[],
  where: Pick<HttpSeries, 'adapter' | 'route' | 'size'> & {
    library?: Library;
    backend?: Backend;
    workers?: number;
  },
): HttpSeries | undefined {
  return http.find(
    (series) =>
      series.adapter === where.adapter &&
      series.route === where.route &&
      series.size === where.size &&
      (where.library === undefined || series.library === where.library) &&
      series.backend === where.backend &&
      series.workers === where.workers,
  );
}

const rps = (series: HttpSeries | undefined) =>
  series?.samples.map((sample) => sample.requestsPerSecond) ?? [];

/** The columns of the HIT table, in order. */
const HIT_COLUMNS: {
  label: string;
  route: HttpSeries['route'];
  library?: Library;
  backend?: Backend;
  workers?: number;
}[] = [
  { label: 'no interceptor', route: 'plain' },
  { label: 'do-nothing interceptor', route: 'noop' },
  { label: 'nest-cache memory', route: 'cached', library: 'nest-cache', backend: 'memory' },
  { label: 'nest-cache Redis', route: 'cached', library: 'nest-cache', backend: 'redis' },
  {
    label: '@nestjs/cache-manager memory',
    route: 'cached',
    library: 'incumbent',
    backend: 'memory',
  },
  { label: '@nestjs/cache-manager Redis', route: 'cached', library: 'incumbent', backend: 'redis' },
  { label: 'nest-cache disk', route: 'cached', library: 'nest-cache', backend: 'disk' },
  {
    label: `nest-cache disk, ${DISK_WORKERS} workers`,
    route: 'cached',
    library: 'nest-cache',
    backend: 'disk',
    workers: DISK_WORKERS,
  },
];

function column(http: HttpSeries[], adapter: Adapter, size: BodySize, index: number) {
  const { route, library, backend, workers } = HIT_COLUMNS[index]!;
  return findSeries(http, { adapter, route, size, library, backend, workers });
}

/** The ratios the HIT table shows, per adapter and size. */
export function hitRatios(http: HttpSeries[], adapter: Adapter, size: BodySize) {
  const [, noop, ours, oursRedis, incumbent, incumbentRedis, disk, diskWorkers] = HIT_COLUMNS.map(
    (_, i) => rps(column(http, adapter, size, i)),
  );
  return {
    oursOverNoop: medianRatio(ours!, noop!),
    oursOverIncumbent: medianRatio(ours!, incumbent!),
    redisOverMemory: medianRatio(oursRedis!, ours!),
    redisOverIncumbentRedis: medianRatio(oursRedis!, incumbentRedis!),
    diskOverMemory: medianRatio(disk!, ours!),
    diskWorkersOverDisk: medianRatio(diskWorkers!, disk!),
  };
}

// ---- targets ---------------------------------------------------------------------------

export function evaluateTargets(results: Omit<Results, 'targets'>): Target[] {
  const targets: Target[] = [];
  const atLeast = (name: string, measured: number, goal: number, ceiling?: Target['ceiling']) =>
    targets.push({ name, measured, goal, unit: 'x', met: measured >= goal, ceiling });
  for (const adapter of ADAPTERS) {
    const small = hitRatios(results.http, adapter, '1k');
    const large = hitRatios(results.http, adapter, '100k');
    atLeast(`${adapter}: memory HIT 1 KB / do-nothing interceptor`, small.oursOverNoop, 1);
    atLeast(
      `${adapter}: memory HIT 1 KB / @nestjs/cache-manager memory HIT`,
      small.oursOverIncumbent,
      1,
    );
    atLeast(
      `${adapter}: memory HIT 100 KB / @nestjs/cache-manager memory HIT`,
      large.oursOverIncumbent,
      2,
    );
    atLeast(`${adapter}: Redis HIT 1 KB / our memory HIT`, small.redisOverMemory, 0.9);
    atLeast(`${adapter}: Redis HIT 100 KB / our memory HIT`, large.redisOverMemory, 0.9);
  }
  const store = (backend: 'memory' | 'redis', subject: string, operation: StoreOperation) =>
    results.store[backend][subject]?.[operation] ?? [];
  const memoryGet = store('memory', MEMORY_INCUMBENT, 'get');
  const redisGet = store('redis', REDIS_INCUMBENT, 'get');
  // An awaited get can be no faster than an awaited Map.get, whatever it does.
  atLeast(
    'BaseCache memory get / cache-manager memory get',
    medianRatio(store('memory', 'nest-cache', 'get'), memoryGet),
    5,
    {
      label: 'awaited Map.get / cache-manager',
      measured: medianRatio(store('memory', MAP_AWAITED, 'get'), memoryGet),
    },
  );
  // What metrics and tracing cost a memory get HIT: the same get, side by side, with metrics: false.
  for (const { subject, label, goal } of OVERHEAD_ROWS) {
    if (goal === undefined) continue;
    atLeast(
      `memory get HIT, ${label} / metrics: false`,
      overheadRatio(results.store, subject),
      goal,
    );
  }
  atLeast(
    'Redis get, 100 callers / raw ioredis',
    medianRatio(store('redis', 'nest-cache', 'get'), store('redis', REDIS_CEILING, 'get')),
    0.9,
  );
  atLeast(
    'Redis get, 100 callers / cache-manager over @keyv/redis',
    medianRatio(store('redis', 'nest-cache', 'get'), redisGet),
    3,
    {
      label: 'raw ioredis / cache-manager',
      measured: medianRatio(store('redis', REDIS_CEILING, 'get'), redisGet),
    },
  );
  // Read-through on a hit: getOrSet and a @Cacheable method against the incumbent's wrap().
  for (const backend of ['memory', 'redis'] as const) {
    const incumbent = backend === 'memory' ? MEMORY_INCUMBENT : REDIS_INCUMBENT;
    const label = backend === 'memory' ? 'memory' : 'Redis, 100 callers';
    for (const operation of ['getOrSet hit', '@Cacheable hit'] as const) {
      atLeast(
        `${operation.replace(' hit', ' HIT')} ${label} / ${incumbent} wrap()`,
        medianRatio(
          store(backend, 'nest-cache', operation),
          store(backend, incumbent, 'getOrSet hit'),
        ),
        1,
      );
    }
  }
  for (const series of results.cold.filter((cold) => cold.library === 'nest-cache')) {
    const calls = Math.max(...series.samples.map((sample) => sample.originCalls));
    // Single-flight is per process: workers sharing a store make one origin call each at most.
    const goal = series.workers ?? 1;
    const workers = series.workers ? `, ${series.workers} workers` : '';
    targets.push({
      name: `${series.adapter} ${series.backend}${workers}: origin calls for ${series.requests} concurrent cold requests (worst run)`,
      measured: calls,
      goal,
      unit: 'calls',
      atMost: true,
      met: calls <= goal,
    });
  }
  // With distributedSingleFlight, the instances of a fleet share one run of the handler.
  for (const series of results.fleet.filter((fleet) => fleet.distributedSingleFlight)) {
    const calls = Math.max(...series.samples.map((sample) => sample.originCalls));
    targets.push({
      name: `${series.adapter}: fleet burst, ${fleetLabel(series)}: origin calls for ${series.instances} instances x ${series.requestsPerInstance} concurrent cold requests (worst run)`,
      measured: calls,
      goal: 1,
      unit: 'calls',
      atMost: true,
      met: calls <= 1,
    });
  }
  return targets;
}

/** How a fleet's setup is named in the tables. */
export function fleetLabel(series: FleetSeries): string {
  const setup = `${LIBRARY_LABELS[series.library]} ${series.backend === 'redis' ? 'Redis' : series.backend}`;
  if (series.distributedSingleFlight) return `${setup} with distributedSingleFlight`;
  return series.library === 'nest-cache' ? `${setup}, single-flight per process` : setup;
}

/** The rows of the metrics and tracing overhead table, and the targets of two of them. */
const OVERHEAD_ROWS: { subject: OverheadSubject; label: string; goal?: number }[] = [
  { subject: 'nest-cache, metrics: false', label: 'metrics: false' },
  { subject: 'nest-cache', label: 'metrics on, no SDK registered (the default)', goal: 0.99 },
  {
    subject: 'nest-cache, SDK MeterProvider',
    label: 'metrics on, an SDK MeterProvider',
    goal: 0.95,
  },
  {
    subject: 'nest-cache, tracing subscriber',
    label: 'metrics: false, a nest-cache:get tracing subscriber',
  },
];
const OVERHEAD_BASE: OverheadSubject = 'nest-cache, metrics: false';

/** A memory get HIT of `subject` over the same get with metrics: false (median of the rounds' ratios). */
function overheadRatio(store: StoreReport, subject: OverheadSubject): number {
  return medianRatio(store.memory[subject]?.get ?? [], store.memory[OVERHEAD_BASE]?.get ?? []);
}

function overheadTable(store: StoreReport): string {
  const rows = OVERHEAD_ROWS.map(({ subject, label, goal }) => [
    label,
    rate(median(store.memory[subject]?.get ?? [])),
    ratio(overheadRatio(store, subject)),
    goal === undefined ? '' : `${goal.toFixed(2)}x`,
  ]);
  return table(['memory get HIT', 'calls/s', '/ metrics: false', 'target'], rows);
}

export const MEMORY_CEILING = 'lru-cache (sync, no copy)';
export const MEMORY_INCUMBENT = 'cache-manager';
export const REDIS_CEILING = REDIS_RAW;
export const REDIS_INCUMBENT = 'cache-manager + @keyv/redis';

// ---- markdown --------------------------------------------------------------------------

const int = (value: number) =>
  Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a';
const ratio = (value: number) => (Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a');
const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(value < 10 ? 2 : 1) : 'n/a');
const rate = (value: number) => {
  if (!Number.isFinite(value)) return 'n/a';
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M/s`;
  return `${(value / 1e3).toFixed(1)} k/s`;
};

function table(header: string[], rows: string[][]): string {
  const align = header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [header, align, ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}

export function markdown(results: Results): string {
  const { http, settings } = results;
  const lines: string[] = [];
  const rounds = settings.rounds as number;
  lines.push(`# nest-cache benchmark results (${results.mode} run)`);
  lines.push('');
  lines.push(
    `${results.startedAt}, ${Math.round(results.durationSeconds)} s. Medians of ${rounds} ${rounds === 1 ? 'run' : 'runs'} per setup; a ratio is the median of the per-run ratios (the setups take turns within each run). How to read them: bench/README.md.`,
  );
  lines.push('');
  lines.push('## Machine');
  lines.push('');
  lines.push(
    table(
      ['', ''],
      Object.entries(results.machine).map(([key, value]) => [key, value]),
    ),
  );

  lines.push('');
  lines.push('## Targets');
  lines.push('');
  lines.push(
    table(
      ['target', 'measured', 'goal', 'met', 'for scale, in the same run'],
      results.targets.map((target) => [
        target.name,
        target.unit === 'x' ? ratio(target.measured) : `${target.measured}`,
        target.unit === 'x' ? `>= ${ratio(target.goal)}` : `<= ${target.goal}`,
        target.met ? 'yes' : '**no**',
        target.ceiling ? `${target.ceiling.label}: ${ratio(target.ceiling.measured)}` : '',
      ]),
    ),
  );

  lines.push('');
  lines.push('## Cache HIT throughput (requests/s)');
  lines.push('');
  lines.push(
    `GET of a cached ${BODY_SIZES.map((size) => (size === '1k' ? '1 KB' : '100 KB')).join(' and a cached ')} JSON body, ${settings.connections} connections, ${settings.seconds} s per run; the first two columns are the same routes without a cache, for reference.`,
  );
  lines.push('');
  const rows: string[][] = [];
  for (const adapter of ADAPTERS) {
    for (const size of BODY_SIZES) {
      const ratios = hitRatios(http, adapter, size);
      rows.push([
        `${adapter} ${size === '1k' ? '1 KB' : '100 KB'}`,
        ...HIT_COLUMNS.map((_, i) => int(median(rps(column(http, adapter, size, i))))),
        ratio(ratios.oursOverNoop),
        ratio(ratios.oursOverIncumbent),
        ratio(ratios.redisOverMemory),
        ratio(ratios.redisOverIncumbentRedis),
        ratio(ratios.diskOverMemory),
        ratio(ratios.diskWorkersOverDisk),
      ]);
    }
  }
  lines.push(
    table(
      [
        'setup',
        ...HIT_COLUMNS.map((c) => c.label),
        'memory / do-nothing',
        'memory / cache-manager memory',
        'Redis / memory',
        'Redis / cache-manager Redis',
        'disk / memory',
        `disk ${DISK_WORKERS} workers / disk`,
      ],
      rows,
    ),
  );
  lines.push('');
  lines.push('Ratios are nest-cache\'s: "memory" is nest-cache memory, "Redis" nest-cache Redis.');

  lines.push('');
  lines.push('## Latency and server CPU per request');
  lines.push('');
  lines.push(
    "p50 / p99 latency in ms as the load generator saw it; CPU is the server process's user + system time divided by the requests it served (µs).",
  );
  lines.push('');
  const latencyRows: string[][] = [];
  for (const adapter of ADAPTERS) {
    for (const size of BODY_SIZES) {
      latencyRows.push([
        `${adapter} ${size === '1k' ? '1 KB' : '100 KB'}`,
        ...HIT_COLUMNS.map((_, i) => {
          const samples = column(http, adapter, size, i)?.samples ?? [];
          const p50 = median(samples.map((s) => s.p50Ms));
          const p99 = median(samples.map((s) => s.p99Ms));
          const cpu = median(samples.map((s) => s.cpuMicrosPerRequest));
          return `${ms(p50)} / ${ms(p99)} ms, ${int(cpu)} µs`;
        }),
      ]);
    }
  }
  lines.push(table(['setup', ...HIT_COLUMNS.map((c) => c.label)], latencyRows));

  lines.push('');
  lines.push('## Store operations (calls/s)');
  lines.push('');
  const storeSettings = results.store.settings;
  lines.push(
    `The value is a ~100-byte object. Memory: one caller awaiting each call in turn. Redis: ${storeSettings.redisCallers} concurrent callers on one client, each on its own key. getMany reads 10 keys per call. nest-cache decodes a fresh copy on every read, and sends the Redis gets made in one turn as one MGET; lru-cache and cache-manager hand back the stored object itself, and raw ioredis sends one GET per call and returns the undecoded string.`,
  );
  lines.push('');
  lines.push(storeTable(results.store));
  lines.push('');
  lines.push('## Metrics and tracing overhead (calls/s)');
  lines.push('');
  lines.push(
    'A memory get HIT of four caches read side by side in each round, against the same get with `metrics: false`: the default (metrics on through the global MeterProvider, a no-op with no SDK registered), metrics through an @opentelemetry/sdk-metrics MeterProvider whose reader never exports during the run, and a do-nothing subscriber of every event of the `nest-cache:get` tracing channel (subscribed only while its row runs).',
  );
  lines.push('');
  lines.push(overheadTable(results.store));
  lines.push('');
  lines.push('## Store operations of the other backends (calls/s)');
  lines.push('');
  lines.push(
    `The same value; ${storeSettings.redisCallers} concurrent callers, each on its own key, against a private memcached, an LMDB store in a temp folder and Keyv over @keyv/redis on the private redis-server. The raw client stores and returns the JSON string (Keyv: the object, through its own serializer) without nest-cache's envelope or decoding.`,
  );
  lines.push('');
  lines.push(backendsTable(results.backends));

  lines.push('');
  lines.push('## Cold burst');
  lines.push('');
  lines.push(
    `${results.cold[0]?.requests ?? 0} concurrent GETs of one uncached route (its handler takes ${settings.coldOriginMs} ms), each on a new connection; a new key each run. Origin calls = handler runs.`,
  );
  lines.push('');
  lines.push(
    table(
      [
        'adapter',
        'library',
        'backend',
        'origin calls (median / worst)',
        'p99 ms',
        'failed',
        'hung',
      ],
      results.cold.map((series) => [
        series.adapter,
        LIBRARY_LABELS[series.library],
        series.workers ? `${series.backend}, ${series.workers} workers` : series.backend,
        `${median(series.samples.map((s) => s.originCalls))} / ${Math.max(...series.samples.map((s) => s.originCalls))}`,
        ms(median(series.samples.map((s) => s.p99Ms))),
        `${Math.max(...series.samples.map((s) => s.failed))}`,
        `${Math.max(...series.samples.map((s) => s.hung))}`,
      ]),
    ),
  );

  lines.push('');
  lines.push('## Fleet burst');
  lines.push('');
  const first = results.fleet[0];
  lines.push(
    `${first?.instances ?? 0} instances of each setup (server processes of their own, one port each, sharing one Redis prefix, as the instances of one app do) get ${first?.requestsPerInstance ?? 0} concurrent GETs each, all at once, of one uncached route (its handler takes ${settings.coldOriginMs} ms), each on a new connection; a new key each run. Origin calls = handler runs summed over the instances, one figure per run; p99 over every request of the burst.`,
  );
  lines.push('');
  lines.push(
    table(
      [
        'adapter',
        'setup',
        'instances x requests',
        'origin calls per burst (each run)',
        'p99 ms',
        'failed',
        'hung',
      ],
      results.fleet.map((series) => [
        series.adapter,
        fleetLabel(series),
        `${series.instances} x ${series.requestsPerInstance}`,
        series.samples.map((s) => s.originCalls).join(', '),
        ms(median(series.samples.map((s) => s.p99Ms))),
        `${Math.max(...series.samples.map((s) => s.failed))}`,
        `${Math.max(...series.samples.map((s) => s.hung))}`,
      ]),
    ),
  );

  lines.push('');
  lines.push('## Redis outage');
  lines.push('');
  lines.push(
    `The bench's redis-server is frozen (SIGSTOP), then killed (SIGKILL), while ${results.outage[0]?.requests ?? 0} concurrent GETs hit each Redis-backed server's cached 1 KB route. Hung = no response within ${settings.outageTimeoutMs} ms (the client gives up).`,
  );
  lines.push('');
  lines.push(
    table(
      ['Redis', 'adapter', 'library', 'ok', 'failed', 'hung', 'slowest ok (ms)'],
      results.outage.map((outage) => [
        outage.mode,
        outage.adapter,
        LIBRARY_LABELS[outage.library],
        `${outage.ok}`,
        `${outage.failed}`,
        `${outage.hung}`,
        ms(outage.maxMs),
      ]),
    ),
  );
  lines.push('');
  lines.push('![HIT throughput per setup](hit-throughput.svg)');
  return `${lines.join('\n')}\n`;
}

function storeTable(store: StoreReport): string {
  const rows: string[][] = [];
  const pick = (backend: 'memory' | 'redis', subject: string, op: StoreOperation) =>
    store[backend][subject]?.[op] ?? [];
  for (const [backend, ceiling, incumbent] of [
    ['memory', MEMORY_CEILING, MEMORY_INCUMBENT],
    ['redis', REDIS_CEILING, REDIS_INCUMBENT],
  ] as const) {
    for (const op of Object.keys(store[backend]['nest-cache'] ?? {}) as StoreOperation[]) {
      const ours = pick(backend, 'nest-cache', op);
      rows.push([
        `${backend} ${op}`,
        rate(median(ours)),
        `${rate(median(pick(backend, ceiling, op)))} (${ceiling})`,
        rate(median(pick(backend, incumbent, op))),
        ratio(medianRatio(ours, pick(backend, ceiling, op))),
        ratio(medianRatio(ours, pick(backend, incumbent, op))),
      ]);
    }
  }
  // Further references (an awaited Map, ioredis with nest-cache's settings): raw figures only.
  for (const backend of ['memory', 'redis'] as const) {
    const main = new Set([
      'nest-cache',
      MEMORY_CEILING,
      MEMORY_INCUMBENT,
      REDIS_CEILING,
      REDIS_INCUMBENT,
      // In the metrics and tracing overhead table.
      ...OVERHEAD_ROWS.map((row) => row.subject),
    ]);
    for (const [subject, ops] of Object.entries(store[backend])) {
      if (main.has(subject)) continue;
      for (const [op, samples] of Object.entries(ops)) {
        rows.push([`${backend} ${op}`, '', `${rate(median(samples))} (${subject})`, '', '', '']);
      }
    }
  }
  return table(
    [
      'operation',
      'nest-cache',
      'raw client',
      'cache-manager',
      'nest-cache / raw',
      'nest-cache / cache-manager',
    ],
    rows,
  );
}

function backendsTable(backends: BackendsReport): string {
  const rows: string[][] = [];
  for (const [backend, { raw, samples }] of Object.entries(backends)) {
    for (const [op, ours] of Object.entries(samples['nest-cache'] ?? {})) {
      const theirs = samples[raw]?.[op as keyof (typeof samples)[string]] ?? [];
      rows.push([
        `${backend} ${op}`,
        rate(median(ours)),
        `${rate(median(theirs))} (${raw})`,
        ratio(medianRatio(ours, theirs)),
      ]);
    }
  }
  return table(['operation', 'nest-cache', 'raw client', 'nest-cache / raw'], rows);
}

// ---- chart -----------------------------------------------------------------------------

const COLORS = [
  '#9e9e9e',
  '#616161',
  '#1565c0',
  '#42a5f5',
  '#e65100',
  '#ffb74d',
  '#2e7d32',
  '#81c784',
];

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Horizontal bars of median HIT throughput: one panel per body size, one group per adapter. */
export function chart(results: Results): string {
  const barHeight = 16;
  const gap = 4;
  const labelWidth = 210;
  const plotWidth = 420;
  const panelGap = 40;
  const groupHeight = HIT_COLUMNS.length * (barHeight + gap) + 26;
  const panelHeight = ADAPTERS.length * groupHeight + 30;
  const width = labelWidth + plotWidth + 90;
  const height = 50 + BODY_SIZES.length * (panelHeight + panelGap) + 20;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(
    `<text x="12" y="24" font-size="15" font-weight="bold">Cache HIT throughput, requests/s (median of ${results.settings.rounds as number} runs, ${results.mode} run)</text>`,
  );
  let y = 50;
  for (const size of BODY_SIZES) {
    const values = ADAPTERS.flatMap((adapter) =>
      HIT_COLUMNS.map((_, i) => median(rps(column(results.http, adapter, size, i)))),
    ).filter(Number.isFinite);
    const max = Math.max(1, ...values);
    parts.push(
      `<text x="12" y="${y + 12}" font-size="13" font-weight="bold">${size === '1k' ? '1 KB' : '100 KB'} JSON body</text>`,
    );
    y += 30;
    for (const adapter of ADAPTERS) {
      parts.push(`<text x="12" y="${y + 10}" font-weight="bold">${adapter}</text>`);
      y += 18;
      HIT_COLUMNS.forEach((col, i) => {
        const value = median(rps(column(results.http, adapter, size, i)));
        const barWidth = Number.isFinite(value) ? Math.max(1, (value / max) * plotWidth) : 0;
        parts.push(
          `<text x="${labelWidth - 8}" y="${y + barHeight - 4}" text-anchor="end">${escapeXml(col.label)}</text>`,
        );
        parts.push(
          `<rect x="${labelWidth}" y="${y}" width="${barWidth.toFixed(1)}" height="${barHeight}" fill="${COLORS[i]}"/>`,
        );
        parts.push(
          `<text x="${(labelWidth + barWidth + 6).toFixed(1)}" y="${y + barHeight - 4}">${int(value)}</text>`,
        );
        y += barHeight + gap;
      });
      y += 8;
    }
    y += panelGap;
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

// ---- files -----------------------------------------------------------------------------

/** Writes results.json, results.md and hit-throughput.svg into `dir`, formatted as the repo's prettier config says. */
export async function writeResults(dir: string, results: Results): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const config = (await prettier.resolveConfig(join(dir, 'results.md'))) ?? {};
  const files: [string, string][] = [
    ['results.json', await prettier.format(JSON.stringify(results), { ...config, parser: 'json' })],
    ['results.md', await prettier.format(markdown(results), { ...config, parser: 'markdown' })],
    ['hit-throughput.svg', chart(results)],
  ];
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  return files.map(([name]) => join(dir, name));
}
