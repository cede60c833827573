import 'reflect-metadata';
import { Controller, Get, Query, UseInterceptors } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { Agent, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BaseCache, CacheInterceptor, CacheModule } from '../../lib/index.js';

// A cache-buster flood: one million distinct URLs (random query strings, as a scanner or an
// attacker sends them) through CacheInterceptor on the memory backend. The cache must stay within
// its bounds of entries and bytes, and the process's heap within twice its warm size. Real HTTP
// on 64 keep-alive connections (Fastify's inject is no harness for this: it retains about 9 KB per
// request by itself, with or without a cache), so a million take a few minutes.
const REQUESTS = 1_000_000;
const WARM = 50_000;
const MAX_ENTRIES = 10_000;
const MAX_BYTES = 8 * 1024 * 1024;

@Controller('flood')
@UseInterceptors(CacheInterceptor)
class FloodController {
  @Get()
  list(@Query('q') q: string) {
    return { q, items: [1, 2, 3], note: 'a small cached body' };
  }
}

/** The heap after a full collection (V8's gc, exposed for this test). */
function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('a flood of distinct URLs on the memory backend', () => {
  let app: NestFastifyApplication;
  let port: number;
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        CacheModule.forRoot({ prefix: 'flood', memory: { max: MAX_ENTRIES, maxBytes: MAX_BYTES } }),
      ],
      controllers: [FloodController],
    }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), {
      logger: false,
    });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });
  afterAll(async () => {
    agent.destroy();
    await app?.close();
  });

  it(`${REQUESTS.toLocaleString('en-US')} distinct URLs keep the cache within ${MAX_ENTRIES} entries and ${MAX_BYTES} bytes, and the heap within 2x its warm size`, async () => {
    const send = (i: number) =>
      new Promise<void>((resolve, reject) => {
        const request = get(
          { host: '127.0.0.1', port, path: `/flood?q=${i}-${Math.random()}`, agent },
          (response) => {
            response.resume();
            response.once('end', () =>
              response.statusCode === 200
                ? resolve()
                : reject(new Error(`request ${i} answered ${response.statusCode}`)),
            );
          },
        );
        request.once('error', reject);
      });
    /** Requests [from, to), 64 in flight at a time. */
    const flood = async (from: number, to: number) => {
      for (let i = from; i < to; i += 64) {
        await Promise.all(Array.from({ length: Math.min(64, to - i) }, (_, j) => send(i + j)));
      }
    };
    await flood(0, WARM);
    const warmHeap = heapAfterGc();
    await flood(WARM, REQUESTS);
    const floodedHeap = heapAfterGc();

    const cache = app.get(BaseCache);
    // The memory driver's LRU, read for this check only.
    const lru = (cache as unknown as { driver: { lru: { size: number; calculatedSize: number } } })
      .driver.lru;
    console.log(
      `flood: ${REQUESTS} requests; ${lru.size} entries, ${lru.calculatedSize} bytes cached; heap ${Math.round(warmHeap / 2 ** 20)} MiB warm, ${Math.round(floodedHeap / 2 ** 20)} MiB after`,
    );
    expect(lru.size).toBeLessThanOrEqual(MAX_ENTRIES);
    expect(lru.calculatedSize).toBeLessThanOrEqual(MAX_BYTES);
    expect(cache.stats.writes).toBeGreaterThanOrEqual(REQUESTS * 0.99);
    expect(floodedHeap).toBeLessThanOrEqual(2 * warmHeap);
    expect(cache.inFlight()).toEqual({ reads: 0, flights: 0 });
  }, 600_000);
});
