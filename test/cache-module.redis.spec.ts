import 'reflect-metadata';
import { Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BaseCache, CacheModule, type CacheModuleOptions, RedisCache } from '../lib/index.js';
import { freePort, startRedisServer, type RedisServerHandle } from './support/redis-server.js';

@Injectable()
class ReportService {
  constructor(readonly cache: BaseCache) {}
}

async function boot(options: CacheModuleOptions) {
  const moduleRef = await Test.createTestingModule({
    imports: [CacheModule.forRoot(options)],
    providers: [ReportService],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return { app, cache: app.get(ReportService).cache };
}

// A private server, so the connections counted are exactly the module's.
describe('CacheModule with backend: redis', () => {
  let server: RedisServerHandle;
  let admin: Redis;
  const connections = async () =>
    String(await admin.client('LIST'))
      .trim()
      .split('\n').length - 1;

  beforeAll(async () => {
    server = await startRedisServer();
    admin = new Redis(server.url);
  });
  afterAll(async () => {
    await admin.quit();
    await server.stop();
  });

  it('injects a RedisCache that stores in that Redis', async () => {
    const { app, cache } = await boot({
      backend: 'redis',
      redis: { url: server.url },
      prefix: 'mod',
    });
    expect(cache).toBeInstanceOf(RedisCache);
    await cache.set('k', { at: new Date(0) });
    expect(await admin.exists('mod:k')).toBe(1);
    expect(await cache.get('k')).toEqual({ at: new Date(0) });
    await app.close();
  });

  it('closes its connection at application shutdown', async () => {
    const before = await connections();
    const { app } = await boot({ backend: 'redis', redis: { url: server.url } });
    expect(await connections()).toBe(before + 1);
    await app.close();
    expect(await connections()).toBe(before);
  });

  it('leaves a client you passed open at application shutdown', async () => {
    const client = new Redis(server.url, { enableOfflineQueue: false, commandTimeout: 500 });
    const { app } = await boot({ backend: 'redis', redis: { client } });
    await app.close();
    expect(await client.ping()).toBe('PONG');
    await client.quit();
  });

  it('boots with Redis down, serves misses, and shuts down promptly', async () => {
    const port = await freePort(); // nothing listens there
    const started = Date.now();
    const { app, cache } = await boot({
      backend: 'redis',
      redis: { url: `redis://127.0.0.1:${port}` },
    });
    expect(await cache.getOrSet('k', () => 'from origin')).toBe('from origin');
    await app.close();
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
