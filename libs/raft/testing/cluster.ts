/**
 * An in-memory, seeded test cluster for the Raft core: N {@linkcode RawNode}s
 * over {@linkcode MemoryStorage}, a network that can drop, duplicate, delay
 * and partition messages, crash/restart that loses everything not persisted,
 * and a checker that every replica applies the same entry at each index.
 *
 * Time is logical: {@linkcode Cluster.tick} ticks every live node once and
 * then runs {@linkcode Cluster.stabilize}, which processes Readies and
 * delivers due messages until nothing is left to do.
 *
 * @module
 */

import { assert, AssertionError } from "../_assert.ts";
import type { Message, MessageType } from "../messages.ts";
import { mulberry32, type Prng } from "../prng.ts";
import { RawNode, type RawNodeOptions, type ReadState, type Ready } from "../raw_node.ts";
import { MemoryStorage } from "../storage.ts";
import type { ConfChange, ConfState, Entry, LogIndex, PeerId } from "../types.ts";

/** A host state machine driven by the cluster. */
export interface StateMachine {
  /** Applies a committed normal entry (conf changes are applied by the cluster). */
  apply(entry: Entry): void;
  /** Serializes the state for a snapshot. */
  snapshot(): Uint8Array;
  /** Replaces the state with a snapshot's. */
  restore(data: Uint8Array): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a string as entry data. */
export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * The default state machine: remembers the UTF-8 text of each applied normal
 * entry by index (empty entries are skipped).
 */
export class RecordingStateMachine implements StateMachine {
  /** Applied values by log index. */
  values: Map<number, string> = new Map();

  /** See {@linkcode StateMachine.apply}. */
  apply(entry: Entry): void {
    if (entry.data.length > 0) this.values.set(entry.index, decoder.decode(entry.data));
  }

  /** See {@linkcode StateMachine.snapshot}. */
  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify([...this.values]));
  }

  /** See {@linkcode StateMachine.restore}. */
  restore(data: Uint8Array): void {
    this.values = new Map(JSON.parse(decoder.decode(data)) as [number, string][]);
  }
}

/** Faults the network injects, drawn from the cluster's seeded generator. */
export interface NetworkFaults {
  /** Probability in [0, 1] that a message is lost. */
  readonly dropRate: number;
  /** Probability in [0, 1] that a delivered message is delivered twice. */
  readonly duplicateRate: number;
  /** Each message is delayed by 0..delayTicksMax ticks (which also reorders). */
  readonly delayTicksMax: number;
}

/** Options of a {@linkcode Cluster}. */
export interface ClusterOptions {
  /** The bootstrap voters: a count (ids 1..n) or explicit ids. */
  readonly voters: number | readonly number[];
  /** Bootstrap learners. */
  readonly learners?: readonly number[];
  /** The seed of every random choice (network faults and election timeouts). */
  readonly seed: number;
  /** Options passed to every RawNode (id, storage, prng and applied are set by the cluster). */
  readonly node?: Omit<Partial<RawNodeOptions>, "id" | "storage" | "prng" | "applied">;
  /** Take a snapshot and compact the log every this many applied entries (default: never). */
  readonly snapshotEveryEntries?: number;
  /** Creates each node's state machine (default {@linkcode RecordingStateMachine}). */
  readonly stateMachine?: () => StateMachine;
}

/**
 * One replica: durable storage, a durable state machine with its applied
 * index and membership (as a kvnode keeps them in one LMDB transaction), and a
 * RawNode that is absent while crashed.
 */
export class TestNode {
  /** The node's id. */
  readonly id: PeerId;
  /** The node's durable storage (survives crashes). */
  readonly storage: MemoryStorage;
  /** The node's durable state machine (survives crashes). */
  stateMachine: StateMachine;
  /** The index of the last entry applied to the state machine (durable). */
  applied: LogIndex = 0 as LogIndex;
  /** The running RawNode, or undefined while crashed. */
  raw: RawNode | undefined;
  /** ReadStates received, in order. */
  readStates: ReadState[] = [];
  /** Applied entries in order (conf changes included), since creation. */
  appliedEntries: Entry[] = [];

  /** Creates a node around its durable storage and state machine (not started). */
  constructor(id: PeerId, storage: MemoryStorage, stateMachine: StateMachine) {
    this.id = id;
    this.storage = storage;
    this.stateMachine = stateMachine;
  }

