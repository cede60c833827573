import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';

/** A server binary the tests run privately: redis-server, memcached. */
export interface ServerSpec {
  /** The binary on PATH. */
  binary: string;
  /** What to say when it is not installed (how to install it). */
  missingBinary: string;
  /** Its arguments for a port. */
  args(port: number): string[];
  /**
   * Whether the process started on `port` answers now; `output` is what it printed so far (a
   * server may only count once it says it listens: another process may answer on a port lost).
   */
  ready(port: number, output: string): Promise<boolean>;
  /** What it answers, for messages: 'PING', '"version"'. */
  readyCommand: string;
  /** Variables added to its environment. */
  env?: Record<string, string>;
}

/** A private server process, on one port for its whole life (restart() keeps it). */
export interface ServerProcess {
  readonly port: number;
  /** Resolves once the process has exited (SIGKILL by default). */
  kill(signal?: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** SIGSTOP, resolved once the process is stopped (the signal is delivered asynchronously). */
  freeze(): Promise<void>;
  /** SIGCONT after freeze(). */
  resume(): void;
  /** Starts a fresh process on the same port after kill(). */
  restart(): Promise<void>;
  /** Kills the process (resumed first if frozen); idempotent, for afterAll. */
  stop(): Promise<void>;
}

const START_ATTEMPTS = 5;
const READY_TIMEOUT_MS = 10_000;

class PortInUseError extends Error {}

/** Every server this process started, killed on exit so none outlives a crashed test run. */
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

/** Starts the server on a free (or the given) port and resolves once it answers. */
export async function startServerProcess(spec: ServerSpec, given?: number): Promise<ServerProcess> {
  let port = given ?? 0;
  let current: ChildProcess | undefined;
  // A port found free can be taken before the server binds it: pick another one and try again.
  for (let attempt = 1; !current; attempt += 1) {
    if (given === undefined) port = await freePort();
    try {
      current = await launch(spec, port);
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= START_ATTEMPTS) throw error;
      if (given !== undefined) await sleep(100);
    }
  }
  const handle: ServerProcess = {
    port,
    async kill(signal = 'SIGKILL') {
      if (current) await killProcess(current, signal);
      current = undefined;
    },
    async freeze() {
      if (!current) return;
      current.kill('SIGSTOP');
      // Until it is stopped, a request sent right away could still be answered.
      while (!(await isStopped(current.pid!))) await sleep(5);
    },
    resume() {
      current?.kill('SIGCONT');
    },
    async restart() {
      if (current) throw new Error('restart() needs the server to be killed first.');
      for (let attempt = 1; !current; attempt += 1) {
        try {
          current = await launch(spec, port);
        } catch (error) {
          if (!(error instanceof PortInUseError) || attempt >= START_ATTEMPTS) throw error;
          await sleep(100);
        }
      }
    },
    async stop() {
      current?.kill('SIGCONT'); // a frozen process heeds nothing but SIGKILL; resume it anyway
      await handle.kill();
    },
  };
  return handle;
}

async function launch(spec: ServerSpec, port: number): Promise<ChildProcess> {
  const child = spawn(spec.binary, spec.args(port), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...spec.env },
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);

  const exited = new Promise<Error>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) =>
      resolve(error.code === 'ENOENT' ? new Error(spec.missingBinary) : error),
    );
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve(
        /Address already in use/i.test(output)
          ? new PortInUseError(`port ${port} is in use`)
          : new Error(
              `${spec.binary} exited (${signal ?? code}) before answering ${spec.readyCommand}:\n${output}`,
            ),
      );
    });
  });
  running.add(child);

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const outcome = await Promise.race([exited, spec.ready(port, output)]);
    if (outcome instanceof Error) throw outcome;
    if (outcome) return child;
    if (Date.now() > deadline) {
      await killProcess(child);
      throw new Error(
        `${spec.binary} on port ${port} did not answer ${spec.readyCommand} within ${READY_TIMEOUT_MS} ms:\n${output}`,
      );
    }
    await sleep(20);
  }
}

/** Whether a connection to the port is accepted. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => done(true));
  });
}

/** Sends one line on a new connection; resolves the first reply line, or undefined on no answer. */
export function askLine(port: number, line: string, timeoutMs = 500): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (answer: string | undefined) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('connect', () => socket.write(`${line}\r\n`));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      const end = reply.indexOf('\r\n');
      if (end >= 0) done(reply.slice(0, end));
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

async function isStopped(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return / T /.test(stat.slice(stat.lastIndexOf(')')));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
