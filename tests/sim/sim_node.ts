/**
 * {@linkcode SimNode}: one simulated kvnode hosting one replica of the simulated group. It runs
 * the real multi-Raft {@linkcode Driver} — the same loop, group commit, persistence, fencing,
 * membership and snapshot code as a kvnode — with the simulation's application
 * ({@linkcode SimApplication}) over a {@linkcode MemoryNodeStore}, the in-memory stand-in for
 * LMDB. The simulation owns time: it hands the driver its ticks, messages and requests, and
 * decides when each transaction's sync completes (`syncGate`): a crash before that keeps the
 * transaction or loses it whole, as an LMDB commit is atomic.
 *
 * The driver's observer feeds the {@linkcode SafetyChecker} every persisted Ready (log matching,
 * commits, leader completeness, applies, snapshots), and every message it sends is checked for
 * votes and leadership before it reaches the network.
 *
 * @module
 */
import type { LogIndex, Message, PeerId, Ready, Term } from "@tinykv/raft";
import { HASH_SPACE, type ShardId, shardId } from "@tinykv/shard";
import { Driver, type Envelope } from "../../services/kvnode/driver.ts";
import { MemoryNodeStore } from "../../services/kvnode/memory_node_store.ts";
import type { Outcome } from "../../services/kvnode/application.ts";
import {
  encodeRecord,
  type PeerAddress,
  type Replica,
  type ReplicaRecord,
  replicaRecordKey,
  type ReplicaTuning,
} from "../../services/kvnode/replica.ts";
import { inlineSnapshot } from "../../services/kvnode/snapshot_stream.ts";
import type { ConfState } from "@tinykv/raft";
import { assert } from "./_assert.ts";
import { type SimConfig, TICK_UNITS } from "./config.ts";
import type { SimRandom } from "./random.ts";
import type { SafetyChecker } from "./safety_checker.ts";
import { SimApplication, type SimMachine, type SimOp, type SimResult } from "./sim_app.ts";

/** The one shard the simulated group replicates. */
export const SHARD: ShardId = shardId(1);
/** Wall-clock milliseconds per simulated time unit (a tick is `TICK_UNITS` units). */
export const UNIT_MS = 10;
const EPOCH_MS = 1_700_000_000_000;

/** The driver of a simulated node. */
export type SimDriver = Driver<SimOp, SimResult, SimMachine>;
/** A replica of the simulated group. */
export type SimReplica = Replica<SimResult, SimMachine>;

/** Where the replica of peer `id` lives. */
export function peerAddress(id: PeerId): PeerAddress {
  return { peerId: id, nodeId: `n${id}`, address: `sim:n${id}` };
}

/** The peer id of a node id made by {@linkcode peerAddress}. */
export function peerOfNode(nodeId: string): PeerId {
  return Number(nodeId.slice(1)) as PeerId;
}

/** What a node needs from the simulation around it. */
export interface NodeEnv {
  readonly config: SimConfig;
  readonly random: SimRandom;
  readonly checker: SafetyChecker;
  readonly tuning: ReplicaTuning;
  /** The current simulated time, in units. */
  now(): number;
  /** Puts an envelope from `from` on the network to the node of peer `to`. */
  send(from: SimNode, to: PeerId, envelope: Envelope): void;
  /** A ping from `from` to the node of peer `to` (arrives at once over a link that is up). */
  ping(from: SimNode, to: PeerId): void;
  /** Completes the sync of `node`'s transaction after `delay` units (unless it crashes first). */
  scheduleSync(node: SimNode, delay: number, synced: () => void): void;
  /** A check failed or the driver broke: the run fails with the first such error. */
  fail(error: unknown): void;
  /** Records a line of the trace (built only when tracing). */
  trace(line: () => string): void;
}

