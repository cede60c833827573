import { readFileSync } from 'node:fs';
import {
  type Attributes,
  type BatchObservableResult,
  createNoopMeter,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics as otelMetrics,
  type Observable,
  type ObservableCounter,
} from '@opentelemetry/api';
import { CacheConfigError, OperationTimeoutError } from './errors.js';
import { messages, reasonOf } from './messages.js';
import { knownKeysOnly } from './option-keys.js';
import { TRACED, type TracedOperation } from './tracing.js';

/** The object form of the `metrics` option. */
export interface CacheMetricsOptions {
  /**
   * The key group of a key: recorded as `cache.key_group` on its hits, misses, stale entries and
   * durations (undefined: none). Return a small, bounded set of groups (`key.split(':')[0]`), never
   * the key itself: past 200 groups per cache, the rest are recorded as 'other' (each group is a series per operation and instrument).
   * @default none: no cache.key_group attribute
   */
  keyGroup?: (key: string) => string | undefined;
  /** Where the instruments come from. @default the global one: `metrics.getMeterProvider()` */
  meterProvider?: MeterProvider;
  /**
   * Records the duration histogram `nest_cache.operation.duration` too. Off by default: with
   * @opentelemetry/sdk-metrics one `record()` costs about 0.9 µs, so a memory get HIT runs at about
   * 0.44x (the counters cost nothing measurable). On Redis, or an HTTP HIT, it is a far smaller share.
   * @default false
   */
  durations?: boolean;
}

/** The metrics option, checked: undefined when nothing is recorded. */
export type MetricsSettings = CacheMetricsOptions | undefined;

/** Where a hit, miss or stale entry was served: an operation, or CacheInterceptor. */
export type ServedBy = TracedOperation | 'interceptor';

/** The meter's name (the instrumentation scope); its version is the package's. */
export const METER_NAME = 'nest-cache';
/** How many key groups one cache records, at most; the others are recorded as OTHER_GROUP. */
export const MAX_KEY_GROUPS = 200;
export const OTHER_GROUP = 'other';
/** How many error types one cache records, at most; the others are recorded as '_OTHER'. */
const MAX_ERROR_TYPES = 100;

/**
 * Bucket advice of nest_cache.operation.duration, in seconds: from 5 µs (a memory hit takes about
 * one) to 5 s (past the default operationTimeout of 2 s). The SDK's default buckets start at 5
 * (seconds, as OpenTelemetry measures durations), useless here.
 */
