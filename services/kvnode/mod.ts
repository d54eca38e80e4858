/**
 * The kvnode: hosts replicas of many shard groups (multi-Raft) on LMDB and serves them.
 *
 * ```ts
 * import { KvStateMachine, MemoryKvSpace } from "@tinykv/kvnode";
 *
 * const spaces = { data: new MemoryKvSpace(), sessions: new MemoryKvSpace(), meta: new MemoryKvSpace() };
 * const machine = new KvStateMachine(spaces, { range: { lo: 0, hi: 2 ** 32 } });
 * const key = new TextEncoder().encode("greeting");
 * machine.apply({ stampMs: Date.now(), put: { key, value: key, clientId: "", seq: 0, ackSeq: 0 } });
 * console.log(machine.get(key).found); // true
 * ```
 *
 * @module
 */
export { compareBytes, type KvPair, type KvSpace, MemoryKvSpace } from "./kv_space.ts";
export {
  APPLY_VALUE_BYTES_MAX,
  type ApplyResult,
  KvStateMachine,
  type KvStateMachineOptions,
  type MutationResult,
  SCAN_BYTES_MAX,
  SCAN_LIMIT_MAX,
  SESSION_RESULTS_MAX,
  SESSION_TTL_MS_DEFAULT,
  type StateMachineSpaces,
} from "./state_machine.ts";
export { checkSessionFields, CLIENT_ID_BYTES_MAX, SessionTable } from "./session_table.ts";
