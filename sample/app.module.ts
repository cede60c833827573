import './telemetry.js'; // first: the global MeterProvider, before nest-cache loads
import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { CacheModule, type CacheModuleOptions } from 'nest-cache';
import { CacheHealthIndicator } from 'nest-cache/terminus';
import { MonitoringController } from './monitoring.controller.js';
import { ProductsController } from './products.controller.js';
import { ReportsController } from './reports.controller.js';
import { ReportService } from './report.service.js';

/**
 * Memory by default: nothing to install. Another backend by configuration alone:
 *   CACHE_BACKEND=redis REDIS_URL=redis://127.0.0.1:6379 npm run sample
 *   CACHE_BACKEND=memcached MEMCACHED_SERVERS=127.0.0.1:11211 npm run sample
 *   CACHE_BACKEND=disk CACHE_DIR=/tmp/nest-cache-sample npm run sample
 */
function backend(): Pick<CacheModuleOptions, 'backend' | 'redis' | 'memcached' | 'disk'> {
  switch (process.env.CACHE_BACKEND) {
    case 'redis':
      return {
        backend: 'redis',
        redis: { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
      };
    case 'memcached':
      return { backend: 'memcached', memcached: { servers: process.env.MEMCACHED_SERVERS } };
    case 'disk':
      return {
        backend: 'disk',
        disk: { path: process.env.CACHE_DIR ?? '.cache/nest-cache-sample' },
      };
    case undefined:
    case 'memory':
      return { backend: 'memory' };
    default:
      throw new Error(
        `CACHE_BACKEND=${process.env.CACHE_BACKEND} is not one the sample knows: use memory (the default), redis, memcached or disk.`,
      );
  }
}

@Module({
  imports: [
    CacheModule.forRoot({ ...backend(), prefix: 'sample', ttl: '5m', isGlobal: true }),
    TerminusModule,
  ],
  controllers: [ReportsController, ProductsController, MonitoringController],
  providers: [ReportService, CacheHealthIndicator],
})
export class AppModule {}
