/**
 * Namespace generations: how clear() empties a namespace of a store that cannot list its keys
 * (memcached; a Keyv store without an iterator).
 *
 * Each scope of the cache (its entries, `${keyPrefix}:`; its tag records, `${keyPrefix}%t:`) has a
 * record, `${keyPrefix}%g` then the scope ('' or '%t'), holding a random id. Everything stored in
 * the scope carries the id current when it was written (memcached: in its key; Keyv: in its
 * value), and every read fetches the record in the same round trip, so clear(prefixes) only
 * writes a fresh id for the scopes named: what was stored before is a miss from then on, in every
 * process, and the store's expiry reclaims it. A write is checked against the record once made,
 * and done again under the new id when another process cleared meanwhile. A missing (evicted)
 * or foreign record is replaced by a new id, never by an older one, so that nothing from before a
 * clear can come back. This class keeps what a process knows; a driver's subclass says how the
 * record is read, written and carried.
 */
export abstract class Generations<G extends string | number> {
  /** The current id of each scope, as last seen. */
  protected readonly known = new Map<string, G>();
  /** Ids being obtained because none is known, by scope: concurrent callers share one. */
  private readonly obtaining = new Map<string, Promise<G>>();
  /** How many renew() calls this process made: taken when a write is issued, for mustRedo(). */
  renewals = 0;

  constructor(protected readonly keyPrefix: string) {}

  /** A new random id, never `previous`. */
  protected abstract fresh(previous: G | undefined): G;
  /** Writes `generation` into the record of `scope`, never expiring, whatever it held. */
  protected abstract write(scope: string, generation: G): Promise<void>;
  /** The id of a scope whose record holds none known here (`previous`: the one it held before). */
  protected abstract obtain(scope: string, previous: G | undefined): Promise<G>;

  /** What `key` holds between the key prefix and its first ':' after it: '' (entries), '%t' (tag records). */
  scopeOf(key: string): string {
    const end = key.indexOf(':', this.keyPrefix.length);
    if (!key.startsWith(this.keyPrefix) || end < 0) {
      throw new Error(
        `the key "${key}" is outside the namespace "${this.keyPrefix}" of this cache`,
      );
    }
    return key.slice(this.keyPrefix.length, end);
  }

  /** Moves the scope of `prefix` (a scope itself: it ends with its first ':') to a fresh id. */
  async renew(prefix: string): Promise<void> {
    const scope = this.scopeOf(prefix);
    this.renewals += 1;
    const fresh = this.fresh(this.known.get(scope));
    await this.write(scope, fresh);
    this.known.set(scope, fresh);
  }

  /**
   * Whether a write issued when renewals was `since`, under `used`, must be done again under
   * `now` (what the record held after it): when a clear moved its scope meanwhile, unless this
   * process cleared since (that clear came after the write, and removes it).
   */
  mustRedo(used: G, now: G, since: number): boolean {
    return now !== used && this.renewals === since;
  }

  /**
   * The name of a scope's record: `${keyPrefix}%g` then the scope. No key of the cache is one:
   * every key has a ':' after the key prefix, a record's name has none.
   */
  protected recordName(scope: string): string {
    return `${this.keyPrefix}%g${scope}`;
  }

  /** Takes what the record of `scope` held (undefined: missing or foreign): its current id. */
  protected adopt(scope: string, found: G | undefined): G | Promise<G> {
    if (found !== undefined) {
      this.known.set(scope, found);
      return found;
    }
    const previous = this.known.get(scope);
    this.known.delete(scope);
    return this.resolve(scope, previous);
  }

  /** The current id of a scope none is known of: obtained once for all concurrent callers. */
  protected resolve(scope: string, previous?: G): Promise<G> {
    let obtaining = this.obtaining.get(scope);
    if (!obtaining) {
      obtaining = this.obtain(scope, previous)
        .then((generation) => {
          this.known.set(scope, generation);
          return generation;
        })
        .finally(() => this.obtaining.delete(scope));
      this.obtaining.set(scope, obtaining);
    }
    return obtaining;
  }
}
