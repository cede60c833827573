import { afterEach, describe, it } from 'vitest';
import { driverBehaviourSuite } from '../lib/testing/index.js';
import { MapDriver } from './support/map-driver.js';

// The suite authors of their own backend run: a Map-based driver gets the whole contract from BaseCache.
driverBehaviourSuite('MapDriver (a custom backend)', ({ clock }) => new MapDriver(clock), {
  describe,
  it,
  afterEach,
});
