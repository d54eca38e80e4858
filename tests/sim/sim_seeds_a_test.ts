// The CI simulation run, first half: the regression seeds, then seeds 1..100.
// Each seed runs a whole Raft group under faults and checks safety, liveness
// and linearizability (see simulation.ts); `sim_seeds_b_test.ts` runs the
// other half in parallel.
import { REGRESSION_SEEDS } from "./regression.ts";
import { registerSeedTests, seedRange } from "./_seed_tests.ts";

if (REGRESSION_SEEDS.length > 0) {
  registerSeedTests("regression", REGRESSION_SEEDS.map((r) => r.seed));
}
registerSeedTests("CI", seedRange(1, 100));
