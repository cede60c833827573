import { Buffer } from 'node:buffer';
import { CorruptEntryError, UnserializableValueError } from './errors.js';

/**
 * Turns cache values into bytes and back, for every backend.
 *
 * The format is a small tagged binary encoding of our own (bench/README-serializer.md has the
 * measurements against msgpackr and JSON behind that choice). It is exact: what is read back deep-equals what was stored,
 * including Date, Map, Set, BigInt, Buffer, Uint8Array, undefined, NaN, Infinity and -0. A value
 * it cannot represent exactly is rejected on write instead of being silently changed.
 *
 * Decoding only ever builds plain data (no code runs, no prototype is looked up from the bytes),
 * because a shared Redis may hold bytes an attacker wrote.
 *
 * Layout: one format-version byte, then one value. A value is a tag byte and its payload:
 *   null, undefined, false, true   tag only
 *   int8 / int32 / float64         1 / 4 / 8 bytes, little-endian
 *   string                         varint UTF-8 byte length, UTF-8 bytes
 *   string (UTF-16)                varint code-unit count, UTF-16LE (keeps lone surrogates)
 *   array, set                     varint count, values
 *   object, null-prototype object  varint count, (string value, value) pairs
 *   map                            varint count, (value, value) pairs
 *   date                           float64 milliseconds (NaN for an invalid Date)
 *   bigint                         varint length, ASCII decimal digits (like a string)
 *   buffer, uint8array             varint byte length, bytes
 * Varints are unsigned LEB128; a writer may pad them with 0x80 continuation bytes.
 */

export interface Serializer {
  /** Throws UnserializableValueError when the value cannot be represented exactly. */
  serialize(value: unknown): Buffer;
  /** Throws CorruptEntryError when the bytes are not a valid entry. */
  deserialize(bytes: Uint8Array): unknown;
}

// The error classes live in errors.ts with every other nest-cache error, so `instanceof` holds
// whichever module they are imported from; they are re-exported here because
// they are part of the serializer's contract.
export { CorruptEntryError, UnserializableValueError };

/** Bump when the layout changes: older entries then read as corrupt (a miss), never as wrong values. */
const FORMAT_VERSION = 1;

const NULL = 0x00;
const UNDEFINED = 0x01;
const FALSE = 0x02;
const TRUE = 0x03;
const INT8 = 0x04;
const INT32 = 0x05;
const FLOAT64 = 0x06;
const STRING = 0x07;
const STRING_UTF16 = 0x08;
const ARRAY = 0x09;
const OBJECT = 0x0a;
const NULL_PROTO_OBJECT = 0x0b;
const MAP = 0x0c;
const SET = 0x0d;
const DATE = 0x0e;
const BIGINT = 0x0f;
const BUFFER = 0x10;
const UINT8ARRAY = 0x11;

/** How deep containers may nest; deeper is refused with a clear error instead of a stack overflow. */
const MAX_DEPTH = 1_000;

const SUPPORTED_TYPES =
  'Cache plain data (objects, arrays, strings, numbers, booleans, null, Date, Map, Set, BigInt, Buffer, Uint8Array).';

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Thrown inside the writer and turned into an UnserializableValueError at the top. Each enclosing
 * container adds its path segment on the way out, so the path costs nothing when nothing fails.
 */
class Unrepresentable extends Error {
  /** Path segments from the problem up to the root (reversed once, when the message is built). */
  readonly segments: string[] = [];

  constructor(
    readonly what: string,
    readonly advice: string,
    /** For a circular reference: how many segments lead to the object it points back to. */
    readonly circularTargetDepth?: number,
  ) {
    super(what);
  }
}

