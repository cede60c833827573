/**
 * The Nest apps under test: the same routes on every setup, with nest-cache,
 * @nestjs/cache-manager (as its documentation sets it up) or no cache at all.
 */
import 'reflect-metadata';
import cluster from 'node:cluster';
import {
  type CallHandler,
  Controller,
  type DynamicModule,
  type ExecutionContext,
  Get,
  Injectable,
  Module,
  type NestInterceptor,
  type Type,
  UseInterceptors,
} from '@nestjs/common';
import {
  bodies,
  CACHE_TTL_SECONDS,
  COLD_ORIGIN_MS,
  type ServerSetup,
  setupName,
} from './fixtures.js';

/** How often the cold route's handler ran: the origin calls a cache saves. */
let originCalls = 0;

/** This process's counters, as /bench/stats reports them. */
export interface BenchStats {
  originCalls: number;
  cpuMicros: number;
}

export function localStats(): BenchStats {
  const { user, system } = process.cpuUsage();
  return { originCalls, cpuMicros: user + system };
}

/** What /bench/stats answers: this process's counters, or (a cluster worker) every worker's. */
let statsSource: () => BenchStats | Promise<BenchStats> = localStats;
export function useStatsSource(source: () => Promise<BenchStats>): void {
  statsSource = source;
}

/** The reference for what any interceptor costs: it only passes the call on. */
@Injectable()
class NoopInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle();
  }
}

@Controller()
class ReferenceController {
  @Get('plain/1k')
  plainSmall() {
    return bodies['1k'];
  }

  @Get('plain/100k')
  plainLarge() {
    return bodies['100k'];
  }

  @Get('bench/stats')
  stats() {
    return statsSource();
  }
}

@Controller('noop')
@UseInterceptors(NoopInterceptor)
class NoopController {
  @Get('1k')
  small() {
    return bodies['1k'];
  }

  @Get('100k')
  large() {
    return bodies['100k'];
  }
}

/** The same routes for both libraries; only the interceptor differs. */
function cachedController(interceptor: Type<NestInterceptor>): Type {
  @Controller()
  @UseInterceptors(interceptor)
  class CachedController {
    @Get('cached/1k')
    small() {
      return bodies['1k'];
    }

    @Get('cached/100k')
    large() {
      return bodies['100k'];
    }

    @Get('cold')
    async cold() {
      originCalls += 1;
      await new Promise((resolve) => setTimeout(resolve, COLD_ORIGIN_MS));
      return bodies['1k'];
    }
  }
  return CachedController;
}

/**
 * The setup's cache module and interceptor. Each library is imported only by the servers that use
 * it (and http-server.ts imports only its adapter): a server then starts in about a fifth less CPU
 * time (0.6 s instead of 0.8), and a run starts 26 of them.
 */
async function cacheOf(
  setup: ServerSetup,
  redisUrl: string | undefined,
): Promise<{ module: DynamicModule; interceptor: Type<NestInterceptor> } | undefined> {
  // The workers of one server share its entries: they take the primary's pid. The instances of a
  // fleet (run.ts) are given theirs.
  const prefix = setup.prefix ?? `bench-${cluster.isWorker ? process.ppid : process.pid}`;
  if (setup.library === 'nest-cache') {
    const { CacheInterceptor, CacheModule } = await import('../lib/index.js');
    return {
      interceptor: CacheInterceptor,
      module: CacheModule.forRoot({
        backend: setup.backend,
        ttl: CACHE_TTL_SECONDS,
        prefix,
        ...(setup.backend === 'redis' && { redis: { url: redisUrl! } }),
        ...(setup.distributedSingleFlight && { distributedSingleFlight: true }),
        // One store per server, shared by its workers (run.ts makes the folder).
        ...(setup.backend === 'disk' && { disk: { path: diskPath(setup) } }),
      }),
    };
  }
  if (setup.library === 'incumbent') {
    const [{ CacheInterceptor, CacheModule }, { createKeyv }] = await Promise.all([
      import('@nestjs/cache-manager'),
      import('@keyv/redis'),
    ]);
    // As its documentation sets it up: milliseconds; memory is the default Keyv store, Redis is
    // @keyv/redis.
    const ttl = CACHE_TTL_SECONDS * 1_000;
    return {
      interceptor: CacheInterceptor,
      module:
        setup.backend === 'redis'
          ? CacheModule.registerAsync({
              useFactory: () => ({ stores: [createKeyv(redisUrl!, { namespace: prefix })], ttl }),
            })
          : CacheModule.register({ ttl }),
    };
  }
  return undefined;
}

/** The disk store of a setup: a folder of its own under BENCH_DISK_ROOT. */
function diskPath(setup: ServerSetup): string {
  const root = process.env.BENCH_DISK_ROOT;
  if (!root) throw new Error('BENCH_DISK_ROOT is not set: run.ts sets it for the disk setups.');
  return `${root}/${setupName(setup).replace(/[^\w-]+/g, '-')}`;
}

@Module({})
class BenchModule {}

/** The root module of one setup; `redisUrl` is the bench's own redis-server. */
export async function benchModule(setup: ServerSetup, redisUrl?: string): Promise<DynamicModule> {
  const cache = await cacheOf(setup, redisUrl);
  return {
    module: BenchModule,
    imports: cache ? [cache.module] : [],
    controllers: [
      ReferenceController,
      NoopController,
      ...(cache ? [cachedController(cache.interceptor)] : []),
    ],
  };
}
