/**
 * Compares value serializers: throughput (encode + decode, and decode alone) and encoded size.
 * Results and the reasoning behind the choice: bench/README-serializer.md.
 *
 * Node 20 cannot run TypeScript directly, so compile this file on its own and run the output:
 *
 *   npx tsc --ignoreConfig bench/serializer.bench.ts --outDir node_modules/.cache/nest-cache-bench \
 *     --rootDir . --module nodenext --target es2023 --types node --skipLibCheck
 *   node node_modules/.cache/nest-cache-bench/bench/serializer.bench.js
 */
import { Buffer } from 'node:buffer';
import { isDeepStrictEqual } from 'node:util';
import * as v8 from 'node:v8';
import { defaultSerializer } from '../lib/serializer.js';
import { record } from './fixtures.js';

interface Candidate {
  name: string;
  encode(value: unknown): Buffer;
  decode(bytes: Buffer): unknown;
}

// --- Candidates -------------------------------------------------------------------------------

const nestCache: Candidate = {
  name: 'nest-cache binary v1',
  encode: (value) => defaultSerializer.serialize(value),
  decode: (bytes) => defaultSerializer.deserialize(bytes),
};

// msgpackr as configured for a cache: no records (their decoder compiles code from the bytes),
// moreTypes so Set and Uint8Array keep their types, copyBuffers so a decoded Buffer does not
// share memory with the stored entry. It still loses Map (comes back as an object) and -0, and it
// does no validation walk; the walk our serializer needs would only add to its time.
// msgpackr is not a dependency of nest-cache: its row appears when it is installed
// (`npm install --no-save msgpackr`). The specifier is a variable so type-checking does not need it.
interface Msgpackr {
  Packr: new (options: object) => { pack(value: unknown): Buffer };
  Unpackr: new (options: object) => { unpack(bytes: Buffer): unknown };
}
async function loadMsgpackr(): Promise<Candidate | undefined> {
  const specifier = 'msgpackr';
  let module: Msgpackr;
  try {
    module = (await import(specifier)) as Msgpackr;
  } catch (error) {
    console.log(`msgpackr could not be loaded, its rows are skipped: ${String(error)}`);
    return undefined;
  }
  const packr = new module.Packr({ useRecords: false, moreTypes: true });
  const unpackr = new module.Unpackr({ useRecords: false, moreTypes: true, copyBuffers: true });
  return {
    name: 'msgpackr (lossy)',
    encode: (value) => packr.pack(value),
    decode: (bytes) => unpackr.unpack(bytes),
  };
}

// Tagged JSON: a version byte and a kind byte, then plain JSON when the value is plain JSON, or
// else JSON of a tree where every array carries a leading tag (0 = array, others = a type).
// Written for speed only: it skips the error paths a real one would need.
const tagged: Candidate = {
  name: 'tagged JSON',
  encode(value) {
    if (isPlainJson(value)) return Buffer.from('\u0001J' + JSON.stringify(value));
    return Buffer.from('\u0001T' + JSON.stringify(toTagged(value)));
  },
  decode(bytes) {
    const parsed: unknown = JSON.parse(bytes.toString('utf8', 2));
    return bytes[1] === 0x4a ? parsed : fromTagged(parsed);
  },
};

function isPlainJson(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object': {
      if (value === null) return true;
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto === Array.prototype) return (value as unknown[]).every(isPlainJson);
      if (proto !== Object.prototype) return false;
      return Object.values(value).every(isPlainJson);
    }
    default:
      return false;
  }
}

function toTagged(value: unknown): unknown {
  if (value === undefined) return [7];
  if (typeof value === 'bigint') return [4, value.toString()];
  if (typeof value === 'number') return isPlainJson(value) ? value : [8, String(value)];
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return [0, ...value.map(toTagged)];
  if (value instanceof Date) return [1, value.getTime()];
  if (value instanceof Map) return [2, ...[...value].flat().map(toTagged)];
  if (value instanceof Set) return [3, ...[...value].map(toTagged)];
  if (Buffer.isBuffer(value)) return [5, value.toString('base64')];
  if (value instanceof Uint8Array) return [6, Buffer.from(value).toString('base64')];
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value))
    out[key] = toTagged((value as Record<string, unknown>)[key]);
  return out;
}

