/**
 * {@linkcode PrefixSpace}: a {@linkcode KvSpace} over the keys of a {@linkcode NodeStorage} that
 * start with one prefix — a replica's data, sessions or meta — that takes every key the product
 * allows, however short the storage's own key limit.
 *
 * LMDB refuses keys longer than its limit (1,978 bytes with 4 KiB pages), and client keys may have
 * 4 KiB. So a key is stored in one of two ways:
 *
 * - A **short** key (at most `head` bytes, where `head` is the storage's limit less the prefix and
 *   {@linkcode SLOT_BYTES}) is stored as `prefix + key`, its value as it is.
 * - A **long** key is stored as `prefix + key[0, head) + slot`, where `slot` is 8 bytes, and its
 *   value as `[u16 tail length][tail = key[head, …)][value]`. Every long key with the same first
 *   `head` bytes is in one *group*; its home slot is the first 8 bytes of the SHA-256 of its tail,
 *   and collisions take the next free slot (linear probing, with backward-shift deletion so that
 *   a lookup stops at the first empty slot).
 *
 * Order: a long key is greater than every short key that is a prefix of it and smaller than every
 * short key greater than it, and groups sort by their heads, so the storage order is the byte order
 * of the keys except within a group, whose keys sort by slot. A scan therefore reads short keys as
 * they come and sorts each group it meets, {@linkcode GROUP_PASS_KEYS} keys per pass, so memory
 * stays bounded however many keys share a head.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { compareBytes } from "@tinykv/shard";
import type { KvPair, KvSpace } from "./kv_space.ts";
import type { NodeStorage, ReadableStore } from "./node_storage.ts";
import { prefixEnd } from "./node_storage.ts";

/** Bytes of the slot number that follows a long key's head. */
export const SLOT_BYTES = 8;
/** Keys of one group a scan sorts at a time. */
export const GROUP_PASS_KEYS = 256;
/** The shortest head a space accepts (so that sessions and meta keys are always short). */
const HEAD_BYTES_MIN = 16;
const TAIL_LENGTH_BYTES = 2;
const SLOTS = 1n << 64n;

/** Picks the home slot of a long key's tail (SHA-256 unless a test injects a worse hash). */
export type SlotHash = (tail: Uint8Array) => bigint;

/** The default {@linkcode SlotHash}: the first 8 bytes of the tail's SHA-256. */
export function sha256Slot(tail: Uint8Array): bigint {
  const digest = createHash("sha256").update(tail).digest();
  return new DataView(digest.buffer, digest.byteOffset, 8).getBigUint64(0);
}

/** A long key's stored record, found at `slot` of its group. */
interface Found {
  readonly slot: bigint;
  readonly value: Uint8Array;
}

/**
 * See the module docs. Over a read view (a {@linkcode ReadableStore} without writes) it serves
 * reads only; writing through it throws.
 */
export class PrefixSpace implements KvSpace {
  readonly #store: ReadableStore & Partial<Pick<NodeStorage, "put" | "remove" | "removeRange">>;
  readonly #prefix: Uint8Array;
  readonly #end: Uint8Array;
  readonly #head: number;
  readonly #slotHash: SlotHash;
  readonly #passKeys: number;

  /**
   * A space over the keys of `store` under `prefix`. Tests may inject `slotHash` (to force
   * collisions) and `groupPassKeys` (default {@linkcode GROUP_PASS_KEYS}).
   */
  constructor(
    store: NodeStorage | ReadableStore,
    prefix: Uint8Array,
    options: { slotHash?: SlotHash; groupPassKeys?: number } = {},
  ) {
    this.#store = store;
    this.#prefix = prefix;
    this.#end = prefixEnd(prefix);
    this.#head = store.keyBytesMax - prefix.length - SLOT_BYTES;
    if (this.#head < HEAD_BYTES_MIN) {
      throw new RangeError(
        `Cannot keep keys under a ${prefix.length}-byte prefix: the storage's key limit ` +
          `${store.keyBytesMax} leaves ${this.#head} bytes (at least ${HEAD_BYTES_MIN} needed)`,
      );
    }
    this.#slotHash = options.slotHash ?? sha256Slot;
    this.#passKeys = options.groupPassKeys ?? GROUP_PASS_KEYS;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    if (key.length <= this.#head) return this.#store.get(this.#stored(key));
    return this.#findLong(key).found?.value;
  }

