/**
 * The wire form of Raft messages between kvnodes: {@linkcode messageToProto} turns an
 * {@linkcode Envelope} into a `RaftEnvelope` of kvnode.proto, and {@linkcode messageFromProto}
 * turns one back, refusing anything a correct peer would not send — an unknown type, an integer
 * that is not a safe non-negative one (or not a positive peer id), entries that are not contiguous
 * after `prevLogIndex`, and any entry whose checksum does not match its contents (a corrupt entry
 * is refused, never stepped into the Raft core).
 *
 * A snapshot message travels in two parts: its envelope carries only the metadata, and its data
 * goes on the `SendSnapshot` stream; the receiver passes the assembled bytes back in as
 * `snapshotData`.
 *
 * @module
 */
import {
  type ConfState,
  type Entry,
  type LogIndex,
  type Message,
  type PeerId,
  type SnapshotMetadata,
  type Term,
  verifyEntry,
} from "@tinykv/raft";
import {
  type RaftConfState,
  type RaftEntry,
  type RaftEnvelope,
  type RaftMessage,
  RaftMessage_Type,
  type RaftSnapshotMetadata,
} from "@tinykv/proto/tinykv/v1";
import type { Envelope } from "./driver.ts";
import { unreachable } from "./_assert.ts";
import { shardId } from "@tinykv/shard";

/** The result of {@linkcode messageFromProto}. */
export type DecodeEnvelopeResult =
  | { readonly kind: "ok"; readonly envelope: Envelope }
  | { readonly kind: "invalid"; readonly reason: string };

/** Options of {@linkcode messageFromProto}. */
export interface DecodeEnvelopeOptions {
  /**
   * The data of a snapshot message, assembled from its `SendSnapshot` chunks. Required for a
   * snapshot message (one without it is refused: snapshot data never rides on `Send`) and
   * refused for any other type.
   */
  readonly snapshotData?: Uint8Array;
}

/** The largest shard id (shard ids are `uint32` on the wire). */
export const SHARD_ID_MAX = 0xffff_ffff;

/**
 * Fixed bytes {@linkcode envelopeBytesBound} allows for one envelope inside a `RaftBatch`: its
 * framing plus every scalar field of the envelope and message at its widest (2 bytes of tag and
 * 10 of varint each), rounded up.
 */
export const ENVELOPE_OVERHEAD_BYTES = 256;
/** Bytes {@linkcode envelopeBytesBound} allows for each entry besides its data. */
export const ENTRY_OVERHEAD_BYTES = 64;
/** Bytes {@linkcode envelopeBytesBound} allows for snapshot metadata besides its peer ids. */
const SNAPSHOT_OVERHEAD_BYTES = 64;
/** Bytes {@linkcode envelopeBytesBound} allows for each peer id of a conf state. */
const PEER_ID_BYTES = 11;

/** Data of a snapshot decoded without any (only for the check that refuses it). */
const NO_BYTES = new Uint8Array(0);

const TYPE_TO_PROTO: Readonly<Record<Message["type"], RaftMessage_Type>> = {
  append: RaftMessage_Type.APPEND,
  appendResponse: RaftMessage_Type.APPEND_RESPONSE,
  requestVote: RaftMessage_Type.REQUEST_VOTE,
  requestPreVote: RaftMessage_Type.REQUEST_PRE_VOTE,
  requestVoteResponse: RaftMessage_Type.REQUEST_VOTE_RESPONSE,
  requestPreVoteResponse: RaftMessage_Type.REQUEST_PRE_VOTE_RESPONSE,
  heartbeat: RaftMessage_Type.HEARTBEAT,
  heartbeatResponse: RaftMessage_Type.HEARTBEAT_RESPONSE,
  snapshot: RaftMessage_Type.SNAPSHOT,
  timeoutNow: RaftMessage_Type.TIMEOUT_NOW,
};

const TYPE_FROM_PROTO: ReadonlyMap<number, Message["type"]> = new Map(
  Object.entries(TYPE_TO_PROTO).map(([type, code]) => [code, type as Message["type"]]),
);

