import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { CacheConfigError } from '../errors.js';
import { describe, messages } from '../messages.js';
import { knownKeysOnly } from '../option-keys.js';
import { MAX_TIMER_MS } from '../ttl.js';

/** Bounds on waiting for memcached; MemcachedCache applies them to the client it creates. */
export interface MemcachedTuning {
  /**
   * Milliseconds a request may wait for its answer before it fails (a miss, or a dropped write).
   * @default 500
   */
  commandTimeout?: number;
  /**
   * Milliseconds opening a connection (and SASL authentication) may take before it fails.
   * @default 500
   */
  connectTimeout?: number;
  /**
   * How many times a failed request is sent again (200 ms later, on a new connection). Each try
   * may take connectTimeout + commandTimeout, and all of them must fit in operationTimeout.
   * @default 0
   */
  retries?: number;
}

/** What the driver refuses to send. */
export interface MemcachedLimits {
  /**
   * The largest value (with the driver's 9-byte header) sent to memcached: a larger one is refused
   * here (set resolves false, the entry it replaces is removed, a warning is logged) rather than
   * sent in full for memcached to refuse. Match it to memcached's item size (-I).
   * @default 1048576 (1 MiB, memcached's default -I)
   */
  maxValueBytes?: number;
}

/** Where the memcached backend connects, with which credentials. */
export interface MemcachedServerOptions extends MemcachedTuning, MemcachedLimits {
  /**
   * The servers, as 'host:port' (the port defaults to 11211; '[::1]:11211' for IPv6): a list, or
   * one string separated by commas. memjs spreads keys over them by a hash of the key.
   * @default '127.0.0.1:11211'
   */
  servers?: string | string[];
  /**
   * SASL user name (memcached started with -S). Never written to a log. The only source of
   * credentials: memjs' MEMCACHIER_* / MEMCACHE_* environment variables are ignored.
   * @default none: no authentication
   */
  username?: string;
  /**
   * SASL password, with `username`. Never written to a log.
   * @default none: no authentication
   */
  password?: string;
}

/** A memjs client of your own, with the limits of the driver. */
export interface MemcachedClientOptions extends MemcachedLimits {
  client: MemjsClient;
}

/**
 * Options of the memcached backend (CacheModule option "memcached"):
 * - servers, SASL credentials and timeouts: MemcachedCache creates (and closes) a memjs client;
 * - `{ client }`: a memjs (~1.3.2) client you own. MemcachedCache uses it as it is (its timeouts,
 *   retries and logger are yours) and never closes it.
 * @default { servers: '127.0.0.1:11211' }
 */
export type MemcachedCacheOptions = MemcachedServerOptions | MemcachedClientOptions;

/** The part of a memjs (~1.3.2) Client the driver uses. */
export interface MemjsClient {
  /** The id of the last request; the driver keeps it within 1 to 2^31 − 1 (see Wire). */
  seq: number;
  readonly servers: readonly MemjsServer[];
  perform(
    key: string,
    request: Buffer,
    seq: number,
    callback?: (error: unknown, response: MemjsResponse | null) => void,
    retries?: number,
  ): void;
  close(): void;
}

/** The part of a memjs Server the driver uses. */
export interface MemjsServer {
  readonly host: string;
  readonly port: number;
  /** Whether its connection is open (and authenticated). */
  readonly connected: boolean;
  onResponse(seq: number, fn: (response: MemjsResponse) => void): void;
  onError(seq: number, fn: (error: Error) => void): void;
  write(blob: Buffer): void;
  close(): void;
}

/** One answer of the binary protocol, as memjs parses it. */
export interface MemjsResponse {
  header: { status: number; cas: Buffer };
  val: Buffer;
  extras: Buffer;
}

interface MemjsModule {
  Client: new (servers: MemjsServer[], options: object) => MemjsClient;
  Server: new (
    host: string,
    port: number,
    username: string | undefined,
    password: string | undefined,
    options: object,
  ) => MemjsServer;
  Utils: {
    makeRequestBuffer(
      opcode: number,
      key: string,
      extras: Buffer,
      value: Buffer,
      opaque: number,
    ): Buffer;
  };
}

/** A client to use: one MemcachedCache opens (and closes), or the user's own. */
export interface MemcachedConnection {
  /** Creates the client, its log lines going to `log`; called once, after the options were validated. */
  open(log: (line: string) => void): MemjsClient;
  /** Whether MemcachedCache created the client, and so closes it. */
  owned: boolean;
  /** 'host:port' of each server, for messages; never credentials. */
  target: string;
  /** Secrets to scrub from any reason that reaches a log. */
  secrets: string[];
  /**
   * The longest a request can take, every try included, before the client fails it; 0 for a
   * client you passed (its bound is yours, and unknown here).
   */
  requestBoundMs: number;
  /** The largest value sent (see MemcachedLimits). */
  maxValueBytes: number;
  /** Builds a request of the binary protocol (memjs' own encoder). */
  makeRequest: MemjsModule['Utils']['makeRequestBuffer'];
}

