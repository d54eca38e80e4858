/**
 * {@linkcode Simulation}: one seed, one whole Raft group. Each node ({@linkcode SimNode}) runs
 * the real kvnode driver — loop, group commit, persistence, fencing, membership, snapshots — with
 * the simulation's application over an in-memory store whose syncs take simulated time; a
 * simulated network delays, reorders, loses, duplicates and partitions messages; a chaos process
 * crashes (keeping or losing the transaction in its sync), pauses and restarts nodes, changes
 * membership and transfers leadership through the driver's admin calls; clients issue operations.
 * Everything is driven by one event queue on a logical clock and one seeded generator: before time
 * moves past an instant, the run waits until every driver is idle or waiting for a sync, and
 * nothing but microtasks runs meanwhile, so the drivers' asynchronous loops advance
 * deterministically and a seed replays the run exactly. The
 * run ends with a liveness phase: faults off, every node back up, and within ten election timeouts
 * a leader must commit a new entry on every live voter (thirty in runs with pre-vote off, see
 * below). Then the replicas' states and the client history are checked.
 *
 * @module
 */

import { appendListModel, check, type CheckResult, registerModel } from "@tinykv/lincheck";
import type { ConfState, Message, PeerId } from "@tinykv/raft";
import type { Envelope } from "../../services/kvnode/driver.ts";
import type { Outcome } from "../../services/kvnode/application.ts";
import type { ReplicaTuning } from "../../services/kvnode/replica.ts";
import { assert } from "./_assert.ts";
import {
  ClientDriver,
  type ClientOutcome,
  type ClientReply,
  type ClientRequest,
} from "./clients.ts";
import { type SimConfig, TICK_UNITS } from "./config.ts";
import { EventQueue } from "./event_queue.ts";
import { SimNetwork } from "./network.ts";
import { SimRandom } from "./random.ts";
import { InvariantViolation, SafetyChecker } from "./safety_checker.ts";
import type { SimOp, SimResult } from "./sim_app.ts";
import { type NodeEnv, peerAddress, peerOfNode, SHARD, SimNode, UNIT_MS } from "./sim_node.ts";

type SimEvent =
  | { readonly kind: "tick"; readonly node: SimNode; readonly incarnation: number }
  | {
    readonly kind: "syncDone";
    readonly node: SimNode;
    readonly incarnation: number;
    readonly synced: () => void;
  }
  | {
    readonly kind: "deliver";
    readonly from: SimNode;
    readonly fromIncarnation: number;
    readonly to: PeerId;
    readonly envelope: Envelope;
  }
  | {
    readonly kind: "snapshotReport";
    readonly node: SimNode;
    readonly incarnation: number;
    readonly peer: PeerId;
    readonly ok: boolean;
  }
  | { readonly kind: "restart"; readonly node: SimNode }
  | { readonly kind: "resume"; readonly node: SimNode; readonly incarnation: number }
  | {
    readonly kind: "destroy";
    readonly node: SimNode;
    readonly why: string;
    /** Only if the node is in no membership a running replica applied by then. */
    readonly unlessMember?: boolean;
  }
  | { readonly kind: "chaos" }
  | { readonly kind: "heal"; readonly partition: number }
  | { readonly kind: "request"; readonly to: PeerId; readonly request: ClientRequest }
  | { readonly kind: "reply"; readonly reply: ClientReply }
  | { readonly kind: "wake"; readonly client: number; readonly token: number };

const EVENT_CODES: Record<SimEvent["kind"], number> = {
  tick: 1,
  resume: 2,
  syncDone: 3,
  deliver: 4,
  snapshotReport: 5,
  restart: 6,
  chaos: 7,
  heal: 8,
  request: 9,
  reply: 10,
  wake: 11,
  destroy: 12,
};

/** Options of one run. */
export interface SimOptions {
  /** Receives trace lines; tracing is off without it. */
  readonly trace?: (line: string) => void;
  /** Also traces every message delivered (with `trace`). */
  readonly traceMessages?: boolean;
}

/** Counts of what happened, for the summary. */
export interface SimStats {
  /** Events processed. */
  events: number;
  /** Raft messages sent (before faults). */
  messages: number;
  /** Driver turns (over every node and life). */
  turns: number;
  /** Store transactions synced (group commits, record writes). */
  transactions: number;
  /** Node crashes. */
  crashes: number;
  /** Crashes that kept the transaction waiting for its sync. */
  unsyncedKept: number;
  /** Crashes that lost the transaction waiting for its sync. */
  unsyncedLost: number;
  /** Node pauses. */
  pauses: number;
  /** Partitions started. */
  partitions: number;
  /** Membership changes applied (the admin call answered ok). */
  confChanges: number;
  /** Leader transfers requested. */
  transfers: number;
  /** Snapshot messages delivered to a follower. */
  snapshotsDelivered: number;
  /** Client operations invoked. */
  operations: number;
  /** Client operations answered. */
  operationsOk: number;
  /** Client mutations given up with an unknown outcome. */
  operationsUnknown: number;
  /** Safety checks performed. */
  safetyChecks: number;
  /** Search steps the linearizability checker spent. */
  lincheckSteps: number;
  /** Simulated time at the end of the run. */
  endTime: number;
}

