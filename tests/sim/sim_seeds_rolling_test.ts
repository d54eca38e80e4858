// The CI simulation run's rolling range: besides the fixed seeds of sim_seeds_a_test.ts and
// sim_seeds_b_test.ts, ROLLING_SEEDS seeds that move on every UTC day (rolling_seeds.ts explains
// the choice), so CI keeps finding seeds nobody ran. The range and its replay commands are printed
// before the tests; TINYKV_SIM_START=S runs the range from S instead.
import { registerSeedTests, seedRange } from "./_seed_tests.ts";
import { rollingEnd, rollingRange } from "./rolling_seeds.ts";

/** Seeds per run: about 85 s of one core of the CI machine (0.85 s a seed). */
const ROLLING_SEEDS = 100;

const range = rollingRange({ variable: "TINYKV_SIM_START", count: ROLLING_SEEDS });
console.log(
  `simulation: rolling seeds ${range.start}..${rollingEnd(range)} (from ${range.source})\n` +
    `  replay the range: TINYKV_SIM_START=${range.start} deno test --allow-all ` +
    `tests/sim/sim_seeds_rolling_test.ts\n` +
    `  or: deno task sim --no-regression --start ${range.start} --seeds ${range.count}\n` +
    `  a failing seed: deno task sim --seed N --trace (each failure prints its own)`,
);
registerSeedTests("rolling", seedRange(range.start, range.count));
