/**
 * {@linkcode MemoryNodeStore}: a {@linkcode NodeStorage} in memory, with the semantics of the LMDB
 * {@linkcode NodeStore} and a crash model, so the simulation (`tests/sim_kvnode`) can run whole
 * kvnodes (driver, replicas, state machines) under one seed.
 *
 * - Keys are ordered bytewise, as in LMDB.
 * - {@linkcode MemoryNodeStore.write} runs its work later than the call (after a microtask, as LMDB
 *   runs it in its write batch), one transaction at a time in call order. The work's reads see its
 *   own writes; if it throws, none of its writes apply and the promise rejects.
 * - A transaction is committed (visible to reads) when its work returns, then synced; `write`
 *   resolves only after the sync. {@linkcode MemoryNodeStore.crash} keeps only synced transactions,
 *   so a crash before `write` resolved loses that transaction entirely: transactions are atomic,
 *   never torn.
 * - {@linkcode MemoryNodeStore.freezeNextSync} lets the simulation crash a node in the middle of a
 *   turn: the next transaction commits but its sync never completes, so its `write` never
 *   resolves (the driver hangs in that turn, sending nothing), and a crash then loses it.
 * - With a `syncGate`, a committed transaction's sync completes only when the gate says so (the
 *   core simulation gives each sync a duration on its clock), and a crash meanwhile may keep it
 *   (`crash({ keepUnsynced: true })`: the disk wrote it before the power went) or lose it whole:
 *   an LMDB commit is atomic, never torn.
 * - `now` is ignored for a durable write (it runs in call order, as any other): nothing here
 *   depends on when the work runs, only on what survives a crash.
 * - A write with `durable: false` runs and commits at once (visible) and is not synced: it
 *   becomes durable when a transaction committed after it, with writes, syncs. A crash loses
 *   every such write not yet covered, whole, unless `keepUnsynced` (then it keeps every committed
 *   transaction).
 *
 * @module
 */
import { type KvPair, MemoryKvSpace } from "./kv_space.ts";
import {
  identityKey,
  type NodeStorage,
  type ReadView,
  spacePrefix,
  type WriteOptions,
} from "./node_storage.ts";
import { PrefixSpace } from "./prefix_space.ts";
import type { KvSpace } from "./kv_space.ts";
import { assert, AssertionError } from "./_assert.ts";

/** LMDB's key limit with 4 KiB pages, the default of {@linkcode MemoryNodeStore}. */
export const MEMORY_KEY_BYTES_MAX_DEFAULT = 1978;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One write of a transaction: a put, or a removal when `value` is undefined. */
interface Write {
  readonly key: Uint8Array;
  readonly value: Uint8Array | undefined;
}

/** A node's store in memory. See the module docs. */
export class MemoryNodeStore implements NodeStorage {
  /** What reads see: every committed transaction, and the running one's writes. */
  readonly #visible: MemoryKvSpace;
  /** What survives a crash: every synced transaction. */
  readonly #synced: MemoryKvSpace;
  /** The writes of the running transaction, in order; undefined outside a transaction. */
  #running: Write[] | undefined;
  /** What each write of the running transaction replaced, in order (undone in reverse). */
  #undo: Write[] | undefined;
  /** Committed writes with `durable: false` that no sync covers yet, in commit order. */
  #deferred: Write[][] = [];
  #queue: Promise<unknown> = Promise.resolve();
  #freezeNext: (() => void) | undefined;
  #frozen = false;
  /**
   * The committed transaction waiting for its sync, after the deferred writes its sync covers;
   * undefined when none waits.
   */
  #unsynced: Write[][] | undefined;
  readonly #syncGate: ((synced: () => void) => void) | undefined;
  #crashed = false;
  #inFlight = 0;
  #transactions = 0;

  readonly #observe: ((keys: readonly Uint8Array[]) => void) | undefined;
  readonly keyBytesMax: number;

  /**
   * An empty store; `observe` (for the simulation's statistics) sees the keys each transaction
   * wrote, when it syncs. `keyBytesMax` is the longest key it takes (default
   * {@linkcode MEMORY_KEY_BYTES_MAX_DEFAULT}, LMDB's with 4 KiB pages); a longer one throws, as
   * in LMDB. `syncGate`, when given, is called as each transaction commits, and the
   * transaction's sync completes when it calls `synced` (by default a microtask later).
   */
  constructor(
    options: {
      observe?: (keys: readonly Uint8Array[]) => void;
      keyBytesMax?: number;
      syncGate?: (synced: () => void) => void;
    } = {},
  ) {
    this.#observe = options.observe;
    this.#syncGate = options.syncGate;
    this.keyBytesMax = options.keyBytesMax ?? MEMORY_KEY_BYTES_MAX_DEFAULT;
    this.#visible = new MemoryKvSpace();
    this.#synced = new MemoryKvSpace();
  }

