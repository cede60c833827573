import { MAX_BATCH_KEYS, sendReads, type Waiter } from './read-batch.js';

/** Hash slots of a Redis Cluster: every key lives in one of them. */
export const HASH_SLOTS = 16_384;

/** CRC16-CCITT (XModem: polynomial 0x1021, initial value 0), a table of its 256 byte steps. */
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte += 1) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[byte] = crc & 0xffff;
  }
  return table;
})();

/**
 * The hash slot of `key`, as Redis Cluster computes it: CRC16 of the key's UTF-8 bytes modulo
 * 16384, or of its hash tag only, the text between the first '{' and the first '}' after it when
 * that text is not empty (`{user1}:a` and `{user1}:b` share a slot). CLUSTER KEYSLOT agrees.
 */
export function hashSlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    // '{' and '}' are single UTF-8 bytes, never part of another character's bytes.
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (let i = 0; i < key.length; i += 1) {
    const code = key.charCodeAt(i);
    if (code >= 0x80) return crc16(Buffer.from(key, 'utf8')) % HASH_SLOTS;
    crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ code) & 0xff]!;
  }
  return crc % HASH_SLOTS;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc;
}

/** The positions of `keys` grouped by hash slot, in order of first appearance. */
export function bySlot<T>(items: readonly T[], keyOf: (item: T) => string): T[][] {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const slot = hashSlot(keyOf(item));
    const group = groups.get(slot);
    if (group) group.push(item);
    else groups.set(slot, [item]);
  }
  return [...groups.values()];
}

interface SlotReads<V> {
  keys: string[];
  waiters: Waiter<V>[];
}

/**
 * ReadBatch for a Redis Cluster: coalesces the single-key reads of one synchronous stretch of code
 * (sent on process.nextTick, like ReadBatch) into one read per hash slot, since a multi-key command
 * must keep to one slot. Each slot's read settles its own callers only: a slot whose node is down,
 * or slow, fails or delays the reads of that slot, never the others.
 *
 * A write must call flush() before it is sent, so that it never overtakes a read made before it.
 */
export class SlotReadBatch<V> {
  private slots = new Map<number, SlotReads<V>>();
  private queued = 0;
  private scheduled = false;

  /** `readSlot` reads keys that all share one slot, and answers their values in order. */
  constructor(private readonly readSlot: (keys: string[]) => Promise<V[]>) {}

  read(key: string): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      const slot = hashSlot(key);
      let reads = this.slots.get(slot);
      if (!reads) this.slots.set(slot, (reads = { keys: [], waiters: [] }));
      reads.keys.push(key);
      reads.waiters.push({ resolve, reject });
      this.queued += 1;
      if (this.queued >= MAX_BATCH_KEYS) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        process.nextTick(this.flush);
      }
    });
  }

  /** Sends the reads queued so far, now: one per slot. */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.queued === 0) return;
    const { slots } = this;
    this.slots = new Map();
    this.queued = 0;
    for (const { keys, waiters } of slots.values()) sendReads(keys, waiters, this.readSlot);
  };
}
