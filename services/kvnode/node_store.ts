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
 * | `04` peer id, space, key                 | state-machine data, sessions and meta (gen. 0)  |
 * | `05` peer id, generation, space, key     | the same, of a later generation (a snapshot)    |
 *
 * Replicas are keyed by their Raft peer id, unique per incarnation, so a replica removed and later
 * re-created never meets its predecessor's records. Numbers in keys are big-endian so that keys sort
 * numerically.
 *
 * The driver, replicas and identity code see the store only as a {@linkcode NodeStorage}
 * (`node_storage.ts`, which holds the key helpers too and does not load LMDB), so the
 * simulation (`tests/sim_kvnode`) can run them over `MemoryNodeStore` instead.
 *
 * Writes happen in {@linkcode NodeStore.write}: one LMDB write transaction that is synced to disk
 * before its promise resolves. The driver puts all of a loop turn's work into one such transaction
 * (group commit). A failed commit rejects the promise; the driver treats that as fatal, since the
 * in-memory views may then be ahead of the disk.
 *
 * A small turn that only applies committed entries, on a node with few requests waiting, writes
 * with `durable: false`: the transaction runs on the loop's thread and commits with LMDB's
 * `MDB_NOMETASYNC` (its pages are flushed, its meta page is not), so it skips the two handoffs to
 * lmdb-js's writer thread and one of the two flushes. A machine crash may undo it, never tear it
 * (LMDB keeps the previous meta page valid), and the next commit that writes covers it; what it
 * wrote is redone from the durable log on restart. Such a turn answers requests (the leader's
 * applies): it is held open (`hold`) until those answers have left the process, and flushes after,
 * so a put's answer does not wait for the flush that stores its result. Meanwhile the transaction
 * is open on the loop's thread, where lmdb-js would run any other write inside it, so every write
 * started meanwhile waits for its commit. A small synced turn of an idle node that sends nothing
 * before its write commits on the loop's thread too (`now`).
 *
 * @module
 */
import { open, type RootDatabase } from "lmdb";
import { compareBytes } from "@tinykv/shard";
import type { KvPair, KvSpace } from "./kv_space.ts";
import {
  identityKey,
  type NodeStorage,
  type ReadView,
  spacePrefix,
  type WriteOptions,
} from "./node_storage.ts";
import { PrefixSpace } from "./prefix_space.ts";
import { assert } from "./_assert.ts";

export {
  identityKey,
  makeKey,
  type NodeStorage,
  PREFIX,
  prefixEnd,
  readU64,
  SPACE,
  writeU64,
} from "./node_storage.ts";

