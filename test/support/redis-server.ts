import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll } from 'vitest';

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
  /** SIGSTOP: the server stops answering but its sockets stay open (no FIN). */
  freeze(): void;
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
const START_ATTEMPTS = 5;
const READY_TIMEOUT_MS = 10_000;

/** Every server this process started, killed on exit so no redis-server outlives a crashed test run. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A port nothing listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts redis-server from PATH on a free (or the given) port and resolves once it answers PING. */
export async function startRedisServer(
  options: RedisServerOptions = {},
): Promise<RedisServerHandle> {
  const extraArgs = options.args ?? [];
  let child: ChildProcess | undefined;
  let port = options.port ?? 0;

  // A port found free can be taken before redis-server binds it: pick another one and try again.
  for (let attempt = 1; !child; attempt += 1) {
    if (options.port === undefined) port = await freePort();
    try {
      child = await launch(port, extraArgs);
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= START_ATTEMPTS) throw error;
      if (options.port !== undefined) await sleep(100);
    }
  }

  let current: ChildProcess | undefined = child;
  const handle: RedisServerHandle = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async kill(signal = 'SIGKILL') {
      if (current) await killProcess(current, signal);
      current = undefined;
    },
    async killClients() {
      await command(port, 'CLIENT KILL TYPE normal SKIPME yes');
    },
    freeze() {
      current?.kill('SIGSTOP');
    },
    resume() {
      current?.kill('SIGCONT');
    },
    async restart() {
      if (current) throw new Error('restart() needs the server to be killed first.');
      for (let attempt = 1; !current; attempt += 1) {
        try {
          current = await launch(port, extraArgs);
        } catch (error) {
          if (!(error instanceof PortInUseError) || attempt >= START_ATTEMPTS) throw error;
          await sleep(100);
        }
      }
    },
    async stop() {
      await handle.kill();
    },
  };
  return handle;
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

class PortInUseError extends Error {}

async function launch(port: number, extraArgs: string[]): Promise<ChildProcess> {
  const args = [
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
  ];
  const child = spawn('redis-server', [...args, ...extraArgs], {
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
          : new Error(`redis-server exited (${signal ?? code}) before answering PING:\n${output}`),
      );
    });
  });
  running.add(child);

  // Ready only once this child says it listens (another process may answer on a port we lost)
  // and the port answers PING.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const listening = output.includes('Ready to accept connections');
    const outcome = await Promise.race([
      exited,
      listening ? ping(port) : sleep(20).then(() => false),
    ]);
    if (outcome instanceof Error) throw outcome;
    if (outcome) return child;
    if (Date.now() > deadline) {
      await killProcess(child);
      throw new Error(
        `redis-server on port ${port} did not answer PING within ${READY_TIMEOUT_MS} ms:\n${output}`,
      );
    }
    await sleep(20);
  }
}

/** True when something on the port answers PING like Redis (+PONG, or -NOAUTH with requirepass). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
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

async function killProcess(
  child: ChildProcess,
  signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL',
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
  running.delete(child);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
