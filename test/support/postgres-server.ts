import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from './redis-server.js';

/** A private PostgreSQL started by a test: initdb in a temp dir, then postgres on a free port. */
export interface PostgresServerHandle {
  /** postgresql://postgres@127.0.0.1:port/postgres (trust authentication: no password). */
  readonly uri: string;
  readonly port: number;
  /** Stops the server and removes its directory; idempotent, for afterAll. */
  stop(): Promise<void>;
}

/** Where Debian and Ubuntu install each version's server binaries: /usr/lib/postgresql/<version>/bin. */
const VERSIONS_DIR = '/usr/lib/postgresql';
const MISSING_BINARY =
  'PostgreSQL server binaries (initdb, postgres) were not found in /usr/lib/postgresql/<version>/bin. Install them (Debian/Ubuntu: apt-get install postgresql) or set POSTGRES_BIN to the directory that holds them.';
const READY_TIMEOUT_MS = 15_000;
const run = promisify(execFile);

/** Every server this process started, killed on exit so none outlives a crashed test run. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The newest installed version's binaries. */
function newestBinDir(): string | undefined {
  const versions = existsSync(VERSIONS_DIR) ? readdirSync(VERSIONS_DIR) : [];
  return versions
    .filter((version) => /^\d+$/.test(version))
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join(VERSIONS_DIR, version, 'bin'))
    .find((dir) => existsSync(join(dir, 'initdb')));
}

function binDir(): string {
  const dir = process.env.POSTGRES_BIN ?? newestBinDir();
  if (!dir || !existsSync(join(dir, 'initdb')) || !existsSync(join(dir, 'postgres'))) {
    throw new Error(MISSING_BINARY);
  }
  return dir;
}

/**
 * As root, PostgreSQL refuses to run: then it runs as the `postgres` user (the uid and gid of the
 * spawned process, so that killing it kills the server itself), owning its directory.
 */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const { stdout: uid } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    throw new Error(`${MISSING_BINARY} Running as root, the tests also need the "postgres" user.`);
  }
}

/** Starts a fresh PostgreSQL (fsync off: a cache's test data) and resolves once it accepts connections. */
export async function startPostgresServer(): Promise<PostgresServerHandle> {
  const bin = binDir();
  const dir = await mkdtemp(join(tmpdir(), 'nest-cache-pg-'));
  const user = await serverUser();
  if (user) await chown(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const asUser = user ? { ...user, env: { ...process.env, HOME: dir } } : {};
  await run(
    join(bin, 'initdb'),
    ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync'],
    asUser,
  );

  const port = await freePort();
  const args = [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
  ];
  const child = spawn(join(bin, 'postgres'), args, {
    ...asUser,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<Error>((resolve) => {
    child.once('error', resolve);
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve(new Error(`postgres exited (${signal ?? code}) before it was ready:\n${output}`));
    });
  });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!output.includes('database system is ready to accept connections')) {
    const outcome = await Promise.race([exited, sleep(20)]);
    if (outcome instanceof Error) {
      await rm(dir, { recursive: true, force: true });
      throw outcome;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw new Error(
        `postgres on port ${port} was not ready within ${READY_TIMEOUT_MS} ms:\n${output}`,
      );
    }
  }

  let stopped = false;
  return {
    uri: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        // SIGQUIT: immediate shutdown (nothing to keep).
        child.kill('SIGQUIT');
        await Promise.race([gone, sleep(5_000).then(() => child.kill('SIGKILL'))]);
      }
      running.delete(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A private PostgreSQL for this file: started in beforeAll, stopped in afterAll. */
export function usePostgres(): { readonly uri: string } {
  let server: PostgresServerHandle | undefined;
  beforeAll(async () => {
    server = await startPostgresServer();
  }, READY_TIMEOUT_MS + 10_000);
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get uri() {
      if (!server)
        throw new Error('usePostgres().uri is only available inside tests (after beforeAll).');
      return server.uri;
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
