// Checks which errors placement treats as broken invariants (stopping the process): a failed
// assertion of placement or of libs/shard (the planner's, the shard map's), nothing else.
import assert from "node:assert/strict";
import { AssertionError as ShardAssertionError, planMoves } from "@tinykv/shard";
import { AssertionError, isBrokenInvariant, unreachable } from "./_assert.ts";

Deno.test("isBrokenInvariant() recognizes placement's and libs/shard's assertions only", () => {
  assert.equal(isBrokenInvariant(new AssertionError("placement")), true);
  assert.equal(isBrokenInvariant(new ShardAssertionError("planner")), true);
  assert.throws(() => unreachable("x" as never), (error) => isBrokenInvariant(error));
  // The planner asserts the input placement builds for it.
  assert.throws(
    () => planMoves({ replicaCount: 0 } as Parameters<typeof planMoves>[0]),
    (error) => isBrokenInvariant(error),
  );
  assert.equal(isBrokenInvariant(new Error("ZooKeeper went away")), false);
  assert.equal(isBrokenInvariant(new TypeError("x is undefined")), false);
  assert.equal(isBrokenInvariant("AssertionError"), false);
});
