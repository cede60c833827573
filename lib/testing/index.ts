export {
  cacheBehaviourSuite,
  driverBehaviourSuite,
  type CacheFactory,
  type DriverFactory,
  type TestApi,
} from './cache-behaviour.suite.js';