  /** Transactions whose `write` has not resolved yet (a frozen one stays here). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Transactions synced so far. */
  get transactions(): number {
    return this.#transactions;
  }

  /** Whether a transaction is stuck in its sync (see {@linkcode freezeNextSync}). */
  get frozen(): boolean {
    return this.#frozen;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    return this.#visible.get(key)?.slice();
  }

  *range(start: Uint8Array, end: Uint8Array): Iterable<KvPair> {
    // A snapshot of the pairs, so that writes during the iteration cannot disturb it (LMDB reads
    // a consistent view too).
    const pairs: KvPair[] = [];
    for (const pair of this.#visible.scan(start, end)) {
      pairs.push({ key: pair.key.slice(), value: pair.value.slice() });
    }
    yield* pairs;
  }

  #inTransaction(what: string): Write[] {
    if (this.#running === undefined) {
      throw new AssertionError(`MemoryNodeStore.${what}() called outside write()`);
    }
    return this.#running;
  }

  put(key: Uint8Array, value: Uint8Array): void {
    if (key.length > this.keyBytesMax) {
      throw new RangeError(
        `Key has ${key.length} bytes: the store's maximum is ${this.keyBytesMax}`,
      );
    }
    this.#inTransaction("put").push({ key: key.slice(), value: value.slice() });
    this.#remember(key);
    this.#visible.put(key, value);
  }

  remove(key: Uint8Array): boolean {
    const writes = this.#inTransaction("remove");
    if (this.#visible.get(key) === undefined) return false;
    writes.push({ key: key.slice(), value: undefined });
    this.#remember(key);
    return this.#visible.delete(key);
  }

  removeRange(start: Uint8Array, end: Uint8Array, limit?: number): number {
    const writes = this.#inTransaction("removeRange");
    const keys: Uint8Array[] = [];
    for (const pair of this.#visible.scan(start, end)) {
      if (limit !== undefined && keys.length >= limit) break;
      keys.push(pair.key);
    }
    for (const key of keys) {
      writes.push({ key, value: undefined });
      this.#remember(key);
      this.#visible.delete(key);
    }
    return keys.length;
  }

  /** Records what `key` holds before the running transaction writes it. */
  #remember(key: Uint8Array): void {
    this.#undo!.push({ key: key.slice(), value: this.#visible.get(key)?.slice() });
  }

  write<T>(work: () => T, options?: WriteOptions): Promise<T> {
    if (options?.durable === false) return this.#deferredTransaction(work, options.hold);
    this.#inFlight++;
    const result = this.#queue.then(() => this.#transaction(work));
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Runs `work` now, as LMDB's `transactionSync`; throws as `work` does, with nothing applied. */
  #run<T>(work: () => T, writes: Write[]): T {
    assert(this.#running === undefined, "MemoryNodeStore.write() inside write()");
    this.#running = writes;
    const undo: Write[] = [];
    this.#undo = undo;
    try {
      return work();
    } catch (error) {
      this.#rollback(undo);
      throw error;
    } finally {
      this.#running = undefined;
      this.#undo = undefined;
    }
  }

  async #deferredTransaction<T>(
    work: () => T,
    hold: (() => Promise<void> | undefined) | undefined,
  ): Promise<T> {
    if (this.#crashed) return await never<T>();
    const writes: Write[] = [];
    const result = this.#run(work, writes);
    // Held open (see `WriteOptions.hold`): visible at once, as LMDB's reads on the thread of an
    // open transaction see its writes, but committed only after, so a crash meanwhile loses it
    // and no sync meanwhile covers it.
    const held = hold?.();
    if (held !== undefined) await held;
    if (this.#crashed) return await never<T>();
    this.#deferred.push(writes);
    return result;
  }

  async #transaction<T>(work: () => T): Promise<T> {
    if (this.#crashed) return await never<T>();
    const writes: Write[] = [];
    let result: T;
    try {
      result = this.#run(work, writes);
    } catch (error) {
      this.#inFlight--;
      throw error;
    }
    // The deferred writes committed before this one: its sync makes them durable too (unless it
    // wrote nothing: LMDB then neither flushes nor writes a meta page).
    const covered = writes.length === 0 ? [] : this.#deferred;
    if (writes.length > 0) this.#deferred = [];
    // Committed (visible). Now sync: a microtask later, unless the simulation froze it.
    const freeze = this.#freezeNext;
    if (freeze !== undefined) {
      this.#freezeNext = undefined;
      this.#frozen = true;
      // Never synced: the deferred writes before it stay uncovered.
      if (writes.length > 0) this.#deferred = [...covered, ...this.#deferred];
      freeze();
      return await never<T>();
    }
    this.#unsynced = [...covered, writes];
    const gate = this.#syncGate;
    if (gate === undefined) await Promise.resolve();
    else await new Promise<void>((synced) => gate(synced));
    if (this.#crashed) return await never<T>();
    this.#unsynced = undefined;
    for (const deferred of covered) {
      applyWrites(this.#synced, deferred);
      this.#observe?.(deferred.map((w) => w.key));
    }
    applyWrites(this.#synced, writes);
    this.#transactions++;
    this.#inFlight--;
    this.#observe?.(writes.map((w) => w.key));
    return result;
  }

  #rollback(undo: readonly Write[]): void {
    applyWrites(this.#visible, undo.toReversed());
  }

  /** Makes the next transaction hang in its sync; `onFrozen` runs when it does. Undefined disarms. */
  freezeNextSync(onFrozen: (() => void) | undefined): void {
    this.#freezeNext = onFrozen;
  }

  /**
   * Whether a durable transaction is committed and waits for its sync (its `write` has not
   * resolved; a crash now may keep or lose it). Writes with `durable: false` do not count: no one
   * waits for them (see {@linkcode deferredUncovered}).
   */
  get syncing(): boolean {
    return this.#unsynced !== undefined;
  }

  /** Writes with `durable: false` committed and not yet covered by a sync (a crash loses them). */
  get deferredUncovered(): number {
    return this.#deferred.length;
  }

  /**
   * The node crashed: this store stops (pending and later transactions never complete) and the
   * returned store holds what was synced, plus the committed transaction still waiting for its
   * sync when `keepUnsynced` (its pages reached the disk anyway). The new store has the same
   * options.
   */
  crash(options: { keepUnsynced?: boolean } = {}): MemoryNodeStore {
    this.#crashed = true;
    const recovered = new MemoryNodeStore({
      observe: this.#observe,
      keyBytesMax: this.keyBytesMax,
      syncGate: this.#syncGate,
    });
    for (const { key, value } of this.#synced.scan(new Uint8Array(), undefined)) {
      recovered.#visible.put(key, value);
      recovered.#synced.put(key, value);
    }
    if (options.keepUnsynced === true) {
      // Every committed transaction not synced yet, in commit order: the one waiting for its sync
      // (with the deferred writes before it), then the deferred writes after it.
      for (const writes of [...(this.#unsynced ?? []), ...this.#deferred]) {
        applyWrites(recovered.#visible, writes);
        applyWrites(recovered.#synced, writes);
      }
    }
    return recovered;
  }

  getIdentity(name: string): string | undefined {
    const value = this.get(identityKey(name));
    return value === undefined ? undefined : decoder.decode(value);
  }

  putIdentity(name: string, value: string): void {
    this.put(identityKey(name), encoder.encode(value));
  }

  space(peerId: number, space: number, generation = 0): KvSpace {
    return new PrefixSpace(this, spacePrefix(peerId, generation, space));
  }

  /**
   * A copy of the committed state (as an LMDB read transaction sees it: outside a transaction
   * the visible state is the committed one). Copies everything: for tests and the simulation.
   */
  readView(): ReadView {
    assert(this.#running === undefined, "MemoryNodeStore.readView() inside write()");
    const copy = new MemoryKvSpace();
    for (const { key, value } of this.#visible.scan(new Uint8Array(), undefined)) {
      copy.put(key, value);
    }
    let open = true;
    const check = () => {
      if (!open) throw new Error("Read view is closed");
    };
    return {
      keyBytesMax: this.keyBytesMax,
      get: (key) => {
        check();
        return copy.get(key)?.slice();
      },
      *range(start, end) {
        check();
        for (const pair of copy.scan(start, end)) {
          yield { key: pair.key.slice(), value: pair.value.slice() };
        }
      },
      close: () => {
        open = false;
      },
    };
  }

  /** The number of synced pairs. */
  get syncedSize(): number {
    return this.#synced.size;
  }
}

function applyWrites(space: MemoryKvSpace, writes: readonly Write[]): void {
  for (const { key, value } of writes) {
    if (value === undefined) space.delete(key);
    else space.put(key, value);
  }
}

function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}
