import { randomInt } from 'node:crypto';
import type { Keyv } from 'keyv';
import { BaseCache, type BaseCacheOptions, type DriverContext } from '../base-cache.js';
import { SCAN_BATCH } from '../cache.constants.js';
import type { CacheDriver, DriverEntry, Step } from '../driver.js';
import { messages, reasonOf } from '../messages.js';
import { noop, settleWithin } from '../settle-within.js';
import { Generations } from './generations.js';
import { type KeyvCacheOptions, type KeyvConnection, planKeyv } from './keyv.connection.js';

export {
  type KeyvCacheOptions,
  type KeyvConnection,
  type KeyvStore,
  loadKeyv,
  planKeyv,
} from './keyv.connection.js';

/**
 * Layout of a value the bridge hands Keyv: base64 of
 *   0x6b ('k'), VALUE_FORMAT, expiresAt (float64 LE, the cache's clock; Infinity: never),
 *   generation (uint32 LE; 0 where the store lists its keys), then the driver's bytes.
 * A string, so that every Keyv serializer and text column keeps it exactly (no NUL reaches a
 * PostgreSQL TEXT), and base64 once: never a JSON encoding of JSON.
 */
const VALUE_MAGIC = 0x6b;
const VALUE_FORMAT = 1;
const VALUE_HEADER = 14;
/** A key's NUL is escaped in the store (PostgreSQL text holds none), with SOH as the escape. */
const NUL = '\0';
const SOH = '\u0001';
/** How long create() waits for the store's first answer at most (an adapter connects on its first call). */
const MAX_FIRST_ATTEMPT_MS = 2_000;

/** A write the driver was handed, with its expiry by the cache's clock (taken when it was called). */
interface Pending extends DriverEntry {
  expiresAt: number;
}

/**
 * Namespace generations for a store whose keys the bridge cannot list (see Generations): each
 * value carries the generation of its scope in its header, and every read fetches the records
 * along with its values.
 */
class KeyvGenerations extends Generations<number> {
  constructor(
    keyPrefix: string,
    private readonly keyv: Keyv,
    private readonly fetch: (storedKeys: string[]) => Promise<unknown[]>,
  ) {
    super(keyPrefix);
  }

  /** The scopes of `keys`, each once. */
  scopesOf(keys: string[]): string[] {
    return [...new Set(keys.map((key) => this.scopeOf(key)))];
  }

  /** The stored keys of the records of `scopes`. */
  recordKeys(scopes: string[]): string[] {
    return scopes.map((scope) => storeKey(this.recordName(scope)));
  }

  /** Takes the records read (in the order of `scopes`): each scope's current generation. */
  async adoptAll(scopes: string[], records: unknown[]): Promise<Map<string, number>> {
    const current = await Promise.all(
      scopes.map((scope, i) => this.adopt(scope, parseGeneration(records[i]))),
    );
    return new Map(scopes.map((scope, i) => [scope, current[i]!]));
  }

  /** The generation each scope's writes carry: as last seen, else read (one round trip). */
  async current(scopes: string[]): Promise<Map<string, number>> {
    const unknown = scopes.filter((scope) => !this.known.has(scope));
    const read = unknown.length > 0 ? await this.readAll(unknown) : undefined;
    return new Map(scopes.map((scope) => [scope, read?.get(scope) ?? this.known.get(scope)!]));
  }

  /** What the records of `scopes` hold now (one round trip). */
  async readAll(scopes: string[]): Promise<Map<string, number>> {
    return this.adoptAll(scopes, await this.fetch(this.recordKeys(scopes)));
  }

  protected fresh(previous: number | undefined): number {
    let generation: number;
    do generation = randomInt(1, 2 ** 32);
    while (generation === previous);
    return generation;
  }

  protected async write(scope: string, generation: number): Promise<void> {
    // 0: never expires, whatever default ttl the store has.
    await this.keyv.set(storeKey(this.recordName(scope)), String(generation), 0);
  }

