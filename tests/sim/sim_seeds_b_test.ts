// The CI simulation run, second half: seeds 201..400 (see sim_seeds_a_test.ts).
import { registerSeedTests, seedRange } from "./_seed_tests.ts";

registerSeedTests("CI", seedRange(201, 200));
