// Checks registerModel's step function as a table: for each state, input and answer, the
// states it may lead to (none: the answer is impossible), and its other hooks.

import assert from "node:assert/strict";
import { AssertionError } from "./_assert.ts";
import {
  type RegisterInput,
  registerModel,
  type RegisterOutput,
  type RegisterState,
} from "./register_model.ts";

const K = "k";

Deno.test("registerModel.step() follows get, put, delete and compare-and-swap", () => {
  const table: [RegisterState, RegisterInput, RegisterOutput | undefined, RegisterState[]][] = [
    [null, { kind: "get", key: K }, { kind: "get", value: null }, [null]],
    [null, { kind: "get", key: K }, { kind: "get", value: "a" }, []],
    ["a", { kind: "get", key: K }, { kind: "get", value: "a" }, ["a"]],
    ["a", { kind: "get", key: K }, { kind: "get", value: null }, []],
    ["a", { kind: "get", key: K }, undefined, ["a"]],
    [null, { kind: "put", key: K, value: "b" }, { kind: "put" }, ["b"]],
    ["a", { kind: "put", key: K, value: "b" }, undefined, ["b"]],
    ["a", { kind: "delete", key: K }, { kind: "delete" }, [null]],
    [null, { kind: "delete", key: K }, { kind: "delete" }, [null]],
    ["a", { kind: "cas", key: K, expected: "a", next: "b" }, { kind: "cas", succeeded: true }, [
      "b",
    ]],
    ["a", { kind: "cas", key: K, expected: "a", next: "b" }, { kind: "cas", succeeded: false }, []],
    ["z", { kind: "cas", key: K, expected: "a", next: "b" }, { kind: "cas", succeeded: false }, [
      "z",
    ]],
    ["z", { kind: "cas", key: K, expected: "a", next: "b" }, { kind: "cas", succeeded: true }, []],
    [null, { kind: "cas", key: K, expected: null, next: "b" }, { kind: "cas", succeeded: true }, [
      "b",
    ]],
    ["a", { kind: "cas", key: K, expected: null, next: "b" }, { kind: "cas", succeeded: false }, [
      "a",
    ]],
    ["a", { kind: "cas", key: K, expected: "a", next: null }, { kind: "cas", succeeded: true }, [
      null,
    ]],
    ["a", { kind: "cas", key: K, expected: "a", next: "b" }, undefined, ["b"]],
    ["z", { kind: "cas", key: K, expected: "a", next: "b" }, undefined, ["z"]],
  ];
  for (const [state, input, output, expected] of table) {
    const label = `${JSON.stringify(state)} ${JSON.stringify(input)} ${JSON.stringify(output)}`;
    assert.deepEqual(registerModel.step(state, input, output), expected, label);
  }
});

Deno.test("registerModel.step() rejects an answer of another kind as a bug", () => {
  assert.throws(
    () => registerModel.step(null, { kind: "get", key: K }, { kind: "cas", succeeded: true }),
    AssertionError,
  );
});

Deno.test("registerModel.isReadOnly() holds for gets and failed compare-and-swaps", () => {
  const casInput: RegisterInput = { kind: "cas", key: K, expected: "a", next: "b" };
  assert.equal(registerModel.isReadOnly?.({ kind: "get", key: K }, undefined), true);
  assert.equal(registerModel.isReadOnly?.(casInput, { kind: "cas", succeeded: false }), true);
  assert.equal(registerModel.isReadOnly?.(casInput, { kind: "cas", succeeded: true }), false);
  assert.equal(registerModel.isReadOnly?.(casInput, undefined), false);
  assert.equal(
    registerModel.isReadOnly?.({ kind: "put", key: K, value: "a" }, { kind: "put" }),
    false,
  );
});

Deno.test("registerModel hashes, compares, partitions and describes", () => {
  assert.equal(registerModel.hashState("a"), registerModel.hashState("a"));
  assert.notEqual(registerModel.hashState(null), registerModel.hashState("null"));
  assert.ok(registerModel.equalStates(null, null));
  assert.ok(!registerModel.equalStates(null, "null"));
  assert.equal(registerModel.partitionKey?.({ kind: "delete", key: "k7" }), "k7");
  const describe = registerModel.describeOperation!;
  assert.equal(
    describe({ kind: "cas", key: K, expected: null, next: "b" }, { kind: "cas", succeeded: true }),
    'cas("k", absent -> "b") -> succeeded',
  );
  assert.equal(
    describe({ kind: "get", key: K }, { kind: "get", value: null }),
    'get("k") -> absent',
  );
  assert.equal(
    describe({ kind: "put", key: K, value: "v" }, undefined),
    'put("k", "v") -> unknown',
  );
});