function withSegment(error: unknown, segment: string): unknown {
  if (error instanceof Unrepresentable) error.segments.push(segment);
  // Anything else (a throwing getter, a stack overflow) is not ours to rewrite.
  return error;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

function propertySegment(key: string): string {
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function mapKeySegment(key: unknown, index: number): string {
  if (typeof key === 'string') return `.get(${JSON.stringify(key)})`;
  if (typeof key === 'number' || typeof key === 'boolean') return `.get(${String(key)})`;
  if (typeof key === 'bigint') return `.get(${key}n)`;
  // An object key has no short spelling; its position among the entries still finds it.
  return `.values()[${index}]`;
}

// Lone surrogates do not survive UTF-8, so strings holding one are written as UTF-16.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** String.prototype.isWellFormed and toWellFormed (ES2024, in Node 20): TypeScript's ES2023 lib lacks them. */
type WellFormed = { isWellFormed(): boolean; toWellFormed(): string };

/** Whether `text` holds a lone surrogate: a string that UTF-8 (and so Redis) would change. */
export function hasLoneSurrogate(text: string): boolean {
  return !(text as unknown as WellFormed).isWellFormed();
}

/** `text` with every lone surrogate replaced by U+FFFD, as UTF-8 would have it. */
export function withoutLoneSurrogates(text: string): string {
  return (text as unknown as WellFormed).toWellFormed();
}

// Results are handed out as slices of a shared slab, the way Node pools small Buffers: that
// spares an allocation and a copy per call, a quarter of the time of a small write. A slice keeps
// its slab alive, so results bigger than MAX_SLICED_RESULT get a buffer of their own instead.
const SLAB_SIZE = 8 * 1024;
const MAX_SLICED_RESULT = 1024;

class Writer {
  buf = Buffer.allocUnsafe(SLAB_SIZE);
  /** Where the value being written starts in buf; everything before it was handed out. */
  start = 0;
  pos = 0;
  /** The containers between the root and the value being written, to catch circular references. */
  readonly ancestors: object[] = [];

  result(): Buffer {
    const length = this.pos - this.start;
    if (length <= MAX_SLICED_RESULT) {
      const slice = this.buf.subarray(this.start, this.pos);
      this.start = this.pos;
      return slice;
    }
    const own = Buffer.allocUnsafe(length);
    this.buf.copy(own, 0, this.start, this.pos);
    if (this.buf.length > SLAB_SIZE) {
      // A slab grown for one big value is not kept for good: the next one starts small again.
      this.buf = Buffer.allocUnsafe(SLAB_SIZE);
      this.start = 0;
    }
    this.pos = this.start;
    return own;
  }

  /** Drops what was written since the last result, after a failure; no reference outlives the call. */
  discard(): void {
    this.pos = this.start;
    this.ancestors.length = 0;
  }

  ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    // Move the value written so far to a fresh slab; earlier results keep the old one.
    const written = this.pos - this.start;
    const next = Buffer.allocUnsafe(Math.max(SLAB_SIZE, (written + bytes) * 2));
    this.buf.copy(next, 0, this.start, this.pos);
    this.buf = next;
    this.start = 0;
    this.pos = written;
  }

  byte(value: number): void {
    this.ensure(1);
    this.buf[this.pos++] = value;
  }

  varint(value: number): void {
    this.ensure(5);
    while (value >= 0x80) {
      this.buf[this.pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    this.buf[this.pos++] = value;
  }

  value(value: unknown): void {
    switch (typeof value) {
      case 'string':
        return this.string(STRING, value);
      case 'number':
        return this.number(value);
      case 'boolean':
        return this.byte(value ? TRUE : FALSE);
      case 'undefined':
        return this.byte(UNDEFINED);
      case 'bigint':
        return this.string(BIGINT, value.toString());
      case 'object':
        return value === null ? this.byte(NULL) : this.object(value);
      case 'function':
        throw new Unrepresentable('a function', SUPPORTED_TYPES);
      case 'symbol':
        throw new Unrepresentable('a symbol', SUPPORTED_TYPES);
    }
  }

  number(value: number): void {
    // -0 passes the int32 test (0 === -0), so it goes the float64 way to keep its sign.
    if ((value | 0) === value && (value !== 0 || 1 / value > 0)) {
      if (value >= -0x80 && value < 0x80) {
        this.ensure(2);
        this.buf[this.pos++] = INT8;
        this.buf[this.pos++] = value;
      } else {
        this.ensure(5);
        this.buf[this.pos++] = INT32;
        this.pos = this.buf.writeInt32LE(value, this.pos);
      }
    } else {
      this.ensure(9);
      this.buf[this.pos++] = FLOAT64;
      this.pos = this.buf.writeDoubleLE(value, this.pos);
    }
  }

  string(tag: number, value: string): void {
    const length = value.length;
    // Short ASCII strings, the common case, are copied by hand: cheaper than a native call.
    if (length < 0x80) {
      this.ensure(length + 2);
      const buf = this.buf;
      const start = this.pos;
      let pos = start + 2;
      let i = 0;
      for (; i < length; i++) {
        const code = value.charCodeAt(i);
        if (code >= 0x80) break;
        buf[pos++] = code;
      }
      if (i === length) {
        buf[start] = tag;
        buf[start + 1] = length;
        this.pos = pos;
        return;
      }
    }
    // The UTF-8 length is known only after writing, so room is kept for the longest possible
    // length varint (3 bytes per UTF-16 unit) and the varint is padded to fill it.
    const width = varintWidth(length * 3);
    this.ensure(1 + width + length * 3);
    const start = this.pos + 1 + width;
    const written = this.buf.write(value, start, 'utf8');
    // Only non-ASCII strings write more bytes than units; only they can hold a lone surrogate.
    // (A BigInt's digits are ASCII, so the UTF-16 form is only ever a STRING.)
    if (written !== length && LONE_SURROGATE.test(value)) return this.utf16(value);
    this.buf[this.pos] = tag;
    writePaddedVarint(this.buf, this.pos + 1, written, width);
    this.pos = start + written;
  }

  utf16(value: string): void {
    this.byte(STRING_UTF16);
    this.varint(value.length);
    this.ensure(value.length * 2);
    this.pos += this.buf.write(value, this.pos, 'utf16le');
  }

  object(value: object): void {
    const proto = Object.getPrototypeOf(value) as object | null;
    if (proto === Object.prototype) return this.plainObject(OBJECT, value);
    if (proto === Array.prototype) return this.array(value as unknown[]);
    if (proto === Date.prototype) {
      this.ensure(9);
      this.buf[this.pos++] = DATE;
      this.pos = this.buf.writeDoubleLE((value as Date).getTime(), this.pos);
      return;
    }
    if (proto === Map.prototype) return this.map(value as Map<unknown, unknown>);
    if (proto === Set.prototype) return this.set(value as Set<unknown>);
    if (proto === Buffer.prototype) return this.bytes(BUFFER, value as Buffer);
    if (proto === Uint8Array.prototype) return this.bytes(UINT8ARRAY, value as Uint8Array);
    if (proto === null) return this.plainObject(NULL_PROTO_OBJECT, value);
    throw unsupportedInstance(proto);
  }

  enter(container: object): void {
    if (this.ancestors.length >= MAX_DEPTH) {
      throw new Unrepresentable(
        `nesting deeper than ${MAX_DEPTH} levels`,
        'Cache a flatter value (a list of records with parent ids, say).',
      );
    }
    const depth = this.ancestors.indexOf(container);
    if (depth !== -1) {
      throw new Unrepresentable(
        'a circular reference',
        'Cache a tree: copy the value without the reference back to its ancestor.',
        depth,
      );
    }
    this.ancestors.push(container);
  }

  plainObject(tag: number, value: object): void {
    if (Object.getOwnPropertySymbols(value).length > 0) {
      throw new Unrepresentable('an object with symbol keys', SUPPORTED_TYPES);
    }
    this.enter(value);
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record);
    this.byte(tag);
    this.varint(keys.length);
    let i = 0;
    try {
      for (; i < keys.length; i++) {
        this.string(STRING, keys[i]);
        this.value(record[keys[i]]);
      }
    } catch (error) {
      throw withSegment(error, propertySegment(keys[i]));
    }
    this.ancestors.pop();
  }

  array(value: unknown[]): void {
    // Extra own properties (a RegExp match's index and input) would be lost: refuse, never drop.
    if (Object.keys(value).length > value.length) {
      throw new Unrepresentable(
        'an array with properties besides its elements',
        'Copy the elements ([...value]) or the properties ({ ...value }) into plain data.',
      );
    }
    this.enter(value);
    this.byte(ARRAY);
    this.varint(value.length);
    let i = 0;
    try {
      for (; i < value.length; i++) {
        const item = value[i];
        // A hole reads as undefined; only then is the slower `in` check worth making.
        if (item === undefined && !(i in value)) {
          throw new Unrepresentable('an array hole', 'Fill it, e.g. with undefined or null.');
        }
        this.value(item);
      }
    } catch (error) {
      throw withSegment(error, `[${i}]`);
    }
    this.ancestors.pop();
  }

  map(value: Map<unknown, unknown>): void {
    this.enter(value);
    this.byte(MAP);
    this.varint(value.size);
    let i = 0;
    for (const [key, item] of value) {
      try {
        this.value(key);
      } catch (error) {
        throw withSegment(error, `.keys()[${i}]`);
      }
      try {
        this.value(item);
      } catch (error) {
        throw withSegment(error, mapKeySegment(key, i));
      }
      i++;
    }
    this.ancestors.pop();
  }

  set(value: Set<unknown>): void {
    this.enter(value);
    this.byte(SET);
    this.varint(value.size);
    let i = 0;
    try {
      for (const item of value) {
        this.value(item);
        i++;
      }
    } catch (error) {
      throw withSegment(error, `.values()[${i}]`);
    }
    this.ancestors.pop();
  }

  bytes(tag: number, value: Uint8Array): void {
    this.byte(tag);
    this.varint(value.length);
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }
}

function varintWidth(value: number): number {
  let width = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    width++;
  }
  return width;
}

function writePaddedVarint(buf: Buffer, pos: number, value: number, width: number): void {
  for (let i = 1; i < width; i++) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos] = value;
}

