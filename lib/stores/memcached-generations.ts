import { Buffer } from 'node:buffer';
import {
  decodeGeneration,
  freshGeneration,
  memcachedKey,
  storeExtras,
} from './memcached-format.js';
import { messages } from '../messages.js';
import { Opcode, Status, type Wire } from './memcached-wire.js';

/** What run() does when the generation changed while its request was in flight. */
export const REDO = Symbol('nest-cache:memcached-redo');
/** A check that failed: the generation is not known. */
const FAILED = Symbol('nest-cache:memcached-check-failed');

/** How run() goes about a request; see there. */
export interface RunOptions {
  steps?: 'one' | 'many';
  deadline?: number;
  renewals?: number;
}

/**
 * Namespace generations: how clear() empties a namespace of a store that cannot list its keys.
 *
 * Each scope of the cache (its entries, `${keyPrefix}:`; its tag records, `${keyPrefix}%t:`) has a
 * generation record in memcached, holding a random id. Every item of the scope is stored under the
 * current id, so clear() only writes a fresh id: the old items are no longer reachable, and
 * memcached's LRU and expiry reclaim them. Every request is followed, in the same round trip, by a
 * read of the record (one per scope for all the requests of one tick), so a clear made by another
 * process is seen by the next call here: a read made under the old id is a miss, a write or
 * delete is done again under the new one. A read whose check fails is a miss too.
 */
export class Generations {
  /** The current id of each scope, as last seen. */
  private readonly known = new Map<string, string>();
  /** Ids being read (or created) because none is known yet. */
  private readonly resolving = new Map<string, Promise<string>>();
  /** The check of each scope for this tick's requests, until it is sent. */
  private readonly checks = new Map<string, Promise<string | undefined>>();
  /** How many renew() calls this process made (see run()). */
  renewals = 0;

  constructor(
    private readonly wire: Wire,
    private readonly keyPrefix: string,
  ) {}

  /**
   * Runs `request` on the memcached key of `key` under the current generation, then checks the
   * generation. When it changed meanwhile, resolves `whenChanged`, or (REDO) runs `request` once
   * more under the new one: unless this process cleared since the call was made (`renewals`
   * then: that clear came after the write, and removes it), or `deadline` (performance.now())
   * has passed. When the check fails, resolves `whenChanged` too (a read may be from before a
   * clear), or, for REDO, the result. `steps`: a request of several round trips is checked after
   * its last one; a single request shares the round trip of its check.
   */
  async run<T>(
    key: string,
    request: (itemKey: string) => Promise<T>,
    whenChanged: T | typeof REDO,
    { steps = 'one', deadline = Infinity, renewals = this.renewals }: RunOptions = {},
  ): Promise<T> {
    const scope = this.scopeOf(key);
    // No await when the id is known: the request is written in this very turn, before its check.
    const generation = this.known.get(scope) ?? (await this.resolve(scope));
    const checked = () => this.check(scope).catch((): typeof FAILED => FAILED);
    let result: T;
    let seen: string | undefined | typeof FAILED;
    if (steps === 'one') {
      // The check is sent on the next tick, after every request of this one.
      [result, seen] = await Promise.all([request(this.itemKey(generation, key)), checked()]);
    } else {
      result = await request(this.itemKey(generation, key));
      seen = await checked();
    }
    if (seen === generation) return result;
    if (seen === FAILED) return whenChanged === REDO ? result : whenChanged;
    const current = await this.adopt(scope, seen);
    if (whenChanged !== REDO) return whenChanged;
    if (this.renewals !== renewals) return result;
    if (performance.now() > deadline) throw new Error(messages.memcachedPastDeadline(key));
    return request(this.itemKey(current, key));
  }

  /** Moves the scope of `prefix` (a scope itself: it ends with its first ':') to a fresh generation. */
  async renew(prefix: string): Promise<void> {
    const scope = this.scopeOf(prefix);
    this.renewals += 1;
    const fresh = freshGeneration();
    const reply = await this.wire.request(
      Opcode.SET,
      this.recordKey(scope),
      storeExtras(null),
      Buffer.from(fresh, 'latin1'),
    );
    if (reply.status !== Status.OK) throw this.wire.unexpected(Opcode.SET, reply);
    this.known.set(scope, fresh);
  }

