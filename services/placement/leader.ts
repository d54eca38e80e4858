/**
 * The placement leader's loop. Every `statusIntervalMs` one round: read the registered nodes,
 * pull every node's `Status`, build the shard views; bootstrap the shards when there is no shard
 * map yet and enough nodes; otherwise advance the moves in flight one step each, plan new moves
 * within the planner's budget, and publish the shard map when it changed (conditional
 * `setData(version)`; leader-hint-only changes debounced).
 *
 * Rounds never overlap; conf-change calls run in the background (one per shard at a time) and
 * their effect is observed by a later round's statuses, so each step is checked before it is
 * retried. Moves are recorded under `placement/tasks/<shard>` so a new leader resumes them; a
 * shard has at most one move in flight.
 *
 * A round that fails (ZooKeeper gone mid-round) is retried by the next one. A broken invariant (a
 * failed assertion) stops the loop instead and resolves {@linkcode PlacementLeader.failed}, and
 * `main.ts` stops the process.
 *
 * @module
 */
import type { Logger } from "@tinykv/log";
import type { RpcResult } from "@tinykv/rpc";
import {
  decodeShardMap,
  encodeShardMap,
  type Move,
  nodeId,
  type Plan,
  planMoves,
  type PlannerLimits,
  type ShardId,
  shardId,
  type ShardMap,
  splitEvenly,
} from "@tinykv/shard";
import type { ZooKeeperClient } from "@tinykv/zk";
import type { NodeStatusResponse } from "@tinykv/proto/tinykv/v1";
import { assert, isBrokenInvariant, unreachable } from "./_assert.ts";
import {
  mapChange,
  maxPeerId,
  type Member,
  memberNodes,
  plannerInput,
  type RegisteredNode,
  shardMapOf,
  type ShardView,
  shardViews,
  trackDowntime,
} from "./cluster_model.ts";
import type { DecisionLog } from "./decisions.ts";
import { NodeRegistry } from "./registry.ts";
import { findOrphans, orphanKey, orphansDue } from "./orphans.ts";
import type { NodeAdminPool } from "./node_admin.ts";
import type { RequestContext } from "./requests.ts";
import {
  advanced,
  decodeTask,
  encodeTask,
  expired,
  failedOnce,
  newTask,
  nextAction,
  type Task,
  type TaskAction,
} from "./task.ts";

/** Znodes placement owns, relative to the cluster root. */
export const PATHS = {
  nodes: "/nodes",
  clusterId: "/cluster_id",
  shardMap: "/shardmap",
  tasks: "/placement/tasks",
  draining: "/placement/draining",
  nextPeerId: "/placement/next_peer_id",
  bootstrap: "/placement/bootstrap",
} as const;

/** The shortest time between two publications that only move leader hints. */
export const LEADER_HINT_DEBOUNCE_MS = 1000;
/** The most moves in flight plus planned in the cluster. */
export const MOVES_MAX = 32;
/** How many advances one task may make in one round (its step count bounds it anyway). */
const ADVANCES_PER_ROUND_MAX = 8;

/** The leader's settings, from the config. */
export interface LeaderSettings {
  readonly numShards: number;
  readonly replicaCount: number;
  readonly statusIntervalMs: number;
  /** How fast a snapshot is expected to stream: bounds how long a catching-up step may take. */
  readonly snapshotBytesPerSecond: number;
  readonly limits: PlannerLimits;
}

/** The cluster as of the last round, for the admin API and the HTTP status. */
export interface ClusterSnapshot {
  readonly atMs: number;
  readonly bootstrapped: boolean;
  readonly mapVersion: number;
  readonly registered: readonly RegisteredNode[];
  readonly downSinceMs: ReadonlyMap<string, number>;
  readonly draining: ReadonlySet<string>;
  readonly views: ReadonlyMap<number, ShardView>;
  readonly tasks: readonly Task[];
  readonly notes: readonly string[];
}

