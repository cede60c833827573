import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { CacheModule } from '../lib/index.js';
import { startRedisServer, type RedisServerHandle } from './support/redis-server.js';

// At startup one line per cache says which backend it really uses, so that "Redis silently not
// used" (nestjs/cache-manager#699) cannot go unseen; it never shows a password.
let redis: RedisServerHandle;
beforeAll(async () => {
  redis = await startRedisServer({ args: ['--requirepass', 'secret-pw'] });
});
afterAll(async () => {
  await redis.stop();
});
afterEach(() => vi.restoreAllMocks());

it('logs one line per cache at startup, naming its backend, where it connects and its prefix, never the password', async () => {
  const lines: string[] = [];
  vi.spyOn(Logger.prototype, 'log').mockImplementation((message: unknown) => {
    lines.push(String(message));
  });
  const moduleRef = await Test.createTestingModule({
    imports: [
      CacheModule.forRoot({
        backend: 'redis',
        redis: { url: `redis://:secret-pw@127.0.0.1:${redis.port}` },
      }),
      CacheModule.forRoot({ name: 'sessions' }),
    ],
  }).compile();
  const app = moduleRef.createNestApplication();
  await app.init();
  await app.close();
  const startup = lines.filter((line) => line.includes(' uses the '));
  expect(startup.sort()).toEqual([
    'The cache "sessions" uses the memory backend, keys under "sessions:".',
    `The default cache uses the redis backend (127.0.0.1:${redis.port}), keys under "nest-cache:".`,
  ]);
  expect(lines.join('\n')).not.toContain('secret-pw');
});
