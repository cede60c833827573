import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { metrics } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The sample a newcomer runs first (README: npm run sample), on the memory backend.
describe('sample app', () => {
  let app: INestApplication;
  let base: string;
  let root: string;

  beforeAll(async () => {
    process.env.REPORT_BUILD_MS = '300';
    process.env.WARM_REPORTS = '0';
    const { AppModule } = await import('../sample/app.module.js');
    app = (
      await Test.createTestingModule({ imports: [AppModule] }).compile()
    ).createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    root = await app.getUrl();
    base = `${root}/reports`;
  });

  afterAll(() => app.close());

  interface ReportBody {
    id: string;
    builds: number;
    generatedAt: string;
  }
  const get = async (id: string) => (await (await fetch(`${base}/${id}`)).json()) as ReportBody;

  it('builds a report once, then serves it from the cache', async () => {
    const first = await get('a');
    const second = await get('a');
    expect(first.builds).toBe(1);
    expect(second).toMatchObject({ id: 'a', builds: 1, generatedAt: first.generatedAt });
  });

  it('builds a cold report once for concurrent requests', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => get('b')));
    expect(new Set(results.map((r) => r.generatedAt)).size).toBe(1);
    expect((await get('b')).builds).toBe(2); // 'a' and 'b'
  });

  it('builds again after the report is deleted from the cache', async () => {
    await fetch(`${base}/a`, { method: 'DELETE' });
    expect((await get('a')).builds).toBe(3);
  });

  it('caches product responses with CacheInterceptor: MISS, then HIT with the same body', async () => {
    const products = base.replace('/reports', '/products');
    const miss = await fetch(`${products}?maxPrice=30`);
    const hit = await fetch(`${products}?maxPrice=30`);
    expect(miss.headers.get('x-cache')).toBe('MISS');
    expect(hit.headers.get('x-cache')).toBe('HIT');
    expect(await hit.text()).toBe(await miss.text());
  });

  it('a POST of a product evicts the cached product list: the next GET is a MISS that lists it', async () => {
    const products = base.replace('/reports', '/products');
    await fetch(products);
    expect((await fetch(products)).headers.get('x-cache')).toBe('HIT');
    const added = await fetch(products, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Cup', price: 5 }),
    });
    expect(added.status).toBe(201);
    const after = await fetch(products);
    expect(after.headers.get('x-cache')).toBe('MISS');
    expect(
      ((await after.json()) as { products: { name: string }[] }).products.map((p) => p.name),
    ).toContain('Cup');
  });

  it('bypasses the cache for product requests with credentials', async () => {
    const products = base.replace('/reports', '/products');
    const reply = await fetch(`${products}/1`, { headers: { authorization: 'Bearer token' } });
    expect(reply.headers.get('x-cache')).toBe('BYPASS');
  });

  it('/health answers 200 with the cache up', async () => {
    const reply = await fetch(`${root}/health`);
    expect(reply.status).toBe(200);
    expect(await reply.json()).toMatchObject({
      status: 'ok',
      info: {
        cache: {
          status: 'up',
          caches: [{ name: null, backend: 'memory', status: 'up', breaker: 'closed' }],
        },
      },
    });
  });

  interface StatsBody {
    backend: string;
    hits: number;
    misses: number;
    stale: number;
    hitRatio: number;
    breaker: string;
  }
  const stats = async () => (await (await fetch(`${root}/stats`)).json()) as StatsBody;

  it('/stats shows the backend, and counts a miss, then a hit', async () => {
    const greeting = `${root}/products/greeting?name=stats`;
    const before = await stats();
    expect((await fetch(greeting)).headers.get('x-cache')).toBe('MISS');
    const afterMiss = await stats();
    expect((await fetch(greeting)).headers.get('x-cache')).toBe('HIT');
    const afterHit = await stats();

    expect(afterMiss).toMatchObject({
      backend: 'memory',
      breaker: 'closed',
      hits: before.hits,
      misses: before.misses + 1,
    });
    expect(afterHit).toMatchObject({ hits: before.hits + 1, misses: before.misses + 1 });
    const { hits, stale, misses } = afterHit;
    expect(afterHit.hitRatio).toBeCloseTo((hits + stale) / (hits + stale + misses));
  });

  it('/metrics answers the global MeterProvider in the Prometheus text format', async () => {
    // A meter from the global API, as nest-cache's own metrics get theirs.
    metrics.getMeter('sample-spec').createCounter('sample_spec.probes').add(3);
    const reply = await fetch(`${root}/metrics`);
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await reply.text();
    expect(text).toMatch(/^# TYPE target_info gauge$/m);
    expect(text).toMatch(/^# TYPE sample_spec_probes_total counter$/m);
    expect(text).toMatch(
      /^sample_spec_probes_total\{[^}]*otel_scope_name="sample-spec"[^}]*\} 3$/m,
    );
  });

  // Depends on nest-cache's own OpenTelemetry metrics (lib/metrics.ts: the `metrics` option, on
  // by default, recording through the global MeterProvider the sample registers).
  it("/metrics shows nest-cache's own metrics: hits and misses", async () => {
    const greeting = `${root}/products/greeting?name=metrics`;
    await fetch(greeting); // a miss
    await fetch(greeting); // a hit
    const text = await (await fetch(`${root}/metrics`)).text();
    expect(text).toMatch(/^nest_cache_hits(_total)?\{.*\} [1-9]\d*$/m);
    expect(text).toMatch(/^nest_cache_misses(_total)?\{.*\} [1-9]\d*$/m);
  });
});
