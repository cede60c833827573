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
  /** The API version(s) of the handler (URI, header or media-type versioning). */
  version?: string;
  /** Varied request headers: lowercase name and value (absent: undefined). */
  headers: [string, string | string[] | undefined][];
  /** Who is asking, for routes cached per user. */
  user?: string;
}

/** Header values that are secrets are keyed by hash, so a token never sits in a cache key. */
const HASHED_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);

/**
 * The one place a response cache key is built:
 * `http:GET:/products?color=red&size=2|version=2|accept-language=fr|user=#1a2b...`.
 * The top-level query is in canonical order (names sorted), so `?b=1&a=2` and `?a=2&b=1` share an
 * entry; what is inside a parameter keeps its order (repeated values, and nested objects of an
 * extended parser: `sort[a]=1&sort[b]=1` and `sort[b]=1&sort[a]=1` differ); different values never
 * share one.
 */
export function requestKey(parts: RequestKeyParts): string {
  const head =
    parts.name === undefined
      ? `${parts.method}:${parts.path}`
      : `${parts.name}:${canonical(parts.params)}`;
  let key = `http:${head}?${canonical(parts.query)}`;
  if (parts.version !== undefined) key += `|version=${encodeURIComponent(parts.version)}`;
  for (const [name, value] of parts.headers) {
    key += `|${name}=${headerKey(name, value)}`;
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
  return pairs(record, names.sort());
}

function pairs(record: Record<string, unknown>, names: string[]): string {
  return names
    .map((name) => `${encodeURIComponent(name)}=${canonicalValue(record[name])}`)
    .join('&');
}

function canonicalValue(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return encodeURIComponent(value);
  if (Array.isArray(value)) return `[${value.map(canonicalValue).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    // Nested structures keep the order the client sent: it can be meaningful (a sort order).
    const record = value as Record<string, unknown>;
    return `{${pairs(record, Object.keys(record))}}`;
  }
  return encodeURIComponent(String(value));
}

function headerKey(name: string, value: string | string[] | undefined): string {
  if (value === undefined) return '';
  if (HASHED_HEADERS.has(name)) return hashed(String(value));
  if (name === 'accept-encoding') return codings(String(value));
  return canonicalValue(value);
}

/**
 * The content codings an Accept-Encoding accepts (q > 0), lowercase and sorted: what a server
 * chooses an encoding from. `gzip, br` and `br;q=1, gzip` share an entry; `gzip;q=0` is not gzip.
 */
function codings(header: string): string {
  const accepted = new Set<string>();
  for (const part of header.split(',')) {
    const [coding, ...params] = part.split(';').map((piece) => piece.trim().toLowerCase());
    if (!coding) continue;
    const q = params.find((param) => param.startsWith('q='));
    if (q !== undefined && !(Number(q.slice(2)) > 0)) continue;
    accepted.add(coding);
  }
  return encodeURIComponent([...accepted].sort().join(','));
}

function hashed(value: string): string {
  return `#${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;
}
