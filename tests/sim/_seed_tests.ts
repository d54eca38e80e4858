/**
 * Registers `Deno.test` cases that run ranges of simulation seeds and fail
 * with the replay command of every failing seed. CI runs the seeds split over
 * two test files, which `deno test --parallel` runs on two cores.
 *
 * @module
 */

import { replayCommand } from "./main.ts";
import { runSeed } from "./run_seed.ts";

/** Seeds per `Deno.test` case, so a failure points at a small range. */
const SEEDS_PER_CASE = 40;

/** Registers one test case per chunk of `seeds`, named after `label`. */
export function registerSeedTests(label: string, seeds: readonly number[]): void {
  for (let i = 0; i < seeds.length; i += SEEDS_PER_CASE) {
    const chunk = seeds.slice(i, i + SEEDS_PER_CASE);
    Deno.test(`simulation: ${label} seeds ${chunk[0]}..${chunk[chunk.length - 1]} pass`, async () => {
      const failures: string[] = [];
      for (const seed of chunk) {
        const result = await runSeed(seed);
        if (!result.ok) {
          failures.push(
            `seed ${seed}: ${result.check} (${result.kind}): ${result.message}\n` +
              `  replay: ${replayCommand(seed)}`,
          );
        }
      }
      if (failures.length > 0) {
        throw new Error(`${failures.length} seed(s) failed:\n${failures.join("\n")}`);
      }
    });
  }
}

/** The seeds `[start, start + count)`. */
export function seedRange(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}
