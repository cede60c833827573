import type { Keyv, KeyvOptions, KeyvStoreAdapter } from 'keyv';
import { SCAN_BATCH } from '../cache.constants.js';
import { CacheConfigError } from '../errors.js';
import { describe, messages, reasonOf } from '../messages.js';
import { knownKeysOnly } from '../option-keys.js';

/** A Keyv instance, or what `new Keyv(store)` accepts as a store. */
export type KeyvStore = Keyv | KeyvStoreAdapter | Map<unknown, unknown>;

/** Options of the keyv backend (CacheModule option "keyv"). */
export interface KeyvCacheOptions {
  /**
   * Where entries live, as you would list it in `stores` of @nestjs/cache-manager:
   * - a Keyv storage adapter: `new KeyvRedis(url)`, `new KeyvPostgres({ uri })`, `new KeyvSqlite(...)`,
   *   `new KeyvMongo(...)`... (the bridge wraps it in a Keyv of its own, Keyv's default namespace 'keyv',
   *   and turns on the adapter's `throwOnErrors` where it has one, until close());
   * - a Keyv instance: `new Keyv({ store, namespace })`, `createKeyv(url)`. Its store, namespace,
   *   key prefixing, serializer and compression are used; its default ttl, hooks and error
   *   handling are not (nest-cache gives every entry its ttl, and must see every failure);
   * - a Map: Keyv's in-memory store (this process only, never evicted: for tests).
   *
   * One adapter per cache: while the cache is open, its Keyv sets the adapter's namespace (Keyv
   * does that to every store it wraps), which would move the keys of another Keyv on the same
   * adapter. clear() and deleteByPattern() list keys through the adapter's iterator only under a
   * Keyv namespace with key prefixing (an adapter wrapped as is; `new Keyv({ store, namespace })`);
   * without one (`createKeyv(url)`), the iterator cannot tell this cache's keys from the rest of
   * the store, so clear() starts a new generation instead (see KeyvDriver).
   * Required: for an in-process cache, use backend 'memory'.
   */
  store: KeyvStore;
  /**
   * Whether close() (at application shutdown) disconnects the store (its `disconnect()`).
   * @default true, as @nestjs/cache-manager does with its stores: the store is usually made for
   * this cache in the module's factory. Set false when other code shares the store and
   * disconnects it itself (@keyv/postgres, say, ends the one pool it shares per process).
   */
  disconnect?: boolean;
}

type KeyvConstructor = new (options?: KeyvOptions) => Keyv;
type Adapter = KeyvStoreAdapter | Map<unknown, unknown>;

/** A store, planned: the Keyv the driver talks to, and what it may say in logs. */
export interface KeyvConnection {
  /** The bridge's own Keyv, around the store (throwOnErrors: every failure it sees reaches the cache). */
  keyv: Keyv;
  /** Whether close() disconnects the store. */
  disconnect: boolean;
  /** The store's name in log lines: 'KeyvRedis', 'Map'... */
  storeName: string;
  /** Passwords found in the store's options: scrubbed from every log line. */
  secrets: string[];
  /**
   * Every key of the store under the Keyv's namespace, as Keyv stored them, in batches; undefined
   * when the store cannot list them exactly (see keyListing()).
   */
  listKeys?: () => AsyncIterator<unknown[]>;
  /** Gives the adapter back as it was: the listener, namespace and throwOnErrors the bridge set. */
  release(): void;
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
  knownKeysOnly('keyv', options, ['store', 'disconnect']);
  const { store, disconnect = true } = options;
  if (typeof disconnect !== 'boolean') {
    throw new CacheConfigError(
      messages.invalidOption('keyv.disconnect', disconnect, 'Use true (the default) or false.'),
    );
  }
  if (store === undefined) throw new CacheConfigError(messages.keyvStoreMissing());
  const adopted = isKeyvInstance(store);
  const adapter = adopted ? (store.store as unknown) : store;
  if (!isStore(adapter)) throw new CacheConfigError(messages.keyvInvalidStore(describe(store)));
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
  const release = borrow(adapter, !adopted);
  let keyv: Keyv;
  try {
    keyv = new Keyv({ ...settings, store: adapter, emitErrors: true, throwOnErrors: true });
  } catch (error) {
    release();
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
    listKeys: keyListing(keyv),
    release,
  };
}

