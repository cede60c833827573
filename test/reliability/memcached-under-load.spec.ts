import { describe, it } from 'vitest';
import { ADAPTERS, useApps, usePrivateMemcached } from '../http/support/app.js';
import { ItemsController } from '../http/support/controllers.js';
import {
  CONNECTIONS,
  HOT_PATH,
  memcachedFaultTestCache,
  underLoad,
} from '../http/support/faults.js';
import { sleep } from '../http/support/http.js';
import { connectionCount, type MemcachedServerHandle } from '../support/memcached-server.js';
import { closeAndReport, figuresTable, watch } from './support/figures.js';

// Memcached faults as the Redis ones are tested (redis-under-load.spec.ts): under a load of 50
// connections, half on one cached URL and half on 200 others, responses already cached; the fault
// lasts 2 s, starting 1.5 s into a 7.5 s load. Every scenario also counts the unhandled rejections
// until its app is closed, and memcached's connections before the app started and after it was
// closed.
const memcached = usePrivateMemcached();
const table = figuresTable('memcached under load (test/reliability/memcached-under-load.spec.ts)');
const memcachedConnections = async () => ({
  memcached: await connectionCount(memcached.server.port),
});

const FAULT_AT_MS = 1_500;
const FAULT_FOR_MS = 2_000;
const LOAD_MS = 7_500;

const FAULTS: {
  name: string;
  begin(server: MemcachedServerHandle): unknown;
  end(server: MemcachedServerHandle): unknown;
}[] = [
  {
    name: 'killed (SIGKILL), then restarted empty',
    begin: (server) => server.kill(),
    end: (server) => server.restart(),
  },
  {
    name: 'frozen (SIGSTOP), then resumed (SIGCONT)',
    begin: (server) => server.freeze(),
    end: (server) => server.resume(),
  },
];

describe.each(ADAPTERS)('on $name with the memcached backend', (adapter) => {
  const start = useApps();

  it.each(FAULTS)(
    `memcached $name under ${CONNECTIONS} connections: every request is answered within the bound, HITs resume within seconds, nothing stays in flight, no rejection goes unhandled, and app.close() leaves no connection`,
    async (fault) => {
      const watching = await watch(memcachedConnections);
      const app = await start({
        adapter,
        controllers: [ItemsController],
        cache: memcachedFaultTestCache(memcached.server),
      });
      await app.send(HOT_PATH);

      const run = await underLoad(app, LOAD_MS, async (sinceStart) => {
        await sleep(FAULT_AT_MS);
        const faultAt = sinceStart();
        await fault.begin(memcached.server);
        await sleep(FAULT_FOR_MS);
        await fault.end(memcached.server);
        return { faultAt, backAt: sinceStart() };
      });

      await closeAndReport(table, `${adapter.name}, memcached ${fault.name}`, app, run, watching);
    },
    30_000,
  );
});
