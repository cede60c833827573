import { randomInt } from 'node:crypto';
import type { Keyv, KeyvOptions, KeyvStoreAdapter } from 'keyv';
import { BaseCache, type BaseCacheOptions, type DriverContext } from '../base-cache.js';
import { SCAN_BATCH } from '../cache.constants.js';
import type { CacheDriver, DriverEntry, Step } from '../driver.js';
import { CacheConfigError } from '../errors.js';
import { describe, messages, reasonOf } from '../messages.js';
import { noop, settleWithin } from '../settle-within.js';

/** A Keyv instance, or what `new Keyv(store)` accepts as a store. */
export type KeyvStore = Keyv | KeyvStoreAdapter | Map<unknown, unknown>;

/** Options of the keyv backend (CacheModule option "keyv"). */
export interface KeyvCacheOptions {
  /**
   * Where entries live, as you would list it in `stores` of @nestjs/cache-manager:
   * - a Keyv storage adapter: `new KeyvRedis(url)`, `new KeyvPostgres({ uri })`, `new KeyvSqlite(...)`,
   *   `new KeyvMongo(...)`... (the bridge wraps it in a Keyv of its own, Keyv's default namespace 'keyv');
   * - a Keyv instance: `new Keyv({ store, namespace })`, `createKeyv(url)`. Its store, namespace,
   *   key prefixing, serializer and compression are used; its default ttl, hooks and error
   *   handling are not (nest-cache gives every entry its ttl, and must see every failure);
   * - a Map: Keyv's in-memory store (this process only, never evicted: for tests).
   * Required: for an in-process cache, use backend 'memory'.
   */
  store: KeyvStore;
  /**
   * Whether close() (at application shutdown) disconnects the store (its `disconnect()`).
   * @default true, as @nestjs/cache-manager does with its stores: the store is usually made for
   * this cache in the module's factory. Set false when other code shares the store and
   * disconnects it itself (@keyv/postgres, say, shares one pool per URI in the process).
   */
  disconnect?: boolean;
}

type KeyvConstructor = new (options?: KeyvOptions) => Keyv;

/** A store, planned: the Keyv the driver talks to, and what it may say in logs. */
export interface KeyvConnection {
  /** The bridge's own Keyv, around the store (throwOnErrors: every failure reaches the cache). */
  keyv: Keyv;
  /** Whether close() disconnects the store. */
  disconnect: boolean;
  /** The store's name in log lines: 'KeyvRedis', 'Map'... */
  storeName: string;
  /** Passwords found in the store's options: scrubbed from every log line. */
  secrets: string[];
}

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