/** What the leader loop counts for `/metrics` (`PlacementMetrics` in metrics.ts). */
export interface LeaderMetrics {
  round(): void;
  statusFailure(): void;
  moveStarted(cause: string): void;
  moveEnded(cause: string, event: "done" | "failed"): void;
  stepFailure(): void;
  mapPublished(): void;
  orphanDeleted(): void;
  /** A round's planning took `seconds`. */
  planned(seconds: number): void;
}

/**
 * After this many quiet rounds in a row (nothing changed, nothing to do), placement polls the
 * kvnodes {@linkcode QUIET_INTERVAL_FACTOR} times less often, until a round sees a change, a kvnode
 * registers, leaves or moves in ZooKeeper, or an operator asks for a move or a drain: an idle
 * cluster of a thousand shards then costs placement and the kvnodes (whose statuses it decodes
 * and plans over) a tenth as much.
 */
const QUIET_ROUNDS = 3;
/** How much longer the pause between quiet rounds is than `status_interval_ms`. */
const QUIET_INTERVAL_FACTOR = 10;

/** A request's outcome for the admin API. */
export type LeaderAnswer<T> =
  | { readonly kind: "ok"; readonly value: T }
  | { readonly kind: "invalidArgument" | "failedPrecondition" | "unavailable"; message: string };

/** The loop of the placement leader; one per term of leadership. */
export class PlacementLeader {
  readonly #zk: ZooKeeperClient;
  readonly #settings: LeaderSettings;
  readonly #log: Logger;
  readonly #decisions: DecisionLog;
  readonly #admin: NodeAdminPool;
  readonly metrics: LeaderMetrics;
  #running = false;
  #loop: Promise<void> | undefined;
  /** Ends the pause between rounds, while one is pending. */
  #wake: (() => void) | undefined;
  /** Rounds in a row that found nothing to do (see {@linkcode QUIET_ROUNDS}). */
  #quietRounds = 0;
  /** What the last round saw (`roundSignature`): a change ends a quiet spell. */
  #lastSignature = "";
  #clusterId = "";
  #map: ShardMap | undefined;
  #mapZkVersion = -1;
  #lastPublishMs = 0;
  readonly #registry: NodeRegistry;
  #downSince = new Map<string, number>();
  #cutOff = false;
  #draining = new Set<string>();
  /** The moves in flight, by shard. Invariant: a shard has at most one move in flight. */
  #tasks = new Map<number, Task>();
  /** Shards whose move {@linkcode startMove} is recording: in flight, not yet in `#tasks`. */
  readonly #starting = new Set<number>();
  /** Shards with a conf-change call in flight. Invariant: at most one call per shard. */
  #busy = new Set<number>();
  /** Orphan replicas seen, by `orphanKey`, with when first seen. */
  readonly #orphansSeen = new Map<string, number>();
  #callEndedMs = new Map<number, number>();
  #lastMoveMs = new Map<number, number>();
  /**
   * When an operator last moved a leadership away from each node: leader balancing gives such a
   * node none for the shard cooldown (see `PlannerNode.leadersMovedAwayMs`).
   */
  #leadersMovedAwayMs = new Map<string, number>();
  #waitReason = new Map<number, string>();
  #snapshot: ClusterSnapshot | undefined;
  #maxPeerSeen = 0;
  readonly #failure = Promise.withResolvers<Error>();

