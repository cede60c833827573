import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import {
  CorruptEntryError,
  defaultSerializer,
  UnserializableValueError,
} from '../lib/serializer.js';
import * as errors from '../lib/errors.js';

const { serialize, deserialize } = defaultSerializer;

function roundTrip<T>(value: T): T {
  return deserialize(serialize(value)) as T;
}

function serializeError(value: unknown): UnserializableValueError {
  try {
    serialize(value);
  } catch (error) {
    expect(error).toBeInstanceOf(UnserializableValueError);
    return error as UnserializableValueError;
  }
  throw new Error('expected serialize to throw');
}

function deserializeError(bytes: Uint8Array): CorruptEntryError {
  try {
    deserialize(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(CorruptEntryError);
    return error as CorruptEntryError;
  }
  throw new Error('expected deserialize to throw');
}

const SUPPORTED =
  'Cache plain data (objects, arrays, strings, numbers, booleans, null, Date, Map, Set, BigInt, Buffer, Uint8Array).';

// The wire format, spelled out so the tests can write bytes an attacker could have put in Redis.
// Changing any of these is a format change and needs a new version byte.
const VERSION = 0x01;
const NULL = 0x00;
const INT8 = 0x04;
const STRING = 0x07;
const STRING_UTF16 = 0x08;
const ARRAY = 0x09;
const OBJECT = 0x0a;
const NULL_PROTO_OBJECT = 0x0b;
const MAP = 0x0c;
const BIGINT = 0x0f;

function str(value: string): number[] {
  const bytes = [...Buffer.from(value, 'utf8')];
  return [STRING, bytes.length, ...bytes];
}

function entry(...bytes: number[]): Buffer {
  return Buffer.from([VERSION, ...bytes]);
}

describe('defaultSerializer round trip', () => {
  it('returns a Buffer that starts with the format version', () => {
    const bytes = serialize({ a: 1 });
    expect(Buffer.isBuffer(bytes)).toBe(true);
    expect(bytes[0]).toBe(VERSION);
  });

  it('keeps strings, including non-ASCII, long, BOM-led and lone-surrogate ones', () => {
    const values = [
      '',
      'hello world',
      'héllo wörld ✓ 日本語 🎉',
      'x'.repeat(40),
      'é'.repeat(100),
      'a'.repeat(200_000),
      '\uFEFFstarts with a byte order mark',
      'broken \uD83D surrogate',
      '\uDE00 low surrogate first',
    ];
    for (const value of values) expect(roundTrip(value)).toBe(value);
  });

  it('keeps numbers, including -0, NaN, Infinity and values outside int32', () => {
    const values = [0, 1, -1, 127, 128, -128, -129, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 1.5, -1e-300];
    values.push(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, Number.MAX_VALUE, 2 ** 53 + 2);
    values.push(NaN, Infinity, -Infinity, -0);
    for (const value of values) expect(Object.is(roundTrip(value), value)).toBe(true);
  });

  it('keeps booleans', () => {
    expect(roundTrip(true)).toBe(true);
    expect(roundTrip(false)).toBe(false);
  });

  it('decodes a stored null as null', () => {
    expect(roundTrip(null)).toBeNull();
  });

  it('keeps undefined inside arrays and objects, as an own property', () => {
    const value = { a: undefined, list: [undefined, 1, undefined] };
    const result = roundTrip(value);
    expect(result).toStrictEqual(value);
    expect(Object.keys(result)).toEqual(['a', 'list']);
  });

  it('keeps plain objects, their key order and keys that are not identifiers', () => {
    const value = { b: 1, a: { nested: { deep: ['x'] } }, 2: 'two', 'content-type': 'json', '': 0 };
    const result = roundTrip(value);
    expect(result).toStrictEqual(value);
    expect(Object.keys(result)).toEqual(Object.keys(value));
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
  });

  it('keeps an own __proto__ key as data, without changing the prototype', () => {
    const value = JSON.parse('{"__proto__": {"admin": true}, "name": "x"}') as object;
    const result = roundTrip(value);
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(result, '__proto__')?.value).toStrictEqual({
      admin: true,
    });
    expect(result).toStrictEqual(value);
  });

  it('keeps objects with a null prototype', () => {
    const value = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 });
    const result = roundTrip(value);
    expect(Object.getPrototypeOf(result)).toBeNull();
    expect(result).toStrictEqual(value);
  });

  it('keeps arrays', () => {
    const value = [1, 'two', [3, [4]], { five: 5 }, []];
    expect(roundTrip(value)).toStrictEqual(value);
  });

  it('keeps Dates, including invalid ones', () => {
    const date = new Date('2025-11-21T13:46:00.123Z');
    const result = roundTrip(date);
    expect(result).toBeInstanceOf(Date);
    expect(result.getTime()).toBe(date.getTime());
    const invalid = roundTrip(new Date(NaN));
    expect(invalid).toBeInstanceOf(Date);
    expect(invalid.getTime()).toBeNaN();
  });

  it('keeps Maps, with keys of any supported type, apart from plain objects', () => {
    const value = new Map<unknown, unknown>([
      ['a', 1],
      [2, 'two'],
      [{ id: 3 }, [3]],
      [null, undefined],
    ]);
    const result = roundTrip(value);
    expect(result).toBeInstanceOf(Map);
    expect(result).toStrictEqual(value);
    expect(roundTrip({ map: new Map(), object: {} })).toStrictEqual({ map: new Map(), object: {} });
  });

  it('keeps Sets', () => {
    const value = new Set<unknown>(['a', 1, { b: 2 }]);
    const result = roundTrip(value);
    expect(result).toBeInstanceOf(Set);
    expect(result).toStrictEqual(value);
  });

  it('keeps BigInts of any size and sign', () => {
    for (const value of [0n, 1n, -1n, 2n ** 63n, -(2n ** 200n) + 7n]) {
      expect(roundTrip(value)).toBe(value);
    }
  });

  it('returns a Buffer as a Buffer that does not share memory with the entry', () => {
    const bytes = serialize({ file: Buffer.from('hello') });
    const result = deserialize(bytes) as { file: Buffer };
    expect(Buffer.isBuffer(result.file)).toBe(true);
    expect(result.file).toStrictEqual(Buffer.from('hello'));
    result.file[0] = 0x4a;
    expect((deserialize(bytes) as { file: Buffer }).file.toString()).toBe('hello');
  });

  it('returns a Uint8Array as a Uint8Array, not a Buffer', () => {
    const value = new Uint8Array([0, 1, 254, 255]);
    const result = roundTrip(value);
    expect(result).toBeInstanceOf(Uint8Array);
    expect(Object.getPrototypeOf(result)).toBe(Uint8Array.prototype);
    expect(result).toStrictEqual(value);
  });

  it('keeps arbitrarily nested mixes of the supported types', () => {
    const value = {
      history: [new Map([['created', [new Date(0), new Date(1_700_000_000_000)]]])],
      sets: new Set([new Map([[1n, { raw: Buffer.from([1, 2]) }]])]),
      bytes: [new Uint8Array([9]), Buffer.from([8])],
      odd: [NaN, -0, undefined, null, Infinity],
      deep: { a: { b: { c: { d: { e: new Set([new Date(5)]) } } } } },
    };
    expect(roundTrip(value)).toStrictEqual(value);
  });

  it('reads entries given as a plain Uint8Array, such as a view into a larger buffer', () => {
    const bytes = serialize({ a: [1, 2] });
    const larger = new Uint8Array(bytes.length + 6);
    larger.set(bytes, 3);
    expect(deserialize(larger.subarray(3, 3 + bytes.length))).toStrictEqual({ a: [1, 2] });
  });

  it('hands out results that later writes do not overwrite, small and large', () => {
    const values = Array.from({ length: 2_000 }, (_, i) =>
      i % 100 === 0 ? { big: 'x'.repeat(5_000 + i) } : { i, text: `value ${i}` },
    );
    const entries = values.map((value) => serialize(value));
    entries.forEach((bytes, i) => expect(deserialize(bytes)).toStrictEqual(values[i]));
  });
});