function unsupportedInstance(proto: object): Unrepresentable {
  const ctor = (proto as { constructor?: unknown }).constructor;
  if (ctor === Promise) return new Unrepresentable('a Promise', 'Await it and cache the result.');
  const toPlainObject =
    'It would come back as a plain object, without its class. Pass a plain object instead, e.g. `{ ...value }`.';
  if (typeof ctor !== 'function' || ctor === Object || ctor.name === '') {
    return new Unrepresentable('an object with a custom prototype', toPlainObject);
  }
  const name = ctor.name;
  // Built-ins such as WeakMap, RegExp or Int16Array have no plain copy worth suggesting.
  if ((globalThis as Record<string, unknown>)[name] === ctor) {
    return new Unrepresentable(`${/^[AEIOU]/.test(name) ? 'an' : 'a'} ${name}`, SUPPORTED_TYPES);
  }
  return new Unrepresentable(`an instance of class ${name}`, toPlainObject);
}

function unrepresentableError(problem: Unrepresentable): UnserializableValueError {
  const segments = problem.segments.reverse();
  const path = 'value' + segments.join('');
  const target =
    problem.circularTargetDepth === undefined
      ? ''
      : ` (pointing back to value${segments.slice(0, problem.circularTargetDepth).join('')})`;
  return new UnserializableValueError(
    `Cannot cache value: ${problem.what} at ${path}${target} cannot be serialized. ${problem.advice}`,
  );
}

