import { createHash, randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';

/**
 * How the memcached backend lays out what it stores: key names, the item header that carries the
 * logical expiry, memcached's expiration times, namespace generations. Decided here only.
 */

/** Memcached's longest key, in bytes. */
export const MAX_MEMCACHED_KEY_BYTES = 250;
/** What a hashed key holds, and a plain one never does (see memcachedKey()). */
const HASH_MARK = '~';
/** How much of a hashed key's name is kept in front of its hash, for people reading the keys. */
const HASHED_HEAD_CHARS = 100;

/**
 * The memcached key of a name: the name itself when memcached takes it as it is (at most 250
 * bytes of printable ASCII, no space, no control character) and it holds no '~'; otherwise a
 * readable head, '~' and the SHA-256 (base64url) of the name's UTF-16 code units. A plain key
 * never holds '~' and a hashed one always does, so two distinct names never share a key.
 */
export function memcachedKey(name: string): string {
  if (name.length <= MAX_MEMCACHED_KEY_BYTES && isPlain(name)) return name;
  const hash = createHash('sha256').update(name, 'utf16le').digest('base64url');
  return `${name.slice(0, HASHED_HEAD_CHARS).replace(/[^\x21-\x7d]/g, '_')}${HASH_MARK}${hash}`;
}

/** Printable ASCII from '!' to '}': no space, no control character, no '~' (0x7e), no DEL. */
function isPlain(name: string): boolean {
  for (let i = 0; i < name.length; i += 1) {
    const code = name.charCodeAt(i);
    if (code < 0x21 || code > 0x7d) return false;
  }
  return true;
}

/**
 * A namespace generation: base-36 time and random digits, [0-9a-z] only. A fresh one is unique
 * without any coordination (no atomic increment needed), and a generation is never reused.
 */
export function freshGeneration(now = Date.now()): string {
  return `${now.toString(36)}${randomBytes(5).toString('hex')}`;
}

const GENERATION = /^[0-9a-z]{1,40}$/;

/** The generation a record holds, or undefined when it holds something else. */
export function decodeGeneration(value: Buffer): string | undefined {
  const text = value.toString('latin1');
  return GENERATION.test(text) ? text : undefined;
}

/** What an item holds besides the driver's bytes: until when it lives, by the cache's clock. */
export interface Item {
  body: Buffer;
  /** Ms since the epoch on the cache's clock; null: never expires. */
  expiresAt: number | null;
}

/**
 * Layout of every value the driver stores: 0xe7, then the logical expiry (float64 LE, Infinity for
 * never), then the bytes. Memcached cannot tell an item's remaining time, and expires items by its
 * own clock in whole seconds, so the cache's clock judges expiry from this header.
 */
const ITEM_MAGIC = 0xe7;
const ITEM_HEADER_BYTES = 9;

export function encodeItem(body: Uint8Array, expiresAt: number | null): Buffer {
  const out = Buffer.allocUnsafe(ITEM_HEADER_BYTES + body.byteLength);
  out[0] = ITEM_MAGIC;
  out.writeDoubleLE(expiresAt ?? Infinity, 1);
  out.set(body, ITEM_HEADER_BYTES);
  return out;
}

/** The item in `value`, or undefined when another program wrote it. */
export function decodeItem(value: Buffer): Item | undefined {
  if (value.byteLength < ITEM_HEADER_BYTES || value[0] !== ITEM_MAGIC) return undefined;
  const expiresAt = value.readDoubleLE(1);
  return {
    body: value.subarray(ITEM_HEADER_BYTES),
    expiresAt: expiresAt === Infinity ? null : expiresAt,
  };
}

/** Memcached reads an expiration time over 30 days as an absolute Unix time. */
const MAX_RELATIVE_EXPIRATION_S = 30 * 24 * 3_600;

/**
 * Memcached's expiration time for an item that must live `ttlMs` more (null: never expires, 0).
 * Only a reclamation backstop, never earlier than the logical expiry: memcached's clock ticks once
 * a second and may expire an item up to a second early, hence one second more. Over 30 days it is
 * an absolute Unix time, computed from the real clock (memcached compares it with its own).
 */
export function expiration(ttlMs: number | null, realNow = Date.now()): number {
  if (ttlMs === null) return 0;
  const seconds = Math.ceil(ttlMs / 1_000) + 1;
  if (seconds <= MAX_RELATIVE_EXPIRATION_S) return seconds;
  return Math.ceil(realNow / 1_000) + seconds;
}

/** The extras of SET and ADD: flags (unused, 0), then the expiration time. */
export function storeExtras(ttlMs: number | null): Buffer {
  const extras = Buffer.alloc(8);
  extras.writeUInt32BE(expiration(ttlMs), 4);
  return extras;
}
