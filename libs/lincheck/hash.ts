/**
 * Small 32-bit hash helpers for writing a model's `hashState`. The checker uses these hashes
 * only to find candidate cache entries; it always confirms a hit with the model's
 * `equalStates`, so a collision costs time, never correctness.
 *
 * @module
 */

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Hashes a string (its UTF-16 code units) with FNV-1a to an unsigned 32-bit integer. */
export function hashString(text: string): number {
  let hash = FNV_OFFSET_BASIS;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

/**
 * Scrambles a 32-bit integer so that nearby inputs give unrelated outputs (the MurmurHash3
 * finalizer). Returns an unsigned 32-bit integer.
 */
export function mixHash(value: number): number {
  let x = value | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * Combines a running hash with one more value, order-sensitively: `combineHash(combineHash(s, a), b)`
 * differs from `combineHash(combineHash(s, b), a)`. Returns an unsigned 32-bit integer.
 */
export function combineHash(seed: number, value: number): number {
  return mixHash(Math.imul(seed ^ 0x9e3779b9, 31) + (value | 0));
}