const DEFAULT_SERVERS = '127.0.0.1:11211';
const DEFAULT_PORT = 11211;
const DEFAULT_COMMAND_TIMEOUT_MS = 500;
const DEFAULT_CONNECT_TIMEOUT_MS = 500;
const MAX_RETRIES = 10;
/** memjs waits this long before it sends a failed request again. */
const RETRY_DELAY_MS = 200;
const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024;
/** memcached's largest item size (-I 1024m). */
const MAX_ITEM_BYTES = 1024 * 1024 * 1024;

/**
 * Loads memjs, an optional peer dependency, when the memcached backend is chosen, and checks that
 * it has the internals the driver relies on (memjs ~1.3.2).
 * `importer` is replaceable so the "not installed" message can be tested with memjs installed.
 */
export async function loadMemjs(
  importer: () => Promise<unknown> = () => import('memjs'),
): Promise<MemjsModule> {
  let loaded: unknown;
  try {
    loaded = await importer();
  } catch (error) {
    if (isMemjsMissing(error))
      throw new CacheConfigError(messages.memjsMissing(), { cause: error });
    throw error;
  }
  // memjs is CommonJS: depending on the loader, its exports are the namespace or its default.
  const namespace = loaded as Partial<MemjsModule> & { default?: Partial<MemjsModule> };
  const memjs = (typeof namespace.Client === 'function' ? namespace : namespace.default) ?? {};
  const client = memjs.Client?.prototype as Record<string, unknown> | undefined;
  const server = memjs.Server?.prototype as Record<string, unknown> | undefined;
  const missing = [
    ...['perform', 'close']
      .filter((name) => typeof client?.[name] !== 'function')
      .map((name) => `Client.prototype.${name}`),
    ...['sock', 'write', 'error', 'close', 'onResponse', 'onError']
      .filter((name) => typeof server?.[name] !== 'function')
      .map((name) => `Server.prototype.${name}`),
    ...(typeof memjs.Utils?.makeRequestBuffer === 'function' ? [] : ['Utils.makeRequestBuffer']),
  ];
  // Fields the constructors set (no connection is opened).
  if (
    missing.length === 0 &&
    !Array.isArray(Reflect.get(new memjs.Server!('', 0, '', '', {}), 'requestTimeouts'))
  ) {
    missing.push('Server#requestTimeouts');
  }
  if (missing.length > 0) throw new CacheConfigError(messages.memjsIncompatible(missing));
  return memjs as MemjsModule;
}

