import { randomUUID } from 'node:crypto';
import { get as httpGet } from 'node:http';
import { gzipSync } from 'node:zlib';
import { type INestApplication, VersioningType } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  usePrivateMemcached,
} from './support/app.js';
import { ItemsController } from './support/controllers.js';
import { json } from './support/http.js';
import {
  EncodingController,
  HeadersController,
  IdentityController,
  SecretsController,
  VersionedController,
  MASK,
  maskSsn,
} from './support/setups.js';

// A HIT replays exactly what that client would have been sent, in the set-ups real apps use:
// serialization hooks, API versioning, per-user identity, middleware that sets headers, a handler
// that varies on Accept-Encoding, Express's extended query parser, and entries of the wrong shape.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

type Instance = {
  set(name: string, value: unknown): void;
  use(
    fn: (req: unknown, res: { setHeader(n: string, v: string): void }, next: () => void) => void,
  ): void;
  addHook(name: string, hook: (...args: any[]) => unknown): void;
};
const instanceOf = (app: INestApplication) => app.getHttpAdapter().getInstance() as Instance;

/** Sets per-request headers before the handler: a rate-limit count, a random trace id, traceparent. */
function perRequestHeaders(adapter: string) {
  let remaining = 100;
  const headers = () => ({
    'x-ratelimit-remaining': String(--remaining),
    'x-request-trace': randomUUID(),
    traceparent: `00-${randomUUID().replaceAll('-', '')}-0000000000000001-01`,
  });
  return (app: INestApplication) => {
    const instance = instanceOf(app);
    if (adapter === 'express') {
      instance.use((_req, res, next) => {
        for (const [name, value] of Object.entries(headers())) res.setHeader(name, value);
        next();
      });
    } else {
      instance.addHook(
        'onRequest',
        (_req: unknown, reply: { header(n: string, v: string): void }, done: () => void) => {
          for (const [name, value] of Object.entries(headers())) reply.header(name, value);
          done();
        },
      );
    }
  };
}

/**
 * Compresses every response after the handler, as compression does: Express's `compression`
 * wraps write()/end() in a middleware, @fastify/compress rewrites the payload in an onSend hook.
 */
