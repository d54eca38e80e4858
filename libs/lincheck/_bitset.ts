// A fixed-size set of small integers (operation indices) backed by a Uint32Array, with a hash
// that is kept up to date on every change (Zobrist hashing: the hash is the XOR of a scrambled
// value per member), so the search can look up its cache in O(1) per step instead of hashing
// all the words.

import { assert } from "./_assert.ts";
import { mixHash } from "./hash.ts";

const WORD_BITS = 32;
const MEMBER_SEED = 0x2545f491;

function memberHash(index: number): number {
  return mixHash(Math.imul(index + 1, MEMBER_SEED));
}

const FULL_WORD = 0xffffffff;

/** A compact, immutable copy of a {@linkcode Bitset}'s members. */
export interface BitsetSnapshot {
  /** How many leading words equal `leadFill`. */
  readonly lead: number;
  /** All ones or all zeros. */
  readonly leadFill: number;
  /** The words after the leading run; the words after these are zero. */
  readonly rest: readonly number[];
}

const EMPTY_SNAPSHOT: BitsetSnapshot = Object.freeze({ lead: 0, leadFill: 0, rest: [] });

function wordOf(snapshot: BitsetSnapshot, index: number): number {
  if (index < snapshot.lead) return snapshot.leadFill;
  const i = index - snapshot.lead;
  return i < snapshot.rest.length ? snapshot.rest[i] : 0;
}

/** A set of integers in `[0, size)`. */
export class Bitset {
  readonly #size: number;
  readonly #words: Uint32Array;
  #hash = 0;
  #count = 0;

  constructor(size: number) {
    assert(Number.isSafeInteger(size) && size >= 0, `Cannot create a bitset of size ${size}`);
    this.#size = size;
    this.#words = new Uint32Array(Math.ceil(size / WORD_BITS));
  }

  /** The number of members. */
  get count(): number {
    return this.#count;
  }

  /** A hash of the members; equal sets have equal hashes. */
  get hash(): number {
    return this.#hash;
  }

  has(index: number): boolean {
    this.#checkIndex(index);
    return (this.#words[index >>> 5] & (1 << (index & 31))) !== 0;
  }

  add(index: number): void {
    assert(!this.has(index), `Cannot add ${index} to a bitset: it is already a member`);
    this.#words[index >>> 5] |= 1 << (index & 31);
    this.#hash = (this.#hash ^ memberHash(index)) >>> 0;
    this.#count++;
  }

  delete(index: number): void {
    assert(this.has(index), `Cannot delete ${index} from a bitset: it is not a member`);
    this.#words[index >>> 5] &= ~(1 << (index & 31));
    this.#hash = (this.#hash ^ memberHash(index)) >>> 0;
    this.#count--;
  }

  /**
   * A compact copy of the members, to keep as a cache key: the leading run of all-ones or
   * all-zeros words is kept as a count, trailing zero words are dropped. The search numbers
   * operations by invocation, so its sets are mostly a full prefix plus a few members, and a
   * snapshot takes a few words however long the history is.
   */
  snapshot(): BitsetSnapshot {
    const words = this.#words;
    const leadFill = words.length > 0 && words[0] === FULL_WORD ? FULL_WORD : 0;
    let lead = 0;
    while (lead < words.length && words[lead] === leadFill) lead++;
    let end = words.length;
    while (end > lead && words[end - 1] === 0) end--;
    if (end === lead && (leadFill === 0 || lead === 0)) return EMPTY_SNAPSHOT;
    // A plain array: far cheaper to allocate than a typed array for a word or two.
    const rest: number[] = [];
    for (let i = lead; i < end; i++) rest.push(words[i]);
    return { lead, leadFill, rest };
  }

  /** Whether the members are exactly those of `snapshot`. */
  equalsSnapshot(snapshot: BitsetSnapshot): boolean {
    const own = this.#words;
    for (let i = 0; i < own.length; i++) {
      if (own[i] !== wordOf(snapshot, i)) return false;
    }
    return true;
  }

  /** Whether every member of `snapshot` is a member. */
  includesSnapshot(snapshot: BitsetSnapshot): boolean {
    const own = this.#words;
    for (let i = 0; i < own.length; i++) {
      if ((wordOf(snapshot, i) & ~own[i]) !== 0) return false;
    }
    return true;
  }

  /** Whether every member is also a member of `snapshot`. */
  isSubsetOfSnapshot(snapshot: BitsetSnapshot): boolean {
    const own = this.#words;
    for (let i = 0; i < own.length; i++) {
      if ((own[i] & ~wordOf(snapshot, i)) !== 0) return false;
    }
    return true;
  }

  #checkIndex(index: number): void {
    assert(
      Number.isSafeInteger(index) && index >= 0 && index < this.#size,
      `Cannot use index ${index} in a bitset: it must be in [0, ${this.#size})`,
    );
  }
}
