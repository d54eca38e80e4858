// Determinism of the simulation: a seed replays exactly (same trace, same
// hash of every event), and the building blocks order ties deterministically.
import assert from "node:assert/strict";
import { EventQueue } from "./event_queue.ts";
import { runSeed } from "./run_seed.ts";

async function traced(seed: number): Promise<{ lines: string[]; hash: number }> {
  const lines: string[] = [];
  const result = await runSeed(seed, { trace: (line) => lines.push(line) });
  assert.ok(result.ok, `seed ${seed} failed: ${!result.ok && result.message}`);
  return { lines, hash: result.ok ? result.traceHash : 0 };
}

Deno.test("runSeed() gives the identical trace and trace hash twice for one seed", async () => {
  for (const seed of [3, 42]) {
    const first = await traced(seed);
    const second = await traced(seed);
    assert.equal(first.hash, second.hash);
    assert.deepEqual(first.lines, second.lines);
    assert.ok(first.lines.length > 0);
  }
});

Deno.test("runSeed() gives different runs for different seeds", async () => {
  assert.notEqual((await traced(5)).hash, (await traced(6)).hash);
});

Deno.test("runSeed() does not depend on tracing being on", async () => {
  const quiet = await runSeed(11);
  assert.ok(quiet.ok);
  assert.equal(quiet.traceHash, (await traced(11)).hash);
});

Deno.test("EventQueue pops by time, then in scheduling order", () => {
  const queue = new EventQueue<string>();
  queue.push(5, "c");
  queue.push(1, "a");
  queue.push(5, "d");
  queue.push(1, "b");
  queue.push(3, "x");
  const out: string[] = [];
  for (let e = queue.pop(); e !== undefined; e = queue.pop()) out.push(e.event);
  assert.deepEqual(out, ["a", "b", "x", "c", "d"]);
});
