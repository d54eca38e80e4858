// The CI simulation run, second half: seeds 101..200 (see sim_seeds_a_test.ts).
import { registerSeedTests, seedRange } from "./_seed_tests.ts";

registerSeedTests("CI", seedRange(101, 100));
