/**
 * Every error nest-cache throws has a stable `code`, so callers can branch on it
 * without matching messages. Input errors extend TypeError: they are programming
 * mistakes, reported at the call that made them.
 */

/** A key that is not a non-empty string. */
export class InvalidKeyError extends TypeError {
  readonly code = 'NEST_CACHE_INVALID_KEY';
  override readonly name = 'InvalidKeyError';
}

/** A ttl that is negative, zero, NaN, Infinity, or a string with an unknown unit. */
export class InvalidTtlError extends TypeError {
  readonly code = 'NEST_CACHE_INVALID_TTL';
  override readonly name = 'InvalidTtlError';
}

/** A value the serializer cannot store exactly (a function, a class instance, undefined, a cycle...). */
export class UnserializableValueError extends TypeError {
  readonly code = 'NEST_CACHE_UNSERIALIZABLE_VALUE';
  override readonly name = 'UnserializableValueError';
}

/** Bytes read from a backend that are not a valid entry. Never reaches callers: the read becomes a miss. */
export class CorruptEntryError extends Error {
  readonly code = 'NEST_CACHE_CORRUPT_ENTRY';
  override readonly name = 'CorruptEntryError';
}

/** A call made after close(). */
export class CacheClosedError extends Error {
  readonly code = 'NEST_CACHE_CLOSED';
  override readonly name = 'CacheClosedError';
}

/** A configuration the module cannot start with; thrown at bootstrap. */
export class CacheConfigError extends Error {
  readonly code = 'NEST_CACHE_CONFIG';
  override readonly name = 'CacheConfigError';
}

/** getOrSet's factory had not settled `getOrSetTimeout` after it started (its flight ran out of time). */
export class FactoryTimeoutError extends Error {
  readonly code = 'NEST_CACHE_FACTORY_TIMEOUT';
  override readonly name = 'FactoryTimeoutError';
}

/**
 * A backend call that did not settle within `operationTimeout`. Never reaches callers (the call
 * fails open); it is what the log line and `cause` say.
 */
export class OperationTimeoutError extends Error {
  readonly code = 'NEST_CACHE_OPERATION_TIMEOUT';
  override readonly name = 'OperationTimeoutError';
}

/** A tag that is not a non-empty string (or a list of tags that is not an array of them). */
export class InvalidTagError extends TypeError {
  readonly code = 'NEST_CACHE_INVALID_TAG';
  override readonly name = 'InvalidTagError';
}

/** A deleteByPattern() glob that is not well formed (an unclosed '[', a trailing '\'...). */
export class InvalidPatternError extends TypeError {
  readonly code = 'NEST_CACHE_INVALID_PATTERN';
  override readonly name = 'InvalidPatternError';
}

/** increment() or decrement() with a `by` that is not a safe integer, or on a key that holds something else. */
export class NotACounterError extends TypeError {
  readonly code = 'NEST_CACHE_NOT_A_COUNTER';
  override readonly name = 'NotACounterError';
}

/** A @Cacheable() method called with an argument its default key cannot represent faithfully. */
export class UnkeyableArgumentError extends TypeError {
  readonly code = 'NEST_CACHE_UNKEYABLE_ARGUMENT';
  override readonly name = 'UnkeyableArgumentError';
}
