import type { CacheDriver, Clock } from '../../lib/index.js';

/**
 * A custom backend as a user would write one: only the required driver methods, on a Map.
 * BaseCache gives it validation, TTL parsing, namespacing, serialization, entry metadata, tags,
 * counters and single-flight.
 */
export class MapDriver implements CacheDriver {
  readonly name = 'map';
  private readonly entries = new Map<string, { bytes: Uint8Array; expiresAt: number | null }>();

  constructor(private readonly clock: Clock = { now: () => Date.now() }) {}

  async get(key: string): Promise<Uint8Array | undefined> {
    const entry = this.entries.get(key);
    if (entry?.expiresAt != null && entry.expiresAt <= this.clock.now()) this.entries.delete(key);
    return this.entries.get(key)?.bytes;
  }

  async set(key: string, bytes: Uint8Array, ttlMs: number | null): Promise<boolean> {
    this.entries.set(key, {
      bytes: Uint8Array.from(bytes),
      expiresAt: ttlMs === null ? null : this.clock.now() + ttlMs,
    });
    return true;
  }

  async delete(keys: string[]): Promise<number> {
    let removed = 0;
    for (const key of keys) if ((await this.get(key)) && this.entries.delete(key)) removed += 1;
    return removed;
  }

  async ttl(key: string): Promise<number | null | undefined> {
    if (!(await this.get(key))) return undefined;
    const { expiresAt } = this.entries.get(key)!;
    return expiresAt === null ? null : expiresAt - this.clock.now();
  }

  async *scan(prefix: string): AsyncIterable<string[]> {
    yield [...this.entries.keys()].filter((key) => key.startsWith(prefix));
  }

  async close(): Promise<void> {
    this.entries.clear();
  }
}
