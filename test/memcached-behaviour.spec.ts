import { afterEach, describe, it } from 'vitest';
import { MemcachedCache } from '../lib/index.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';
import { usePrivateMemcached } from './support/memcached-server.js';

// The same contract the memory and Redis backends keep, over a private memcached. Memcached
// cannot list its keys: deleteByPattern clears the namespace, and the suite checks that instead.
const memcached = usePrivateMemcached();
cacheBehaviourSuite(
  'MemcachedCache',
  (options) =>
    MemcachedCache.create({ ...options, memcached: { servers: memcached.server.servers } }),
  { describe, it, afterEach },
  { listsKeys: false },
);
