/**
 * `nest-cache/terminus`: the health indicator for @nestjs/terminus (an optional peer dependency),
 * kept out of the main entry so that an app without terminus never loads it.
 */
export {
  CacheHealthIndicator,
  DEFAULT_HEALTH_TIMEOUT,
  type CacheHealth,
  type CacheHealthOptions,
} from './cache.health.js';
