/**
 * The Raft state machine proper (etcd's `raft` struct): roles, elections,
 * replication, commitment, membership, ReadIndex and leader transfer. The
 * public wrapper is `RawNode`; this class is private to the folder so that
 * table-driven tests can drive it rule by rule.
 *
 * @module
 */

import { assert, unreachable } from "./_assert.ts";
import { Progress } from "./_progress.ts";
import { committedIndex, majority, voteResult } from "./_quorum.ts";
import { idx, RaftLog } from "./_raft_log.ts";
import type {
  AppendMessage,
  AppendResponseMessage,
  HeartbeatMessage,
  HeartbeatResponseMessage,
  Message,
  SnapshotMessage,
  TimeoutNowMessage,
  VoteMessage,
  VoteResponseMessage,
} from "./messages.ts";
import type { Prng } from "./prng.ts";
import type { LogReader } from "./storage.ts";
import {
  type ConfChange,
  type ConfState,
  createEntry,
  decodeConfChange,
  encodeConfChange,
  type Entry,
  type EntryType,
  type HardState,
  type LogIndex,
  type PeerId,
  type Snapshot,
  type Term,
} from "./types.ts";

/** A node's role (paper figure 4, plus the pre-vote phase of thesis §9.6). */
export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/**
 * How the leader confirms leadership for reads: `safe` runs a heartbeat
 * round per batch of reads (thesis §6.4); `leaseBased` serves a read at
 * once while the leader holds a lease (thesis §6.4.1): a majority acknowledged
 * a heartbeat sent less than `electionTicks - 2` ticks ago, and each of them
 * refuses to vote for `electionTicks` ticks after hearing from the leader.
 * Clock assumption: ticks advance at the same rate on every node, to within
 * one tick per election timeout (bounded drift), and each node takes a tick
 * once it is due, before it steps the messages that arrived after that (no
 * long pauses of one node's tick while others run). Of the two ticks of margin
 * one covers the rounding of tick counts at both ends, one the drift. A leader
 * that sent TimeoutNow holds no lease for the rest of its term; without a
 * lease, reads fall back to a heartbeat round.
 * Every node of a group must use the same mode: in `leaseBased` mode a node
 * that (re)starts ignores vote requests for its first `electionTicks` ticks
 * (it may have acknowledged a leader just before it crashed), so an explicit
 * `campaign()` right after start only succeeds once that has passed.
 */
export type ReadMode = "safe" | "leaseBased";

/** Ticks a lease ends before the followers' promise not to vote does (see ReadMode). */
const LEASE_MARGIN_TICKS = 2;

/** The tunables of the core. All limits are required and positive. */
export interface RaftOptions {
  readonly id: PeerId;
  readonly storage: LogReader;
  readonly prng: Prng;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly applied: LogIndex;
  readonly appendBytesMax: number;
  /** Bytes each entry counts besides its data when bounding messages and Readies. */
  readonly entryOverheadBytes: number;
  readonly inflightMessagesMax: number;
  readonly uncommittedBytesMax: number;
  readonly committedBytesMax: number;
  readonly pendingReadsMax: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readMode: ReadMode;
  /**
   * Idle ticks after which a leader quiesces its group (0: never); see {@linkcode Raft.quiesced}.
   */
  readonly quiesceTicks: number;
}

/** The outcome of a ReadIndex request, reported through `Ready.readStates`. */
export type ReadState =
  /** Serve the read once the applied index reaches `index`. */
  | { readonly kind: "ready"; readonly requestId: number; readonly index: LogIndex }
  /** Leadership was lost before the read was confirmed; the read may be retried elsewhere. */
  | { readonly kind: "dropped"; readonly requestId: number };

/** The result of a proposal. */
export type ProposeResult =
  | { readonly kind: "ok"; readonly index: LogIndex; readonly term: Term }
  | { readonly kind: "notLeader"; readonly leader: PeerId | undefined }
  /** The uncommitted bytes bound is hit (RESOURCE_EXHAUSTED); retry later. */
  | { readonly kind: "overloaded"; readonly uncommittedBytes: number }
  /** A leader transfer is in progress; proposals resume after it ends. */
  | { readonly kind: "transferring"; readonly transferee: PeerId }
  /** Another configuration change is not applied yet. */
  | { readonly kind: "confChangePending"; readonly pendingIndex: LogIndex }
  | { readonly kind: "invalid"; readonly reason: string };

/** The result of a ReadIndex request. */
export type ReadIndexResult =
  /**
   * Accepted: a `ReadState` with this request id will appear in a later Ready. `leased`: confirmed
   * at once under the leader's lease (the next Ready has it), not by a heartbeat round.
   */
  | { readonly kind: "ok"; readonly leased: boolean }
  | { readonly kind: "notLeader"; readonly leader: PeerId | undefined }
  /** `pendingReadsMax` reads are waiting already (RESOURCE_EXHAUSTED); retry later. */
  | { readonly kind: "overloaded"; readonly pendingReads: number };

/** The result of a leader transfer request. */
export type TransferResult =
  | { readonly kind: "ok" }
  | { readonly kind: "notLeader"; readonly leader: PeerId | undefined }
  | { readonly kind: "invalid"; readonly reason: string };

interface ReadBatch {
  /** The heartbeat round whose acknowledgements confirm this batch (0 until sent). */
  round: number;
  index: LogIndex;
  readonly requestIds: number[];
  readonly acks: Set<PeerId>;
}

type CampaignKind = "preElection" | "election" | "transfer";

