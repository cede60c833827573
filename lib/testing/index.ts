export {
  cacheBehaviourSuite,
  driverBehaviourSuite,
  type CacheFactory,
  type DriverFactory,
  type SuiteTraits,
  type TestApi,
} from './cache-behaviour.suite.js';
