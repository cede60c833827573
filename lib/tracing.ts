import { tracingChannel, type TracingChannel } from 'node:diagnostics_channel';

/**
 * What a subscriber of nest-cache's tracing channels gets for each operation (see TRACED): the
 * operation, the cache (its prefix) and backend, the keys (as you gave them) or the pattern or tags,
 * and, once it has settled, `result` or `error` (set by node:diagnostics_channel).
 */
export interface CacheTraceContext {
  operation: TracedOperation;
  /** The cache's prefix: it tells apart the caches of one app. */
  cache: string;
  /** The backend, as the driver names itself: 'memory', 'redis'... */
  backend: string;
  key?: string;
  keys?: readonly string[];
  pattern?: string;
  tags?: readonly string[];
  result?: unknown;
  error?: unknown;
}

/**
 * The operations traced, each on the tracing channel `nest-cache:<operation>`
 * (`diagnostics_channel.tracingChannel('nest-cache:get')`: start, end, asyncStart, asyncEnd,
 * error), so that APM agents and OpenTelemetry instrumentations can time and annotate them. With
 * nobody subscribed an operation pays one property read.
 */
export const TRACED = [
  'get',
  'getMany',
  'has',
  'ttl',
  'set',
  'setMany',
  'delete',
  'deleteMany',
  'deleteByPattern',
  'invalidateTags',
  'clear',
  'increment',
  'getOrSet',
] as const;

/** One of TRACED: the operation a tracing channel is named after ('get' traces on nest-cache:get). */
export type TracedOperation = (typeof TRACED)[number];

/** The tracing channel of each operation. */
export const traces = Object.fromEntries(
  TRACED.map((operation) => [operation, tracingChannel(`nest-cache:${operation}`)]),
) as Record<TracedOperation, TracingChannel<object, CacheTraceContext>>;