/** The Raft state machine. */
export class Raft {
  readonly id: PeerId;
  readonly log: RaftLog;
  readonly options: RaftOptions;
  term: Term = 0 as Term;
  vote: PeerId | undefined = undefined;
  role: Role = "follower";
  leader: PeerId | undefined = undefined;
  voters: Set<PeerId> = new Set();
  learners: Set<PeerId> = new Set();
  confEpoch: LogIndex = idx(0);
  /** Replication progress of every member (including self); maintained on all roles. */
  readonly progress: Map<PeerId, Progress> = new Map();
  readonly votes: Map<PeerId, boolean> = new Map();
  messages: Message[] = [];
  readStates: ReadState[] = [];
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  transferee: PeerId | undefined = undefined;
  /** Index of the last proposed conf change; a new one waits until it is applied. */
  pendingConfIndex: LogIndex = idx(0);
  uncommittedBytes = 0;
  #broadcastPending = false;
  #readBatches: ReadBatch[] = [];
  #heartbeatRound = 0;
  /** Ticks since this node became leader. */
  #leaderTicks = 0;
  /** When (in #leaderTicks) each recent heartbeat round was sent. */
  #roundSentAt: Map<number, number> = new Map();
  /** Per voter: when the newest heartbeat round it acknowledged was sent. */
  #ackedSentAt: Map<PeerId, number> = new Map();
  /** A TimeoutNow went out this term: a transfer election may start at any time. */
  #timeoutNowSent = false;
  /** Ticks since this node started; see #inLease(). */
  #ticksSinceStart = 0;
  /**
   * In lease mode, #ticksSinceStart when this node last accepted a message from a leader: it
   * promised not to help elect another for an election timeout from then (see #inLease).
   */
  #heardLeaderAt = -Infinity;
  /**
   * Quiescence (as CockroachDB's quiesced ranges, TiKV's hibernate regions): a leader whose group
   * has been fully replicated, applied and idle for `quiesceTicks` ticks tells its followers so
   * in a last heartbeat (`quiesce`), and from then on neither it nor they do anything on a tick:
   * no heartbeats, no check-quorum, no election timer. Any message (but heartbeat answers), a
   * proposal, a read or a transfer at the leader, or the host's {@linkcode wake} ends it. A
   * follower cannot tell that its leader died while quiet: the host must watch the leader's node
   * and call `wake(true)` when it stops hearing from it.
   */
  quiesced = false;
  /** Ticks the leader's group has been quiescable in a row. */
  #idleTicks = 0;
  #readsAwaitingCommit: number[] = [];
  // Invariant: #pendingReads counts the request ids in #readBatches and #readsAwaitingCommit.
  #pendingReads = 0;

  constructor(options: RaftOptions) {
    assert(options.heartbeatTicks > 0, "heartbeatTicks must be > 0");
    assert(
      options.electionTicks > options.heartbeatTicks,
      "electionTicks must be > heartbeatTicks",
    );
    assert(options.appendBytesMax > 0, "appendBytesMax must be > 0");
    assert(options.uncommittedBytesMax > 0, "uncommittedBytesMax must be > 0");
    assert(options.committedBytesMax > 0, "committedBytesMax must be > 0");
    assert(options.pendingReadsMax > 0, "pendingReadsMax must be > 0");
    assert(
      options.readMode === "safe" || options.checkQuorum,
      "Lease-based reads require checkQuorum",
    );
    this.id = options.id;
    this.options = options;
    this.log = new RaftLog(options.storage, options.applied, options.entryOverheadBytes);
    const { hardState, confState } = options.storage.initialState();
    this.applyConfState(confState);
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.becomeFollower(this.term, undefined);
  }

  // ---------------------------------------------------------------- state

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  confState(): ConfState {
    return {
      voters: [...this.voters].sort((a, b) => a - b),
      learners: [...this.learners].sort((a, b) => a - b),
      epoch: this.confEpoch,
    };
  }

  /** Whether this node may campaign: it is a voter (not a learner, not removed). */
  promotable(): boolean {
    return this.voters.has(this.id);
  }

  committedInTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  takeMessages(): Message[] {
    const out = this.messages;
    this.messages = [];
    return out;
  }

  takeReadStates(): ReadState[] {
    const out = this.readStates;
    this.readStates = [];
    return out;
  }

