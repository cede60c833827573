import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type RedisServerHandle, startRedisServer } from './redis-server.js';
import { askLine, type ServerProcess, startServerProcess } from './server-process.js';

/** A private Sentinel set-up: a master, a replica of it, and one Sentinel watching them. */
export interface SentinelSetup {
  /** The group name the Sentinel knows the master by (ioredis' `name`). */
  readonly name: string;
  readonly master: RedisServerHandle;
  readonly replica: RedisServerHandle;
  readonly sentinel: ServerProcess;
  /** The port of the master as the Sentinel names it now (it changes on a failover). */
  masterPort(): Promise<number | undefined>;
  stop(): Promise<void>;
}

const NAME = 'nest-cache-test';
/** How long the Sentinel waits before it calls the master down, and a failover's bound. */
const DOWN_AFTER_MS = 500;
const FAILOVER_TIMEOUT_MS = 3_000;

/** Starts the master, the replica and the Sentinel (redis-server --sentinel) on free ports. */
export async function startSentinelSetup(): Promise<SentinelSetup> {
  const master = await startRedisServer();
  const replica = await startRedisServer({
    args: ['--replicaof', '127.0.0.1', String(master.port)],
  });
  // The Sentinel rewrites its configuration file: it gets one of its own, in a folder of its own.
  const dir = mkdtempSync(join(tmpdir(), 'nest-cache-sentinel-'));
  const config = join(dir, 'sentinel.conf');
  writeFileSync(
    config,
    [
      `sentinel monitor ${NAME} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${NAME} ${DOWN_AFTER_MS}`,
      `sentinel failover-timeout ${NAME} ${FAILOVER_TIMEOUT_MS}`,
      '',
    ].join('\n'),
  );
  const sentinel = await startServerProcess({
    binary: 'redis-server',
    missingBinary:
      'redis-server was not found on PATH (it also runs Sentinels). Install it: apt-get install redis-server',
    args: (port) => [config, '--sentinel', '--port', String(port), '--bind', '127.0.0.1'],
    ready: async (port) => (await askLine(port, 'PING')) === '+PONG',
    readyCommand: 'PING',
  });
  const masterPort = async () => {
    const reply = await sentinelCommand(sentinel.port, `SENTINEL get-master-addr-by-name ${NAME}`);
    const port = reply?.[1];
    return port === undefined ? undefined : Number(port);
  };
  return {
    name: NAME,
    master,
    replica,
    sentinel,
    masterPort,
    async stop() {
      await Promise.all([sentinel.stop(), master.stop(), replica.stop()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A Sentinel set-up for this file: started in beforeAll, stopped in afterAll. */
export function useSentinelSetup(): { readonly setup: SentinelSetup } {
  let setup: SentinelSetup | undefined;
  beforeAll(async () => {
    setup = await startSentinelSetup();
  }, 30_000);
  afterAll(async () => {
    await setup?.stop();
  });
  return {
    get setup() {
      if (!setup) throw new Error('the Sentinel set-up is only available inside tests');
      return setup;
    },
  };
}

/** The bulk strings of a RESP array reply to an inline command, or undefined on no answer. */
function sentinelCommand(port: number, line: string): Promise<string[] | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (answer: string[] | undefined) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(1_000, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('connect', () => socket.write(`${line}\r\n`));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      const lines = reply.split('\r\n');
      if (lines[0] === '*-1') return done(undefined);
      const count = Number(lines[0]?.slice(1));
      // *N, then $len and the value for each element.
      if (lines.length > count * 2 + 1)
        done(lines.filter((_, i) => i > 0 && i % 2 === 0).slice(0, count));
    });
  });
}
