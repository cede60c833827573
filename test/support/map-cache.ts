import { BaseCache, type StoredEntry } from '../../lib/index.js';

/**
 * A custom backend as a user would write one: only the raw primitives, on a Map.
 * BaseCache gives it validation, TTL parsing, namespacing, serialization and single-flight.
 */
export class MapCache extends BaseCache {
  private readonly entries = new Map<string, { bytes: Buffer; expiresAt: number | null }>();

  protected async readEntry(key: string): Promise<Buffer | undefined> {
    const entry = this.entries.get(key);
    if (entry?.expiresAt != null && entry.expiresAt <= Date.now()) this.entries.delete(key);
    return this.entries.get(key)?.bytes;
  }

  protected async writeEntry({ key, bytes, ttlMs }: StoredEntry): Promise<boolean> {
    this.entries.set(key, { bytes, expiresAt: ttlMs === null ? null : Date.now() + ttlMs });
    return true;
  }

  protected async removeEntries(keys: string[]): Promise<number> {
    let removed = 0;
    for (const key of keys)
      if ((await this.readEntry(key)) && this.entries.delete(key)) removed += 1;
    return removed;
  }

  protected async entryTtl(key: string): Promise<number | null | undefined> {
    if (!(await this.readEntry(key))) return undefined;
    const { expiresAt } = this.entries.get(key)!;
    return expiresAt === null ? null : expiresAt - Date.now();
  }

  protected async clearNamespace(namespace: string): Promise<void> {
    for (const key of this.entries.keys()) if (key.startsWith(namespace)) this.entries.delete(key);
  }

  protected async closeBackend(): Promise<void> {
    this.entries.clear();
  }
}