/**
 * Converts an envelope to its wire form. Fields a message type does not use are 0/false. A
 * snapshot message keeps only its metadata: send its data on `SendSnapshot`.
 */
export function messageToProto(envelope: Envelope): RaftEnvelope {
  return {
    shardId: envelope.shardId,
    confEpoch: envelope.confEpoch,
    message: raftMessageToProto(envelope.message),
    notMember: envelope.notMember === true,
  };
}

function raftMessageToProto(message: Message): RaftMessage {
  const proto: RaftMessage = {
    type: TYPE_TO_PROTO[message.type],
    from: message.from,
    to: message.to,
    term: message.term,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    commit: 0,
    reject: false,
    index: 0,
    hintIndex: 0,
    hintTerm: 0,
    lastLogIndex: 0,
    lastLogTerm: 0,
    transfer: false,
    readRound: 0,
    quiesce: false,
  };
  switch (message.type) {
    case "append":
      proto.prevLogIndex = message.prevLogIndex;
      proto.prevLogTerm = message.prevLogTerm;
      proto.entries = message.entries.map(entryToProto);
      proto.commit = message.commit;
      return proto;
    case "appendResponse":
      proto.reject = message.reject;
      proto.index = message.index;
      proto.hintIndex = message.hintIndex;
      proto.hintTerm = message.hintTerm;
      return proto;
    case "requestVote":
    case "requestPreVote":
      proto.lastLogIndex = message.lastLogIndex;
      proto.lastLogTerm = message.lastLogTerm;
      proto.transfer = message.transfer;
      return proto;
    case "requestVoteResponse":
    case "requestPreVoteResponse":
      proto.reject = message.reject;
      return proto;
    case "heartbeat":
      proto.commit = message.commit;
      proto.readRound = message.round;
      proto.quiesce = message.quiesce;
      return proto;
    case "heartbeatResponse":
      proto.readRound = message.round;
      return proto;
    case "snapshot":
      proto.snapshot = metadataToProto(message.snapshot.metadata);
      return proto;
    case "timeoutNow":
      return proto;
    default: {
      const never: never = message;
      return unreachable(never, "Raft message");
    }
  }
}

function entryToProto(entry: Entry): RaftEntry {
  return {
    term: entry.term,
    index: entry.index,
    type: entry.type === "normal" ? 0 : 1,
    data: entry.data,
    checksum: entry.checksum,
  };
}

function metadataToProto(metadata: SnapshotMetadata): RaftSnapshotMetadata {
  return {
    index: metadata.index,
    term: metadata.term,
    confState: {
      voters: [...metadata.confState.voters],
      learners: [...metadata.confState.learners],
      epoch: metadata.confState.epoch,
    },
  };
}

/**
 * An upper bound of the bytes `messageToProto(envelope)` takes inside an encoded `RaftBatch`
 * (framing included), cheap enough to compute for every message sent. Snapshot data is not
 * counted: it travels on `SendSnapshot`.
 */
export function envelopeBytesBound(envelope: Envelope): number {
  const message = envelope.message;
  let bytes = ENVELOPE_OVERHEAD_BYTES;
  if (message.type === "append") {
    for (const entry of message.entries) bytes += ENTRY_OVERHEAD_BYTES + entry.data.length;
  } else if (message.type === "snapshot") {
    const { voters, learners } = message.snapshot.metadata.confState;
    bytes += SNAPSHOT_OVERHEAD_BYTES + PEER_ID_BYTES * (voters.length + learners.length);
  }
  return bytes;
}

/**
 * Converts a received `RaftEnvelope` back to an envelope, or says why it is refused. Never
 * throws: whatever a peer sends, the answer is `ok` or `invalid`.
 */
