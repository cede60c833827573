import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll } from 'vitest';
import { askLine, type ServerSpec, startServerProcess } from './server-process.js';

export { freePort } from './server-process.js';

/** A private redis-server started by a test. */
export interface RedisServerHandle {
  readonly url: string;
  readonly port: number;
  /**
   * SIGKILL (the default): the server dies without closing its sockets politely; SIGTERM: it shuts
   * down as on `redis-cli shutdown`, closing its connections. Resolves once it has exited.
   */
  kill(signal?: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** CLIENT KILL TYPE normal: the server closes every client connection, and keeps running. */
  killClients(): Promise<void>;
  /** SIGSTOP: the server stops answering but its sockets stay open (no FIN); resolves once it has stopped. */
  freeze(): Promise<void>;
  /** SIGCONT after freeze(). */
  resume(): void;
  /** Starts a fresh server (empty: nothing is persisted) on the same port after kill(). */
  restart(): Promise<void>;
  /** Kills the server; idempotent, for afterAll. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** Port to listen on; a free one when left out. */
  port?: number;
  /** Extra redis-server arguments, e.g. ['--requirepass', 'secret']. */
  args?: string[];
}

const MISSING_BINARY =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL to a Redis you can use for tests.';
/** redis-server as the tests run it: nothing persisted, on 127.0.0.1 only. */
function redisSpec(extraArgs: string[]): ServerSpec {
  return {
    binary: 'redis-server',
    missingBinary: MISSING_BINARY,
    args: (port) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      tmpdir(),
      ...extraArgs,
    ],
    // Ready only once this child says it listens (another process may answer on a port we lost)
    // and the port answers PING (+PONG, or -NOAUTH with requirepass).
    ready: async (port, output) => {
      if (!output.includes('Ready to accept connections')) return false;
      const reply = await askLine(port, 'PING');
      return reply === '+PONG' || reply?.startsWith('-NOAUTH') === true;
    },
    readyCommand: 'PING',
  };
}

/** Starts redis-server from PATH on a free (or the given) port and resolves once it answers PING. */
export async function startRedisServer(
  options: RedisServerOptions = {},
): Promise<RedisServerHandle> {
  const server = await startServerProcess(redisSpec(options.args ?? []), options.port);
  return {
    ...server,
    url: `redis://127.0.0.1:${server.port}`,
    async killClients() {
      await command(server.port, 'CLIENT KILL TYPE normal SKIPME yes');
    },
  };
}

/**
 * A Redis for suites that only need one (they must use their own key prefix): REDIS_URL when it
 * is set, else a private server for this file. Registers beforeAll/afterAll; read `url` in tests.
 */
export function useRedis(): { readonly url: string } {
  let server: RedisServerHandle | undefined;
  let url: string | undefined;
  beforeAll(async () => {
    if (process.env.REDIS_URL) url = process.env.REDIS_URL;
    else {
      server = await startRedisServer();
      url = server.url;
    }
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get url() {
      if (!url) throw new Error('useRedis().url is only available inside tests (after beforeAll).');
      return url;
    },
  };
}

/**
 * Starts a private redis-server for this file (never the shared one on 6379) in beforeAll and
 * stops it in afterAll.
 */
export function usePrivateRedis(): { readonly server: RedisServerHandle } {
  let server: RedisServerHandle | undefined;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get server() {
      if (!server) throw new Error('the private redis-server is only available inside tests');
      return server;
    },
  };
}

/** REDIS_URL when set, else a private server; call stop() when done. */
export async function redisUrlForTests(): Promise<{ url: string; stop: () => Promise<void> }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: async () => {} };
  const server = await startRedisServer();
  return { url: server.url, stop: () => server.stop() };
}

/** Sends one inline command and resolves once its reply line has arrived. */
function command(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    socket.setTimeout(2_000, () => {
      socket.destroy();
      reject(new Error(`redis-server on port ${port} did not answer "${line}" within 2 s`));
    });
    socket.once('error', reject);
    socket.once('connect', () => socket.write(`${line}\r\n`));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (!reply.includes('\r\n')) return;
      socket.destroy();
      if (reply.startsWith('-'))
        reject(new Error(`redis-server refused "${line}": ${reply.trim()}`));
      else resolve(reply.trim());
    });
  });
}

/** The name of the connections clientCount() counts on, so that no count includes another. */
const COUNTING_CLIENT = 'nest-cache-client-count';

/**
 * The client connections of the redis-server (or Sentinel) on `port` now, from CLIENT LIST: every
 * connection but the links of replication (a replica's, or a replica's to its master), those a
 * Sentinel keeps to the servers it watches (named sentinel-<id>-cmd and -pubsub: they come and go
 * on a failover), those another Redis Cluster node opened to move keys here (MIGRATE keeps them
 * for 10 s; their last command is RESTORE-ASKING) and those that count (this one, and any earlier
 * one the server has not let go of yet: each names itself first).
 */
export function clientCount(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    socket.setTimeout(2_000, () => {
      socket.destroy();
      reject(new Error(`redis-server on port ${port} did not answer CLIENT LIST within 2 s`));
    });
    socket.once('error', reject);
    socket.once('connect', () =>
      socket.write(`CLIENT SETNAME ${COUNTING_CLIENT}\r\nCLIENT LIST\r\n`),
    );
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      // +OK, then the list as one bulk string: $<length>, the lines, CRLF.
      const list = /^\+OK\r\n\$(\d+)\r\n/.exec(reply);
      if (!list) {
        if (reply.startsWith('-') && reply.includes('\r\n')) {
          socket.destroy();
          reject(new Error(`redis-server on port ${port} refused to count: ${reply.trim()}`));
        }
        return;
      }
      const body = reply.slice(list[0].length);
      if (Buffer.byteLength(body) < Number(list[1])) return;
      socket.destroy();
      resolve(
        body
          .split('\n')
          .filter((line) => line.startsWith('id='))
          .filter((line) => !line.includes(` name=${COUNTING_CLIENT} `))
          .filter((line) => !/ name=sentinel-\S*-(cmd|pubsub) /.test(line))
          .filter((line) => !/ cmd=restore(-asking)? /.test(line))
          .filter((line) => !/ flags=\S*[SM]/.test(line)).length,
      );
    });
  });
}