  /** A missing or foreign record is replaced by a fresh generation. */
  protected async obtain(scope: string, previous: number | undefined): Promise<number> {
    const generation = this.fresh(previous);
    await this.write(scope, generation);
    return generation;
  }
}

/**
 * The bridge to any Keyv storage adapter. Entries go through a Keyv of its own (namespace, the
 * `{ value, expires }` wrapper and serialization are Keyv's), each value carrying its expiry by
 * the cache's clock: Keyv's and the store's own expiry (real time, the same ttl) only reclaim.
 *
 * A store whose keys the bridge can list exactly (a Map; an iterable adapter, as redis, postgres,
 * sqlite, mysql, mongo, under a Keyv namespace: see keyListing()) implements scan. The others
 * clear with generations (see generations.ts). Counters and tag records use BaseCache's fallbacks:
 * atomic within one process, not across processes (no Keyv store offers a read-modify-write).
 *
 * A call fails when the store reported an error while it ran, even if the adapter answered as
 * if all went well (see checked()).
 */
export class KeyvDriver implements CacheDriver {
  readonly name = 'keyv';
  /** The Keyv the driver talks to (its own, around your store). */
  readonly keyv: Keyv;
  /** Where the store lists its keys. */
  readonly scan?: (
    prefix: string,
    pattern: string | undefined,
    step: Step,
  ) => AsyncIterable<string[]>;
  /** Where it cannot: clear() starts a new generation of each scope named. */
  readonly clear?: (prefixes: string[]) => Promise<void>;
  private readonly generations?: KeyvGenerations;
  /** Writes in progress, by key; see inOrder(). */
  private readonly writing = new Map<string, Promise<void>>();
  /** How many 'error' events the store has reported, and the last one, scrubbed; see checked(). */
  private errorsSeen = 0;
  private lastError = '';
  private readonly onError = (error: unknown) => {
    this.errorsSeen += 1;
    this.lastError = this.reasonOf(error);
    this.context.warn(messages.keyvStoreFailed(this.connection.storeName, this.lastError));
  };

  constructor(
    private readonly connection: KeyvConnection,
    private readonly context: DriverContext,
  ) {
    this.keyv = connection.keyv;
    this.keyv.on('error', this.onError);
    const { listKeys } = connection;
    if (listKeys) {
      this.scan = (prefix, _pattern, step) => this.keysUnder(listKeys, prefix, step);
    } else {
      const generations = new KeyvGenerations(context.keyPrefix, this.keyv, (keys) =>
        this.fetch(keys),
      );
      this.generations = generations;
      this.clear = (prefixes) =>
        this.checked(async () => {
          await Promise.all(prefixes.map((prefix) => generations.renew(prefix)));
        });
    }
  }

  /**
   * Makes the store's first call (an adapter connects then: @keyv/redis without an offline queue
   * refuses the calls made while it connects), and learns the generations, at most
   * MAX_FIRST_ATTEMPT_MS (or operationTimeout). A failure is only logged: the cache fails open.
   */
  async firstAttempt(): Promise<void> {
    const { generations } = this;
    const first = generations
      ? generations.current(['', '%t'])
      : this.keyv.get(storeKey(`${this.context.keyPrefix}%g`));
    await settleWithin(first, Math.min(this.context.operationTimeoutMs, MAX_FIRST_ATTEMPT_MS));
  }

  async get(key: string): Promise<Buffer | undefined> {
    const [found] = await this.checked(() => this.readMany([key]));
    return found?.bytes;
  }

  async getMany(keys: string[]): Promise<(Buffer | undefined)[]> {
    if (keys.length === 0) return [];
    return (await this.checked(() => this.readMany(keys))).map((found) => found?.bytes);
  }

  set(key: string, bytes: Uint8Array, ttlMs: number | null): Promise<boolean> {
    return this.write([{ key, bytes, ttlMs, expiresAt: this.expiryOf(ttlMs) }]);
  }

