/**
 * {@linkcode SimRandom}: every random choice of one simulation run, drawn from
 * one seeded generator (mulberry32 from the Raft core), so a seed replays the
 * whole run.
 *
 * @module
 */

import { mulberry32, type Prng } from "@tinykv/raft";

/** A seeded source of the draws the simulation makes. */
export class SimRandom {
  readonly #prng: Prng;

  /** Creates a generator for `seed` (any 32-bit integer). */
  constructor(seed: number) {
    this.#prng = mulberry32(seed);
  }

  /** A number in `[0, 1)`. */
  next(): number {
    return this.#prng();
  }

  /** An integer in `[0, bound)`. */
  int(bound: number): number {
    return Math.floor(this.#prng() * bound);
  }

  /** An integer in `[low, high]`. */
  range(low: number, high: number): number {
    return low + Math.floor(this.#prng() * (high - low + 1));
  }

  /** A number in `[low, high)`. */
  uniform(low: number, high: number): number {
    return low + this.#prng() * (high - low);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.#prng() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("Cannot pick from an empty array");
    return items[Math.floor(this.#prng() * items.length)];
  }

  /** The items in a seeded order (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }

  /** A fresh 32-bit seed for a derived generator (e.g. a node's election jitter). */
  seed(): number {
    return Math.floor(this.#prng() * 0x100000000);
  }
}
