import type { IncomingMessage, ServerResponse } from 'node:http';
import { Controller, Get, Req, Res } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { BaseCache } from 'nest-cache';
import { CacheHealthIndicator } from 'nest-cache/terminus';
import { prometheus } from './telemetry.js';

/** What an operator reads: is the cache up, how well it serves, and the metrics for Prometheus. */
@Controller()
export class MonitoringController {
  constructor(
    private readonly cache: BaseCache,
    private readonly health: HealthCheckService,
    private readonly cacheHealth: CacheHealthIndicator,
  ) {}

  /** 200 while the cache answers its ping and its circuit breaker is closed; 503 otherwise. */
  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.cacheHealth.isHealthy('cache', { timeout: '500ms' })]);
  }

  /** The backend and its counters since startup: hits, misses, hitRatio, breaker... */
  @Get('stats')
  stats() {
    return { backend: this.cache.backend, ...this.cache.stats.toJSON() };
  }

  /** Every OpenTelemetry metric of the app, in the Prometheus text format. */
  @Get('metrics')
  metrics(@Req() request: IncomingMessage, @Res() response: ServerResponse) {
    prometheus.getMetricsRequestHandler(request, response);
  }
}