function fromTagged(node: unknown): unknown {
  if (typeof node !== 'object' || node === null) return node;
  if (!Array.isArray(node)) {
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) record[key] = fromTagged(record[key]);
    return record;
  }
  const items = node.slice(1);
  switch (node[0]) {
    case 0:
      return items.map(fromTagged);
    case 1:
      return new Date(items[0] as number);
    case 2: {
      const map = new Map();
      for (let i = 0; i < items.length; i += 2)
        map.set(fromTagged(items[i]), fromTagged(items[i + 1]));
      return map;
    }
    case 3:
      return new Set(items.map(fromTagged));
    case 4:
      return BigInt(items[0] as string);
    case 5:
      return Buffer.from(items[0] as string, 'base64');
    case 6:
      return new Uint8Array(Buffer.from(items[0] as string, 'base64'));
    case 7:
      return undefined;
    default:
      return Number(items[0]);
  }
}

const v8Reference: Candidate = {
  name: 'v8.serialize (reference only)',
  encode: (value) => v8.serialize(value),
  decode: (bytes) => v8.deserialize(bytes) as unknown,
};

const msgpackr = await loadMsgpackr();
const candidates = [nestCache, ...(msgpackr ? [msgpackr] : []), tagged, v8Reference];

// --- Values -----------------------------------------------------------------------------------

const values: Record<string, unknown> = {
  integer: 12_345,
  'short string': 'hello world',
  'small object': {
    id: 42,
    name: 'Ada Lovelace',
    tags: ['admin', 'beta'],
    createdAt: new Date('2025-11-21T13:46:00.000Z'),
  },
  '1 KB JSON object': {
    user: { id: 7, name: 'Grace Hopper', email: 'grace@example.com', roles: ['admin', 'ops'] },
    settings: { theme: 'dark', language: 'en-GB', notifications: { email: true, sms: false } },
    items: Array.from({ length: 4 }, (_, i) => record(i)),
  },
  '100 KB JSON array': Array.from({ length: 520 }, (_, i) => record(i)),
  'Map/Set/BigInt/Buffer': {
    byId: new Map(
      Array.from({ length: 10 }, (_, i) => [i, { seenAt: new Date(1_700_000_000_000 + i) }]),
    ),
    tags: new Set(['a', 'b', 'c']),
    total: 2n ** 70n,
    views: 12_345n,
    avatar: Buffer.alloc(256, 7),
    hash: new Uint8Array(32).fill(9),
  },
};

// --- Measurement ------------------------------------------------------------------------------

let sink: unknown;

/** Operations per second of fn, the best of a few half-second rounds after a warm-up. */
function opsPerSecond(fn: () => void): number {
  const roundNs = 400_000_000n;
  let best = 0;
  for (let round = 0; round < 4; round++) {
    let ops = 0;
    const start = process.hrtime.bigint();
    let elapsed = 0n;
    while (elapsed < roundNs) {
      for (let i = 0; i < 100; i++) fn();
      ops += 100;
      elapsed = process.hrtime.bigint() - start;
    }
    // The first round is the warm-up (the JIT is still compiling); it does not count.
    if (round > 0) best = Math.max(best, ops / (Number(elapsed) / 1e9));
  }
  return best;
}

function formatOps(ops: number): string {
  if (ops >= 1e6) return `${(ops / 1e6).toFixed(2)} M`;
  if (ops >= 1e3) return `${(ops / 1e3).toFixed(1)} k`;
  return ops.toFixed(0);
}

console.log(`node ${process.version}, ${process.arch}\n`);
console.log('| value | serializer | encode+decode ops/s | decode ops/s | bytes | exact |');
console.log('|---|---|---:|---:|---:|---|');
for (const [label, value] of Object.entries(values)) {
  for (const candidate of candidates) {
    let bytes: Buffer;
    let exact: boolean;
    try {
      bytes = candidate.encode(value);
      exact = isDeepStrictEqual(candidate.decode(bytes), value);
    } catch (error) {
      console.log(`| ${label} | ${candidate.name} | fails: ${String(error)} | | | |`);
      continue;
    }
    const both = opsPerSecond(() => {
      sink = candidate.decode(candidate.encode(value));
    });
    const decodeOnly = opsPerSecond(() => {
      sink = candidate.decode(bytes);
    });
    console.log(
      `| ${label} | ${candidate.name} | ${formatOps(both)} | ${formatOps(decodeOnly)} | ${bytes.length} | ${exact ? 'yes' : 'no'} |`,
    );
  }
}
void sink;
