/**
 * {@linkcode RawNode}: the host-facing API of the Raft core.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import {
  type ProposeResult,
  Raft,
  type ReadIndexResult,
  type ReadMode,
  type ReadState,
  type Role,
  type TransferResult,
} from "./_raft.ts";
import type { ProgressState } from "./_progress.ts";
import type { Message } from "./messages.ts";
import type { Prng } from "./prng.ts";
import type { LogReader } from "./storage.ts";
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  LogIndex,
  PeerId,
  Snapshot,
  Term,
} from "./types.ts";

export type { ProposeResult, ReadIndexResult, ReadMode, ReadState, Role, TransferResult };

/** Options of a {@linkcode RawNode}. Every limit has a default and must be positive. */
export interface RawNodeOptions {
  /** This peer's id; must be in the membership the storage holds (or join later). */
  readonly id: PeerId;
  /** The durable log, hard state and membership to start from. */
  readonly storage: LogReader;
  /** Randomness for election timeouts, e.g. `mulberry32(seed)`. */
  readonly prng: Prng;
  /** Ticks without hearing from a leader before an election; randomized in [n, 2n). Default 10. */
  readonly electionTicks?: number;
  /** Ticks between leader heartbeats. Default 1. */
  readonly heartbeatTicks?: number;
  /** The host's applied index at start (entries above it are delivered again). Default 0. */
  readonly applied?: LogIndex;
  /** Payload bytes per append message (at least one entry is sent). Default 1 MiB. */
  readonly appendBytesMax?: number;
  /**
   * Bytes each entry counts besides its data wherever entries are bounded in bytes (append
   * messages, committed entries per Ready): the host's framing per entry, so that a message of
   * many small entries stays within `appendBytesMax` on the wire too. Default 0.
   */
  readonly entryOverheadBytes?: number;
  /** Append messages in flight per follower in replicate state. Default 256. */
  readonly inflightMessagesMax?: number;
  /** Payload bytes proposed but not yet committed before proposals are refused. Default 64 MiB. */
  readonly uncommittedBytesMax?: number;
  /** Payload bytes of committed entries per Ready (at least one entry). Default 64 MiB. */
  readonly committedBytesMax?: number;
  /** ReadIndex requests waiting for confirmation before reads are refused. Default 65536. */
  readonly pendingReadsMax?: number;
  /** Pre-vote (thesis §9.6). Default true. */
  readonly preVote?: boolean;
  /** Check-quorum (thesis §6.2). Default true. */
  readonly checkQuorum?: boolean;
  /** How reads are confirmed; `leaseBased` requires `checkQuorum`. Default `safe`. */
  readonly readMode?: ReadMode;
  /**
   * Ticks a leader's group must be idle and fully replicated before it quiesces (stops ticking
   * work: heartbeats, check-quorum, election timers), 0 for never. Default 0. A host that
   * enables it must call {@linkcode RawNode.wake} with `leaderLost` for a quiesced follower whose
   * leader's node it stops hearing from.
   */
  readonly quiesceTicks?: number;
}

/** Volatile state whose changes a Ready reports. */
export interface SoftState {
  /** The leader this node knows of, if any. */
  readonly leader: PeerId | undefined;
  /** This node's role. */
  readonly role: Role;
}

/**
 * What the host must do next, produced by {@linkcode RawNode.ready}.
 *
 * Contract, in order:
 * 1. Persist `snapshot` (if any), then append `entries` (replacing any stored
 *    entries from the first one's index on), then store `hardState` (if any);
 *    sync to disk when `mustSync`.
 * 2. Only then send `messages` (in any order; losing some is fine).
 * 3. Install `snapshot` into the state machine (if any), then apply
 *    `committedEntries` in order; for a `confChange` entry call
 *    {@linkcode RawNode.applyConfChange} and persist the returned membership
 *    with the applied index.
 * 4. Serve each `readStates` entry of kind `ready` once the applied index
 *    reaches its `index`; answer `dropped` ones with "not leader".
 * 5. Call {@linkcode RawNode.advance} with this Ready.
 *
 * Readies are numbered from 1; at most one is outstanding at a time.
 */
