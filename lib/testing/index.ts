export { cacheBehaviourSuite, type CacheFactory, type TestApi } from './cache-behaviour.suite.js';
