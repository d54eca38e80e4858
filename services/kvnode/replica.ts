/**
 * {@linkcode Replica}: one hosted member of a shard group — its Raft node, its log on LMDB, its
 * state machine, who its peers are, and the client requests waiting on it (proposals by log index,
 * reads by confirmation, under the lease or by ReadIndex round).
 *
 * A replica is touched only by the driver loop ({@linkcode ./driver.ts}), one turn at a time.
 *
 * @module
 */
import {
  type ConfState,
  decodeConfChange,
  type Entry,
  type LogIndex,
  type PeerId,
  type Prng,
  RawNode,
  type ReadMode,
  type Ready,
  type Term,
} from "@tinykv/raft";
import type { HashRange, ShardId } from "@tinykv/shard";
import { type NodeStorage, type ReadView, SPACE } from "./node_storage.ts";
import { PrefixSpace } from "./prefix_space.ts";
import { spacePrefix } from "./node_storage.ts";
import {
  SharedSnapshotSource,
  snapshotRecords,
  type SnapshotSource,
  stagedGeneration,
} from "./snapshot_stream.ts";
import { ReplicaLog } from "./replica_log.ts";
import { ENTRY_OVERHEAD_BYTES } from "./raft_codec.ts";
import type {
  Failure,
  GroupMachine,
  MachineSpaces,
  Outcome,
  ReplicaIdentity,
} from "./application.ts";
import { assert } from "./_assert.ts";
import { AppliedWaiters, ReadRounds } from "./replica_waiters.ts";

/** A member of a shard group and where it lives. */
export interface PeerAddress {
  readonly peerId: number;
  readonly nodeId: string;
  readonly address: string;
}

/** What a node keeps about each replica it hosts (the record under `01 peer id`). */
export interface ReplicaRecord {
  readonly shardId: ShardId;
  readonly peerId: number;
  readonly range: HashRange;
  /** Every member the replica has known, with its address: the bootstrap set plus conf changes. */
  readonly peers: readonly PeerAddress[];
  /** The membership to start from when the log holds nothing yet. */
  readonly initialConfState: ConfState;
}

/** Raft tunables a replica is created with (from `[raft]` of the config). */
export interface ReplicaTuning {
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** Idle ticks after which a leader quiesces its group; 0 for never. */
  readonly quiesceTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /**
   * How a leader confirms reads (the core's `readMode`; `safe`, a heartbeat round, when absent).
   * `leaseBased` needs `checkQuorum`, the same mode on every member, and ticks that keep pace with
   * the clock (the driver's `tickClock`).
   */
  readonly readMode?: ReadMode;
  readonly inflightMessagesMax: number;
  readonly messageBytesMax: number;
  readonly uncommittedBytesMax: number;
  readonly snapshotEntries: number;
  /** Compact once the log holds this many payload bytes past its start. */
  readonly snapshotLogBytes: number;
  /**
   * Entries one turn deletes at most, beyond those applied since the last step, when compacting
   * by count ({@linkcode COMPACT_STEP_ENTRIES} when absent).
   */
  readonly compactStepEntries?: number;
  /** Bytes of committed entries one Ready hands over at most (the core's default when absent). */
  readonly committedBytesMax?: number;
  /** ReadIndex requests a leader holds at once at most (the core's default when absent). */
  readonly pendingReadsMax?: number;
}

/**
 * Entries a compaction due by count deletes in one turn, beyond those applied since its last step
 * ({@linkcode Replica.compactIfDue}). Deleting 7,500 at once took 50-100 ms under load.
 */
export const COMPACT_STEP_ENTRIES = 1_000;

/** A request waiting for its entry to apply. */
interface PendingProposal<R> {
  readonly term: Term;
  readonly resolve: (outcome: Outcome<R>) => void;
}

/** What applying one Ready did to the replica. */
export interface ApplySummary {
  /** The replica itself was removed from its group. */
  readonly removed: boolean;
  /** Applied conf changes, for logging: "added learner 12 on n3", … */
  readonly changes: readonly string[];
  /** A staged snapshot was installed: the generation it replaced, now garbage. */
  readonly replacedGeneration?: number;
}

const decoder = new TextDecoder();

/** What a replica tells its driver, so the driver need not look at every replica each turn. */
export interface ReplicaHooks {
  /** The replica learned where a peer lives (a conf change, or a peer's own message). */
  peersChanged(): void;
  /** The replica opened a snapshot view, to be released at the end of the turn. */
  // deno-lint-ignore no-explicit-any
  sourceOpened(replica: Replica<any, any>): void;
}