/** A membership change the admin asked for and waits on. */
interface AdminChange {
  readonly kind: "add" | "promote" | "remove";
  readonly node: PeerId;
  /** The node whose driver was asked. */
  readonly leader: PeerId;
}

/** The liveness probe: a no-op proposed on a leader, then awaited on every live voter. */
interface Probe {
  readonly term: number;
  index: number | undefined;
}

/** Ticks an admin call may wait for its conf change to apply. */
const ADMIN_TIMEOUT_TICKS = 50;

/** One simulation run of one seed. */
export class Simulation {
  /** What the seed drew. */
  readonly config: SimConfig;
  /** The generator behind every choice of the run. */
  readonly random: SimRandom;
  /** The global safety checks. */
  readonly checker: SafetyChecker = new SafetyChecker();
  /** Partitions and message faults. */
  readonly network: SimNetwork;
  /** Every node ever created, by id. */
  readonly nodes: Map<PeerId, SimNode> = new Map();
  /** The clients and their recorded history. */
  readonly clients: ClientDriver;
  /** What happened, for the summary. */
  readonly stats: SimStats;
  /** A hash of every event processed: equal runs have equal hashes. */
  traceHash = 0x811c9dc5;
  #now = 0;
  readonly #queue: EventQueue<SimEvent> = new EventQueue();
  readonly #trace: ((line: string) => void) | undefined;
  readonly #traceMessages: boolean;
  readonly #env: NodeEnv;
  readonly #bootstrap: ConfState;
  #nextNodeId: number;
  #partition = 0;
  #admin: AdminChange | undefined = undefined;
  #phase: "faults" | "liveness" | "drain" | "done" = "faults";
  #livenessDeadline = 0;
  #drainDeadline = 0;
  #probe: Probe | undefined = undefined;
  #failure: unknown = undefined;
  /** Progress made by callbacks (admin answers, replies): part of {@linkcode #progress}. */
  #callbacks = 0;

