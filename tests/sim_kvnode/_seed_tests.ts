/**
 * What the kvnode simulation's tests share: the command that replays a seed,
 * and the failures of a run, each with that command.
 *
 * @module
 */

import type { SimResult } from "./simulation.ts";

/** The one command that replays `seed` of the kvnode simulation with its trace. */
export function replayCommand(seed: number): string {
  return `deno run tests/sim_kvnode/main.ts --seed ${seed} --trace`;
}

/** One line per failed seed of `results`, with its replay command. */
export function failures(results: readonly SimResult[]): string[] {
  return results.filter((r) => r.kind === "failed").map((r) =>
    `seed ${r.seed}: ${r.failure}\n  replay: ${replayCommand(r.seed)}`
  );
}
