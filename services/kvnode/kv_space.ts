/**
 * {@linkcode KvSpace}: the ordered, synchronous key-value view the state machine works on. A
 * kvnode backs it with one key prefix of its LMDB environment inside the write transaction of a
 * loop turn; tests and the simulation back it with {@linkcode MemoryKvSpace}.
 *
 * @module
 */
import { compareBytes } from "@tinykv/shard";

/** Byte order of keys, re-exported for the kvnode's callers. */
export { compareBytes };

/** One key and its value. */
export interface KvPair {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

/**
 * An ordered map from byte keys to byte values, compared bytewise.
 *
 * Contract: calls are synchronous; a write is visible to every later read through the same space;
 * `scan` iterates a consistent view in ascending key order and must not be interleaved with
 * writes to the same space.
 */
export interface KvSpace {
  get(key: Uint8Array): Uint8Array | undefined;
  put(key: Uint8Array, value: Uint8Array): void;
  /** Removes `key`; reports whether it was there. */
  delete(key: Uint8Array): boolean;
  /** Pairs with `start <= key < end` (no upper bound when `end` is undefined), ascending. */
  scan(start: Uint8Array, end: Uint8Array | undefined): Iterable<KvPair>;
  /** Removes every pair. */
  clear(): void;
}

/** The keys of `space` and their bytes (keys and values), counted by a scan of all of it. */
export function countPairs(space: KvSpace): { keys: number; bytes: number } {
  let keys = 0;
  let bytes = 0;
  for (const { key, value } of space.scan(new Uint8Array(0), undefined)) {
    keys++;
    bytes += key.length + value.length;
  }
  return { keys, bytes };
}

/** An in-memory {@linkcode KvSpace} on a sorted array, for tests and the simulation. */
export class MemoryKvSpace implements KvSpace {
  // Invariant: #keys is strictly ascending and #values[i] belongs to #keys[i].
  #keys: Uint8Array[] = [];
  #values: Uint8Array[] = [];

  /** The number of pairs. */
  get size(): number {
    return this.#keys.length;
  }

  #find(key: Uint8Array): { found: boolean; at: number } {
    let lo = 0;
    let hi = this.#keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const order = compareBytes(this.#keys[mid], key);
      if (order === 0) return { found: true, at: mid };
      if (order < 0) lo = mid + 1;
      else hi = mid;
    }
    return { found: false, at: lo };
  }

  get(key: Uint8Array): Uint8Array | undefined {
    const { found, at } = this.#find(key);
    return found ? this.#values[at] : undefined;
  }

  put(key: Uint8Array, value: Uint8Array): void {
    const { found, at } = this.#find(key);
    if (found) {
      this.#values[at] = value.slice();
      return;
    }
    this.#keys.splice(at, 0, key.slice());
    this.#values.splice(at, 0, value.slice());
  }

  delete(key: Uint8Array): boolean {
    const { found, at } = this.#find(key);
    if (!found) return false;
    this.#keys.splice(at, 1);
    this.#values.splice(at, 1);
    return true;
  }

  *scan(start: Uint8Array, end: Uint8Array | undefined): Iterable<KvPair> {
    for (let i = this.#find(start).at; i < this.#keys.length; i++) {
      const key = this.#keys[i];
      if (end !== undefined && compareBytes(key, end) >= 0) return;
      yield { key, value: this.#values[i] };
    }
  }

  clear(): void {
    this.#keys = [];
    this.#values = [];
  }
}
