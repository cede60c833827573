import { afterEach, describe, expect, it, vi } from 'vitest';
import { Logger } from '@nestjs/common';
import { MemcachedCache } from '../lib/index.js';
import { usePrivateMemcached } from './support/memcached-server.js';

// SASL against a real memcached started with -S (memcached's PLAIN mechanism, a password database
// of its own): the credentials of the options authenticate; wrong ones fail open, and are never
// written to a log.
const memcached = usePrivateMemcached({ sasl: { username: 'app', password: 's3cret-pass' } });

describe('memcached with SASL (memcached -S)', () => {
  const made: MemcachedCache[] = [];
  const cache = async (username: string | undefined, password: string | undefined) => {
    const created = await MemcachedCache.create({
      prefix: `sasl-${made.length}`,
      memcached: {
        servers: memcached.server.servers,
        ...(username !== undefined && { username }),
        ...(password !== undefined && { password }),
      },
    });
    made.push(created);
    return created;
  };
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(made.splice(0).map((c) => c.close()));
  });

  it('the username and password of the options authenticate: values are stored and read', async () => {
    const c = await cache('app', 's3cret-pass');
    expect(await c.set('k', { a: 1 })).toBe(true);
    expect(await c.get('k')).toEqual({ a: 1 });
    expect(await c.increment('n', 2)).toBe(2);
  });

  it('a wrong password fails open (writes dropped, reads missed), logged as an authentication failure without the password', async () => {
    const warnings: string[] = [];
    vi.spyOn(Logger.prototype, 'warn').mockImplementation((message: unknown) => {
      warnings.push(String(message));
    });
    vi.spyOn(Logger.prototype, 'error').mockImplementation((message: unknown) => {
      warnings.push(String(message));
    });
    const good = await cache('app', 's3cret-pass');
    await good.set('k', 'v');
    const bad = await cache('app', 'wrong-pass');
    expect(await bad.set('k', 'other')).toBe(false);
    expect(await bad.get('k')).toBe(undefined);
    expect(await good.get('k')).toBe('v');
    expect(warnings.join('\n')).toMatch(/authentication failed/i);
    expect(warnings.join('\n')).not.toContain('wrong-pass');
  });

  it('no credentials against a SASL server fail open too', async () => {
    const anonymous = await cache(undefined, undefined);
    expect(await anonymous.set('k', 'v')).toBe(false);
    expect(await anonymous.get('k')).toBe(undefined);
  });
});
