/**
 * One server under test, started by run.ts pinned to its own core. Prints `listening <url>` once
 * ready; ends on SIGTERM.
 *
 * Setup: BENCH_SETUP (JSON ServerSetup); REDIS_URL for the redis backend.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { benchModule } from './apps.js';
import { type ServerSetup, setupName } from './fixtures.js';

const setup = JSON.parse(process.env.BENCH_SETUP ?? '{}') as ServerSetup;

async function main(): Promise<void> {
  const adapter = setup.adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter();
  const app = await NestFactory.create(benchModule(setup, process.env.REDIS_URL), adapter, {
    logger: ['error', 'warn'],
  });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  process.stdout.write(`listening http://127.0.0.1:${port}\n`);
  // run.ts ends this process with SIGTERM when the run is over (or SIGKILL if it does not exit).
  process.once('SIGTERM', () => process.exit(0));
}

main().catch((error: unknown) => {
  process.stderr.write(`${setupName(setup)} failed to start: ${String(error)}\n`);
  process.exit(1);
});