const NO_HOOKS: ReplicaHooks = { peersChanged() {}, sourceOpened() {} };

/** One replica of a shard group hosted on this node, running machines of type `M`. */
export class Replica<R, M extends GroupMachine<R>> {
  readonly record: ReplicaRecord;
  readonly log: ReplicaLog;
  readonly node: RawNode;
  readonly #open: (spaces: MachineSpaces, range: HashRange, replica: ReplicaIdentity) => M;
  #machine: M;
  /** Read views opened for snapshots the core asked for, by snapshot index. */
  readonly #sources = new Map<number, SharedSnapshotSource>();
  readonly #peers: Map<number, PeerAddress>;
  /** Peers known only from their own messages, not (yet) from the configuration. */
  readonly #unconfirmed = new Set<number>();
  readonly #hooks: ReplicaHooks;
  /** Proposals by log index. */
  readonly pending = new Map<number, PendingProposal<R>>();
  /** Linearizable reads on their way through confirmation (the lease or a ReadIndex round). */
  readonly reads = new ReadRounds<R>();
  /** Where the compaction under way is heading: entries up to it go, a step per turn. */
  #compactTarget = 0;
  /** The applied index at the last {@linkcode compactIfDue} (a step also covers what applied since). */
  #compactStepApplied: number | undefined;
  /** Counts since the replica was opened here, for metrics. */
  readonly counters = { proposals: 0, reads: 0, snapshotsSent: 0, snapshotsReceived: 0 };
  /** Admin calls waiting for their conf change to apply. */
  readonly appliedWaiters = new AppliedWaiters();
  readonly #store: NodeStorage;

  constructor(
    store: NodeStorage,
    options: {
      record: ReplicaRecord;
      tuning: ReplicaTuning;
      prng: Prng;
      /** Opens the application's state machine over one generation of the replica's spaces. */
      open: (spaces: MachineSpaces, range: HashRange, replica: ReplicaIdentity) => M;
      hooks?: ReplicaHooks;
    },
  ) {
    const { record, tuning } = options;
    this.#store = store;
    this.#open = options.open;
    this.#hooks = options.hooks ?? NO_HOOKS;
    this.record = record;
    this.#peers = new Map(record.peers.map((p) => [p.peerId, p]));
    this.log = new ReplicaLog(store, {
      peerId: record.peerId,
      initialConfState: record.initialConfState,
      snapshotTaken: (index) => this.#openSource(index),
    });
    this.#machine = this.#machineOf(this.log.generation, this.log.appliedState.applied);
    this.node = new RawNode({
      id: record.peerId as PeerId,
      storage: this.log,
      prng: options.prng,
      electionTicks: tuning.electionTicks,
      heartbeatTicks: tuning.heartbeatTicks,
      quiesceTicks: tuning.quiesceTicks,
      preVote: tuning.preVote,
      checkQuorum: tuning.checkQuorum,
      readMode: tuning.readMode,
      applied: this.log.appliedState.applied,
      appendBytesMax: tuning.messageBytesMax,
      // Count each entry's framing too, so an append message of many small entries stays
      // within the bound on the wire (the transport's batch holds any one message).
      entryOverheadBytes: ENTRY_OVERHEAD_BYTES,
      inflightMessagesMax: tuning.inflightMessagesMax,
      uncommittedBytesMax: tuning.uncommittedBytesMax,
      committedBytesMax: tuning.committedBytesMax,
      pendingReadsMax: tuning.pendingReadsMax,
    });
  }

  /** The state machine, over the spaces of the current generation. */
  get machine(): M {
    return this.#machine;
  }

  /** The generation of state-machine spaces in use. */
  get generation(): number {
    return this.log.generation;
  }

