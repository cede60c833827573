import { createHash } from 'node:crypto';

/** What a response's cache key is made of; built once per request by the interceptor. */
export interface RequestKeyParts {
  /** The route's @CacheKey name; the method and path otherwise. */
  name?: string;
  method: string;
  /** The path as the client sent it (not decoded, so /a%2Fb and /a/b never share an entry). */
  path: string;
  /** Route parameters, as the framework parsed them. */
  params: Record<string, unknown>;
  /** The query, as the framework parsed it. */
  query: Record<string, unknown>;
  /** Varied request headers: lowercase name and value (absent: undefined). */
  headers: [string, string | string[] | undefined][];
  /** Who is asking, for routes cached per user. */
  user?: string;
}

/** Header values that are secrets are keyed by hash, so a token never sits in a cache key. */
const HASHED_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);

/**
 * The one place a response cache key is built:
 * `http:GET:/products?color=red&size=2|accept-language=fr|user=#1a2b...`.
 * The query is in canonical order (names sorted; repeated values keep their order), so
 * `?b=1&a=2` and `?a=2&b=1` share an entry; different values never do.
 */
export function requestKey(parts: RequestKeyParts): string {
  const head =
    parts.name === undefined
      ? `${parts.method}:${parts.path}`
      : `${parts.name}:${canonical(parts.params)}`;
  let key = `http:${head}?${canonical(parts.query)}`;
  for (const [name, value] of parts.headers) {
    key += `|${name}=${HASHED_HEADERS.has(name) && value !== undefined ? hashed(String(value)) : canonicalValue(value)}`;
  }
  if (parts.user !== undefined) key += `|user=${hashed(parts.user)}`;
  return key;
}

/** name=value pairs sorted by name, URI-encoded so no value can forge a separator. */
function canonical(record: Record<string, unknown> | undefined): string {
  if (!record) return '';
  const names = Object.keys(record);
  // Most cached GETs have no query: spare them the sort, map and join.
  if (names.length === 0) return '';
  return names
    .sort()
    .map((name) => `${encodeURIComponent(name)}=${canonicalValue(record[name])}`)
    .join('&');
}

function canonicalValue(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return encodeURIComponent(value);
  if (Array.isArray(value)) return `[${value.map(canonicalValue).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${canonical(value as Record<string, unknown>)}}`;
  return encodeURIComponent(String(value));
}

function hashed(value: string): string {
  return `#${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;
}
