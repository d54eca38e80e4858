// Checks the branded id constructors on tables of valid and invalid values.

import assert from "node:assert/strict";
import { isNodeId, isShardId, NODE_ID_LENGTH_MAX, nodeId, shardId } from "./ids.ts";

Deno.test("shardId() accepts non-negative safe integers only", () => {
  for (const value of [0, 1, 4095, Number.MAX_SAFE_INTEGER]) assert.equal(shardId(value), value);
  for (const value of [-1, 1.5, NaN, Infinity, Number.MAX_SAFE_INTEGER + 1]) {
    assert.throws(() => shardId(value), RangeError, `shardId(${value})`);
    assert.equal(isShardId(value), false);
  }
  assert.equal(isShardId("1"), false);
});

Deno.test("nodeId() accepts short znode-safe names only", () => {
  const valid = ["n1", "kv-node_2", "10.0.0.1:7901", "a".repeat(NODE_ID_LENGTH_MAX), "..."];
  for (const value of valid) assert.equal(nodeId(value), value);
  const invalid = ["", ".", "..", "a/b", "a b", "ключ", "a".repeat(NODE_ID_LENGTH_MAX + 1)];
  for (const value of invalid) {
    assert.throws(() => nodeId(value), RangeError, `nodeId(${JSON.stringify(value)})`);
    assert.equal(isNodeId(value), false);
  }
  assert.throws(() => nodeId("a/b"), /Cannot use "a\/b" as a node id/);
  assert.equal(isNodeId(7), false);
});
