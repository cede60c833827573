import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/**
 * OpenTelemetry metrics for Prometheus, served at GET /metrics by MonitoringController (the
 * exporter opens no port of its own). The MeterProvider is the global one, so every library that
 * records through @opentelemetry/api, nest-cache included, appears there. app.module.ts imports
 * this file first: the provider is registered before nest-cache is loaded.
 */
export const prometheus = new PrometheusExporter({ preventServerStart: true });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [prometheus] }));
