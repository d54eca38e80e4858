/**
 * {@linkcode SimNode}: one simulated kvnode hosting one replica. It drives its
 * `RawNode` as a real host does, in turns: drain the inbox (messages, client
 * requests, reports) and the elapsed ticks, take the Ready, write it to the
 * {@linkcode SimDisk}, wait for the sync when the Ready asks for one, and only
 * then send the messages, apply the committed entries (answering clients),
 * serve confirmed reads and `advance`. A crash at any point loses whatever was
 * not synced.
 *
 * @module
 */

import {
  type ConfState,
  decodeConfChange,
  type Entry,
  type LogIndex,
  type Message,
  mulberry32,
  type PeerId,
  RawNode,
  type ReadState,
  type Ready,
  type Snapshot,
  type Term,
} from "@tinykv/raft";
import { assert } from "./_assert.ts";
import type { SimConfig } from "./config.ts";
import {
  applyConfChecksum,
  hardStateChecksum,
  type RecoveryReport,
  SimDisk,
  snapshotChecksum,
} from "./disk.ts";
import { type CommandResult, decodeCommand, encodeCommand } from "./kv_state_machine.ts";
import type { SimRandom } from "./random.ts";
import type { SafetyChecker } from "./safety_checker.ts";

/** A client operation as sent to a node. Mutations carry the client's dedup `seq`. */
export type ClientOp =
  | { readonly kind: "put"; readonly key: string; readonly value: string; readonly seq: number }
  | {
    readonly kind: "cas";
    readonly key: string;
    readonly expected: string | null;
    readonly next: string;
    readonly seq: number;
  }
  | { readonly kind: "append"; readonly key: string; readonly token: string; readonly seq: number }
  | { readonly kind: "get"; readonly key: string }
  | { readonly kind: "read"; readonly key: string };

/** A request from a client; `op` identifies the client's operation. */
export interface ClientRequest {
  /** The client. */
  readonly client: number;
  /** The client's operation this is about. */
  readonly opNumber: number;
  /** What the client asks. */
  readonly op: ClientOp;
}

/** A node's answer to a client. */
export type ClientOutcome =
  | { readonly kind: "ok"; readonly result: CommandResult }
  | { readonly kind: "value"; readonly value: string | null }
  | { readonly kind: "list"; readonly tokens: readonly string[] }
  /** Not proposed here (or the proposal was overwritten): retry, possibly at `leader`. */
  | { readonly kind: "retry"; readonly leader: PeerId | undefined };

/** A reply on its way to a client. */
export interface ClientReply {
  /** The node that answered. */
  readonly from: PeerId;
  /** The client. */
  readonly client: number;
  /** The client's operation this is about. */
  readonly opNumber: number;
  /** The answer. */
  readonly outcome: ClientOutcome;
}

/** What a node receives between turns. */
export type InboxItem =
  | { readonly kind: "message"; readonly message: Message }
  | { readonly kind: "request"; readonly request: ClientRequest }
  | { readonly kind: "snapshotReport"; readonly peer: PeerId; readonly ok: boolean }
  | { readonly kind: "unreachable"; readonly peer: PeerId };

/** What a node needs from the simulation around it. */
export interface HostEnv {
  /** The run's configuration. */
  readonly config: SimConfig;
  /** The run's generator. */
  readonly random: SimRandom;
  /** The global safety checks. */
  readonly checker: SafetyChecker;
  /** The current simulated time. */
  now(): number;
  /** Puts a Raft message on the network. */
  send(message: Message): void;
  /** Answers a client over the network. */
  reply(reply: Omit<ClientReply, "from">, from: PeerId): void;
  /** Schedules this node's sync completion after `delay` time units. */
  scheduleSyncDone(node: SimNode, delay: number): void;
  /** Schedules a turn of this node now (after the events already due). */
  scheduleTurn(node: SimNode): void;
  /** A conf change entry was applied by `node`, resulting in `confState`. */
  onConfApplied(node: SimNode, index: LogIndex, confState: ConfState): void;
  /** Records a line of the trace (built only when tracing). */
  trace(line: () => string): void;
}

interface Waiter {
  /** The client. */
  readonly client: number;
  /** The client's operation this is about. */
  readonly opNumber: number;
  readonly index: LogIndex;
}

interface ReadWaiter {
  readonly request: ClientRequest;
  index: LogIndex;
}

