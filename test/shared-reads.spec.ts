import { describe, expect, it } from 'vitest';
import { readShared } from '../lib/base-cache.js';
import { type BaseCache, type CacheDriver, DriverCache } from '../lib/index.js';

/** A driver whose reads are answered only when the test says so, and counted. */
class GatedDriver implements CacheDriver {
  readonly name = 'gated';
  readonly entries = new Map<string, Uint8Array>();
  backendReads = 0;
  private gates: (() => void)[] = [];

  /** Answers every read waiting so far, with what is stored at this moment. */
  open(): void {
    for (const release of this.gates.splice(0)) release();
  }

  get(key: string): Promise<Uint8Array | undefined> {
    this.backendReads += 1;
    return new Promise((resolve) => this.gates.push(() => resolve(this.entries.get(key))));
  }
  async set(key: string, bytes: Uint8Array): Promise<boolean> {
    this.entries.set(key, bytes);
    return true;
  }
  async delete(keys: string[]): Promise<number> {
    return keys.filter((key) => this.entries.delete(key)).length;
  }
  async ttl(): Promise<undefined> {
    return undefined;
  }
  async *scan(prefix: string) {
    yield [...this.entries.keys()].filter((key) => key.startsWith(prefix));
  }
  async close(): Promise<void> {}
}

class GatedCache extends DriverCache {
  private readonly gated: GatedDriver;
  constructor() {
    const driver = new GatedDriver();
    super(driver);
    this.gated = driver;
  }
  open(): void {
    this.gated.open();
  }
  get backendReads(): number {
    return this.gated.backendReads;
  }
}

describe('concurrent reads of one key', () => {
  it('share one backend read, and each caller gets its own copy', async () => {
    const cache = new GatedCache();
    await cache.set('k', { list: [1] });
    const reads = [cache.get<{ list: number[] }>('k'), cache.get<{ list: number[] }>('k')];
    cache.open();
    const [first, second] = await Promise.all(reads);

    expect(cache.backendReads).toBe(1);
    expect(first).toEqual({ list: [1] });
    expect(first).not.toBe(second);
    first!.list.push(2);
    expect(second).toEqual({ list: [1] });
    expect(cache.stats.hits).toBe(2);
  });

  it('a read started after set() does not join an older read: the caller sees its write', async () => {
    const cache = new GatedCache();
    await cache.set('k', 'old');
    const older = cache.get('k');
    const written = cache.set('k', 'new');
    const newer = cache.get('k');
    await written;
    cache.open();

    expect(await newer).toBe('new');
    expect(cache.backendReads).toBe(2);
    await older;
  });

  it('a read started after delete() does not join an older read', async () => {
    const cache = new GatedCache();
    await cache.set('k', 'old');
    const older = cache.get('k');
    const deleted = cache.delete('k');
    const newer = cache.get('k');
    await deleted;
    cache.open();

    expect(await newer).toBeUndefined();
    expect(cache.backendReads).toBe(2);
    await older;
  });
});

describe('[readShared], the read of CacheInterceptor', () => {
  it('hands concurrent callers of one key one backend read and one decoded value, and leaves the counting to them', async () => {
    const cache = new GatedCache();
    await cache.set('k', { body: 'x'.repeat(1_000) });
    const decode = cache.serializer.deserialize.bind(cache.serializer);
    let decodes = 0;
    Object.defineProperty(cache, 'serializer', {
      value: {
        ...cache.serializer,
        deserialize: (bytes: Uint8Array) => (decodes++, decode(bytes)),
      },
    });

    const reads = [1, 2, 3].map(() => cache[readShared]<{ body: string }>('k'));
    const missing = cache[readShared]('absent');
    cache.open();
    const values = (await Promise.all(reads)).map((found) => found?.value);

    expect(values[0]).toEqual({ body: 'x'.repeat(1_000) });
    expect(values[1]).toBe(values[0]);
    expect(values[2]).toBe(values[0]);
    expect(await missing).toBeUndefined();
    expect(cache.backendReads).toBe(2);
    expect(decodes).toBe(1);
    expect(cache.stats).toMatchObject({ hits: 0, misses: 0 });
  });

  it('a caller after a write does not join the older read: it reads and decodes the new value', async () => {
    const cache = new GatedCache();
    await cache.set('k', 'old');
    const older = cache[readShared]('k');
    const written = cache.set('k', 'new');
    const newer = cache[readShared]('k');
    await written;
    cache.open();

    expect((await newer)?.value).toBe('new');
    expect(cache.backendReads).toBe(2);
    await older;
  });

  it.each([
    ['delete()', (cache: BaseCache) => cache.delete('k')],
    ['clear()', (cache: BaseCache) => cache.clear()],
  ])('a caller after %s does not join the older read', async (_, remove) => {
    const cache = new GatedCache();
    await cache.set('k', 'old');
    const older = cache[readShared]('k');
    const removed = remove(cache);
    const newer = cache[readShared]('k');
    await removed;
    cache.open();

    expect(await newer).toBeUndefined();
    expect(cache.backendReads).toBe(2);
    await older;
  });

  it('get() callers joining the same read still get copies of their own', async () => {
    const cache = new GatedCache();
    await cache.set('k', { list: [1] });
    const shared = cache[readShared]<{ list: number[] }>('k');
    const own = cache.get<{ list: number[] }>('k');
    cache.open();

    const [found, b] = await Promise.all([shared, own]);
    const a = found?.value;
    expect(cache.backendReads).toBe(1);
    expect(a).toEqual(b);
    expect(a).not.toBe(b);
  });
});
