import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplication, NestInterceptor, Type } from '@nestjs/common';
import type { AbstractHttpAdapter } from '@nestjs/core';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { afterAll, afterEach } from 'vitest';
import {
  BaseCache,
  CacheInterceptor,
  CacheModule,
  type CacheModuleOptions,
} from '../../../lib/index.js';
import type { MemcachedServerHandle } from '../../support/memcached-server.js';
import type { RedisServerHandle } from '../../support/redis-server.js';
import { HandlerCalls } from './controllers.js';
import { request, type Reply } from './http.js';

export { usePrivateMemcached } from '../../support/memcached-server.js';
export { usePrivateRedis } from '../../support/redis-server.js';

/** Both HTTP platforms, for `describe.each(ADAPTERS)`. */
export const ADAPTERS: { name: string; create: () => AbstractHttpAdapter }[] = [
  { name: 'express', create: () => new ExpressAdapter() },
  { name: 'fastify', create: () => new FastifyAdapter() },
];

/** A backend to run a suite on: its module options, read inside tests (servers start in beforeAll). */
export interface Backend {
  name: 'memory' | 'redis' | 'memcached' | 'disk' | 'keyv';
  options(): CacheModuleOptions;
}

/** The Redis backend's command timeout in tests, as the fault tests of the backend use. */
export const COMMAND_TIMEOUT_MS = 200;

/** Disk stores made for the tests of this file, removed once they are done (their apps closed). */
const diskDirs: string[] = [];
afterAll(() => {
  for (const dir of diskDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh, empty folder for one app's disk store. */
export function diskPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nest-cache-http-disk-'));
  diskDirs.push(dir);
  return dir;
}

/**
 * Every backend, for `describe.each`: memory and Redis first (suites pick Redis by position), then
 * memcached (on the given private server), disk (a fresh store per app) and the Keyv bridge (over
 * Keyv's in-memory store).
 */
export function backends(
  redis: { readonly server: RedisServerHandle },
  memcached: { readonly server: MemcachedServerHandle },
): Backend[] {
  return [
    { name: 'memory', options: () => ({ backend: 'memory' }) },
    {
      name: 'redis',
      options: () => ({
        backend: 'redis',
        redis: { url: redis.server.url, commandTimeout: COMMAND_TIMEOUT_MS },
      }),
    },
    {
      name: 'memcached',
      options: () => ({ backend: 'memcached', memcached: { servers: memcached.server.servers } }),
    },
    { name: 'disk', options: () => ({ backend: 'disk', disk: { path: diskPath() } }) },
    { name: 'keyv', options: () => ({ backend: 'keyv', keyv: { store: new Map() } }) },
  ];
}

export interface AppSetup {
  adapter: { create: () => AbstractHttpAdapter };
  controllers: Type[];
  /** CacheModule options; the prefix is made unique per app so apps never share Redis entries. */
  cache?: CacheModuleOptions;
  /** Registers CacheInterceptor for the whole app (APP_INTERCEPTOR). */
  appWide?: boolean;
  /** Global interceptors added with app.useGlobalInterceptors, so they run outside CacheInterceptor. */
  outerInterceptors?: NestInterceptor[];
  /** Sets the app up as a real app would before it listens: versioning, hooks, middleware. */
  configure?: (app: INestApplication) => void;
}

export interface TestApp {
  readonly app: INestApplication;
  /** http://127.0.0.1:port */
  readonly url: string;
  readonly calls: HandlerCalls;
  readonly cache: BaseCache;
  /** The module prefix this app's entries are stored under. */
  readonly prefix: string;
  send(path: string, init?: RequestInit): Promise<Reply>;
  close(): Promise<void>;
}

let apps = 0;

/** Starts a Nest app listening on a free port of 127.0.0.1. */
export async function startApp(setup: AppSetup): Promise<TestApp> {
  apps += 1;
  const prefix = setup.cache?.prefix ?? `http-test-${process.pid}-${apps}`;
  const moduleRef = await Test.createTestingModule({
    imports: [CacheModule.forRoot({ ...setup.cache, prefix })],
    controllers: setup.controllers,
    providers: [
      HandlerCalls,
      ...(setup.appWide ? [{ provide: APP_INTERCEPTOR, useClass: CacheInterceptor }] : []),
    ],
  }).compile();
  const app = moduleRef.createNestApplication(setup.adapter.create(), { logger: false });
  if (setup.outerInterceptors) app.useGlobalInterceptors(...setup.outerInterceptors);
  setup.configure?.(app);
  try {
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    await app.close();
    throw error;
  }
  const url = await app.getUrl();
  let closing: Promise<void> | undefined;
  const close = async () => {
    // The Redis backend sends the write of a response just sent on the next check phase
    // (ioredis auto-pipelining); QUIT at shutdown is sent at once and would overtake it.
    await new Promise((resolve) => setImmediate(resolve));
    await app.close();
  };
  return {
    app,
    url,
    prefix,
    calls: app.get(HandlerCalls),
    cache: app.get(BaseCache),
    send: (path, init) => request(url, path, init),
    close: () => (closing ??= close()),
  };
}

/** startApp, for apps closed in afterEach (also when the test failed). */
export function useApps(): (setup: AppSetup) => Promise<TestApp> {
  const open: TestApp[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((app) => app.close()));
  });
  return async (setup) => {
    const app = await startApp(setup);
    open.push(app);
    return app;
  };
}