export function messageFromProto(
  proto: RaftEnvelope,
  options: DecodeEnvelopeOptions = {},
): DecodeEnvelopeResult {
  const problem = checkUint(proto.shardId, "shard_id", SHARD_ID_MAX) ??
    checkCount(proto.confEpoch, "conf_epoch") ??
    (proto.message === undefined ? "Envelope has no message" : undefined) ??
    checkMessage(proto.message!, options.snapshotData);
  if (problem !== undefined) {
    return { kind: "invalid", reason: `${problem} (shard ${String(proto.shardId)})` };
  }
  const message = messageFrom(proto.message!, options.snapshotData ?? NO_BYTES);
  return {
    kind: "ok",
    envelope: proto.notMember
      ? { shardId: shardId(proto.shardId), confEpoch: proto.confEpoch, message, notMember: true }
      : { shardId: shardId(proto.shardId), confEpoch: proto.confEpoch, message },
  };
}

// --- Checks: each returns a sentence naming the problem, or undefined. ---------------------------

function checkUint(value: unknown, field: string, max: number): string | undefined {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value <= max
    ? undefined
    : `Field "${field}" is ${String(value)}: expected an integer in [0, ${max}]`;
}

function checkCount(value: unknown, field: string): string | undefined {
  return checkUint(value, field, Number.MAX_SAFE_INTEGER);
}

function checkPeerId(value: unknown, field: string): string | undefined {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0
    ? undefined
    : `Field "${field}" is ${String(value)}: expected a positive peer id`;
}

function checkBool(value: unknown, field: string): string | undefined {
  return typeof value === "boolean" ? undefined : `Field "${field}" is not a boolean`;
}

function checkMessage(m: RaftMessage, snapshotData: Uint8Array | undefined): string | undefined {
  const type = TYPE_FROM_PROTO.get(m.type);
  if (type === undefined) return `Message type ${String(m.type)} is unknown`;
  const header = checkPeerId(m.from, "from") ?? checkPeerId(m.to, "to") ??
    checkCount(m.term, "term") ??
    (m.from === m.to ? `Message ${type} is from peer ${m.from} to itself` : undefined);
  if (header !== undefined) return header;
  if (type !== "snapshot" && snapshotData !== undefined) {
    return `Message ${type} came with snapshot data`;
  }
  switch (type) {
    case "append":
      return checkCount(m.prevLogIndex, "prev_log_index") ??
        checkCount(m.prevLogTerm, "prev_log_term") ?? checkCount(m.commit, "commit") ??
        checkEntries(m);
    case "appendResponse":
      return checkBool(m.reject, "reject") ?? checkCount(m.index, "index") ??
        checkCount(m.hintIndex, "hint_index") ?? checkCount(m.hintTerm, "hint_term");
    case "requestVote":
    case "requestPreVote":
      return checkCount(m.lastLogIndex, "last_log_index") ??
        checkCount(m.lastLogTerm, "last_log_term") ?? checkBool(m.transfer, "transfer");
    case "requestVoteResponse":
    case "requestPreVoteResponse":
      return checkBool(m.reject, "reject");
    case "heartbeat":
      return checkCount(m.commit, "commit") ?? checkCount(m.readRound, "read_round") ??
        checkBool(m.quiesce, "quiesce");
    case "heartbeatResponse":
      return checkCount(m.readRound, "read_round");
    case "snapshot":
      return checkSnapshot(m.snapshot, snapshotData);
    case "timeoutNow":
      return undefined;
    default: {
      const never: never = type;
      return `Message type ${String(never)} is unknown`;
    }
  }
}

/**
 * Entries must follow `prevLogIndex` one by one, with terms that never decrease, never exceed the
 * sender's term, and start at or above `prevLogTerm` (paper §5.3: a leader appends entries of its
 * own term after entries it holds). Each entry's checksum must match its contents.
 */
