import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import {
  askLine,
  freePort,
  type ServerProcess,
  sleep,
  startServerProcess,
} from './server-process.js';

/** A RESP reply: a status or bulk string, an integer, nil, an error (inside an array), an array. */
export type Reply = string | number | null | Error | Reply[];

/** One redis-server of a test cluster, on one port (and one bus port) for its whole life. */
export interface ClusterNodeHandle extends ServerProcess {
  /** The cluster bus port (--cluster-port), fixed so a restarted node is found where it was. */
  readonly busPort: number;
  /** Its node id, kept across restart() (the node reads back its cluster config file). */
  readonly id: string;
  /** false from kill() until restart(). */
  readonly running: boolean;
  /** Runs one command on a connection of its own; rejects on an error reply or no answer in 2 s. */
  run(...args: (string | number)[]): Promise<Reply>;
}

export interface RedisClusterHandle {
  readonly nodes: readonly ClusterNodeHandle[];
  /** Every node as `{ host, port }`: what `redis.cluster.nodes` takes. */
  readonly addresses: { host: string; port: number }[];
  /**
   * Moves `slot` from node `from` to node `to` the way redis-cli --cluster reshard does: SETSLOT
   * IMPORTING on the target, MIGRATING on the source, MIGRATE of its keys, then SETSLOT NODE on
   * every live node. With `pauseMs`, half of its keys are moved first and the slot stays half
   * migrated that long (reads of the moved keys are ASK redirections, multi-key commands
   * TRYAGAIN). Resolves how many keys were moved.
   */
  migrateSlot(
    slot: number,
    from: number,
    to: number,
    options?: { pauseMs?: number },
  ): Promise<number>;
  /** The index of the node that serves `slot`, as node 0 (or the first live node) sees it. */
  ownerOf(slot: number): Promise<number>;
  /** DBSIZE of each node (every node must be running). */
  keyCounts(): Promise<number[]>;
  /** The keys of node `index` matching a glob (SCAN; test keys only). */
  keysOn(index: number, pattern?: string): Promise<string[]>;
  /** Resolves once every running node says cluster_state:ok and all agree on the slot map. */
  settled(withinMs?: number): Promise<void>;
  /** Stops every node and removes their folders; idempotent. */
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Masters, each serving an even share of the 16384 slots (no replicas). @default 3 */
  masters?: number;
  /**
   * cluster-node-timeout: how long a node may not answer before the others flag it as failing.
   * @default 1000
   */
  nodeTimeoutMs?: number;
}

const SLOTS = 16_384;
const MISSING_BINARY =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server; Redis Cluster tests need version 7.0 or later).';
const SETTLE_TIMEOUT_MS = 20_000;

/**
 * Starts `masters` redis-server processes with --cluster-enabled yes, each with its own folder and
 * cluster config file, gives each an even range of slots (CLUSTER ADDSLOTSRANGE), introduces them
 * (CLUSTER MEET), and resolves once every node says cluster_state:ok and they agree on the slots.
 * Without replicas, and with cluster-require-full-coverage no: when a master is down, only its own
 * slots fail.
 */
