import { describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  backends,
  usePrivateRedis,
  useApps,
  usePrivateMemcached,
} from './support/app.js';
import { UnstorableController } from './support/controllers.js';
import { json } from './support/http.js';

// A handler that sends the response itself (@Res() without passthrough) is never cached: Nest
// would not send what a HIT returns, so a stored entry would leave every later request hanging.
const redis = usePrivateRedis();
const memcached = usePrivateMemcached();

describe.each(ADAPTERS)('on $name', (adapter) => {
  describe.each(backends(redis, memcached))('with the $name backend', (backend) => {
    const start = useApps();

    it.each([['raw'], ['raw-and-returned']])(
      '@Res() route /unstorable/%s: every request, one after another and 20 at once, is answered by the handler, and nothing is stored',
      async (route) => {
        const { send, calls, cache } = await start({
          adapter,
          controllers: [UnstorableController],
          cache: backend.options(),
        });

        const sequential = [];
        for (let i = 0; i < 3; i += 1) sequential.push(await send(`/unstorable/${route}`));
        const concurrent = await Promise.all(
          Array.from({ length: 20 }, () => send(`/unstorable/${route}`)),
        );

        const replies = [...sequential, ...concurrent];
        expect(replies.map((reply) => reply.status)).toEqual(Array(23).fill(200));
        expect(new Set(replies.map((reply) => json<{ run: number }>(reply).run)).size).toBe(23);
        expect(calls.of(route)).toBe(23);
        for (const reply of replies) expect(reply.cache).toBe('BYPASS');
        expect(cache.stats.writes).toBe(0);
      },
    );
  });
});
