import { afterEach, describe, it } from 'vitest';
import { RedisCache } from '../lib/index.js';
import { cacheBehaviourSuite } from '../lib/testing/index.js';
import { useRedis } from './support/redis-server.js';

// The same contract the memory and custom backends keep, over a real redis-server.
const redis = useRedis();
cacheBehaviourSuite(
  'RedisCache',
  (options) => RedisCache.create({ ...options, redis: { url: redis.url } }),
  {
    describe,
    it,
    afterEach,
  },
);