  #machineOf(generation: number, applied: number): M {
    const space = (tag: number) => this.#store.space(this.peerId, tag, generation);
    const spaces = {
      data: space(SPACE.data),
      sessions: space(SPACE.sessions),
      meta: space(SPACE.meta),
    };
    return this.#open(spaces, this.record.range, {
      shardId: this.record.shardId,
      peerId: this.record.peerId,
      applied,
    });
  }

  /**
   * A read view of the replica's spaces as committed now; between turns (in `Driver.inspect`)
   * that is exactly the state at its applied index. The caller reads it at leisure, then closes it.
   */
  openDataView(): { spaces: Record<"data" | "sessions" | "meta", PrefixSpace>; close(): void } {
    const view: ReadView = this.#store.readView();
    const generation = this.generation;
    const reader = (tag: number) =>
      new PrefixSpace(view, spacePrefix(this.peerId, generation, tag));
    return {
      spaces: {
        data: reader(SPACE.data),
        sessions: reader(SPACE.sessions),
        meta: reader(SPACE.meta),
      },
      close: () => view.close(),
    };
  }

  // The core asks for a snapshot between turns, when the committed storage is exactly the state
  // at the applied index: open the view now, it is that snapshot's data.
  #openSource(index: LogIndex): void {
    const open = this.#sources.get(index);
    if (open !== undefined && !open.closed) return;
    const { spaces, close } = this.openDataView();
    this.#sources.set(
      index,
      new SharedSnapshotSource(() => snapshotRecords(spaces), close),
    );
    this.#hooks.sourceOpened(this);
  }

  /** A handle on the data of the snapshot at `index` the core asked for, if its view is open. */
  takeSnapshotSource(index: number): SnapshotSource | undefined {
    const source = this.#sources.get(index);
    return source === undefined || source.closed ? undefined : source.acquire();
  }

  /**
   * Closes the views nobody took a handle on, and forgets closed ones (end of each turn); true
   * while some view is still open (a snapshot being sent holds it).
   */
  releaseSnapshotSources(): boolean {
    for (const [index, source] of this.#sources) {
      source.release();
      if (source.closed) this.#sources.delete(index);
    }
    return this.#sources.size > 0;
  }

  /** The members this replica knows the address of, by peer id. */
  get peers(): ReadonlyMap<number, PeerAddress> {
    return this.#peers;
  }

  /** Records where `peer` lives (a conf change, or the peer's own message says so). */
  setPeer(peer: PeerAddress): void {
    this.#peers.set(peer.peerId, peer);
    this.#unconfirmed.delete(peer.peerId);
    this.#hooks.peersChanged();
  }

  /**
   * Records where a peer lives as its own messages say (it must be answered): a peer that the
   * configuration does not list stays unconfirmed until it does (see {@linkcode isConfirmed}).
   */
  learnPeer(peer: PeerAddress): void {
    const { voters, learners } = this.log.appliedState.confState;
    const id = peer.peerId as PeerId;
    const fresh = !this.#peers.has(peer.peerId);
    this.#peers.set(peer.peerId, peer);
    if (fresh && !voters.includes(id) && !learners.includes(id)) this.#unconfirmed.add(peer.peerId);
    this.#hooks.peersChanged();
  }

  /** Whether `peerId` is known from the configuration (not only from its own messages). */
  isConfirmed(peerId: number): boolean {
    if (this.#peers.has(peerId) && !this.#unconfirmed.has(peerId)) return true;
    const { voters, learners } = this.log.appliedState.confState;
    return voters.includes(peerId as PeerId) || learners.includes(peerId as PeerId);
  }

  get shardId(): ShardId {
    return this.record.shardId;
  }

  get peerId(): number {
    return this.record.peerId;
  }

  /** The group's conf epoch as applied here. */
  get confEpoch(): number {
    return this.log.appliedState.confState.epoch;
  }

  /** The leader this replica knows of, with its address, if any. */
  leader(): PeerAddress | undefined {
    const leader = this.node.leader;
    return leader === undefined ? undefined : this.peers.get(leader);
  }

  /** Whether this replica knows a leader of its group (itself included). */
  knowsLeader(): boolean {
    return this.node.leader !== undefined;
  }

  /** Whether this replica currently leads its group. */
  isLeader(): boolean {
    return this.node.role === "leader";
  }

  /**
   * Inside the turn's transaction: persists a Ready, installs its snapshot and applies its
   * committed entries (answering their proposals after the commit, through `answers`). The driver
   * then calls {@linkcode compactIfDue}.
   */
  persistAndApply(ready: Ready, options: { answers: Array<() => void> }): ApplySummary {
    let replacedGeneration: number | undefined;
    if (ready.snapshot !== undefined) {
      this.counters.snapshotsReceived++;
      replacedGeneration = this.#installSnapshotData(
        ready.snapshot.data,
        ready.snapshot.metadata.index,
      );
      this.log.installSnapshot(ready.snapshot.metadata);
      this.#failPendingUpTo(ready.snapshot.metadata.index, options.answers);
    }
    this.log.append(ready.entries);
    if (ready.hardState !== undefined) this.log.setHardState(ready.hardState);
    const changes: string[] = [];
    let removed = false;
    let applied = false;
    for (const entry of ready.committedEntries) {
      if (entry.type === "confChange") {
        // Writes the applied state at once, the normal entries' before it included.
        const change = this.#applyConfChange(entry);
        changes.push(change.description);
        removed ||= change.removedSelf;
      } else {
        this.#applyNormal(entry, options.answers);
        applied = true;
      }
    }
    if (applied) {
      this.machine.flush();
      this.log.writeApplied();
    }
    this.log.assertConsistent();
    return { removed, changes, replacedGeneration };
  }

  /**
   * Installs a snapshot's data: a staged generation becomes current (O(1): its records were
   * written as they arrived), returning the generation it replaces; inline data (in-process
   * transports) is restored into the current generation.
   */
  #installSnapshotData(data: Uint8Array, index: number): number | undefined {
    const staged = stagedGeneration(data);
    if (staged === undefined) {
      const restored = this.machine.restore(data);
      if (restored.kind !== "ok") {
        throw new Error(`Cannot install snapshot of shard ${this.shardId}: ${restored.message}`);
      }
      return undefined;
    }
    const replaced = this.generation;
    this.log.setGeneration(staged);
    this.#machine = this.#machineOf(staged, index);
    return replaced;
  }

  #applyNormal(entry: Entry, answers: Array<() => void>): void {
    // An empty entry is a new leader's (Raft §8): nothing to apply. Anything the machine throws
    // aborts the turn's transaction and stops the node (see GroupMachine.apply).
    const outcome = entry.data.length > 0 ? this.machine.apply(entry) : undefined;
    const applied = { applied: entry.index, confState: this.log.appliedState.confState };
    // Written once, after the turn's run of applies (`persistAndApply`).
    this.log.setApplied(applied, { deferWrite: true });
    this.#answerProposal(entry, outcome, answers);
  }

  #applyConfChange(entry: Entry): { description: string; removedSelf: boolean } {
    const confState = this.node.applyConfChange(entry);
    const decoded = decodeConfChange(entry.data);
    let description = `conf change at ${entry.index}`;
    let removedSelf = false;
    if (decoded.kind === "ok") {
      const { change } = decoded;
      const context = parseContext(change.context);
      if (context !== undefined && change.type !== "removeNode") {
        this.setPeer({ peerId: change.nodeId, ...context });
      }
      const where = this.peers.get(change.nodeId)?.nodeId ?? "?";
      description = `${change.type} peer ${change.nodeId} on ${where} (epoch ${confState.epoch})`;
      removedSelf = change.type === "removeNode" && change.nodeId === this.peerId;
    }
    this.log.setApplied({ applied: entry.index, confState });
    this.#store.put(replicaRecordKey(this.peerId), encodeRecord(this.#currentRecord()));
    return { description, removedSelf };
  }

  #answerProposal(entry: Entry, outcome: Outcome<R> | undefined, answers: Array<() => void>) {
    const pending = this.pending.get(entry.index);
    if (pending === undefined) return;
    this.pending.delete(entry.index);
    if (pending.term === entry.term && outcome !== undefined) {
      answers.push(() => pending.resolve(outcome));
    } else {
      // Another leader's entry took this index: the proposal can never commit.
      answers.push(() => pending.resolve(lostProposal(this.shardId)));
    }
  }

  /**
   * Before a proposal at `index` in `term`: a proposal still pending there is from an earlier
   * term whose entry another leader's replaced in this node's log (it has led again since). That
   * entry may still be in another member's log and commit there, so its outcome is unknown; only
   * applying a different entry at its index proves it lost (`#answerProposal`). Two proposals at
   * one index in one term would be a bug.
   */
  replacePending(index: LogIndex, term: Term): void {
    const old = this.pending.get(index);
    if (old === undefined) return;
    assert(
      old.term < term,
      () => `Shard ${this.shardId}: two proposals at index ${index} in term ${term}`,
    );
    this.pending.delete(index);
    old.resolve({
      kind: "unknown",
      message: `Shard ${this.shardId} replaced the proposal's entry in this node's log; another ` +
        "member may still commit it",
    });
  }

  #failPendingUpTo(index: LogIndex, answers: Array<() => void>): void {
    for (const [at, pending] of this.pending) {
      if (at > index) continue;
      this.pending.delete(at);
      // The snapshot may or may not contain this proposal's entry: the outcome is unknown.
      answers.push(() =>
        pending.resolve({
          kind: "unknown",
          message: `Shard ${this.shardId} installed a snapshot past the proposal`,
        })
      );
    }
  }

  /**
   * Inside a turn's transaction, after {@linkcode persistAndApply} or alone: compacts the log once
   * it holds `snapshotEntries` applied entries or `snapshotLogBytes` bytes past its start. A
   * snapshot is then the state machine itself, read at its applied index when a follower needs
   * one, so compacting only drops entries.
   *
   * A compaction due by count is spread over turns: each call deletes at most
   * `compactStepEntries` entries beyond those applied since its last step, so its backlog shrinks
   * by that much per turn however fast entries apply, and no one turn deletes thousands while
   * requests wait. The driver gives a replica with a compaction under way
   * ({@linkcode compacting}) turns of its own while nothing else runs. One forced by the bytes
   * bound deletes everything up to the applied index at once.
   */
  compactIfDue(
    options: { snapshotEntries: number; snapshotLogBytes: number; compactStepEntries?: number },
  ): void {
    const { snapshotEntries, snapshotLogBytes } = options;
    const stepEntries = Math.max(1, options.compactStepEntries ?? COMPACT_STEP_ENTRIES);
    const { applied } = this.log.appliedState;
    const start = this.log.firstIndex() - 1;
    const byCount = applied - start >= snapshotEntries;
    const byBytes = this.log.entryBytes >= snapshotLogBytes && applied > start;
    // Keep a tail of entries so that slightly lagging followers catch up without a snapshot
    // (none when the bytes bound forced the compaction).
    if (byBytes) this.#compactTarget = applied;
    else if (byCount) {
      this.#compactTarget = Math.max(
        this.#compactTarget,
        applied - Math.floor(snapshotEntries / 4),
      );
    }
    const grown = Math.max(0, applied - (this.#compactStepApplied ?? applied));
    this.#compactStepApplied = applied;
    if (this.#compactTarget <= start) return;
    const to = byBytes
      ? this.#compactTarget
      : Math.min(this.#compactTarget, start + stepEntries + grown);
    this.log.compact(to as LogIndex);
    this.log.assertConsistent();
  }

  /** Whether a compaction is under way: its next step is due ({@linkcode compactIfDue}). */
  get compacting(): boolean {
    return this.#compactTarget > this.log.firstIndex() - 1;
  }

  #currentRecord(): ReplicaRecord {
    return { ...this.record, peers: [...this.peers.values()] };
  }

  /**
   * Answers every waiting request (the replica is going away): reads with `outcome`, proposals with
   * `unknown`, since their entries may be in other members' logs and still commit there.
   */
  failAll(outcome: Failure): void {
    const proposed: Failure = {
      kind: "unknown",
      message: `${outcome.message} (after proposing: the request may still apply)`,
    };
    for (const pending of this.pending.values()) pending.resolve(proposed);
    this.pending.clear();
    this.reads.failAll(outcome);
    // Admin calls waiting for a conf change: it may still apply on the other members.
    this.appliedWaiters.failAll();
  }

  /**
   * Inside a transaction: removes the replica's log, Raft state and record. Its state-machine
   * spaces, which may be large, are left to the node's garbage collection (no replica refers to
   * them any more), so the turn stays short.
   */
  destroy(): void {
    this.log.destroy();
    this.#store.remove(replicaRecordKey(this.peerId));
    for (const source of this.#sources.values()) source.release();
  }
}

/** The key of a replica record. */
export function replicaRecordKey(peerId: number): Uint8Array {
  const key = new Uint8Array(9);
  key[0] = 0x01;
  new DataView(key.buffer).setUint32(1, Math.floor(peerId / 0x100000000));
  new DataView(key.buffer).setUint32(5, peerId % 0x100000000);
  return key;
}

/** Encodes a replica record (JSON). */
export function encodeRecord(record: ReplicaRecord): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(record));
}

/** Decodes a replica record. */
export function decodeRecord(bytes: Uint8Array): ReplicaRecord {
  return JSON.parse(decoder.decode(bytes)) as ReplicaRecord;
}

/** The context carried by a conf change that adds a member: where it lives. */
export function encodeContext(peer: { nodeId: string; address: string }): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ nodeId: peer.nodeId, address: peer.address }));
}

function parseContext(
  context: Uint8Array | undefined,
): { nodeId: string; address: string } | undefined {
  if (context === undefined || context.length === 0) return undefined;
  try {
    const parsed = JSON.parse(decoder.decode(context));
    if (typeof parsed.nodeId === "string" && typeof parsed.address === "string") {
      return { nodeId: parsed.nodeId, address: parsed.address };
    }
  } catch {
    // Malformed context: the change still applies, only the address stays unknown.
  }
  return undefined;
}

function lostProposal(shardId: ShardId): Failure {
  return {
    kind: "unavailable",
    message: `Shard ${shardId} lost leadership before the request committed: it was not applied`,
  };
}
