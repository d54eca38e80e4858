/**
 * The regression seeds: seeds that once failed and were fixed, kept in
 * `regression_seeds.json` and always run first (by `main.ts` and by CI).
 *
 * @module
 */

import regression from "./regression_seeds.json" with { type: "json" };

/** One regression seed and what it once caught. */
export interface RegressionSeed {
  readonly seed: number;
  readonly note: string;
}

/** The regression seeds, in file order. */
export const REGRESSION_SEEDS: readonly RegressionSeed[] = regression.seeds as RegressionSeed[];
