import { Module } from '@nestjs/common';
import { CacheModule } from 'nest-cache';
import { ProductsController } from './products.controller.js';
import { ReportsController } from './reports.controller.js';
import { ReportService } from './report.service.js';

/**
 * Memory by default: nothing to install. For Redis:
 *   CACHE_BACKEND=redis REDIS_URL=redis://127.0.0.1:6379 npm run sample
 */
@Module({
  imports: [
    CacheModule.forRoot({
      backend: process.env.CACHE_BACKEND === 'redis' ? 'redis' : 'memory',
      redis: { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
      prefix: 'sample',
      ttl: '5m',
      isGlobal: true,
    }),
  ],
  controllers: [ReportsController, ProductsController],
  providers: [ReportService],
})
export class AppModule {}