  /** Reads the generation of the entries' scope, so that the first calls need no extra round trip. */
  async warmUp(): Promise<void> {
    await this.resolve('');
  }

  /** The memcached key of `key` under `generation`: `${keyPrefix}@${generation}` then the rest of the key. */
  private itemKey(generation: string, key: string): string {
    return memcachedKey(`${this.keyPrefix}@${generation}${key.slice(this.keyPrefix.length)}`);
  }

  /**
   * The generation record of a scope: `${keyPrefix}%g` then the scope. No item key holds it: an
   * item's name has a ':' (every key does), a record's has none (the key prefix is %-escaped).
   */
  private recordKey(scope: string): string {
    return memcachedKey(`${this.keyPrefix}%g${scope}`);
  }

  /** What `key` holds between the key prefix and its first ':' after it: '' (entries), '%t' (tag records). */
  private scopeOf(key: string): string {
    const end = key.indexOf(':', this.keyPrefix.length);
    if (!key.startsWith(this.keyPrefix) || end < 0) {
      throw new Error(
        `the key "${key}" is outside the namespace "${this.keyPrefix}" of this cache`,
      );
    }
    return key.slice(this.keyPrefix.length, end);
  }

  /** The current generation when none is known: read, or created when the record is missing. */
  private resolve(scope: string): Promise<string> {
    let resolving = this.resolving.get(scope);
    if (!resolving) {
      resolving = this.read(scope)
        .then((found) => found ?? this.create(scope))
        .then((generation) => {
          this.known.set(scope, generation);
          return generation;
        })
        .finally(() => this.resolving.delete(scope));
      this.resolving.set(scope, resolving);
    }
    return resolving;
  }

  /** Switches to what the record held (or, when it was missing, to a new generation). */
  private async adopt(scope: string, seen: string | undefined): Promise<string> {
    if (seen === undefined) {
      // The record is gone (evicted, or the server restarted): a new one, never an old id, so that
      // entries from before a clear can never come back.
      this.known.delete(scope);
      return this.resolve(scope);
    }
    this.known.set(scope, seen);
    return seen;
  }

  /** A read of the record sent on the next tick, shared by every request of this one. */
  private check(scope: string): Promise<string | undefined> {
    let check = this.checks.get(scope);
    if (!check) {
      check = new Promise<string | undefined>((resolve, reject) => {
        process.nextTick(() => {
          this.checks.delete(scope);
          this.read(scope).then(resolve, reject);
        });
      });
      this.checks.set(scope, check);
    }
    return check;
  }

  private async read(scope: string): Promise<string | undefined> {
    const reply = await this.wire.request(Opcode.GET, this.recordKey(scope));
    if (reply.status === Status.NOT_FOUND) return undefined;
    if (reply.status !== Status.OK) throw this.wire.unexpected(Opcode.GET, reply);
    // A record that holds something else is replaced, like a missing one.
    return decodeGeneration(reply.value);
  }

  /** Creates the record with a fresh id; when another process was first, its id. */
  private async create(scope: string): Promise<string> {
    const fresh = freshGeneration();
    const key = this.recordKey(scope);
    const value = Buffer.from(fresh, 'latin1');
    const added = await this.wire.request(Opcode.ADD, key, storeExtras(null), value);
    if (added.status === Status.OK) return fresh;
    if (added.status !== Status.EXISTS && added.status !== Status.NOT_STORED) {
      throw this.wire.unexpected(Opcode.ADD, added);
    }
    const found = await this.read(scope);
    if (found !== undefined) return found;
    // Gone again, or not a generation: take it over.
    const set = await this.wire.request(Opcode.SET, key, storeExtras(null), value);
    if (set.status !== Status.OK) throw this.wire.unexpected(Opcode.SET, set);
    return fresh;
  }
}