  /** Sets up the cluster of `config` (nothing runs until {@linkcode run}). */
  constructor(config: SimConfig, options: SimOptions = {}) {
    this.config = config;
    this.random = new SimRandom(config.seed);
    this.#trace = options.trace;
    this.#traceMessages = options.trace !== undefined && options.traceMessages === true;
    this.network = new SimNetwork(config);
    this.stats = {
      events: 0,
      messages: 0,
      turns: 0,
      transactions: 0,
      crashes: 0,
      unsyncedKept: 0,
      unsyncedLost: 0,
      pauses: 0,
      partitions: 0,
      confChanges: 0,
      transfers: 0,
      snapshotsDelivered: 0,
      operations: 0,
      operationsOk: 0,
      operationsUnknown: 0,
      safetyChecks: 0,
      lincheckSteps: 0,
      endTime: 0,
    };
    this.#env = this.#nodeEnv();
    this.#traceLine(() => `seed ${config.seed}: ${JSON.stringify(config)}`);
    const voters = Array.from({ length: config.voters }, (_, i) => (i + 1) as PeerId);
    this.#bootstrap = { voters, learners: [], epoch: 0 as ConfState["epoch"] };
    this.#nextNodeId = config.voters + 1;
    for (const id of voters) this.nodes.set(id, new SimNode(id, this.#env));
    this.clients = new ClientDriver({
      config,
      random: this.random,
      now: () => this.#now,
      contactable: () => this.#contactable(),
      sendRequest: (to, request) => this.#sendToNode(to, request),
      scheduleWake: (client, delay, token) =>
        this.#queue.push(this.#now + delay, { kind: "wake", client, token }),
      trace: (line) => this.#traceLine(line),
    });
    this.#queue.push(TICK_UNITS, { kind: "chaos" });
  }

  /** The current simulated time. */
  get now(): number {
    return this.#now;
  }

  #nodeEnv(): NodeEnv {
    const c = this.config;
    const tuning: ReplicaTuning = {
      electionTicks: c.electionTicks,
      heartbeatTicks: c.heartbeatTicks,
      quiesceTicks: c.quiesceTicks,
      preVote: c.preVote,
      checkQuorum: c.checkQuorum,
      readMode: c.readMode,
      inflightMessagesMax: c.inflightMessagesMax,
      messageBytesMax: c.appendBytesMax,
      uncommittedBytesMax: c.uncommittedBytesMax,
      committedBytesMax: c.committedBytesMax,
      pendingReadsMax: c.pendingReadsMax,
      snapshotEntries: c.snapshotEntries,
      snapshotLogBytes: 64 * 1024 * 1024,
    };
    return {
      config: c,
      random: this.random,
      checker: this.checker,
      tuning,
      now: () => this.#now,
      send: (from, to, envelope) => this.#sendEnvelope(from, to, envelope),
      ping: (from, to) => this.#ping(from, to),
      scheduleSync: (node, delay, synced) =>
        this.#queue.push(this.#now + delay, {
          kind: "syncDone",
          node,
          incarnation: node.incarnation,
          synced,
        }),
      fail: (error) => {
        this.#failure ??= error;
      },
      trace: (line) => this.#traceLine(line),
    };
  }

  #traceLine(line: () => string): void {
    if (this.#trace === undefined) return;
    this.#trace(`t=${String(this.#now).padStart(6, "0")} ${line()}`);
  }

  /**
   * Runs the seed to the end. Throws {@linkcode InvariantViolation} when a check fails (and
   * whatever the driver, the core or the harness throws on a bug).
   */
  async run(): Promise<void> {
    for (const node of this.nodes.values()) await node.create(this.#bootstrap);
    for (const node of this.nodes.values()) this.#startNode(node);
    await this.#settle();
    const mainEnd = this.config.mainTicks * TICK_UNITS;
    while (this.#phase !== "done") {
      const next = this.#queue.pop();
      assert(next !== undefined, "The event queue ran dry");
      this.#now = next.time;
      if (this.#phase === "faults" && this.#now >= mainEnd) this.#startLiveness();
      await this.#process(next.event);
      // Before time moves on, every driver settles. Within an instant the drivers also run as their
      // microtasks come between the events (deterministically: the same seed, the same order), so
      // the events of one instant may reach a driver in one turn or in several.
      if (this.#queue.peekTime() !== this.#now) await this.#settle();
    }
    this.stats.endTime = this.#now;
    this.#checkConvergence();
    this.#checkHistory();
    const s = this.clients.stats;
    this.stats.operations = s.invoked;
    this.stats.operationsOk = s.ok;
    this.stats.operationsUnknown = s.unknown;
    this.stats.safetyChecks = this.checker.checks;
  }

  /** Lets every driver run until it is idle or waits for a sync; rethrows a failed check. */
  async #settle(): Promise<void> {
    for (let round = 0; round < 100_000; round++) {
      const before = this.#progress();
      await Promise.all(
        this.#running().map((n) => Promise.race([n.driver!.whenIdle(), n.parked()])),
      );
      for (let i = 0; i < 4; i++) await Promise.resolve();
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#progress() === before) return;
    }
    throw new Error("The drivers never went idle");
  }

  #progress(): number {
    let sum = this.stats.messages + this.#callbacks;
    for (const node of this.nodes.values()) {
      sum += node.store.transactions + (node.driver?.turns ?? 0) + (node.store.syncing ? 1 : 0);
    }
    return sum;
  }

  #running(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.driver !== undefined);
  }

  async #process(event: SimEvent): Promise<void> {
    this.stats.events++;
    this.traceHash = mix(this.traceHash, this.#now);
    this.traceHash = mix(this.traceHash, EVENT_CODES[event.kind]);
    switch (event.kind) {
      case "tick":
        return this.#onTick(event.node, event.incarnation);
      case "syncDone": {
        const node = event.node;
        if (node.incarnation !== event.incarnation) return;
        if (node.pausedUntil > this.#now) node.heldSync = event.synced;
        else event.synced();
        return;
      }
      case "deliver":
        return this.#deliver(event);
      case "snapshotReport": {
        const node = event.node;
        const driver = node.driver;
        if (node.incarnation !== event.incarnation || driver === undefined) return;
        const report = () => driver.reportSnapshot(SHARD, event.peer, event.ok);
        if (node.awake(this.#now)) report();
        else node.held.push(report);
        return;
      }
      case "restart":
        if (event.node.state === "down") this.#startNode(event.node);
        return;
      case "resume":
        if (event.node.incarnation === event.incarnation) this.#resume(event.node);
        return;
      case "destroy":
        if (event.unlessMember === true && this.#isMember(event.node.id)) return;
        return this.#destroy(event.node, event.why);
      case "chaos":
        return await this.#onChaos();
      case "heal":
        if (event.partition === this.#partition) this.#heal();
        return;
      case "request":
        return this.#onRequest(event.to, event.request);
      case "reply":
        return this.clients.onReply(event.reply);
      case "wake":
        return this.clients.onWake(event.client, event.token);
    }
  }

  // ------------------------------------------------------------------ nodes

  #startNode(node: SimNode): void {
    node.start();
    const replica = node.replica;
    this.#traceLine(() =>
      `n${node.id} starts (incarnation ${node.incarnation}; applied ` +
      `${replica?.log.appliedState.applied}, commit ${replica?.log.hardState.commit})`
    );
    // Nodes tick at their own phase within a tick (and maybe their own rate), like real clocks.
    node.tickUnits = TICK_UNITS + (this.config.clockSkew ? this.random.range(-1, 1) : 0);
    const phase = 1 + this.random.int(TICK_UNITS);
    this.#queue.push(this.#now + phase, { kind: "tick", node, incarnation: node.incarnation });
  }

  #onTick(node: SimNode, incarnation: number): void {
    if (node.incarnation !== incarnation || node.state !== "up") return;
    // A paused process misses its timer; it does not catch up afterwards.
    if (node.awake(this.#now)) node.driver!.tick();
    this.#queue.push(this.#now + node.tickUnits, { kind: "tick", node, incarnation });
  }

  #pause(node: SimNode): void {
    const duration = (1 + this.random.int(this.config.pauseTicksMax)) * TICK_UNITS;
    node.pausedUntil = this.#now + duration;
    this.stats.pauses++;
    this.#traceLine(() => `n${node.id} pauses for ${duration}`);
    this.#queue.push(node.pausedUntil, { kind: "resume", node, incarnation: node.incarnation });
  }

  /** The pause is over: the sync and the deliveries that waited go in, in their order. */
  #resume(node: SimNode): void {
    if (node.pausedUntil > this.#now) return;
    const sync = node.heldSync;
    node.heldSync = undefined;
    sync?.();
    for (const deliver of node.held.splice(0)) deliver();
  }

  #crash(node: SimNode): void {
    this.#adminLost(node);
    const keep = this.random.chance(this.config.keepUnsyncedRate);
    this.#countLife(node);
    const { unsynced } = node.crash(keep);
    this.stats.crashes++;
    if (unsynced && keep) this.stats.unsyncedKept++;
    if (unsynced && !keep) this.stats.unsyncedLost++;
    const down = 1 + this.random.int(this.config.downTicksMax * TICK_UNITS);
    const fate = unsynced
      ? (keep ? ", keeping the transaction in its sync" : ", losing the transaction in its sync")
      : "";
    this.#traceLine(() => `n${node.id} crashes${fate}, down for ${down}`);
    this.#queue.push(this.#now + down, { kind: "restart", node });
  }

  /**
   * The node asked to make the admin's change went down: its answer never comes. The admin gives
   * up on it as on a timeout (the change may still apply).
   */
  #adminLost(node: SimNode): void {
    const admin = this.#admin;
    if (admin?.leader !== node.id) return;
    this.#admin = undefined;
    this.#traceLine(() => `admin ${admin.kind} ${admin.node}: no answer (n${node.id} went down)`);
    this.#afterTimeout(admin);
  }

  /** After an admin change timed out: an added node that never became a member goes later. */
  #afterTimeout(change: AdminChange): void {
    const node = this.nodes.get(change.node);
    if (change.kind !== "add" || node === undefined) return;
    this.#queue.push(this.#now + ADMIN_TIMEOUT_TICKS * TICK_UNITS, {
      kind: "destroy",
      node,
      why: "never added",
      unlessMember: true,
    });
  }

  /** Whether `id` is a voter or learner of the latest membership a running replica applied. */
  #isMember(id: PeerId): boolean {
    let latest: ConfState | undefined;
    for (const node of this.#running()) {
      const conf = node.replica?.log.appliedState.confState;
      if (conf !== undefined && (latest === undefined || conf.epoch > latest.epoch)) latest = conf;
    }
    return latest !== undefined && (latest.voters.includes(id) || latest.learners.includes(id));
  }

  #destroy(node: SimNode, why: string): void {
    if (node.state === "destroyed") return;
    this.#adminLost(node);
    this.#traceLine(() => `n${node.id} destroyed: ${why}`);
    this.#countLife(node);
    node.destroy();
  }

  /** Adds a driver's turns to the totals before it goes. */
  #countLife(node: SimNode): void {
    this.stats.turns += node.driver?.turns ?? 0;
    this.stats.transactions += node.store.transactions;
  }

  #contactable(): PeerId[] {
    const ids: PeerId[] = [];
    for (const node of this.nodes.values()) if (node.state !== "destroyed") ids.push(node.id);
    return ids;
  }

  /** The awake leader of the highest term, if any. */
  #leader(): SimNode | undefined {
    let best: SimNode | undefined;
    let bestTerm = -1;
    for (const node of this.nodes.values()) {
      if (!node.awake(this.#now)) continue;
      const replica = node.replica;
      if (replica === undefined) continue;
      if (replica.node.role !== "leader") continue;
      const term = replica.node.status().term;
      if (term > bestTerm) {
        best = node;
        bestTerm = term;
      }
    }
    return best;
  }

  // ------------------------------------------------------------------ network

  #sendEnvelope(from: SimNode, to: PeerId, envelope: Envelope): void {
    this.stats.messages++;
    const message = envelope.message;
    const faults = this.network.faults;
    if (this.network.cut(from.id, to)) return this.#lost(from, to, message);
    if (faults.lossRate > 0 && this.random.chance(faults.lossRate)) {
      return this.#lost(from, to, message);
    }
    const copies = faults.duplicateRate > 0 && this.random.chance(faults.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      this.#queue.push(this.#now + this.network.drawDelay(this.random), {
        kind: "deliver",
        from,
        fromIncarnation: from.incarnation,
        to,
        envelope,
      });
    }
  }

  /**
   * A message that never arrives; the transport reports a lost snapshot to its sender (to the life
   * of the sender that sent it: `incarnation`).
   */
  #lost(from: SimNode, to: PeerId, message: Message, incarnation = from.incarnation): void {
    if (message.type !== "snapshot") return;
    this.#queue.push(this.#now + this.network.drawDelay(this.random), {
      kind: "snapshotReport",
      node: from,
      incarnation,
      peer: to,
      ok: false,
    });
  }

  #deliver(event: Extract<SimEvent, { kind: "deliver" }>): void {
    const { from, to, envelope } = event;
    const message = envelope.message;
    const target = this.nodes.get(to);
    if (target?.driver === undefined || this.network.cut(from.id, to)) {
      return this.#lost(from, to, message, event.fromIncarnation);
    }
    this.traceHash = mix(this.traceHash, to * 64 + MESSAGE_CODES[message.type]);
    if (this.#traceMessages) this.#traceLine(() => describeMessage(message));
    // As the gRPC transport does, the receiver learns who sent the envelope and where it lives.
    const sender = { nodeId: from.nodeId, address: peerAddress(from.id).address };
    const driver = target.driver;
    const deliver = () => driver.receive([{ ...envelope, sender }], from.nodeId);
    if (target.awake(this.#now)) deliver();
    else target.held.push(deliver);
    if (message.type === "snapshot") {
      this.stats.snapshotsDelivered++;
      this.#queue.push(this.#now + this.network.drawDelay(this.random), {
        kind: "snapshotReport",
        node: from,
        incarnation: event.fromIncarnation,
        peer: to,
        ok: true,
      });
    }
  }

  /** A ping arrives at once over a link that is up (it carries no Raft state). */
  #ping(from: SimNode, to: PeerId): void {
    const target = this.nodes.get(to);
    if (target === undefined || !target.awake(this.#now) || this.network.cut(from.id, to)) return;
    target.driver!.receive([], from.nodeId);
  }

  /** The node a client sits beside, whose side of a partition it shares. */
  #clientHome(client: number): PeerId {
    return (((client - 1) % this.config.voters) + 1) as PeerId;
  }

  #sendToNode(to: PeerId, request: ClientRequest): void {
    if (this.config.clientsPartitioned && this.network.cut(this.#clientHome(request.client), to)) {
      return;
    }
    // Client links lose messages too (half as often), but partitions are between nodes only.
    if (this.random.chance(this.network.faults.lossRate / 2)) return;
    this.#queue.push(this.#now + this.network.drawDelay(this.random), {
      kind: "request",
      to,
      request,
    });
  }

  #onRequest(to: PeerId, request: ClientRequest): void {
    const node = this.nodes.get(to);
    if (node?.driver === undefined) return;
    const op = request.op;
    const simOp: SimOp = op.kind === "get" || op.kind === "read"
      ? op
      : { ...op, client: request.client };
    const submit = () =>
      node.submit(simOp, this.#now + ATTEMPT_UNITS, (outcome) => {
        this.#callbacks++;
        const answer = clientOutcome(outcome);
        if (answer === undefined) return;
        this.#sendReply({
          client: request.client,
          opNumber: request.opNumber,
          outcome: answer,
          from: node.id,
        });
      });
    if (node.awake(this.#now)) submit();
    else node.held.push(submit);
  }

  #sendReply(reply: ClientReply): void {
    if (
      this.config.clientsPartitioned && this.network.cut(reply.from, this.#clientHome(reply.client))
    ) {
      return;
    }
    if (this.random.chance(this.network.faults.lossRate / 2)) return;
    this.#queue.push(this.#now + this.network.drawDelay(this.random), { kind: "reply", reply });
  }

  // ------------------------------------------------------------------ chaos

  async #onChaos(): Promise<void> {
    this.#queue.push(this.#now + TICK_UNITS, { kind: "chaos" });
    if (this.#phase === "faults") await this.#injectFaults();
    else this.#checkLiveness();
  }

  async #injectFaults(): Promise<void> {
    const c = this.config;
    const r = this.random;
    if (!this.network.partitioned && r.chance(c.partitionRate)) this.#startPartition();
    if (r.chance(c.crashRate)) {
      // Half the crashes hit a node whose transaction waits for its sync, if there is one: the
      // moment a crash can keep or lose a written Ready.
      const up = [...this.nodes.values()].filter((n) => n.state === "up");
      const syncing = up.filter((n) => n.store.syncing);
      const pool = syncing.length > 0 && r.chance(0.5) ? syncing : up;
      if (pool.length > 0) this.#crash(r.pick(pool));
    }
    if (r.chance(c.pauseRate)) {
      const up = [...this.nodes.values()].filter((n) => n.awake(this.#now));
      if (up.length > 0) this.#pause(r.pick(up));
    }
    if (this.#admin === undefined && r.chance(c.confChangeRate)) await this.#changeMembership();
    if (r.chance(c.transferRate)) this.#transferLeader();
  }

  #startPartition(): void {
    const r = this.random;
    const ids = this.#contactable();
    const kind = r.pick(["split", "oneWay", "isolate", "isolate"] as const);
    if (kind === "split") {
      const shuffled = ids.map((id) => ({ id, key: r.next() }))
        .sort((a, b) => a.key - b.key).map((x) => x.id);
      const at = 1 + r.int(shuffled.length - 1);
      this.network.split([shuffled.slice(0, at), shuffled.slice(at)]);
    } else if (kind === "oneWay") {
      const links = 1 + r.int(3);
      for (let i = 0; i < links; i++) {
        const from = r.pick(ids);
        const to = r.pick(ids);
        if (from !== to) this.network.cutLink(from, to);
      }
    } else {
      const victim = (r.chance(0.7) ? this.#leader()?.id : undefined) ?? r.pick(ids);
      this.network.split([[victim], ids.filter((id) => id !== victim)]);
    }
    if (!this.network.partitioned) return;
    this.#partition++;
    this.stats.partitions++;
    const duration = (1 + r.int(this.config.partitionTicksMax)) * TICK_UNITS;
    this.#traceLine(() => `partition ${this.#partition} (${kind}) for ${duration}`);
    this.#queue.push(this.#now + duration, { kind: "heal", partition: this.#partition });
  }

  #heal(): void {
    if (!this.network.partitioned) return;
    this.network.heal();
    this.#traceLine(() => `partition ${this.#partition} healed`);
  }

  /**
   * Asks the leader's driver for one membership change (`ChangeMembership`, as placement does):
   * add a learner (on a new node, created first with the membership the leader knows), promote a
   * learner, or remove any member, the leader included.
   */
  async #changeMembership(): Promise<void> {
    const leader = this.#leader();
    const replica = leader?.replica;
    if (leader === undefined || replica === undefined) return;
    const status = replica.node.status();
    const conf = status.confState;
    const r = this.random;
    const members = conf.voters.length + conf.learners.length;
    const learner = conf.learners.find((id) => {
      const peer = status.peers.find((p) => p.id === id);
      return peer !== undefined && peer.match >= status.commit;
    });
    let change: Omit<AdminChange, "leader">;
    const anyLearner = conf.learners.length > 0 && r.chance(0.1)
      ? r.pick(conf.learners)
      : undefined;
    const promotable = learner ?? anyLearner;
    if (promotable !== undefined && r.chance(0.8)) change = { kind: "promote", node: promotable };
    else if (members < this.config.membersMax && r.chance(0.5)) {
      change = { kind: "add", node: this.#nextNodeId as PeerId };
    } else if (conf.voters.length > 3 || conf.learners.length > 0) {
      const candidates = conf.voters.length > 3
        ? [...conf.voters, ...conf.learners]
        : [...conf.learners];
      change = { kind: "remove", node: r.pick(candidates) };
    } else return;
    if (change.kind === "add") {
      this.#nextNodeId++;
      const node = new SimNode(change.node, this.#env);
      this.nodes.set(node.id, node);
      await node.create(conf);
      this.#startNode(node);
    }
    const driver = leader.driver!;
    const kind = change.kind === "add" ? "addLearner" : change.kind;
    const asked: AdminChange = { ...change, leader: leader.id };
    this.#admin = asked;
    this.#traceLine(() => `admin ${kind} ${change.node} at leader n${leader.id}`);
    driver.changeMembership({
      shardId: SHARD,
      expectedConfEpoch: replica.confEpoch,
      change: kind,
      peer: peerAddress(change.node),
      timeoutMs: ADMIN_TIMEOUT_TICKS * TICK_UNITS * UNIT_MS,
    }).then((result) => {
      this.#callbacks++;
      if (this.#admin !== asked) return;
      this.#admin = undefined;
      this.#traceLine(() => `admin ${kind} ${change.node}: ${result.kind}`);
      const node = this.nodes.get(change.node);
      if (result.kind === "ok") {
        this.stats.confChanges++;
        if (change.kind === "remove" && node !== undefined) {
          // The admin learns of the removal a little later; until then the replica runs on.
          const delay = this.random.int(50 * TICK_UNITS);
          this.#queue.push(this.#now + delay, {
            kind: "destroy",
            node,
            why: "removed from the group",
          });
        }
      } else if (result.kind === "timeout") {
        this.#afterTimeout(asked);
      } else if (change.kind === "add" && node !== undefined) {
        // Refused or lost: never a member.
        this.#destroy(node, "never added");
      }
    });
  }

  #transferLeader(): void {
    const leader = this.#leader();
    const replica = leader?.replica;
    if (leader === undefined || replica === undefined) return;
    const voters = replica.node.status().confState.voters.filter((id) => id !== leader.id);
    if (voters.length === 0) return;
    const target = this.random.pick(voters);
    this.stats.transfers++;
    leader.driver!.transferLeader({
      shardId: SHARD,
      expectedConfEpoch: replica.confEpoch,
      targetPeerId: target,
    }).then((result) => {
      this.#callbacks++;
      this.#traceLine(() =>
        `admin transfers leadership n${leader.id} -> n${target}: ${result.kind}`
      );
    });
  }

  // ------------------------------------------------------------------ liveness

  #startLiveness(): void {
    this.#phase = "liveness";
    const timeouts = this.config.preVote
      ? LIVENESS_ELECTION_TIMEOUTS
      : LIVENESS_ELECTION_TIMEOUTS_WITHOUT_PRE_VOTE;
    this.#livenessDeadline = this.#now + timeouts * this.config.electionTicks * TICK_UNITS;
    this.clients.accepting = false;
    this.network.heal();
    this.network.faults = {
      lossRate: 0,
      duplicateRate: 0,
      delayMax: Math.min(this.config.delayMax, 5),
      spikeRate: 0,
      spikeMax: 0,
    };
    this.#traceLine(() => "liveness phase: faults off, every node restarts");
    for (const node of this.nodes.values()) {
      if (node.state === "down") this.#startNode(node);
      if (node.pausedUntil > this.#now) {
        node.pausedUntil = this.#now;
        this.#resume(node);
      }
    }
  }

  #checkLiveness(): void {
    if (this.#phase === "drain") {
      if (!this.clients.busy || this.#now >= this.#drainDeadline) this.#phase = "done";
      return;
    }
    if (this.#probeApplied()) {
      this.#traceLine(() => `liveness: probe at ${this.#probe!.index} applied on every live voter`);
      this.#phase = "drain";
      this.#drainDeadline = this.#now + 10 * this.config.electionTicks * TICK_UNITS;
      return;
    }
    if (this.#now >= this.#livenessDeadline) {
      throw new InvariantViolation("liveness", this.#livenessReport());
    }
    const leader = this.#leader();
    if (leader === undefined) return;
    const term = leader.replica!.node.status().term;
    if (this.#probe !== undefined && this.#probe.term === term) return;
    const probe: Probe = { term, index: undefined };
    this.#probe = probe;
    const deadline = this.#now + this.config.electionTicks * TICK_UNITS * 3;
    leader.submit({ kind: "noop", tag: `live-${term}` }, deadline, (outcome) => {
      this.#callbacks++;
      if (outcome.kind === "ok" && outcome.result.kind === "noop") {
        probe.index = outcome.result.index;
      } else if (this.#probe === probe) {
        this.#probe = undefined;
      }
    });
  }

  #probeApplied(): boolean {
    const index = this.#probe?.index;
    if (index === undefined) return false;
    const voters = this.#voters();
    if (voters === undefined) return false;
    for (const id of voters) {
      const node = this.nodes.get(id);
      if (node === undefined || node.state !== "up") continue;
      const applied = node.replica?.log.appliedState.applied ?? 0;
      if (applied < index) return false;
    }
    return true;
  }

  /** The voters of the latest membership any running replica applied. */
  #voters(): readonly PeerId[] | undefined {
    let latest: ConfState | undefined;
    for (const node of this.#running()) {
      const conf = node.replica?.log.appliedState.confState;
      if (conf !== undefined && (latest === undefined || conf.epoch > latest.epoch)) latest = conf;
    }
    return latest?.voters;
  }

  #livenessReport(): string {
    const parts: string[] = [];
    for (const node of this.nodes.values()) {
      const replica = node.replica;
      if (replica === undefined) {
        parts.push(`n${node.id} ${node.state}${node.state === "up" ? " (no replica)" : ""}`);
        continue;
      }
      const s = replica.node.status();
      parts.push(`n${node.id} ${s.role} term ${s.term} commit ${s.commit} applied ${s.applied}`);
      if (s.role === "leader") parts.push(`progress ${JSON.stringify(s.peers)}`);
    }
    return `no leader committed a new entry on every live voter in time ` +
      `(probe ${JSON.stringify(this.#probe)}; voters ${this.#voters()}; ${parts.join("; ")})`;
  }

  // ------------------------------------------------------------------ final checks

  /** Replicas that applied the same index hold the same state. */
  #checkConvergence(): void {
    const digestAt = new Map<number, { id: PeerId; digest: string }>();
    for (const node of this.#running()) {
      const replica = node.replica;
      if (replica === undefined) continue;
      const applied = replica.log.appliedState.applied;
      const digest = replica.machine.dataHash();
      const other = digestAt.get(applied);
      if (other === undefined) digestAt.set(applied, { id: node.id, digest });
      else if (other.digest !== digest) {
        throw new InvariantViolation(
          "replicaConvergence",
          `nodes ${other.id} and ${node.id} applied up to ${applied} but hold different states`,
        );
      }
    }
  }

  #checkHistory(): void {
    // A destroyed node's last life was counted when it was destroyed.
    for (const node of this.nodes.values()) if (node.state !== "destroyed") this.#countLife(node);
    const budget = { stepBudget: 2_000_000 };
    const results: CheckResult<unknown, unknown>[] = [
      check(registerModel, this.clients.registers.history(), budget),
      check(appendListModel, this.clients.lists.history(), budget),
    ];
    for (const result of results) {
      this.stats.lincheckSteps += result.stepsUsed;
      if (result.kind === "illegal") {
        throw new InvariantViolation(
          "linearizability",
          `key ${JSON.stringify(result.key)}:\n${result.explanation.summary}`,
        );
      }
      if (result.kind === "unknown") {
        throw new InvariantViolation(
          "linearizability",
          `the checker ran out of its step budget on keys ${result.keys.join(", ")}`,
        );
      }
    }
  }
}

