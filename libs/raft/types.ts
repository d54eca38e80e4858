/**
 * The data types of the Raft core: branded numbers, log entries, hard state,
 * configuration state, snapshots and configuration changes.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { CRC32_INIT, crc32Finish, crc32Update, crc32UpdateUint32 } from "./crc32.ts";

/** A Raft term (paper §5.1). Starts at 0 for a fresh node. */
export type Term = number & { readonly __brand: "Term" };
/** A position in the Raft log; 0 means "before the first entry". */
export type LogIndex = number & { readonly __brand: "LogIndex" };
/**
 * The id of one Raft peer. Ids are positive safe integers, unique per replica
 * incarnation: the host (kvnode) allocates them and never reuses an id for a new
 * incarnation of a replica, so a message from an old incarnation cannot be
 * mistaken for one from the new. 0 is not a valid id.
 */
export type PeerId = number & { readonly __brand: "PeerId" };

/** Brands `value` as a {@linkcode Term}, asserting it is a non-negative safe integer. */
export function term(value: number): Term {
  assert(Number.isSafeInteger(value) && value >= 0, `Invalid term ${value}`);
  return value as Term;
}

/** Brands `value` as a {@linkcode LogIndex}, asserting it is a non-negative safe integer. */
export function logIndex(value: number): LogIndex {
  assert(Number.isSafeInteger(value) && value >= 0, `Invalid log index ${value}`);
  return value as LogIndex;
}

/** Brands `value` as a {@linkcode PeerId}, asserting it is a positive safe integer. */
export function peerId(value: number): PeerId {
  assert(Number.isSafeInteger(value) && value > 0, `Invalid peer id ${value}`);
  return value as PeerId;
}

/** What an entry carries: host data, or a configuration change. */
export type EntryType = "normal" | "confChange";

/**
 * One log entry. `checksum` is a CRC-32 over index, term, type and data,
 * computed when the leader creates the entry and verified whenever the entry is
 * read back from storage (see {@linkcode verifyEntry}).
 */
export interface Entry {
  /** The term of the leader that created the entry. */
  readonly term: Term;
  /** The entry's position in the log. */
  readonly index: LogIndex;
  /** What the entry carries. */
  readonly type: EntryType;
  /** Opaque host bytes (for `confChange`, see {@linkcode encodeConfChange}). */
  readonly data: Uint8Array;
  /** CRC-32 over index, term, type and data. */
  readonly checksum: number;
}

/** Computes the checksum of an entry's fields (everything but the checksum itself). */
export function entryChecksum(
  fields: { term: Term; index: LogIndex; type: EntryType; data: Uint8Array },
): number {
  let state = CRC32_INIT;
  state = crc32UpdateUint32(state, fields.index % 0x100000000);
  state = crc32UpdateUint32(state, Math.floor(fields.index / 0x100000000));
  state = crc32UpdateUint32(state, fields.term % 0x100000000);
  state = crc32UpdateUint32(state, Math.floor(fields.term / 0x100000000));
  state = crc32UpdateUint32(state, fields.type === "normal" ? 0 : 1);
  state = crc32Update(state, fields.data);
  return crc32Finish(state);
}

/** Creates an entry with its checksum. */
export function createEntry(
  fields: { term: Term; index: LogIndex; type?: EntryType; data?: Uint8Array },
): Entry {
  const type = fields.type ?? "normal";
  const data = fields.data ?? EMPTY_BYTES;
  const checksum = entryChecksum({ term: fields.term, index: fields.index, type, data });
  return { term: fields.term, index: fields.index, type, data, checksum };
}

/** Reports whether `entry.checksum` matches its contents. */
export function verifyEntry(entry: Entry): boolean {
  return entryChecksum(entry) === entry.checksum;
}

/** Shared empty byte array. */
export const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

/** The state that must be durable before a node sends messages (paper figure 2). */
export interface HardState {
  /** The latest term the node has seen. */
  readonly term: Term;
  /** The candidate voted for in `term`, if any. */
  readonly vote: PeerId | undefined;
  /** The highest index known to be committed. */
  readonly commit: LogIndex;
}

/** The hard state of a node that has never run. */
export const EMPTY_HARD_STATE: HardState = {
  term: 0 as Term,
  vote: undefined,
  commit: 0 as LogIndex,
};

/**
 * The membership of a group.
 *
 * `epoch` is the log index of the configuration change entry this state results
 * from (0 for the bootstrap configuration). It only grows, changes exactly when
 * membership changes, and is the same on every replica that applied the same
 * entries, so a host can use it as the group's "conf epoch" to fence stale
 * admin calls and stale routing.
 */
export interface ConfState {
  /** The members that vote and count for quorums. */
  readonly voters: readonly PeerId[];
  /** The members that receive the log but do not vote. */
  readonly learners: readonly PeerId[];
  /** The index of the conf change entry this membership results from (0 at bootstrap). */
  readonly epoch: LogIndex;
}

/** Describes a snapshot: the last entry it covers and the membership at that entry. */
export interface SnapshotMetadata {
  /** The index of the last entry the snapshot covers. */
  readonly index: LogIndex;
  /** The term of that entry. */
  readonly term: Term;
  /** The membership as of that entry. */
  readonly confState: ConfState;
}

/** A snapshot of the host's state machine. `data` is opaque to the core. */
export interface Snapshot {
  /** What the snapshot covers. */
  readonly metadata: SnapshotMetadata;
  /** The host state machine's serialized state (opaque to the core). */
  readonly data: Uint8Array;
}

/** The kinds of single-server membership change (thesis §4.1). */
export type ConfChangeType = "addNode" | "addLearner" | "removeNode";

/**
 * A single-server membership change. Promoting a learner is `addNode` of that
 * learner. `context` is opaque host bytes carried along (e.g. an address).
 */
export interface ConfChange {
  /** What kind of change. */
  readonly type: ConfChangeType;
  /** The peer the change is about. */
  readonly nodeId: PeerId;
  /** Opaque host bytes carried with the change. */
  readonly context?: Uint8Array;
}

const CONF_CHANGE_CODES: readonly ConfChangeType[] = ["addNode", "addLearner", "removeNode"];

/** Encodes a configuration change as entry data: 1 byte type, 8 bytes id, context. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const context = change.context ?? EMPTY_BYTES;
  const bytes = new Uint8Array(9 + context.length);
  bytes[0] = CONF_CHANGE_CODES.indexOf(change.type);
  new DataView(bytes.buffer).setFloat64(1, change.nodeId, true);
  bytes.set(context, 9);
  return bytes;
}

/** The result of decoding configuration change bytes. */
export type DecodeConfChangeResult =
  | { readonly kind: "ok"; readonly change: ConfChange }
  | { readonly kind: "invalid"; readonly reason: string };

/** Decodes bytes made by {@linkcode encodeConfChange}. */
export function decodeConfChange(bytes: Uint8Array): DecodeConfChangeResult {
  if (bytes.length < 9) {
    return { kind: "invalid", reason: `Conf change is ${bytes.length} bytes: expected at least 9` };
  }
  const type = CONF_CHANGE_CODES[bytes[0]];
  if (type === undefined) {
    return { kind: "invalid", reason: `Conf change type code is ${bytes[0]}: expected 0 to 2` };
  }
  const id = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getFloat64(1, true);
  if (!Number.isSafeInteger(id) || id <= 0) {
    return { kind: "invalid", reason: `Conf change node id is ${id}: expected a positive integer` };
  }
  const context = bytes.slice(9);
  return { kind: "ok", change: { type, nodeId: id as PeerId, context } };
}
