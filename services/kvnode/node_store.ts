/**
 * {@linkcode NodeStore}: the kvnode's one LMDB environment. It holds the node's identity, a record
 * per hosted replica, every replica's Raft log and state, and every replica's state-machine data,
 * each under its own key prefix:
 *
 * | prefix                                   | holds                                           |
 * | ---------------------------------------- | ----------------------------------------------- |
 * | `00` name                                | node identity: node id, cluster id              |
 * | `01` peer id                             | the replica record (shard, range, members)      |
 * | `02` peer id, index                      | a Raft log entry (term, type, checksum, data)    |
 * | `03` peer id, kind                       | Raft state: hard state, applied state, log start |
 * | `04` peer id, space, key                 | state-machine data, sessions and meta            |
 *
 * Replicas are keyed by their Raft peer id, unique per incarnation, so a replica removed and later
 * re-created never meets its predecessor's records. Numbers in keys are big-endian so that keys sort
 * numerically.
 *
 * Writes happen in {@linkcode NodeStore.write}: one LMDB write transaction that is synced to disk
 * before its promise resolves. The driver puts all of a loop turn's work into one such transaction
 * (group commit). A failed commit rejects the promise; the driver treats that as fatal, since the
 * in-memory views may then be ahead of the disk.
 *
 * @module
 */
import { open, type RootDatabase } from "lmdb";
import type { KvPair, KvSpace } from "./kv_space.ts";

/** Key prefixes of the environment. */
export const PREFIX = {
  identity: 0x00,
  replica: 0x01,
  log: 0x02,
  raftState: 0x03,
  space: 0x04,
} as const;

/** The state-machine spaces of a replica. */
export const SPACE = { data: 0, sessions: 1, meta: 2 } as const;

/** Options of {@linkcode NodeStore.open}. */
export interface NodeStoreOptions {
  /** The directory of the environment; created when missing. */
  readonly dir: string;
  /** The LMDB map size (address space reserved, not disk used). */
  readonly mapBytes: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes `value` as 8 big-endian bytes at `offset` (a safe integer, not negative). */
export function writeU64(bytes: Uint8Array, offset: number, value: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(offset, Math.floor(value / 0x100000000));
  view.setUint32(offset + 4, value % 0x100000000);
}

/** Reads 8 big-endian bytes at `offset` as a number. */
export function readU64(bytes: Uint8Array, offset: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return view.getUint32(offset) * 0x100000000 + view.getUint32(offset + 4);
}

/** Builds a key: one prefix byte, then each number as 8 bytes, then `tail`. */
export function makeKey(prefix: number, numbers: readonly number[], tail?: Uint8Array): Uint8Array {
  const key = new Uint8Array(1 + 8 * numbers.length + (tail?.length ?? 0));
  key[0] = prefix;
  numbers.forEach((n, i) => writeU64(key, 1 + 8 * i, n));
  if (tail !== undefined) key.set(tail, 1 + 8 * numbers.length);
  return key;
}

/** The smallest key greater than every key that starts with `prefix`. */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  const end = prefix.slice();
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  throw new RangeError("Key prefix of all 0xff bytes has no end");
}

/** The node's LMDB environment. */
export class NodeStore {
  readonly #db: RootDatabase<Uint8Array, Uint8Array>;
  #closed = false;

  private constructor(db: RootDatabase<Uint8Array, Uint8Array>) {
    this.#db = db;
  }

  /** Opens (or creates) the environment in `options.dir`. */
  static open(options: NodeStoreOptions): NodeStore {
    Deno.mkdirSync(options.dir, { recursive: true });
    const db = open<Uint8Array, Uint8Array>({
      path: `${options.dir}/kvnode.mdb`,
      compression: false,
      keyEncoding: "binary",
      encoding: "binary",
      mapSize: options.mapBytes,
      // Every commit is flushed before its promise resolves, so an acknowledgement never
      // precedes durability.
      overlappingSync: false,
      noSync: false,
    });
    return new NodeStore(db);
  }