export const DURATION_BUCKETS = [
  0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

const SERVED_BY: readonly ServedBy[] = [...TRACED, 'interceptor'];

/** What one attribute set has counted: plain numbers, reported when the SDK collects. */
interface Slot {
  readonly attributes: Attributes;
  hits: number;
  misses: number;
  stale: number;
}

interface OperationSlots {
  /** Without a key group. */
  readonly plain: Slot;
  readonly groups: Map<string, Slot>;
}

interface ErrorSlot {
  readonly attributes: Attributes;
  count: number;
}

/**
 * A cache's OpenTelemetry metrics (see README, "Metrics"). What a call costs is the point:
 *
 * - with `metrics: false`, or a no-op meter (the global one until an SDK is registered), nothing
 *   is done: `on` and `timing` are false, and BaseCache reads one of them per call;
 * - hits, misses, stale entries and errors are plain numbers, added up per attribute set and
 *   reported by observable counters when the SDK collects: an SDK's synchronous add() costs about
 *   a microsecond (it hashes the attributes), more than a memory hit itself;
 * - durations go to a histogram (there is no observable histogram), timed with performance.now()
 *   only when it records, with attribute objects made once per operation and key group.
 */
export class CacheMetrics {
  /** Whether anything is recorded. */
  readonly on: boolean;
  /** Whether operations are timed (the duration histogram records). */
  readonly timing: boolean;
  private readonly slots = {} as Record<ServedBy, OperationSlots>;
  private readonly errors = new Map<string, ErrorSlot>();
  private readonly knownGroups = new Set<string>();
  private groupsCapped = false;
  private readonly keyGroup: ((key: string) => string | undefined) | undefined;
  private readonly meter: Meter | undefined;
  private readonly durations: Histogram | undefined;
  private readonly observables: Observable[] = [];
  private readonly base: Attributes;
  /** What the SDK's collection calls: every count, cumulative. */
  private readonly report: ((result: BatchObservableResult) => void) | undefined;

  constructor(
    settings: MetricsSettings,
    name: string,
    backend: string,
    private readonly warn: (message: string) => void,
  ) {
    this.base = { 'cache.name': name, 'cache.backend': backend };
    this.keyGroup = settings?.keyGroup;
    const meter = settings
      ? (settings.meterProvider ?? otelMetrics.getMeterProvider()).getMeter(METER_NAME, version())
      : undefined;
    this.on = meter !== undefined && !isNoop(meter);
    if (!this.on) {
      this.timing = false;
      return;
    }
    this.meter = meter!;
    for (const operation of SERVED_BY) {
      const attributes = { ...this.base, 'cache.operation': operation };
      this.slots[operation] = { plain: slot(attributes), groups: new Map() };
    }
    this.durations = settings?.durations
      ? this.meter.createHistogram('nest_cache.operation.duration', {
          description: 'How long a cache operation took, until its promise settled.',
          unit: 's',
          advice: { explicitBucketBoundaries: DURATION_BUCKETS },
        })
      : undefined;
    this.timing = this.durations !== undefined && !isNoop(this.durations);
    const counter = (suffix: string, unit: string, description: string) =>
      this.meter!.createObservableCounter(`nest_cache.${suffix}`, { unit, description });
    const hits = counter('hits', '{hit}', 'Callers served a fresh entry.');
    const misses = counter('misses', '{miss}', 'Callers served no entry (the factory ran).');
    const stale = counter('stale', '{hit}', 'Callers served a stale entry.');
    const errors = counter(
      'errors',
      '{error}',
      'Backend calls that failed open, timed out, or were skipped by the open circuit breaker.',
    );
    this.observables.push(hits, misses, stale, errors);
    this.report = (result) => {
      for (const operation of SERVED_BY) {
        const { plain, groups } = this.slots[operation];
        observeSlot(result, hits, misses, stale, plain);
        for (const grouped of groups.values()) observeSlot(result, hits, misses, stale, grouped);
      }
      for (const { attributes, count } of this.errors.values()) {
        result.observe(errors, count, attributes);
      }
    };
    this.meter.addBatchObservableCallback(this.report, this.observables);
  }

  /** Counts one caller served a hit, a miss or a stale entry (call only when `on`). */
  served(what: 'hits' | 'misses' | 'stale', by: ServedBy, key: string): void {
    this.slotOf(by, key)[what] += 1;
  }

  /** Counts a backend call that failed (`error`), or that the open breaker skipped (undefined). */
  failed(operation: string, error: unknown): void {
    let type = errorType(error);
    let counted = this.errors.get(`${operation}\0${type}`);
    if (!counted) {
      // A driver naming its errors without bound cannot grow this map past MAX_ERROR_TYPES.
      if (this.errors.size >= MAX_ERROR_TYPES) type = '_OTHER';
      counted = this.errors.get(`${operation}\0${type}`);
      if (!counted) {
        const attributes = { ...this.base, 'cache.operation': operation, 'error.type': type };
        this.errors.set(`${operation}\0${type}`, (counted = { attributes, count: 0 }));
      }
    }
    counted.count += 1;
  }

  /** Runs `call`, and records how long its promise took to settle (call only when `timing`). */
  timed<T>(
    operation: TracedOperation,
    key: string | undefined,
    call: () => Promise<T>,
  ): Promise<T> {
    const { attributes } = this.slotOf(operation, key);
    const started = performance.now();
    const pending = call();
    const record = () => this.durations!.record((performance.now() - started) / 1_000, attributes);
    pending.then(record, record);
    return pending;
  }

  /** Stops reporting: the SDK holds no reference to a closed cache. */
  close(): void {
    if (this.report) this.meter!.removeBatchObservableCallback(this.report, this.observables);
  }

  /** The counts of `by` for `key`'s group (none without keyGroup or a key). */
  private slotOf(by: ServedBy, key: string | undefined): Slot {
    const slots = this.slots[by];
    if (this.keyGroup === undefined || key === undefined) return slots.plain;
    const group = this.groupOf(key);
    if (group === undefined) return slots.plain;
    return slots.groups.get(group) ?? this.newGroup(slots, group);
  }

  private newGroup(slots: OperationSlots, group: string): Slot {
    if (!this.knownGroups.has(group)) {
      if (this.knownGroups.size >= MAX_KEY_GROUPS) {
        if (!this.groupsCapped) this.warn(messages.keyGroupsCapped(MAX_KEY_GROUPS, OTHER_GROUP));
        this.groupsCapped = true;
        // Not remembered under `group`: the map stays bounded however many groups there are.
        return slots.groups.get(OTHER_GROUP) ?? this.groupSlot(slots, OTHER_GROUP);
      }
      this.knownGroups.add(group);
    }
    return this.groupSlot(slots, group);
  }

  private groupSlot(slots: OperationSlots, group: string): Slot {
    const made = slot({ ...slots.plain.attributes, 'cache.key_group': group });
    slots.groups.set(group, made);
    return made;
  }

  private groupOf(key: string): string | undefined {
    try {
      const group = this.keyGroup!(key);
      return typeof group === 'string' ? group : undefined;
    } catch (error) {
      this.warn(messages.keyGroupFailed(reasonOf(error)));
      return undefined;
    }
  }
}

/** The `metrics` option, checked before the cache opens anything. */
export function metricsSettings(option: unknown): MetricsSettings {
  if (option === undefined || option === true) return {};
  if (option === false) return undefined;
  const rule =
    'Use true (the default: the global MeterProvider), false (no metrics), or { keyGroup?: (key) => string | undefined, meterProvider?: MeterProvider, durations?: boolean }.';
  if (option === null || typeof option !== 'object' || Array.isArray(option)) {
    throw new CacheConfigError(messages.invalidOption('metrics', option, rule));
  }
  knownKeysOnly('metrics', option, ['keyGroup', 'meterProvider', 'durations']);
  const { keyGroup, meterProvider, durations } = option as CacheMetricsOptions;
  if (durations !== undefined && typeof durations !== 'boolean') {
    throw new CacheConfigError(
      messages.invalidOption('metrics.durations', durations, 'Use true or false (default false).'),
    );
  }
  if (keyGroup !== undefined && typeof keyGroup !== 'function') {
    throw new CacheConfigError(
      messages.invalidOption(
        'metrics.keyGroup',
        keyGroup,
        "Use a function of the key returning its group (a bounded set: key.split(':')[0], say), or leave it out.",
      ),
    );
  }
  if (
    meterProvider !== undefined &&
    typeof (meterProvider as Partial<MeterProvider> | null)?.getMeter !== 'function'
  ) {
    throw new CacheConfigError(
      messages.invalidOption(
        'metrics.meterProvider',
        meterProvider,
        "Use an OpenTelemetry MeterProvider (an object with getMeter(), such as @opentelemetry/sdk-metrics' MeterProvider), or leave it out for the global one.",
      ),
    );
  }
  return { keyGroup, meterProvider, durations };
}

/** The `name` option, checked: what cache.name says. */
export function cacheName(name: unknown, prefix: string): string {
  // Two caches must not share a name in one meter: their counts would be one series.
  if (name === undefined) return prefix;
  if (typeof name !== 'string' || name.length === 0) {
    throw new CacheConfigError(
      messages.invalidOption(
        'name',
        name,
        "Use a non-empty string (CacheModule sets it to the cache's name), or leave it out for the prefix.",
      ),
    );
  }
  return name;
}

function slot(attributes: Attributes): Slot {
  return { attributes, hits: 0, misses: 0, stale: 0 };
}

function observeSlot(
  result: BatchObservableResult,
  hits: ObservableCounter,
  misses: ObservableCounter,
  stale: ObservableCounter,
  counted: Slot,
): void {
  // Only what happened: an operation that never served anything makes no series.
  if (counted.hits > 0) result.observe(hits, counted.hits, counted.attributes);
  if (counted.misses > 0) result.observe(misses, counted.misses, counted.attributes);
  if (counted.stale > 0) result.observe(stale, counted.stale, counted.attributes);
}

/** error.type, as OpenTelemetry's conventions have it: low-cardinality, 'timeout' for timeouts. */
function errorType(error: unknown): string {
  if (error === undefined) return 'breaker_open';
  if (error instanceof OperationTimeoutError) return 'timeout';
  return error instanceof Error ? error.name : '_OTHER';
}

const NOOP_METER = createNoopMeter();
const NOOP_CLASSES = new Set<unknown>([
  NOOP_METER.constructor,
  NOOP_METER.createHistogram('nest_cache.probe').constructor,
]);

/** Whether a meter or instrument is the API's no-op (nothing to do for it, not even timing). */
function isNoop(object: object): boolean {
  return NOOP_CLASSES.has(object.constructor);
}

let packageVersion: string | null | undefined;

/** The package's version, for the meter (undefined where package.json is not beside lib/ or dist/). */
function version(): string | undefined {
  if (packageVersion === undefined) {
    try {
      const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
      packageVersion = (JSON.parse(text) as { version?: string }).version ?? null;
    } catch {
      packageVersion = null; // compiled elsewhere (the bench): the meter goes without a version
    }
  }
  return packageVersion ?? undefined;
}
