import { InvalidPatternError } from './errors.js';
import { messages } from './messages.js';

/** A deleteByPattern() glob, checked and compiled once. */
export interface Glob {
  /** Matches a whole key, as the user wrote it. */
  readonly regex: RegExp;
  /**
   * A Redis MATCH pattern that every matching key's stored form matches too (it may match more):
   * '?' and '[...]' become '*', since Redis matches UTF-8 bytes and the user's key is UTF-16.
   */
  readonly hint: string;
}

const REGEX_SYNTAX = /[\\^$.*+?()[\]{}|/]/g;
const REDIS_SYNTAX = /[*?[\]\\]/g;

/**
 * Compiles a glob in Redis' syntax: `*` any run of characters, `?` one character, `[abc]`, `[a-z]`,
 * `[^abc]` one character of (or not of) a set, `\` makes the next character literal.
 * Throws InvalidPatternError naming the problem.
 */
export function compileGlob(pattern: unknown): Glob {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw new InvalidPatternError(messages.invalidPattern(pattern, 'is not a non-empty string'));
  }
  const chars = [...pattern]; // code points: '?' matches one character, an emoji included
  let regex = '';
  let hint = '';
  const wild = () => {
    if (!hint.endsWith('*') || hint.endsWith('\\*')) hint += '*';
  };
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '*') {
      regex += '[^]*';
      wild();
    } else if (c === '?') {
      regex += '.';
      wild();
    } else if (c === '[') {
      const end = classEnd(chars, i, pattern);
      regex += classRegex(chars.slice(i + 1, end), pattern);
      wild();
      i = end;
    } else {
      let literal = c;
      if (c === '\\') {
        if (i + 1 >= chars.length) {
          throw new InvalidPatternError(
            messages.invalidPattern(pattern, "ends with '\\', which escapes nothing"),
          );
        }
        literal = chars[++i]!;
      }
      regex += literal.replace(REGEX_SYNTAX, '\\$&');
      hint += literal.replace(REDIS_SYNTAX, '\\$&');
    }
  }
  return { regex: new RegExp(`^${regex}$`, 'su'), hint };
}

/** Escapes Redis glob metacharacters, so that `text` matches only itself. */
export function escapeGlob(text: string): string {
  return text.replace(REDIS_SYNTAX, '\\$&');
}

function classEnd(chars: string[], open: number, pattern: string): number {
  for (let i = open + 1; i < chars.length; i++) {
    if (chars[i] === '\\') i += 1;
    else if (chars[i] === ']') {
      const empty = i === open + 1 || (i === open + 2 && chars[open + 1] === '^');
      if (empty)
        throw new InvalidPatternError(messages.invalidPattern(pattern, "has an empty '[]'"));
      return i;
    }
  }
  throw new InvalidPatternError(
    messages.invalidPattern(
      pattern,
      "has a '[' that is never closed; write '\\[' for a literal one",
    ),
  );
}

function classRegex(inner: string[], pattern: string): string {
  let out = '';
  let i = 0;
  if (inner[0] === '^') {
    out = '^';
    i = 1;
  }
  for (; i < inner.length; i++) {
    let c = inner[i]!;
    if (c === '\\') c = inner[++i] ?? '\\';
    if (inner[i + 1] === '-' && i + 2 < inner.length) {
      let to = inner[i + 2]!;
      let skip = 2;
      if (to === '\\') {
        to = inner[i + 3] ?? '\\';
        skip = 3;
      }
      if (to.codePointAt(0)! < c.codePointAt(0)!) {
        throw new InvalidPatternError(
          messages.invalidPattern(pattern, `has the range '${c}-${to}', whose ends are reversed`),
        );
      }
      out += `${escapeClass(c)}-${escapeClass(to)}`;
      i += skip;
    } else out += escapeClass(c);
  }
  return `[${out}]`;
}

function escapeClass(c: string): string {
  return /[\\\]^[-]/.test(c) ? `\\${c}` : c;
}
