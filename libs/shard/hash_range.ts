/**
 * Ranges of the 32-bit hash space, and their even split for a new cluster.
 *
 * @module
 */

/** The size of the hash space: hashes are integers in `[0, HASH_SPACE)`. */
export const HASH_SPACE = 2 ** 32;

/** The largest number of shards a map may hold, and so the largest {@linkcode splitEvenly}. */
export const SHARDS_MAX = 4096;

/**
 * A half-open range `[lo, hi)` of hashes, with `0 <= lo < hi <= HASH_SPACE`. `hi` may equal
 * `2^32`: the numbers are plain (not wrapped to 32 bits), so the last range needs no special case.
 */
export interface HashRange {
  /** The first hash in the range. */
  readonly lo: number;
  /** One past the last hash in the range. */
  readonly hi: number;
}

/** Reports whether `range` is well formed: integers with `0 <= lo < hi <= HASH_SPACE`. */
export function isHashRange(range: HashRange): boolean {
  return Number.isSafeInteger(range.lo) && Number.isSafeInteger(range.hi) &&
    range.lo >= 0 && range.lo < range.hi && range.hi <= HASH_SPACE;
}

/** Reports whether `hash` lies in `range`. */
export function rangeContains(range: HashRange, hash: number): boolean {
  return range.lo <= hash && hash < range.hi;
}

/**
 * Splits the hash space into `numShards` contiguous ranges of nearly equal size (sizes differ by
 * at most one), in ascending order, covering `[0, 2^32)` with no gap and no overlap.
 *
 * @example Four shards
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitEvenly } from "./hash_range.ts";
 *
 * const ranges = splitEvenly(4);
 * assert(ranges[1].lo === 0x40000000 && ranges[3].hi === 2 ** 32);
 * ```
 *
 * @throws {RangeError} If `numShards` is not an integer in `[1, SHARDS_MAX]`.
 */
export function splitEvenly(numShards: number): HashRange[] {
  if (!Number.isSafeInteger(numShards) || numShards < 1 || numShards > SHARDS_MAX) {
    throw new RangeError(
      `Cannot split the hash space into ${numShards} shards: expected an integer from 1 to ` +
        `${SHARDS_MAX} (SHARDS_MAX)`,
    );
  }
  const ranges: HashRange[] = [];
  // i * 2^32 stays below 2^53 because numShards <= SHARDS_MAX, so the product is exact. The
  // quotient is off by at most 2^-21 after rounding, while a non-integer quotient is at least
  // 1/SHARDS_MAX = 2^-12 from the next integer, so the floor is the exact one.
  const boundary = (i: number) => Math.floor((i * HASH_SPACE) / numShards);
  for (let i = 0; i < numShards; i++) {
    ranges.push({ lo: boundary(i), hi: boundary(i + 1) });
  }
  return ranges;
}