  /** Whether the node is running. */
  get alive(): boolean {
    return this.raw !== undefined;
  }
}

interface InFlight {
  readonly message: Message;
  readonly deliverAt: number;
}

const NO_FAULTS: NetworkFaults = { dropRate: 0, duplicateRate: 0, delayTicksMax: 0 };
const STABILIZE_ROUNDS_MAX = 100_000;

/** A whole Raft group in memory, driven one tick at a time. */
export class Cluster {
  /** The generator behind every random choice of the cluster. */
  readonly prng: Prng;
  /** All nodes ever added, crashed or not. */
  readonly nodes: Map<PeerId, TestNode> = new Map();
  /** Messages sent, by type (counted before faults). */
  readonly sent: Map<MessageType, number> = new Map();
  /** Ticks elapsed. */
  now = 0;
  /** The faults the network currently injects. */
  faults: NetworkFaults = NO_FAULTS;
  /** Return false to drop a message (applied before faults). */
  filter: ((message: Message) => boolean) | undefined = undefined;
  readonly #options: ClusterOptions;
  #queue: InFlight[] = [];
  #partitionOf: Map<PeerId, number> = new Map();
  readonly #appliedAt: Map<number, Entry> = new Map();

  /** Creates and starts a cluster (no leader yet: tick or campaign). */
  constructor(options: ClusterOptions) {
    this.#options = options;
    this.prng = mulberry32(options.seed);
    const voters = typeof options.voters === "number"
      ? Array.from({ length: options.voters }, (_, i) => (i + 1) as PeerId)
      : options.voters.map((id) => id as PeerId);
    const learners = (options.learners ?? []).map((id) => id as PeerId);
    for (const id of [...voters, ...learners]) {
      this.#createNode(id, new MemoryStorage({ voters, learners }));
    }
  }

