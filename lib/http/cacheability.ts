import { validateHeaderName, validateHeaderValue } from 'node:http';
import {
  CREDENTIAL_HEADERS,
  UNSTORED_RESPONSE_HEADER_PREFIXES,
  UNSTORED_RESPONSE_HEADERS,
} from '../cache.constants.js';

/**
 * A body as the cache keeps it:
 * - `text`: what the client received (JSON, or the handler's string), replayed as it is, when
 *   CacheInterceptor is the outermost interceptor of the route: nothing else would run after it;
 * - `value`: what the handler returned, serialized the moment it returned (before any outer
 *   interceptor could change it) and replayed as a fresh copy of that value, so interceptors
 *   outside CacheInterceptor run on every HIT (a HIT never skips a masking or per-user step).
 */
export type CachedBody = { text: string } | { value: Uint8Array };

/**
 * The layout of response entries. Bump it when what an entry means changes: entries of another
 * layout are misses (and deleted), so an upgrade never replays what an older version stored (2:
 * byte entries hold the bytes sent, after every serialization hook).
 */
export const RESPONSE_ENTRY_FORMAT = 2;

/** A response as the cache stores and replays it. */
export interface CachedResponse {
  format: typeof RESPONSE_ENTRY_FORMAT;
  status: number;
  headers: Record<string, string | string[]>;
  body: CachedBody;
  /** When it was stored (ms since epoch), for the Age header. */
  storedAt: number;
}

/** What the interceptor knows of a response once it has been sent. */
export interface SentResponse {
  status: number;
  headers: Record<string, unknown>;
  /**
   * The body as it would be stored: the text the client received, or the handler's value;
   * undefined when it cannot be stored (a stream, a Buffer, empty, encoded after the handler).
   */
  body: CachedBody | undefined;
  /** The request headers the key includes; whyNotStorable refuses a Vary on any other. */
  keyedHeaders?: readonly string[];
}

/** Why a response was not stored; undefined when it may be. The one place these rules live. */
export function whyNotStorable(
  sent: SentResponse,
  statuses: readonly number[],
  keyedHeaders: readonly string[],
): string | undefined {
  if (sent.body === undefined)
    return 'the body is not text, JSON or plain data (a stream, a Buffer, a class instance, empty)';
  if (!statuses.includes(sent.status))
    return `status ${sent.status} is not one of ${statuses.join(', ')}`;
  if (sent.headers['set-cookie'] !== undefined) return 'it sets a cookie';
  const cacheControl = directives(sent.headers['cache-control']);
  for (const directive of ['private', 'no-store', 'no-cache']) {
    if (cacheControl.has(directive)) return `Cache-Control: ${directive}`;
  }
  for (const header of list(sent.headers['vary'])) {
    if (header === '*') return 'Vary: *';
    if (!keyedHeaders.includes(header)) {
      return `it varies on ${header}, which the key does not include (add @CacheVary('${header}'))`;
    }
  }
  return undefined;
}

/**
 * The headers an entry keeps, to replay: those the handler, the interceptors inside
 * CacheInterceptor and the framework's send set. Not kept: headers that were already set, with the
 * same value, before the handler ran (`before`: a middleware's or hook's, set again on every
 * request, such as a rate-limit count), and per-response, per-connection, tracing, rate-limit and
 * CORS headers (UNSTORED_RESPONSE_HEADERS). The ETag describes the exact bytes sent, so it is kept
 * only with a body replayed as that text (Express then skips hashing the body again on every HIT).
 */
export function storedHeaders(
  headers: Record<string, unknown>,
  body: CachedBody,
  before: Record<string, unknown> = {},
): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (
      value === undefined ||
      isPerRequestHeader(lower) ||
      (lower === 'etag' && !('text' in body)) ||
      sameHeader(before[lower], value)
    )
      continue;
    kept[lower] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return kept;
}

/** Lowercase header names and their values, as they are now: what storedHeaders() compares with. */
export function headersNow(headers: Record<string, unknown>): Record<string, unknown> {
  const now: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    now[name.toLowerCase()] = Array.isArray(value) ? [...value] : value;
  }
  return now;
}

function isPerRequestHeader(lower: string): boolean {
  return (
    UNSTORED_RESPONSE_HEADERS.has(lower) ||
    UNSTORED_RESPONSE_HEADER_PREFIXES.some((prefix) => lower.startsWith(prefix))
  );
}

function sameHeader(before: unknown, now: unknown): boolean {
  if (before === undefined) return false;
  if (Array.isArray(before) || Array.isArray(now)) {
    const a = ([] as unknown[]).concat(before).map(String);
    const b = ([] as unknown[]).concat(now).map(String);
    return a.length === b.length && a.every((item, i) => item === b[i]);
  }
  return String(before) === String(now);
}

/** The request headers the response says it varies on that the key does not include ('*' too). */
export function unkeyedVary(
  headers: Record<string, unknown>,
  keyedHeaders: readonly string[],
): string[] {
  return list(headers['vary']).filter((header) => !keyedHeaders.includes(header));
}

/** Whether `value` has the shape of an entry the interceptor stored: anything else is never replayed. */
export function isCachedResponse(value: unknown): value is CachedResponse {
  if (value === null || typeof value !== 'object') return false;
  const { format, status, headers, body, storedAt } = value as Partial<CachedResponse>;
  return (
    format === RESPONSE_ENTRY_FORMAT &&
    typeof status === 'number' &&
    Number.isInteger(status) &&
    status >= 200 &&
    status <= 599 &&
    isHeaderRecord(headers) &&
    typeof body === 'object' &&
    body !== null &&
    (('text' in body && typeof body.text === 'string') ||
      ('value' in body && body.value instanceof Uint8Array)) &&
    typeof storedAt === 'number' &&
    Number.isFinite(storedAt)
  );
}

/** Header names and values the framework can send (so replaying them never throws). */
function isHeaderRecord(headers: unknown): headers is Record<string, string | string[]> {
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return false;
  try {
    for (const [name, value] of Object.entries(headers)) {
      validateHeaderName(name);
      if (typeof value === 'string') {
        validateHeaderValue(name, value);
        continue;
      }
      if (!Array.isArray(value)) return false;
      for (const item of value) {
        if (typeof item !== 'string') return false;
        validateHeaderValue(name, item);
      }
    }
  } catch {
    return false;
  }
  return true;
}

/** Whether the request carries a credential header that the key does not include. */
export function hasUnkeyedCredentials(
  requestHeaders: Record<string, unknown>,
  keyedHeaders: readonly string[],
): boolean {
  for (const name of CREDENTIAL_HEADERS) {
    if (requestHeaders[name] !== undefined && !keyedHeaders.includes(name)) return true;
  }
  return false;
}

/** Whether the client asked for a fresh response (Cache-Control: no-cache, or Pragma: no-cache). */
export function clientWantsFresh(requestHeaders: Record<string, unknown>): boolean {
  return (
    directives(requestHeaders['cache-control']).has('no-cache') ||
    directives(requestHeaders['pragma']).has('no-cache')
  );
}

function directives(header: unknown): Set<string> {
  return new Set(list(header).map((directive) => directive.split('=')[0]!.trim()));
}

function list(header: unknown): string[] {
  if (header === undefined || header === null) return [];
  const text = Array.isArray(header) ? header.join(',') : String(header);
  return text
    .split(',')
    .map((part) => part.trim().toLowerCase())
    .filter(Boolean);
}
