import type { Cluster, Redis } from 'ioredis';
import { SCAN_BATCH } from '../cache.constants.js';
import type { DriverEntry, Step } from '../driver.js';
import { messages, reasonOf } from '../messages.js';
import { bySlot } from './redis-slots.js';

/** How many walks of the masters a scan makes at most while the slots keep moving under it. */
const MAX_WALKS = 3;

/**
 * RedisDriver's multi-key work on a Redis Cluster, which refuses a command whose keys are in
 * different hash slots (CROSSSLOT): reads, writes and deletes go out as one command per slot (all
 * at once), and walks of the keys (clear, deleteByPattern) SCAN every master.
 *
 * While a slot is being migrated, single-key commands follow the ASK and MOVED redirections
 * (ioredis does), but a multi-key command on it is refused with TRYAGAIN until its keys are all
 * on one side; once ioredis' retries of it are used up, its keys are sent one command each.
 */
export class SlotCommands {
  constructor(private readonly client: Cluster) {}

  /** Reads keys that share one slot: GET for one, MGET for more. */
  readonly readSlot = async (keys: string[]): Promise<(Buffer | null)[]> => {
    if (keys.length === 1) return [await this.client.getBuffer(keys[0]!)];
    try {
      return await this.client.mgetBuffer(keys);
    } catch (error) {
      if (!duringMigration(error)) throw error;
      return Promise.all(keys.map((key) => this.client.getBuffer(key)));
    }
  };

  /** Reads keys of any slots: one read per slot; rejects when the read of one slot failed. */
  async getMany(keys: string[]): Promise<(Buffer | null)[]> {
    const values: (Buffer | null)[] = keys.map(() => null);
    const positions = keys.map((key, at) => ({ key, at }));
    await allSettled(
      bySlot(positions, ({ key }) => key).map(async (group) => {
        const read = await this.readSlot(group.map(({ key }) => key));
        group.forEach(({ at }, i) => (values[at] = read[i] ?? null));
      }),
    );
    return values;
  }

  /**
   * Writes the entries of each slot in one MULTI, every slot at once: all or none of a slot's
   * entries are stored. Rejects when a slot's were not (the other slots' may well be).
   */
  async setMany(entries: DriverEntry[]): Promise<void> {
    const groups = bySlot(entries, ({ key }) => key);
    const outcomes = await Promise.allSettled(groups.map((group) => this.writeSlot(group)));
    const failed = outcomes.filter((outcome) => outcome.status === 'rejected');
    if (failed.length === 0) return;
    const stored = groups.length - failed.length;
    const reason = reasonOf((failed[0] as PromiseRejectedResult).reason);
    throw new Error(messages.redisClusterPartialWrite(stored, groups.length, reason), {
      cause: (failed[0] as PromiseRejectedResult).reason,
    });
  }

  /** UNLINK, one per slot; resolves how many keys existed. */
  async delete(keys: string[]): Promise<number> {
    let removed = 0;
    await allSettled(
      bySlot(keys, (key) => key).map(async (group) => {
        const count = await this.unlinkSlot(group);
        removed += count;
      }),
    );
    return removed;
  }

  /**
   * The keys matching `match` on every master, each SCAN round trip through `step`. The walk is
   * made again (MAX_WALKS times at most) when the slots moved while it ran, or a slot was being
   * migrated: a key can then have left a master not scanned yet for one scanned already. Rejects
   * when they kept moving, so that the caller knows some keys may have been missed.
   */
  async *scan(match: string, step: Step): AsyncIterable<string[]> {
    for (let walk = 1; ; walk += 1) {
      // From the slot map as it is now: a master that got slots since the last refresh is walked too.
      await step(refreshSlots(this.client));
      const masters = this.client.nodes('master');
      const before = await step(layoutOf(masters));
      for (const master of masters) {
        let cursor = '0';
        do {
          const [next, keys] = await step(master.scan(cursor, 'MATCH', match, 'COUNT', SCAN_BATCH));
          cursor = next;
          if (keys.length > 0) yield keys;
        } while (cursor !== '0');
      }
      const after = await step(layoutOf(this.client.nodes('master')));
      if (before.stable && before.text === after.text) return;
      if (walk === MAX_WALKS) throw new Error(messages.redisClusterMovedDuringWalk(MAX_WALKS));
    }
  }

