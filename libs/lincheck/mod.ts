/**
 * A linearizability checker for TinyKV's tests: the deterministic simulation (logical time)
 * and the fault test against a real cluster (real time) record client histories with
 * {@linkcode HistoryRecorder} and check them with {@linkcode check}.
 *
 * The search is Wing & Gong's, with Lowe's just-in-time linearization and memo cache (as in
 * Porcupine), run separately for every key. Operations whose outcome is unknown may take
 * effect at any moment after their invocation, or never. The search has a step budget; when
 * it runs out the verdict is `"unknown"`, which callers must treat as a failure.
 *
 * Two models come with it: {@linkcode registerModel} (get, put, delete, compare-and-swap) and
 * {@linkcode appendListModel} (append a token, read the whole list). Other models implement
 * {@linkcode Model}.
 *
 * @example Catching a stale read
 * ```ts
 * import assert from "node:assert/strict";
 * import { check, HistoryRecorder, registerModel } from "@tinykv/lincheck";
 * import type { RegisterInput, RegisterOutput } from "@tinykv/lincheck";
 *
 * let tick = 0;
 * const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>({ clock: () => tick });
 * const put = recorder.invoke("c1", { kind: "put", key: "k", value: "new" });
 * tick = 1;
 * recorder.ok(put, { kind: "put" });
 * tick = 2;
 * const get = recorder.invoke("c2", { kind: "get", key: "k" });
 * tick = 3;
 * recorder.ok(get, { kind: "get", value: null }); // The write completed before: stale.
 *
 * const result = check(registerModel, recorder.history(), { stepBudget: 10_000 });
 * assert.equal(result.kind, "illegal");
 * ```
 *
 * @module
 */

export { AssertionError } from "./_assert.ts";
export type { Model, Operation } from "./model.ts";
export {
  check,
  type CheckOptions,
  type CheckResult,
  describeOperation,
  type IllegalExplanation,
  STEP_BUDGET_DEFAULT,
} from "./check.ts";
export {
  type RegisterInput,
  registerModel,
  type RegisterOutput,
  type RegisterState,
} from "./register_model.ts";
export {
  type AppendListInput,
  appendListModel,
  type AppendListOutput,
  type AppendListState,
  appendListTokens,
} from "./list_model.ts";
export {
  HistoryRecorder,
  type HistoryRecorderOptions,
  type OperationId,
  RECORDER_OPERATIONS_MAX_DEFAULT,
} from "./history_recorder.ts";
export { combineHash, hashString, mixHash } from "./hash.ts";