/**
 * Notes what the bridge's Keyv is about to change on the adapter (the 'error' listener Keyv adds,
 * its namespace) and, for a bare adapter, turns on its throwOnErrors (@keyv/redis swallows its
 * failures by default); resolves the function that undoes all of it, for close().
 */
function borrow(adapter: Adapter, bare: boolean): () => void {
  if (adapter instanceof Map) return () => {};
  const store = adapter as KeyvStoreAdapter & {
    listeners?: (event: string) => unknown[];
    off?: (event: string, listener: unknown) => unknown;
    removeListener?: (event: string, listener: unknown) => unknown;
    throwOnErrors?: unknown;
  };
  const listenersBefore = errorListeners(store);
  const { namespace } = store;
  const throwOnErrors = store.throwOnErrors;
  if (bare && typeof throwOnErrors === 'boolean') store.throwOnErrors = true;
  return () => {
    const added = errorListeners(store).filter((listener) => !listenersBefore.includes(listener));
    for (const listener of added) {
      const off = store.off ?? store.removeListener;
      off?.call(store, 'error', listener);
    }
    // An emitter with no 'error' listener throws on an error: a late one (the adapter's own
    // reconnects, say) must not crash the process once this cache is gone. One shared no-op, that
    // holds nothing of the cache.
    if (errorListeners(store).length === 0) store.on?.('error', ignoreLateError);
    store.namespace = namespace;
    if (bare && typeof throwOnErrors === 'boolean') store.throwOnErrors = throwOnErrors;
  };
}

function ignoreLateError(): void {}

function errorListeners(store: { listeners?: (event: string) => unknown[] }): unknown[] {
  // A copy: Hookified hands out its own array.
  return typeof store.listeners === 'function' ? [...store.listeners('error')] : [];
}

/**
 * How the bridge lists the keys of a store, where the listing is exact: a Map's keys; an
 * adapter's iterator under a Keyv namespace with key prefixing (every key the bridge writes then
 * starts with the namespace, which Keyv hands the iterator). Without a namespace the iterator lists
 * what the adapter pleases: @keyv/redis's skips every key with '::' (and walks the whole database,
 * fetching every value), so the bridge then uses generations instead.
 */
function keyListing(keyv: Keyv): KeyvConnection['listKeys'] {
  const store = keyv.store as Adapter;
  if (store instanceof Map) return () => mapKeys(store);
  if (!keyv.iterator || !keyv.namespace || !keyv.useKeyPrefix) return undefined;
  if (typeof store.iterator !== 'function') return undefined;
  return () => adapterKeys(store);
}

/** A snapshot of the Map's keys, in batches: the caller deletes while it walks. */
async function* mapKeys(map: Map<unknown, unknown>): AsyncGenerator<unknown[]> {
  const keys = [...map.keys()];
  for (let i = 0; i < keys.length; i += SCAN_BATCH) yield keys.slice(i, i + SCAN_BATCH);
}

async function* adapterKeys(store: KeyvStoreAdapter): AsyncGenerator<unknown[]> {
  for await (const [key] of store.iterator!(store.namespace) as AsyncIterable<unknown[]>) {
    yield [key];
  }
}

/** Whether `value` has a function under each of `methods`. */
function hasMethods(value: unknown, methods: string[]): boolean {
  if (typeof value !== 'object' || value === null) return false;
  return methods.every((m) => typeof (value as Record<string, unknown>)[m] === 'function');
}

/** Like @nestjs/cache-manager: a Keyv instance by its shape, since two copies of keyv fail instanceof. */
function isKeyvInstance(store: unknown): store is Keyv {
  return (
    hasMethods(store, ['get', 'set', 'getMany', 'disconnect']) &&
    ['opts', 'hooks', 'stats'].every((field) => field in (store as object))
  );
}

/** What Keyv accepts as a store (its own check, so that a bad store fails here, not inside Keyv). */
function isStore(store: unknown): store is Adapter {
  return store instanceof Map || hasMethods(store, ['get', 'set', 'delete', 'clear']);
}

/** Passwords in the adapter's options (a URL's, or a password field): kept out of log lines. */
function secretsOf(store: Adapter): string[] {
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
