// A process of an app sharing a disk store (run by test/support/disk-children.ts):
//   node disk-child.js <path> increment <n>     n increments of 'counter' and n writes of 'shared',
//                                               then 'failed-open <k>': how many resolved undefined
//   node disk-child.js <path> write-forever <b>  batches of 100 entries from batch b, 'committed <b>' after each
//   node disk-child.js <path> get <key>...      prints the values as JSON, one line
// It prints 'ready' once the store is open, and 'done' before it exits.
import { DiskCache } from '../../lib/stores/disk.cache.js';

const [path, command, ...args] = process.argv.slice(2);
const cache = await DiskCache.create({ prefix: 'processes', ttl: null, disk: { path: path! } });
console.log('ready');

if (command === 'increment') {
  const n = Number(args[0]);
  const pad = 'x'.repeat(2_000);
  let failedOpen = 0;
  for (let i = 0; i < n; i += 1) {
    // Not awaited one by one: several writes share a transaction, as under load.
    const [counted] = await Promise.all([
      cache.increment('counter'),
      cache.set('shared', { pid: process.pid, i, pad, check: `${process.pid}:${i}` }),
    ]);
    if (counted === undefined) failedOpen += 1;
  }
  // Increments that resolved undefined (failed open: past operationTimeout on a starved machine,
  // or skipped by the open breaker); one given up on may still have landed.
  console.log(`failed-open ${failedOpen}`);
} else if (command === 'write-forever') {
  const value = 'v'.repeat(500);
  for (let batch = Number(args[0] ?? 0); ; batch += 1) {
    const stored = await cache.setMany(
      Array.from({ length: 100 }, (_, i) => ({
        key: `k:${batch}:${i}`,
        value: { batch, i, value },
      })),
    );
    if (!stored) throw new Error(`batch ${batch} was not stored`);
    console.log(`committed ${batch}`);
  }
} else if (command === 'get') {
  console.log(JSON.stringify(await cache.getMany(args)));
}
await cache.close();
console.log('done');
