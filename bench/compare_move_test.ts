/**
 * Tests of reading bench/snapshot_move.ts's JSON result (compare_move.ts): the figures the
 * report shows are picked out, everything else kept, and anything but JSON is a failure.
 */
import assert from "node:assert/strict";
import { moveResultOf } from "./compare_move.ts";

Deno.test("moveResultOf() picks the transfer figures and keeps the whole result", () => {
  const json = JSON.stringify({
    shardBytes: 524_288_000,
    copySeconds: 21.5,
    copyMibPerSecond: 23.25,
    moveSeconds: 30,
    nodes: [{ node: "kvnode 0" }],
  });
  const result = moveResultOf(`${json}\n`);
  assert.equal(result.kind, "ok");
  if (result.kind !== "ok") return;
  assert.equal(result.shardBytes, 524_288_000);
  assert.equal(result.copySeconds, 21.5);
  assert.equal(result.copyMibPerSecond, 23.25);
  assert.equal(result.moveSeconds, 30);
  assert.deepEqual(result.details.nodes, [{ node: "kvnode 0" }]);
});

Deno.test("moveResultOf() marks missing figures NaN and refuses text that is not JSON", () => {
  const partial = moveResultOf('{"copySeconds": "soon"}');
  assert.ok(partial.kind === "ok" && Number.isNaN(partial.copySeconds));
  const failed = moveResultOf("moved 500 MiB");
  assert.equal(failed.kind, "failed");
  assert.match(failed.kind === "failed" ? failed.message : "", /printed no JSON: moved 500 MiB/);
});