/** Options of {@linkcode NodeStore.open}. */
export interface NodeStoreOptions {
  /** The directory of the environment; created when missing. */
  readonly dir: string;
  /** The LMDB map size (address space reserved, not disk used). */
  readonly mapBytes: number;
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * lmdb-js `transactionSync` flags of a write that is not durable at once: `MDB_NOMETASYNC`
 * (0x40000, LMDB's own flag for `mdb_txn_begin`), commit on this thread even while lmdb-js's
 * writer thread holds a batch (2), abortable if `work` throws (1).
 */
const DEFERRED_SYNC_TXN = 0x40000 | 2 | 1;
/** lmdb-js `transactionSync` flags of a durable write on this thread (its defaults). */
const SYNCED_TXN = 2 | 1;

/** The node's LMDB environment. */
export class NodeStore implements NodeStorage {
  readonly #db: RootDatabase<Uint8Array, Uint8Array>;
  #closed = false;
  /** Settles when the transaction held open on this thread (`hold`) has committed, if one is. */
  #held: Promise<void> | undefined;
  /** Writes handed to lmdb-js's writer thread and not yet committed. */
  #writerWrites = 0;

  private constructor(db: RootDatabase<Uint8Array, Uint8Array>) {
    this.#db = db;
  }

  /** LMDB's key limit for this environment's page size (1,978 bytes with 4 KiB pages). */
  get keyBytesMax(): number {
    return (this.#db as unknown as { maxKeySize: number }).maxKeySize;
  }

  /** The data file's size up to its last written page (LMDB's high-water mark: free pages count). */
  usedBytes(): number {
    const stats = this.#db.getStats() as { pageSize?: number; lastPageNumber?: number };
    return ((stats.lastPageNumber ?? -1) + 1) * (stats.pageSize ?? 0);
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

  /** Inside {@linkcode write}: removes the keys in `[start, end)`, at most `limit`; how many. */
  removeRange(start: Uint8Array, end: Uint8Array, limit?: number): number {
    const keys: Uint8Array[] = [];
    for (const key of this.#db.getKeys({ start, end, limit })) keys.push(new Uint8Array(key));
    for (const key of keys) this.#db.removeSync(key);
    return keys.length;
  }

  /** An LMDB read transaction: the last committed state, until closed. */
  readView(): ReadView {
    const db = this.#db;
    const transaction = db.useReadTransaction();
    let open = true;
    const check = () => {
      if (!open) throw new Error("Read view is closed");
    };
    return {
      keyBytesMax: this.keyBytesMax,
      get(key) {
        check();
        // Not `db.get(key, { transaction })`: lmdb-js reads a write transaction open on this
        // thread in its place (one held open, `hold`, lasts across turns of the event loop), while
        // a range read keeps to the view's own transaction.
        for (const pair of db.getRange({ start: key, limit: 1, transaction })) {
          return compareBytes(pair.key, key) === 0 ? new Uint8Array(pair.value) : undefined;
        }
        return undefined;
      },
      *range(start, end) {
        check();
        for (const { key, value } of db.getRange({ start, end, transaction })) {
          yield { key: new Uint8Array(key), value: new Uint8Array(value) };
        }
      },
      close() {
        if (!open) return;
        open = false;
        transaction.done();
      },
    };
  }

  /**
   * Runs `work` in one write transaction and resolves once it is committed and synced. `work` runs
   * synchronously inside the transaction (later than this call, in LMDB's write batch); its reads
   * see its own writes. With `durable: false` it runs now, on this thread, and the promise
   * resolves once committed, after what `hold` returned settled (see the module docs).
   */
  async write<T>(work: () => T, options?: WriteOptions): Promise<T> {
    while (this.#held !== undefined) await this.#held;
    if (options?.durable === false) {
      // Held only while no transaction of lmdb-js's writer thread is under way: one could have
      // its callbacks queued for this thread, and they would run inside the held transaction.
      const hold = this.#writerWrites === 0 ? options.hold : undefined;
      if (hold === undefined) return this.#db.transactionSync(work, DEFERRED_SYNC_TXN);
      return await this.#writeHeld(work, hold);
    }
    if (options?.now === true) return this.#db.transactionSync(work, SYNCED_TXN);
    let result: T | undefined;
    let ran = false;
    this.#writerWrites++;
    try {
      await this.#db.transaction(() => {
        result = work();
        ran = true;
      });
    } finally {
      this.#writerWrites--;
    }
    assert(ran, "LMDB write transaction did not run its work");
    return result as T;
  }

  /** A `durable: false` write that commits once what `hold` returns settles. */
  async #writeHeld<T>(work: () => T, hold: () => Promise<void> | undefined): Promise<T> {
    let result: T | undefined;
    let ran = false;
    // lmdb-js commits once the promise the callback returns settles (none: at once).
    const committed: unknown = this.#db.transactionSync(() => {
      result = work();
      ran = true;
      return hold();
    }, DEFERRED_SYNC_TXN);
    if (committed instanceof Promise) {
      const held = committed.then(() => {}, () => {});
      this.#held = held;
      try {
        await committed;
      } finally {
        if (this.#held === held) this.#held = undefined;
      }
    }
    assert(ran, "LMDB write transaction did not run its work");
    return result as T;
  }

  /** Identity records: a small string value under a name. */
  getIdentity(name: string): string | undefined {
    const value = this.get(identityKey(name));
    return value === undefined ? undefined : decoder.decode(value);
  }

  /** Inside {@linkcode write}: sets an identity record. */
  putIdentity(name: string, value: string): void {
    this.put(identityKey(name), encoder.encode(value));
  }

  /** A {@linkcode KvSpace} over one state-machine space of one generation of a replica. */
  space(peerId: number, space: number, generation = 0): KvSpace {
    return new PrefixSpace(this, spacePrefix(peerId, generation, space));
  }

  /** Closes the environment; later calls fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#held !== undefined) await this.#held;
    await this.#db.close();
  }
}