export async function startRedisCluster(
  options: RedisClusterOptions = {},
): Promise<RedisClusterHandle> {
  const masters = options.masters ?? 3;
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1_000;
  const root = mkdtempSync(join(tmpdir(), 'nest-cache-cluster-'));
  const nodes: ClusterNodeHandle[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((node) => node.stop()));
    rmSync(root, { recursive: true, force: true });
  };
  try {
    // One after the other: a bus port picked free stays free only until its node binds it.
    for (let i = 0; i < masters; i += 1) nodes.push(await startNode(root, i, nodeTimeoutMs));
    for (let i = 0; i < masters; i += 1) {
      const first = Math.floor((SLOTS * i) / masters);
      const last = Math.floor((SLOTS * (i + 1)) / masters) - 1;
      await nodes[i]!.run('CLUSTER', 'ADDSLOTSRANGE', first, last);
    }
    for (const node of nodes.slice(1)) {
      await nodes[0]!.run('CLUSTER', 'MEET', '127.0.0.1', node.port, node.busPort);
    }
  } catch (error) {
    await stop();
    throw error;
  }

  const live = () => nodes.filter((node) => node.running);
  const slotMap = async (node: ClusterNodeHandle) => {
    const ranges = (await node.run('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    return ranges
      .map(([first, last, [, port]]) => `${first}-${last}@${port}`)
      .sort()
      .join(' ');
  };
  const settled = async (withinMs = SETTLE_TIMEOUT_MS) => {
    const deadline = Date.now() + withinMs;
    let last = '';
    for (;;) {
      try {
        const views = await Promise.all(
          live().map(async (node) => {
            const info = String(await node.run('CLUSTER', 'INFO'));
            const state = /cluster_state:(\w+)/.exec(info)?.[1];
            const known = Number(/cluster_known_nodes:(\d+)/.exec(info)?.[1]);
            return { state, known, slots: await slotMap(node) };
          }),
        );
        last = JSON.stringify(views);
        const [first] = views;
        if (
          first &&
          views.every(
            (view) => view.state === 'ok' && view.known === masters && view.slots === first.slots,
          )
        ) {
          return;
        }
      } catch (error) {
        last = String(error);
      }
      if (Date.now() > deadline) {
        throw new Error(`the test cluster did not settle within ${withinMs} ms: ${last}`);
      }
      await sleep(50);
    }
  };
  try {
    await settled();
  } catch (error) {
    await stop();
    throw error;
  }

  const ownerOf = async (slot: number) => {
    const ranges = (await live()[0]!.run('CLUSTER', 'SLOTS')) as [
      number,
      number,
      [string, number],
    ][];
    const range = ranges.find(([first, last]) => first <= slot && slot <= last);
    if (!range) throw new Error(`no node serves slot ${slot}`);
    return nodes.findIndex((node) => node.port === range[2][1]);
  };

  const migrateSlot = async (slot: number, from: number, to: number, { pauseMs = 0 } = {}) => {
    const source = nodes[from]!;
    const target = nodes[to]!;
    await target.run('CLUSTER', 'SETSLOT', slot, 'IMPORTING', source.id);
    await source.run('CLUSTER', 'SETSLOT', slot, 'MIGRATING', target.id);
    let moved = 0;
    const move = async (count: number) => {
      const keys = (await source.run('CLUSTER', 'GETKEYSINSLOT', slot, count)) as string[];
      if (keys.length === 0) return 0;
      // No REPLACE: a key on both sides would be a bug of the migration, and should say so.
      await source.run('MIGRATE', '127.0.0.1', target.port, '', 0, 5_000, 'KEYS', ...keys);
      moved += keys.length;
      return keys.length;
    };
    if (pauseMs > 0) {
      const count = Number(await source.run('CLUSTER', 'COUNTKEYSINSLOT', slot));
      await move(Math.ceil(count / 2));
      await sleep(pauseMs);
    }
    while ((await move(1_000)) > 0);
    // The target first, so that it never answers MOVED back to the source (the order redis-cli uses).
    await target.run('CLUSTER', 'SETSLOT', slot, 'NODE', target.id);
    await source.run('CLUSTER', 'SETSLOT', slot, 'NODE', target.id);
    for (const node of live()) {
      if (node !== source && node !== target)
        await node.run('CLUSTER', 'SETSLOT', slot, 'NODE', target.id);
    }
    return moved;
  };

  return {
    nodes,
    addresses: nodes.map((node) => ({ host: '127.0.0.1', port: node.port })),
    migrateSlot,
    ownerOf,
    keyCounts: () => Promise.all(nodes.map(async (node) => Number(await node.run('DBSIZE')))),
    async keysOn(index, pattern = '*') {
      const found: string[] = [];
      let cursor = '0';
      do {
        const [next, keys] = (await nodes[index]!.run(
          'SCAN',
          cursor,
          'MATCH',
          pattern,
          'COUNT',
          1_000,
        )) as [string, string[]];
        cursor = next;
        found.push(...keys);
      } while (cursor !== '0');
      return found.sort();
    },
    settled,
    stop,
  };
}

/** A test cluster for this file: started in beforeAll (once), stopped in afterAll. */
export function useRedisCluster(options: RedisClusterOptions = {}): {
  readonly cluster: RedisClusterHandle;
} {
  let cluster: RedisClusterHandle | undefined;
  beforeAll(async () => {
    cluster = await startRedisCluster(options);
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  return {
    get cluster() {
      if (!cluster) throw new Error('the test cluster is only available inside tests');
      return cluster;
    },
  };
}

async function startNode(
  root: string,
  index: number,
  nodeTimeoutMs: number,
): Promise<ClusterNodeHandle> {
  const dir = join(root, `node-${index}`);
  mkdirSync(dir);
  for (let attempt = 1; ; attempt += 1) {
    const busPort = await freePort();
    try {
      const server = await startServerProcess({
        binary: 'redis-server',
        missingBinary: MISSING_BINARY,
        args: (port) => [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--cluster-enabled',
          'yes',
          // Read back by restart(): the node keeps its id, its slots and its peers.
          '--cluster-config-file',
          join(dir, 'nodes.conf'),
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
          '--cluster-require-full-coverage',
          'no',
        ],
        ready: async (port, output) =>
          output.includes('Ready to accept connections') &&
          (await askLine(port, 'PING')) === '+PONG',
        readyCommand: 'PING',
      });
      const id = String(await command(server.port, ['CLUSTER', 'MYID']));
      let running = true;
      const node: ClusterNodeHandle = {
        ...server,
        busPort,
        id,
        get running() {
          return running;
        },
        async kill(signal) {
          running = false;
          await server.kill(signal);
        },
        async restart() {
          await server.restart();
          running = true;
        },
        async stop() {
          running = false;
          await server.stop();
        },
        run: (...args) => command(server.port, args),
      };
      return node;
    } catch (error) {
      const message = String(error);
      if (/Bad directive|cluster-port/i.test(message)) {
        throw new Error(`${MISSING_BINARY}\n${message}`, { cause: error });
      }
      // The bus port was taken meanwhile: pick another one.
      if (!/in use/i.test(message) || attempt >= 3) throw error;
    }
  }
}

/** Sends one command (RESP) on a new connection and resolves its whole reply. */
function command(port: number, args: (string | number)[], timeoutMs = 2_000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let received = Buffer.alloc(0);
    const name = String(args.slice(0, 2).join(' '));
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(
        new Error(`redis-server on port ${port} did not answer "${name}" within ${timeoutMs} ms`),
      );
    });
    socket.once('error', reject);
    socket.once('connect', () => {
      const parts = args.map(String);
      socket.write(
        `*${parts.length}\r\n${parts.map((part) => `$${Buffer.byteLength(part)}\r\n${part}\r\n`).join('')}`,
      );
    });
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      const parsed = parse(received, 0);
      if (!parsed) return;
      socket.destroy();
      const [reply] = parsed;
      if (reply instanceof Error) {
        reject(new Error(`redis-server on port ${port} refused "${name}": ${reply.message}`));
      } else resolve(reply);
    });
  });
}

/** The RESP2 value at `at`, and where the next one starts; undefined until it has all arrived. */
function parse(buffer: Buffer, at: number): [Reply, number] | undefined {
  const end = buffer.indexOf('\r\n', at);
  if (end < 0) return undefined;
  const line = buffer.toString('utf8', at + 1, end);
  const next = end + 2;
  switch (String.fromCharCode(buffer[at]!)) {
    case '+':
      return [line, next];
    case '-':
      return [new Error(line), next];
    case ':':
      return [Number(line), next];
    case '$': {
      const length = Number(line);
      if (length < 0) return [null, next];
      if (buffer.length < next + length + 2) return undefined;
      return [buffer.toString('utf8', next, next + length), next + length + 2];
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: Reply[] = [];
      let from = next;
      for (let i = 0; i < count; i += 1) {
        const item = parse(buffer, from);
        if (!item) return undefined;
        items.push(item[0]);
        from = item[1];
      }
      return [items, from];
    }
    default:
      throw new Error(`unexpected RESP reply: ${buffer.toString('utf8', at, end)}`);
  }
}
