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

// A MISS runs the handler and stores its response; a HIT replays it byte for byte without running
// the handler. Only GET is cached: HEAD is answered from the GET entry, other methods pass through.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();
    const startItems = () =>
      start({
        adapter,
        controllers: [ItemsController],
        cache: { ...backend.options(), http: { statuses: [200, 203] } },
      });

    it('a first GET is a MISS that runs the handler; the same GET again is a HIT that does not', async () => {
      const { send, calls } = await startItems();

      const miss = await send('/items/7');
      const hit = await send('/items/7');

      expect(miss.cache).toBe('MISS');
      expect(json(miss)).toEqual({ run: 1, id: '7' });
      expect(hit.cache).toBe('HIT');
      expect(json(hit)).toEqual({ run: 1, id: '7' });
      expect(calls.of('one')).toBe(1);
    });

    it('a HIT replays the status, the exact body bytes and the content-type of a JSON MISS', async () => {
      const { send } = await startItems();

      const miss = await send('/items?name=caf%C3%A9');
      const hit = await send('/items?name=caf%C3%A9');

      expect(hit.cache).toBe('HIT');
      expect(hit.status).toBe(miss.status);
      expect(hit.bytes.equals(miss.bytes)).toBe(true);
      expect(hit.headers.get('content-type')).toBe(miss.headers.get('content-type'));
      expect(hit.headers.get('content-type')).toMatch(/^application\/json/);
    });

    it('a HIT replays a text body and its content-type', async () => {
      const { send } = await startItems();

      const miss = await send('/items/text');
      const hit = await send('/items/text');

      expect(hit.cache).toBe('HIT');
      expect(hit.text).toBe('plain text, run 1');
      expect(hit.bytes.equals(miss.bytes)).toBe(true);
      expect(hit.headers.get('content-type')).toBe(miss.headers.get('content-type'));
    });

    it('a HIT replays headers the handler set with @Header and through the response (passthrough)', async () => {
      const { send, calls } = await startItems();

      const miss = await send('/items/counted');
      const hit = await send('/items/counted');

      expect(miss.headers.get('x-total-count')).toBe('42');
      expect(miss.headers.get('x-page')).toBe('1');
      expect(hit.cache).toBe('HIT');
      expect(hit.headers.get('x-total-count')).toBe('42');
      expect(hit.headers.get('x-page')).toBe('1');
      expect(calls.of('counted')).toBe(1);
    });

    it('a HIT replays a status the handler set on the response (203, stored under http.statuses [200, 203])', async () => {
      const { send, calls } = await startItems();

      const miss = await send('/items/non-authoritative');
      const hit = await send('/items/non-authoritative');

      expect(miss.status).toBe(203);
      expect(hit.cache).toBe('HIT');
      expect(calls.of('non-authoritative')).toBe(1);
      expect(hit.status).toBe(203);
    });

    it('a HIT carries an Age header in whole seconds', async () => {
      const { send } = await startItems();

      await send('/items/7');
      const hit = await send('/items/7');

      expect(hit.cache).toBe('HIT');
      expect(hit.headers.get('age')).toMatch(/^\d+$/);
      expect(Number(hit.headers.get('age'))).toBeLessThanOrEqual(1);
    });

    it('HEAD is answered from the GET entry, without running the handler', async () => {
      const { send, calls } = await startItems();

      const get = await send('/items/7');
      const head = await send('/items/7', { method: 'HEAD' });

      expect(head.status).toBe(200);
      expect(head.cache).toBe('HIT');
      expect(head.headers.get('content-type')).toBe(get.headers.get('content-type'));
      expect(head.bytes.length).toBe(0);
      expect(calls.of('one')).toBe(1);
    });

    it('HEAD on a cold key runs the handler and stores nothing', async () => {
      const { send, calls } = await startItems();

      const head = await send('/items/7', { method: 'HEAD' });
      const get = await send('/items/7');

      expect(head.status).toBe(200);
      expect(head.cache).toBe('MISS');
      expect(get.cache).toBe('MISS');
      expect(json(get)).toEqual({ run: 2, id: '7' });
      expect(calls.of('one')).toBe(2);
    });

    it('POST passes through untouched: the handler runs every time, and there is no X-Cache header', async () => {
      const { send, calls } = await startItems();

      const first = await send('/items', { method: 'POST' });
      const second = await send('/items', { method: 'POST' });

      expect(first.status).toBe(201);
      expect(json(first)).toEqual({ run: 1 });
      expect(json(second)).toEqual({ run: 2 });
      expect(first.cache).toBeNull();
      expect(second.cache).toBeNull();
      expect(calls.of('create')).toBe(2);
    });
  });
});