/** Time units one attempt of a request may wait in a driver (the client's attempt timeout). */
const ATTEMPT_UNITS = 20 * TICK_UNITS;

/**
 * What a client hears of a driver's outcome: a result, or "retry" (at the leader it names, if
 * any). A `stale` result (an older seq of a client that moved on) is not answered.
 */
function clientOutcome(outcome: Outcome<SimResult>): ClientOutcome | undefined {
  if (outcome.kind === "notLeader") {
    const leader = outcome.leaderNode === "" ? undefined : peerOfNode(outcome.leaderNode);
    return { kind: "retry", leader };
  }
  if (outcome.kind !== "ok") return { kind: "retry", leader: undefined };
  const result = outcome.result;
  switch (result.kind) {
    case "stale":
      return undefined;
    case "value":
      return { kind: "value", value: result.value };
    case "list":
      return { kind: "list", tokens: result.tokens };
    default:
      return { kind: "ok", result };
  }
}

/** Election timeouts the liveness phase allows for a leader to commit on every live voter. */
const LIVENESS_ELECTION_TIMEOUTS = 10;
/**
 * The same for runs with pre-vote off (a non-default configuration drawn for safety coverage).
 * Without pre-vote, candidates that cannot win bump the term and reset everyone's timer, so
 * when only one node can win and it needs every vote (say, three survivors of a four-voter
 * configuration) elections may collide for long (thesis §9.6; FINDINGS.md, seed 5282).
 */
