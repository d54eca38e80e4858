/**
 * A small seeded pseudo-random generator (mulberry32) with the shape of
 * `Math.random`, so the Raft core and tests can be replayed from one seed.
 *
 * @module
 */

/** A source of uniformly distributed numbers in `[0, 1)`, shaped like `Math.random`. */
export type Prng = () => number;

/**
 * Returns a deterministic generator seeded with `seed` (any 32-bit integer).
 * Not cryptographic; period 2^32.
 *
 * @example Same seed, same sequence
 * ```ts
 * import { mulberry32 } from "./prng.ts";
 * const a = mulberry32(42);
 * const b = mulberry32(42);
 * if (a() !== b()) throw new Error("not deterministic");
 * ```
 */
export function mulberry32(seed: number): Prng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns an integer in `[0, bound)` drawn from `prng`. */
export function randomInt(prng: Prng, bound: number): number {
  return Math.floor(prng() * bound);
}
