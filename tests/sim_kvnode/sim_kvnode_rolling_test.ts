// The kvnode simulation's rolling range: besides the fixed seeds of sim_kvnode_test.ts,
// ROLLING_SEEDS seeds that move on every UTC day (tests/sim/rolling_seeds.ts explains the choice),
// so CI keeps finding seeds nobody ran. The range and its replay commands are printed before the
// tests; TINYKV_SIM_KVNODE_START=S runs the range from S instead.
import assert from "node:assert/strict";
import { rollingEnd, rollingRange } from "../sim/rolling_seeds.ts";
import { runSimulation, type SimResult } from "./simulation.ts";
import { failures } from "./_seed_tests.ts";

/** Seeds per run: about 40 s on one core of the CI machine (0.27 s a seed). */
const ROLLING_SEEDS = 150;

/** Seeds per `Deno.test` case, so a failure points at a small range. */
const SEEDS_PER_CASE = 50;

const range = rollingRange({ variable: "TINYKV_SIM_KVNODE_START", count: ROLLING_SEEDS });
console.log(
  `kvnode simulation: rolling seeds ${range.start}..${rollingEnd(range)} (from ${range.source})\n` +
    `  replay the range: TINYKV_SIM_KVNODE_START=${range.start} deno test --allow-all ` +
    `tests/sim_kvnode/sim_kvnode_rolling_test.ts\n` +
    `  or: deno run tests/sim_kvnode/main.ts --from ${range.start} --seeds ${range.count}\n` +
    `  a failing seed: deno run tests/sim_kvnode/main.ts --seed N --trace (each failure prints its own)`,
);

for (let first = range.start; first <= rollingEnd(range); first += SEEDS_PER_CASE) {
  const last = Math.min(first + SEEDS_PER_CASE - 1, rollingEnd(range));
  Deno.test(`kvnode simulation: rolling seeds ${first} to ${last} keep every check`, async () => {
    const results: SimResult[] = [];
    for (let seed = first; seed <= last; seed++) results.push(await runSimulation({ seed }));
    assert.deepEqual(failures(results), []);
  });
}
