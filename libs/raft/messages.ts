/**
 * The messages Raft peers exchange. Every message names its sender, receiver
 * and the sender's term; the host delivers them with `RawNode.step()`.
 *
 * @module
 */

import type { Entry, LogIndex, PeerId, Snapshot, Term } from "./types.ts";

/** Fields every message carries. */
export interface MessageHeader {
  /** The sender. */
  readonly from: PeerId;
  /** The receiver. */
  readonly to: PeerId;
  /** The sender's current term (for a pre-vote request: the term it would campaign in). */
  readonly term: Term;
}

/** AppendEntries (paper figure 2): the leader replicates entries and its commit index. */
export interface AppendMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "append";
  /** The index of the entry just before `entries`. */
  readonly prevLogIndex: LogIndex;
  /** The term of that entry. */
  readonly prevLogTerm: Term;
  /** Entries to append (possibly none: a probe or a commit update). */
  readonly entries: readonly Entry[];
  /** The leader's commit index. */
  readonly commit: LogIndex;
}

/**
 * The reply to an append or snapshot. On success `index` is the last index now
 * known to match the leader. On rejection `index` is the rejected
 * `prevLogIndex`, and `hintIndex`/`hintTerm` point at the follower's last entry
 * that may still match (fast backtracking, thesis §5.3 optimisation).
 */
export interface AppendResponseMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "appendResponse";
  /** Whether the follower refused the append. */
  readonly reject: boolean;
  /** On success, the last matching index; on rejection, the rejected `prevLogIndex`. */
  readonly index: LogIndex;
  /** On rejection, the follower's last index that may match. */
  readonly hintIndex: LogIndex;
  /** On rejection, the term at `hintIndex`. */
  readonly hintTerm: Term;
}

/** RequestVote, or the pre-vote probe that does not change terms (thesis §9.6). */
export interface VoteMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "requestVote" | "requestPreVote";
  /** The index of the candidate's last entry. */
  readonly lastLogIndex: LogIndex;
  /** The term of the candidate's last entry. */
  readonly lastLogTerm: Term;
  /** Set when a leader transfer triggered the election: voters ignore their leader lease. */
  readonly transfer: boolean;
}

/** The answer to a vote or pre-vote request. */
export interface VoteResponseMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "requestVoteResponse" | "requestPreVoteResponse";
  /** Whether the vote was refused. */
  readonly reject: boolean;
}

/**
 * The leader's heartbeat. `round` numbers the leader's heartbeat broadcasts;
 * acknowledged rounds confirm ReadIndex batches and, in lease mode, the lease.
 */
export interface HeartbeatMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "heartbeat";
  /** The commit index the follower may adopt (at most its match index). */
  readonly commit: LogIndex;
  /** The sequence number of this heartbeat broadcast (from 1, per leader; 0 with `quiesce`). */
  readonly round: number;
  /**
   * The leader quiesces the group: its last heartbeat until something happens. Not answered; a
   * follower with the whole log stops its election timer (see `Raft.quiesced`).
   */
  readonly quiesce: boolean;
}

/** The answer to a heartbeat, echoing its `round`. */
export interface HeartbeatResponseMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "heartbeatResponse";
  /** The `round` of the heartbeat answered. */
  readonly round: number;
}

/**
 * InstallSnapshot: metadata plus the opaque data. The host may transfer `data`
 * in chunks by its own means; it reports the outcome on the leader with
 * `RawNode.reportSnapshot()`.
 */
export interface SnapshotMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "snapshot";
  /** The snapshot to install. */
  readonly snapshot: Snapshot;
}

/** Tells the leader transfer target to campaign at once (thesis §3.10). */
export interface TimeoutNowMessage extends MessageHeader {
  /** Message tag. */
  readonly type: "timeoutNow";
}

/** Any message between peers. */
export type Message =
  | AppendMessage
  | AppendResponseMessage
  | VoteMessage
  | VoteResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | SnapshotMessage
  | TimeoutNowMessage;

/** The `type` tag of a message. */
export type MessageType = Message["type"];
