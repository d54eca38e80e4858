/**
 * The run's one source of randomness: a {@linkcode mulberry32} stream from the seed.
 *
 * @module
 */
import { mulberry32, type Prng } from "@tinykv/raft";

/** Seeded helpers over one mulberry32 stream. */
export class SimRandom {
  readonly #prng: Prng;

  constructor(seed: number) {
    this.#prng = mulberry32(seed);
  }

  /** A float in [0, 1). */
  next(): number {
    return this.#prng();
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#prng() * n);
  }

  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.#prng() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("Cannot pick from an empty array");
    return items[this.int(items.length)];
  }

  /** A 32-bit seed for a component (a driver's election jitter). */
  seed(): number {
    return Math.floor(this.#prng() * 2 ** 32);
  }

  /** The items in a seeded order. */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}
