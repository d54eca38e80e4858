/**
 * {@linkcode SessionTable}: one client's exactly-once records inside a replica's sessions space.
 *
 * Layout, so that one client's records sit together in key order and each result is its own
 * record (an apply touches O(1) records, however many requests the client has in flight):
 * - header: `[id length: u8][client id bytes][0x00]` → {@linkcode ClientSession}
 * - result: `[id length: u8][client id bytes][0x01][seq: u64 big-endian]` → {@linkcode SessionResult}
 *
 * @module
 */
import { ClientSession, SessionResult } from "@tinykv/proto/tinykv/v1";
import type { KvSpace } from "./kv_space.ts";

const HEADER = 0;
const RESULT = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function clientPrefix(clientId: string): Uint8Array {
  const id = encoder.encode(clientId);
  const prefix = new Uint8Array(1 + id.length);
  prefix[0] = id.length;
  prefix.set(id, 1);
  return prefix;
}

function withSuffix(prefix: Uint8Array, kind: number, seq?: number): Uint8Array {
  const key = new Uint8Array(prefix.length + 1 + (seq === undefined ? 0 : 8));
  key.set(prefix, 0);
  key[prefix.length] = kind;
  if (seq !== undefined) {
    // Big-endian u64, byte by byte (seqs are safe integers: the high word fits 21 bits).
    let high = Math.floor(seq / 0x100000000);
    let low = seq >>> 0;
    for (let at = prefix.length + 8; at > prefix.length + 4; at--) {
      key[at] = low & 0xff;
      low >>>= 8;
    }
    for (let at = prefix.length + 4; at > prefix.length; at--) {
      key[at] = high & 0xff;
      high >>>= 8;
    }
  }
  return key;
}

/** One client's records in a sessions space. */
export class SessionTable {
  readonly #space: KvSpace;
  readonly #prefix: Uint8Array;

  constructor(space: KvSpace, clientId: string) {
    this.#space = space;
    this.#prefix = clientPrefix(clientId);
  }

  /** Every client's header, in key order. */
  static *headers(space: KvSpace): Iterable<{ clientId: string; session: ClientSession }> {
    for (const { key, value } of space.scan(new Uint8Array(), undefined)) {
      const length = key[0];
      if (key.length !== length + 2 || key[length + 1] !== HEADER) continue;
      const clientId = decoder.decode(key.subarray(1, 1 + length));
      yield { clientId, session: ClientSession.decode(value) };
    }
  }

  /** The client's header, if it has one. */
  header(): ClientSession | undefined {
    const stored = this.#space.get(withSuffix(this.#prefix, HEADER));
    return stored === undefined ? undefined : ClientSession.decode(stored);
  }

  putHeader(session: ClientSession): void {
    this.#space.put(withSuffix(this.#prefix, HEADER), ClientSession.encode(session));
  }

  /** The remembered result of `seq`, if any. */
  result(seq: number): SessionResult | undefined {
    const stored = this.#space.get(withSuffix(this.#prefix, RESULT, seq));
    return stored === undefined ? undefined : SessionResult.decode(stored);
  }

  /** Stores the result of one seq; returns its size in bytes (as `result_bytes` counts it). */
  putResult(result: SessionResult): number {
    const encoded = SessionResult.encode(result);
    this.#space.put(withSuffix(this.#prefix, RESULT, result.seq), encoded);
    return encoded.length;
  }

  /** Forgets the results of seqs in `(fromSeq, toSeq]`; returns how many and their bytes. */
  forgetUpTo(fromSeq: number, toSeq: number): { count: number; bytes: number } {
    if (toSeq <= fromSeq) return { count: 0, bytes: 0 };
    const start = withSuffix(this.#prefix, RESULT, fromSeq + 1);
    const end = withSuffix(this.#prefix, RESULT, toSeq + 1);
    return this.#deleteRange(start, end);
  }

  /** Turns the session into a tombstone stamped `now`, forgetting its results; returns it. */
  expire(now: number): ClientSession {
    this.#deleteRange(withSuffix(this.#prefix, RESULT), withSuffix(this.#prefix, RESULT + 1));
    const tombstone = {
      lastActiveMs: now,
      ackSeq: 0,
      resultCount: 0,
      expired: true,
      resultBytes: 0,
    };
    this.putHeader(tombstone);
    return tombstone;
  }

  /** Removes every record of the client. */
  remove(): void {
    this.#deleteRange(withSuffix(this.#prefix, HEADER), withSuffix(this.#prefix, RESULT + 1));
  }

  #deleteRange(start: Uint8Array, end: Uint8Array): { count: number; bytes: number } {
    const keys: Uint8Array[] = [];
    let bytes = 0;
    for (const { key, value } of this.#space.scan(start, end)) {
      keys.push(key.slice());
      bytes += value.length;
    }
    for (const key of keys) this.#space.delete(key);
    return { count: keys.length, bytes };
  }
}