  put(key: Uint8Array, value: Uint8Array): void {
    const store = this.#writable();
    if (key.length <= this.#head) return store.put(this.#stored(key), value);
    const { found, free } = this.#findLong(key);
    const slot = found?.slot ?? free;
    store.put(this.#slotKey(key, slot), this.#encodeLong(key, value));
  }

  delete(key: Uint8Array): boolean {
    const store = this.#writable();
    if (key.length <= this.#head) return store.remove(this.#stored(key));
    const { found } = this.#findLong(key);
    if (found === undefined) return false;
    store.remove(this.#slotKey(key, found.slot));
    this.#closeGap(key.subarray(0, this.#head), found.slot);
    return true;
  }

  #writable(): Pick<NodeStorage, "put" | "remove" | "removeRange"> {
    const { put, remove, removeRange } = this.#store;
    if (put === undefined || remove === undefined || removeRange === undefined) {
      throw new TypeError("Cannot write through a PrefixSpace over a read view");
    }
    return this.#store as Pick<NodeStorage, "put" | "remove" | "removeRange">;
  }

  *scan(start: Uint8Array, end: Uint8Array | undefined): Iterable<KvPair> {
    const stop = end === undefined
      ? this.#end
      : end.length <= this.#head
      ? this.#stored(end)
      : prefixEnd(this.#stored(end.subarray(0, this.#head)));
    let from = this.#stored(start.subarray(0, Math.min(start.length, this.#head)));
    const inRange = (key: Uint8Array) =>
      compareBytes(key, start) >= 0 && (end === undefined || compareBytes(key, end) < 0);
    while (compareBytes(from, stop) < 0) {
      let group: Uint8Array | undefined;
      for (const pair of this.#store.range(from, stop)) {
        const key = pair.key.subarray(this.#prefix.length);
        if (key.length > this.#head) {
          group = key.slice(0, this.#head);
          break;
        }
        if (inRange(key)) yield { key, value: pair.value };
      }
      if (group === undefined) return;
      yield* this.#scanGroup(group, inRange);
      from = prefixEnd(this.#stored(group));
    }
  }

  clear(): void {
    this.#writable().removeRange(this.#prefix, this.#end);
  }

  /** A group's keys in byte order, `#passKeys` per pass over the group. */
  *#scanGroup(head: Uint8Array, inRange: (key: Uint8Array) => boolean): Iterable<KvPair> {
    const start = this.#stored(head);
    const stop = prefixEnd(start);
    let after: Uint8Array | undefined;
    for (;;) {
      // The smallest keys above `after`, ascending, with where each is stored.
      const pass: Array<{ key: Uint8Array; stored: Uint8Array }> = [];
      for (const pair of this.#store.range(start, stop)) {
        const key = this.#decodeKey(head, pair.value);
        if (!inRange(key) || (after !== undefined && compareBytes(key, after) <= 0)) continue;
        if (pass.length === this.#passKeys && compareBytes(key, pass[pass.length - 1].key) > 0) {
          continue;
        }
        pass.splice(insertionPoint(pass, key), 0, { key, stored: pair.key });
        if (pass.length > this.#passKeys) pass.pop();
      }
      for (const { key, stored } of pass) {
        const record = this.#store.get(stored);
        if (record !== undefined) yield { key, value: this.#decodeValue(record) };
      }
      if (pass.length < this.#passKeys) return;
      after = pass[pass.length - 1].key;
    }
  }

  /** Probes `key`'s group from its home slot: the slot holding it, or the first free one. */
  #findLong(key: Uint8Array): { found?: Found; free: bigint } {
    const tail = key.subarray(this.#head);
    let slot = this.#slotHash(tail);
    for (;;) {
      const record = this.#store.get(this.#slotKey(key, slot));
      if (record === undefined) return { free: slot };
      if (compareBytes(this.#tailOf(record), tail) === 0) {
        return { found: { slot, value: this.#decodeValue(record) }, free: slot };
      }
      slot = (slot + 1n) % SLOTS;
    }
  }

  /**
   * After `slot` of the group under `head` was emptied, moves later records of its probe run back
   * where a lookup starting at their home slot would otherwise stop early.
   */
  #closeGap(head: Uint8Array, emptied: bigint): void {
    let gap = emptied;
    for (let slot = (gap + 1n) % SLOTS;; slot = (slot + 1n) % SLOTS) {
      const key = this.#slotKey(head, slot);
      const record = this.#store.get(key);
      if (record === undefined) return;
      const home = this.#slotHash(this.#tailOf(record));
      // The record stays when its home lies cyclically in (gap, slot].
      if ((slot - home + SLOTS) % SLOTS < (slot - gap + SLOTS) % SLOTS) continue;
      this.#writable().put(this.#slotKey(head, gap), record);
      this.#writable().remove(key);
      gap = slot;
    }
  }

  #stored(key: Uint8Array): Uint8Array {
    const full = new Uint8Array(this.#prefix.length + key.length);
    full.set(this.#prefix, 0);
    full.set(key, this.#prefix.length);
    return full;
  }

  /** The stored key of `slot` in the group of `key` (only its first `head` bytes count). */
  #slotKey(key: Uint8Array, slot: bigint): Uint8Array {
    const full = new Uint8Array(this.#prefix.length + this.#head + SLOT_BYTES);
    full.set(this.#prefix, 0);
    full.set(key.subarray(0, this.#head), this.#prefix.length);
    new DataView(full.buffer).setBigUint64(this.#prefix.length + this.#head, slot);
    return full;
  }

  #encodeLong(key: Uint8Array, value: Uint8Array): Uint8Array {
    const tail = key.subarray(this.#head);
    if (tail.length > 0xffff) {
      throw new RangeError(`Cannot store a key of ${key.length} bytes: it is far over any limit`);
    }
    const record = new Uint8Array(TAIL_LENGTH_BYTES + tail.length + value.length);
    new DataView(record.buffer).setUint16(0, tail.length);
    record.set(tail, TAIL_LENGTH_BYTES);
    record.set(value, TAIL_LENGTH_BYTES + tail.length);
    return record;
  }

  #tailOf(record: Uint8Array): Uint8Array {
    const length = new DataView(record.buffer, record.byteOffset).getUint16(0);
    return record.subarray(TAIL_LENGTH_BYTES, TAIL_LENGTH_BYTES + length);
  }

  #decodeValue(record: Uint8Array): Uint8Array {
    return record.subarray(TAIL_LENGTH_BYTES + this.#tailOf(record).length);
  }

  #decodeKey(head: Uint8Array, record: Uint8Array): Uint8Array {
    const tail = this.#tailOf(record);
    const key = new Uint8Array(head.length + tail.length);
    key.set(head, 0);
    key.set(tail, head.length);
    return key;
  }
}

function insertionPoint(pass: ReadonlyArray<{ key: Uint8Array }>, key: Uint8Array): number {
  let lo = 0;
  let hi = pass.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareBytes(pass[mid].key, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