// One writer is reused; a getter that caches something while we write gets a fresh one.
let idleWriter: Writer | undefined = new Writer();

function serialize(value: unknown): Buffer {
  if (value === undefined) {
    throw new UnserializableValueError(
      'Cannot cache value: undefined cannot be cached; use null to cache "nothing".',
    );
  }
  const writer = idleWriter ?? new Writer();
  idleWriter = undefined;
  try {
    writer.byte(FORMAT_VERSION);
    writer.value(value);
    return writer.result();
  } catch (error) {
    writer.discard();
    throw error instanceof Unrepresentable ? unrepresentableError(error) : error;
  } finally {
    idleWriter = writer;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

// fatal: invalid UTF-8 means corruption, not text to patch up; ignoreBOM: a leading U+FEFF is data.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const BIGINT_DIGITS = /^-?(?:0|[1-9][0-9]*)$/;

// Object keys and short strings such as tags and enum values come back entry after entry, and a
// hot cache entry is decoded again on every get. Returning the same string each time costs a
// compare instead of an allocation, and spares V8 from hashing a fresh key on every property
// store: a third or more of the decode time of a small object. Strings are immutable, so
// sharing them between decoded values is safe.
const STRING_CACHE_SIZE = 4096; // a power of two, so the slot is masked rather than divided
const MAX_CACHED_LENGTH = 32;
const stringCache = Array.from<string | undefined>({ length: STRING_CACHE_SIZE });

/** The ASCII string in buf[start, start + length), or undefined when the bytes are not ASCII. */
function asciiFromCache(buf: Buffer, start: number, length: number): string | undefined {
  const end = start + length;
  // Length plus the first and last bytes spread real strings well; a collision only costs a miss.
  const slot = ((length << 7) ^ (buf[start] << 3) ^ buf[end - 1]) & (STRING_CACHE_SIZE - 1);
  const cached = stringCache[slot];
  if (cached !== undefined && cached.length === length) {
    // Cached strings are ASCII, so matching every char code also proves these bytes are ASCII.
    let i = 0;
    while (i < length && cached.charCodeAt(i) === buf[start + i]) i++;
    if (i === length) return cached;
  }
  if (!isAscii(buf, start, end)) return undefined;
  const value = buf.toString('latin1', start, end);
  stringCache[slot] = value;
  return value;
}

function isAscii(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] >= 0x80) return false;
  return true;
}

