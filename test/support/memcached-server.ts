import { afterAll, beforeAll } from 'vitest';
import { askLine, startServerProcess } from './server-process.js';

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

/** Starts memcached on a free (or the given) port and resolves once it answers "version". */
export async function startMemcachedServer(
  options: MemcachedServerOptions = {},
): Promise<MemcachedServerHandle> {
  const server = await startServerProcess(
    {
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
      ],
      ready: async (port) => (await askLine(port, 'version'))?.startsWith('VERSION ') === true,
      readyCommand: '"version"',
    },
    options.port,
  );
  return { ...server, servers: `127.0.0.1:${server.port}`, kill: () => server.kill() };
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
