/**
 * The processes of a run: CPU pinning with taskset, and the servers under test, each in a process
 * of its own. Every process started here is killed when the run ends, however it ends.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type ServerSetup, setupName } from './fixtures.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./http-server.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 3_000;

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Kills `child` when this process exits, if it is still running then. */
export function killOnExit(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

let taskset: boolean | undefined;

/** Whether taskset (util-linux) can pin processes to cores here. */
export function canPin(): boolean {
  if (taskset === undefined) {
    try {
      execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
      taskset = true;
    } catch {
      taskset = false;
    }
  }
  return taskset;
}

/** `command args` run on one core (through taskset), or as they are where it cannot pin. */
export function onCore(core: number, command: string, args: string[]): [string, string[]] {
  return canPin() ? ['taskset', ['-c', String(core), command, ...args]] : [command, args];
}

/**
 * Pins this process, every thread of it, to `core`; the processes it starts afterwards inherit
 * it (the load generator, redis-server) unless started on another core.
 */
export function pinSelf(core: number): boolean {
  if (!canPin()) return false;
  execFileSync('taskset', ['-a', '-cp', String(core), String(process.pid)], { stdio: 'ignore' });
  return true;
}

/** A server under test, running in its own process. */
export interface Server {
  readonly setup: ServerSetup;
  readonly name: string;
  /** http://127.0.0.1:port */
  readonly url: string;
  /** The end of what it wrote to stderr, for error messages. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts http-server.js for `setup` on `core` and resolves once it listens. */
export async function startServer(
  setup: ServerSetup,
  core: number,
  redisUrl: string,
  nodeArgs: string[] = [],
): Promise<Server> {
  const name = setupName(setup);
  const [command, args] = onCore(core, process.execPath, [...nodeArgs, SERVER_SCRIPT]);
  const child = spawn(command, args, {
    env: { ...process.env, BENCH_SETUP: JSON.stringify(setup), REDIS_URL: redisUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  killOnExit(child);
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000));
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start within ${START_TIMEOUT_MS} ms:\n${output}`)),
      START_TIMEOUT_MS,
    );
    let stdout = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before listening:\n${output}`));
    });
  });

  return {
    setup,
    name,
    url,
    log: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
