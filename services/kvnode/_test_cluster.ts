/**
 * An in-process cluster of kvnode drivers for tests: each node has its own real LMDB store in a
 * temp dir; Raft messages travel through an in-memory transport that can cut nodes off. Time moves
 * only when a test ticks it (every node at once), so tests wait on conditions, not on clocks.
 *
 * @module
 */
import type { Command, ScanRequest } from "@tinykv/proto/tinykv/v1";
import { HASH_SPACE, type ShardId } from "@tinykv/shard";
import type { LogIndex, PeerId } from "@tinykv/raft";
import { Driver, type Envelope, type RaftOutbound, type TurnReport } from "./driver.ts";
import { KvApplication, type KvDriver } from "./kv_app.ts";
import { NodeStore } from "./node_store.ts";
import { inlineSnapshot } from "./snapshot_stream.ts";
import type { ItemOutcome } from "./outcome.ts";
import type { PeerAddress, ReplicaRecord, ReplicaTuning } from "./replica.ts";

/** A request as tests write it. */
export type TestOp =
  | { kind: "get"; key: Uint8Array; serializable?: boolean }
  | { kind: "scan"; request: ScanRequest }
  | { kind: "mutation"; command: Command };

/** Milliseconds of the test clock per tick. */
const TICK_MS = 100;

/** Fast test timings: elections after 5–10 ticks. */
export const TEST_TUNING: ReplicaTuning = {
  electionTicks: 5,
  heartbeatTicks: 1,
  quiesceTicks: 0,
  preVote: true,
  checkQuorum: true,
  inflightMessagesMax: 64,
  messageBytesMax: 256 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  snapshotEntries: 10_000,
  snapshotLogBytes: 64 * 1024 * 1024,
};

const silentLog = { info() {}, warn() {}, error() {} };

/** A test node: its driver, its store and where its data lives. */
export interface TestNode {
  readonly nodeId: string;
  readonly dir: string;
  store: NodeStore;
  driver: KvDriver;
  up: boolean;
  /** The turns that wrote since the node (re)opened, the last 1,000. */
  readonly turns: TurnReport[];
}

/** Options of {@linkcode TestCluster.create}. */
export interface TestClusterOptions {
  readonly tickClock?: boolean;
  readonly answersLeft?: () => Promise<void>;
}

/** A cluster of in-process drivers. Close it in `finally`. */
export class TestCluster {
  readonly nodes = new Map<string, TestNode>();
  readonly #tuning: ReplicaTuning;
  readonly #root: string;
  #now = 1_700_000_000_000;
  /** Nodes whose messages, both ways, are dropped. */
  readonly isolated = new Set<string>();
  /** Nodes stopped as by SIGSTOP: not ticked, and cut off (see {@linkcode pause}). */
  readonly #paused = new Set<string>();
  readonly #options: TestClusterOptions;

  private constructor(root: string, tuning: ReplicaTuning, options: TestClusterOptions) {
    this.#root = root;
    this.#tuning = tuning;
    this.#options = options;
  }

  /**
   * With `tickClock`, each driver counts its ticks by the cluster's clock (as a kvnode does by
   * its monotonic clock), so a node that missed ticks takes them in its next turn.
   * `answersLeft` replaces the drivers' wait before a turn that only applies commits.
   */
  static async create(
    nodeIds: string[],
    tuning = TEST_TUNING,
    options: TestClusterOptions = {},
  ): Promise<TestCluster> {
    const root = await Deno.makeTempDir({ prefix: "tinykv-driver-" });
    const cluster = new TestCluster(root, tuning, options);
    for (const nodeId of nodeIds) cluster.#open(nodeId);
    return cluster;
  }

  /** Opens (or reopens) a node from its directory. */
  #open(nodeId: string): TestNode {
    const dir = `${this.#root}/${nodeId}`;
    const store = NodeStore.open({ dir, mapBytes: 256 * 1024 * 1024 });
    const turns: TurnReport[] = [];
    const driver = new Driver({
      store,
      nodeId,
      tuning: this.#tuning,
      outbound: this.#outbound(nodeId),
      clock: { now: () => this.#now },
      tickClock: this.#options.tickClock ? { periodMs: TICK_MS, now: () => this.#now } : undefined,
      log: silentLog,
      seed: [...nodeId].reduce((h, c) => h * 31 + c.charCodeAt(0), 7),
      app: new KvApplication(),
      answersLeft: this.#options.answersLeft,
      observer: {
        turned: (turn) => {
          if (turns.push(turn) > 1000) turns.shift();
        },
      },
    });
    const loaded = driver.load();
    if (loaded.kind !== "ok") throw new Error(loaded.message);
    driver.start();
    const node = { nodeId, dir, store, driver, up: true, turns };
    this.nodes.set(nodeId, node);
    return node;
  }