class Reader {
  pos = 1;

  constructor(readonly buf: Buffer) {}

  corrupt(detail: string): CorruptEntryError {
    return new CorruptEntryError(`Cannot read cache entry: ${detail} (at byte ${this.pos}).`);
  }

  /** Checks that a fixed-size payload is all there before it is read. */
  need(bytes: number): void {
    if (this.pos + bytes > this.buf.length) throw this.corrupt('unexpected end of data');
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.buf[this.pos++];
      if (byte === undefined) throw this.corrupt('unexpected end of data');
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw this.corrupt('length is too long');
  }

  /** A length or count, checked against what is left so a forged header cannot force a huge allocation. */
  length(bytesPerItem: number): number {
    // Most lengths fit in one varint byte; reading that inline keeps small values cheap.
    let length = this.buf[this.pos];
    if (length < 0x80) this.pos++;
    else length = this.varint();
    if (length * bytesPerItem > this.buf.length - this.pos)
      throw this.corrupt('unexpected end of data');
    return length;
  }

  value(): unknown {
    const buf = this.buf;
    const tag = buf[this.pos++];
    switch (tag) {
      case NULL:
        return null;
      case UNDEFINED:
        return undefined;
      case FALSE:
        return false;
      case TRUE:
        return true;
      case INT8:
        this.need(1);
        return buf.readInt8(this.pos++);
      case INT32: {
        this.need(4);
        const value = buf.readInt32LE(this.pos);
        this.pos += 4;
        return value;
      }
      case FLOAT64: {
        this.need(8);
        const value = buf.readDoubleLE(this.pos);
        this.pos += 8;
        return value;
      }
      case STRING:
        return this.utf8();
      case STRING_UTF16:
        return this.utf16();
      case ARRAY:
        return this.array();
      case OBJECT:
        return this.object({});
      case NULL_PROTO_OBJECT:
        return this.object(Object.create(null) as Record<string, unknown>);
      case MAP:
        return this.map();
      case SET:
        return this.set();
      case DATE: {
        this.need(8);
        const date = new Date(buf.readDoubleLE(this.pos));
        this.pos += 8;
        return date;
      }
      case BIGINT:
        return this.bigint();
      case BUFFER: {
        const length = this.length(1);
        // Copies, so the caller cannot change the stored entry through the returned Buffer.
        return Buffer.from(buf.subarray(this.pos, (this.pos += length)));
      }
      case UINT8ARRAY: {
        const length = this.length(1);
        return new Uint8Array(buf.subarray(this.pos, (this.pos += length)));
      }
      case undefined:
        throw this.corrupt('unexpected end of data');
      default:
        this.pos--;
        throw this.corrupt(`unknown tag 0x${tag.toString(16)}`);
    }
  }