function gzipAfterHandler(adapter: string) {
  return (app: INestApplication) => {
    const instance = instanceOf(app);
    if (adapter === 'express') {
      instance.use((_req, res, next) => {
        const raw = res as unknown as {
          write: (...args: unknown[]) => boolean;
          end: (...args: unknown[]) => unknown;
          setHeader(n: string, v: string): void;
          removeHeader(n: string): void;
        };
        const chunks: Buffer[] = [];
        const end = raw.end.bind(raw);
        raw.write = (chunk: unknown) => {
          if (chunk) chunks.push(Buffer.from(chunk as string));
          return true;
        };
        raw.end = (chunk?: unknown) => {
          if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk as string));
          raw.setHeader('content-encoding', 'gzip');
          raw.removeHeader('content-length');
          return end(gzipSync(Buffer.concat(chunks)));
        };
        next();
      });
    } else {
      instance.addHook(
        'onSend',
        async (_req: unknown, reply: { header(n: string, v: string): void }, payload: unknown) => {
          if (typeof payload !== 'string') return payload;
          reply.header('content-encoding', 'gzip');
          return gzipSync(payload);
        },
      );
    }
  };
}

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();
    const startWith = (controllers: any[], configure?: (app: INestApplication) => void) =>
      start({ adapter, controllers, cache: backend.options(), configure });

    it('a serialization hook that masks a field (same length) masks it on every HIT too', async () => {
      const { send } = await startWith([SecretsController], maskSsn(adapter.name));

      const miss = await send('/secrets/me');
      const hit = await send('/secrets/me');

      expect(miss.cache).toBe('MISS');
      expect(json(miss)).toEqual({ run: 1, name: 'Ann', ssn: MASK });
      expect(hit.cache).toBe('HIT');
      expect(hit.text).toBe(miss.text);
    });

    it('a body compressed after the handler: every HIT decodes to the same body as the MISS (the route stores values)', async () => {
      const { send, calls } = await startWith([SecretsController], gzipAfterHandler(adapter.name));

      const replies = [
        await send('/secrets/me'),
        await send('/secrets/me'),
        await send('/secrets/me'),
      ];

      for (const reply of replies) expect(reply.status).toBe(200);
      expect(replies.map((reply) => reply.cache)).toEqual(['MISS', 'HIT', 'HIT']);
      for (const reply of replies) expect(reply.text).toBe(replies[0]!.text);
      expect(calls.of('secrets')).toBe(1);
    });

    const versionings = [
      {
        name: 'header (X-API-Version)',
        options: { type: VersioningType.HEADER, header: 'X-API-Version' } as const,
        request: (v: number) => ({
          path: '/catalog',
          init: { headers: { 'x-api-version': String(v) } },
        }),
      },
      {
        name: 'media type (Accept: application/json;v=N)',
        options: { type: VersioningType.MEDIA_TYPE, key: 'v=' } as const,
        request: (v: number) => ({
          path: '/catalog',
          init: { headers: { accept: `application/json;v=${v}` } },
        }),
      },
      {
        name: 'URI (/vN/...)',
        options: { type: VersioningType.URI } as const,
        request: (v: number) => ({ path: `/v${v}/catalog`, init: {} }),
      },
    ];

    it.each(versionings)(
      'API versioning by $name: v1 and v2 clients each get their own version, MISS and HIT',
      async ({ options, request }) => {
        const { send, calls } = await startWith([VersionedController], (app) =>
          app.enableVersioning(options),
        );
        const get = (v: number) => send(request(v).path, request(v).init);

        const v1 = await get(1);
        const v2 = await get(2);
        const v1Again = await get(1);
        const v2Again = await get(2);

        expect(json(v1)).toEqual({ version: 1, run: 1 });
        expect(json(v2)).toEqual({ version: 2, run: 1 });
        expect([v1Again.cache, v2Again.cache]).toEqual(['HIT', 'HIT']);
        expect(json(v1Again).version).toBe(1);
        expect(json(v2Again).version).toBe(2);
        expect([calls.of('v1'), calls.of('v2')]).toEqual([1, 1]);
      },
    );

    it("@CachePerUser: no identity (undefined) and an empty one bypass; alice and bob never get each other's response", async () => {
      const { send, calls } = await startWith([IdentityController]);
      const as = (auth?: string) =>
        send('/who/bearer', auth === undefined ? {} : { headers: { authorization: auth } });

      const anonymous = [await as(), await as()];
      const empty = await as('Bearer ');
      const alice = await as('Bearer alice');
      const bob = await as('Bearer bob');
      const aliceAgain = await as('Bearer alice');

      expect(anonymous.map((reply) => reply.cache)).toEqual(['BYPASS', 'BYPASS']);
      expect(empty.cache).toBe('BYPASS');
      expect(json(bob).auth).toBe('Bearer bob');
      expect(aliceAgain.cache).toBe('HIT');
      expect(json(aliceAgain).auth).toBe('Bearer alice');
      expect(json(alice).auth).toBe('Bearer alice');
      expect(calls.of('bearer')).toBe(5);
    });

    it('@CachePerUser: a numeric id is an identity (cached per user); NaN bypasses', async () => {
      const { send } = await startWith([IdentityController]);
      const as = (id?: string) =>
        send('/who/numeric', id === undefined ? {} : { headers: { 'x-user-id': id } });

      const seven = await as('7');
      const sevenAgain = await as('7');
      const eight = await as('8');
      const notANumber = await as('abc');

      expect([seven.cache, sevenAgain.cache, eight.cache]).toEqual(['MISS', 'HIT', 'MISS']);
      expect(json(eight).id).toBe('8');
      expect(json(sevenAgain).id).toBe('7');
      expect(notANumber.cache).toBe('BYPASS');
    });

    it('@CachePerUser: an identify that throws bypasses the cache; the request is served', async () => {
      const { send, calls } = await startWith([IdentityController]);

      const replies = [await send('/who/throws'), await send('/who/throws')];

      expect(replies.map((reply) => [reply.status, reply.cache])).toEqual([
        [200, 'BYPASS'],
        [200, 'BYPASS'],
      ]);
      expect(calls.of('throws')).toBe(2);
    });

    it("headers a middleware or hook sets before the handler are the HIT request's own; the handler's header is replayed", async () => {
      const { send } = await startWith([HeadersController], perRequestHeaders(adapter.name));

      const miss = await send('/headers');
      const hit = await send('/headers');

      expect(hit.cache).toBe('HIT');
      expect(miss.headers.get('x-handler-run')).toBe('1');
      expect(hit.headers.get('x-handler-run')).toBe('1'); // the MISS's, replayed
      expect(hit.headers.get('x-decorated')).toBe('yes');
      expect(miss.headers.get('x-ratelimit-remaining')).toBe('99');
      expect(hit.headers.get('x-ratelimit-remaining')).toBe('98');
      expect(hit.headers.get('x-request-trace')).not.toBe(miss.headers.get('x-request-trace'));
      expect(hit.headers.get('traceparent')).not.toBe(miss.headers.get('traceparent'));
    });

    it("a handler that marks Vary: Accept-Encoding, first hit by a burst: each encoding gets its own body, never another's", async () => {
      const { send } = await startWith([EncodingController]);
      const get = (encoding: string) =>
        send('/encoding', { headers: { 'accept-encoding': encoding } });

      // A cold burst of both encodings: the leader's response says Vary, so it is neither shared
      // nor stored under the key that lacks the encoding; every request gets its own.
      const encodings = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? 'gzip' : 'br'));
      const burst = await Promise.all(encodings.map((encoding) => get(encoding)));
      const replies = [];
      for (const encoding of ['br', 'gzip', 'br', 'gzip, br', 'br, gzip', 'gzip, br']) {
        replies.push({ encoding, reply: await get(encoding) });
      }

      burst.forEach((reply, i) => expect(json(reply).encoding).toBe(encodings[i]));
      for (const { encoding, reply } of replies) expect(json(reply).encoding).toBe(encoding);
      // The second request of an encoding is a HIT; 'br, gzip' is keyed apart from 'gzip, br'.
      expect(replies.map(({ reply }) => reply.cache)).toEqual([
        'MISS',
        'MISS',
        'HIT',
        'MISS',
        'MISS',
        'HIT',
      ]);
    });

    const good = { format: 2, status: 200, headers: {}, body: { text: '{}' }, storedAt: 0 };
    it.each([
      ['headers: null', { ...good, headers: null }],
      ['status: NaN', { ...good, status: NaN }],
      ['status: 999', { ...good, status: 999 }],
      ['status: 150', { ...good, status: 150 }],
      ['body.value a string', { ...good, body: { value: 'x' } }],
      ['a header value a number', { ...good, headers: { a: 1 } }],
      ['a header value with CR LF', { ...good, headers: { 'x-a': 'a\r\nset-cookie: b' } }],
      ['a header name with a space', { ...good, headers: { 'x a': 'b' } }],
      ['a Vary on a header the key lacks', { ...good, headers: { vary: 'x-tenant' } }],
      ['an entry of 0.1 (no format)', { ...good, format: undefined }],
      ['not an object', 'hello'],
    ])('an entry of the wrong shape (%s) is a miss, and is replaced', async (_shape, entry) => {
      const { send, cache, calls } = await startWith([ItemsController]);
      await cache.set('http:GET:/items/7?', entry);

      const first = await send('/items/7');
      const second = await send('/items/7');

      expect([first.status, first.cache]).toEqual([200, 'MISS']);
      expect(json(first)).toEqual({ run: 1, id: '7' });
      expect(second.cache).toBe('HIT');
      expect(calls.of('one')).toBe(1);
    });

    if (adapter.name === 'express') {
      it('a revalidation that gets a 304 on a MISS does not take the route off byte replay', async () => {
        const { send, cache, url } = await startWith([SecretsController]);
        const key = 'http:GET:/secrets/stable?';

        const first = await send('/secrets/stable');
        await cache.delete(key);
        // node:http, not fetch: fetch adds Cache-Control: no-cache to a conditional request.
        const revalidated = await new Promise<{ status: number }>((resolve, reject) => {
          const req = httpGet(
            `${url}/secrets/stable`,
            { headers: { 'if-none-match': first.headers.get('etag')! } },
            (res) => {
              res.resume();
              res.once('end', () => resolve({ status: res.statusCode ?? 0 }));
            },
          );
          req.once('error', reject);
        });
        await cache.delete(key);
        await send('/secrets/stable');
        const stored = await cache.get<{ body: { text?: string } }>(key);

        expect(revalidated.status).toBe(304);
        expect(stored?.body.text).toBeDefined(); // still the bytes sent, not a value
      });

      it("Express's extended query parser: ?sort[a]=1&sort[b]=1 and ?sort[b]=1&sort[a]=1 are two entries; top-level order is canonical", async () => {
        const { send, calls } = await startWith([ItemsController], (app) =>
          instanceOf(app).set('query parser', 'extended'),
        );

        const ab = await send('/items?sort[a]=1&sort[b]=1&page=2');
        const ba = await send('/items?sort[b]=1&sort[a]=1&page=2');
        const pageFirst = await send('/items?page=2&sort[a]=1&sort[b]=1');

        expect([ab.cache, ba.cache, pageFirst.cache]).toEqual(['MISS', 'MISS', 'HIT']);
        expect(Object.keys(json<{ query: { sort: object } }>(ba).query.sort)).toEqual(['b', 'a']);
        expect(calls.of('list')).toBe(2);
      });
    }
  });
});
