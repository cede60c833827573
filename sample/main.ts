import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

const app = await NestFactory.create(AppModule);
app.enableShutdownHooks(); // so Ctrl+C closes the cache (and its Redis connection) cleanly
const port = Number(process.env.PORT ?? 3000);
await app.listen(port, '127.0.0.1');

const base = `http://127.0.0.1:${port}`;
const logger = new Logger('Sample');
logger.log(
  `@Cacheable: curl ${base}/reports/42 (about 1 s, built), then again (from the cache); /reports/daily was warmed at startup.`,
);
logger.log(
  `CacheInterceptor: curl -i ${base}/products?maxPrice=30 twice (X-Cache: MISS, then HIT).`,
);
logger.log(
  `@CacheEvict: curl -X POST -H 'content-type: application/json' -d '{"name":"Cup","price":5}' ${base}/products, then the list is a MISS again.`,
);
logger.log(
  `Monitoring: curl ${base}/stats (hits and misses count up as you use the routes above), ${base}/health, ${base}/metrics (Prometheus).`,
);