function checkEntries(m: RaftMessage): string | undefined {
  if (!Array.isArray(m.entries)) return `Field "entries" is not a list`;
  let previousTerm = m.prevLogTerm;
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i];
    const field = `entries[${i}]`;
    const problem = checkCount(e.term, `${field}.term`) ?? checkCount(e.index, `${field}.index`) ??
      checkUint(e.type, `${field}.type`, 1) ??
      checkUint(e.checksum, `${field}.checksum`, 0xffff_ffff) ??
      (e.data instanceof Uint8Array ? undefined : `Field "${field}.data" is not bytes`);
    if (problem !== undefined) return problem;
    if (e.index !== m.prevLogIndex + 1 + i) {
      return `Entry ${field} has index ${e.index}: expected ${m.prevLogIndex + 1 + i}`;
    }
    if (e.term < previousTerm || e.term > m.term) {
      return `Entry ${e.index} has term ${e.term}: expected one in [${previousTerm}, ${m.term}]`;
    }
    previousTerm = e.term;
    if (!verifyEntry(entryFrom(e))) {
      return `Entry ${e.index} fails its checksum ${e.checksum}: it is corrupt`;
    }
  }
  return undefined;
}

function checkSnapshot(
  metadata: RaftSnapshotMetadata | undefined,
  data: Uint8Array | undefined,
): string | undefined {
  if (data === undefined) {
    return "Snapshot message came without its data: snapshot data travels on SendSnapshot";
  }
  if (metadata === undefined) return "Snapshot message has no metadata";
  const problem = checkCount(metadata.index, "snapshot.index") ??
    checkCount(metadata.term, "snapshot.term") ??
    (metadata.confState === undefined ? "Snapshot metadata has no conf state" : undefined);
  if (problem !== undefined) return problem;
  const conf = metadata.confState!;
  if (!Array.isArray(conf.voters) || !Array.isArray(conf.learners)) {
    return "Snapshot conf state has no voter or learner list";
  }
  for (const id of [...conf.voters, ...conf.learners]) {
    const bad = checkPeerId(id, "snapshot.conf_state");
    if (bad !== undefined) return bad;
  }
  return checkCount(conf.epoch, "snapshot.conf_state.epoch");
}

// --- Conversions of checked protos. ------------------------------------------------------------

function entryFrom(e: RaftEntry): Entry {
  return {
    term: e.term as Term,
    index: e.index as LogIndex,
    type: e.type === 0 ? "normal" : "confChange",
    data: e.data,
    checksum: e.checksum,
  };
}

function confStateFrom(c: RaftConfState): ConfState {
  return {
    voters: c.voters as PeerId[],
    learners: c.learners as PeerId[],
    epoch: c.epoch as LogIndex,
  };
}

/** Builds the message of a checked proto (see {@linkcode checkMessage}). */
function messageFrom(m: RaftMessage, snapshotData: Uint8Array): Message {
  const header = { from: m.from as PeerId, to: m.to as PeerId, term: m.term as Term };
  const type = TYPE_FROM_PROTO.get(m.type)!;
  switch (type) {
    case "append":
      return {
        ...header,
        type,
        prevLogIndex: m.prevLogIndex as LogIndex,
        prevLogTerm: m.prevLogTerm as Term,
        entries: m.entries.map(entryFrom),
        commit: m.commit as LogIndex,
      };
    case "appendResponse":
      return {
        ...header,
        type,
        reject: m.reject,
        index: m.index as LogIndex,
        hintIndex: m.hintIndex as LogIndex,
        hintTerm: m.hintTerm as Term,
      };
    case "requestVote":
    case "requestPreVote":
      return {
        ...header,
        type,
        lastLogIndex: m.lastLogIndex as LogIndex,
        lastLogTerm: m.lastLogTerm as Term,
        transfer: m.transfer,
      };
    case "requestVoteResponse":
    case "requestPreVoteResponse":
      return { ...header, type, reject: m.reject };
    case "heartbeat":
      return {
        ...header,
        type,
        commit: m.commit as LogIndex,
        round: m.readRound,
        quiesce: m.quiesce,
      };
    case "heartbeatResponse":
      return { ...header, type, round: m.readRound };
    case "snapshot": {
      const metadata = m.snapshot!;
      return {
        ...header,
        type,
        snapshot: {
          metadata: {
            index: metadata.index as LogIndex,
            term: metadata.term as Term,
            confState: confStateFrom(metadata.confState!),
          },
          data: snapshotData,
        },
      };
    }
    case "timeoutNow":
      return { ...header, type };
    default: {
      const never: never = type;
      return unreachable(never, "Raft message type");
    }
  }
}
