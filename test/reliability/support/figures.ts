import { afterAll, expect, onTestFinished } from 'vitest';
import type { TestApp } from '../../http/support/app.js';
import {
  type AfterClose,
  type Connections,
  expectRecovered,
  type FaultRun,
  type Figures,
  formatConnections,
  formatMs,
  HOT_PATH,
  report,
} from '../../http/support/faults.js';

/** How long after app.close() the servers may take to see the app's connections go. */
export const CONNECTIONS_GONE_WITHIN_MS = 2_000;

/** Counts the client connections of each server a scenario's app uses, counting ones left out. */
export type CountConnections = () => Promise<Connections>;

/** A scenario watched from before its app starts until after it is closed. */
export interface Watch {
  /**
   * Closes the app (useApps closing it again later is harmless: TestApp.close() runs once),
   * waits until the servers are back to the connections counted before the app started (at
   * most CONNECTIONS_GONE_WITHIN_MS) and stops counting unhandled rejections.
   */
  close(app: TestApp): Promise<AfterClose>;
}

/**
 * Call inside a test before its app starts: counts the connections (the baseline), and the
 * unhandled rejections of the process from now until close() (or the end of the test). Vitest has
 * a listener of its own; this one only counts.
 */
export async function watch(count: CountConnections): Promise<Watch> {
  const rejections: unknown[] = [];
  const listener = (reason: unknown) => rejections.push(reason);
  process.on('unhandledRejection', listener);
  const stop = (): void => void process.off('unhandledRejection', listener);
  onTestFinished(stop);
  let before: Connections;
  try {
    before = await count();
  } catch (error) {
    stop();
    throw error;
  }
  return {
    async close(app) {
      try {
        // The app's own connections, seen by the same count: one that sees none proves nothing.
        const whileOpen = await count();
        await app.close();
        // A promise rejected during close is reported unhandled once its turn's microtasks ran.
        await new Promise((resolve) => setImmediate(resolve));
        const after = await backTo(before, count);
        return {
          unhandledRejections: rejections.length,
          rejections: rejections.map((reason) =>
            reason instanceof Error ? (reason.stack ?? String(reason)) : String(reason),
          ),
          connections: { before, whileOpen, after },
        };
      } finally {
        stop();
      }
    },
  };
}

/** Counts until the connections are `before` again, or the deadline passed: the last count. */
async function backTo(before: Connections, count: CountConnections): Promise<Connections> {
  const deadline = performance.now() + CONNECTIONS_GONE_WITHIN_MS;
  for (;;) {
    const now = await count();
    if (JSON.stringify(now) === JSON.stringify(before) || performance.now() > deadline) return now;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** What a scenario must show once its app is closed: no unhandled rejection, no connection left. */
export function expectClean({ rejections, unhandledRejections, connections }: AfterClose): void {
  expect(rejections ?? [], 'unhandled rejections until the app was closed').toEqual([]);
  expect(unhandledRejections, 'unhandled rejections until the app was closed').toBe(0);
  expect(connections.after, 'client connections after app.close(), by server').toEqual(
    connections.before,
  );
  if (connections.whileOpen) {
    expect(
      total(connections.whileOpen),
      'client connections while the app was open (a count that sees none of them proves nothing)',
    ).toBeGreaterThan(total(connections.before));
  }
}

const total = (connections: Connections) =>
  Object.values(connections).reduce((sum, count) => sum + count, 0);

/** The figures of a file's scenarios, printed as one table once they all ran (afterAll). */
export interface FiguresTable {
  add(figures: Figures): void;
}

/** Call at the top of a reliability file. */
export function figuresTable(title: string): FiguresTable {
  const rows: Figures[] = [];
  afterAll(() => {
    if (rows.length > 0) console.log(renderTable(title, rows));
  });
  return { add: (figures) => void rows.push(figures) };
}

const COLUMNS: { head: string; cell: (figures: Figures) => string }[] = [
  { head: 'sent', cell: (f) => String(f.sent) },
  { head: 'failed', cell: (f) => String(f.failed) },
  { head: 'p99 fault', cell: (f) => `${f.duringFault.p99Ms} ms` },
  { head: 'max fault', cell: (f) => `${f.duringFault.maxMs} ms` },
  { head: 'HITs after', cell: (f) => formatMs(f.hitsAfterMs) },
  { head: 'rejections', cell: (f) => String(f.afterClose?.unhandledRejections ?? '-') },
  {
    head: 'connections before → open → closed',
    cell: (f) => (f.afterClose ? formatConnections(f.afterClose.connections) : '-'),
  },
];

function renderTable(title: string, rows: Figures[]): string {
  const widths = COLUMNS.map((column) =>
    Math.max(column.head.length, ...rows.map((row) => column.cell(row).length)),
  );
  const line = (cells: string[], scenario: string) =>
    `${cells.map((cell, i) => cell.padStart(widths[i]!)).join('  ')}  ${scenario}`;
  return [
    title,
    line(
      COLUMNS.map((column) => column.head),
      'scenario',
    ),
    ...rows.map((row) =>
      line(
        COLUMNS.map((column) => column.cell(row)),
        row.scenario,
      ),
    ),
  ].join('\n');
}

/**
 * The end of a scenario run with underLoad(): expectRecovered while the app still runs, then the
 * app closed and counted, the line of figures printed and added to the table (also when recovery
 * failed), and the figures after close asserted.
 */
export async function closeAndReport(
  table: FiguresTable,
  what: string,
  app: TestApp,
  run: FaultRun,
  watching: Watch,
): Promise<void> {
  const recovery = await expectRecovered(app, run).then(
    () => undefined,
    (error: unknown) => ({ error }),
  );
  // A backend may connect lazily: memcached's client, whose connection a timed-out request closed,
  // opens the next one with the next request. One more request, so that it is open when counted.
  if (!recovery) await app.send(HOT_PATH);
  run.afterClose = await watching.close(app);
  table.add(report(what, run));
  if (recovery) throw recovery.error;
  expectClean(run.afterClose);
}