  #send(message: Message): void {
    assert(message.to !== this.id, `Node ${this.id} sending ${message.type} to itself`);
    this.messages.push(message);
  }

  /** Replaces the membership with `confState` (bootstrap, restart, snapshot install). */
  applyConfState(confState: ConfState): void {
    this.voters = new Set(confState.voters);
    this.learners = new Set(confState.learners);
    this.confEpoch = confState.epoch;
    for (const id of [...this.progress.keys()]) {
      if (!this.voters.has(id) && !this.learners.has(id)) this.progress.delete(id);
    }
    for (const id of [...this.voters, ...this.learners]) this.#ensureProgress(id);
  }

  #ensureProgress(id: PeerId): void {
    if (this.progress.has(id)) return;
    const pr = new Progress(idx(this.log.lastIndex() + 1), this.options.inflightMessagesMax);
    if (id === this.id) pr.match = this.log.lastIndex();
    this.progress.set(id, pr);
  }

  // ---------------------------------------------------------------- roles

  #reset(newTerm: Term): void {
    if (newTerm !== this.term) {
      this.term = newTerm;
      this.vote = undefined;
    }
    this.leader = undefined;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.transferee = undefined;
    this.votes.clear();
    const last = this.log.lastIndex();
    for (const id of this.progress.keys()) {
      const fresh = new Progress(idx(last + 1), this.options.inflightMessagesMax);
      if (id === this.id) fresh.match = last;
      this.progress.set(id, fresh);
    }
    this.pendingConfIndex = idx(0);
    this.uncommittedBytes = 0;
    this.#broadcastPending = false;
    this.#dropReads();
    this.#leaderTicks = 0;
    this.#roundSentAt.clear();
    this.#ackedSentAt.clear();
    this.#timeoutNowSent = false;
    this.quiesced = false;
    this.#idleTicks = 0;
  }

  #resetRandomizedElectionTimeout(): void {
    const base = this.options.electionTicks;
    this.randomizedElectionTimeout = base + Math.floor(this.options.prng() * base);
  }

  becomeFollower(newTerm: Term, leader: PeerId | undefined): void {
    this.#reset(newTerm);
    this.role = "follower";
    this.leader = leader;
  }

  becomePreCandidate(): void {
    assert(this.role !== "leader", "A leader cannot become a pre-candidate");
    // Pre-vote changes neither term nor vote (thesis §9.6).
    this.votes.clear();
    this.leader = undefined;
    this.role = "preCandidate";
  }

  becomeCandidate(): void {
    assert(this.role !== "leader", "A leader cannot become a candidate");
    this.#reset((this.term + 1) as Term);
    this.vote = this.id;
    this.role = "candidate";
  }

  becomeLeader(): void {
    assert(this.role !== "follower", "A follower cannot become leader directly");
    this.#reset(this.term);
    this.role = "leader";
    this.leader = this.id;
    const self = this.progress.get(this.id);
    assert(self !== undefined, "A leader must be a member");
    self.becomeReplicate();
    self.recentActive = true;
    // No conf change until everything before this term is applied, which fixes
    // the single-server change bug (thesis §4.1, "a leader must commit an entry
    // in its term before changing the configuration").
    this.pendingConfIndex = this.log.lastIndex();
    this.#appendEntries([{ type: "normal", data: new Uint8Array(0) }]);
  }

  // ---------------------------------------------------------------- ticks

  tick(): void {
    this.#ticksSinceStart++;
    if (this.quiesced) return;
    if (this.role === "leader") this.#tickHeartbeat();
    else this.#tickElection();
  }

  #tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign(this.options.preVote ? "preElection" : "election");
    }
  }

  #tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    this.#leaderTicks++;
    this.#pruneRounds();
    if (this.electionElapsed >= this.options.electionTicks) {
      this.electionElapsed = 0;
      if (this.options.checkQuorum && !this.#quorumActive()) {
        // Check-quorum (thesis §6.2): a leader that cannot hear a majority steps down.
        this.becomeFollower(this.term, undefined);
        return;
      }
      // A transfer that did not finish within an election timeout is abandoned.
      this.transferee = undefined;
    }
    if (this.heartbeatElapsed >= this.options.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.#broadcastHeartbeat();
    }
    this.#maybeQuiesce();
  }

  #maybeQuiesce(): void {
    if (this.options.quiesceTicks === 0) return;
    if (!this.#quiescable()) {
      this.#idleTicks = 0;
      return;
    }
    if (++this.#idleTicks < this.options.quiesceTicks) return;
    this.quiesced = true;
    this.#idleTicks = 0;
    // No lease survives a quiet period: the followers may elect another leader meanwhile, and
    // this node's ticks stop while it is quiet. The rounds go too, so that answers to a round sent
    // before the quiet heartbeat, arriving after it, cannot bring the lease back.
    this.#dropLease();
    this.#sendHeartbeats(0, true);
  }

  /** Forgets every acknowledged round and every round in flight: no lease until a new round. */
  #dropLease(): void {
    this.#ackedSentAt.clear();
    this.#roundSentAt.clear();
  }

  /** Whether every member has the whole log, all of it committed and applied, nothing pending. */
  #quiescable(): boolean {
    const last = this.log.lastIndex();
    if (this.log.committed !== last || this.log.applied !== last) return false;
    if (this.transferee !== undefined || this.#pendingReads > 0 || this.#broadcastPending) {
      return false;
    }
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      if (pr.match !== last || pr.state !== "replicate" || pr.inflights.count > 0) return false;
    }
    return true;
  }

  /**
   * Ends quiescence (a no-op when not quiesced). A leader heartbeats at once and must hear from a
   * majority again before its next check-quorum. A follower told `leaderLost` (the host stopped
   * hearing from the leader's node) no longer honours the leader's lease: it votes at once and
   * campaigns within an election timeout.
   */
  wake(leaderLost: boolean): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.#idleTicks = 0;
    if (this.role === "leader") {
      this.electionElapsed = 0;
      this.heartbeatElapsed = 0;
      // A lease needs answers to a round sent after the quiet spell.
      this.#dropLease();
      for (const [id, pr] of this.progress) pr.recentActive = id === this.id;
      this.#broadcastHeartbeat();
      return;
    }
    if (leaderLost) {
      this.electionElapsed = Math.max(this.electionElapsed, this.options.electionTicks);
      // The quiet leader dropped its lease when it quiesced: nothing rests on the promise.
      this.#heardLeaderAt = -Infinity;
    }
  }

  #quorumActive(): boolean {
    let active = 0;
    for (const id of this.voters) {
      const pr = this.progress.get(id);
      if (id === this.id || pr?.recentActive) active++;
    }
    for (const [id, pr] of this.progress) pr.recentActive = id === this.id;
    return active >= majority(this.voters.size);
  }

  // ---------------------------------------------------------------- elections

  campaign(kind: CampaignKind): void {
    if (!this.promotable()) return;
    // In lease mode its own vote would break its promise to a leader's lease. (Not leader
    // stickiness: the election timer resets electionElapsed just before it calls this.)
    if (kind !== "transfer" && this.#leasePromiseTicks() > 0) return;
    this.wake(false);
    // A committed membership change not yet applied may change who may vote;
    // wait until the host applied it (as etcd's raft does).
    if (this.#hasUnappliedConfChange()) return;
    let type: VoteMessage["type"];
    let voteTerm: Term;
    if (kind === "preElection") {
      this.becomePreCandidate();
      type = "requestPreVote";
      voteTerm = (this.term + 1) as Term;
    } else {
      this.becomeCandidate();
      type = "requestVote";
      voteTerm = this.term;
    }
    this.votes.set(this.id, true);
    if (voteResult(this.voters, this.votes) === "won") {
      if (kind === "preElection") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    const lastLogIndex = this.log.lastIndex();
    const lastLogTerm = this.log.lastTerm();
    for (const to of [...this.voters].sort((a, b) => a - b)) {
      if (to === this.id) continue;
      this.#send({
        type,
        from: this.id,
        to,
        term: voteTerm,
        lastLogIndex,
        lastLogTerm,
        transfer: kind === "transfer",
      });
    }
  }

  #hasUnappliedConfChange(): boolean {
    const { applied, committed } = this.log;
    if (applied >= committed) return false;
    const result = this.log.slice(idx(applied + 1), idx(committed + 1), Number.MAX_SAFE_INTEGER);
    if (result.kind !== "ok") return true;
    return result.entries.some((e) => e.type === "confChange");
  }

  // ---------------------------------------------------------------- step

  step(m: Message): void {
    // A heartbeat's answer carries nothing a quiet leader needs; a quiesce heartbeat keeps quiet.
    const quiet = m.type === "heartbeatResponse" || (m.type === "heartbeat" && m.quiesce);
    if (this.quiesced && !quiet) this.wake(false);
    if (m.term > this.term) {
      if (!this.#stepHigherTerm(m)) return;
    } else if (m.term < this.term) {
      this.#stepLowerTerm(m);
      return;
    }
    switch (m.type) {
      case "requestVote":
      case "requestPreVote":
        return this.#handleVoteRequest(m);
      case "requestVoteResponse":
      case "requestPreVoteResponse":
        return this.#handleVoteResponse(m);
      case "append":
        return this.#handleAppend(m);
      case "heartbeat":
        return this.#handleHeartbeat(m);
      case "snapshot":
        return this.#handleSnapshot(m);
      case "appendResponse":
        return this.#handleAppendResponse(m);
      case "heartbeatResponse":
        return this.#handleHeartbeatResponse(m);
      case "timeoutNow":
        return this.#handleTimeoutNow(m);
      default:
        return unreachable(m);
    }
  }

  /** Paper §5.1 "if RPC term > currentTerm, convert to follower", with pre-vote exceptions. */
  #stepHigherTerm(m: Message): boolean {
    if (m.type === "requestVote" || m.type === "requestPreVote") {
      // Leader stickiness (thesis §4.2.3): while we hear from a leader, ignore
      // vote requests unless a leader transfer asked for the election.
      if (this.#inLease() && !m.transfer) return false;
    }
    if (m.type === "requestPreVote") return true;
    if (m.type === "requestPreVoteResponse" && !m.reject) return true;
    const fromLeader = m.type === "append" || m.type === "heartbeat" || m.type === "snapshot";
    this.becomeFollower(m.term, fromLeader ? m.from : undefined);
    return true;
  }

  /**
   * Whether this node refuses to help elect a new leader (vote, pre-vote or campaign, unless a
   * leader transfer asked): it heard from the current leader less than an election timeout ago.
   * In lease mode that is a promise a leader's lease rests on, so it is counted from the last
   * message accepted from a leader whatever happened since: a higher term learnt from some other
   * message (a rejected pre-vote, say) forgets the leader but not the promise. A node that just
   * (re)started also waits an election timeout, since it may have acknowledged a leader's heartbeat
   * just before it crashed.
   */
  #inLease(): boolean {
    return this.#promiseTicks() > 0;
  }

  /** Ticks left of the promise #inLease keeps (0 when it would vote now). */
  #promiseTicks(): number {
    if (!this.options.checkQuorum) return 0;
    const timeout = this.options.electionTicks;
    // Leader stickiness (a leader counts too: it hears from itself).
    const sticky = this.leader === undefined ? 0 : Math.max(0, timeout - this.electionElapsed);
    return Math.max(sticky, this.#leasePromiseTicks());
  }

  /** In lease mode, ticks left until an election timeout passed since start and since a leader. */
  #leasePromiseTicks(): number {
    if (!this.options.checkQuorum || this.options.readMode !== "leaseBased") return 0;
    const timeout = this.options.electionTicks;
    const sinceStart = timeout - this.#ticksSinceStart;
    const sinceLeader = timeout - (this.#ticksSinceStart - this.#heardLeaderAt);
    return Math.max(0, sinceStart, sinceLeader);
  }

  /** See {@linkcode #promiseTicks} (for status). */
  get promiseTicks(): number {
    return this.#promiseTicks();
  }

  #stepLowerTerm(m: Message): void {
    const guarded = this.options.checkQuorum || this.options.preVote;
    if (guarded && (m.type === "append" || m.type === "heartbeat")) {
      // A stale leader (or a node rejoining after a partition) learns our term
      // and steps down, instead of being ignored forever.
      this.#send({
        type: "appendResponse",
        from: this.id,
        to: m.from,
        term: this.term,
        reject: false,
        index: idx(0),
        hintIndex: idx(0),
        hintTerm: 0 as Term,
      });
    } else if (m.type === "requestPreVote") {
      this.#send({
        type: "requestPreVoteResponse",
        from: this.id,
        to: m.from,
        term: this.term,
        reject: true,
      });
    }
  }

  #handleVoteRequest(m: VoteMessage): void {
    const responseType = m.type === "requestVote"
      ? "requestVoteResponse"
      : "requestPreVoteResponse";
    // In lease mode a vote request of this term is refused while the promise holds too (a term
    // learnt without a leader does not free it; at a higher term #stepHigherTerm refused already).
    const promised = !m.transfer && this.#leasePromiseTicks() > 0;
    const canVote = !promised && (this.vote === m.from ||
      (this.vote === undefined && this.leader === undefined) ||
      (m.type === "requestPreVote" && m.term > this.term));
    if (canVote && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm)) {
      // A pre-vote is answered in the term the candidate would use.
      this.#send({ type: responseType, from: this.id, to: m.from, term: m.term, reject: false });
      if (m.type === "requestVote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.#send({ type: responseType, from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  #handleVoteResponse(m: VoteResponseMessage): void {
    const expected = this.role === "candidate"
      ? "requestVoteResponse"
      : this.role === "preCandidate"
      ? "requestPreVoteResponse"
      : undefined;
    if (m.type !== expected) return;
    this.votes.set(m.from, !m.reject);
    switch (voteResult(this.voters, this.votes)) {
      case "won":
        if (this.role === "preCandidate") this.campaign("election");
        else this.becomeLeader();
        return;
      case "lost":
        this.becomeFollower(this.term, undefined);
        return;
      case "pending":
        return;
    }
  }

  /** A message from the current term's leader: candidates give up, everyone resets the timer. */
  #acceptLeader(from: PeerId): boolean {
    if (this.role === "leader") return false;
    if (this.role !== "follower") this.becomeFollower(this.term, from);
    this.electionElapsed = 0;
    this.#heardLeaderAt = this.#ticksSinceStart;
    this.leader = from;
    return true;
  }

  #handleAppend(m: AppendMessage): void {
    if (!this.#acceptLeader(m.from)) return;
    if (m.prevLogIndex < this.log.committed) {
      this.#sendAppendResponse(m.from, { reject: false, index: this.log.committed });
      return;
    }
    const prev = { index: m.prevLogIndex, term: m.prevLogTerm };
    const lastNew = this.log.maybeAppend(prev, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.#sendAppendResponse(m.from, { reject: false, index: lastNew });
      return;
    }
    // Fast backtracking: point the leader at our last entry whose term is at
    // most the rejected term, so it skips a whole conflicting term per round.
    const probe = idx(Math.min(m.prevLogIndex, this.log.lastIndex()));
    const hintIndex = this.log.findConflictByTerm(probe, m.prevLogTerm);
    const hintTerm = this.log.term(hintIndex) ?? (0 as Term);
    this.#sendAppendResponse(m.from, { reject: true, index: m.prevLogIndex, hintIndex, hintTerm });
  }

  #sendAppendResponse(
    to: PeerId,
    fields: { reject: boolean; index: LogIndex; hintIndex?: LogIndex; hintTerm?: Term },
  ): void {
    this.#send({
      type: "appendResponse",
      from: this.id,
      to,
      term: this.term,
      reject: fields.reject,
      index: fields.index,
      hintIndex: fields.hintIndex ?? idx(0),
      hintTerm: fields.hintTerm ?? (0 as Term),
    });
  }

  #handleHeartbeat(m: HeartbeatMessage): void {
    if (!this.#acceptLeader(m.from)) return;
    this.log.commitTo(m.commit);
    if (m.quiesce) {
      // Quiet only with the leader's whole log; else stay awake (the timer runs, and an election
      // attempt wakes the leader, which then brings this node up to date).
      const caughtUp = this.log.lastIndex() === m.commit && this.log.committed === m.commit;
      this.quiesced = caughtUp;
      if (caughtUp) return;
    }
    this.#send({
      type: "heartbeatResponse",
      from: this.id,
      to: m.from,
      term: this.term,
      round: m.round,
    });
  }

  #handleSnapshot(m: SnapshotMessage): void {
    if (!this.#acceptLeader(m.from)) return;
    if (this.restore(m.snapshot)) {
      this.#sendAppendResponse(m.from, { reject: false, index: this.log.lastIndex() });
    } else {
      this.#sendAppendResponse(m.from, { reject: false, index: this.log.committed });
    }
  }

  /** Installs a leader's snapshot; reports whether the log was replaced. */
  restore(snapshot: Snapshot): boolean {
    const meta = snapshot.metadata;
    if (meta.index <= this.log.committed) return false;
    // The snapshot's membership may predate this node's addition (a snapshot
    // taken before the conf change that added it); the node then learns of
    // itself from the log that follows, so it is accepted either way.
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We already have the snapshot's last entry: just move the commit index.
      this.log.commitTo(meta.index);
      return false;
    }
    this.log.restore(snapshot);
    this.progress.clear();
    this.applyConfState(meta.confState);
    return true;
  }

  #handleTimeoutNow(_m: TimeoutNowMessage): void {
    if (this.role === "leader") return;
    this.campaign("transfer");
  }

  // ---------------------------------------------------------------- leader: replication

  #handleAppendResponse(m: AppendResponseMessage): void {
    if (this.role !== "leader") return;
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      const hint = m.hintTerm > 0
        ? this.log.findConflictByTerm(m.hintIndex, m.hintTerm)
        : m.hintIndex;
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.#sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    this.#advanceProgressState(pr, m.index);
    // A new commit index is broadcast on its own only when it commits a configuration change (a
    // removed member learns its removal, the rest apply it promptly). Otherwise it rides on the
    // next append or heartbeat (within a heartbeat interval): that saves an empty append and its
    // answer per follower and commit, at no cost to latency (clients are answered on commit).
    const before = this.log.committed;
    if (this.maybeCommit() && this.pendingConfIndex > before) this.#broadcastPending = true;
    // A paused follower resumes now, unless the pending broadcast covers it.
    else if (wasPaused && !this.#broadcastPending) this.#sendAppend(m.from, true);
    while (this.#sendAppend(m.from, false)) { /* fill the pipeline */ }
    if (m.from === this.transferee && pr.match === this.log.lastIndex()) {
      this.#sendTimeoutNow(m.from);
    }
  }

  #advanceProgressState(pr: Progress, acked: LogIndex): void {
    switch (pr.state) {
      case "probe":
        pr.becomeReplicate();
        return;
      case "snapshot":
        if (pr.match >= pr.pendingSnapshot) pr.becomeProbe();
        return;
      case "replicate":
        pr.inflights.freeLE(acked);
        return;
    }
  }

  #handleHeartbeatResponse(m: HeartbeatResponseMessage): void {
    if (this.role !== "leader") return;
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.probeSent = false;
    if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirst();
    if (pr.match < this.log.lastIndex()) this.#sendAppend(m.from, true);
    this.#acknowledgeRound(m.from, m.round);
  }

  /**
   * Commits the largest index a majority has, but only if it is from the
   * current term (paper §5.4.2, figure 8). Reports whether the commit moved.
   */
  maybeCommit(): boolean {
    const index = committedIndex(this.voters, (id) => this.progress.get(id)?.match ?? idx(0));
    if (!this.log.maybeCommit(index, this.term)) return false;
    if (this.#readsAwaitingCommit.length > 0) {
      const waiting = this.#readsAwaitingCommit;
      this.#readsAwaitingCommit = [];
      this.#pendingReads -= waiting.length;
      for (const requestId of waiting) this.readIndex(requestId);
    }
    return true;
  }

  /**
   * Sends one append (or a snapshot) to `to`. Reports whether a message was
   * sent; an empty append is sent only when `sendIfEmpty` (to carry the commit).
   */
  #sendAppend(to: PeerId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || to === this.id || pr.isPaused()) return false;
    const prevLogIndex = idx(pr.next - 1);
    const prevLogTerm = this.log.term(prevLogIndex);
    if (prevLogTerm === undefined) return this.#sendSnapshot(to, pr);
    const last = this.log.lastIndex();
    let entries: readonly Entry[] = [];
    if (pr.next <= last) {
      const result = this.log.slice(pr.next, idx(last + 1), this.options.appendBytesMax);
      if (result.kind === "compacted") return this.#sendSnapshot(to, pr);
      if (result.kind === "unavailable") return false;
      entries = result.entries;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    const commit = this.log.committed;
    this.#send({
      type: "append",
      from: this.id,
      to,
      term: this.term,
      prevLogIndex,
      prevLogTerm,
      entries,
      commit,
    });
    if (pr.state === "replicate") {
      if (entries.length > 0) {
        const lastSent = entries[entries.length - 1].index;
        pr.next = idx(lastSent + 1);
        pr.inflights.add(lastSent);
      }
    } else {
      pr.probeSent = true;
    }
    return true;
  }

  #sendSnapshot(to: PeerId, pr: Progress): boolean {
    const snapshot = this.log.snapshot();
    if (snapshot === undefined) return false;
    assert(snapshot.metadata.index > 0, `Need a snapshot for node ${to}, but there is none`);
    pr.becomeSnapshot(snapshot.metadata.index);
    this.#send({ type: "snapshot", from: this.id, to, term: this.term, snapshot });
    return true;
  }

  #broadcastAppend(): void {
    for (const id of this.progress.keys()) {
      if (id !== this.id) this.#sendAppend(id, true);
    }
  }

  #broadcastHeartbeat(): void {
    const round = ++this.#heartbeatRound;
    this.#roundSentAt.set(round, this.#leaderTicks);
    this.#sendHeartbeats(round, false);
  }

  /** A heartbeat to every other member, each with the commit index it may adopt. */
  #sendHeartbeats(round: number, quiesce: boolean): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      const commit = idx(Math.min(pr.match, this.log.committed));
      this.#send({
        type: "heartbeat",
        from: this.id,
        to: id,
        term: this.term,
        commit,
        round,
        quiesce,
      });
    }
  }

  /** Forgets rounds too old to matter for the lease (read batches only need round ids). */
  #pruneRounds(): void {
    const oldest = this.#leaderTicks - this.options.electionTicks;
    for (const [round, sentAt] of this.#roundSentAt) {
      if (sentAt >= oldest) return;
      this.#roundSentAt.delete(round);
    }
  }

  /**
   * Sends what accumulated during this turn: appends for new proposals or a
   * new commit index, and the heartbeat round of new reads. Called by RawNode
   * before it builds a Ready, so that many proposals share one message.
   */
  flush(): void {
    if (this.role !== "leader") return;
    if (this.#broadcastPending) {
      this.#broadcastPending = false;
      this.#broadcastAppend();
    }
    this.#flushReadBatch();
  }

  /** Retries appends after the host fetched entries that were unavailable. */
  onEntriesFetched(): void {
    if (this.role === "leader") this.#broadcastPending = true;
  }

  reportSnapshot(id: PeerId, status: "success" | "failure"): void {
    const pr = this.progress.get(id);
    if (this.role !== "leader" || pr === undefined || pr.state !== "snapshot") return;
    if (status === "failure") pr.pendingSnapshot = idx(0);
    pr.becomeProbe();
    // Wait for an append reply (success) or the next heartbeat (failure) before probing.
    pr.probeSent = true;
  }

  reportUnreachable(id: PeerId): void {
    const pr = this.progress.get(id);
    if (this.role !== "leader" || pr === undefined) return;
    if (pr.state === "replicate") pr.becomeProbe();
  }

  // ---------------------------------------------------------------- proposals

  #appendEntries(items: readonly { type: EntryType; data: Uint8Array }[]): LogIndex {
    this.wake(false);
    let index = this.log.lastIndex();
    const entries = items.map((item) => {
      index = idx(index + 1);
      return createEntry({ term: this.term, index, type: item.type, data: item.data });
    });
    const last = this.log.append(entries);
    const self = this.progress.get(this.id);
    assert(self !== undefined, "A leader must track itself");
    self.maybeUpdate(last);
    this.maybeCommit();
    this.#broadcastPending = true;
    return last;
  }

  #checkProposable(): ProposeResult | undefined {
    if (this.role !== "leader") return { kind: "notLeader", leader: this.leader };
    if (this.transferee !== undefined) return { kind: "transferring", transferee: this.transferee };
    return undefined;
  }

  #reserveUncommitted(bytes: number): boolean {
    // An empty log of pending work always accepts one proposal, however big.
    if (
      this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.options.uncommittedBytesMax
    ) {
      return false;
    }
    this.uncommittedBytes += bytes;
    return true;
  }

  propose(data: Uint8Array): ProposeResult {
    const refused = this.#checkProposable();
    if (refused !== undefined) return refused;
    if (!this.#reserveUncommitted(data.length)) {
      return { kind: "overloaded", uncommittedBytes: this.uncommittedBytes };
    }
    const index = this.#appendEntries([{ type: "normal", data }]);
    return { kind: "ok", index, term: this.term };
  }

  proposeConfChange(change: ConfChange): ProposeResult {
    const refused = this.#checkProposable();
    if (refused !== undefined) return refused;
    if (this.pendingConfIndex > this.log.applied) {
      return { kind: "confChangePending", pendingIndex: this.pendingConfIndex };
    }
    const reason = this.#validateConfChange(change);
    if (reason !== undefined) return { kind: "invalid", reason };
    const data = encodeConfChange(change);
    if (!this.#reserveUncommitted(data.length)) {
      return { kind: "overloaded", uncommittedBytes: this.uncommittedBytes };
    }
    const index = this.#appendEntries([{ type: "confChange", data }]);
    this.pendingConfIndex = index;
    return { kind: "ok", index, term: this.term };
  }

  #validateConfChange(change: ConfChange): string | undefined {
    const id = change.nodeId;
    switch (change.type) {
      case "addNode":
        return this.voters.has(id) ? `Cannot add node ${id}: it is already a voter` : undefined;
      case "addLearner":
        if (this.voters.has(id)) return `Cannot add learner ${id}: it is a voter (no demotion)`;
        return this.learners.has(id)
          ? `Cannot add learner ${id}: it is already a learner`
          : undefined;
      case "removeNode":
        if (!this.voters.has(id) && !this.learners.has(id)) {
          return `Cannot remove node ${id}: it is not a member`;
        }
        return this.voters.has(id) && this.voters.size === 1
          ? `Cannot remove node ${id}: it is the last voter`
          : undefined;
    }
  }

  /** Called when the host applied committed entries: frees their uncommitted budget. */
  reduceUncommitted(entries: readonly Entry[]): void {
    if (this.role !== "leader") return;
    let bytes = 0;
    for (const e of entries) bytes += e.data.length;
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - bytes);
  }

  // ---------------------------------------------------------------- membership

  /**
   * Applies a committed configuration change entry (the host calls this when
   * it applies the entry). Takes effect now, on every replica at the same
   * log position; returns the new membership for the host to persist.
   */
  applyConfChange(entry: Entry): ConfState {
    assert(entry.type === "confChange", `Entry ${entry.index} is not a conf change`);
    const decoded = decodeConfChange(entry.data);
    assert(decoded.kind === "ok", `Committed conf change ${entry.index} does not decode`);
    // A change at or below the epoch is already part of this membership: a
    // replica created by the host with the group's current membership (and
    // epoch) then replicates the log from the start.
    if (entry.index <= this.confEpoch) return this.confState();
    const change = decoded.change;
    const id = change.nodeId;
    switch (change.type) {
      case "addNode":
        this.learners.delete(id);
        this.voters.add(id);
        this.#ensureProgress(id);
        break;
      case "addLearner":
        if (!this.voters.has(id)) {
          this.learners.add(id);
          this.#ensureProgress(id);
        }
        break;
      case "removeNode":
        this.voters.delete(id);
        this.learners.delete(id);
        if (id !== this.id) this.progress.delete(id);
        break;
    }
    this.confEpoch = entry.index;
    if (this.role === "leader") this.#afterLeaderConfChange(change);
    else if (!this.promotable() && this.role !== "follower") {
      // A (pre-)candidate that is no longer a voter gives up its campaign.
      this.becomeFollower(this.term, this.leader);
    }
    return this.confState();
  }

  #afterLeaderConfChange(change: ConfChange): void {
    if (change.type === "removeNode" && change.nodeId === this.id) {
      // The removed leader steps down once the change commits (thesis §4.2.2).
      this.becomeFollower(this.term, undefined);
      return;
    }
    if (this.transferee !== undefined && !this.voters.has(this.transferee)) {
      this.transferee = undefined;
    }
    this.maybeCommit();
    this.#broadcastPending = true;
  }

  // ---------------------------------------------------------------- leader transfer

  transferLeader(target: PeerId): TransferResult {
    if (this.role !== "leader") return { kind: "notLeader", leader: this.leader };
    this.wake(false);
    if (target === this.id) return { kind: "ok" };
    if (!this.voters.has(target)) {
      return { kind: "invalid", reason: `Cannot transfer leadership to ${target}: not a voter` };
    }
    if (this.transferee === target) return { kind: "ok" };
    // The transfer must finish within an election timeout (thesis §3.10).
    this.electionElapsed = 0;
    this.transferee = target;
    const pr = this.progress.get(target);
    assert(pr !== undefined, `No progress for voter ${target}`);
    if (pr.match === this.log.lastIndex()) this.#sendTimeoutNow(target);
    else this.#sendAppend(target, true);
    return { kind: "ok" };
  }

  #sendTimeoutNow(to: PeerId): void {
    this.#timeoutNowSent = true;
    this.#send({ type: "timeoutNow", from: this.id, to, term: this.term });
  }

  // ---------------------------------------------------------------- reads

  /**
   * ReadIndex (thesis §6.4). The read index is the commit index once the
   * leader has committed an entry of its term; it is released when a majority
   * acknowledged a heartbeat round sent after the request. Reads that arrive
   * in the same turn share one batch and one round.
   */
  readIndex(requestId: number): ReadIndexResult {
    if (this.role !== "leader") return { kind: "notLeader", leader: this.leader };
    this.wake(false);
    if (this.#pendingReads >= this.options.pendingReadsMax) {
      return { kind: "overloaded", pendingReads: this.#pendingReads };
    }
    this.#pendingReads++;
    if (!this.committedInTerm()) {
      this.#readsAwaitingCommit.push(requestId);
      return { kind: "ok", leased: false };
    }
    if (this.options.readMode === "leaseBased" && this.#leaseValid()) {
      this.#pendingReads--;
      this.readStates.push({ kind: "ready", requestId, index: this.log.committed });
      return { kind: "ok", leased: true };
    }
    this.#openReadBatch().requestIds.push(requestId);
    return { kind: "ok", leased: false };
  }

  /**
   * The leader lease (thesis §6.4.1): a majority acknowledged a heartbeat
   * sent less than an election timeout ago, minus two ticks of margin (one for
   * rounding tick counts, one for clock drift; see ReadMode), and each of them
   * ignores vote requests for an election timeout after hearing from us, so no
   * other leader can exist yet. A TimeoutNow voids the lease for the term.
   */
  #leaseValid(): boolean {
    if (this.#timeoutNowSent) return false;
    const sentAt: number[] = [];
    for (const id of this.voters) {
      sentAt.push(id === this.id ? this.#leaderTicks : this.#ackedSentAt.get(id) ?? -Infinity);
    }
    sentAt.sort((a, b) => b - a);
    const quorumSentAt = sentAt[majority(this.voters.size) - 1];
    return this.#leaderTicks - quorumSentAt + LEASE_MARGIN_TICKS < this.options.electionTicks;
  }

  #openReadBatch(): ReadBatch {
    const last = this.#readBatches[this.#readBatches.length - 1];
    if (last !== undefined && last.round === 0) return last;
    const batch: ReadBatch = {
      round: 0,
      index: idx(0),
      requestIds: [],
      acks: new Set([this.id]),
    };
    this.#readBatches.push(batch);
    return batch;
  }

  #flushReadBatch(): void {
    const last = this.#readBatches[this.#readBatches.length - 1];
    if (last === undefined || last.round !== 0) return;
    last.index = this.log.committed;
    last.round = this.#heartbeatRound + 1;
    this.#releaseReadBatches();
    if (this.#readBatches.length > 0) this.#broadcastHeartbeat();
  }

  #acknowledgeRound(from: PeerId, round: number): void {
    const sentAt = this.#roundSentAt.get(round);
    if (sentAt !== undefined && sentAt > (this.#ackedSentAt.get(from) ?? -Infinity)) {
      this.#ackedSentAt.set(from, sentAt);
    }
    for (const batch of this.#readBatches) {
      if (batch.round !== 0 && batch.round <= round) batch.acks.add(from);
    }
    this.#releaseReadBatches();
  }

  #releaseReadBatches(): void {
    const needed = majority(this.voters.size);
    while (this.#readBatches.length > 0) {
      const batch = this.#readBatches[0];
      if (batch.round === 0) return;
      let acks = 0;
      for (const id of batch.acks) if (this.voters.has(id)) acks++;
      if (acks < needed) return;
      this.#readBatches.shift();
      for (const requestId of batch.requestIds) {
        this.readStates.push({ kind: "ready", requestId, index: batch.index });
      }
      this.#pendingReads -= batch.requestIds.length;
    }
  }

  #dropReads(): void {
    for (const batch of this.#readBatches) {
      for (const requestId of batch.requestIds) {
        this.readStates.push({ kind: "dropped", requestId });
      }
    }
    for (const requestId of this.#readsAwaitingCommit) {
      this.readStates.push({ kind: "dropped", requestId });
    }
    this.#readBatches = [];
    this.#readsAwaitingCommit = [];
    this.#pendingReads = 0;
  }
}
