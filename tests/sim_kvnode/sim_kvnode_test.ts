// Runs the whole-kvnode simulation (drivers, replicas and state machines over MemoryNodeStore, a
// seeded faulty network, crashes, moves, transfers, clients checked for linearizability) over a
// range of seeds and the regression seeds (sim_kvnode_rolling_test.ts runs a range that moves
// every day), and checks that one seed replays to the same trace.
import assert from "node:assert/strict";
import { runSimulation, type SimResult } from "./simulation.ts";
import regression from "./regression_seeds.json" with { type: "json" };
import { failures } from "./_seed_tests.ts";

/** Seeds 1..SEEDS run in CI; more with `deno run tests/sim_kvnode/main.ts --seeds N`. */
const SEEDS = 80;

Deno.test(`kvnode simulation: seeds 1 to ${SEEDS} keep every check`, async () => {
  const results: SimResult[] = [];
  for (let seed = 1; seed <= SEEDS; seed++) results.push(await runSimulation({ seed }));
  assert.deepEqual(failures(results), []);
  // The runs exercise what they claim to: crashes mid-turn, moves, group commit across groups.
  const sum = (pick: (r: SimResult) => number) => results.reduce((n, r) => n + pick(r), 0);
  assert.ok(sum((r) => r.stats.crashesMidTurn) > 0, "no crash in the middle of a turn");
  assert.ok(sum((r) => r.stats.movesDone) > 0, "no replica move completed");
  assert.ok(sum((r) => r.stats.snapshots) > 0, "no snapshot was delivered");
  assert.ok(
    results.some((r) => r.stats.groupsPerTransactionMax >= 2),
    "no turn committed 2+ groups",
  );
  assert.ok(sum((r) => r.stats.opsUnknown) > 0, "no operation ended unknown");
  assert.ok(sum((r) => r.stats.quiescedReplicaTicks) > 0, "no group quiesced");
});

Deno.test("kvnode simulation: the regression seeds keep every check", async () => {
  const results: SimResult[] = [];
  for (const { seed } of regression.seeds) results.push(await runSimulation({ seed }));
  assert.deepEqual(failures(results), []);
});

Deno.test("kvnode simulation: a seed replays to the same trace, another seed differs", async () => {
  // Seed 5 crashes nodes mid-turn, moves replicas and ends operations unknown.
  const first = await runSimulation({ seed: 5 });
  const again = await runSimulation({ seed: 5 });
  const other = await runSimulation({ seed: 6 });
  assert.equal(first.kind, "ok", first.failure ?? "");
  assert.ok(first.stats.crashesMidTurn > 0 && first.stats.movesDone > 0);
  assert.equal(again.traceHash, first.traceHash);
  assert.deepEqual(again.stats, first.stats);
  assert.notEqual(other.traceHash, first.traceHash);
});
