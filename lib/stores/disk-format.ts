import { createHash } from 'node:crypto';

/**
 * How the disk backend lays out its records in LMDB, decided here once.
 *
 * Keys are the UTF-8 bytes of the full key (BaseCache never hands a driver a lone surrogate, so
 * UTF-8 keeps distinct keys apart, NUL included: LMDB's binary keys have no delimiter). LMDB keys
 * are limited to 1978 bytes, so a key over KEY_LIMIT bytes is stored as its first LONG_HEAD bytes
 * and a SHA-256 of all of them (KEY_LIMIT + 1 bytes: never equal to a plain key); its record then
 * keeps the full key, for scans.
 *
 * A record (little-endian):
 *   RECORD_FORMAT, flags (LONG_KEY: the full key follows; TAG_RECORD: a tag record's),
 *   expiresAt (float64: the cache's clock; Infinity for never): get and ttl judge by it,
 *   reclaimAt (float64: Date.now() based; Infinity for never): the sweep and eviction order by it,
 *   [full key: uint32 byte length, then its UTF-8 bytes],
 *   the bytes BaseCache stored.
 *
 * The expiry index holds one key per record, no value: reclaimAt as a big-endian float64 (which
 * sorts like the number, for the non-negative ones it holds), a kind byte (entries before tag
 * records of the same time: see DiskDriver), then the record's key.
 */

/** Bump when the layout above changes; the store's format marker (see disk-store.ts) carries it. */
export const DISK_FORMAT = 1;

const RECORD_FORMAT = 1;
const LONG_KEY = 1;
const TAG_RECORD = 2;
/** A record's bytes before the full key (when kept) and the value. */
export const HEADER_BYTES = 18;
const KEY_LIMIT = 1_024;
const HASH_BYTES = 32;
const LONG_HEAD = KEY_LIMIT + 1 - HASH_BYTES;
/** Past every key that starts with a given head (see rangeOf): no UTF-8 byte is 0xff. */
const RANGE_END = Buffer.alloc(HASH_BYTES + 1, 0xff);

/** What sorts first in the expiry index among records of one reclaimAt. */
export const ENTRY_KIND = 0;
export const TAG_KIND = 1;
/** An index key's bytes before the record's key. */
export const INDEX_HEAD = 9;

/** A record read back. */
export interface DiskRecord {
  /** ENTRY_KIND or TAG_KIND. */
  kind: number;
  expiresAt: number;
  reclaimAt: number;
  /** The full key, when the stored key is its shortened form. */
  fullKey: string | undefined;
  /** What BaseCache stored: a view of the record's own copy. */
  bytes: Buffer;
}

/** The stored key of `full`. */
export function storedKeyOf(full: string): Buffer {
  const utf8 = Buffer.from(full, 'utf8');
  if (utf8.byteLength <= KEY_LIMIT) return utf8;
  const hash = createHash('sha256').update(utf8).digest();
  return Buffer.concat([utf8.subarray(0, LONG_HEAD), hash]);
}

/** Whether a stored key is the shortened form of a longer key. */
export function isLongKey(stored: Uint8Array): boolean {
  return stored.byteLength > KEY_LIMIT;
}

/**
 * The range of stored keys that may start with `prefix`: exact for a prefix within LONG_HEAD
 * bytes; a longer one only narrows it to keys sharing its head, so callers check the full key.
 */
export function rangeOf(prefix: string): { start: Buffer; end: Buffer } {
  const head = Buffer.from(prefix, 'utf8').subarray(0, LONG_HEAD);
  return { start: head, end: Buffer.concat([head, RANGE_END]) };
}

export function encodeRecord(
  full: string,
  stored: Buffer,
  bytes: Uint8Array,
  expiresAt: number,
  reclaimAt: number,
  kind: number,
): Buffer {
  const key = isLongKey(stored) ? Buffer.from(full, 'utf8') : undefined;
  const out = Buffer.allocUnsafe(HEADER_BYTES + (key ? 4 + key.byteLength : 0) + bytes.byteLength);
  out[0] = RECORD_FORMAT;
  out[1] = (key ? LONG_KEY : 0) | (kind === TAG_KIND ? TAG_RECORD : 0);
  out.writeDoubleLE(expiresAt, 2);
  out.writeDoubleLE(reclaimAt, 10);
  let at = HEADER_BYTES;
  if (key) {
    at = out.writeUInt32LE(key.byteLength, at);
    at += key.copy(out, at);
  }
  out.set(bytes, at);
  return out;
}

/** The record in `value` (a copy LMDB made for us), or undefined when it is not one of ours. */
export function decodeRecord(value: Buffer | undefined): DiskRecord | undefined {
  if (value === undefined || value.byteLength < HEADER_BYTES || value[0] !== RECORD_FORMAT) {
    return undefined;
  }
  let at = HEADER_BYTES;
  let fullKey: string | undefined;
  if (value[1]! & LONG_KEY) {
    const length = value.readUInt32LE(at);
    at += 4;
    if (at + length > value.byteLength) return undefined;
    fullKey = value.toString('utf8', at, (at += length));
  }
  return {
    kind: value[1]! & TAG_RECORD ? TAG_KIND : ENTRY_KIND,
    expiresAt: value.readDoubleLE(2),
    reclaimAt: value.readDoubleLE(10),
    fullKey,
    bytes: value.subarray(at),
  };
}

export function indexKeyOf(reclaimAt: number, kind: number, stored: Buffer): Buffer {
  const out = Buffer.allocUnsafe(INDEX_HEAD + stored.byteLength);
  out.writeDoubleBE(reclaimAt, 0);
  out[8] = kind;
  stored.copy(out, INDEX_HEAD);
  return out;
}

/** lmdb hands out keys as Uint8Arrays of their own: a Buffer over the same bytes, not a copy. */
export function asBuffer(key: Uint8Array): Buffer {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength);
}

/** The record key an expiry index key points to. */
export function storedKeyInIndex(indexKey: Buffer): Buffer {
  return indexKey.subarray(INDEX_HEAD);
}

/** Where the expiry index ends for records to reclaim at `now` (exclusive). */
export function indexEndAt(now: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeDoubleBE(now, 0);
  return out;
}

/**
 * Whether `value` (a record, possibly a view lmdb reuses) is the one `indexKey` points to: the same
 * reclaimAt and kind. An index key left by a write cut short points to a record rewritten since.
 */
export function indexedBy(indexKey: Uint8Array, value: Uint8Array | undefined): boolean {
  if (value === undefined || value.byteLength < HEADER_BYTES || value[0] !== RECORD_FORMAT) {
    return false;
  }
  const index = asBuffer(indexKey);
  const record = asBuffer(value);
  const kind = record[1]! & TAG_RECORD ? TAG_KIND : ENTRY_KIND;
  return index.readDoubleBE(0) === record.readDoubleLE(10) && index[8] === kind;
}