describe('defaultSerializer rejects what it cannot represent exactly', () => {
  it('rejects a function, naming where it is', () => {
    const error = serializeError({ user: { name: 'Ada', onSave() {} } });
    expect(error.message).toBe(
      `Cannot cache value: a function at value.user.onSave cannot be serialized. ${SUPPORTED}`,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('NEST_CACHE_UNSERIALIZABLE_VALUE');
  });

  it('throws the classes of errors.ts', () => {
    expect(UnserializableValueError).toBe(errors.UnserializableValueError);
    expect(CorruptEntryError).toBe(errors.CorruptEntryError);
    expect(serializeError({ fn: () => 1 })).toBeInstanceOf(errors.UnserializableValueError);
  });

  it('rejects a symbol value and a symbol key', () => {
    expect(serializeError({ list: [1, Symbol('s')] }).message).toBe(
      `Cannot cache value: a symbol at value.list[1] cannot be serialized. ${SUPPORTED}`,
    );
    expect(serializeError({ a: { [Symbol('k')]: 1 } }).message).toBe(
      `Cannot cache value: an object with symbol keys at value.a cannot be serialized. ${SUPPORTED}`,
    );
  });

  it('rejects a class instance and says to pass a plain object', () => {
    class UserDto {
      constructor(readonly name: string) {}
    }
    const error = serializeError({ users: [new UserDto('Ada')] });
    expect(error.message).toBe(
      'Cannot cache value: an instance of class UserDto at value.users[0] cannot be serialized. ' +
        'It would come back as a plain object, without its class. Pass a plain object instead, e.g. `{ ...value }`.',
    );
  });

  it('rejects subclasses of the supported types, which would lose their class', () => {
    class Registry extends Map<string, number> {}
    expect(serializeError({ r: new Registry() }).message).toContain(
      'an instance of class Registry at value.r',
    );
  });

  it('rejects WeakMap, Promise and typed arrays other than Uint8Array', () => {
    expect(serializeError({ m: new WeakMap() }).message).toBe(
      `Cannot cache value: a WeakMap at value.m cannot be serialized. ${SUPPORTED}`,
    );
    expect(serializeError({ p: Promise.resolve(1) }).message).toBe(
      'Cannot cache value: a Promise at value.p cannot be serialized. Await it and cache the result.',
    );
    expect(serializeError(new Int16Array(2)).message).toBe(
      `Cannot cache value: an Int16Array at value cannot be serialized. ${SUPPORTED}`,
    );
  });

  it('rejects circular references, naming both ends', () => {
    const team: Record<string, unknown> = { name: 'core' };
    team.members = [{ name: 'Ada', team }];
    const error = serializeError({ team });
    expect(error.message).toBe(
      'Cannot cache value: a circular reference at value.team.members[0].team ' +
        '(pointing back to value.team) cannot be serialized. ' +
        'Cache a tree: copy the value without the reference back to its ancestor.',
    );
  });

  it('rejects circular references through Maps and Sets', () => {
    const map = new Map<string, unknown>();
    map.set('self', map);
    expect(serializeError(map).message).toContain('a circular reference at value.get("self")');
    const set = new Set<unknown>();
    set.add(set);
    expect(serializeError(set).message).toContain('a circular reference at value.values()[0]');
  });

  it('accepts the same object twice when it is not its own ancestor', () => {
    const shared = { id: 1 };
    expect(roundTrip({ a: shared, b: [shared] })).toStrictEqual({ a: { id: 1 }, b: [{ id: 1 }] });
  });

  it('rejects top-level undefined and says to cache null instead', () => {
    const error = serializeError(undefined);
    expect(error.message).toBe(
      'Cannot cache value: undefined cannot be cached; use null to cache "nothing".',
    );
  });

  it('rejects array holes, which would otherwise come back as undefined', () => {
    const list: number[] = [];
    list[0] = 1;
    list[2] = 3;
    expect(serializeError({ list }).message).toBe(
      'Cannot cache value: an array hole at value.list[1] cannot be serialized. Fill it, e.g. with undefined or null.',
    );
  });

  it('spells paths through Map keys and awkward property names', () => {
    const value = { 'content-type': new Map([['k', { fn: () => 1 }]]) };
    expect(serializeError(value).message).toContain('at value["content-type"].get("k").fn ');
    expect(serializeError(new Map([[() => 1, 'v']])).message).toContain('at value.keys()[0] ');
  });

  it('lets an error thrown by a getter through unchanged', () => {
    const boom = new Error('boom');
    const value = {
      get broken(): never {
        throw boom;
      },
    };
    expect(() => serialize(value)).toThrow(boom);
  });

  it('works normally after a rejected value', () => {
    serializeError({ a: [{ b: () => 1 }] });
    expect(roundTrip({ a: [{ b: 1 }] })).toStrictEqual({ a: [{ b: 1 }] });
  });
});

describe('defaultSerializer reading untrusted bytes', () => {
  function expectPrototypesUntouched(result: unknown): void {
    expect(Object.getOwnPropertyNames(Object.prototype)).not.toContain('polluted');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const proto: unknown = Object.getPrototypeOf(result);
    expect(proto === Object.prototype || proto === null).toBe(true);
  }

  it('does not let a __proto__ key change Object.prototype or the object prototype', () => {
    // { "__proto__": { "polluted": true } }
    const result = deserialize(
      entry(OBJECT, 1, ...str('__proto__'), OBJECT, 1, ...str('polluted'), 0x03),
    );
    expectPrototypesUntouched(result);
    expect(Object.keys(result as object)).toEqual(['__proto__']);
  });

  it('does not let a __proto__ key give a decoded object an array or Map prototype', () => {
    for (const payload of [
      [ARRAY, 1, INT8, 7],
      [MAP, 0],
    ]) {
      const result = deserialize(entry(OBJECT, 1, ...str('__proto__'), ...payload));
      expectPrototypesUntouched(result);
      expect(Array.isArray(result)).toBe(false);
    }
  });

  it('does not let constructor.prototype change Object.prototype', () => {
    // { "constructor": { "prototype": { "polluted": true } } }
    const bytes = entry(
      OBJECT,
      1,
      ...str('constructor'),
      OBJECT,
      1,
      ...str('prototype'),
      OBJECT,
      1,
      ...str('polluted'),
      0x03,
    );
    const result = deserialize(bytes) as { constructor: unknown };
    expectPrototypesUntouched(result);
    expect(result.constructor).toStrictEqual({ prototype: { polluted: true } });
  });

  it('treats __proto__ as data in nested, null-prototype and UTF-16-keyed objects', () => {
    const utf16Key = [...Buffer.from('__proto__', 'utf16le')];
    const payloads = [
      entry(ARRAY, 1, OBJECT, 1, ...str('__proto__'), OBJECT, 1, ...str('polluted'), 0x03),
      entry(NULL_PROTO_OBJECT, 1, ...str('__proto__'), OBJECT, 1, ...str('polluted'), 0x03),
      entry(OBJECT, 1, STRING_UTF16, 9, ...utf16Key, OBJECT, 1, ...str('polluted'), 0x03),
    ];
    for (const bytes of payloads) {
      const result = deserialize(bytes);
      expectPrototypesUntouched(Array.isArray(result) ? result[0] : result);
    }
  });

  it('throws CorruptEntryError for empty entries and unknown versions', () => {
    expect(deserializeError(Buffer.alloc(0)).code).toBe('NEST_CACHE_CORRUPT_ENTRY');
    expect(deserializeError(Buffer.from('{"json":"from another library"}')).message).toContain(
      'unknown format version 123',
    );
    expect(deserializeError(Buffer.from([0x02, NULL])).message).toContain(
      'unknown format version 2',
    );
  });

  it('throws CorruptEntryError for garbage bytes', () => {
    const garbage = [
      entry(0xff),
      entry(0x12, 0x00),
      entry(OBJECT, 1, INT8, 1, NULL), // a key that is not a string
      entry(STRING, 2, 0xc3, 0x28), // invalid UTF-8
      entry(STRING, 40, ...Array.from({ length: 40 }, () => 0xff)),
      entry(BIGINT, ...str('12abc').slice(1)), // BigInt digits that are not digits
      entry(NULL, NULL), // a byte after the value
    ];
    for (const bytes of garbage) deserializeError(bytes);
  });

  it('throws only CorruptEntryError on random bytes', () => {
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) >>> 0) >>> 24;
    for (let i = 0; i < 5_000; i++) {
      const bytes = Buffer.from(Array.from({ length: 1 + (i % 40) }, random));
      bytes[0] = VERSION;
      try {
        deserialize(bytes);
      } catch (error) {
        expect(error).toBeInstanceOf(CorruptEntryError);
      }
    }
  });

  it('throws CorruptEntryError for every truncation of a valid entry', () => {
    const bytes = serialize({
      text: 'héllo',
      count: 123_456,
      ratio: 0.5,
      when: new Date(0),
      tags: new Set(['a']),
      index: new Map([[1, [true, null, undefined]]]),
      big: 2n ** 70n,
      raw: Buffer.from([1, 2, 3]),
      view: new Uint8Array([4]),
      odd: 'broken \uD83D surrogate',
    });
    for (let length = 0; length < bytes.length; length++) {
      deserializeError(bytes.subarray(0, length));
    }
  });

  it('rejects a forged length without allocating it', () => {
    // An array claiming 2^32 - 1 items, then nothing.
    expect(deserializeError(entry(ARRAY, 0xff, 0xff, 0xff, 0xff, 0x0f)).message).toContain(
      'unexpected end of data',
    );
    expect(deserializeError(entry(ARRAY, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)).message).toContain(
      'length is too long',
    );
  });

  it('throws CorruptEntryError for nesting deeper than the stack', () => {
    const depth = 200_000;
    const bytes = Buffer.alloc(1 + depth * 2 + 1);
    bytes[0] = VERSION;
    for (let i = 0; i < depth; i++) bytes.set([ARRAY, 1], 1 + i * 2);
    bytes[bytes.length - 1] = NULL;
    deserializeError(bytes);
  });
});