  /** Keyv's setMany: one round trip where the store has one (redis MULTI, postgres one INSERT). */
  setMany(entries: DriverEntry[]): Promise<boolean> {
    if (entries.length === 0) return Promise.resolve(true);
    return this.write(
      entries.map((entry) => ({ ...entry, expiresAt: this.expiryOf(entry.ttlMs) })),
    );
  }

  /** How many keys the store deleted (one Keyv delete each: its deleteMany says no count). */
  delete(keys: string[]): Promise<number> {
    return this.checked(() =>
      this.inOrder(keys, async () => {
        const deleted = await Promise.all(keys.map((key) => this.keyv.delete(storeKey(key))));
        return deleted.filter(Boolean).length;
      }),
    );
  }

  async ttl(key: string): Promise<number | null | undefined> {
    const [found] = await this.checked(() => this.readMany([key]));
    if (!found) return undefined;
    return found.expiresAt === Infinity ? null : found.expiresAt - this.context.clock.now();
  }

  /** Disconnects the store unless told not to (see KeyvCacheOptions.disconnect), and gives it back as it was. */
  async close(): Promise<void> {
    try {
      if (this.connection.disconnect) await this.keyv.disconnect();
    } finally {
      this.keyv.off('error', this.onError);
      this.connection.release();
    }
  }

  /**
   * Runs a call, failing it when the store reported an error while it ran: adapters that swallow
   * their failures (@keyv/postgres's iterator, @keyv/redis without throwOnErrors) answer as if all
   * went well and say so only by an 'error' event. An event of a concurrent call fails this one
   * too: a miss or a dropped write more, never a failure unseen.
   */
  private async checked<T>(call: () => Promise<T>): Promise<T> {
    const before = this.errorsSeen;
    const result = await call();
    this.assertNoErrorSince(before);
    return result;
  }

  private assertNoErrorSince(before: number): void {
    if (this.errorsSeen === before) return;
    throw new Error(messages.keyvCallFailed(this.connection.storeName, this.lastError));
  }

  /**
   * The keys under `prefix`, in batches, from the store's listing (each step bounded). The listing
   * hands keys as Keyv stored them: with Keyv's namespace, which is stripped here.
   */
  private async *keysUnder(
    listKeys: NonNullable<KeyvConnection['listKeys']>,
    prefix: string,
    step: Step,
  ): AsyncIterable<string[]> {
    const { keyv } = this;
    const namespace = keyv.useKeyPrefix && keyv.namespace ? `${keyv.namespace}:` : '';
    const before = this.errorsSeen;
    const listing = listKeys();
    let batch: string[] = [];
    try {
      for (;;) {
        const next = await step(listing.next());
        // @keyv/postgres's iterator ends early on a failure, as if it had listed every key.
        this.assertNoErrorSince(before);
        if (next.done) break;
        for (const stored of next.value) {
          if (typeof stored !== 'string' || !stored.startsWith(namespace)) continue;
          const key = fromStoreKey(stored.slice(namespace.length));
          if (key.startsWith(prefix)) batch.push(key);
        }
        if (batch.length >= SCAN_BATCH) {
          yield batch;
          batch = [];
        }
      }
    } finally {
      // Given up (a step timed out, the caller stopped): release the listing, never wait on it.
      void Promise.resolve(listing.return?.()).catch(noop);
    }
    if (batch.length > 0) yield batch;
  }

  /** The live values of `keys` (a miss where missing, expired by the cache's clock, or of an older generation). */
  private async readMany(keys: string[]): Promise<(Decoded | undefined)[]> {
    const writes = this.writesOf(keys);
    if (writes) await writes;
    const stored = keys.map(storeKey);
    const now = this.context.clock.now();
    const { generations } = this;
    if (!generations) {
      return (await this.fetch(stored)).map((value) => live(decodeValue(value), now, 0));
    }
    // The generation records come with the values, in the same round trip.
    const scopes = generations.scopesOf(keys);
    const values = await this.fetch([...generations.recordKeys(scopes), ...stored]);
    const current = await generations.adoptAll(scopes, values);
    return values
      .slice(scopes.length)
      .map((value, i) =>
        live(decodeValue(value), now, current.get(generations.scopeOf(keys[i]!))!),
      );
  }