  /** Reads one value (the latest committed, or this transaction's inside {@linkcode write}). */
  get(key: Uint8Array): Uint8Array | undefined {
    const value = this.#db.get(key);
    return value === undefined ? undefined : new Uint8Array(value);
  }

  /** Pairs with `start <= key < end`, ascending. */
  *range(start: Uint8Array, end: Uint8Array): Iterable<KvPair> {
    for (const { key, value } of this.#db.getRange({ start, end })) {
      yield { key: new Uint8Array(key), value: new Uint8Array(value) };
    }
  }

  /** Inside {@linkcode write}: stores `value` at `key`. */
  put(key: Uint8Array, value: Uint8Array): void {
    this.#db.putSync(key, value);
  }

  /** Inside {@linkcode write}: removes `key`; reports whether it was there. */
  remove(key: Uint8Array): boolean {
    return this.#db.removeSync(key);
  }

  /** Inside {@linkcode write}: removes every key in `[start, end)`; returns how many. */
  removeRange(start: Uint8Array, end: Uint8Array): number {
    const keys: Uint8Array[] = [];
    for (const key of this.#db.getKeys({ start, end })) keys.push(new Uint8Array(key));
    for (const key of keys) this.#db.removeSync(key);
    return keys.length;
  }

  /**
   * Runs `work` in one write transaction and resolves once it is committed and synced. `work` runs
   * synchronously inside the transaction (later than this call, in LMDB's write batch); its reads
   * see its own writes.
   */
  async write<T>(work: () => T): Promise<T> {
    let result: T | undefined;
    let ran = false;
    await this.#db.transaction(() => {
      result = work();
      ran = true;
    });
    if (!ran) throw new Error("LMDB write transaction did not run its work");
    return result as T;
  }

  /** Identity records: a small string value under a name. */
  getIdentity(name: string): string | undefined {
    const value = this.get(makeKey(PREFIX.identity, [], encoder.encode(name)));
    return value === undefined ? undefined : decoder.decode(value);
  }

  /** Inside {@linkcode write}: sets an identity record. */
  putIdentity(name: string, value: string): void {
    this.put(makeKey(PREFIX.identity, [], encoder.encode(name)), encoder.encode(value));
  }

  /** A {@linkcode KvSpace} over one state-machine space of one replica. */
  space(peerId: number, space: number): KvSpace {
    return new PrefixSpace(this, makeKey(PREFIX.space, [peerId], new Uint8Array([space])));
  }

  /** Closes the environment; later calls fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#db.close();
  }
}

/** A {@linkcode KvSpace} over the keys of a {@linkcode NodeStore} that start with a prefix. */
class PrefixSpace implements KvSpace {
  readonly #store: NodeStore;
  readonly #prefix: Uint8Array;
  readonly #end: Uint8Array;

  constructor(store: NodeStore, prefix: Uint8Array) {
    this.#store = store;
    this.#prefix = prefix;
    this.#end = prefixEnd(prefix);
  }

  #key(key: Uint8Array): Uint8Array {
    const full = new Uint8Array(this.#prefix.length + key.length);
    full.set(this.#prefix, 0);
    full.set(key, this.#prefix.length);
    return full;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    return this.#store.get(this.#key(key));
  }

  put(key: Uint8Array, value: Uint8Array): void {
    this.#store.put(this.#key(key), value);
  }

  delete(key: Uint8Array): boolean {
    return this.#store.remove(this.#key(key));
  }

  *scan(start: Uint8Array, end: Uint8Array | undefined): Iterable<KvPair> {
    const stop = end === undefined ? this.#end : this.#key(end);
    for (const { key, value } of this.#store.range(this.#key(start), stop)) {
      yield { key: key.subarray(this.#prefix.length), value };
    }
  }

  clear(): void {
    this.#store.removeRange(this.#prefix, this.#end);
  }
}
