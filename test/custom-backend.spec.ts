import { afterEach, describe, it } from 'vitest';
import { DriverCache } from '../lib/index.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';
import { MapDriver } from './support/map-driver.js';

// The suite authors of their own backend run: a Map-based driver gets the whole contract from BaseCache.
cacheBehaviourSuite(
  'MapDriver (a custom backend)',
  (options) => new DriverCache(({ clock }) => new MapDriver(clock), options),
  { describe, it, afterEach },
);
