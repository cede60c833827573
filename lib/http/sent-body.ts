/** What SentBody needs of Node's ServerResponse (Express's response, Fastify's reply.raw). */
interface Writable {
  write(...args: unknown[]): boolean;
  end(...args: unknown[]): unknown;
}

type Method = (...args: unknown[]) => unknown;

/**
 * Records the bytes a response sends: what reaches the client after every serialization step
 * (Express's json replacer, Fastify's preSerialization hooks and serializers, anything that
 * rewrites the body on its way out), so that a HIT replays exactly those bytes and never the
 * handler's own value. The only way Node tells them is the write()/end() calls of the response,
 * so this wraps those two methods of that one response, passing every call on unchanged, and puts
 * the originals back with restore() (at 'finish' or 'close').
 *
 * A compression middleware that wraps write()/end() itself (Express's `compression`) did so before
 * the handler ran, so the bytes recorded here are the uncompressed ones.
 */
export class SentBody {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private overflowed = false;
  private readonly originalWrite: Method;
  private readonly originalEnd: Method;
  private readonly hadOwnWrite: boolean;
  private readonly hadOwnEnd: boolean;
  private readonly write: Method;
  private readonly end: Method;

  constructor(
    private readonly response: Writable,
    private readonly maxBytes: number,
  ) {
    const target = response as unknown as Record<string, Method>;
    this.hadOwnWrite = Object.hasOwn(response, 'write');
    this.hadOwnEnd = Object.hasOwn(response, 'end');
    const originalWrite = (this.originalWrite = target.write!);
    const originalEnd = (this.originalEnd = target.end!);
    const record = (chunk: unknown, encoding: unknown) => this.record(chunk, encoding);
    this.write = function (this: unknown, ...args: unknown[]) {
      record(args[0], args[1]);
      return originalWrite.apply(this, args);
    };
    this.end = function (this: unknown, ...args: unknown[]) {
      if (typeof args[0] !== 'function') record(args[0], args[1]);
      return originalEnd.apply(this, args);
    };
    target.write = this.write;
    target.end = this.end;
  }

  /** The bytes sent so far; undefined when they were more than maxBytes. */
  bytes(): Buffer | undefined {
    return this.overflowed ? undefined : Buffer.concat(this.chunks, this.size);
  }

  /** Puts the response's own write() and end() back; idempotent. */
  restore(): void {
    const target = this.response as unknown as Record<string, Method>;
    // Only ours are undone: a wrapper installed after ours (rare) is left in place.
    if (target.write === this.write) {
      if (this.hadOwnWrite) target.write = this.originalWrite;
      else delete target.write;
    }
    if (target.end === this.end) {
      if (this.hadOwnEnd) target.end = this.originalEnd;
      else delete target.end;
    }
  }

  private record(chunk: unknown, encoding: unknown): void {
    if (this.overflowed || chunk === undefined || chunk === null) return;
    let bytes: Buffer;
    if (typeof chunk === 'string') {
      bytes = Buffer.from(
        chunk,
        typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8',
      );
    } else if (chunk instanceof Uint8Array) {
      bytes = Buffer.from(chunk); // a copy: the caller may reuse its buffer
    } else {
      return;
    }
    this.size += bytes.length;
    if (this.size > this.maxBytes) {
      this.overflowed = true;
      this.chunks.length = 0;
      return;
    }
    this.chunks.push(bytes);
  }
}
