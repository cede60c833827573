import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { CacheModuleOptions } from '../../lib/index.js';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  usePrivateMemcached,
} from './support/app.js';
import { ItemsController, PolicyController } from './support/controllers.js';
import { json, pollUntil } from './support/http.js';

// What a response's key is made of: method, path, the query in canonical order and the varied
// headers, under the module prefix. Requests that differ in any of them never share an entry.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();
    const startApp = (http: CacheModuleOptions['http'] = {}) =>
      start({
        adapter,
        controllers: [ItemsController, PolicyController],
        cache: { ...backend.options(), http },
      });

    it('the same query in another order shares an entry (?b=1&a=2 is ?a=2&b=1)', async () => {
      const { send, calls } = await startApp();

      const miss = await send('/items?b=1&a=2');
      const hit = await send('/items?a=2&b=1');

      expect(miss.cache).toBe('MISS');
      expect(hit.cache).toBe('HIT');
      expect(hit.text).toBe(miss.text);
      expect(calls.of('list')).toBe(1);
    });

    it('a different query value gets its own entry (?a=1 is not ?a=2)', async () => {
      const { send, calls } = await startApp();

      await send('/items?a=1');
      const other = await send('/items?a=2');

      expect(other.cache).toBe('MISS');
      expect(json(other)).toEqual({ run: 2, query: { a: '2' } });
      expect(calls.of('list')).toBe(2);
    });

    it('repeated query values in another order get their own entry (?a=1&a=2 is not ?a=2&a=1)', async () => {
      const { send, calls } = await startApp();

      await send('/items?a=1&a=2');
      const other = await send('/items?a=2&a=1');

      expect(other.cache).toBe('MISS');
      expect(json(other)).toEqual({ run: 2, query: { a: ['2', '1'] } });
      expect(calls.of('list')).toBe(2);
    });

    it('requests that differ in a path parameter never share an entry', async () => {
      const { send, calls } = await startApp();

      await send('/items/1');
      const other = await send('/items/2');
      const again = await send('/items/1');

      expect(other.cache).toBe('MISS');
      expect(json(other)).toEqual({ run: 2, id: '2' });
      expect(again.cache).toBe('HIT');
      expect(json(again)).toEqual({ run: 1, id: '1' });
      expect(calls.of('one')).toBe(2);
    });

    it('a @CacheKey name never merges different path parameters (/users/1 and /users/2)', async () => {
      const { send, calls } = await startApp();

      await send('/policy/users/1');
      const other = await send('/policy/users/2');
      const again = await send('/policy/users/1');

      expect(other.cache).toBe('MISS');
      expect(json(other)).toEqual({ run: 2, id: '2' });
      expect(again.cache).toBe('HIT');
      expect(json(again)).toEqual({ run: 1, id: '1' });
      expect(calls.of('user')).toBe(2);
    });

    it('http.vary: each Accept-Language gets its own entry', async () => {
      const { send, calls } = await startApp({ vary: ['Accept-Language'] });
      const inFrench = { headers: { 'accept-language': 'fr' } };
      const inGerman = { headers: { 'accept-language': 'de' } };

      await send('/items/lang', inFrench);
      const german = await send('/items/lang', inGerman);
      const frenchAgain = await send('/items/lang', inFrench);
      const germanAgain = await send('/items/lang', inGerman);

      expect(german.cache).toBe('MISS');
      expect(json(german)).toEqual({ run: 2, lang: 'de' });
      expect(frenchAgain.cache).toBe('HIT');
      expect(json(frenchAgain)).toEqual({ run: 1, lang: 'fr' });
      expect(germanAgain.cache).toBe('HIT');
      expect(json(germanAgain)).toEqual({ run: 2, lang: 'de' });
      expect(calls.of('lang')).toBe(2);
    });

    it('http.key returning undefined bypasses the cache: BYPASS, the handler runs every time', async () => {
      const { send, calls } = await startApp({ key: () => undefined });

      const first = await send('/items/7');
      const second = await send('/items/7');

      expect(first.cache).toBe('BYPASS');
      expect(second.cache).toBe('BYPASS');
      expect(calls.of('one')).toBe(2);
    });

    it('http.key gets each request its default key, and the key it returns is the one used', async () => {
      const defaults: string[] = [];
      const { send, calls } = await startApp({
        key: (_context, defaultKey) => {
          defaults.push(defaultKey);
          return 'every-item';
        },
      });

      await send('/items/1');
      const other = await send('/items/2');

      expect(new Set(defaults).size).toBe(2);
      expect(other.cache).toBe('HIT');
      expect(json(other)).toEqual({ run: 1, id: '1' });
      expect(calls.of('one')).toBe(1);
    });
  });
});

describe.each(ADAPTERS)('on $name with the redis backend', (adapter) => {
  const start = useApps();

  it('stores responses under the module prefix', async () => {
    const [, redisBackend] = backends(redis, memcached);
    const { send, prefix } = await start({
      adapter,
      controllers: [ItemsController],
      cache: redisBackend!.options(),
    });
    const client = new Redis(redis.server.url);
    const id = `probe-${Date.now()}`;
    try {
      await send(`/items/${id}`);

      let keys: string[] = [];
      // The entry is written once the response is sent: wait for it rather than sleep.
      await pollUntil(
        'the entry reaching Redis',
        async () => (keys = await client.keys(`*${id}*`)).length > 0,
        2_000,
      );
      expect(keys).toHaveLength(1);
      expect(keys[0]!.startsWith(`${prefix}:`)).toBe(true);
    } finally {
      client.disconnect();
    }
  });
});
