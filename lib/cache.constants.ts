/** Defaults and internal limits, each decided here once. */

/** Default time to live when neither the call nor the module sets one: 60 seconds. */
export const DEFAULT_TTL = 60;

/** Default key namespace: keys are stored as `${prefix}:${key}`. */
export const DEFAULT_PREFIX = 'nest-cache';

/** Default bound of the memory backend, in entries. */
export const DEFAULT_MEMORY_MAX = 10_000;

/** Default byte bound of the memory backend (smaller when a quarter of the heap limit is). */
export const DEFAULT_MEMORY_MAX_BYTES = 256 * 1024 * 1024;

/** How long getOrSet waits for a factory before its callers give up: 10 seconds. */
export const DEFAULT_GET_OR_SET_TIMEOUT = '10s';

/** close() waits at least this long for a backend to shut down (RedisCache needs up to about 1.6 s). */
export const MIN_CLOSE_WAIT_MS = 2_500;

/** How long one backend call may take before it fails open: 2 seconds. */
export const DEFAULT_OPERATION_TIMEOUT = '2s';

/**
 * The largest response body CacheInterceptor records to replay as bytes (16 MiB); a larger one is
 * served, not cached.
 */
export const MAX_RECORDED_BODY_BYTES = 16 * 1024 * 1024;

/** Most tags one entry carries. */
export const MAX_TAGS = 64;

/** Keys a walk of a namespace (clear, deleteByPattern) handles per round trip (Redis SCAN COUNT). */
export const SCAN_BATCH = 1_000;

/** Keys longer than this are shortened to a prefix of them plus their SHA-256. */
export const MAX_KEY_LENGTH = 1_024;

/** At most one backend-failure log line per this many milliseconds. */
export const ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Circuit breaker: after this many consecutive backend failures, calls skip the
 * backend (fail open at once) for BREAKER_COOLDOWN_MS, then one is let through.
 */
export const BREAKER_THRESHOLD = 5;
export const BREAKER_COOLDOWN_MS = 1_000;

/** Route metadata keys of the response-caching decorators. */
export const CACHE_TTL_METADATA = 'nest-cache:ttl';
export const CACHE_KEY_METADATA = 'nest-cache:key';
export const NO_CACHE_METADATA = 'nest-cache:no-cache';
export const CACHE_VARY_METADATA = 'nest-cache:vary';
export const CACHE_PER_USER_METADATA = 'nest-cache:per-user';
export const CACHE_PUBLIC_METADATA = 'nest-cache:public';
export const CACHE_TAGS_METADATA = 'nest-cache:tags';
export const CACHE_STALE_METADATA = 'nest-cache:stale';
export const CACHE_NAME_METADATA = 'nest-cache:cache-name';

/** Method metadata keys of @Cacheable and @CacheEvict. */
export const CACHEABLE_METADATA = 'nest-cache:cacheable';
export const CACHE_EVICT_METADATA = 'nest-cache:evict';

/** Response statuses stored by default. */
export const DEFAULT_CACHEABLE_STATUSES = [200];

/** Request headers that identify a user: a request carrying one bypasses unless the route keys per user. */
export const CREDENTIAL_HEADERS = ['authorization', 'cookie'];

/**
 * Response headers never replayed from the cache: per-response or per-connection ones, the
 * cache's own, tracing and timing ones (a HIT is another request), and rate-limit ones (counted per
 * request). (ETag: see storedHeaders; headers set before the handler: see storedHeaders too.)
 */
export const UNSTORED_RESPONSE_HEADERS = new Set([
  'age',
  'connection',
  'content-encoding',
  'content-length',
  'date',
  'keep-alive',
  'set-cookie',
  'transfer-encoding',
  'x-cache',
  'x-powered-by',
  'x-request-id',
  'x-correlation-id',
  'request-id',
  'traceparent',
  'tracestate',
  'traceresponse',
  'server-timing',
  'x-response-time',
  'x-trace-id',
  'x-amzn-trace-id',
  'retry-after',
]);

/** Prefixes of response header names never replayed: CORS (they depend on the request's Origin) and rate limits. */
export const UNSTORED_RESPONSE_HEADER_PREFIXES = ['access-control-', 'x-ratelimit-', 'ratelimit'];
