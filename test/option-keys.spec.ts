import { describe, expect, it } from 'vitest';
import { CacheConfigError, createCache } from '../lib/index.js';

// A misspelt option of a backend is refused at startup, naming it and the options there are: it
// would otherwise be ignored and its default used without a word.
describe('unknown keys in a backend option', () => {
  const refused = async (options: Parameters<typeof createCache>[0]) => {
    const error = await createCache(options).then(
      async (cache) => (await cache.close(), undefined),
      (error: unknown) => error,
    );
    expect(error).toBeInstanceOf(CacheConfigError);
    return (error as Error).message;
  };

  it('disk: "maxsize" for "maxSize"', async () => {
    const message = await refused({
      backend: 'disk',
      disk: { path: '/tmp/never-created', maxsize: 1 } as never,
    });
    expect(message).toContain('"disk.maxsize"');
    expect(message).toContain('path, maxSize');
  });

  it('memory: "maxEntries" for "max"', async () => {
    const message = await refused({ memory: { maxEntries: 5 } as never });
    expect(message).toContain('"memory.maxEntries"');
    expect(message).toContain('max, maxBytes');
  });

  it('keyv: "disconect" for "disconnect"', async () => {
    const message = await refused({
      backend: 'keyv',
      keyv: { store: new Map(), disconect: false } as never,
    });
    expect(message).toContain('"keyv.disconect"');
    expect(message).toContain('store, disconnect');
  });

  it('memcached: "server" for "servers", and a key the client form does not take', async () => {
    expect(
      await refused({ backend: 'memcached', memcached: { server: '127.0.0.1:1' } as never }),
    ).toContain('"memcached.server"');
    expect(
      await refused({
        backend: 'memcached',
        memcached: { client: {}, retries: 1 } as never,
      }),
    ).toContain('"memcached.retries"');
  });
});

describe('CacheModule option "maxValueBytes"', () => {
  it.each([0, -1, 1.5, '1mb', Infinity])('%j is refused, naming it', async (maxValueBytes) => {
    await expect(createCache({ maxValueBytes: maxValueBytes as never })).rejects.toThrow(
      /"maxValueBytes"/,
    );
  });

  it('null lifts the cap (the backend keeps its own bounds); the default is 16 MiB', async () => {
    const unbounded = await createCache({ maxValueBytes: null });
    expect(await unbounded.set('k', 'x'.repeat(17 * 1024 * 1024))).toBe(true);
    await unbounded.close();
    const bounded = await createCache({ memory: { maxBytes: 64 * 1024 * 1024 } });
    expect(await bounded.set('k', 'x'.repeat(17 * 1024 * 1024))).toBe(false);
    expect(await bounded.set('k', 'x'.repeat(15 * 1024 * 1024))).toBe(true);
    await bounded.close();
  });
});
