import { CacheConfigError } from './errors.js';
import { messages } from './messages.js';

/**
 * Refuses the keys of an options object that it does not have: a misspelt option (`maxsize` for
 * `maxSize`) would otherwise be ignored, and its default used without a word.
 */
export function knownKeysOnly(option: string, value: object, known: readonly string[]): void {
  const unknown = Object.keys(value).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new CacheConfigError(messages.unknownOptionKeys(option, unknown, known));
  }
}
