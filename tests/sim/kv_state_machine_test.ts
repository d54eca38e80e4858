// Tests of the simulation's state machine: client retries apply once, and a
// snapshot round-trips the whole state.
import assert from "node:assert/strict";
import { createEntry, type LogIndex, type Term } from "@tinykv/raft";
import { type Command, encodeCommand, KvStateMachine } from "./kv_state_machine.ts";

function entry(index: number, command: Command) {
  return createEntry({ term: 1 as Term, index: index as LogIndex, data: encodeCommand(command) });
}

Deno.test("KvStateMachine.applyEntry() applies a retried (client, seq) once", () => {
  const sm = new KvStateMachine();
  const append: Command = { kind: "append", client: 1, seq: 1, key: "L", token: "t" };
  assert.deepEqual(sm.applyEntry(entry(1, append)), { kind: "append" });
  assert.deepEqual(sm.applyEntry(entry(2, append)), { kind: "append" });
  assert.deepEqual(sm.read("L"), ["t"]);
  const next: Command = { kind: "append", client: 1, seq: 2, key: "L", token: "u" };
  sm.applyEntry(entry(3, next));
  assert.deepEqual(sm.applyEntry(entry(4, append)), { kind: "stale" });
  assert.deepEqual(sm.read("L"), ["t", "u"]);
});

Deno.test("KvStateMachine.applyEntry() answers a compare-and-swap", () => {
  const sm = new KvStateMachine();
  const cas = (seq: number, expected: string | null, next: string): Command => ({
    kind: "cas",
    client: 1,
    seq,
    key: "x",
    expected,
    next,
  });
  assert.deepEqual(sm.applyEntry(entry(1, cas(1, null, "a"))), { kind: "cas", succeeded: true });
  assert.deepEqual(sm.applyEntry(entry(2, cas(2, null, "b"))), { kind: "cas", succeeded: false });
  assert.equal(sm.get("x"), "a");
});

Deno.test("KvStateMachine.snapshot() round-trips through restore()", () => {
  const sm = new KvStateMachine();
  sm.applyEntry(entry(1, { kind: "put", client: 2, seq: 1, key: "y", value: "v" }));
  sm.applyConfChange(2);
  const copy = KvStateMachine.restore(sm.snapshot());
  assert.equal(copy.applied, 2);
  assert.equal(copy.digest(), sm.digest());
});