  constructor(
    zk: ZooKeeperClient,
    options: {
      settings: LeaderSettings;
      log: Logger;
      decisions: DecisionLog;
      admin: NodeAdminPool;
      metrics: LeaderMetrics;
    },
  ) {
    this.#zk = zk;
    this.#settings = options.settings;
    this.#log = options.log;
    this.#decisions = options.decisions;
    this.#admin = options.admin;
    this.metrics = options.metrics;
    this.#registry = new NodeRegistry(
      zk,
      (message, fields) => this.#log.warn(message, fields),
      () => this.#endQuiet(),
    );
  }

  /** The cluster id learned from ZooKeeper ("" until known). */
  get clusterId(): string {
    return this.#clusterId;
  }

  /** The cluster as of the last round, undefined before the first. */
  get snapshot(): ClusterSnapshot | undefined {
    return this.#snapshot;
  }

  /**
   * Resolves with the broken invariant (a failed assertion) that stopped the loop. This instance
   * can no longer lead correctly: the process must stop, so that another instance leads.
   */
  get failed(): Promise<Error> {
    return this.#failure.promise;
  }

  /** Loads what a previous leader left (tasks, draining nodes, the map) and starts the loop. */
  async start(): Promise<void> {
    await this.#zk.mkdirp(PATHS.tasks);
    await this.#registry.start();
    await this.#decisions.load();
    for (const child of await this.#zk.children(PATHS.tasks) ?? []) {
      const node = await this.#zk.get(`${PATHS.tasks}/${child}`);
      const task = node === undefined ? undefined : decodeTask(new TextDecoder().decode(node.data));
      // A resumed step gets a fresh time budget under this leader.
      if (task !== undefined) {
        this.#tasks.set(task.move.shardId, { ...task, stepStartedAtMs: Date.now() });
      }
    }
    const draining = await this.#zk.get(PATHS.draining);
    if (draining !== undefined) {
      this.#draining = new Set(JSON.parse(new TextDecoder().decode(draining.data)) as string[]);
    }
    await this.#readMap();
    this.#decisions.add({
      atMs: Date.now(),
      event: "leader",
      reason: `became the placement leader; resuming ${this.#tasks.size} moves`,
    });
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops the loop after the current round; conf-change calls in flight are left to finish. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    this.#registry.close();
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const started = Date.now();
      try {
        await this.#round();
      } catch (error) {
        if (isBrokenInvariant(error)) return this.#fail(error);
        this.#log.warn("Placement round failed", { error });
      }
      const interval = this.#quietRounds >= QUIET_ROUNDS
        ? QUIET_INTERVAL_FACTOR * this.#settings.statusIntervalMs
        : this.#settings.statusIntervalMs;
      const pause = Math.max(0, interval - (Date.now() - started));
      // Stopped during the round: no pause. (A kick during a round, such as the moves a round
      // starts itself, only shortens the next pause to the normal interval.)
      if (!this.#running) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pause);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** Stops the loop for a broken invariant; {@linkcode failed} resolves with it. */
  #fail(error: Error): void {
    this.#running = false;
    this.#wake?.();
    this.#log.error("Placement leader loop failed: a broken invariant stops it", { error });
    this.#failure.resolve(error);
  }

  async #readMap(): Promise<void> {
    const node = await this.#zk.get(PATHS.shardMap);
    if (node === undefined) return;
    const decoded = decodeShardMap(node.data);
    if (decoded.kind !== "ok") {
      this.#log.error("The published shard map is invalid", { error: decoded.error.message });
      return;
    }
    this.#map = decoded.map;
    this.#mapZkVersion = node.version;
  }

  async #round(): Promise<void> {
    if (!this.#zk.connected) {
      this.#cutOff = true;
      return;
    }
    const nowMs = Date.now();
    this.metrics.round();
    if (this.#clusterId === "") {
      const id = await this.#zk.get(PATHS.clusterId);
      if (id !== undefined) this.#clusterId = new TextDecoder().decode(id.data).trim();
    }
    const registered = this.#registry.registered();
    const statuses = await this.#pullStatuses(registered);
    const statusesAtMs = Date.now();
    this.#maxPeerSeen = Math.max(this.#maxPeerSeen, maxPeerId(statuses));
    if (this.#map === undefined) {
      this.#snapshotOf(nowMs, registered, new Map(), ["waiting to bootstrap"]);
      if (registered.length >= this.#settings.replicaCount && this.#clusterId !== "") {
        await this.#bootstrap(registered);
      }
      await this.#decisions.flush();
      return;
    }
    const views = shardViews(statuses, this.#map);
    const live = new Set(registered.map((node) => node.id));
    // Time cut off from ZooKeeper does not count toward `down_after`: restart the clocks.
    const previous = this.#cutOff ? new Map<string, number>() : this.#downSince;
    this.#cutOff = false;
    this.#downSince = trackDowntime(previous, live, memberNodes(views), nowMs);
    await this.#runTasks(views, statusesAtMs);
    await this.#deleteOrphans(views, nowMs);
    const plan = await this.#planAndStart(views, registered, nowMs, false);
    await this.#publish(views);
    await this.#decisions.flush();
    this.#snapshotOf(nowMs, registered, views, plan.notes);
    this.#countQuiet(roundSignature(registered, views, this.#map), plan.moves.length === 0);
  }

  /**
   * Counts a round as quiet when it saw what the last one saw, started nothing, and nothing
   * waits on a clock here (a move, a node going down, an orphan's grace period).
   */
  #countQuiet(signature: string, nothingPlanned: boolean): void {
    const quiet = nothingPlanned && signature === this.#lastSignature &&
      this.#tasks.size === 0 && this.#busy.size === 0 && this.#downSince.size === 0 &&
      this.#orphansSeen.size === 0;
    this.#lastSignature = signature;
    this.#quietRounds = quiet ? this.#quietRounds + 1 : 0;
  }

  /** Ends a quiet spell at once (an operator asked for something). */
  #kick(): void {
    this.#quietRounds = 0;
    this.#wake?.();
  }

  /**
   * A kvnode registered, left or moved: a quiet spell ends with a round now (during a round, the
   * next pause is the normal one); otherwise the next round, at most `status_interval_ms` away,
   * sees it (a flapping registration cannot make the loop run rounds back to back).
   */
  #endQuiet(): void {
    const quiet = this.#quietRounds >= QUIET_ROUNDS;
    this.#quietRounds = 0;
    if (quiet) this.#wake?.();
  }

  #snapshotOf(
    atMs: number,
    registered: RegisteredNode[],
    views: ReadonlyMap<number, ShardView>,
    notes: readonly string[],
  ): void {
    const tasks = [...this.#tasks.values()].map((task) => {
      const why = this.#waitReason.get(task.move.shardId);
      return task.lastError === undefined && why !== undefined ? { ...task, lastError: why } : task;
    });
    this.#snapshot = {
      atMs,
      bootstrapped: this.#map !== undefined,
      mapVersion: this.#map?.version ?? 0,
      registered,
      downSinceMs: new Map(this.#downSince),
      draining: new Set(this.#draining),
      views,
      tasks,
      notes,
    };
  }

  async #pullStatuses(registered: readonly RegisteredNode[]): Promise<NodeStatusResponse[]> {
    const deadlineMs = Math.max(200, Math.min(2000, 2 * this.#settings.statusIntervalMs));
    const answers = await Promise.all(
      registered.map((node) => this.#admin.status(node.address, deadlineMs)),
    );
    const out: NodeStatusResponse[] = [];
    answers.forEach((answer, i) => {
      if (answer.kind === "ok") out.push(answer.response);
      else {
        this.metrics.statusFailure();
        this.#log.debug("Status failed", { node: registered[i].id, message: answer.message });
      }
    });
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Bootstrap.

  async #bootstrap(registered: readonly RegisteredNode[]): Promise<void> {
    const layout = await this.#bootstrapLayout(registered);
    for (const shard of layout) {
      for (const member of shard.members) {
        const created = await this.#admin.createReplica(member, {
          shardId: shard.id,
          range: shard.range,
          voters: shard.members,
          learners: [],
          confEpoch: 0,
          join: false,
        });
        if (created.kind !== "ok") {
          this.#log.warn("Bootstrap: cannot create a replica; retrying next round", {
            shard: shard.id,
            node: member.nodeId,
            message: created.message,
          });
          return;
        }
      }
    }
    const map: ShardMap = {
      version: 1,
      clusterId: this.#clusterId,
      shards: layout.map((shard) => ({
        id: shardId(shard.id),
        range: shard.range,
        replicas: shard.members.map((m) => nodeId(m.nodeId)),
        learners: [],
        confEpoch: 0,
      })),
    };
    const encoded = encodeShardMap(map);
    if (encoded.kind !== "ok") {
      throw new Error(`Bootstrap map is invalid: ${describeEncodeError(encoded)}`);
    }
    const created = await this.#zk.create(PATHS.shardMap, encoded.bytes);
    if (created.kind !== "ok" && created.kind !== "nodeExists") {
      throw new Error(`Cannot publish the first shard map: ${created.kind}`);
    }
    await this.#zk.delete(PATHS.bootstrap);
    await this.#readMap();
    this.metrics.mapPublished();
    this.#decisions.add({
      atMs: Date.now(),
      event: "bootstrap",
      reason: `created ${layout.length} shards with ${this.#settings.replicaCount} replicas on ` +
        `${registered.length} nodes and published shard map version 1`,
    });
    this.#log.info("Bootstrapped the cluster", { shards: layout.length });
  }

  /** The bootstrap layout: the one a previous leader recorded, or a new one (recorded first). */
  async #bootstrapLayout(
    registered: readonly RegisteredNode[],
  ): Promise<{ id: ShardId; range: { lo: number; hi: number }; members: Member[] }[]> {
    const stored = await this.#zk.get(PATHS.bootstrap);
    if (stored !== undefined) return JSON.parse(new TextDecoder().decode(stored.data));
    const { numShards, replicaCount } = this.#settings;
    // Invariant: a shard's replicas are on distinct nodes. `#round` bootstraps only once
    // `replicaCount` nodes are registered, so each shard takes `replicaCount` of them in turn.
    assert(
      registered.length >= replicaCount,
      () => `Bootstrap with ${registered.length} nodes: fewer than ${replicaCount} replicas`,
    );
    const firstPeer = await this.#allocatePeerIds(numShards * replicaCount);
    const nodes = [...registered].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const layout = splitEvenly(numShards).map((range, s) => ({
      id: shardId(s + 1),
      range,
      members: Array.from({ length: replicaCount }, (_, i) => {
        const node = nodes[(s + i) % nodes.length];
        return { peerId: firstPeer + s * replicaCount + i, nodeId: node.id, address: node.address };
      }),
    }));
    await this.#zk.mkdirp("/placement");
    const created = await this.#zk.create(PATHS.bootstrap, JSON.stringify(layout));
    if (created.kind === "nodeExists") return await this.#bootstrapLayout(registered);
    return layout;
  }

  /** Allocates `count` consecutive never-used peer ids; returns the first. */
  async #allocatePeerIds(count: number): Promise<number> {
    await this.#zk.mkdirp("/placement");
    for (let attempt = 0; attempt < 10; attempt++) {
      const node = await this.#zk.get(PATHS.nextPeerId);
      const floor = this.#maxPeerSeen + 1;
      if (node === undefined) {
        const created = await this.#zk.create(PATHS.nextPeerId, String(floor + count));
        if (created.kind === "ok") return floor;
        continue;
      }
      const stored = Number(new TextDecoder().decode(node.data));
      const first = Math.max(Number.isSafeInteger(stored) ? stored : 0, floor);
      const written = await this.#zk.setData(PATHS.nextPeerId, String(first + count), node.version);
      if (written.kind === "ok") return first;
    }
    throw new Error("Cannot allocate peer ids: the counter keeps changing");
  }

  // -------------------------------------------------------------------------------------------
  // Moves.

  /** Deletes replicas seen outside their group for a while (see `orphans.ts`). */
  async #deleteOrphans(views: ReadonlyMap<number, ShardView>, nowMs: number): Promise<void> {
    const busy = new Set([...this.#movesInFlight(), ...this.#busy]);
    for (const orphan of orphansDue(this.#orphansSeen, findOrphans(views, busy), nowMs)) {
      const address = this.#registry.address(orphan.nodeId);
      if (address === undefined) continue;
      const result = await this.#admin.deleteReplica({ address }, orphan);
      const where = `replica peer ${orphan.peerId} of shard ${orphan.shardId} on ${orphan.nodeId}`;
      if (result.kind !== "ok") {
        this.#log.warn("Cannot delete an orphan replica", { orphan, error: result.message });
        continue;
      }
      this.#orphansSeen.delete(orphanKey(orphan));
      if (!result.response.deleted) continue;
      this.metrics.orphanDeleted();
      this.#decisions.add({
        atMs: Date.now(),
        event: "orphan",
        reason: `deleted ${where}: not a member of its group at conf epoch ${orphan.confEpoch}`,
      });
      this.#log.info("Deleted an orphan replica", { orphan });
    }
  }

  async #runTasks(views: ReadonlyMap<number, ShardView>, statusesAtMs: number): Promise<void> {
    const lookup = { address: (node: string) => this.#registry.address(node) };
    for (const [id, initial] of [...this.#tasks]) {
      if (this.#busy.has(id)) continue;
      // The statuses must postdate the last call, or they may not show its effect yet.
      if ((this.#callEndedMs.get(id) ?? 0) > statusesAtMs) continue;
      let task = initial;
      const why = expired(task, Date.now(), {
        sizeBytes: views.get(id)?.sizeBytes ?? 0,
        bytesPerSecond: this.#settings.snapshotBytesPerSecond,
      });
      if (why !== undefined) {
        await this.#finishTask(task, "failed", `${task.reason}: ${why}`);
        continue;
      }
      for (let i = 0; i < ADVANCES_PER_ROUND_MAX; i++) {
        const action = nextAction(task, views.get(id), lookup);
        if (action.kind !== "advance") {
          await this.#act(task, action, views.get(id));
          break;
        }
        task = advanced(task, Date.now());
        await this.#saveTask(task);
      }
    }
  }

  async #act(task: Task, action: TaskAction, view: ShardView | undefined): Promise<void> {
    const id = task.move.shardId;
    switch (action.kind) {
      case "advance":
        return;
      case "done":
        await this.#finishTask(task, "done", `${task.reason}: done`);
        return;
      case "fail":
        await this.#finishTask(task, "failed", `${task.reason}: ${action.why}`);
        return;
      case "wait":
        this.#waitReason.set(id, action.why);
        return;
      case "allocatePeerId": {
        const peerId = await this.#allocatePeerIds(1);
        await this.#saveTask({ ...task, newPeerId: peerId });
        return;
      }
      case "createReplica":
      case "changeMembership":
      case "transferLeader":
        // `nextAction` asks for a call only on a shard it saw; `#runTasks` skips busy shards.
        assert(view !== undefined, () => `Action "${action.kind}" on unknown shard ${id}`);
        assert(!this.#busy.has(id), () => `Shard ${id} got a second call in flight`);
        this.#waitReason.delete(id);
        this.#busy.add(id);
        this.#call(action, view).then(
          (result) => this.#callEnded(id, action, result),
          (error) => {
            if (isBrokenInvariant(error)) throw error;
            this.#callEnded(id, action, { kind: "internal", message: String(error) });
          },
        ).catch((error) => this.#fail(error instanceof Error ? error : new Error(String(error))));
        return;
      default:
        return unreachable(action, "task action");
    }
  }

  #call(action: CallAction, view: ShardView): Promise<RpcResult<unknown>> {
    switch (action.kind) {
      case "createReplica":
        return this.#admin.createReplica(action.node, {
          shardId: view.id,
          range: view.range,
          voters: action.voters,
          learners: action.learners,
          confEpoch: action.confEpoch,
          join: true,
        });
      case "changeMembership":
        return this.#admin.changeMembership(action.leader, {
          shardId: view.id,
          change: action.change,
          peer: action.peer,
          expectedConfEpoch: action.expectedConfEpoch,
        });
      case "transferLeader":
        return this.#admin.transferLeader(action.leader, {
          shardId: view.id,
          target: action.target,
          expectedConfEpoch: action.expectedConfEpoch,
        });
      default:
        return unreachable(action, "call action");
    }
  }

  #callEnded(id: number, action: TaskAction, result: RpcResult<unknown>): void {
    assert(this.#busy.delete(id), () => `A call on shard ${id} ended that was not in flight`);
    this.#callEndedMs.set(id, Date.now());
    const task = this.#tasks.get(id);
    if (result.kind === "ok" || task === undefined || !this.#running) return;
    this.metrics.stepFailure();
    const failed = failedOnce(task, `${action.kind}: ${result.message}`);
    this.#log.info("A move step failed; retrying", { shard: id, error: failed.lastError });
    // The next round abandons the task if it failed too often (see `expired`).
    this.#tasks.set(id, failed);
  }

  async #saveTask(task: Task): Promise<void> {
    const path = `${PATHS.tasks}/${task.move.shardId}`;
    const data = encodeTask(task);
    const written = await this.#zk.setData(path, data, -1);
    if (written.kind === "noNode") await this.#zk.create(path, data);
    this.#tasks.set(task.move.shardId, task);
  }

  async #finishTask(task: Task, event: "done" | "failed", reason: string): Promise<void> {
    const id = task.move.shardId;
    await this.#zk.delete(`${PATHS.tasks}/${id}`);
    this.#tasks.delete(id);
    this.#waitReason.delete(id);
    this.#lastMoveMs.set(id, Date.now());
    this.metrics.moveEnded(task.cause, event);
    this.#decisions.add({ atMs: Date.now(), event, reason, move: task.move, cause: task.cause });
    this.#log.info(`Move ${event}`, { shard: id, reason });
  }

  /**
   * Starts a move; the caller checked it, against {@linkcode requestContext}'s `busy` shards, with
   * no `await` in between. The shard counts as busy from this call on, before the task is written.
   */
  async startMove(
    move: Move,
    options: { cause: string; reason: string; leader?: string },
  ): Promise<Task> {
    const id = move.shardId;
    assert(
      !this.#tasks.has(id) && !this.#starting.has(id),
      () => `Shard ${id} already has a move in flight: cannot start ${JSON.stringify(move)}`,
    );
    const task = newTask(move, { ...options, nowMs: Date.now() });
    if (options.cause === "operator" && move.kind === "transferLeader") {
      this.#leadersMovedAwayMs.set(move.from, Date.now());
    }
    this.#starting.add(id);
    try {
      await this.#saveTask(task);
    } finally {
      this.#starting.delete(id);
    }
    this.#kick();
    this.metrics.moveStarted(options.cause);
    this.#decisions.add({
      atMs: Date.now(),
      event: "started",
      reason: options.reason,
      move,
      cause: options.cause,
    });
    this.#log.info("Move started", { shard: move.shardId, reason: options.reason });
    return task;
  }

  async #planAndStart(
    views: ReadonlyMap<number, ShardView>,
    registered: readonly RegisteredNode[],
    nowMs: number,
    dryRun: boolean,
  ): Promise<Plan> {
    const planStarted = performance.now();
    const plan = planMoves(plannerInput(views, {
      registered,
      downSinceMs: this.#downSince,
      draining: this.#draining,
      movesInFlight: [...this.#tasks.values()].map((task) => task.move),
      lastMoveMs: this.#lastMoveMs,
      leadersMovedAwayMs: this.#leadersMovedAwayMs,
      replicaCount: this.#settings.replicaCount,
      limits: this.#settings.limits,
      nowMs,
    }));
    if (!dryRun) this.metrics.planned((performance.now() - planStarted) / 1000);
    if (dryRun) return plan;
    for (const move of plan.moves) {
      if (this.#movesInFlight().has(move.shardId)) continue;
      const { cause, reason, ...bare } = move;
      await this.startMove(bare as Move, {
        cause,
        reason,
        leader: views.get(move.shardId)?.leader?.nodeId,
      });
    }
    return plan;
  }

  // -------------------------------------------------------------------------------------------
  // Publication.

  async #publish(views: ReadonlyMap<number, ShardView>): Promise<void> {
    const current = this.#map;
    if (current === undefined) return;
    const next = shardMapOf(views, {
      version: current.version + 1,
      clusterId: current.clusterId ?? (this.#clusterId || undefined),
    });
    const change = mapChange(current, next);
    if (change === "none") return;
    if (change === "leaders" && Date.now() - this.#lastPublishMs < LEADER_HINT_DEBOUNCE_MS) return;
    const encoded = encodeShardMap(next);
    if (encoded.kind !== "ok") {
      this.#log.warn("Not publishing an invalid shard map", {
        error: describeEncodeError(encoded),
      });
      return;
    }
    const written = await this.#zk.setData(PATHS.shardMap, encoded.bytes, this.#mapZkVersion);
    if (written.kind === "ok") {
      this.#map = next;
      this.#mapZkVersion = written.version;
      this.#lastPublishMs = Date.now();
      this.metrics.mapPublished();
      return;
    }
    this.#log.warn("Shard map publication refused: re-reading it", { outcome: written.kind });
    await this.#readMap();
  }

  // -------------------------------------------------------------------------------------------
  // Operator requests.

  /** What request checks look at, as of the last round. */
  requestContext(): RequestContext | undefined {
    const snapshot = this.#snapshot;
    if (snapshot === undefined) return undefined;
    return {
      views: snapshot.views,
      live: new Set(snapshot.registered.map((node) => node.id)),
      draining: this.#draining,
      busy: this.#movesInFlight(),
      replicaCount: this.#settings.replicaCount,
    };
  }

  /** The shards with a move in flight, counting those {@linkcode startMove} is recording. */
  #movesInFlight(): Set<number> {
    return new Set([...this.#tasks.keys(), ...this.#starting]);
  }

  /** Plans a round now (from the last round's views); starts it unless `dryRun`. */
  async rebalance(dryRun: boolean): Promise<Plan> {
    const snapshot = this.#snapshot;
    if (snapshot === undefined || !snapshot.bootstrapped) {
      return { moves: [], notes: ["the cluster is not bootstrapped yet"] };
    }
    return await this.#planAndStart(snapshot.views, snapshot.registered, Date.now(), dryRun);
  }

  /** Marks `node` draining (recorded in ZooKeeper). */
  async drain(node: string): Promise<void> {
    if (this.#draining.has(node)) return;
    const next = new Set([...this.#draining, node]);
    const data = JSON.stringify([...next].sort());
    await this.#zk.mkdirp("/placement");
    const written = await this.#zk.setData(PATHS.draining, data, -1);
    if (written.kind === "noNode") await this.#zk.create(PATHS.draining, data);
    this.#draining = next;
    this.#kick();
    this.#decisions.add({
      atMs: Date.now(),
      event: "drain",
      reason: `operator asked to drain ${node}: its replicas move away`,
    });
  }
}

/** The actions {@linkcode nextAction} answers that make a call to a kvnode. */
type CallAction = Extract<
  TaskAction,
  { kind: "createReplica" | "changeMembership" | "transferLeader" }
>;

/**
 * What a round saw that matters for planning: the registered nodes, each shard's members,
 * leader, epoch, commit index and hosts, and the map's version. Equal signatures in a row mean an
 * idle cluster.
 */
function roundSignature(
  registered: readonly RegisteredNode[],
  views: ReadonlyMap<number, ShardView>,
  map: ShardMap | undefined,
): string {
  const parts = [`${map?.version ?? 0}`, registered.map((n) => `${n.id}@${n.address}`).join()];
  for (const view of views.values()) {
    parts.push(
      `${view.id}:${view.leader?.nodeId ?? ""}:${view.confEpoch}:${view.commitIndex}:` +
        [...view.hosted.keys()].join(),
    );
  }
  return parts.join("|");
}

function describeEncodeError(
  result: { kind: "invalid"; error: { message: string } } | { kind: "tooLarge"; message: string },
): string {
  return result.kind === "invalid" ? result.error.message : result.message;
}
