import { Buffer } from 'node:buffer';

/**
 * What a cache entry carries beside its value. Times are milliseconds since the epoch, read from
 * the cache's clock.
 */
export interface EntryMeta {
  /** When the work that produced the value started (a tag invalidated later makes it stale). */
  storedAt: number;
  /** Until when the entry is fresh; null: forever. */
  freshUntil: number | null;
  /** Until when it may still be served stale (getOrSet's stale windows); >= freshUntil. */
  staleUntil: number | null;
  /** Its tags: invalidateTags() of any of them ends it. */
  tags: readonly string[];
  /** The key as the user wrote it, kept only when the stored key is a shortened form of it. */
  key?: string;
}

/** A decoded entry: its metadata and its value's bytes (as the serializer wrote them). */
export interface Entry extends EntryMeta {
  body: Uint8Array;
}

/**
 * The envelope every value is stored in, encoded and decoded here only. Layout (little-endian):
 *   0xc7, format version, flags (1: tags follow, 2: the user's key follows),
 *   storedAt, freshUntil, staleUntil (float64 each; Infinity for never),
 *   [tags: uint16 count, then per tag uint16 UTF-8 byte length and the bytes],
 *   [key: uint32 UTF-16 byte length and the UTF-16LE code units],
 *   the value's bytes.
 * Bump ENTRY_FORMAT when it changes: an entry of another format is then a miss, never an error.
 */
export const ENTRY_FORMAT = 1;
const MAGIC = 0xc7;
const HAS_TAGS = 1;
const HAS_KEY = 2;
const HEADER_BYTES = 27;

export function encodeEntry(meta: EntryMeta, body: Uint8Array): Buffer {
  const tags = meta.tags.map((tag) => Buffer.from(tag, 'utf8'));
  const key = meta.key === undefined ? undefined : Buffer.from(meta.key, 'utf16le');
  let size = HEADER_BYTES + body.byteLength;
  if (tags.length > 0) size += 2 + tags.reduce((sum, tag) => sum + 2 + tag.byteLength, 0);
  if (key) size += 4 + key.byteLength;
  const out = Buffer.allocUnsafe(size);
  out[0] = MAGIC;
  out[1] = ENTRY_FORMAT;
  out[2] = (tags.length > 0 ? HAS_TAGS : 0) | (key ? HAS_KEY : 0);
  out.writeDoubleLE(meta.storedAt, 3);
  out.writeDoubleLE(meta.freshUntil ?? Infinity, 11);
  out.writeDoubleLE(meta.staleUntil ?? Infinity, 19);
  let at = HEADER_BYTES;
  if (tags.length > 0) {
    at = out.writeUInt16LE(tags.length, at);
    for (const tag of tags) {
      at = out.writeUInt16LE(tag.byteLength, at);
      at += tag.copy(out, at);
    }
  }
  if (key) {
    at = out.writeUInt32LE(key.byteLength, at);
    at += key.copy(out, at);
  }
  out.set(body, at);
  return out;
}

/** How long the entry has been stale at `now`, in ms (negative while fresh; -Infinity if it never expires). */
export function staleFor(meta: EntryMeta, now: number): number {
  return meta.freshUntil === null ? -Infinity : now - meta.freshUntil;
}

/** The entry in `bytes`, or undefined when they are not an entry of this format. */
export function decodeEntry(bytes: Uint8Array): Entry | undefined {
  if (bytes.byteLength < HEADER_BYTES || bytes[0] !== MAGIC || bytes[1] !== ENTRY_FORMAT) {
    return undefined;
  }
  const buffer = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = buffer[2]!;
  const freshUntil = buffer.readDoubleLE(11);
  const staleUntil = buffer.readDoubleLE(19);
  const entry: Entry = {
    storedAt: buffer.readDoubleLE(3),
    freshUntil: freshUntil === Infinity ? null : freshUntil,
    staleUntil: staleUntil === Infinity ? null : staleUntil,
    tags: NO_TAGS,
    body: buffer,
  };
  let at = HEADER_BYTES;
  try {
    if (flags & HAS_TAGS) {
      const count = buffer.readUInt16LE(at);
      at += 2;
      const tags: string[] = [];
      for (let i = 0; i < count; i++) {
        const length = buffer.readUInt16LE(at);
        at += 2;
        if (at + length > buffer.byteLength) return undefined;
        tags.push(buffer.toString('utf8', at, (at += length)));
      }
      entry.tags = tags;
    }
    if (flags & HAS_KEY) {
      const length = buffer.readUInt32LE(at);
      at += 4;
      if (at + length > buffer.byteLength) return undefined;
      entry.key = buffer.toString('utf16le', at, (at += length));
    }
  } catch {
    return undefined; // cut short: a read past the end
  }
  entry.body = buffer.subarray(at);
  return entry;
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/** A counter is stored as its decimal ASCII digits, so Redis INCRBY works on it natively. */
const COUNTER = /^-?\d{1,20}$/;

/** The counter in `bytes`, or undefined when they hold something else. */
export function decodeCounter(bytes: Uint8Array): number | undefined {
  const first = bytes[0];
  // Cheap test first: an envelope starts with 0xc7, a counter with '-' or a digit.
  if (
    bytes.byteLength > 21 ||
    first === undefined ||
    (first !== 0x2d && (first < 0x30 || first > 0x39))
  ) {
    return undefined;
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  return COUNTER.test(text) ? Number(text) : undefined;
}

/** A tag record: a decimal number, as String() writes one. */
const TAG_TIME = /^-?\d{1,20}(?:\.\d{1,20})?(?:e[+-]?\d{1,3})?$/;

/**
 * The time (ms since the epoch) a tag record holds: its latest invalidation, "0" when never, with
 * a fraction when it was dated just after a write of the same millisecond (see BaseCache's
 * writeTime()). Undefined when `bytes` hold something else.
 */
export function decodeTagTime(bytes: Uint8Array): number | undefined {
  if (bytes.byteLength > 48) return undefined;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  return TAG_TIME.test(text) ? Number(text) : undefined;
}

export function encodeCounter(value: number): Buffer {
  return Buffer.from(String(value), 'latin1');
}