  utf8(): string {
    const length = this.length(1);
    const buf = this.buf;
    const start = this.pos;
    const end = (this.pos += length);
    if (length <= MAX_CACHED_LENGTH) {
      const cached = asciiFromCache(buf, start, length);
      if (cached !== undefined) return cached;
    } else if (length < 64 && isAscii(buf, start, end)) {
      // Still cheaper than a TextDecoder call for this size.
      return buf.toString('latin1', start, end);
    }
    return utf8.decode(buf.subarray(start, end));
  }

  utf16(): string {
    const length = this.length(2);
    return this.buf.toString('utf16le', this.pos, (this.pos += length * 2));
  }

  key(): string {
    const tag = this.buf[this.pos];
    if (tag !== STRING && tag !== STRING_UTF16) throw this.corrupt('object key is not a string');
    return this.value() as string;
  }

  bigint(): bigint {
    const digits = this.utf8();
    if (!BIGINT_DIGITS.test(digits)) throw this.corrupt('malformed BigInt');
    return BigInt(digits);
  }

  array(): unknown[] {
    const length = this.length(1);
    const array: unknown[] = [];
    for (let i = 0; i < length; i++) array.push(this.value());
    return array;
  }

  object(target: Record<string, unknown>): object {
    const length = this.length(2);
    for (let i = 0; i < length; i++) {
      const key = this.key();
      const value = this.value();
      if (key === '__proto__') {
        // Assigning would call the __proto__ setter and give the object a prototype chosen by
        // the bytes; defining makes it the ordinary own property it was when written.
        Object.defineProperty(target, key, {
          value,
          writable: true,
          enumerable: true,
          configurable: true,
        });
      } else {
        target[key] = value;
      }
    }
    return target;
  }

  map(): Map<unknown, unknown> {
    const length = this.length(2);
    const map = new Map<unknown, unknown>();
    for (let i = 0; i < length; i++) {
      const key = this.value();
      map.set(key, this.value());
    }
    return map;
  }

  set(): Set<unknown> {
    const length = this.length(1);
    const set = new Set<unknown>();
    for (let i = 0; i < length; i++) set.add(this.value());
    return set;
  }
}

function deserialize(bytes: Uint8Array): unknown {
  const buf = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length === 0) throw new CorruptEntryError('Cannot read cache entry: it is empty.');
  if (buf[0] !== FORMAT_VERSION) {
    throw new CorruptEntryError(
      `Cannot read cache entry: unknown format version ${buf[0]} (this version of nest-cache reads ${FORMAT_VERSION}).`,
    );
  }
  const reader = new Reader(buf);
  let value: unknown;
  try {
    value = reader.value();
  } catch (error) {
    if (error instanceof CorruptEntryError) throw error;
    // Invalid UTF-8 and nesting too deep for the stack land here.
    throw new CorruptEntryError(
      `Cannot read cache entry: ${String(error)} (near byte ${reader.pos}).`,
      {
        cause: error,
      },
    );
  }
  if (reader.pos !== buf.length) {
    throw reader.corrupt(`${buf.length - reader.pos} unexpected bytes after the value`);
  }
  return value;
}

export const defaultSerializer: Serializer = Object.freeze({ serialize, deserialize });
