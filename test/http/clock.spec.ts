import { describe, expect, it } from 'vitest';
import { ADAPTERS, useApps } from './support/app.js';
import { ItemsController } from './support/controllers.js';
import { json } from './support/http.js';

// Response caching on the cache's clock: Age and expiry follow it, so a test drives them instead
// of sleeping.
describe.each(ADAPTERS)('on $name with the memory backend and a clock of its own', (adapter) => {
  const start = useApps();

  it('Age is the seconds since the entry was stored, by that clock; the entry expires by it too', async () => {
    let now = 1_700_000_000_000;
    const { send } = await start({
      adapter,
      controllers: [ItemsController],
      cache: { backend: 'memory', ttl: 60, clock: { now: () => now } },
    });

    const miss = await send('/items/7');
    now += 30_000;
    const hit = await send('/items/7');
    now += 31_000;
    const expired = await send('/items/7');

    expect(miss.cache).toBe('MISS');
    expect([hit.cache, hit.headers.get('age')]).toEqual(['HIT', '30']);
    expect(expired.cache).toBe('MISS');
    expect(json(expired)).toEqual({ run: 2, id: '7' });
  });
});