  /**
   * The stored values of `keys`: one getMany where the store has one, else one get each (Keyv's
   * own getMany would then turn a failed read into a silent miss).
   */
  private fetch(keys: string[]): Promise<unknown[]> {
    const { store } = this.keyv;
    if (keys.length > 1 && typeof store.getMany === 'function' && !(store instanceof Map)) {
      return this.keyv.getMany<unknown>(keys);
    }
    return Promise.all(keys.map((key) => this.keyv.get<unknown>(key)));
  }

  /**
   * Writes the entries (after the writes of their keys in progress) under their scope's
   * generation; where a clear moved a scope meanwhile, writes its entries again under the new one
   * when Generations.mustRedo() says so.
   */
  private write(entries: Pending[]): Promise<boolean> {
    const keys = entries.map(({ key }) => key);
    const { generations } = this;
    const renewals = generations?.renewals ?? 0;
    return this.checked(() =>
      this.inOrder(keys, async () => {
        if (!generations) return this.put(entries, () => 0);
        const scopes = generations.scopesOf(keys);
        const used = await generations.current(scopes);
        const stored = await this.put(entries, (key) => used.get(generations.scopeOf(key))!);
        const now = await generations.readAll(scopes);
        const again = entries.filter(({ key }) => {
          const scope = generations.scopeOf(key);
          return generations.mustRedo(used.get(scope)!, now.get(scope)!, renewals);
        });
        if (again.length === 0) return stored;
        return (await this.put(again, (key) => now.get(generations.scopeOf(key))!)) && stored;
      }),
    );
  }

  /** One Keyv set, or one setMany: whether the store took every entry. */
  private async put(entries: Pending[], generationOf: (key: string) => number): Promise<boolean> {
    const values = entries.map(({ key, bytes, ttlMs, expiresAt }) => ({
      key: storeKey(key),
      value: encodeValue(bytes, expiresAt, generationOf(key)),
      // Keyv's ttl: whole ms, or 0 for never (undefined would get a Keyv default ttl).
      ttl: ttlMs ?? 0,
    }));
    if (values.length === 1) {
      const [{ key, value, ttl }] = values as [(typeof values)[0]];
      return this.keyv.set(key, value, ttl);
    }
    const results: unknown = await this.keyv.setMany(values);
    // Keyv resolves what the store's setMany does: booleans, or nothing (it threw otherwise).
    return !Array.isArray(results) || results.every((ok) => ok !== false);
  }

  /** A value's expiry by the cache's clock, taken when the driver is called. */
  private expiryOf(ttlMs: number | null): number {
    return ttlMs === null ? Infinity : this.context.clock.now() + ttlMs;
  }

  /**
   * Runs a write of `keys` once the writes of those keys before it have settled, and makes the
   * reads after it wait for it: a read or write reaches the store after every earlier write of its
   * key (as commands on one Redis connection do), however many turns Keyv takes before it calls
   * the store. Each wait lasts operationTimeout at most, so a write that never settles holds
   * nothing for longer.
   */
  private inOrder<T>(keys: string[], write: () => Promise<T>): Promise<T> {
    const before = this.writesOf(keys);
    const work = before ? before.then(write) : write();
    const settled = work.then(noop, noop);
    for (const key of keys) this.writing.set(key, settled);
    void settled.then(() => {
      for (const key of keys) if (this.writing.get(key) === settled) this.writing.delete(key);
    });
    return work;
  }

  /** Settles once the writes in progress of `keys` have (operationTimeout at most); undefined when there are none. */
  private writesOf(keys: string[]): Promise<void> | undefined {
    if (this.writing.size === 0) return undefined;
    const pending = new Set<Promise<void>>();
    for (const key of keys) {
      const write = this.writing.get(key);
      if (write) pending.add(write);
    }
    if (pending.size === 0) return undefined;
    return settleWithin(Promise.all(pending), this.context.operationTimeoutMs);
  }

