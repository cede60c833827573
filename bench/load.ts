/**
 * The HTTP load generator: wrk (Debian: apt-get install wrk) when it is on PATH, autocannon (a
 * devDependency, in Node) otherwise. Both run pinned to the load core, against 127.0.0.1 only,
 * for a fixed time.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { onCore } from './processes.js';

const run = promisify(execFile);

export interface LoadOptions {
  /** Open connections, each sending its next request when the previous one is answered. */
  connections: number;
  seconds: number;
}

export interface LoadResult {
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx responses, socket errors and timeouts. */
  errors: number;
}

export interface LoadGenerator {
  /** e.g. `wrk 4.1.0`. */
  name: string;
  run(url: string, options: LoadOptions): Promise<LoadResult>;
}

/** Prints one JSON line at the end of a wrk run: what wrk counted, latencies in microseconds. */
const WRK_REPORT = `
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"errors":%d,"p50Us":%d,"p99Us":%d}\\n',
    summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99)))
end
`;

export const INSTALL_WRK_HINT =
  'wrk is not on PATH: using autocannon instead. For the preferred generator: apt-get install wrk';

/** wrk when installed, else autocannon. `forced` picks one (BENCH_LOAD=autocannon). */
export function loadGenerator(core: number, forced?: string): LoadGenerator {
  if (forced !== 'autocannon') {
    const version = wrkVersion();
    if (version) return wrk(version, core);
    if (forced === 'wrk')
      throw new Error(INSTALL_WRK_HINT.replace(': using autocannon instead', ''));
    process.stderr.write(`${INSTALL_WRK_HINT}\n`);
  }
  return autocannon(core);
}

function wrkVersion(): string | undefined {
  try {
    // `wrk -v` prints its version and usage, and exits non-zero.
    execFileSync('wrk', ['-v'], { stdio: 'pipe' });
  } catch (error) {
    const { stdout, code } = error as { stdout?: Buffer; code?: string };
    if (code === 'ENOENT') return undefined;
    const match = /wrk (?:debian\/)?([\d.]+)/.exec(stdout?.toString() ?? '');
    return match ? match[1] : 'unknown version';
  }
  return 'unknown version';
}

function wrk(version: string, core: number): LoadGenerator {
  const script = join(mkdtempSync(join(tmpdir(), 'nest-cache-bench-')), 'report.lua');
  writeFileSync(script, WRK_REPORT);
  return {
    name: `wrk ${version}`,
    async run(url, { connections, seconds }) {
      const [command, args] = onCore(core, 'wrk', [
        '-t1',
        `-c${connections}`,
        `-d${seconds}s`,
        '--timeout',
        '5s',
        '-s',
        script,
        url,
      ]);
      const { stdout } = await run(command, args, { timeout: (seconds + 30) * 1_000 });
      const line = stdout.split('\n').find((text) => text.startsWith('{"requests"'));
      if (!line) throw new Error(`wrk printed no report for ${url}:\n${stdout}`);
      const report = JSON.parse(line) as {
        requests: number;
        durationUs: number;
        errors: number;
        p50Us: number;
        p99Us: number;
      };
      return {
        requests: report.requests,
        requestsPerSecond: report.requests / (report.durationUs / 1e6),
        p50Ms: report.p50Us / 1_000,
        p99Ms: report.p99Us / 1_000,
        errors: report.errors,
      };
    },
  };
}

function autocannon(core: number): LoadGenerator {
  const require = createRequire(import.meta.url);
  const cli = require.resolve('autocannon/autocannon.js');
  const { version } = require('autocannon/package.json') as { version: string };
  return {
    name: `autocannon ${version} (wrk not installed)`,
    async run(url, { connections, seconds }) {
      const [command, args] = onCore(core, process.execPath, [
        cli,
        '--json',
        '--connections',
        String(connections),
        '--duration',
        String(seconds),
        '--timeout',
        '5',
        url,
      ]);
      const { stdout } = await run(command, args, {
        timeout: (seconds + 30) * 1_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const report = JSON.parse(stdout) as {
        requests: { total: number };
        duration: number;
        latency: { p50: number; p99: number };
        errors: number;
        timeouts: number;
        non2xx: number;
      };
      return {
        requests: report.requests.total,
        requestsPerSecond: report.requests.total / report.duration,
        p50Ms: report.latency.p50,
        p99Ms: report.latency.p99,
        errors: report.errors + report.timeouts + report.non2xx,
      };
    },
  };
}