  #outbound(from: string): RaftOutbound {
    const queued: Array<{ to: PeerAddress; envelope: Envelope }> = [];
    const pings = new Set<string>();
    return {
      // A snapshot's data is read from the sender's view at once and travels inline.
      send: (to, envelope) => queued.push({ to, envelope: inlineSnapshot(envelope) }),
      ping: (to) => pings.add(to.nodeId),
      flush: () => {
        const batch = queued.splice(0);
        const pinged = [...pings];
        pings.clear();
        queueMicrotask(() => {
          for (const { to, envelope } of batch) this.#deliver(from, to, envelope);
          for (const to of pinged) this.#ping(from, to);
        });
      },
    };
  }

  #cut(nodeId: string): boolean {
    return this.isolated.has(nodeId) || this.#paused.has(nodeId);
  }

  #ping(from: string, to: string): void {
    if (this.#cut(from) || this.#cut(to)) return;
    const target = this.nodes.get(to);
    if (target?.up) target.driver.receive([], from);
  }

  #deliver(from: string, to: PeerAddress, envelope: Envelope): void {
    if (this.#cut(from) || this.#cut(to.nodeId)) return;
    const target = this.nodes.get(to.nodeId);
    if (target === undefined || !target.up) return;
    target.driver.receive([envelope], from);
    if (envelope.message.type === "snapshot") {
      const sender = this.nodes.get(from);
      sender?.driver.reportSnapshot(envelope.shardId, envelope.message.to, true);
    }
  }

  /** The address of a node, as peers record it. */
  peer(nodeId: string, peerId: number): PeerAddress {
    return { peerId, nodeId, address: `mem:${nodeId}` };
  }

  /** Creates shard `shardId` (the whole hash space) with one voter per node in `nodeIds`. */
  async createShard(shardId: ShardId, nodeIds: string[], firstPeerId: number): Promise<void> {
    const peers = nodeIds.map((nodeId, i) => this.peer(nodeId, firstPeerId + i));
    for (const peer of peers) {
      const record: ReplicaRecord = {
        shardId,
        peerId: peer.peerId,
        range: { lo: 0, hi: HASH_SPACE },
        peers,
        initialConfState: {
          voters: peers.map((p) => p.peerId as PeerId),
          learners: [],
          epoch: 0 as LogIndex,
        },
      };
      const result = await this.node(peer.nodeId).driver.createReplica(record);
      if (result.kind !== "ok") throw new Error(JSON.stringify(result));
    }
  }

  node(nodeId: string): TestNode {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new Error(`No test node "${nodeId}"`);
    return node;
  }

  /** Ticks every running node once and lets the loops run. */
  async tick(): Promise<void> {
    await this.tickExcept([]);
  }

  /** Like {@linkcode tick}, but the timers of `skipped` do not fire (time moves for them too). */
  async tickExcept(skipped: readonly string[]): Promise<void> {
    this.#now += TICK_MS;
    for (const node of this.nodes.values()) {
      if (!node.up || this.#paused.has(node.nodeId) || skipped.includes(node.nodeId)) continue;
      node.driver.tick();
    }
    // Let every loop finish its work (messages delivered in turn wake other loops) before the
    // next tick, so that logical time never outruns the disk.
    for (let round = 0; round < 20; round++) {
      const turns = this.#totalTurns();
      await Promise.all(
        [...this.nodes.values()].filter((n) => n.up).map((n) => n.driver.whenIdle()),
      );
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (this.#totalTurns() === turns) break;
    }
  }

  #totalTurns(): number {
    let turns = 0;
    for (const node of this.nodes.values()) turns += node.driver.turns;
    return turns;
  }

  /** Ticks until `condition` holds; fails after `ticksMax` ticks. */
  async until(condition: () => boolean, what: string, ticksMax = 400): Promise<void> {
    for (let i = 0; i < ticksMax; i++) {
      if (condition()) return;
      await this.tick();
    }
    if (!condition()) throw new Error(`Timed out waiting for ${what}`);
  }

  /** The node leading `shardId`, if one leads. */
  leaderOf(shardId: ShardId): TestNode | undefined {
    for (const node of this.nodes.values()) {
      if (!node.up) continue;
      const replica = node.driver.replicas().find((r) => r.shardId === shardId);
      if (replica?.isLeader()) return node;
    }
    return undefined;
  }

  /** Submits a request to `nodeId` without ticking; see {@linkcode settle}. */
  submit(nodeId: string, shardId: ShardId, op: TestOp): Promise<ItemOutcome> {
    const fullOp = op.kind === "get" ? { ...op, serializable: op.serializable ?? false } : op;
    return this.node(nodeId).driver.submit({
      shardId,
      confEpoch: 0,
      op: fullOp,
      deadlineMs: this.#now + 30_000,
    });
  }

  /** Ticks until every promise settled; returns their values. */
  async settle<T>(promises: Promise<T>[]): Promise<T[]> {
    let pending = promises.length;
    for (const p of promises) p.finally(() => pending--);
    await this.until(() => pending === 0, `${promises.length} answers`);
    return await Promise.all(promises);
  }

  /** Submits a request to `nodeId`, ticking until it is answered. */
  async request(nodeId: string, shardId: ShardId, op: TestOp): Promise<ItemOutcome> {
    const [outcome] = await this.settle([this.submit(nodeId, shardId, op)]);
    return outcome;
  }

  /**
   * Stops a node as SIGSTOP would: its timer stops and nothing reaches it or leaves it (messages
   * are dropped rather than held) until {@linkcode resume}; time goes on for the others.
   */
  pause(nodeId: string): void {
    this.#paused.add(nodeId);
  }

  /** Ends a {@linkcode pause}; the node's next tick or request wakes it. */
  resume(nodeId: string): void {
    this.#paused.delete(nodeId);
  }

  /** Stops a node (as a crash would: its loop ends, its store closes without more writes). */
  async stop(nodeId: string): Promise<void> {
    const node = this.node(nodeId);
    node.up = false;
    await node.driver.stop();
    await node.store.close();
  }

  /** Restarts a stopped node from its data. */
  restart(nodeId: string): TestNode {
    return this.#open(nodeId);
  }

  async close(): Promise<void> {
    for (const node of this.nodes.values()) {
      if (node.up) {
        node.up = false;
        await node.driver.stop();
        await node.store.close();
      }
    }
    await Deno.remove(this.#root, { recursive: true });
  }
}