export interface Ready {
  /** The sequence number of this Ready, from 1. */
  readonly number: number;
  /** The new role and leader, if either changed. */
  readonly softState: SoftState | undefined;
  /** The hard state to persist, if it changed. */
  readonly hardState: HardState | undefined;
  /** Entries to append to stable storage, replacing any stored from the first one's index. */
  readonly entries: readonly Entry[];
  /** A snapshot to persist and install into the state machine. */
  readonly snapshot: Snapshot | undefined;
  /** Committed entries to apply, in order. */
  readonly committedEntries: readonly Entry[];
  /** Messages to send once the above is persisted. */
  readonly messages: readonly Message[];
  /** Outcomes of ReadIndex requests. */
  readonly readStates: readonly ReadState[];
  /** Whether the writes must be synced to disk before the messages are sent. */
  readonly mustSync: boolean;
}

/** The leader's view of one peer, as reported by {@linkcode RawNode.status}. */
export interface PeerStatus {
  /** The peer. */
  readonly id: PeerId;
  /** The highest index known to match the leader's log. */
  readonly match: LogIndex;
  /** The next index the leader will send. */
  readonly next: LogIndex;
  /** How the leader replicates to this peer. */
  readonly state: ProgressState;
  /** Append messages sent and not yet acknowledged. */
  readonly inflightMessages: number;
}

/** A snapshot of a node's state for monitoring and tests. */
export interface Status {
  /** This node's id. */
  readonly id: PeerId;
  /** The current term. */
  readonly term: Term;
  /** The candidate voted for in this term, if any. */
  readonly vote: PeerId | undefined;
  /** This node's role. */
  readonly role: Role;
  /** The leader this node knows of, if any. */
  readonly leader: PeerId | undefined;
  /** The commit index. */
  readonly commit: LogIndex;
  /** The applied index (as acknowledged through `advance`). */
  readonly applied: LogIndex;
  /** The index of the last log entry, persisted or not. */
  readonly lastIndex: LogIndex;
  /** The membership as applied by this node. */
  readonly confState: ConfState;
  /** The target of a leader transfer in progress, if any. */
  readonly transferee: PeerId | undefined;
  /**
   * Ticks this node will still refuse to help elect another leader (check-quorum's leader
   * stickiness; in lease mode, its promise to the leader's lease): 0 when it would vote now.
   */
  readonly promiseTicks: number;
  /** Empty unless this node is the leader. */
  readonly peers: readonly PeerStatus[];
}

/** The result of asking a node to campaign. */
export type CampaignResult = { readonly kind: "ok" } | { readonly kind: "notPromotable" };

const MIB = 1024 * 1024;

/**
 * A Raft peer as a deterministic state machine: the host feeds it time
 * (`tick`), messages (`step`) and requests, and carries out each `Ready`.
 *
 * Not thread-safe and not re-entrant: one host loop owns it. Every method
 * that reads the log (`ready`, `hasReady`, `step`, `campaign`) throws
 * `DataLossError` when storage reports a corrupt entry; the node
 * must then stop (DATA_LOSS). A failed assertion (`AssertionError`) is a bug.
 */
export class RawNode {
  readonly #raft: Raft;
  #readyNumber = 0;
  #outstanding: Ready | undefined = undefined;
  #previousHardState: HardState;
  #previousSoftState: SoftState;
  #committedUnavailable = false;