  #createNode(id: PeerId, storage: MemoryStorage): TestNode {
    assert(!this.nodes.has(id), `Node ${id} already exists`);
    const sm = this.#options.stateMachine?.() ?? new RecordingStateMachine();
    const node = new TestNode(id, storage, sm);
    this.nodes.set(id, node);
    this.#start(node);
    return node;
  }

  #start(node: TestNode): void {
    node.raw = new RawNode({
      ...this.#options.node,
      id: node.id,
      storage: node.storage,
      prng: mulberry32(Math.floor(this.prng() * 0x100000000)),
      applied: node.applied,
    });
  }

  /** All node ids, ascending. */
  get ids(): PeerId[] {
    return [...this.nodes.keys()].sort((a, b) => a - b);
  }

  /** The node with `id`. */
  node(id: number): TestNode {
    const node = this.nodes.get(id as PeerId);
    assert(node !== undefined, `No node ${id}`);
    return node;
  }

  /** The running RawNode of `id`. */
  raw(id: number): RawNode {
    const raw = this.node(id).raw;
    assert(raw !== undefined, `Node ${id} is crashed`);
    return raw;
  }

  /**
   * Adds a fresh, empty replica created, as a kvnode admin call would, with
   * the group's current membership and epoch (as the current leader applied
   * it). It learns the log from the leader once a conf change adds it.
   */
  addNode(id: number): TestNode {
    const leader = this.leader();
    assert(leader !== undefined, `Cannot add node ${id}: no leader`);
    const confState = this.raw(leader).status().confState;
    return this.#createNode(id as PeerId, new MemoryStorage(confState));
  }

  // ---------------------------------------------------------------- faults

  /** Splits the nodes into groups that cannot talk to each other; unlisted nodes form one more. */
  partition(...groups: readonly number[][]): void {
    this.#partitionOf = new Map();
    groups.forEach((group, i) => {
      for (const id of group) this.#partitionOf.set(id as PeerId, i + 1);
    });
  }

  /** Cuts `id` off from everyone else. */
  isolate(id: number): void {
    this.partition([id]);
  }

  /** Removes all partitions. */
  heal(): void {
    this.#partitionOf = new Map();
  }

  /** Whether `a` and `b` can currently exchange messages. */
  connected(a: PeerId, b: PeerId): boolean {
    return (this.#partitionOf.get(a) ?? 0) === (this.#partitionOf.get(b) ?? 0);
  }

  /** Stops `id`: its volatile state (anything not yet persisted) is lost. */
  crash(id: number): void {
    this.node(id).raw = undefined;
  }

  /** Restarts a crashed node from its storage and durable applied state. */
  restart(id: number): void {
    const node = this.node(id);
    assert(node.raw === undefined, `Node ${id} is running`);
    this.#start(node);
  }

  // ---------------------------------------------------------------- driving

  /** Ticks every running node `count` times, stabilizing after each tick. */
  tick(count = 1): void {
    for (let i = 0; i < count; i++) {
      this.now++;
      for (const node of this.nodes.values()) node.raw?.tick();
      this.stabilize();
    }
  }

  /** Ticks until `condition` holds or `ticksMax` ticks passed; reports whether it holds. */
  tickUntil(condition: () => boolean, ticksMax: number): boolean {
    for (let i = 0; i < ticksMax; i++) {
      if (condition()) return true;
      this.tick();
    }
    return condition();
  }

  /** Processes Readies and delivers due messages until nothing is left to do. */
  stabilize(): void {
    for (let round = 0; round < STABILIZE_ROUNDS_MAX; round++) {
      let progressed = false;
      for (const node of this.nodes.values()) {
        if (node.raw !== undefined && node.raw.hasReady()) {
          this.processReady(node.id);
          progressed = true;
        }
      }
      if (this.#deliverDue()) progressed = true;
      if (!progressed) return;
    }
    throw new AssertionError(`Cluster did not stabilize within ${STABILIZE_ROUNDS_MAX} rounds`);
  }

  /** Carries out one Ready of `id` as a host would (persist, send, apply, advance). */
  processReady(id: PeerId): void {
    const node = this.node(id);
    const raw = this.raw(id);
    const ready = raw.ready();
    if (ready.snapshot !== undefined) this.#installSnapshot(node, ready.snapshot);
    node.storage.append(ready.entries);
    if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
    for (const message of ready.messages) this.send(message);
    for (const entry of ready.committedEntries) this.#apply(node, raw, entry);
    node.readStates.push(...ready.readStates);
    raw.advance(ready);
    this.#maybeSnapshot(node);
  }

  #installSnapshot(
    node: TestNode,
    snapshot: NonNullable<Ready["snapshot"]>,
  ) {
    node.storage.applySnapshot(snapshot);
    node.stateMachine.restore(snapshot.data);
    node.applied = snapshot.metadata.index;
  }

  #apply(node: TestNode, raw: RawNode, entry: Entry): void {
    assert(
      entry.index === node.applied + 1,
      `Node ${node.id} applies ${entry.index} after ${node.applied}`,
    );
    const seen = this.#appliedAt.get(entry.index);
    if (seen === undefined) this.#appliedAt.set(entry.index, entry);
    else {
      assert(
        seen.term === entry.term && seen.checksum === entry.checksum,
        `Node ${node.id} applied a different entry at ${entry.index}: term ${entry.term} vs ${seen.term}`,
      );
    }
    if (entry.type === "confChange") {
      node.storage.setConfState(raw.applyConfChange(entry));
    } else {
      node.stateMachine.apply(entry);
    }
    node.applied = entry.index;
    node.appliedEntries.push(entry);
  }

  #maybeSnapshot(node: TestNode): void {
    const every = this.#options.snapshotEveryEntries;
    if (every === undefined) return;
    const snapshotResult = node.storage.snapshot();
    assert(snapshotResult.kind === "ok", "Memory storage always has a snapshot");
    if (node.applied - snapshotResult.snapshot.metadata.index < every) return;
    const confState: ConfState = node.storage.initialState().confState;
    node.storage.createSnapshot(node.applied, { confState, data: node.stateMachine.snapshot() });
    node.storage.compact(node.applied);
  }

  /** Puts `message` on the network, subject to partitions, the filter and faults. */
  send(message: Message): void {
    this.sent.set(message.type, (this.sent.get(message.type) ?? 0) + 1);
    if (this.filter !== undefined && !this.filter(message)) return this.#lost(message);
    if (!this.connected(message.from, message.to)) return this.#lost(message);
    if (this.prng() < this.faults.dropRate) return this.#lost(message);
    const copies = this.prng() < this.faults.duplicateRate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = Math.floor(this.prng() * (this.faults.delayTicksMax + 1));
      this.#queue.push({ message, deliverAt: this.now + delay });
    }
  }

  #lost(message: Message): void {
    if (message.type === "snapshot") {
      this.nodes.get(message.from)?.raw?.reportSnapshot(message.to, "failure");
    }
  }

  #deliverDue(): boolean {
    const due = this.#queue.filter((f) => f.deliverAt <= this.now);
    if (due.length === 0) return false;
    this.#queue = this.#queue.filter((f) => f.deliverAt > this.now);
    for (const { message } of due) this.#deliver(message);
    return true;
  }

  #deliver(message: Message): void {
    const target = this.nodes.get(message.to)?.raw;
    if (target === undefined || !this.connected(message.from, message.to)) {
      return this.#lost(message);
    }
    target.step(message);
    if (message.type === "snapshot") {
      this.nodes.get(message.from)?.raw?.reportSnapshot(message.to, "success");
    }
  }

  /** Drops every message in flight. */
  clearNetwork(): void {
    this.#queue = [];
  }

  /** The number of messages sent of the given types since the counters were reset. */
  sentCount(...types: MessageType[]): number {
    let total = 0;
    for (const type of types) total += this.sent.get(type) ?? 0;
    return total;
  }

  // ---------------------------------------------------------------- queries

  /** The running leaders, ascending by id. */
  leaders(): PeerId[] {
    return this.ids.filter((id) => this.node(id).raw?.status().role === "leader");
  }

  /**
   * The running leader of the highest term, if it is the only leader in that
   * term (asserts that no term has two leaders).
   */
  leader(): PeerId | undefined {
    const byTerm = new Map<number, PeerId>();
    let best: PeerId | undefined;
    let bestTerm = -1;
    for (const id of this.leaders()) {
      const t = this.raw(id).status().term;
      assert(!byTerm.has(t), `Two leaders in term ${t}: ${byTerm.get(t)} and ${id}`);
      byTerm.set(t, id);
      if (t > bestTerm) {
        bestTerm = t;
        best = id;
      }
    }
    return best;
  }

  /** Ticks until some node leads; returns it. */
  waitForLeader(ticksMax = 200): PeerId {
    let found: PeerId | undefined;
    const ok = this.tickUntil(() => (found = this.leader()) !== undefined, ticksMax);
    assert(ok && found !== undefined, `No leader within ${ticksMax} ticks`);
    return found;
  }

  /** How many running-or-crashed nodes applied an entry at `index`, and its text. */
  nCommitted(index: number): { count: number; value: string | undefined } {
    let count = 0;
    let value: string | undefined;
    for (const node of this.nodes.values()) {
      if (node.applied < index) continue;
      const entry = this.#appliedAt.get(index);
      if (entry === undefined) continue;
      count++;
      value = decoder.decode(entry.data);
    }
    return { count, value };
  }

  /**
   * Proposes `text` at a leader and waits until at least `expected` nodes
   * applied it, retrying with a new leader if needed (6.824's `one()`).
   * Returns the index, or undefined if it did not commit within `ticksMax`.
   */
  one(text: string, expected: number, ticksMax = 300): LogIndex | undefined {
    const deadline = this.now + ticksMax;
    while (this.now < deadline) {
      const leader = this.leader();
      const result = leader === undefined ? undefined : this.raw(leader).propose(bytes(text));
      if (result?.kind === "ok") {
        const index = result.index;
        const done = () => {
          const n = this.nCommitted(index);
          return n.count >= expected && n.value === text;
        };
        if (this.tickUntil(done, Math.min(60, deadline - this.now))) return index;
      } else {
        this.tick();
      }
    }
    return undefined;
  }

  /** Proposes a conf change at the leader and ticks until every running member applied it. */
  changeMembership(change: ConfChange, ticksMax = 300): LogIndex {
    const leader = this.waitForLeader(ticksMax);
    const result = this.raw(leader).proposeConfChange(change);
    assert(result.kind === "ok", `Conf change refused: ${JSON.stringify(result)}`);
    const index = result.index;
    const applied = () => {
      const status = this.raw(this.leader() ?? leader).status();
      return status.applied >= index;
    };
    assert(this.tickUntil(applied, ticksMax), `Conf change ${index} not applied`);
    return index;
  }
}
