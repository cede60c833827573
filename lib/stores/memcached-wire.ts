import { Buffer } from 'node:buffer';
import { messages } from '../messages.js';
import type { MemcachedConnection, MemjsClient, MemjsResponse } from './memcached-connection.js';

/** Binary-protocol opcodes the driver sends. */
export const Opcode = { GET: 0x00, SET: 0x01, ADD: 0x02, DELETE: 0x04, NOOP: 0x0a } as const;

/** Binary-protocol statuses the driver acts on; any other is an error. */
export const Status = {
  OK: 0x00,
  NOT_FOUND: 0x01,
  EXISTS: 0x02,
  TOO_LARGE: 0x03,
  NOT_STORED: 0x05,
} as const;

/** One answer: its status, value and CAS token. */
export interface Reply {
  status: number;
  value: Buffer;
  cas: Buffer;
}

const EMPTY = Buffer.alloc(0);
/** The largest request id: memjs' own counter wraps to a negative id, which its encoder refuses. */
const MAX_SEQ = 0x7fffffff;
const OPERATION_NAMES: Record<number, string> = {
  0: 'GET',
  1: 'SET',
  2: 'ADD',
  4: 'DELETE',
  10: 'NOOP',
};

/**
 * Raw requests through memjs' own connection handling (server choice by key, timeouts, retries):
 * its command methods hide the status codes behind log lines and error texts, and have no CAS.
 * Here a caller gets the status itself, so no decision depends on the text of a message.
 */
export class Wire {
  constructor(
    readonly client: MemjsClient,
    private readonly makeRequest: MemcachedConnection['makeRequest'],
  ) {}

  /** Sends one request (written to the socket at once, in call order) and resolves its answer. */
  request(
    opcode: number,
    key: string,
    extras: Buffer = EMPTY,
    value: Buffer = EMPTY,
    cas?: Buffer,
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const seq = this.nextSeq();
      const request = this.makeRequest(opcode, key, extras, value, seq);
      if (cas) cas.copy(request, 16);
      this.client.perform(key, request, seq, (error: unknown, response: MemjsResponse | null) => {
        if (error || !response) reject(error ?? new Error('memcached sent no answer'));
        else
          resolve({
            status: response.header.status,
            value: response.val,
            cas: response.header.cas,
          });
      });
    });
  }

  /** The id of a new request: 1 to MAX_SEQ, then 1 again. */
  private nextSeq(): number {
    const seq = this.client.seq;
    this.client.seq = seq >= 1 && seq < MAX_SEQ ? seq + 1 : 1;
    return this.client.seq;
  }

  /** The error for an answer the driver cannot act on. */
  unexpected(opcode: number, reply: Reply): Error {
    return new Error(
      messages.memcachedAnswered(OPERATION_NAMES[opcode] ?? `opcode ${opcode}`, reply.status),
    );
  }

  /**
   * Resolves once every server with an open connection has answered a NOOP (so every request sent
   * before it has been answered), or after `ms`, whichever comes first; opens no connection.
   */
  async drain(ms: number): Promise<void> {
    const connected = this.client.servers.filter((server) => server.connected);
    if (connected.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    const answered = Promise.all(
      connected.map(
        (server) =>
          new Promise<void>((resolve) => {
            const seq = this.nextSeq();
            server.onResponse(seq, () => resolve());
            server.onError(seq, () => resolve());
            server.write(this.makeRequest(Opcode.NOOP, '', EMPTY, EMPTY, seq));
          }),
      ),
    );
    try {
      await Promise.race([answered, waited]);
    } finally {
      clearTimeout(timer);
    }
  }
}
