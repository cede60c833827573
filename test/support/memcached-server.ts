import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { accepts, askLine, startServerProcess } from './server-process.js';

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
  /** SASL (memcached -S) with this one user, in a password database of its own. */
  sasl?: { username: string; password: string };
}

const BINARY = 'memcached';
const MISSING_BINARY =
  'memcached was not found on PATH (Debian installs it as /usr/bin/memcached). Install it: apt-get install memcached';

/** Starts memcached on a free (or the given) port and resolves once it answers "version". */
export async function startMemcachedServer(
  options: MemcachedServerOptions = {},
): Promise<MemcachedServerHandle> {
  const sasl = options.sasl && saslConfig(options.sasl);
  const server = await startServerProcess(
    {
      ...(sasl && { env: { SASL_CONF_PATH: sasl } }),
      binary: BINARY,
      missingBinary: MISSING_BINARY,
      args: (port) => [
        '-p',
        String(port),
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
        ...(sasl ? ['-S'] : []),
      ],
      // With SASL on, memcached speaks only the binary protocol, after authentication: that it
      // accepts connections is all it says.
      ready: async (port) =>
        sasl ? accepts(port) : (await askLine(port, 'version'))?.startsWith('VERSION ') === true,
      readyCommand: '"version"',
    },
    options.port,
  );
  return {
    ...server,
    servers: `127.0.0.1:${server.port}`,
    kill: () => server.kill(),
    async stop() {
      await server.stop();
      if (sasl) rmSync(sasl, { recursive: true, force: true });
    },
  };
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

/**
 * A SASL configuration for memcached (its directory, for SASL_CONF_PATH): the PLAIN mechanism and
 * a password database holding the one user, made with saslpasswd2 (Debian: sasl2-bin).
 */
function saslConfig({ username, password }: { username: string; password: string }): string {
  const dir = mkdtempSync(join(tmpdir(), 'nest-cache-memcached-sasl-'));
  const database = join(dir, 'sasldb2');
  writeFileSync(join(dir, 'memcached.conf'), `mech_list: plain\nsasldb_path: ${database}\n`);
  try {
    execFileSync('saslpasswd2', ['-p', '-a', 'memcached', '-c', '-f', database, username], {
      input: password,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
  } catch (error) {
    throw new Error(
      (error as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'saslpasswd2 was not found on PATH: it makes the password database of a SASL memcached. Install it: apt-get install sasl2-bin'
        : `saslpasswd2 failed: ${String(error)}`,
    );
  }
  return dir;
}

/**
 * The client connections of the memcached on `port` now: `stats` curr_connections, less the
 * connection that asks. That one is ended by `quit` and this
 * resolves once memcached has closed it, so counts taken one after the other never see each other.
 */
export function connectionCount(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    socket.setTimeout(2_000, () => {
      socket.destroy();
      reject(new Error(`memcached on port ${port} did not answer "stats" within 2 s`));
    });
    socket.once('error', reject);
    socket.once('connect', () => socket.write('stats\r\nquit\r\n'));
    socket.on('data', (chunk) => (reply += chunk.toString()));
    socket.once('close', () => {
      const connections = /^STAT curr_connections (\d+)\r$/m.exec(reply)?.[1];
      if (connections === undefined)
        reject(new Error(`memcached on port ${port} answered "stats" with: ${reply}`));
      else resolve(Number(connections) - 1);
    });
  });
}
