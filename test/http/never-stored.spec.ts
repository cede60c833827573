import { Logger } from '@nestjs/common';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ADAPTERS, useApps } from './support/app.js';
import { ItemsController, UnstorableController } from './support/controllers.js';
import { json } from './support/http.js';

// Responses that must never be stored, whatever the backend (the decision is the interceptor's):
// each is requested twice, and the handler must run twice.
const NEVER_STORED = [
  { what: 'a response that sets a cookie', route: 'cookie', status: 200 },
  { what: 'Cache-Control: private', route: 'private', status: 200 },
  { what: 'Cache-Control: no-store', route: 'no-store', status: 200 },
  { what: 'Cache-Control: no-cache', route: 'no-cache', status: 200 },
  { what: 'Vary: *', route: 'vary-star', status: 200 },
  { what: 'status 201 (not in the default http.statuses)', route: 'created', status: 201 },
  { what: 'a thrown 404', route: 'not-found', status: 404 },
  { what: 'a thrown error (500)', route: 'boom', status: 500 },
  { what: 'a StreamableFile', route: 'file', status: 200 },
  { what: 'a handler that sends with @Res() (no passthrough)', route: 'raw', status: 200 },
];

describe.each(ADAPTERS)('on $name', (adapter) => {
  const start = useApps();
  let warnings: string[];
  beforeEach(() => {
    warnings = [];
    vi.spyOn(Logger.prototype, 'warn').mockImplementation((message: unknown) => {
      warnings.push(String(message));
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it.each(NEVER_STORED)(
    '$what is never stored: the handler runs for every request',
    async ({ route, status }) => {
      const path = `/unstorable/${route}`;
      const { send, calls } = await start({ adapter, controllers: [UnstorableController] });

      const first = await send(path);
      const second = await send(path);

      expect(first.status).toBe(status);
      expect(second.status).toBe(status);
      expect(second.cache).not.toBe('HIT');
      expect(calls.of(route)).toBe(2);
    },
  );

  it('a response over maxValueBytes is answered in full and never stored: the handler runs for every request', async () => {
    const { send, calls } = await start({
      adapter,
      controllers: [ItemsController],
      cache: { maxValueBytes: 64 },
    });
    const path = `/items?padding=${'x'.repeat(200)}`;

    const first = await send(path);
    const second = await send(path);

    expect(first.status).toBe(200);
    expect(json(second)).toMatchObject({ run: 2, query: { padding: 'x'.repeat(200) } });
    expect(second.cache).not.toBe('HIT');
    expect(calls.of('list')).toBe(2);
    expect(warnings.join('\n')).toMatch(/over CacheModule option "maxValueBytes" \(64\)/);
  });

  it('http.statuses [200, 201] stores a 201, and the HIT replays it', async () => {
    const { send, calls } = await start({
      adapter,
      controllers: [UnstorableController],
      cache: { http: { statuses: [200, 201] } },
    });

    await send('/unstorable/created');
    const hit = await send('/unstorable/created');

    expect(hit.cache).toBe('HIT');
    expect(hit.status).toBe(201);
    expect(json(hit)).toEqual({ run: 1 });
    expect(calls.of('created')).toBe(1);
  });
});
