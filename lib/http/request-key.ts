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
  /** The API version(s) of the handler (URI, header or media-type versioning); a symbol is VERSION_NEUTRAL. */
  versions?: readonly (string | symbol)[];
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
  if (parts.versions !== undefined) {
    // '%N' for VERSION_NEUTRAL: encodeURIComponent never writes a '%' that is not followed by hex.
    const versions = parts.versions.map((v) =>
      typeof v === 'symbol' ? '%N' : encodeURIComponent(v),
    );
    key += `|version=${versions.join(',')}`;
  }
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
 * The content codings an Accept-Encoding accepts (q > 0), lowercase, with their q values (1
 * unsaid), in the client's order: everything a server chooses an encoding from, ties included.
 * `gzip, br` and `gzip;q=1, br` share an entry; `gzip, br` and `br, gzip` do not; `gzip;q=0` is
 * not gzip.
 */
function codings(header: string): string {
  const accepted: string[] = [];
  const seen = new Set<string>();
  for (const part of header.split(',')) {
    const [coding, ...params] = part.split(';').map((piece) => piece.trim().toLowerCase());
    if (!coding || seen.has(coding)) continue;
    seen.add(coding);
    const param = params.find((p) => p.startsWith('q='));
    const q = param === undefined ? 1 : Number(param.slice(2));
    if (q > 0) accepted.push(q === 1 ? coding : `${coding};q=${q}`);
  }
  return encodeURIComponent(accepted.join(','));
}

function hashed(value: string): string {
  return `#${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;
}