/** One node: a disk that survives crashes and a RawNode that does not. */
export class SimNode {
  /** The node's Raft peer id. */
  readonly id: PeerId;
  /** The disk, which survives crashes. */
  readonly disk: SimDisk;
  /** The running core; undefined while down or destroyed. */
  raw: RawNode | undefined = undefined;
  /** Running, crashed, or gone for good. */
  state: "up" | "down" | "destroyed" = "down";
  /** Bumped at every start, so events of an earlier life are ignored. */
  incarnation = 0;
  /** What arrived since the last turn. */
  inbox: InboxItem[] = [];
  /** Ticks elapsed since the last turn. */
  ticksPending = 0;
  /** Whether a turn event is queued. */
  turnScheduled = false;
  /** The node does nothing before this time (a process pause); messages queue meanwhile. */
  pausedUntil = 0;
  /** Time units per tick of this node's clock. */
  tickUnits = 0;
  /** The Ready written and waiting for its sync. */
  syncing: Ready | undefined = undefined;
  /** Set when the node applied its own removal; the simulation destroys it after the turn. */
  removedSelf = false;
  // Client proposals by `client/seq`, and by the index they were proposed at.
  #waiters: Map<string, Waiter> = new Map();
  #waiterAt: Map<number, string> = new Map();
  #readWaiters: Map<number, ReadWaiter> = new Map();
  #readsConfirmed: ReadWaiter[] = [];
  #readSeq = 0;
  #commitChecked = 0;
  #lastLeaderTerm = -1;
  #leaderCheck: { term: Term; committed: number } | undefined = undefined;
  readonly #env: HostEnv;

  /** Creates a node whose disk holds the membership `confState` (not started). */
  constructor(id: PeerId, confState: ConfState, env: HostEnv) {
    this.id = id;
    this.disk = new SimDisk(confState);
    this.#env = env;
  }

  /** Starts (or restarts) the node from its durable state. */
  start(): RecoveryReport {
    assert(this.state === "down", `Start of node ${this.id} in state ${this.state}`);
    const report = this.disk.recover();
    const { config, random } = this.#env;
    const live = this.disk.live;
    this.raw = new RawNode({
      id: this.id,
      storage: live.log,
      prng: mulberry32(random.seed()),
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      applied: live.sm.applied as LogIndex,
      preVote: config.preVote,
      checkQuorum: config.checkQuorum,
      appendBytesMax: config.appendBytesMax,
      inflightMessagesMax: config.inflightMessagesMax,
      committedBytesMax: config.committedBytesMax,
      uncommittedBytesMax: config.uncommittedBytesMax,
      pendingReadsMax: config.pendingReadsMax,
    });
    this.state = "up";
    this.incarnation++;
    this.#commitChecked = Math.max(this.#commitChecked, live.log.compactIndex);
    return report;
  }

  /** Stops the node: volatile state is gone, unsynced writes may be lost or torn. */
  crash(tornRate: number): void {
    assert(this.state === "up", `Crash of node ${this.id} in state ${this.state}`);
    this.#stop();
    this.disk.crash(this.#env.random, tornRate);
    this.state = "down";
  }

  /** Removes the node for good (its replica was removed or never added). */
  destroy(): void {
    this.#stop();
    this.state = "destroyed";
  }

  #stop(): void {
    this.raw = undefined;
    this.turnScheduled = false;
    this.inbox = [];
    this.ticksPending = 0;
    this.syncing = undefined;
    this.#waiters = new Map();
    this.#waiterAt = new Map();
    this.#readWaiters = new Map();
    this.#readsConfirmed = [];
    this.#leaderCheck = undefined;
  }

  /** Whether the node has work for a turn. */
  get hasWork(): boolean {
    return this.inbox.length > 0 || this.ticksPending > 0;
  }

  /** One turn of the driver loop: drain the inbox and ticks, then carry out a Ready. */
  turn(): void {
    this.turnScheduled = false;
    const raw = this.raw;
    if (raw === undefined || this.syncing !== undefined) return;
    const inbox = this.inbox;
    this.inbox = [];
    for (const item of inbox) this.#handle(raw, item);
    for (; this.ticksPending > 0; this.ticksPending--) {
      raw.tick();
      this.#observeRole(raw);
    }
    if (!raw.hasReady()) return;
    const ready = raw.ready();
    this.#persist(ready);
    if (ready.mustSync) {
      this.syncing = ready;
      this.#env.scheduleSyncDone(this, 1 + this.#env.random.int(this.#env.config.syncUnitsMax));
    } else {
      this.#finish(ready);
    }
  }

  /** The sync of the written Ready completed. */
  syncDone(): void {
    const ready = this.syncing;
    if (ready === undefined || this.raw === undefined) return;
    this.disk.sync();
    this.syncing = undefined;
    this.#finish(ready);
  }

