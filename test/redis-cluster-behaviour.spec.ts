import { afterEach, describe, it } from 'vitest';
import { RedisCache } from '../lib/index.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';
import { useRedisCluster } from './support/redis-cluster.js';

// The same contract the memory, Redis and custom backends keep, over a Redis Cluster of three
// masters: every multi-key command of the suite spans slots (and so nodes).
const redis = useRedisCluster({ masters: 3 });
cacheBehaviourSuite(
  'RedisCache on a Redis Cluster',
  (options) =>
    RedisCache.create({ ...options, redis: { cluster: { nodes: redis.cluster.addresses } } }),
  { describe, it, afterEach },
);