/** One node: a store that survives crashes and a driver that does not. */
export class SimNode {
  /** The node's Raft peer id (one replica per node). */
  readonly id: PeerId;
  /** The node's id as the driver knows it. */
  readonly nodeId: string;
  /** The store; a crash replaces it by what survived. */
  store: MemoryNodeStore;
  /** The running driver; undefined while down or destroyed. */
  driver: SimDriver | undefined = undefined;
  /** Running, crashed, or gone for good. */
  state: "up" | "down" | "destroyed" = "down";
  /** Bumped at every start and crash, so answers of an earlier life are dropped. */
  incarnation = 0;
  /** The node does nothing before this time (a process pause); deliveries wait meanwhile. */
  pausedUntil = 0;
  /** Time units per tick of this node's clock. */
  tickUnits = 0;
  /** Deliveries that arrived during a pause, in arrival order. */
  held: Array<() => void> = [];
  /** A sync that completed during a pause, released when the pause ends. */
  heldSync: (() => void) | undefined = undefined;
  readonly #env: NodeEnv;
  #commitChecked = 0;
  #lastLeaderTerm = -1;
  #parked = Promise.withResolvers<void>();

  constructor(id: PeerId, env: NodeEnv) {
    this.id = id;
    this.nodeId = peerAddress(id).nodeId;
    this.#env = env;
    this.store = new MemoryNodeStore({ syncGate: (synced) => this.#gate(synced) });
  }

  /** Writes the replica's record (before the first start): the members it knows, with addresses. */
  async create(confState: ConfState): Promise<void> {
    const members = [...confState.voters, ...confState.learners, this.id];
    const record: ReplicaRecord = {
      shardId: SHARD,
      peerId: this.id,
      range: { lo: 0, hi: HASH_SPACE },
      peers: [...new Set(members)].map(peerAddress),
      initialConfState: confState,
    };
    // The first sync of a fresh store completes at once: the node is not running yet.
    const store = this.store;
    await store.write(() => store.put(replicaRecordKey(this.id), encodeRecord(record)));
  }

  /** Starts (or restarts) the node's driver from its store. */
  start(): void {
    assert(this.state === "down", `Start of node ${this.id} in state ${this.state}`);
    const env = this.#env;
    this.incarnation++;
    const queued: Array<{ to: PeerId; envelope: Envelope }> = [];
    const driver = new Driver<SimOp, SimResult, SimMachine>({
      app: new SimApplication(),
      store: this.store,
      nodeId: this.nodeId,
      tuning: env.tuning,
      seed: env.random.seed(),
      clock: { now: () => EPOCH_MS + env.now() * UNIT_MS },
      monotonicMs: () => env.now() * UNIT_MS,
      // Lease reads count ticks by the clock, as a kvnode does: a paused node takes the ticks it
      // missed in its next turn.
      tickClock: env.config.readMode === "leaseBased"
        ? { periodMs: TICK_UNITS * UNIT_MS, now: () => env.now() * UNIT_MS }
        : undefined,
      outbound: {
        // A snapshot's data is read from the sender's view at once, as the gRPC transport streams
        // it, and travels inline.
        send: (to, envelope) =>
          queued.push({ to: to.peerId as PeerId, envelope: inlineSnapshot(envelope) }),
        flush: () => {
          for (const { to, envelope } of queued.splice(0)) this.#send(to, envelope);
        },
        ping: (to) => env.ping(this, to.peerId as PeerId),
      },
      log: {
        info: () => {},
        warn: () => {},
        error: (message, fields) => env.fail(fields?.error ?? new Error(message)),
      },
      observer: { persisted: (replica, ready, before) => this.#persisted(replica, ready, before) },
    });
    const loaded = driver.load();
    assert(loaded.kind === "ok", `Node ${this.id} cannot load: ${JSON.stringify(loaded)}`);
    driver.start();
    this.driver = driver;
    this.state = "up";
    this.pausedUntil = 0;
    this.held = [];
    this.heldSync = undefined;
    const start = (this.replica?.log.firstIndex() ?? 1) - 1;
    this.#commitChecked = Math.max(this.#commitChecked, start);
  }

  /**
   * Stops the node as a power cut does: the driver is abandoned where it stands, and the store
   * keeps what was synced, plus the transaction waiting for its sync when `keepUnsynced`.
   */
  crash(keepUnsynced: boolean): { unsynced: boolean } {
    assert(this.state === "up", `Crash of node ${this.id} in state ${this.state}`);
    const unsynced = this.store.syncing;
    this.store = this.store.crash({ keepUnsynced });
    this.#down();
    this.state = "down";
    return { unsynced };
  }

  /** Removes the node for good. */
  destroy(): void {
    if (this.state === "up") this.store.crash();
    this.#down();
    this.state = "destroyed";
  }

  #down(): void {
    this.driver = undefined;
    this.incarnation++;
    this.held = [];
    this.heldSync = undefined;
  }

  /** The replica, while the node runs and hosts one. */
  get replica(): SimReplica | undefined {
    return this.driver?.replicas()[0];
  }

  /** Whether the node runs and is not paused at `now`. */
  awake(now: number): boolean {
    return this.state === "up" && this.pausedUntil <= now;
  }

  /** Submits a request; `answer` gets its outcome unless the node crashes first. */
  submit(op: SimOp, deadlineUnits: number, answer: (outcome: Outcome<SimResult>) => void): void {
    const driver = this.driver;
    if (driver === undefined) return;
    const incarnation = this.incarnation;
    const deadlineMs = EPOCH_MS + deadlineUnits * UNIT_MS;
    driver.submit({ shardId: SHARD, confEpoch: 0, op, deadlineMs }).then((outcome) => {
      if (this.incarnation === incarnation) answer(outcome);
    });
  }

  /**
   * Resolves once the node's store has a transaction waiting for its sync (at once if it has):
   * its driver then waits for the simulation, not for a microtask.
   */
  parked(): Promise<void> {
    return this.store.syncing ? Promise.resolve() : this.#parked.promise;
  }

  #gate(synced: () => void): void {
    // The replica's record is written before the node first runs: that sync completes at once.
    if (this.state !== "up") return synced();
    const env = this.#env;
    env.scheduleSync(this, 1 + env.random.int(env.config.syncUnitsMax), synced);
    this.#parked.resolve();
    this.#parked = Promise.withResolvers<void>();
  }

  #send(to: PeerId, envelope: Envelope): void {
    const env = this.#env;
    const m = envelope.message;
    if (envelope.notMember === true) return env.send(this, to, envelope);
    try {
      if (m.type === "requestVoteResponse" && !m.reject) {
        env.checker.onVoteGranted(m.from, m.term, m.to);
      }
      if (m.type === "append" || m.type === "heartbeat") this.#leads(m);
    } catch (error) {
      env.fail(error);
      throw error;
    }
    env.send(this, to, envelope);
  }

