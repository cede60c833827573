import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { transformFile } from '@swc/core';

/**
 * Child processes that open a disk store, on the TypeScript sources as they are now (not dist/,
 * which could be stale): lib/ and test/support/disk-child.ts are transpiled with SWC, as vitest
 * does, into a directory under node_modules/.cache (so `lmdb` and the other packages resolve from
 * this repository), and run with plain node.
 */
const root = new URL('../..', import.meta.url).pathname;

export interface Children {
  /** Starts `node disk-child.js <args>`; see test/support/disk-child.ts for the commands. */
  start(...args: string[]): Child;
  /**
   * The same, with `dir` read-only for it: as root (who may write anywhere), through a read-only
   * bind mount of its own (`unshare -m`), so it works wherever the repository lies.
   */
  startReadOnly(dir: string, ...args: string[]): Child;
  /** Removes the transpiled sources. */
  remove(): void;
}

export interface Child {
  process: ChildProcess;
  /** Settles with the first line of its output that `matches`; rejects when it exits first. */
  line(matches: (line: string) => boolean): Promise<string>;
  /** Every line it printed so far. */
  lines: string[];
  /** Settles with its exit code (or signal) once it has exited. */
  exited: Promise<number | NodeJS.Signals>;
  /** What it wrote to stderr, for failure messages. */
  stderr(): string;
}

export async function buildChildren(): Promise<Children> {
  const out = join(root, 'node_modules/.cache', `nest-cache-disk-children-${process.pid}`);
  rmSync(out, { recursive: true, force: true });
  const sources = [
    ...readdirSync(join(root, 'lib'), { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) => join(root, 'lib', file)),
    join(root, 'test/support/disk-child.ts'),
  ];
  await Promise.all(
    sources.map(async (source) => {
      const { code } = await transformFile(source, {
        jsc: {
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true },
          target: 'es2022',
        },
        module: { type: 'es6' },
        sourceMaps: false,
      });
      const target = join(out, relative(root, source)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, code);
    }),
  );
  // Inside node_modules, node takes .js for CommonJS unless a package.json says otherwise.
  writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module' }));
  const script = join(out, 'test/support/disk-child.js');
  const children: Child[] = [];
  return {
    start(...args) {
      const child = startChild(script, args);
      children.push(child);
      return child;
    },
    startReadOnly(dir, ...args) {
      const child = startChild(script, args, dir);
      children.push(child);
      return child;
    },
    remove() {
      for (const child of children)
        if (child.process.exitCode === null) child.process.kill('SIGKILL');
      rmSync(out, { recursive: true, force: true });
    },
  };
}

function startChild(script: string, args: string[], readOnly?: string): Child {
  const mountReadOnly =
    'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec node "$@"';
  const [command, argv] =
    readOnly === undefined
      ? ['node', [script, ...args]]
      : ['unshare', ['-m', 'sh', '-c', mountReadOnly, readOnly, script, ...args]];
  const process = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  process.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const waiting = new Set<{
    matches: (line: string) => boolean;
    resolve: (line: string) => void;
  }>();
  createInterface({ input: process.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const waiter of waiting) {
      if (waiter.matches(line)) {
        waiting.delete(waiter);
        waiter.resolve(line);
      }
    }
  });
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    process.once('exit', (code, signal) => resolve(code ?? signal!)),
  );
  return {
    process,
    lines,
    exited,
    stderr: () => stderr,
    line(matches) {
      const found = lines.find(matches);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        waiting.add({ matches, resolve });
        void exited.then((code) =>
          reject(
            new Error(`the child exited (${code}) before printing the line awaited: ${stderr}`),
          ),
        );
      });
    },
  };
}