const LIVENESS_ELECTION_TIMEOUTS_WITHOUT_PRE_VOTE = 30;

const MESSAGE_CODES: Record<Message["type"], number> = {
  append: 1,
  appendResponse: 2,
  requestVote: 3,
  requestPreVote: 4,
  requestVoteResponse: 5,
  requestPreVoteResponse: 6,
  heartbeat: 7,
  heartbeatResponse: 8,
  snapshot: 9,
  timeoutNow: 10,
};

/** A one-line description of a delivered message for the trace. */
function describeMessage(m: Message): string {
  const head = `deliver ${m.type} n${m.from}->n${m.to} term ${m.term}`;
  switch (m.type) {
    case "append":
      return `${head} prev ${m.prevLogIndex}/${m.prevLogTerm} entries ${m.entries.length} ` +
        `commit ${m.commit}`;
    case "appendResponse":
      return `${head} ${
        m.reject ? "reject" : "ok"
      } index ${m.index} hint ${m.hintIndex}/${m.hintTerm}`;
    case "requestVote":
    case "requestPreVote":
      return `${head} last ${m.lastLogIndex}/${m.lastLogTerm}${m.transfer ? " transfer" : ""}`;
    case "requestVoteResponse":
    case "requestPreVoteResponse":
      return `${head} ${m.reject ? "rejected" : "granted"}`;
    case "heartbeat":
      return `${head} commit ${m.commit} round ${m.round}`;
    case "heartbeatResponse":
      return `${head} round ${m.round}`;
    case "snapshot":
      return `${head} at ${m.snapshot.metadata.index}/${m.snapshot.metadata.term}`;
    case "timeoutNow":
      return head;
  }
}

/** FNV-1a style mixing of a 32-bit value into a hash. */
function mix(hash: number, value: number): number {
  let h = hash;
  h = Math.imul(h ^ (value & 0xffff), 0x01000193);
  h = Math.imul(h ^ (value >>> 16), 0x01000193);
  return h >>> 0;
}
