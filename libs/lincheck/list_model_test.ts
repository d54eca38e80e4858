// Checks appendListModel: its step function, its pruning hook, and check() on hand-made
// append/read histories, including the anomalies it exists to catch (a lost append, a
// duplicated append, appends seen in different orders by different readers).

import assert from "node:assert/strict";
import { check } from "./check.ts";
import { appendListModel, type AppendListState, appendListTokens } from "./list_model.ts";
import { append, type AppendListOperation, appendUnknown, read } from "./_test_helpers.ts";

function list(...tokens: string[]): AppendListState {
  let state = appendListModel.init();
  for (const token of tokens) {
    [state] = appendListModel.step(state, { kind: "append", key: "k", token }, { kind: "append" });
  }
  return state;
}

function verdict(history: readonly AppendListOperation[]): string {
  return check(appendListModel, history).kind;
}

Deno.test("appendListModel.step() appends and checks whole-list reads", () => {
  const ab = list("a", "b");
  assert.deepEqual(appendListTokens(ab), ["a", "b"]);
  const readOf = (tokens: string[]) =>
    appendListModel.step(ab, { kind: "read", key: "k" }, { kind: "read", tokens });
  assert.deepEqual(readOf(["a", "b"]), [ab]);
  assert.deepEqual(readOf(["b", "a"]), []);
  assert.deepEqual(readOf(["a"]), []);
  assert.deepEqual(readOf(["a", "b", "c"]), []);
  assert.deepEqual(appendListModel.step(ab, { kind: "read", key: "k" }, undefined), [ab]);
  assert.deepEqual(appendListTokens(appendListModel.init()), []);
});

Deno.test("appendListModel compares lists by content, not identity", () => {
  assert.ok(appendListModel.equalStates(list("a", "b"), list("a", "b")));
  assert.equal(
    appendListModel.hashState(list("a", "b")),
    appendListModel.hashState(list("a", "b")),
  );
  assert.ok(!appendListModel.equalStates(list("a", "b"), list("b", "a")));
  assert.ok(!appendListModel.equalStates(list("a"), list("a", "a")));
  assert.ok(!appendListModel.equalStates(list(), list("a")));
  assert.equal(appendListModel.describeState?.(list("x", "y")), '["x","y"]');
});

Deno.test("appendListModel.mayAcceptLater() holds while the list is a prefix of the read", () => {
  const mayAccept = (state: AppendListState, tokens: string[]) =>
    appendListModel.mayAcceptLater!(state, { kind: "read", key: "k" }, { kind: "read", tokens });
  assert.ok(mayAccept(list(), ["a"]));
  assert.ok(mayAccept(list("a"), ["a", "b"]));
  assert.ok(mayAccept(list("a", "b"), ["a", "b"]));
  assert.ok(!mayAccept(list("b"), ["a", "b"]));
  assert.ok(!mayAccept(list("a", "b", "c"), ["a", "b"]));
});

Deno.test("check() accepts overlapping appends seen in either order", () => {
  const appends = [append(1, "a", [0, 10]), append(2, "b", [0, 10])];
  assert.equal(verdict([...appends, read(3, ["a", "b"], [11, 12])]), "ok");
  assert.equal(verdict([...appends, read(3, ["b", "a"], [11, 12])]), "ok");
  assert.equal(verdict([...appends, read(3, ["b"], [1, 2]), read(4, ["b", "a"], [3, 4])]), "ok");
});

Deno.test("check() rejects readers that disagree on the order of appends", () => {
  const history = [
    append(1, "a", [0, 10]),
    append(2, "b", [0, 10]),
    read(3, ["a", "b"], [11, 12]),
    read(4, ["b", "a"], [11, 12]),
  ];
  assert.equal(verdict(history), "illegal");
});

Deno.test("check() rejects a lost append", () => {
  const history = [append(1, "a", [0, 1]), append(2, "b", [2, 3]), read(3, ["b"], [4, 5])];
  assert.equal(verdict(history), "illegal");
  assert.equal(verdict([append(1, "a", [0, 1]), read(3, [], [4, 5])]), "illegal");
});

Deno.test("check() rejects a duplicated append", () => {
  assert.equal(verdict([append(1, "a", [0, 1]), read(2, ["a", "a"], [2, 3])]), "illegal");
  const retried = [
    append(1, "a", [0, 1]),
    append(2, "b", [2, 3]),
    read(3, ["a", "b", "a"], [4, 5]),
  ];
  assert.equal(verdict(retried), "illegal");
  // A token appended twice may of course be read twice.
  assert.equal(
    verdict([append(1, "a", [0, 1]), append(1, "a", [2, 3]), read(2, ["a", "a"], [4, 5])]),
    "ok",
  );
});

Deno.test("check() accepts an unknown append that took effect late or never", () => {
  const unknownAppend = appendUnknown(1, "u", 0);
  const later = [append(2, "a", [1, 2]), read(3, ["a"], [3, 4])];
  assert.equal(verdict([unknownAppend, ...later]), "ok");
  assert.equal(verdict([unknownAppend, ...later, read(3, ["a", "u"], [5, 6])]), "ok");
  assert.equal(verdict([unknownAppend, read(3, ["u", "a"], [5, 6]), ...later]), "illegal");
});

Deno.test("check() explains an illegal list history with the longest prefix", () => {
  const history = [append(1, "a", [0, 1]), read(2, ["a"], [2, 3]), read(3, [], [4, 5])];
  const result = check(appendListModel, history);
  assert.equal(result.kind, "illegal");
  if (result.kind !== "illegal") return;
  assert.deepEqual(result.explanation.linearizedPrefix, history.slice(0, 2));
  assert.deepEqual(result.explanation.statesAfterPrefix, ['["a"]']);
  assert.deepEqual(result.explanation.couldNotPlace, [history[2]]);
});