/** Validates options.memcached and plans the client, loading memjs only when it is needed. */
export async function planConnection(
  options: MemcachedCacheOptions | undefined,
  importer?: () => Promise<unknown>,
): Promise<MemcachedConnection> {
  const memcached: unknown = options ?? {};
  if (memcached === null || typeof memcached !== 'object' || Array.isArray(memcached)) {
    throw new CacheConfigError(
      messages.memcachedInvalidOption(
        'memcached',
        memcached,
        "Use { servers: 'host:port', username?, password?, commandTimeout?, connectTimeout?, retries?, maxValueBytes? } or { client }.",
      ),
    );
  }
  knownKeysOnly(
    'memcached',
    memcached,
    'client' in memcached
      ? ['client', 'maxValueBytes']
      : [
          'servers',
          'username',
          'password',
          'commandTimeout',
          'connectTimeout',
          'retries',
          'maxValueBytes',
        ],
  );
  const given = memcached as Partial<MemcachedServerOptions & MemcachedClientOptions>;
  const maxValueBytes = wholeNumber(
    'maxValueBytes',
    given.maxValueBytes,
    [1, MAX_ITEM_BYTES],
    DEFAULT_MAX_VALUE_BYTES,
    'bytes',
  );
  if ('client' in given) {
    const client = adopted(given.client);
    const memjs = await loadMemjs(importer);
    return {
      open: () => client,
      owned: false,
      target: client.servers.map((s) => `${s.host}:${s.port}`).join(', '),
      secrets: [],
      requestBoundMs: 0,
      maxValueBytes,
      makeRequest: memjs.Utils.makeRequestBuffer,
    };
  }
  const servers = validServers(given.servers ?? DEFAULT_SERVERS);
  const credentials = validCredentials(given);
  const ms = (option: 'commandTimeout' | 'connectTimeout', fallback: number) =>
    wholeNumber(option, given[option], [1, MAX_TIMER_MS], fallback, 'milliseconds');
  const commandTimeout = ms('commandTimeout', DEFAULT_COMMAND_TIMEOUT_MS);
  const connectTimeout = ms('connectTimeout', DEFAULT_CONNECT_TIMEOUT_MS);
  const retries = wholeNumber('retries', given.retries, [0, MAX_RETRIES], 0, 'retries');
  const memjs = await loadMemjs(importer);
  const BoundedServer = boundedServer(memjs.Server);
  return {
    open: (log) => {
      const serverOptions = {
        timeout: commandTimeout / 1_000,
        conntimeout: connectTimeout / 1_000,
        // Finds a dead idle connection (a dropped network without FIN) before a request waits on it.
        keepAlive: true,
        keepAliveDelay: 30,
      };
      const made = servers.map(
        ({ host, port }) =>
          new BoundedServer(
            host,
            port,
            credentials?.username,
            credentials?.password,
            serverOptions,
          ),
      );
      return new memjs.Client(made, {
        // memjs counts tries, not retries.
        retries: retries + 1,
        retry_delay: RETRY_DELAY_MS / 1_000,
        failover: false,
        expires: 0,
        logger: { log: (...parts: unknown[]) => log(parts.map(String).join(' ')) },
      });
    },
    owned: true,
    target: servers.map(({ host, port }) => `${host}:${port}`).join(', '),
    secrets: credentials ? [credentials.password] : [],
    requestBoundMs: (retries + 1) * (connectTimeout + commandTimeout) + retries * RETRY_DELAY_MS,
    maxValueBytes,
    makeRequest: memjs.Utils.makeRequestBuffer,
  };
}

/** What a memjs Server holds that its types leave out. */
interface ServerInternals {
  _socket?: Socket;
  connected: boolean;
  username?: string;
  password?: string;
  options: { timeout: number };
  /** When each request written and not yet answered times out, oldest first (memjs' timestamp()). */
  requestTimeouts: number[];
  sock(sasl: boolean, go: (socket: Socket) => void): void;
  write(blob: Buffer): void;
  error(error: unknown): void;
  close(): void;
}

/** memjs' clock for request deadlines (utils.timestamp): monotonic milliseconds. */
function memjsTimestamp(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1_000 + Math.round(nanoseconds / 1_000_000);
}

/**
 * A memjs Server whose requests time out when due and that never leaves a socket behind.
 *
 * memjs checks its request deadlines from the socket's idle timeout, which every new write pushes
 * back: under steady load on a frozen server no request ever timed out. It also ends (FIN) a
 * connection whose request timed out and forgets it, which against a frozen server keeps each
 * such socket open until the server answers again; close() does the same. This one watches the
 * oldest deadline with a timer of its own (only while a request waits), destroys the sockets
 * once they failed, and opens no connection once closed.
 */
function boundedServer(Server: MemjsModule['Server']) {
  const Base = Server as unknown as new (...args: unknown[]) => MemjsServer & ServerInternals;
  return class BoundedServer extends Base {
    private readonly sockets = new Set<Socket>();
    private closed = false;
    private deadline: NodeJS.Timeout | undefined;

    constructor(
      host: string,
      port: number,
      username: string | undefined,
      password: string | undefined,
      options: object,
    ) {
      super(host, port, username, password, options);
      // memjs falls back to MEMCACHIER_* / MEMCACHE_* environment variables: the options are the
      // only source of credentials here.
      this.username = username;
      this.password = password;
    }

    override write(blob: Buffer): void {
      super.write(blob);
      this.deadline ??= setTimeout(this.checkDeadline, this.timeoutMs());
    }

    override sock(sasl: boolean, go: (socket: Socket) => void): void {
      if (this.closed) {
        // Fails the request that asked for a connection (its callbacks are registered), later.
        queueMicrotask(() => this.error(new Error('the cache was closed')));
        return;
      }
      const before = this._socket;
      super.sock(sasl, go);
      const socket = this._socket;
      if (socket && socket !== before && !this.sockets.has(socket)) {
        this.sockets.add(socket);
        socket.once('close', () => this.sockets.delete(socket));
      }
    }

    override error(error: unknown): void {
      clearTimeout(this.deadline);
      this.deadline = undefined;
      const doomed = [...this.sockets];
      this.sockets.clear();
      // memjs' 'close' handler forgets the current socket: fired by a doomed one after a new one
      // opened, it would orphan the new one (open, never used, never closed).
      for (const socket of doomed) socket.removeAllListeners('close');
      this.connected = false;
      // memjs fails a refused authentication with a string, which its log line prints as "undefined".
      super.error(typeof error === 'string' ? new Error(`${error} (SASL)`) : error);
      for (const socket of doomed) socket.destroy();
    }

    /** Fails every request of the connection once the oldest is due, as memjs means to. */
    private readonly checkDeadline = (): void => {
      this.deadline = undefined;
      const oldest = this.requestTimeouts[0];
      if (oldest === undefined) {
        // Still connecting (connectTimeout bounds that): watch the requests it will write.
        if (this._socket && !this.connected) {
          this.deadline = setTimeout(this.checkDeadline, this.timeoutMs());
        }
        return;
      }
      const left = oldest - memjsTimestamp();
      if (left <= 0) this.error(new Error('socket timed out waiting on response.'));
      else this.deadline = setTimeout(this.checkDeadline, left);
    };

    private timeoutMs(): number {
      return Math.max(1, Math.round(this.options.timeout * 1_000));
    }

    override close(): void {
      this.closed = true;
      // Destroying a socket fails none of its requests: error() does, and destroys the sockets.
      this.error(new Error('the cache was closed'));
    }
  };
}

