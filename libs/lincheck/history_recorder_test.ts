// Checks HistoryRecorder: what each completion does to the history, the clocks (the default
// event counter and an injected one), and that misuse fails loudly instead of recording a
// history that looks fine.

import assert from "node:assert/strict";
import { AssertionError } from "./_assert.ts";
import { check } from "./check.ts";
import { HistoryRecorder } from "./history_recorder.ts";
import { type RegisterInput, registerModel, type RegisterOutput } from "./register_model.ts";

const PUT: RegisterInput = { kind: "put", key: "k", value: "a" };
const GET: RegisterInput = { kind: "get", key: "k" };

Deno.test("HistoryRecorder records ok, unknown and pending operations and drops failed ones", () => {
  const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>();
  const put = recorder.invoke("c1", PUT); // time 0
  const failed = recorder.invoke("c2", PUT); // time 1
  const timedOut = recorder.invoke("c3", PUT); // time 2
  const pending = recorder.invoke("c4", GET); // time 3
  recorder.ok(put, { kind: "put" }); // time 4
  recorder.fail(failed);
  recorder.unknown(timedOut);
  assert.equal(recorder.pendingCount, 1);
  assert.deepEqual(recorder.history(), [
    { clientId: "c1", input: PUT, output: { kind: "put" }, invokeTime: 0, returnTime: 4 },
    { clientId: "c3", input: PUT, output: undefined, invokeTime: 2, returnTime: Infinity },
    { clientId: "c4", input: GET, output: undefined, invokeTime: 3, returnTime: Infinity },
  ]);
  recorder.ok(pending, { kind: "get", value: "a" });
  assert.equal(recorder.pendingCount, 0);
  assert.deepEqual(recorder.history()[2].output, { kind: "get", value: "a" });
});

Deno.test("HistoryRecorder's default clock orders every event, so nothing ties", () => {
  const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>();
  const put = recorder.invoke(1, PUT);
  recorder.ok(put, { kind: "put" });
  const get = recorder.invoke(2, GET);
  recorder.ok(get, { kind: "get", value: null });
  assert.equal(check(registerModel, recorder.history()).kind, "illegal");
});

Deno.test("HistoryRecorder uses an injected clock, and equal times mean overlap", () => {
  let now = 10;
  const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>({ clock: () => now });
  const put = recorder.invoke(1, PUT);
  recorder.ok(put, { kind: "put" });
  const get = recorder.invoke(2, GET);
  now = 11;
  recorder.ok(get, { kind: "get", value: null });
  const history = recorder.history();
  assert.deepEqual(history.map((op) => [op.invokeTime, op.returnTime]), [[10, 10], [10, 11]]);
  assert.equal(check(registerModel, history).kind, "ok");
});

Deno.test("HistoryRecorder rejects misuse as bugs", () => {
  const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>();
  const id = recorder.invoke(1, PUT);
  recorder.unknown(id);
  assert.throws(() => recorder.ok(id, { kind: "put" }), AssertionError);
  assert.throws(() => recorder.fail(id), AssertionError);
  assert.throws(() => recorder.unknown(99 as typeof id), AssertionError);

  let now = 5;
  const backwards = new HistoryRecorder<RegisterInput, RegisterOutput>({ clock: () => now });
  const put = backwards.invoke(1, PUT);
  now = 4;
  assert.throws(() => backwards.ok(put, { kind: "put" }), AssertionError);

  const small = new HistoryRecorder<RegisterInput, RegisterOutput>({ operationsMax: 1 });
  small.invoke(1, GET);
  assert.throws(() => small.invoke(1, GET), AssertionError);
  assert.throws(() => new HistoryRecorder({ operationsMax: 0 }), AssertionError);
});
