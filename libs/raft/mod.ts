/**
 * A Raft consensus core as a pure, deterministic state machine, in the manner
 * of etcd's raft library: no I/O, no clock, no ambient randomness. The host
 * calls {@linkcode RawNode.tick}, feeds messages with {@linkcode RawNode.step},
 * makes requests ({@linkcode RawNode.propose}, {@linkcode RawNode.readIndex},
 * {@linkcode RawNode.transferLeader}, ...) and carries out each
 * {@linkcode Ready}: persist, send, apply, then {@linkcode RawNode.advance}.
 *
 * Features: pre-vote, check-quorum, pipelined replication with a bounded
 * in-flight window, fast log backtracking, snapshots, single-server membership
 * changes with learners, leader transfer, ReadIndex (and opt-in lease) reads,
 * a bound on uncommitted bytes, and a CRC-32 checksum on every entry.
 *
 * Conventions: ids are branded positive integers ({@linkcode PeerId}), unique
 * per replica incarnation and never reused. Membership changes take effect
 * when the host applies the entry ({@linkcode RawNode.applyConfChange});
 * `ConfState.epoch` is the index of the last applied change and serves as the
 * group's conf epoch. Results are discriminated unions; only bugs
 * (`AssertionError`) and corrupt storage ({@linkcode DataLossError}) throw.
 * A seeded in-memory cluster harness for tests lives in `@tinykv/raft/testing`.
 *
 * @example A single-node group commits a proposal
 * ```ts
 * import { MemoryStorage, mulberry32, peerId, RawNode } from "@tinykv/raft";
 *
 * const id = peerId(1);
 * const storage = new MemoryStorage({ voters: [id] });
 * const node = new RawNode({ id, storage, prng: mulberry32(7) });
 * node.campaign();
 * node.propose(new TextEncoder().encode("x=1"));
 * const applied: string[] = [];
 * while (node.hasReady()) {
 *   const ready = node.ready();
 *   storage.append(ready.entries);
 *   if (ready.hardState) storage.setHardState(ready.hardState);
 *   // A real host sends ready.messages to peers here.
 *   for (const entry of ready.committedEntries) {
 *     if (entry.data.length > 0) applied.push(new TextDecoder().decode(entry.data));
 *   }
 *   node.advance(ready);
 * }
 * if (applied[0] !== "x=1") throw new Error("not applied");
 * ```
 *
 * @module
 */

export {
  type CampaignResult,
  type PeerStatus,
  type ProposeResult,
  RawNode,
  type RawNodeOptions,
  type ReadIndexResult,
  type ReadMode,
  type ReadState,
  type Ready,
  type Role,
  type SoftState,
  type SplitMessages,
  splitMessages,
  type Status,
  type TransferResult,
} from "./raw_node.ts";
export type { ProgressState } from "./_progress.ts";
export type * from "./messages.ts";
export {
  type ConfChange,
  type ConfChangeType,
  type ConfState,
  createEntry,
  decodeConfChange,
  type DecodeConfChangeResult,
  EMPTY_HARD_STATE,
  encodeConfChange,
  type Entry,
  type EntryType,
  type HardState,
  type LogIndex,
  logIndex,
  type PeerId,
  peerId,
  type Snapshot,
  type SnapshotMetadata,
  type Term,
  term,
  verifyEntry,
} from "./types.ts";
export {
  type EntriesOptions,
  type EntriesResult,
  type InitialState,
  type LogReader,
  MemoryStorage,
  type SnapshotResult,
  type StorageWriteResult,
} from "./storage.ts";
export { DataLossError } from "./errors.ts";
export { AssertionError } from "./_assert.ts";
export { crc32, CRC32_INIT, crc32Finish, crc32Update } from "./crc32.ts";
export { mulberry32, type Prng } from "./prng.ts";