  /** Creates a node from durable state in `options.storage`. */
  constructor(options: RawNodeOptions) {
    this.#raft = new Raft({
      id: options.id,
      storage: options.storage,
      prng: options.prng,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      applied: options.applied ?? (0 as LogIndex),
      appendBytesMax: options.appendBytesMax ?? MIB,
      entryOverheadBytes: options.entryOverheadBytes ?? 0,
      inflightMessagesMax: options.inflightMessagesMax ?? 256,
      uncommittedBytesMax: options.uncommittedBytesMax ?? 64 * MIB,
      committedBytesMax: options.committedBytesMax ?? 64 * MIB,
      pendingReadsMax: options.pendingReadsMax ?? 65536,
      preVote: options.preVote ?? true,
      checkQuorum: options.checkQuorum ?? true,
      readMode: options.readMode ?? "safe",
      quiesceTicks: options.quiesceTicks ?? 0,
    });
    this.#previousHardState = this.#raft.hardState();
    this.#previousSoftState = this.#softState();
  }

  /** Advances logical time by one tick (elections, heartbeats, check-quorum). */
  tick(): void {
    this.#raft.tick();
  }

  /** This node's role now (cheap, unlike {@linkcode status}). */
  get role(): Role {
    return this.#raft.role;
  }

  /** The leader this node knows now, if any (cheap, unlike {@linkcode status}). */
  get leader(): PeerId | undefined {
    return this.#raft.leader;
  }

  /** Whether the group is quiesced here: a tick does nothing until something wakes it. */
  get quiesced(): boolean {
    return this.#raft.quiesced;
  }

  /**
   * Ends quiescence. `leaderLost`: the host stopped hearing from the leader's node, so this
   * follower drops the leader's lease at once (votes, and campaigns within an election timeout).
   */
  wake(leaderLost = false): void {
    this.#raft.wake(leaderLost);
  }

  /** Feeds a message received from a peer. Messages for other nodes are a host bug. */
  step(message: Message): void {
    assert(message.to === this.#raft.id, `Message for ${message.to} stepped into ${this.#raft.id}`);
    this.#raft.step(message);
  }

  /** Starts an election now (skipping the timeout), e.g. to bootstrap a group. */
  campaign(): CampaignResult {
    if (!this.#raft.promotable()) return { kind: "notPromotable" };
    if (this.#raft.role !== "leader") {
      this.#raft.campaign(this.#raft.options.preVote ? "preElection" : "election");
    }
    return { kind: "ok" };
  }

  /** Proposes `data` for the log. Only the leader accepts proposals. */
  propose(data: Uint8Array): ProposeResult {
    return this.#raft.propose(data);
  }

  /** Proposes a single-server membership change; at most one may be pending. */
  proposeConfChange(change: ConfChange): ProposeResult {
    return this.#raft.proposeConfChange(change);
  }

  /**
   * Applies a committed `confChange` entry. Call it when applying the entry,
   * in log order; persist the returned membership along with the applied index.
   */
  applyConfChange(entry: Entry): ConfState {
    return this.#raft.applyConfChange(entry);
  }

  /** Requests a linearizable read; the answer comes as a `ReadState` with `requestId`. */
  readIndex(requestId: number): ReadIndexResult {
    return this.#raft.readIndex(requestId);
  }

  /** Asks the leader to hand leadership to `target` once it is caught up. */
  transferLeader(target: PeerId): TransferResult {
    return this.#raft.transferLeader(target);
  }

  /** Reports the outcome of sending a snapshot to `id` (etcd's ReportSnapshot). */
  reportSnapshot(id: PeerId, status: "success" | "failure"): void {
    this.#raft.reportSnapshot(id, status);
  }

  /** Reports that the last message to `id` could not be delivered. */
  reportUnreachable(id: PeerId): void {
    this.#raft.reportUnreachable(id);
  }

  /** Tells the core that entries a `LogReader` reported `unavailable` can now be read. */
  onEntriesFetched(): void {
    this.#committedUnavailable = false;
    this.#raft.onEntriesFetched();
  }

  /** Whether {@linkcode ready} would return something to do. */
  hasReady(): boolean {
    assert(this.#outstanding === undefined, "hasReady() called before advance()");
    const raft = this.#raft;
    raft.flush();
    const soft = this.#previousSoftState;
    if (raft.leader !== soft.leader || raft.role !== soft.role) return true;
    const hard = this.#previousHardState;
    if (raft.term !== hard.term || raft.vote !== hard.vote) return true;
    if (raft.log.committed !== hard.commit) return true;
    if (raft.log.unstableEntries().length > 0 || raft.log.hasPendingSnapshot()) return true;
    if (raft.messages.length > 0 || raft.readStates.length > 0) return true;
    return !this.#committedUnavailable && raft.log.hasNextCommittedEntries();
  }

  /**
   * The snapshot the node accepted from a leader and has not yet handed out in a Ready (a host
   * that stages snapshot data aside learns here whether a stepped snapshot was taken).
   */
  pendingSnapshot(): Snapshot | undefined {
    return this.#raft.log.unstable.snapshot;
  }

  /** Collects what the host must persist, send and apply. See {@linkcode Ready}. */
  ready(): Ready {
    assert(this.#outstanding === undefined, "ready() called before advance()");
    const raft = this.#raft;
    raft.flush();
    const softState = this.#softState();
    const hardState = raft.hardState();
    const entries = [...raft.log.unstableEntries()];
    const snapshot = raft.log.unstable.snapshot;
    const hardChanged = !sameHardState(hardState, this.#previousHardState);
    const ready: Ready = {
      number: ++this.#readyNumber,
      softState: sameSoftState(softState, this.#previousSoftState) ? undefined : softState,
      hardState: hardChanged ? hardState : undefined,
      entries,
      snapshot,
      committedEntries: this.#committedEntries(),
      messages: raft.takeMessages(),
      readStates: raft.takeReadStates(),
      mustSync: entries.length > 0 || snapshot !== undefined ||
        hardState.term !== this.#previousHardState.term ||
        hardState.vote !== this.#previousHardState.vote,
    };
    this.#previousSoftState = softState;
    this.#previousHardState = hardState;
    this.#outstanding = ready;
    return ready;
  }

  #committedEntries(): readonly Entry[] {
    if (this.#committedUnavailable) return [];
    const result = this.#raft.log.nextCommittedEntries(this.#raft.options.committedBytesMax);
    switch (result.kind) {
      case "ok":
        return result.entries;
      case "unavailable":
        this.#committedUnavailable = true;
        return [];
      case "compacted":
        return assertNever("Committed entries were compacted before being applied");
    }
  }

  /** Acknowledges that `ready` was carried out: persisted, sent and applied. */
  advance(ready: Ready): void {
    assert(
      this.#outstanding === ready,
      `advance() of Ready ${ready.number} that is not outstanding`,
    );
    this.#outstanding = undefined;
    const log = this.#raft.log;
    if (ready.snapshot !== undefined) {
      log.stableSnapshotTo(ready.snapshot.metadata.index);
      log.appliedTo(ready.snapshot.metadata.index);
    }
    const lastEntry = ready.entries[ready.entries.length - 1];
    if (lastEntry !== undefined) log.stableTo(lastEntry.index, lastEntry.term);
    const lastCommitted = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastCommitted !== undefined) {
      log.appliedTo(lastCommitted.index);
      this.#raft.reduceUncommitted(ready.committedEntries);
    }
  }

  /** The node's current state. */
  status(): Status {
    const raft = this.#raft;
    const peers: PeerStatus[] = [];
    if (raft.role === "leader") {
      for (const [id, pr] of raft.progress) {
        peers.push({
          id,
          match: pr.match,
          next: pr.next,
          state: pr.state,
          inflightMessages: pr.inflights.count,
        });
      }
      peers.sort((a, b) => a.id - b.id);
    }
    return {
      id: raft.id,
      term: raft.term,
      vote: raft.vote,
      role: raft.role,
      leader: raft.leader,
      commit: raft.log.committed,
      applied: raft.log.applied,
      lastIndex: raft.log.lastIndex(),
      confState: raft.confState(),
      transferee: raft.transferee,
      promiseTicks: raft.promiseTicks,
      peers,
    };
  }

  #softState(): SoftState {
    return { leader: this.#raft.leader, role: this.#raft.role };
  }
}

/** A Ready's messages split by when they may leave; see {@linkcode splitMessages}. */
export interface SplitMessages {
  /** Messages that may be sent before the Ready's writes are persisted. */
  readonly early: readonly Message[];
  /** Messages that must wait until they are. */
  readonly late: readonly Message[];
}

/**
 * Splits `ready.messages` into those a host may send while it persists the Ready's writes and
 * those that must wait for them (Raft thesis §10.2.1: a leader may write its own log in parallel
 * with replicating it). Early are a leader's appends and heartbeats, when the Ready changes
 * neither term nor vote (`persisted` is the hard state stored before it), brings no snapshot, and
 * the message's commit index is below the Ready's first new entry. Everything else is late:
 * answers (an acknowledgement promises the entries are durable), votes, snapshots, TimeoutNow.
 *
 * The core counts a leader's own new entries as matched at once; that stays safe with early sends
 * only because a host steps no message between {@linkcode RawNode.ready} and
 * {@linkcode RawNode.advance}: an acknowledgement that could commit an entry is handled after the
 * Ready that wrote the entry is persisted. The commit bound keeps a single voter (which commits
 * its entries as it appends them) from telling learners of a commit it has not yet persisted.
 */
export function splitMessages(ready: Ready, persisted: HardState): SplitMessages {
  const hard = ready.hardState;
  const voteChanged = hard !== undefined &&
    (hard.term !== persisted.term || hard.vote !== persisted.vote);
  if (voteChanged || ready.snapshot !== undefined) return { early: [], late: ready.messages };
  const firstNew = ready.entries[0]?.index ?? Infinity;
  const early: Message[] = [];
  const late: Message[] = [];
  for (const message of ready.messages) {
    const leaderMessage = message.type === "append" || message.type === "heartbeat";
    if (leaderMessage && message.commit < firstNew) early.push(message);
    else late.push(message);
  }
  return { early, late };
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.leader === b.leader && a.role === b.role;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function assertNever(message: string): never {
  assert(false, message);
}
