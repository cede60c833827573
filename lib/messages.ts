/**
 * Every sentence nest-cache says to a user, in one place. Each names what failed,
 * the option or argument involved, and what to do.
 */

const TTL_HELP =
  "A ttl is a number of SECONDS (fractions allowed, 0.5 = 500 ms), a string with its unit ('500ms', '30s', '5m', '1h', '1d'), or null for never expires.";

export const messages = {
  invalidTtl: (where: string, ttl: unknown, problem: string) =>
    `Invalid ${where}: ${describe(ttl)} ${problem}. ${TTL_HELP}`,

  invalidTimeout: (option: string, value: unknown, problem: string) =>
    `Invalid CacheModule option "${option}": ${describe(value)} ${problem}. A timeout is a number of SECONDS or a string with its unit ('500ms', '10s', '1m'), from 1 ms to 24 days.`,

  invalidKey: (key: unknown) =>
    `Invalid cache key: ${describe(key)}. A key must be a non-empty string, e.g. \`user:\${id}\`.`,

  undefinedValue: (key: string) =>
    `Cannot cache undefined at key "${key}": undefined is what a miss returns. Store null to cache "nothing".`,

  unserializableAt: (key: string, reason: string) => `Key "${key}": ${reason}`,

  closed: (operation: string) =>
    `Cannot call ${operation}() on a closed cache. close() was called (the application shut down); create a new cache or stop using this one.`,

  operationTimeout: (operation: string, ms: number) =>
    `no answer within ${ms} ms (CacheModule option "operationTimeout"); the call was given up`,

  factoryTimeout: (key: string, ms: number) =>
    `getOrSet("${key}"): its factory had not settled ${ms} ms after it started, so every caller waiting on it gave up. Make the factory settle sooner or raise the "getOrSetTimeout" option.`,

  unknownBackend: (backend: unknown) =>
    `Unknown cache backend ${describe(backend)} in CacheModule options "backend". Use 'memory' (the default), 'redis', 'memcached', 'disk', 'keyv', a driver (an object with get, set, delete, ttl, close and scan or clear, or a function that returns one), or a class that extends BaseCache.`,

  cacheRegisteredTwice: (name: string | undefined) =>
    name === undefined
      ? `CacheModule.forRoot() registers the default cache twice in this application (two CacheModule.forRoot() imports make two modules, even with equal options). Register it once (isGlobal: true makes it injectable everywhere), or give the second one a name: CacheModule.forRoot({ name: 'sessions', ... }).`
      : `CacheModule.forRoot({ name: "${name}" }) registers the cache "${name}" twice in this application (two CacheModule.forRoot() imports make two modules, even with equal options). Register each name once (isGlobal: true makes it injectable everywhere), or pick another name.`,

  invalidPrefix: (prefix: unknown) =>
    `Invalid CacheModule option "prefix": ${describe(prefix)}. The prefix must be a non-empty string; clear() deletes only keys under it.`,

  unboundedMemory: (option: string, value: unknown) =>
    `Invalid CacheModule option "memory.${option}": ${describe(value)}. The memory backend must be bounded: set a positive whole number (the default max is 10000 entries).`,

  unknownOptionKeys: (option: string, unknown: readonly string[], known: readonly string[]) =>
    `Unknown CacheModule option${unknown.length > 1 ? 's' : ''} ${unknown.map((key) => `"${option}.${key}"`).join(', ')}: the "${option}" options are ${known.join(', ')}. Check the spelling (it would be ignored, and the default used).`,

  invalidOption: (option: string, value: unknown, rule: string) =>
    `Invalid CacheModule option "${option}": ${describe(value)}. ${rule}`,

  badRedisUrl: (url: string, problem: string) =>
    `Invalid CacheModule option "redis.url": ${redactUrl(url)} ${problem}. Use redis://[user:password@]host:port[/db] or rediss:// for TLS.`,

  ioredisMissing: () =>
    `CacheModule option backend: 'redis' needs the ioredis package, which is not installed. Run \`npm install ioredis\`, or use backend: 'memory'.`,

  valueTooLarge: (key: string, bytes: number, max: number) =>
    `The value for key "${key.length > 200 ? `${key.slice(0, 200)}…` : key}" takes ${bytes} bytes, over CacheModule option "maxValueBytes" (${max}): it was not stored, and the older entry under that key was removed. Cache something smaller, or raise maxValueBytes.`,

  breakerOpened: (backend: string, failures: number, cooldownMs: number) =>
    `${backend}: ${failures} backend calls failed in a row, so the circuit breaker opened: for ${cooldownMs} ms at a time, calls fail open at once without waiting on the backend, until one succeeds (CacheModule option "breaker").`,

  breakerClosed: (backend: string) =>
    `${backend}: the backend answers again; the circuit breaker closed.`,

  backendFailing: (backend: string, operation: string, reason: string, suppressed: number) =>
    `${backend} ${operation} failed (${reason}); the cache fails open: reads are misses, writes are dropped, requests are still served.` +
    (suppressed > 0 ? ` ${suppressed} more cache errors since the last report.` : ''),

  keyBuilderFailed: (reason: string) =>
    `The cache key builder threw (${reason}); the request was served without the cache. Fix the "http.key" option, @CacheKey() or trackBy().`,

  responseNotStored: (path: string, why: string) =>
    `The response of GET ${path} was not cached: ${why}. Later responses of this route are not reported.`,

  identifyFailed: (path: string, reason: string) =>
    `The identify function of @CachePerUser() on GET ${path} threw (${reason}); the request was served without the cache. Fix the function given to @CachePerUser(). Later errors of this route are not reported.`,

  malformedResponseEntry: (path: string) =>
    `The cached entry of GET ${path} is not a response entry CacheInterceptor can replay (another program, or another version, wrote it under this key); it was treated as a miss, and the next response stored replaces it. Later ones of this route are not reported.`,

  replayedAsValues: (path: string) =>
    `The bytes sent for GET ${path} are not what its handler returned serializes to: something after the handler changed them (a json replacer, a serialization or onSend hook, compression), and replaying them would skip or repeat that step. The route stores the handler's value instead, and every HIT goes through the framework's send again. Later ones of this route are not reported.`,

  keyedOnAcceptEncoding: (path: string) =>
    `The response of GET ${path} varies on Accept-Encoding (a compression step, or the handler, said so): from now on the route's key includes the encodings the client accepts, so each has an entry of its own. Add @CacheVary('accept-encoding') to say so up front. Later ones of this route are not reported.`,

  interceptorTwice: (path: string) =>
    `CacheInterceptor runs twice for GET ${path} (app-wide APP_INTERCEPTOR and @UseInterceptors(CacheInterceptor), say); the outer one caches and the inner one lets the request through. Register it once. Later requests of this route are not reported.`,

  corruptEntry: (key: string, reason: string) =>
    `Entry "${key}" could not be decoded (${reason}); it was treated as a miss and deleted.`,

  redisUnreachable: (target: string, reason: string) =>
    `RedisCache cannot use Redis at ${target} (${reason}); it keeps reconnecting by itself and fails open meanwhile: reads are misses, writes are dropped. Check that Redis is up and that CacheModule option "redis" points to it.`,

  redisAuthFailed: (target: string, reason: string) =>
    `RedisCache cannot log in to Redis at ${target} (${reason}); it keeps retrying and fails open meanwhile: reads are misses, writes are dropped. Check the username and password of CacheModule option "redis" (in its url, or username/password) against the server's requirepass or ACL user.`,

  commandTimeoutOverOperationTimeout: (commandMs: number, operationMs: number) =>
    `Invalid CacheModule option "redis.commandTimeout": ${commandMs} ms is not below "operationTimeout" (${operationMs} ms), so the cache would give up on commands the client still waits for. Lower redis.commandTimeout (default 500) or raise operationTimeout (default '2s').`,

  redisMgetRefused: (reason: string) =>
    `RedisCache reads one key per command from now on: Redis refused MGET (${reason}). Concurrent reads then cost a command each; allow MGET for the cache's user (ACL +mget), or keep the keys of one cache in one hash slot (a {hash tag} in "prefix") if your Redis wants multi-key commands in one slot.`,
  redisClientUnbounded: (operationMs: number) =>
    `The ioredis client given as CacheModule option "redis.client" has no commandTimeout or keeps an offline queue, so its commands can wait while Redis is down: the cache gives up on each after operationTimeout (${operationMs} ms), but a write it gave up on can still land later. Create it with { commandTimeout: 500, enableOfflineQueue: false, maxRetriesPerRequest: 0 }, or pass "redis.url" and let RedisCache configure its own client.`,

  adoptedCommandTimeoutOverOperationTimeout: (commandMs: number, operationMs: number) =>
    `The ioredis client given as CacheModule option "redis.client" has commandTimeout ${commandMs} ms, not below "operationTimeout" (${operationMs} ms): the cache gives up on commands the client still waits for, and a write it gave up on can still land later. Create the client with a lower commandTimeout, or raise operationTimeout.`,

  redisClusterOptions: (value: unknown) =>
    `Invalid CacheModule option "redis.cluster": ${describe(value)}. Use { nodes: [{ host, port }] } (and username, password, tls for every node if they need them).`,

  redisClusterNodes: (where: string, value: unknown) =>
    `Invalid CacheModule option "${where}": ${describe(value)}. Use a non-empty list of { host, port } (a host name or address, a port from 1 to 65535): nodes of the cluster to start from; one is enough, the client asks it for the others.`,

  redisClusterString: (option: string, value: unknown) =>
    `Invalid CacheModule option "redis.cluster.${option}": ${describe(value)}. Use a string; it is sent to every node of the cluster.`,

  redisClusterTls: (value: unknown) =>
    `Invalid CacheModule option "redis.cluster.tls": ${describe(value)}. Use tls.connect() options, applied to every node ({} for TLS with the system's CAs).`,

  redisClusterNatMap: (value: unknown) =>
    `Invalid CacheModule option "redis.cluster.natMap": ${describe(value)}. Use an object from the address a node announces ('10.0.0.5:6379') to the { host, port } to reach it at, or a function doing the same (ioredis' natMap).`,

  redisClusterMilliseconds: (option: string, value: unknown, fallback: number) =>
    `Invalid CacheModule option "redis.cluster.${option}": ${describe(value)}. Use a positive whole number of milliseconds (default ${fallback}).`,

  redisClusterKeyPrefix: () =>
    `Invalid CacheModule option "redis.cluster.keyPrefix": use the CacheModule option "prefix" instead: clear() must know the namespace it deletes.`,

  redisClusterBeside: (keys: readonly string[]) =>
    `Unknown CacheModule option${keys.length > 1 ? 's' : ''} ${keys.map((key) => `"redis.${key}"`).join(', ')} beside "redis.cluster": with a cluster, "redis" takes cluster, commandTimeout and connectTimeout. Options of the nodes (username, password, tls) go inside "redis.cluster", which applies them to every node.`,

  redisClusterNodeUnreachable: (node: string, reason: string) =>
    `RedisCache cannot use the Redis Cluster node ${node} (${reason}); the keys of its slots fail open (reads are misses, writes are dropped) until it answers again or its slots move to another node, and the client keeps looking for it by itself. Check that the node is up and reachable at the address it announces (CLUSTER NODES; "redis.cluster.natMap" maps it otherwise).`,

  redisClusterClientUnbounded: (operationMs: number) =>
    `The ioredis Cluster client given as CacheModule option "redis.client" keeps an offline queue or has no commandTimeout on its nodes, so its commands can wait while a node is down: the cache gives up on each after operationTimeout (${operationMs} ms), but a write it gave up on can still land later. Create it with new Cluster(nodes, { enableOfflineQueue: false, redisOptions: { commandTimeout: 500, maxRetriesPerRequest: 0 } }), or pass "redis.cluster" and let RedisCache configure its own client.`,

  redisClusterAutoPipelining: () =>
    `The ioredis Cluster client given as CacheModule option "redis.client" has enableAutoPipelining: while a slot is being migrated, ioredis hands the ASK and MOVED redirections of an automatic pipeline to the caller instead of following them, so the cache's reads of that slot are misses and its writes are dropped until the migration ends. Create it with enableAutoPipelining: false (RedisCache batches its reads per hash slot itself).`,

  redisClusterReplicaReads: (scaleReads: string) =>
    `The ioredis Cluster client given as CacheModule option "redis.client" reads from replicas (scaleReads: ${scaleReads}): a replica lags behind its master, so a read can still find an entry just deleted, or miss the record of a tag just invalidated, and serve stale data. Create it with scaleReads: 'master' (the default).`,

  redisClusterPartialWrite: (stored: number, slots: number, reason: string) =>
    `only the entries of ${stored} of their ${slots} hash slots were stored (each slot in one MULTI), the others were not: ${reason}`,

  redisClusterMovedDuringWalk: (walks: number) =>
    `the cluster's slots moved (a resharding or a failover) during each of ${walks} walks of its masters, so keys that moved meanwhile may have been missed; call it again once the cluster is stable`,

  invalidPattern: (pattern: unknown, problem: string) =>
    `Invalid deleteByPattern() pattern ${describe(pattern)}: it ${problem}. A pattern is a glob matched against your keys: * any run of characters, ? one character, [abc] or [a-z] one of a set, [^abc] one not in it, \\ escapes the next character; e.g. 'user:*'.`,

  invalidTags: (operation: string, tags: unknown) =>
    `Invalid option "tags" of ${operation}(): ${describe(tags)}. Tags are an array of non-empty strings, e.g. ['user:42', 'products'].`,

  invalidTag: (operation: string, tag: unknown) =>
    `Invalid tag in option "tags" of ${operation}(): ${describe(tag)}. A tag is a non-empty string (of at most 65535 UTF-8 bytes, without lone surrogates), e.g. 'user:42'.`,

  tooManyTags: (operation: string, count: number) =>
    `Too many tags in option "tags" of ${operation}(): ${count}. An entry carries at most 64 tags; tag by what invalidates it (an owner, a collection), not by every attribute.`,

  invalidIncrement: (key: string, by: unknown) =>
    `Invalid "by" for counter "${key}": ${describe(by)}. Use a whole number (a safe integer), e.g. increment('${key}', 5).`,

  notACounter: (key: string) =>
    `The key "${key}" holds a value that is not a counter, so it cannot be incremented. Use another key for the counter, or delete() this one first.`,

  staleWithoutTtl: (operation: string, option: string) =>
    `Invalid ${operation} option "${option}": the entry never expires (its ttl is null), so it is never stale. Give a ttl, or drop "${option}".`,

  staleWindowNull: (operation: string, option: string) =>
    `Invalid ${operation} option "${option}": null. A stale window is a duration (seconds when a number, or '30s', '5m'...).`,

  softTimeoutWithoutStale: (operation: string) =>
    `Invalid ${operation} option "softTimeout": it returns a stale value when the factory is slow, and there is none without "staleIfError". Add staleIfError (how long past its ttl the value may be served), or drop softTimeout.`,

  softTimeoutTooLong: (operation: string) =>
    `Invalid ${operation} option "softTimeout": over ${2 ** 31 - 1} ms (about 24.8 days), the longest timer Node runs.`,

  refreshNotStored: (path: string) =>
    `The background refresh of GET ${path} returned a value the cache cannot store exactly (not plain data: a class instance, null, a stream), so the stale entry was not replaced. Return plain data from the handler, or drop @CacheStale from the route. Later ones of this route are not reported.`,

  refreshFailed: (key: string, reason: string) =>
    `The background refresh of "${key}" failed (${reason}); its stale value is still served until its stale window ends.`,

  invalidDriver: (driver: unknown, missing: readonly string[]) =>
    `Invalid cache driver ${describe(driver)}: it lacks ${missing.join(', ')}. A driver implements get, set, delete, ttl, close and scan (or clear, for a store that cannot list keys) on full keys and bytes (see the README, "Write your own backend").`,

  cacheDescribed: (backend: string, location: string | undefined, prefix: string) =>
    `the ${backend} backend${location ? ` (${location})` : ''}, keys under "${prefix}:"`,

  cacheReady: (name: string | undefined, described: string) =>
    `${name === undefined ? 'The default cache' : `The cache "${name}"`} uses ${described}.`,

  listenerFailed: (event: string, reason: string) =>
    `A listener of the cache's "${event}" event threw (${reason}); the cache call went on. Catch errors inside cache.on() listeners.`,

  noLeases: (driver: string) =>
    `distributedSingleFlight needs a backend with leases (a driver with acquireLease, renewLease and releaseLease, on a store every instance of the app shares); the ${driver} backend has none. Use backend: 'redis', or leave the option out (single-flight then works per process).`,

  patternClearsNamespace: (driver: string, pattern: string) =>
    `deleteByPattern(${JSON.stringify(pattern)}): the ${driver} backend cannot list its keys, so every entry of this cache's namespace was removed (the count returned is 0). To invalidate a group of entries selectively there, tag them and call invalidateTags().`,

  unkeyableArgument: (method: string, path: string, what: string) =>
    `@Cacheable ${method}: its ${path} is ${what}, which the default key cannot represent faithfully (two different calls could share an entry). Pass plain data (strings, numbers, plain objects, arrays, Dates, objects with toJSON()), or give @Cacheable a key: { key: (...args) => string }.`,

  cacheableKeyInvalid: (method: string, key: unknown) =>
    `@Cacheable ${method}: its key function returned ${describe(key)}, not a non-empty string. Make { key: (...args) => ... } return the key, e.g. \`report:\${id}\`.`,

  decoratorOnNonMethod: (decorator: string, property: string) =>
    `${decorator} is on "${property}", which is not a method. Put it on a method of a provider (or, for @CacheEvict, of a controller).`,

  evictsNothing: () =>
    `@CacheEvict() needs something to evict: { keys }, { tags } or { all: true }.`,

  cacheNotRegistered: (decorator: string, method: string, name: string | undefined) =>
    `${decorator} on ${method} uses the cache ${name === undefined ? '(default)' : `"${name}"`}, which no CacheModule registers in this application. Import CacheModule.forRoot(${name === undefined ? '' : `{ name: '${name}', ... }`}) (isGlobal: true makes it reachable from every module).`,

  decoratorNotStatic: (decorator: string, method: string) =>
    `${decorator} on ${method} does nothing: its provider is request-scoped or transient (or depends on one), and nest-cache wraps the methods of singleton providers only. Move the cached method to a singleton provider, or call cache.getOrSet() inside it.`,

  notCacheable: (method: unknown) =>
    `invalidateCacheable() needs a @Cacheable method as Nest's instance holds it (e.g. this.reports.find), got ${describe(method)}. The method is wrapped when its module initializes; pass it from the injected instance, not from the class prototype.`,

  tagsFailed: (path: string, reason: string) =>
    `The @CacheTags() builder of GET ${path} failed (${reason}); the request was served without the cache. Make it return an array of non-empty strings. Later errors of this route are not reported.`,

  cacheableKeyShared: (method: string, first: string, second: string, sameClass: boolean) =>
    `@Cacheable ${method}: two providers, ${first} and ${second}, would share its default key \`${method}(...)\`, so each would return the other's cached results. ` +
    (sameClass
      ? `Provide them under tokens with distinct names (e.g. { provide: 'GITHUB', useFactory: () => new ApiClient(githubUrl) } and { provide: 'GITLAB', ... }): the token's name (a symbol's description) starts the default key.`
      : `Give each class's @Cacheable a key of its own ({ key: (...args) => \`github:\${args[0]}\` }), or provide them under tokens with distinct names (e.g. { provide: 'GITHUB', useClass: ApiClient }): the token's name starts the default key.`),

  evictStepFailed: (method: string, step: 'keys' | 'tags' | 'all', reason: string) =>
    `@CacheEvict on ${method} could not ${step === 'keys' ? 'delete its keys' : step === 'tags' ? 'invalidate its tags' : 'clear the cache'} (${reason}); the call itself succeeded, and its other evictions, if any, still ran.` +
    (step === 'all' ? '' : ` Fix the ${step} function of @CacheEvict.`),

  // ---- memcached backend (lib/stores/memcached.cache.ts) ----

  memjsMissing: () =>
    `CacheModule option backend: 'memcached' needs the memjs package, which is not installed. Run \`npm install memjs\`, or use backend: 'memory'.`,

  badMemcachedServer: (entry: string, problem: string) =>
    `Invalid CacheModule option "memcached.servers": ${entry} ${problem}. Use 'host:port' (port 11211 when left out; '[::1]:11211' for IPv6), a comma-separated list of them, or an array.`,

  memcachedTimeoutOverOperationTimeout: (requestMs: number, operationMs: number) =>
    `Invalid CacheModule option "memcached": a request may take ${requestMs} ms ((retries + 1) × (connectTimeout + commandTimeout), plus 200 ms between tries), which is not below "operationTimeout" (${operationMs} ms), so the cache would give up on requests the client still waits for. Lower memcached.commandTimeout (default 500), memcached.connectTimeout (default 500) or memcached.retries (default 0), or raise operationTimeout (default '2s').`,

  memcachedClientSaid: (target: string, line: string) =>
    `MemcachedCache cannot use memcached at ${target} (memjs: ${line}); it fails open meanwhile (reads are misses, writes are dropped) and tries again on the next call. Check that memcached is up and that CacheModule option "memcached.servers" points to it.`,

  memcachedValueTooLarge: (key: string, bytes: number, limit: string) =>
    `Entry "${key}" (${bytes} bytes with its metadata) was not stored: it is larger than ${limit}; the entry it replaced was removed. Store smaller values, or raise the limit (memcached -I, then CacheModule option "memcached.maxValueBytes").`,

  memcachedAnswered: (operation: string, status: number) =>
    `memcached answered ${operation} with status 0x${status.toString(16).padStart(4, '0')} (${MEMCACHED_STATUS[status] ?? 'unknown status'})`,

  memjsIncompatible: (missing: string[]) =>
    `CacheModule option backend: 'memcached' needs memjs ~1.3.2: the memcached backend relies on memjs internals, and the installed memjs lacks ${missing.join(', ')}. Run \`npm install memjs@~1.3.2\`.`,

  memcachedInvalidOption: (option: string, value: unknown, rule: string) =>
    `Invalid CacheModule option "${option}": ${typeof value === 'string' ? (value ? 'a string (not shown: it may hold credentials)' : 'an empty string') : describe(value)}. ${rule}`,

  memcachedPastDeadline: (key: string) =>
    `"${key}" was not updated: memcached answered too slowly, and the write could have landed after operationTimeout, when the call was already reported failed`,

  memcachedContended: (key: string, tries: number) =>
    `"${key}" was changed by other clients ${tries} times while this one tried to update it (compare-and-swap); the update was given up`,

  // ---- keyv backend (lib/stores/keyv.cache.ts) ----

  keyvMissing: () =>
    `CacheModule option backend: 'keyv' needs the keyv package (version 5), which is not installed. Run \`npm install keyv\` (and the storage adapter you use, e.g. @keyv/redis), or use backend: 'memory'.`,

  keyvStoreMissing: () =>
    `CacheModule option backend: 'keyv' needs "keyv.store": a Keyv storage adapter (keyv: { store: new KeyvRedis('redis://localhost:6379') }) or a Keyv instance (keyv: { store: new Keyv({ store }) }), as you would list it in "stores" of @nestjs/cache-manager. For a cache in this process only, use backend: 'memory'.`,

  keyvInvalidStore: (store: string) =>
    `Invalid CacheModule option "keyv.store": ${store}. Pass a Keyv storage adapter (an object with get, set, delete and clear, such as new KeyvRedis(url) or new KeyvPostgres({ uri })), a Keyv instance, or a Map.`,

  keyvStoreFailed: (store: string, reason: string) =>
    `The Keyv store ${store} reported an error (${reason}); the cache fails open meanwhile: reads are misses, writes are dropped, requests are still served.`,

  keyvCallFailed: (store: string, reason: string) =>
    `the Keyv store ${store} reported an error while the call ran (${reason}), though it answered as if it had none`,

  // ---- disk backend (lib/stores/disk.cache.ts) ----

  lmdbMissing: () =>
    `CacheModule option backend: 'disk' needs the lmdb package, which is not installed. Run \`npm install lmdb\`, or use backend: 'memory'.`,

  diskPathRequired: (path: unknown) =>
    `Invalid CacheModule option "disk.path": ${describe(path)}. The disk backend needs the directory of its store, e.g. disk: { path: '/var/cache/my-app' }: a directory that survives restarts and that every process of the app sees (a volume in a container; not a temporary directory that is cleared at boot).`,

  diskPathUnusable: (path: string, problem: string) =>
    `Invalid CacheModule option "disk.path": ${JSON.stringify(path)} ${problem}.`,

  diskStoreUnopenable: (path: string, reason: string) =>
    `Invalid CacheModule option "disk.path": the store in ${JSON.stringify(path)} cannot be opened (${reason}). If another program wrote it, point disk.path to a new directory; if it is a nest-cache store that is damaged, delete the directory (a cache loses nothing that matters) and restart.`,

  diskStoreForeign: (path: string) =>
    `Invalid CacheModule option "disk.path": ${JSON.stringify(path)} holds an LMDB store that nest-cache did not create (another program's data). nest-cache never writes into it: point disk.path to a new or empty directory.`,

  diskStoreNewer: (path: string, found: unknown, supported: number) =>
    `Invalid CacheModule option "disk.path": the store in ${JSON.stringify(path)} has format ${describe(found)}, newer than this version of nest-cache reads (format ${supported}); a newer nest-cache wrote it. Upgrade nest-cache in every process that shares the store, or point disk.path to another directory.`,

  diskStoreFull: (path: string, maxSize: number) =>
    `The disk store in ${JSON.stringify(path)} is at its size bound (CacheModule option "disk.maxSize", ${maxSize} bytes): writes are dropped while the entries that expire soonest are evicted. Raise disk.maxSize if this happens often.`,

  diskStoreClosed: (path: string) =>
    `The disk store at ${JSON.stringify(path)} is closed (the cache is shutting down): the write was dropped.`,

  diskWriteFailed: (path: string, reason: string) =>
    `The disk store in ${JSON.stringify(path)} could not write (${reason}); the cache fails open: the write is dropped, reads go on. Free disk space, or lower CacheModule option "disk.maxSize".`,

  healthNoCaches: () =>
    'no cache to check: import CacheModule.forRoot() in the application, or list caches in the "caches" option of isHealthy()',

  healthPingTimeout: (ms: number) =>
    `no answer to the health check's ping within ${ms} ms (CacheHealthIndicator.isHealthy() option "timeout")`,

  healthBreakerOpen: (consecutiveFailures: number, openUntil: number | null) =>
    `the circuit breaker is open after ${consecutiveFailures} failed calls in a row: calls fail open without reaching the backend${openUntil === null ? '' : ` until ${new Date(openUntil).toISOString()}`}`,

  healthUnknownCache: (name: string | undefined) =>
    name === undefined
      ? 'no default cache is registered: import CacheModule.forRoot(), or list only named caches in the "caches" option of isHealthy()'
      : `no cache named "${name}" is registered: import CacheModule.forRoot({ name: "${name}" }), or fix the "caches" option of isHealthy()`,

  invalidHealthCaches: (caches: unknown) =>
    `Invalid CacheHealthIndicator.isHealthy() option "caches": ${describe(caches)}. Give an array of cache names (undefined for the default cache), e.g. [undefined, 'sessions'], or leave it out for every registered cache.`,

  keyGroupFailed: (reason: string) =>
    `The CacheModule option "metrics.keyGroup" threw (${reason}); the operation was recorded without a key group. Fix the function given to "metrics.keyGroup".`,

  keyGroupsCapped: (max: number, other: string) =>
    `The CacheModule option "metrics.keyGroup" returned more than ${max} distinct groups: the groups after those are recorded as "${other}", so that the metrics stay bounded. Return a small set of groups (the key's first segment, say), never the key itself.`,
} as const;

/** What memcached's binary-protocol statuses mean, for memcachedAnswered(). */
const MEMCACHED_STATUS: Record<number, string> = {
  0x04: 'invalid arguments',
  0x05: 'item not stored',
  0x08: 'authentication error',
  0x81: 'unknown command',
  0x82: 'out of memory',
  0x83: 'not supported',
  0x84: 'internal error',
  0x85: 'busy',
  0x86: 'temporary failure',
};

/** The error's message only: never its stack of arguments, so no value or password is logged. */
export function reasonOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  try {
    return String(error);
  } catch {
    return 'an error that cannot be printed'; // a null-prototype object, a throwing toString
  }
}

/** A short, value-free description for messages: never prints cached data. */
export function describe(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null)
    return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/**
 * Hides the user info of a URL (everything between the scheme and the last '@'), so a password
 * never reaches a log or an error, even in a URL that does not parse.
 */
export function redactUrl(url: string): string {
  return url.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)?.*@/is,
    (_, scheme: string | undefined) => `${scheme ?? ''}***@`,
  );
}
