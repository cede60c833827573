// Which embedded engine the disk backend is built on: LMDB (lmdb) against SQLite (better-sqlite3),
// side by side in one run, each with the durability the disk backend needs (a process crash loses
// no committed write, a power loss may lose the last ones but never leaves a store that cannot
// open): LMDB in lmdb's default sync mode, SQLite in WAL mode with synchronous=NORMAL. Not part
// of `npm run bench`:
//   npm install --no-save better-sqlite3@12 && node bench/engine-choice/run.mjs
// Prints operations per second for get, set and getMany(10) of 1 KB values, in one process and
// with two processes writing the same keys.
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const KEYS = 10_000;
const VALUE = Buffer.alloc(1024, 7);
const key = (i) => `bench:key:${i}`;

async function lmdbStore(dir) {
  const { open } = await import('lmdb');
  const db = open({ path: join(dir, 'lmdb'), encoding: 'binary' });
  return {
    get: (k) => db.getBinary(k),
    set: (k, v) => db.put(k, v),
    getMany: (ks) => ks.map((k) => db.getBinary(k)),
    close: () => db.close(),
  };
}

async function sqliteStore(dir) {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(join(dir, 'sqlite.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 1000');
  db.exec('CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB, expires INTEGER)');
  const get = db.prepare('SELECT v FROM kv WHERE k = ?').pluck();
  const put = db.prepare('INSERT OR REPLACE INTO kv (k, v, expires) VALUES (?, ?, ?)');
  const many = db.prepare(`SELECT k, v FROM kv WHERE k IN (${Array(10).fill('?').join(',')})`);
  return {
    get: (k) => get.get(k),
    set: (k, v) => put.run(k, v, Date.now() + 60_000),
    getMany: (ks) => many.all(...ks),
    close: () => db.close(),
  };
}

const ENGINES = { lmdb: lmdbStore, sqlite: sqliteStore };

async function opsPerSecond(run, count) {
  const start = performance.now();
  for (let i = 0; i < count; i++) await run(i);
  return Math.round(count / ((performance.now() - start) / 1000));
}

async function single(engine, dir) {
  const store = await ENGINES[engine](dir);
  const set = await opsPerSecond((i) => store.set(key(i % KEYS), VALUE), KEYS);
  // Writes in flight together, as a server's concurrent requests make them.
  let start = performance.now();
  await Promise.all(Array.from({ length: KEYS }, (_, i) => store.set(key(i), VALUE)));
  const setConcurrent = Math.round(KEYS / ((performance.now() - start) / 1000));
  const get = await opsPerSecond((i) => store.get(key(i % KEYS)), KEYS * 10);
  const ids = Array.from({ length: 10 }, (_, j) => key(j * 7));
  const getMany = await opsPerSecond(() => store.getMany(ids), KEYS);
  await store.close();
  return { set, setConcurrent, get, getMany };
}

async function writer(engine, dir) {
  const store = await ENGINES[engine](dir);
  const sets = await opsPerSecond((i) => store.set(key(i % 1000), VALUE), KEYS);
  await store.close();
  process.send(sets);
}

async function twoWriters(engine, dir) {
  const self = fileURLToPath(import.meta.url);
  const children = [0, 1].map(() => fork(self, ['writer', engine, dir]));
  const rates = await Promise.all(children.map((c) => new Promise((r) => c.once('message', r))));
  return rates.reduce((a, b) => a + b, 0);
}

if (process.argv[2] === 'writer') {
  await writer(process.argv[3], process.argv[4]);
} else {
  for (const engine of Object.keys(ENGINES)) {
    const dir = mkdtempSync(join(tmpdir(), `engine-${engine}-`));
    try {
      const one = await single(engine, dir);
      const two = await twoWriters(engine, dir);
      console.log(JSON.stringify({ engine, ...one, twoProcessSets: two }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
