import { afterEach, describe, it } from 'vitest';
import { cacheBehaviourSuite } from '../lib/testing/index.js';
import { MapCache } from './support/map-cache.js';

// The suite authors of their own backend run: a Map-based backend gets the whole contract from BaseCache.
cacheBehaviourSuite('MapCache (a custom backend)', (options) => new MapCache(options), {
  describe,
  it,
  afterEach,
});
