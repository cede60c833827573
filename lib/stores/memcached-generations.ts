import { Buffer } from 'node:buffer';
import { Generations } from './generations.js';
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
 * Namespace generations in memcached (see Generations): every item is stored under a key that
 * holds its generation, and every request is followed, in the same round trip, by a read of the
 * record (one per scope for all the requests of one tick).
 */
export class MemcachedGenerations extends Generations<string> {
  /** The check of each scope for this tick's requests, until it is sent. */
  private readonly checks = new Map<string, Promise<string | undefined>>();

  constructor(
    private readonly wire: Wire,
    keyPrefix: string,
  ) {
    super(keyPrefix);
  }

  /**
   * Runs `request` on the memcached key of `key` under the current generation, then checks the
   * generation. When it changed meanwhile, resolves `whenChanged`, or (REDO) runs `request` once
   * more under the new one when mustRedo() says so, unless `deadline` (performance.now()) has
   * passed. When the check fails, resolves `whenChanged` too (a read may be from before a
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
    if (!this.mustRedo(generation, current, renewals)) return result;
    if (performance.now() > deadline) throw new Error(messages.memcachedPastDeadline(key));
    return request(this.itemKey(current, key));
  }

  /** Reads the generation of the entries' scope, so that the first calls need no extra round trip. */
  async warmUp(): Promise<void> {
    await this.resolve('');
  }

  protected fresh(): string {
    return freshGeneration();
  }

  protected async write(scope: string, generation: string): Promise<void> {
    const reply = await this.wire.request(
      Opcode.SET,
      this.recordKey(scope),
      storeExtras(null),
      Buffer.from(generation, 'latin1'),
    );
    if (reply.status !== Status.OK) throw this.wire.unexpected(Opcode.SET, reply);
  }

  /** The record as read, or created when missing. */
  protected async obtain(scope: string): Promise<string> {
    return (await this.read(scope)) ?? this.create(scope);
  }

  /** The memcached key of `key` under `generation`: `${keyPrefix}@${generation}` then the rest of the key. */
  private itemKey(generation: string, key: string): string {
    return memcachedKey(`${this.keyPrefix}@${generation}${key.slice(this.keyPrefix.length)}`);
  }

  private recordKey(scope: string): string {
    return memcachedKey(this.recordName(scope));
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
    const added = await this.wire.request(
      Opcode.ADD,
      this.recordKey(scope),
      storeExtras(null),
      Buffer.from(fresh, 'latin1'),
    );
    if (added.status === Status.OK) return fresh;
    if (added.status !== Status.EXISTS && added.status !== Status.NOT_STORED) {
      throw this.wire.unexpected(Opcode.ADD, added);
    }
    const found = await this.read(scope);
    if (found !== undefined) return found;
    // Gone again, or not a generation: take it over.
    await this.write(scope, fresh);
    return fresh;
  }
}
