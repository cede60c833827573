import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

const app = await NestFactory.create(AppModule);
app.enableShutdownHooks(); // so Ctrl+C closes the cache (and its Redis connection) cleanly
const port = Number(process.env.PORT ?? 3000);
await app.listen(port, '127.0.0.1');

const url = `http://127.0.0.1:${port}/reports/42`;
new Logger('Sample').log(
  `Backend: ${process.env.CACHE_BACKEND === 'redis' ? 'redis' : 'memory'}. Try: curl ${url} (about 1 s, built), then again (served from the cache).`,
);