  private async writeSlot(entries: DriverEntry[]): Promise<void> {
    if (entries.length === 1) return this.set(entries[0]!);
    try {
      await setInMulti(this.client, entries);
    } catch (error) {
      // Redis refuses a transaction of several keys on a slot half migrated (TRYAGAIN): they are
      // written one by one, each where its key is now.
      if (!duringMigration(error)) throw error;
      await Promise.all(entries.map((entry) => this.set(entry)));
    }
  }

  private async set({ key, bytes, ttlMs }: DriverEntry): Promise<void> {
    if (ttlMs === null) await this.client.set(key, asBuffer(bytes));
    else await this.client.set(key, asBuffer(bytes), 'PX', ttlMs);
  }

  private async unlinkSlot(keys: string[]): Promise<number> {
    try {
      return await this.client.unlink(keys);
    } catch (error) {
      if (keys.length === 1 || !duringMigration(error)) throw error;
      const counts = await Promise.all(keys.map((key) => this.client.unlink(key)));
      return counts.reduce((sum, count) => sum + count, 0);
    }
  }
}

/** SET of every entry (PX for those with a ttl) in one MULTI: all are stored, or it rejects. */
export async function setInMulti(client: Redis | Cluster, entries: DriverEntry[]): Promise<void> {
  const multi = client.multi();
  for (const { key, bytes, ttlMs } of entries) {
    if (ttlMs === null) multi.set(key, asBuffer(bytes));
    else multi.set(key, asBuffer(bytes), 'PX', ttlMs);
  }
  const results = await multi.exec();
  if (!results) throw new Error('MULTI was discarded');
  const failed = results.find(([error]) => error);
  if (failed) throw failed[0];
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Waits for every call (so that none is left unobserved), then rejects with the first failure. */
async function allSettled(calls: Promise<void>[]): Promise<void> {
  const outcomes = await Promise.allSettled(calls);
  const failed = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

/**
 * A redirection that ioredis gave up following (its retries used up), or a transaction aborted by
 * one: the slot is being migrated. ioredis words the first as "Too many Cluster redirections. Last
 * error: ReplyError: TRYAGAIN ...", and attaches the errors of an aborted MULTI as previousErrors.
 */
function duringMigration(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (/(?:^|Last error: (?:ReplyError: )?)(?:TRYAGAIN|ASK|MOVED)\b/.test(error.message))
    return true;
  const previous = (error as { previousErrors?: unknown }).previousErrors;
  return Array.isArray(previous) && previous.some(duringMigration);
}

function refreshSlots(client: Cluster): Promise<void> {
  return new Promise((resolve, reject) =>
    client.refreshSlotsCache((error) => (error ? reject(error) : resolve())),
  );
}

/**
 * What each master says of its own slots (CLUSTER NODES, its "myself" line): the ranges it serves,
 * and the slots it is migrating or importing (`[slot->-id]`, `[slot-<-id]`). Two equal layouts
 * and no migration: no key moved between them.
 */
async function layoutOf(masters: Redis[]): Promise<{ text: string; stable: boolean }> {
  const lines = await Promise.all(
    masters.map(async (master) => {
      const nodes = String(await master.call('CLUSTER', 'NODES'));
      const mine = nodes.split('\n').find((line) => line.split(' ')[2]?.includes('myself'));
      // id, address, flags, master, ping sent, pong received, config epoch, link state, slots...
      const fields = (mine ?? '').trim().split(' ');
      return `${fields[0]} ${fields[1]} ${fields.slice(8).join(' ')}`;
    }),
  );
  const text = lines.sort().join('\n');
  return { text, stable: !text.includes('[') };
}
