/**
 * {@linkcode NodeStorage}: what the driver, replicas and identity code need of a kvnode's storage,
 * and the key layout they share. The LMDB {@linkcode ./node_store.ts | NodeStore} implements it for
 * the node, `MemoryNodeStore` for the simulation; nothing here loads LMDB, so code that depends
 * only on this module runs without it. The key layout is described in `node_store.ts`.
 *
 * @module
 */
import type { KvPair, KvSpace } from "./kv_space.ts";

const encoder = new TextEncoder();

/** Key prefixes of the environment. */
export const PREFIX = {
  identity: 0x00,
  replica: 0x01,
  log: 0x02,
  raftState: 0x03,
  /** A replica's spaces of generation 0 (its first): `04 peer space key`. */
  space: 0x04,
  /** A replica's spaces of a later generation (an installed snapshot): `05 peer gen space key`. */
  generationSpace: 0x05,
} as const;

/** The state-machine spaces of a replica. */
export const SPACE = { data: 0, sessions: 1, meta: 2 } as const;
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

/**
 * The key prefix of every space of generation `generation` of replica `peerId`. A replica starts
 * at generation 0; each snapshot it receives is staged into a new generation, which the install
 * makes current (the old one is deleted in the background).
 */
export function generationPrefix(peerId: number, generation: number): Uint8Array {
  return generation === 0
    ? makeKey(PREFIX.space, [peerId])
    : makeKey(PREFIX.generationSpace, [peerId, generation]);
}

/** The key prefix of one space of one generation of a replica. */
export function spacePrefix(peerId: number, generation: number, space: number): Uint8Array {
  const prefix = generationPrefix(peerId, generation);
  const key = new Uint8Array(prefix.length + 1);
  key.set(prefix, 0);
  key[prefix.length] = space;
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

/** Reads of ordered byte keys: a node's storage, or a read view of it. */
export interface ReadableStore {
  /**
   * The longest key the storage takes, in bytes (LMDB's limit: 1,978 with 4 KiB pages). Longer
   * client keys are stored by `PrefixSpace` in a form of their own.
   */
  readonly keyBytesMax: number;
  /** Reads one value. */
  get(key: Uint8Array): Uint8Array | undefined;
  /** Pairs with `start <= key < end`, ascending. */
  range(start: Uint8Array, end: Uint8Array): Iterable<KvPair>;
}

/**
 * A consistent view of the storage as it was committed when the view was opened, unchanged by
 * later writes, until {@linkcode ReadView.close} (an LMDB read transaction).
 */
export interface ReadView extends ReadableStore {
  close(): void;
}

/**
 * What the driver, replicas and identity code need of a node's storage: ordered byte keys, reads
 * of the latest committed state (or, inside {@linkcode write}, of the running transaction), and
 * atomic write transactions that resolve only once durable. Implemented by {@linkcode NodeStore}
 * (LMDB) and `MemoryNodeStore` (in memory, for the simulation).
 */
export interface NodeStorage extends ReadableStore {
  /**
   * A view of the last committed state (call it outside {@linkcode write}); it must be closed.
   */
  readView(): ReadView;
  /** Inside {@linkcode write}: stores `value` at `key`. */
  put(key: Uint8Array, value: Uint8Array): void;
  /** Inside {@linkcode write}: removes `key`; reports whether it was there. */
  remove(key: Uint8Array): boolean;
  /**
   * Inside {@linkcode write}: removes the keys in `[start, end)`, the first `limit` of them when
   * given (so a large range can be removed over several transactions); returns how many.
   */
  removeRange(start: Uint8Array, end: Uint8Array, limit?: number): number;
  /**
   * Runs `work` as one atomic transaction (if it throws, none of its writes apply; its reads see
   * its own writes) and resolves once the transaction is durable.
   *
   * With `durable: false` the transaction runs and commits during the call, on the calling
   * thread (after any batch the store's own writer thread is committing), and the promise
   * resolves as soon as it is committed (visible to reads). A crash of the process loses nothing,
   * but a crash of the machine may undo it (never tear it) until a later transaction that writes
   * has synced, which makes every earlier one durable too. Only for writes that can be redone from
   * durable state: applying committed log entries.
   */
  write<T>(work: () => T, options?: WriteOptions): Promise<T>;
  /** Identity records: a small string value under a name. */
  getIdentity(name: string): string | undefined;
  /** Inside {@linkcode write}: sets an identity record. */
  putIdentity(name: string, value: string): void;
  /** A {@linkcode KvSpace} over one state-machine space of one generation of a replica. */
  space(peerId: number, space: number, generation?: number): KvSpace;
}

/** How {@linkcode NodeStorage.write} commits. */
export interface WriteOptions {
  /** Whether the promise waits for the sync to disk (default true). See `write`. */
  readonly durable?: boolean;
  /**
   * Whether a durable write runs and commits during the call, on the calling thread, which waits
   * for the sync (default false: later, on LMDB's writer thread, while the caller goes on).
   * A write with `durable: false` always runs now.
   */
  readonly now?: boolean;
  /**
   * Called inside the transaction right after `work` returns. When it returns a promise, a write
   * with `durable: false` commits (and flushes) only once that promise settles: the driver lets the
   * answers `work` gave leave the process first (see `NodeStore`). Writes started meanwhile wait
   * for that commit. Durable writes ignore it: nothing may leave before their sync that depends on
   * it.
   */
  readonly hold?: () => Promise<void> | undefined;
}

/** The identity record key of `name`. */
export function identityKey(name: string): Uint8Array {
  return makeKey(PREFIX.identity, [], encoder.encode(name));
}
