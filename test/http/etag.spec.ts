import { get } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ADAPTERS, useApps } from './support/app.js';
import { ItemsController, WrapInDataInterceptor } from './support/controllers.js';

// Express computes an ETag from the body it sends. A HIT replayed as the stored text sends the
// same bytes, so the stored ETag is replayed with it (and Express need not hash the body again).
const express = ADAPTERS.find((adapter) => adapter.name === 'express')!;

describe('ETag on Express', () => {
  const start = useApps();

  it('a HIT carries the ETag of the MISS, and answers If-None-Match with 304', async () => {
    const { send, url } = await start({ adapter: express, controllers: [ItemsController] });
    const miss = await send('/items/7');
    const hit = await send('/items/7');
    const etag = miss.headers.get('etag');
    expect(etag).toBeTruthy();
    expect(hit.cache).toBe('HIT');
    expect(hit.headers.get('etag')).toBe(etag);
    expect(await conditionalStatus(`${url}/items/7`, etag!)).toBe(304);
  });

  it('with an interceptor outside CacheInterceptor, the ETag is computed again from what is sent', async () => {
    const { send } = await start({
      adapter: express,
      controllers: [ItemsController],
      outerInterceptors: [new WrapInDataInterceptor()],
    });
    const miss = await send('/items/7');
    const hit = await send('/items/7');
    expect(hit.cache).toBe('HIT');
    expect(hit.text).toBe(miss.text);
    expect(hit.headers.get('etag')).toBe(miss.headers.get('etag'));
  });
});

/**
 * The status of a GET with If-None-Match, sent with node:http: fetch() adds Cache-Control: no-cache
 * to conditional requests (as the Fetch standard says), and a server then never answers 304.
 */
function conditionalStatus(url: string, etag: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, { headers: { 'if-none-match': etag } }, (response) => {
      response.resume();
      resolve(response.statusCode!);
    }).on('error', reject);
  });
}
