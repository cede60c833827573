import { UnkeyableArgumentError } from '../errors.js';
import { messages } from '../messages.js';

/**
 * The arguments of a call as one stable string: equal for arguments that are equal as data
 * (whatever the order of keys inside objects), different otherwise. Strings, numbers (-0, NaN and
 * Infinity included), booleans, null, undefined, bigints, Dates, arrays, plain objects, and objects
 * with toJSON() (keyed by what it returns). Anything else (a function, a symbol, a class instance
 * without toJSON, a Map, a cycle) cannot be keyed faithfully: UnkeyableArgumentError names it.
 * Trailing undefined arguments are dropped: f(1) and f(1, undefined) are one call.
 */
export function argumentsKey(args: readonly unknown[], method: string): string {
  let end = args.length;
  while (end > 0 && args[end - 1] === undefined) end -= 1;
  let key = '';
  for (let i = 0; i < end; i++) {
    const arg = args[i];
    // The usual argument, an id, costs no bookkeeping for cycles.
    const part =
      typeof arg === 'string'
        ? JSON.stringify(arg)
        : keyOf(arg, method, `argument ${i + 1}`, typeof arg === 'object' ? new Set() : NO_OBJECTS);
    key = i === 0 ? part : `${key},${part}`;
  }
  return key;
}

/** What a primitive argument passes as its objects seen so far: it has none, and adds none. */
const NO_OBJECTS: Set<object> = new Set();

function keyOf(value: unknown, method: string, path: string, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value); // NaN, Infinity and -0 stay apart
    case 'boolean':
      return String(value);
    case 'bigint':
      return `${value}n`;
    case 'undefined':
      return 'undefined';
    case 'object':
      break;
    default:
      throw new UnkeyableArgumentError(messages.unkeyableArgument(method, path, typeof value));
  }
  if (value === null) return 'null';
  if (seen.has(value))
    throw new UnkeyableArgumentError(messages.unkeyableArgument(method, path, 'a cycle'));
  seen.add(value);
  try {
    if (value instanceof Date)
      return `Date(${Number.isNaN(value.getTime()) ? 'invalid' : value.toISOString()})`;
    if (Array.isArray(value)) {
      return `[${value.map((item, i) => keyOf(item, method, `${path}[${i}]`, seen)).join(',')}]`;
    }
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      return `json:${keyOf(toJSON.call(value), method, `${path}.toJSON()`, seen)}`;
    }
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      const kind = proto?.constructor?.name
        ? `an instance of ${proto.constructor.name}`
        : 'an object with a prototype';
      throw new UnkeyableArgumentError(
        messages.unkeyableArgument(method, path, `${kind} without toJSON()`),
      );
    }
    if (Object.getOwnPropertySymbols(value).length > 0) {
      throw new UnkeyableArgumentError(
        messages.unkeyableArgument(method, path, 'an object with symbol keys'),
      );
    }
    const keys = Object.keys(value).sort();
    const fields = keys.map(
      (key) =>
        `${JSON.stringify(key)}:${keyOf((value as Record<string, unknown>)[key], method, `${path}.${key}`, seen)}`,
    );
    return `{${fields.join(',')}}`;
  } finally {
    seen.delete(value);
  }
}