/**
 * The bridge to any Keyv storage adapter. Entries go through a Keyv of its own (namespace, the
 * `{ value, expires }` wrapper and serialization are Keyv's), each value carrying its expiry by
 * the cache's clock: Keyv's and the store's own expiry (real time, the same ttl) only reclaim.
 *
 * Stores Keyv can iterate (Map, redis, postgres, sqlite, mysql, mongo, etcd, valkey) implement
 * scan. The others cannot list keys: clear() moves the cache to a new generation instead (a record
 * beside the namespace, read with every value), and older entries are misses until their
 * ttl reclaims them. Counters and tag records use BaseCache's fallbacks: atomic within one
 * process, not across processes (no Keyv store offers a read-modify-write).
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
  /** Where it cannot: clear() starts a new generation. */
  readonly clear?: () => Promise<void>;
  /** The record of the current generation (no ':' in it: never one of a cache's keys). */
  private readonly generationKey: string;
  /** The generation this process last read or wrote; undefined until then, or where keys are listed. */
  private generation: number | undefined;
  private generationLoad?: Promise<number>;
  /** Writes in progress, by key; see inOrder(). */
  private readonly writing = new Map<string, Promise<void>>();
  private readonly onError = (error: unknown) => {
    this.context.warn(messages.keyvStoreFailed(this.connection.storeName, this.reasonOf(error)));
  };

  constructor(
    private readonly connection: KeyvConnection,
    private readonly context: DriverContext,
  ) {
    this.keyv = connection.keyv;
    this.keyv.on('error', this.onError);
    this.generationKey = `${context.keyPrefix}%g`;
    if (this.keyv.iterator) this.scan = (prefix, _pattern, step) => this.keysUnder(prefix, step);
    else this.clear = () => this.startGeneration().then(noop);
  }

  async get(key: string): Promise<Buffer | undefined> {
    const [found] = await this.readMany([key]);
    return found?.bytes;
  }

  async getMany(keys: string[]): Promise<(Buffer | undefined)[]> {
    if (keys.length === 0) return [];
    return (await this.readMany(keys)).map((found) => found?.bytes);
  }

  set(key: string, bytes: Uint8Array, ttlMs: number | null): Promise<boolean> {
    const expiresAt = this.expiryOf(ttlMs);
    return this.inOrder([key], async () => {
      const value = encodeValue(bytes, expiresAt, await this.writeGeneration());
      return this.keyv.set(storeKey(key), value, keyvTtl(ttlMs));
    });
  }

  /** Keyv's setMany: one round trip where the store has one (redis MULTI, postgres one INSERT). */
  setMany(entries: DriverEntry[]): Promise<boolean> {
    if (entries.length === 0) return Promise.resolve(true);
    const expiries = entries.map(({ ttlMs }) => this.expiryOf(ttlMs));
    return this.inOrder(
      entries.map(({ key }) => key),
      async () => {
        const generation = await this.writeGeneration();
        const results: unknown = await this.keyv.setMany(
          entries.map(({ key, bytes, ttlMs }, i) => ({
            key: storeKey(key),
            value: encodeValue(bytes, expiries[i]!, generation),
            ttl: keyvTtl(ttlMs),
          })),
        );
        // Keyv resolves what the store's setMany does: booleans, or nothing (it threw otherwise).
        return !Array.isArray(results) || results.every((stored) => stored !== false);
      },
    );
  }

  /** How many keys the store deleted (one Keyv delete each: its deleteMany says no count). */
  delete(keys: string[]): Promise<number> {
    return this.inOrder(keys, async () => {
      const deleted = await Promise.all(keys.map((key) => this.keyv.delete(storeKey(key))));
      return deleted.filter(Boolean).length;
    });
  }

  async ttl(key: string): Promise<number | null | undefined> {
    const [found] = await this.readMany([key]);
    if (!found) return undefined;
    return found.expiresAt === Infinity ? null : found.expiresAt - this.context.clock.now();
  }

  /** Disconnects the store unless told not to (see KeyvCacheOptions.disconnect). */
  async close(): Promise<void> {
    try {
      if (this.connection.disconnect) await this.keyv.disconnect();
    } finally {
      this.keyv.off('error', this.onError);
    }
  }

  /**
   * The keys under `prefix`, in batches, from the store's iterator (each step bounded). The
   * iterator hands keys as Keyv stored them: with Keyv's namespace, which is stripped here.
   */
  private async *keysUnder(prefix: string, step: Step): AsyncIterable<string[]> {
    const { keyv } = this;
    const store = keyv.store as KeyvStoreAdapter | Map<unknown, unknown>;
    const namespace = keyv.useKeyPrefix && keyv.namespace ? `${keyv.namespace}:` : '';
    const own = (stored: unknown): string | undefined => {
      if (typeof stored !== 'string' || !stored.startsWith(namespace)) return undefined;
      const key = fromStoreKey(stored.slice(namespace.length));
      return key.startsWith(prefix) ? key : undefined;
    };
    if (store instanceof Map) {
      // A snapshot: the caller deletes while it walks.
      const keys = [...store.keys()].map(own).filter((key): key is string => key !== undefined);
      for (let i = 0; i < keys.length; i += SCAN_BATCH) yield keys.slice(i, i + SCAN_BATCH);
      return;
    }
    const entries = store.iterator!(store.namespace)[Symbol.asyncIterator]();
    let batch: string[] = [];
    try {
      for (;;) {
        const next = await step(entries.next());
        if (next.done) break;
        const key = own((next.value as unknown[])[0]);
        if (key !== undefined) batch.push(key);
        if (batch.length >= SCAN_BATCH) {
          yield batch;
          batch = [];
        }
      }
    } finally {
      // Given up (a step timed out, the caller stopped): release the iterator, never wait on it.
      void Promise.resolve(entries.return?.()).catch(noop);
    }
    if (batch.length > 0) yield batch;
  }

  /** The live values of `keys` (a miss where missing, expired by the cache's clock, or of an older generation). */
  private async readMany(keys: string[]): Promise<(Decoded | undefined)[]> {
    const writes = this.writesOf(keys);
    if (writes) await writes;
    const stored = keys.map(storeKey);
    const now = this.context.clock.now();
    if (this.clear === undefined) {
      const values = await this.fetch(stored);
      return values.map((value) => live(decodeValue(value), now, 0));
    }
    // No key listing: the generation record comes with the values, in the same round trip.
    const [record, ...values] = await this.fetch([this.generationKey, ...stored]);
    const generation = parseGeneration(record) ?? (await this.startGeneration());
    this.generation = generation;
    return values.map((value) => live(decodeValue(value), now, generation));
  }

  /**
   * The stored values of `keys`: one getMany where the store has one, else one get each (Keyv's
   * own getMany would then turn a failed read into a silent miss).
   */
  private fetch(keys: string[]): Promise<unknown[]> {
    const store = this.keyv.store as Partial<KeyvStoreAdapter>;
    if (keys.length > 1 && typeof store.getMany === 'function' && !(store instanceof Map)) {
      return this.keyv.getMany<unknown>(keys);
    }
    return Promise.all(keys.map((key) => this.keyv.get<unknown>(key)));
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

  /** The generation a write carries: 0 where keys are listed, else the latest one this process saw. */
  private async writeGeneration(): Promise<number> {
    if (this.clear === undefined) return 0;
    if (this.generation !== undefined) return this.generation;
    const record = await this.keyv.get<unknown>(this.generationKey);
    this.generation = parseGeneration(record) ?? (await this.startGeneration());
    return this.generation;
  }

  /**
   * Writes a new generation (on clear(), or when the record is missing): every value of an older
   * one is a miss from now on, in every process, at its next read. Concurrent starts in this
   * process share one write.
   */
  private startGeneration(): Promise<number> {
    this.generationLoad ??= (async () => {
      try {
        const generation = randomInt(1, 2 ** 32);
        // 0: never expires, whatever default ttl the store has.
        await this.keyv.set(this.generationKey, String(generation), 0);
        this.generation = generation;
        return generation;
      } finally {
        this.generationLoad = undefined;
      }
    })();
    return this.generationLoad;
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

/** Keyv's ttl for ours: whole ms, or 0 for never (undefined would get a Keyv default ttl). */
function keyvTtl(ttlMs: number | null): number {
  return ttlMs ?? 0;
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
   * optional peer dependency). Opens nothing itself: an adapter connects as it always does.
   * Throws CacheConfigError for a missing or malformed store, or when keyv is not installed.
   */
  static async create(
    options: BaseCacheOptions & { keyv?: KeyvCacheOptions } = {},
  ): Promise<KeyvCache> {
    return new KeyvCache(options, await planKeyv(options.keyv));
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

/**
 * Loads keyv, an optional peer dependency, when the keyv backend is chosen. `importer` is
 * replaceable so the "not installed" message can be tested with keyv installed.
 */
export async function loadKeyv(
  importer: () => Promise<unknown> = () => import('keyv'),
): Promise<KeyvConstructor> {
  let loaded: unknown;
  try {
    loaded = await importer();
  } catch (error) {
    if (isKeyvMissing(error)) throw new CacheConfigError(messages.keyvMissing(), { cause: error });
    throw error;
  }
  const module = loaded as { Keyv?: unknown; default?: unknown };
  const Keyv = module.Keyv ?? module.default;
  if (typeof Keyv !== 'function') throw new CacheConfigError(messages.keyvMissing());
  return Keyv as KeyvConstructor;
}

/** Validates options.keyv and builds the bridge's Keyv around its store. */
export async function planKeyv(
  options: KeyvCacheOptions | undefined,
  importer?: () => Promise<unknown>,
): Promise<KeyvConnection> {
  if (options === undefined) throw new CacheConfigError(messages.keyvStoreMissing());
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new CacheConfigError(
      messages.invalidOption(
        'keyv',
        options,
        'Use { store }, the store being a Keyv storage adapter or a Keyv instance.',
      ),
    );
  }
  const { store, disconnect = true } = options;
  if (typeof disconnect !== 'boolean') {
    throw new CacheConfigError(
      messages.invalidOption('keyv.disconnect', disconnect, 'Use true (the default) or false.'),
    );
  }
  if (store === undefined) throw new CacheConfigError(messages.keyvStoreMissing());
  const adopted = isKeyvInstance(store);
  const adapter = adopted ? (store.store as unknown) : store;
  if (!isStore(adapter)) {
    throw new CacheConfigError(messages.keyvInvalidStore(describe(store)));
  }
  const Keyv = await loadKeyv(importer);
  // A Keyv of ours around the store: every failure rejects (throwOnErrors), and no default ttl
  // applies. An adopted instance lends its namespace, key prefixing, serializer and compression.
  const settings: KeyvOptions = adopted
    ? {
        namespace: store.namespace,
        useKeyPrefix: store.useKeyPrefix,
        serialize: store.serialize,
        deserialize: store.deserialize,
        compression: store.compression,
      }
    : {};
  let keyv: Keyv;
  try {
    keyv = new Keyv({ ...settings, store: adapter, emitErrors: true, throwOnErrors: true });
  } catch (error) {
    throw new CacheConfigError(
      messages.keyvInvalidStore(`${describe(store)} (${reasonOf(error)})`),
      {
        cause: error,
      },
    );
  }
  return {
    keyv,
    disconnect,
    storeName: adapter instanceof Map ? 'Map' : (adapter.constructor?.name ?? 'store'),
    secrets: secretsOf(adapter),
  };
}

/** Like @nestjs/cache-manager: a Keyv instance by its shape, since two copies of keyv fail instanceof. */
function isKeyvInstance(store: unknown): store is Keyv {
  const s = store as Partial<Keyv> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    'opts' in s &&
    'hooks' in s &&
    'stats' in s &&
    typeof s.get === 'function' &&
    typeof s.set === 'function' &&
    typeof s.disconnect === 'function' &&
    typeof (s as { getMany?: unknown }).getMany === 'function'
  );
}

/** What Keyv accepts as a store (its own check, so that a bad store fails here, not inside Keyv). */
function isStore(store: unknown): store is KeyvStoreAdapter | Map<unknown, unknown> {
  if (store instanceof Map) return true;
  const s = store as Partial<KeyvStoreAdapter> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    ['get', 'set', 'delete', 'clear'].every(
      (m) => typeof (s as Record<string, unknown>)[m] === 'function',
    )
  );
}

/** Passwords in the adapter's options (a URL's, or a password field): kept out of log lines. */
function secretsOf(store: KeyvStoreAdapter | Map<unknown, unknown>): string[] {
  if (store instanceof Map) return [];
  let opts: Record<string, unknown> = {};
  try {
    opts = (store.opts ?? {}) as Record<string, unknown>;
  } catch {
    // an adapter whose opts getter throws has nothing to scrub
  }
  const secrets: string[] = [];
  for (const field of ['url', 'uri', 'connectionString']) {
    const url = opts[field];
    if (typeof url !== 'string') continue;
    try {
      const { password } = new URL(url);
      if (password) secrets.push(decodeURIComponent(password));
    } catch {
      // not a URL: nothing to take from it
    }
  }
  if (typeof opts.password === 'string' && opts.password) secrets.push(opts.password);
  return secrets;
}

function isKeyvMissing(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    /['"]keyv['"]/.test(message)
  );
}
