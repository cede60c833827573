import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from './redis-server.js';

/** A private memcached started by a test. */
export interface MemcachedServerHandle {
  /** '127.0.0.1:<port>', as the memcached option "servers" takes it. */
  readonly servers: string;
  readonly port: number;
  /** SIGKILL: the server dies without closing its sockets politely. Resolves once it has exited. */
  kill(): Promise<void>;
  /** SIGSTOP: the server stops answering but its sockets stay open (no FIN). Resolves once it is stopped. */
  freeze(): Promise<void>;
  /** SIGCONT after freeze(). */
  resume(): void;
  /** Starts a fresh (empty) server on the same port after kill(). */
  restart(): Promise<void>;
  /** Kills the server; idempotent, for afterAll. */
  stop(): Promise<void>;
}

export interface MemcachedServerOptions {
  /** Port to listen on; a free one when left out. */
  port?: number;
  /** The largest item the server stores (memcached -I), e.g. '1k', '2m'. @default '1m' */
  maxItemSize?: string;
  /** Item memory in megabytes (memcached -m). @default 16 */
  memoryMb?: number;
}

const BINARY = 'memcached';
const MISSING_BINARY =
  'memcached was not found on PATH (Debian installs it as /usr/bin/memcached). Install it: apt-get install memcached';
const START_ATTEMPTS = 5;
const READY_TIMEOUT_MS = 10_000;

/** Every server this process started, killed on exit so no memcached outlives a crashed test run. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts memcached on a free (or the given) port and resolves once it answers "version". */
export async function startMemcachedServer(
  options: MemcachedServerOptions = {},
): Promise<MemcachedServerHandle> {
  const args = [
    '-u',
    'root', // the tests run as root, and memcached refuses root without -u
    '-l',
    '127.0.0.1',
    '-U',
    '0',
    '-m',
    String(options.memoryMb ?? 16),
    '-I',
    options.maxItemSize ?? '1m',
    '-t',
    '1',
  ];
  let child: ChildProcess | undefined;
  let port = options.port ?? 0;
  // A port found free can be taken before memcached binds it: pick another one and try again.
  for (let attempt = 1; !child; attempt += 1) {
    if (options.port === undefined) port = await freePort();
    try {
      child = await launch(port, args);
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= START_ATTEMPTS) throw error;
      if (options.port !== undefined) await sleep(100);
    }
  }

  let current: ChildProcess | undefined = child;
  const handle: MemcachedServerHandle = {
    servers: `127.0.0.1:${port}`,
    port,
    async kill() {
      if (current) await killProcess(current);
      current = undefined;
    },
    async freeze() {
      if (!current) return;
      current.kill('SIGSTOP');
      // The signal is delivered asynchronously: a request sent right away could still be answered.
      while (!(await isStopped(current.pid!))) await sleep(5);
    },
    resume() {
      current?.kill('SIGCONT');
    },
    async restart() {
      if (current) throw new Error('restart() needs the server to be killed first.');
      for (let attempt = 1; !current; attempt += 1) {
        try {
          current = await launch(port, args);
        } catch (error) {
          if (!(error instanceof PortInUseError) || attempt >= START_ATTEMPTS) throw error;
          await sleep(100);
        }
      }
    },
    async stop() {
      current?.kill('SIGCONT'); // a frozen process ignores nothing but SIGKILL; resume it anyway
      await handle.kill();
    },
  };
  return handle;
}

/** A private memcached for this file: started in beforeAll, stopped in afterAll. */
export function usePrivateMemcached(options: MemcachedServerOptions = {}): {
  readonly server: MemcachedServerHandle;
} {
  let server: MemcachedServerHandle | undefined;
  beforeAll(async () => {
    server = await startMemcachedServer(options);
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get server() {
      if (!server) throw new Error('the private memcached is only available inside tests');
      return server;
    },
  };
}

class PortInUseError extends Error {}

async function launch(port: number, args: string[]): Promise<ChildProcess> {
  const child = spawn(BINARY, ['-p', String(port), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);

  const exited = new Promise<Error>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) =>
      resolve(error.code === 'ENOENT' ? new Error(MISSING_BINARY) : error),
    );
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve(
        /Address already in use/i.test(output)
          ? new PortInUseError(`port ${port} is in use`)
          : new Error(`memcached exited (${signal ?? code}) before answering:\n${output}`),
      );
    });
  });
  running.add(child);

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const outcome = await Promise.race([exited, version(port)]);
    if (outcome instanceof Error) throw outcome;
    if (outcome) return child;
    if (Date.now() > deadline) {
      await killProcess(child);
      throw new Error(
        `memcached on port ${port} did not answer within ${READY_TIMEOUT_MS} ms:\n${output}`,
      );
    }
    await sleep(20);
  }
}

/** True when something on the port answers the ASCII "version" command like memcached. */
function version(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('version\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('VERSION '));
    });
  });
}

async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
  running.delete(child);
}

/** Whether the process is stopped (state T in /proc/<pid>/stat). */
async function isStopped(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return / T /.test(stat.slice(stat.lastIndexOf(')')));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
