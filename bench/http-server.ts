/**
 * One server under test, started by run.ts pinned to its own core. Prints `listening <url>` once
 * ready; ends on SIGTERM.
 *
 * With `workers` in the setup it runs as node:cluster does under PM2: this process forks the
 * workers, which share one port; /bench/stats then sums every worker's counters.
 *
 * Setup: BENCH_SETUP (JSON ServerSetup); REDIS_URL for the redis backend; BENCH_DISK_ROOT for disk.
 */
import 'reflect-metadata';
import cluster, { type Worker } from 'node:cluster';
import { createServer } from 'node:net';
import { NestFactory } from '@nestjs/core';
import { benchModule, type BenchStats, localStats, useStatsSource } from './apps.js';
import { type ServerSetup, setupName } from './fixtures.js';

const setup = JSON.parse(process.env.BENCH_SETUP ?? '{}') as ServerSetup;

/** Messages between the primary and its workers. */
type Message =
  | { type: 'listening' }
  | { type: 'stats?'; id: number }
  | { type: 'stats'; id: number; stats: BenchStats };

async function serve(port: number): Promise<number> {
  // Only the adapter this server uses is imported: the other one would add to every start.
  const adapter =
    setup.adapter === 'fastify'
      ? new (await import('@nestjs/platform-fastify')).FastifyAdapter()
      : new (await import('@nestjs/platform-express')).ExpressAdapter();
  const app = await NestFactory.create(await benchModule(setup, process.env.REDIS_URL), adapter, {
    logger: ['error', 'warn'],
  });
  await app.listen(port, '127.0.0.1');
  return (app.getHttpServer().address() as { port: number }).port;
}

async function single(): Promise<void> {
  const port = await serve(0);
  process.stdout.write(`listening http://127.0.0.1:${port}\n`);
}

/** A worker: serves on the primary's port; its stats route asks the primary for the sum. */
async function worker(): Promise<void> {
  let asked = 0;
  const waiting = new Map<number, (stats: BenchStats) => void>();
  process.on('message', (message: Message) => {
    if (message.type === 'stats?') {
      process.send!({ type: 'stats', id: message.id, stats: localStats() } satisfies Message);
    } else if (message.type === 'stats') {
      waiting.get(message.id)?.(message.stats);
      waiting.delete(message.id);
    }
  });
  useStatsSource(() => {
    const id = ++asked;
    process.send!({ type: 'stats?', id } satisfies Message);
    return new Promise((resolve) => waiting.set(id, resolve));
  });
  await serve(Number(process.env.BENCH_PORT));
  process.send!({ type: 'listening' } satisfies Message);
}

/** The primary: forks the workers on one free port, and sums their stats when one asks. */
async function primary(count: number): Promise<void> {
  const port = await freePort();
  const workers: Worker[] = [];
  let listening = 0;
  let next = 0;
  /** A worker's question, being answered: the sum so far and the answers still to come. */
  const sums = new Map<number, { from: Worker; id: number; sum: BenchStats; left: number }>();
  const onMessage = (from: Worker, message: Message) => {
    if (message.type === 'listening' && ++listening === count) {
      process.stdout.write(`listening http://127.0.0.1:${port}\n`);
    } else if (message.type === 'stats?') {
      const key = ++next;
      sums.set(key, { from, id: message.id, sum: { originCalls: 0, cpuMicros: 0 }, left: count });
      for (const each of workers) each.send({ type: 'stats?', id: key } satisfies Message);
    } else if (message.type === 'stats') {
      const asked = sums.get(message.id)!;
      asked.sum.originCalls += message.stats.originCalls;
      asked.sum.cpuMicros += message.stats.cpuMicros;
      if (--asked.left > 0) return;
      sums.delete(message.id);
      asked.from.send({ type: 'stats', id: asked.id, stats: asked.sum } satisfies Message);
    }
  };
  for (let i = 0; i < count; i++) {
    const forked = cluster.fork({ BENCH_PORT: String(port) });
    forked.on('message', (message: Message) => onMessage(forked, message));
    forked.on('exit', (code) => {
      if (code !== 0) process.exit(1);
    });
    workers.push(forked);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const start =
  (setup.workers ?? 1) <= 1 ? single : cluster.isPrimary ? () => primary(setup.workers!) : worker;
// run.ts ends this process with SIGTERM when the run is over (or SIGKILL if it does not exit);
// the workers of a cluster get it from the primary.
process.once('SIGTERM', () => {
  if (cluster.isPrimary) for (const each of Object.values(cluster.workers ?? {})) each?.kill();
  process.exit(0);
});
start().catch((error: unknown) => {
  process.stderr.write(`${setupName(setup)} failed to start: ${String(error)}\n`);
  process.exit(1);
});
