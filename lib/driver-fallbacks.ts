import type { CacheDriver } from './driver.js';
import { decodeCounter, encodeCounter } from './entry.js';
import { NotACounterError } from './errors.js';
import { messages } from './messages.js';

/**
 * What BaseCache does for a driver that lacks an optional method, with its required ones. Each is
 * a read, then a write: BaseCache runs those of one key one at a time (serially()), so they are
 * atomic within one process, whatever the driver; not across processes (implement the optional
 * method for that, as the Redis driver does).
 */

/** The counter's new value; undefined when the driver dropped the write (a no-op driver, say). */
export async function incrementWith(
  driver: CacheDriver,
  key: string,
  by: number,
  ttlMs: number | null,
): Promise<number | undefined> {
  const bytes = await driver.get(key);
  if (bytes == null) return (await driver.set(key, encodeCounter(by), ttlMs)) ? by : undefined;
  const current = decodeCounter(bytes);
  if (current === undefined) throw new NotACounterError(messages.notACounter(key));
  const remaining = await driver.ttl(key);
  const stored = await driver.set(
    key,
    encodeCounter(current + by),
    remaining == null ? null : Math.max(1, remaining),
  );
  return stored ? current + by : undefined;
}

export async function touchTagsWith(
  driver: CacheDriver,
  keys: string[],
  expiresAt: number | null,
  now: number,
  createdAt: number,
): Promise<void> {
  for (const key of keys) {
    const remaining = await driver.ttl(key);
    const wanted = expiresAt === null ? null : Math.max(1, Math.ceil(expiresAt - now));
    let stored = true;
    if (remaining === undefined) stored = await driver.set(key, encodeCounter(createdAt), wanted);
    else if (remaining !== null && (wanted === null || wanted > remaining)) {
      const bytes = await driver.get(key);
      stored = await driver.set(key, bytes ?? encodeCounter(createdAt), wanted);
    }
    // The entry must not be written without its record (BaseCache drops it on this rejection).
    if (!stored) throw new Error(`the backend refused the tag record ${key}`);
  }
}

export async function invalidateTagsWith(
  driver: CacheDriver,
  keys: string[],
  at: number,
  keepMs: number,
): Promise<void> {
  for (const key of keys) {
    const remaining = await driver.ttl(key);
    const ttlMs = remaining === null ? null : Math.max(keepMs, remaining ?? 0);
    await driver.set(key, encodeCounter(at), ttlMs);
  }
}
