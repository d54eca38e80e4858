/**
 * The kvnode: hosts replicas of many shard groups (multi-Raft) on LMDB and serves them.
 *
 * ```ts
 * import { KvStateMachine, MemoryKvSpace } from "@tinykv/kvnode";
 *
 * const spaces = { data: new MemoryKvSpace(), sessions: new MemoryKvSpace(), meta: new MemoryKvSpace() };
 * const machine = new KvStateMachine(spaces, { range: { lo: 0, hi: 2 ** 32 } });
 * const key = new TextEncoder().encode("greeting");
 * const put = { key, value: key, clientId: "", seq: 0, ackSeq: 0 };
 * machine.apply({ stampMs: Date.now(), valueBytesMax: 1 << 20, sessionTtlMs: 0, put });
 * machine.flush(); // after a run of applies: writes the counters and session headers they changed
 * console.log(machine.get(key).found); // true
 * ```
 *
 * @module
 */
export { compareBytes, type KvPair, type KvSpace, MemoryKvSpace } from "./kv_space.ts";
export {
  type ApplyResult,
  KvStateMachine,
  type KvStateMachineOptions,
  LEGACY_VALUE_BYTES_MAX,
  type MutationResult,
  SESSION_RESULT_BYTES_MAX,
  SESSION_RESULTS_MAX,
  SESSION_TTL_MS_DEFAULT,
  SESSIONS_MAX,
  type StateMachineSpaces,
} from "./state_machine.ts";
export { SessionTable } from "./session_table.ts";
export { REMOVALS_KEPT, type StatusAnswer, StatusVersions } from "./status_versions.ts";