  #handle(raw: RawNode, item: InboxItem): void {
    switch (item.kind) {
      case "message": {
        raw.step(item.message);
        const type = item.message.type;
        if (
          type === "requestVoteResponse" || type === "requestPreVoteResponse" ||
          type === "timeoutNow"
        ) {
          this.#observeRole(raw);
        }
        return;
      }
      case "request":
        return this.#handleRequest(raw, item.request);
      case "snapshotReport":
        return raw.reportSnapshot(item.peer, item.ok ? "success" : "failure");
      case "unreachable":
        return raw.reportUnreachable(item.peer);
    }
  }

  /** Election safety: notes when this node leads a term, for the global checks. */
  #observeRole(raw: RawNode): void {
    const status = raw.status();
    if (status.role !== "leader" || status.term === this.#lastLeaderTerm) return;
    this.#lastLeaderTerm = status.term;
    this.#env.checker.onLeader(this.id, status.term);
    this.#leaderCheck = { term: status.term, committed: this.#env.checker.committedMax };
    this.#env.trace(() => `n${this.id} becomes leader of term ${status.term}`);
  }

  #handleRequest(raw: RawNode, request: ClientRequest): void {
    const op = request.op;
    if (op.kind === "get" || op.kind === "read") {
      const requestId = ++this.#readSeq;
      const result = raw.readIndex(requestId);
      if (result.kind === "ok") {
        this.#readWaiters.set(requestId, { request, index: 0 as LogIndex });
      } else {
        this.#retry(request, result.kind === "notLeader" ? result.leader : undefined);
      }
      return;
    }
    const command = op.kind === "put"
      ? { kind: op.kind, client: request.client, seq: op.seq, key: op.key, value: op.value }
      : op.kind === "cas"
      ? {
        kind: op.kind,
        client: request.client,
        seq: op.seq,
        key: op.key,
        expected: op.expected,
        next: op.next,
      }
      : { kind: op.kind, client: request.client, seq: op.seq, key: op.key, token: op.token };
    const result = raw.propose(encodeCommand(command));
    if (result.kind !== "ok") {
      this.#retry(request, result.kind === "notLeader" ? result.leader : undefined);
      return;
    }
    const key = `${request.client}/${op.seq}`;
    this.#waiters.set(key, {
      client: request.client,
      opNumber: request.opNumber,
      index: result.index,
    });
    this.#waiterAt.set(result.index, key);
  }

  #reply(reply: Omit<ClientReply, "from">): void {
    this.#env.reply(reply, this.id);
  }

  #retry(request: ClientRequest, leader: PeerId | undefined): void {
    this.#reply({
      client: request.client,
      opNumber: request.opNumber,
      outcome: { kind: "retry", leader },
    });
  }

  /** Writes a Ready to disk: snapshot, entries, hard state (in that order). */
  #persist(ready: Ready): void {
    const disk = this.disk;
    const checker = this.#env.checker;
    if (ready.snapshot !== undefined) this.#installSnapshot(ready.snapshot);
    if (ready.entries.length > 0) disk.write({ kind: "entries", entries: ready.entries });
    const hs = ready.hardState;
    if (hs !== undefined) {
      disk.write({ kind: "hardState", hardState: hs, checksum: hardStateChecksum(hs) });
    }
    const log = disk.live.log;
    checker.onPersisted(this.id, log, ready.entries);
    if (hs !== undefined && hs.commit > this.#commitChecked) {
      checker.onCommit(this.id, log, this.#commitChecked + 1, hs.commit, hs.term);
      this.#commitChecked = hs.commit;
    }
    const leaderCheck = this.#leaderCheck;
    if (leaderCheck !== undefined) {
      this.#leaderCheck = undefined;
      const status = this.raw!.status();
      if (status.role === "leader" && status.term === leaderCheck.term) {
        checker.checkLeaderLog(this.id, leaderCheck.term, log, leaderCheck.committed);
      }
    }
  }

  #installSnapshot(snapshot: Snapshot): void {
    const meta = snapshot.metadata;
    this.#env.checker.onSnapshot(this.id, snapshot);
    this.#env.trace(() => `n${this.id} installs snapshot at ${meta.index} (term ${meta.term})`);
    this.disk.write({
      kind: "snapshot",
      snapshot,
      install: true,
      compactTo: meta.index,
      checksum: snapshotChecksum(snapshot, true, meta.index),
    });
    this.#commitChecked = Math.max(this.#commitChecked, meta.index);
    // Proposals at or below the snapshot were applied elsewhere; their clients retry.
    for (const [index, key] of this.#waiterAt) {
      if (index > meta.index) continue;
      this.#dropWaiter(index, key);
    }
  }

  /** After the sync: send, apply, serve reads, advance. */
  #finish(ready: Ready): void {
    const raw = this.raw!;
    for (const message of ready.messages) {
      if (message.type === "requestVoteResponse" && !message.reject) {
        this.#env.checker.onVoteGranted(message.from, message.term, message.to);
      }
      this.#env.send(message);
    }
    for (const entry of ready.committedEntries) this.#apply(raw, entry);
    for (const state of ready.readStates) this.#onReadState(state);
    this.#serveReads();
    raw.advance(ready);
    this.#maybeCompact();
    if (this.hasWork || (!this.removedSelf && raw.hasReady())) this.#env.scheduleTurn(this);
  }

  #apply(raw: RawNode, entry: Entry): void {
    // Each entry is applied once, in order, across crashes and snapshots (Ready contract).
    this.#env.checker.onApply(this.id, entry, this.disk.live.sm.applied);
    if (entry.type === "confChange") {
      const confState = raw.applyConfChange(entry);
      this.disk.write({
        kind: "applyConf",
        index: entry.index,
        confState,
        checksum: applyConfChecksum(entry.index, confState),
      });
      this.#env.onConfApplied(this, entry.index, confState);
      const decoded = decodeConfChange(entry.data);
      if (
        decoded.kind === "ok" && decoded.change.type === "removeNode" &&
        decoded.change.nodeId === this.id
      ) {
        this.removedSelf = true;
      }
      this.#settleWaiterAt(entry.index, undefined);
      return;
    }
    const result = this.disk.write({ kind: "apply", entry });
    if (entry.data.length === 0 || this.#waiters.size === 0) {
      this.#settleWaiterAt(entry.index, undefined);
      return;
    }
    const command = decodeCommand(entry.data);
    const key = command.kind === "noop" ? undefined : `${command.client}/${command.seq}`;
    this.#settleWaiterAt(entry.index, key);
    if (key === undefined || result === undefined || result.kind === "stale") return;
    const waiter = this.#waiters.get(key);
    if (waiter === undefined) return;
    this.#waiters.delete(key);
    if (this.#waiterAt.get(waiter.index) === key) this.#waiterAt.delete(waiter.index);
    this.#reply({
      client: waiter.client,
      opNumber: waiter.opNumber,
      outcome: { kind: "ok", result },
    });
  }

  /** A proposal at `index` that is not the entry applied there was lost: its client retries. */
  #settleWaiterAt(index: LogIndex, appliedKey: string | undefined): void {
    const key = this.#waiterAt.get(index);
    if (key === undefined || key === appliedKey) return;
    this.#dropWaiter(index, key);
  }

  #dropWaiter(index: number, key: string): void {
    this.#waiterAt.delete(index);
    const waiter = this.#waiters.get(key);
    if (waiter === undefined || waiter.index !== index) return;
    this.#waiters.delete(key);
    this.#reply({
      client: waiter.client,
      opNumber: waiter.opNumber,
      outcome: { kind: "retry", leader: undefined },
    });
  }

  #onReadState(state: ReadState): void {
    const waiter = this.#readWaiters.get(state.requestId);
    if (waiter === undefined) return;
    this.#readWaiters.delete(state.requestId);
    if (state.kind === "dropped") {
      this.#retry(waiter.request, undefined);
      return;
    }
    waiter.index = state.index;
    this.#readsConfirmed.push(waiter);
  }

  #serveReads(): void {
    if (this.#readsConfirmed.length === 0) return;
    const sm = this.disk.live.sm;
    const waiting: ReadWaiter[] = [];
    for (const waiter of this.#readsConfirmed) {
      if (waiter.index > sm.applied) {
        waiting.push(waiter);
        continue;
      }
      const { request } = waiter;
      const op = request.op;
      const outcome: ClientOutcome = op.kind === "read"
        ? { kind: "list", tokens: sm.read(op.key) }
        : { kind: "value", value: sm.get(op.key) };
      this.#reply({ client: request.client, opNumber: request.opNumber, outcome });
    }
    this.#readsConfirmed = waiting;
  }

  /** Snapshots the state machine and compacts the log every `snapshotEntries` applied entries. */
  #maybeCompact(): void {
    const { log, sm } = this.disk.live;
    const { snapshotEntries, retainEntries } = this.#env.config;
    const snapshotIndex = log.snapshotValue.metadata.index;
    if (sm.applied - snapshotIndex < snapshotEntries) return;
    const index = sm.applied as LogIndex;
    const termAt = log.term(index);
    assert(termAt !== undefined, `Node ${this.id} applied ${index} but has no term for it`);
    const snapshot: Snapshot = {
      metadata: { index, term: termAt, confState: log.confState },
      data: sm.snapshot(),
    };
    const compactTo = Math.max(log.compactIndex, index - retainEntries) as LogIndex;
    this.disk.write({
      kind: "snapshot",
      snapshot,
      install: false,
      compactTo,
      checksum: snapshotChecksum(snapshot, false, compactTo),
    });
    this.#env.checker.onSnapshot(this.id, snapshot);
    this.#env.trace(() => `n${this.id} snapshots at ${index}, compacts to ${compactTo}`);
  }
}