  /** An error's message for a log line, with the store's passwords and URL user info scrubbed out. */
  private reasonOf(error: unknown): string {
    let reason = reasonOf(error).replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, '$1***@');
    for (const secret of this.connection.secrets) reason = reason.split(secret).join('***');
    return reason;
  }
}

interface Decoded {
  expiresAt: number;
  generation: number;
  bytes: Buffer;
}

function encodeValue(bytes: Uint8Array, expiresAt: number, generation: number): string {
  const out = Buffer.allocUnsafe(VALUE_HEADER + bytes.byteLength);
  out[0] = VALUE_MAGIC;
  out[1] = VALUE_FORMAT;
  out.writeDoubleLE(expiresAt, 2);
  out.writeUInt32LE(generation, 10);
  out.set(bytes, VALUE_HEADER);
  return out.toString('base64');
}

function decodeValue(value: unknown): Decoded | undefined {
  if (typeof value !== 'string') return undefined;
  const buffer = Buffer.from(value, 'base64');
  if (buffer.byteLength < VALUE_HEADER || buffer[0] !== VALUE_MAGIC || buffer[1] !== VALUE_FORMAT) {
    return undefined;
  }
  return {
    expiresAt: buffer.readDoubleLE(2),
    generation: buffer.readUInt32LE(10),
    bytes: buffer.subarray(VALUE_HEADER),
  };
}

function live(found: Decoded | undefined, now: number, generation: number): Decoded | undefined {
  if (!found || found.generation !== generation || now >= found.expiresAt) return undefined;
  return found;
}

function parseGeneration(record: unknown): number | undefined {
  const generation = typeof record === 'string' ? Number(record) : NaN;
  return Number.isSafeInteger(generation) && generation > 0 ? generation : undefined;
}

/** The key as the store holds it: NUL and SOH escaped (SOH '0', SOH SOH), every other key as it is. */
function storeKey(key: string): string {
  if (!key.includes(NUL) && !key.includes(SOH)) return key;
  let out = '';
  for (const c of key) out += c === NUL ? `${SOH}0` : c === SOH ? `${SOH}${SOH}` : c;
  return out;
}

function fromStoreKey(stored: string): string {
  if (!stored.includes(SOH)) return stored;
  let out = '';
  for (let i = 0; i < stored.length; i += 1) {
    const c = stored[i]!;
    if (c !== SOH) out += c;
    else out += stored[++i] === '0' ? NUL : SOH;
  }
  return out;
}

/**
 * The keyv backend: BaseCache on a KeyvDriver.
 */
export class KeyvCache extends BaseCache {
  /**
   * Validates the options and wraps the store in a Keyv of the bridge's own (loading keyv, an
   * optional peer dependency), then makes the store's first call (at most 2 s; see
   * KeyvDriver.firstAttempt). Throws CacheConfigError for a missing or malformed store, or when
   * keyv is not installed.
   */
  static async create(
    options: BaseCacheOptions & { keyv?: KeyvCacheOptions } = {},
  ): Promise<KeyvCache> {
    const connection = await planKeyv(options.keyv);
    let cache: KeyvCache;
    try {
      cache = new KeyvCache(options, connection);
    } catch (error) {
      connection.release();
      throw error;
    }
    await cache.bridge.firstAttempt();
    return cache;
  }

  private readonly bridge: KeyvDriver;

  /** The Keyv the cache talks to: its own, around your store. */
  get keyv(): Keyv {
    return this.bridge.keyv;
  }

  protected constructor(options: BaseCacheOptions, connection: KeyvConnection) {
    let driver: KeyvDriver | undefined;
    super((context) => (driver = new KeyvDriver(connection, context)), options);
    this.bridge = driver!;
  }
}