function adopted(client: unknown): MemjsClient {
  const candidate = client as Partial<MemjsClient> | null;
  if (
    !candidate ||
    typeof candidate.perform !== 'function' ||
    typeof candidate.seq !== 'number' ||
    !Array.isArray(candidate.servers)
  ) {
    throw new CacheConfigError(
      messages.memcachedInvalidOption(
        'memcached.client',
        client,
        "Pass a memjs client: memjs.Client.create('host:port', options) from the memjs package (~1.3.2).",
      ),
    );
  }
  return candidate as MemjsClient;
}

interface ServerAddress {
  host: string;
  port: number;
}

function validServers(servers: unknown): ServerAddress[] {
  const list =
    typeof servers === 'string'
      ? servers.split(',')
      : Array.isArray(servers) && servers.every((s) => typeof s === 'string')
        ? (servers as string[])
        : undefined;
  if (!list || list.length === 0) {
    throw new CacheConfigError(
      messages.memcachedInvalidOption(
        'memcached.servers',
        servers,
        "Use 'host:port', a comma-separated list of them, or an array, e.g. ['10.0.0.1:11211', '10.0.0.2:11211'].",
      ),
    );
  }
  return list.map((entry) => validServer(entry.trim()));
}

const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:@/[\]]+))(?::(\d{1,5}))?$/;

function validServer(entry: string): ServerAddress {
  if (entry.includes('@')) {
    // Never echo it: it may hold a password.
    throw new CacheConfigError(
      messages.badMemcachedServer(
        'an entry with "@"',
        'holds credentials: put them in memcached.username and memcached.password, so that they never reach a log',
      ),
    );
  }
  const match = HOST_PORT.exec(entry);
  if (!match)
    throw new CacheConfigError(messages.badMemcachedServer(describe(entry), 'is not host:port'));
  const port = match[3] === undefined ? DEFAULT_PORT : Number(match[3]);
  if (port < 1 || port > 65_535) {
    throw new CacheConfigError(
      messages.badMemcachedServer(describe(entry), 'has a port outside 1-65535'),
    );
  }
  return { host: match[1] ?? match[2]!, port };
}

function validCredentials(
  options: MemcachedServerOptions,
): { username: string; password: string } | undefined {
  const { username, password } = options;
  if (username === undefined && password === undefined) return undefined;
  for (const [option, value, other] of [
    ['username', username, 'password'],
    ['password', password, 'username'],
  ] as const) {
    if (typeof value !== 'string' || value.length === 0) {
      throw new CacheConfigError(
        messages.memcachedInvalidOption(
          `memcached.${option}`,
          value,
          `SASL needs a ${option} (a non-empty string) with memcached.${other}.`,
        ),
      );
    }
  }
  return { username: username!, password: password! };
}

/** A whole number option within `[min, max]`, `fallback` when left out. */
function wholeNumber(
  option: keyof MemcachedTuning | keyof MemcachedLimits,
  value: unknown,
  [min, max]: readonly [number, number],
  fallback: number,
  unit: string,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new CacheConfigError(
      messages.memcachedInvalidOption(
        `memcached.${option}`,
        value,
        `Use a whole number of ${unit} from ${min} to ${max} (default ${fallback}).`,
      ),
    );
  }
  return value;
}

function isMemjsMissing(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    message.includes('memjs')
  );
}