  /** A leader's message of `m.term` came from this node: it leads that term. */
  #leads(m: Message): void {
    this.#env.checker.onLeader(m.from, m.term);
  }

  /** The driver's observer: checks one persisted Ready (inside the turn's transaction). */
  #persisted(replica: SimReplica, ready: Ready, appliedBefore: LogIndex): void {
    const checker = this.#env.checker;
    const id = this.id;
    try {
      const log = replica.log;
      if (ready.snapshot !== undefined) {
        checker.onSnapshot(id, ready.snapshot);
        const meta = ready.snapshot.metadata;
        this.#env.trace(() => `n${id} installs snapshot at ${meta.index} (term ${meta.term})`);
        this.#commitChecked = Math.max(this.#commitChecked, meta.index);
      }
      checker.onPersisted(id, log, ready.entries);
      const hs = ready.hardState;
      if (hs !== undefined && hs.commit > this.#commitChecked) {
        checker.onCommit(id, log, this.#commitChecked + 1, hs.commit, hs.term);
        this.#commitChecked = hs.commit;
      }
      const status = replica.node.status();
      if (status.role === "leader" && status.term !== this.#lastLeaderTerm) {
        this.#lastLeaderTerm = status.term;
        checker.onLeader(id, status.term);
        this.#env.trace(() => `n${id} leads term ${status.term}`);
        // Its first Ready as leader: nothing committed since its election but its own entries.
        checker.checkLeaderLog(id, status.term as Term, log, checker.committedMax);
      }
      let applied: number = appliedBefore;
      for (const entry of ready.committedEntries) {
        checker.onApply(id, entry, applied);
        applied = entry.index;
      }
    } catch (error) {
      this.#env.fail(error);
      throw error;
    }
  }
}
