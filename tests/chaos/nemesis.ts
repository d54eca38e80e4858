/**
 * The nemesis: faults chosen at random from a seed, one after another, each held for a few
 * seconds and then healed, with a timeline of what was done when. The seed fixes the choices
 * (which fault, which victim among those that exist, how long); the real cluster's timing does
 * not replay exactly, so a replayed seed makes the same kinds of trouble, not the same packets.
 *
 * Faults: kill -9 of a kvnode (often a shard's leader) and its restart, of a shard's leader and
 * another of its voters at once, or of every kvnode at once; SIGSTOP/SIGCONT pauses
 * longer than the election timeout; partitions on the real network path (halves, one-way,
 * a leader isolated from its peers and sometimes from everything); leader transfers, replica
 * moves, a shard's leader removing itself from its group through the node admin API (placement
 * must then re-replicate the shard), a node drained and retired, a new node joining; ZooKeeper
 * crashes and restarts; the placement leader and gateways killed and restarted.
 *
 * @module
 */
import { ChangeMembershipRequest_Change } from "@tinykv/proto/tinykv/v1";
import { unaryCaller } from "@tinykv/rpc";
import { SimRandom } from "../sim/random.ts";
import type { ChaosCluster, ChaosNode } from "./cluster.ts";
import { HOST } from "./net.ts";

/** One fault in the timeline. */
export interface FaultEvent {
  readonly kind: string;
  detail: string;
  readonly start: number;
  end: number;
  /** Why the fault could not be applied (the cluster refused it); not a test failure. */
  skipped?: string;
}

/** How long a leader's removal of itself may take to apply (the node admin call's deadline). */
const REMOVE_TIMEOUT_MS = 10_000;
/** How long a removed leader's shard is watched for a new leader and its re-replication. */
const REPLACED_WAIT_MS = 45_000;

/** Sleeps a random time in `[low, high]` ms, cut short at the end of the run. */
type Hold = (low: number, high: number) => Promise<void>;

/** Fault kinds and their weights. */
const MENU: ReadonlyArray<readonly [string, number]> = [
  ["kill", 4],
  ["kill-majority", 1],
  ["kill-all", 0.5],
  ["pause", 2],
  ["partition-halves", 2],
  ["partition-one-way", 1],
  ["isolate-leader", 2],
  ["transfer-leader", 1],
  ["move-replica", 1],
  ["remove-leader", 1.5],
  ["zookeeper-restart", 1],
  ["placement-leader-kill", 1],
  ["gateway-kill", 1],
];

/** Runs faults until a deadline. */
export class Nemesis {
  readonly timeline: FaultEvent[] = [];
  /** Things that must not happen (a process that would not restart); they fail the run. */
  readonly problems: string[] = [];
  readonly #cluster: ChaosCluster;
  readonly #random: SimRandom;
  readonly #now: () => number;
  readonly #log: (line: string) => void;

  constructor(
    cluster: ChaosCluster,
    seed: number,
    now: () => number,
    log: (line: string) => void,
  ) {
    this.#cluster = cluster;
    this.#random = new SimRandom(seed);
    this.#now = now;
    this.#log = log;
  }

  /**
   * Applies faults until `until` (on the clock). A node joins at a quarter of the time and one is
   * drained and retired at 60%; longer runs repeat join and drain every `membershipEveryMs`.
   */
  async run(until: number, membershipEveryMs = 120_000): Promise<void> {
    const begin = this.#now();
    const span = until - begin;
    const membership = [begin + span * 0.25, begin + span * 0.6];
    for (let t = begin + membershipEveryMs * 1.25; t < until - 20_000; t += membershipEveryMs) {
      membership.push(t);
    }
    membership.sort((a, b) => a - b);
    while (this.#now() < until) {
      let kind: string;
      if (membership.length > 0 && this.#now() >= membership[0]) {
        membership.shift();
        kind = this.#hasFreeHost() ? "join" : "drain";
      } else {
        kind = this.#pickKind();
      }
      await this.#apply(kind, until);
      await sleep(this.#random.range(300, 1500));
    }
  }

  /** Ends every fault: heals the network, resumes and restarts everything that should run. */
  async healAll(): Promise<void> {
    const cluster = this.#cluster;
    await cluster.net.heal();
    for (const node of cluster.nodes) {
      if (node.paused) {
        node.process.signal("SIGCONT");
        node.paused = false;
      }
    }
    if (cluster.zk === undefined) await this.#restart("ZooKeeper", () => cluster.startZooKeeper());
    for (const node of cluster.liveNodes) {
      if (!node.process.running) {
        await this.#restart(node.process.name, () => cluster.restartNode(node));
      }
    }
    for (const p of [...cluster.placements, ...cluster.gateways]) {
      if (!p.process.running) {
        await this.#restart(p.process.name, () => p.process.start(/serving on/, 60_000));
      }
    }
  }

  #pickKind(): string {
    const total = MENU.reduce((sum, [, w]) => sum + w, 0);
    let roll = this.#random.next() * total;
    for (const [kind, weight] of MENU) {
      roll -= weight;
      if (roll < 0) return kind;
    }
    return MENU[0][0];
  }

  #hasFreeHost(): boolean {
    return this.#freeHost() !== undefined;
  }

  #freeHost(): number | undefined {
    const used = new Set(this.#cluster.liveNodes.map((n) => n.host));
    for (let host = 0; host < this.#cluster.net.hosts; host++) if (!used.has(host)) return host;
    return undefined;
  }

  async #restart(what: string, start: () => Promise<void>): Promise<void> {
    try {
      await start();
    } catch (error) {
      this.problems.push(`${what} did not restart: ${error}`);
    }
  }

  /** A shard's leader (half of the time) or any running node. */
  async #victim(): Promise<ChaosNode | undefined> {
    const running = this.#cluster.liveNodes.filter((n) => n.process.running && !n.paused);
    if (running.length === 0) return undefined;
    if (this.#random.chance(0.5)) {
      const shard = this.#random.range(1, this.#cluster.options.shards);
      const leader = await this.#cluster.leaderOf(shard);
      if (leader !== undefined) return leader;
    }
    return this.#random.pick(running);
  }

  async #apply(kind: string, until: number): Promise<void> {
    const event: FaultEvent = { kind, detail: "", start: this.#now(), end: 0 };
    this.timeline.push(event);
    const hold = (low: number, high: number) =>
      sleep(Math.min(this.#random.range(low, high), Math.max(0, until - this.#now())));
    const faults: Record<string, (event: FaultEvent, hold: Hold) => Promise<void>> = {
      "kill": (e, h) => this.#kill(e, h),
      "kill-majority": (e, h) => this.#killMany(e, h, "majority"),
      "kill-all": (e, h) => this.#killMany(e, h, "all"),
      "pause": (e, h) => this.#pause(e, h),
      "partition-halves": (e, h) => this.#partition(e, h, false),
      "partition-one-way": (e, h) => this.#partition(e, h, true),
      "isolate-leader": (e, h) => this.#isolateLeader(e, h),
      "transfer-leader": (e) => this.#transferLeader(e),
      "move-replica": (e) => this.#moveReplica(e),
      "remove-leader": (e) => this.#removeLeader(e),
      "join": (e) => this.#join(e),
      "drain": (e) => this.#drain(e),
      "zookeeper-restart": (e, h) => this.#restartZooKeeper(e, h),
      "placement-leader-kill": (e, h) => this.#killPlacementLeader(e, h),
      "gateway-kill": (e, h) => this.#killGateway(e, h),
    };
    try {
      await faults[kind](event, hold);
    } catch (error) {
      event.skipped = `${error}`;
    } finally {
      event.end = this.#now();
      const took = ((event.end - event.start) / 1000).toFixed(1);
      const skipped = event.skipped === undefined ? "" : ` — skipped: ${event.skipped}`;
      this.#log(`fault ${kind} ${event.detail} (${took} s)${skipped}`);
    }
  }

  /** kill -9 of one kvnode (often a leader), usually for seconds, sometimes past `down_after`. */
  async #kill(event: FaultEvent, hold: Hold): Promise<void> {
    const node = await this.#victim();
    if (node === undefined) return void (event.skipped = "no running node");
    const long = this.#random.chance(0.1);
    event.detail = `${node.process.name} (${node.nodeId})${long ? ", long" : ""}`;
    await node.process.kill();
    await (long ? hold(11_000, 15_000) : hold(1000, 6000));
    await this.#restart(node.process.name, () => this.#cluster.restartNode(node));
  }

  /**
   * kill -9 of a shard's leader and one more of its voters (the shard stops until they return),
   * or of every kvnode at once: acknowledged writes must survive on their synced logs.
   */
  async #killMany(event: FaultEvent, hold: Hold, which: "majority" | "all"): Promise<void> {
    const cluster = this.#cluster;
    let victims = cluster.liveNodes.filter((n) => n.process.running);
    if (which === "majority") {
      const placement = await cluster.placementLeader();
      if (placement === undefined) return void (event.skipped = "no placement leader");
      const shard = this.#random.pick(placement.state.shards);
      const others = this.#random.shuffle(shard.voters.filter((v) => v !== shard.leader));
      const ids = new Set([shard.leader, others[0]]);
      victims = victims.filter((n) => ids.has(n.nodeId));
      event.detail = `shard ${shard.shardId}: `;
    }
    event.detail += victims.map((n) => `${n.process.name} (${n.nodeId})`).join(", ");
    for (const node of victims) {
      if (node.paused) node.process.signal("SIGCONT");
      node.paused = false;
    }
    await Promise.all(victims.map((n) => n.process.kill()));
    await hold(1000, 5000);
    await Promise.all(
      victims.map((n) => this.#restart(n.process.name, () => cluster.restartNode(n))),
    );
  }

  /** SIGSTOP of one kvnode (often a leader) for longer than the election timeout, then SIGCONT. */
  async #pause(event: FaultEvent, hold: Hold): Promise<void> {
    const node = await this.#victim();
    if (node === undefined) return void (event.skipped = "no running node");
    event.detail = `${node.process.name} (${node.nodeId})`;
    node.process.signal("SIGSTOP");
    node.paused = true;
    await hold(1000, 5000);
    node.process.signal("SIGCONT");
    node.paused = false;
  }

  /** The kvnodes split in two at random, cut both ways or one way only. */
  async #partition(event: FaultEvent, hold: Hold, oneWay: boolean): Promise<void> {
    const net = this.#cluster.net;
    const hosts = this.#random.shuffle(this.#cluster.liveNodes.map((n) => n.host));
    const cut = this.#random.range(1, Math.floor(hosts.length / 2));
    const [a, b] = [hosts.slice(0, cut), hosts.slice(cut)];
    event.detail = `hosts ${a.join(",")} ${oneWay ? "->" : "|"} ${b.join(",")}`;
    for (const x of a) {
      for (const y of b) await (oneWay ? net.cut(x, y) : net.cutBoth(x, y));
    }
    await hold(2000, 8000);
    await net.heal();
  }

  /** A shard's leader cut off from every other kvnode, and sometimes from everything. */
  async #isolateLeader(event: FaultEvent, hold: Hold): Promise<void> {
    const cluster = this.#cluster;
    const shard = this.#random.range(1, cluster.options.shards);
    const leader = await cluster.leaderOf(shard);
    if (leader === undefined) return void (event.skipped = `shard ${shard} has no leader`);
    const fromHost = this.#random.chance(0.4);
    event.detail = `leader of shard ${shard}: host ${leader.host} (${leader.nodeId})` +
      (fromHost ? ", also from ZooKeeper, placement and gateways" : "");
    for (const other of cluster.liveNodes) {
      if (other !== leader) await cluster.net.cutBoth(leader.host, other.host);
    }
    if (fromHost) await cluster.net.cutBoth(leader.host, HOST);
    await hold(2000, 8000);
    await cluster.net.heal();
  }

  /** A leader transfer to another voter, asked of placement. */
  async #transferLeader(event: FaultEvent): Promise<void> {
    const placement = await this.#cluster.placementLeader();
    if (placement === undefined) return void (event.skipped = "no placement leader");
    const shard = this.#random.pick(placement.state.shards);
    const to = this.#random.pick(shard.voters.filter((v) => v !== shard.leader));
    event.detail = `shard ${shard.shardId} from ${shard.leader} to ${to}`;
    const answer = await this.#cluster.placementCall(placement.placement, "TransferLeader", {
      shardId: shard.shardId,
      toNode: to,
    });
    if (answer.kind !== "ok") event.skipped = answer.message;
  }

  /** A replica moved to a node outside the shard, asked of placement; waits (bounded) for it. */
  async #moveReplica(event: FaultEvent): Promise<void> {
    const placement = await this.#cluster.placementLeader();
    if (placement === undefined) return void (event.skipped = "no placement leader");
    const shard = this.#random.pick(placement.state.shards);
    const members = new Set([...shard.voters, ...shard.learners]);
    const targets = placement.state.nodes.filter((n) =>
      n.live && !n.draining && !members.has(n.nodeId)
    );
    if (targets.length === 0) return void (event.skipped = "no node to move to");
    const from = this.#random.pick(shard.voters);
    const to = this.#random.pick(targets).nodeId;
    event.detail = `shard ${shard.shardId} from ${from} to ${to}`;
    const answer = await this.#cluster.placementCall(placement.placement, "MoveReplica", {
      shardId: shard.shardId,
      fromNode: from,
      toNode: to,
    });
    if (answer.kind !== "ok") event.skipped = answer.message;
    else await this.#waitForMoves(30_000);
  }

  /**
   * A shard's leader asked, through its node admin API, to remove itself from the group (change
   * REMOVE of its own peer, fenced by the shard's conf epoch), as placement would ask it to. The
   * leader applies its removal, steps down and deletes its replica; the two voters left elect a
   * leader and placement re-replicates the shard. Waits (bounded) for both. Only a shard at full
   * strength is asked, so that one fault never leaves a shard a single voter.
   */
  async #removeLeader(event: FaultEvent): Promise<void> {
    const cluster = this.#cluster;
    const shardId = this.#random.range(1, cluster.options.shards);
    const found = await cluster.leaderReplica(shardId);
    if (found === undefined) return void (event.skipped = `shard ${shardId} has no leader`);
    const { node, status, replica } = found;
    const self = replica.voters.find((p) => p.peerId === replica.peerId);
    event.detail = `shard ${shardId}: leader ${node.nodeId} (peer ${replica.peerId}) at conf ` +
      `epoch ${replica.confEpoch}`;
    if (replica.voters.length < cluster.options.replicas || replica.learners.length > 0) {
      return void (event.skipped = `shard ${shardId} has ${replica.voters.length} voters and ` +
        `${replica.learners.length} learners: not at full strength`);
    }
    if (self === undefined) return void (event.skipped = "the leader is not among its voters");
    const answer = await unaryCaller(node.admin, "ChangeMembership")({
      clusterId: status.clusterId,
      shardId,
      expectedConfEpoch: replica.confEpoch,
      change: ChangeMembershipRequest_Change.REMOVE,
      peer: self,
      timeoutMs: REMOVE_TIMEOUT_MS - 500,
    }, { deadlineMs: REMOVE_TIMEOUT_MS });
    // Re-replication shows as a conf epoch above the removal's (or above the epoch the removal
    // was asked at, when its answer got lost) with the group at full strength again.
    let removedAt = replica.confEpoch;
    if (answer.kind === "ok") {
      removedAt = answer.response.confEpoch;
      event.detail += `; removed at conf epoch ${removedAt}`;
    } else if (answer.kind === "deadlineExceeded" || answer.kind === "unavailable") {
      // The change may have been proposed: it may still apply, so wait as if it did.
      event.detail += `; ${answer.kind} (may still apply): ${answer.message}`;
    } else {
      return void (event.skipped = `${answer.kind}: ${answer.message}`);
    }
    event.detail += await this.#waitReplaced(shardId, { removedPeer: replica.peerId, removedAt });
    if (answer.kind === "ok") await this.#checkRemovedReplicaGone(event, node, replica.peerId);
  }

  /**
   * After a removal that answered ok and the wait for the shard's repair: the removed leader's
   * replica must be gone from its node ("A replica removed by a committed conf change deletes its
   * data", docs/design.md); one left behind is a problem. A node that does not answer proves nothing.
   */
  async #checkRemovedReplicaGone(event: FaultEvent, node: ChaosNode, peerId: number) {
    const status = await this.#cluster.status(node);
    if (status === undefined) return void (event.detail += "; its node did not answer");
    const left = status.replicas.find((r) => r.peerId === peerId);
    if (left === undefined) return void (event.detail += "; the removed replica is deleted");
    event.detail += "; the removed replica is still on its node";
    this.problems.push(
      `shard ${left.shardId}: leader peer ${peerId} on node ${node.nodeId} removed itself (fault ` +
        `at ${(event.start / 1000).toFixed(1)} s) but its node still hosts it ` +
        `${((this.#now() - event.start) / 1000).toFixed(1)} s later (role ${left.role}, conf ` +
        `epoch ${left.confEpoch}, applied ${left.appliedIndex})`,
    );
  }

  /**
   * Waits (bounded) until `shardId` is led by a peer other than `removedPeer` and placement shows
   * it at full strength again at a conf epoch above `removedAt`, with no move in flight; says when
   * each happened, or what was missing at the deadline.
   */
  async #waitReplaced(
    shardId: number,
    { removedPeer, removedAt }: { removedPeer: number; removedAt: number },
  ): Promise<string> {
    const cluster = this.#cluster;
    const start = this.#now();
    const since = () => `${((this.#now() - start) / 1000).toFixed(1)} s`;
    let newLeader: string | undefined;
    let placementView = "no placement leader";
    while (this.#now() - start < REPLACED_WAIT_MS) {
      if (newLeader === undefined) {
        const leader = await cluster.leaderReplica(shardId);
        if (leader !== undefined && leader.replica.peerId !== removedPeer) {
          newLeader = `new leader ${leader.node.nodeId} after ${since()}`;
        }
      }
      const placement = await cluster.placementLeader();
      const shard = placement?.state.shards.find((s) => s.shardId === shardId);
      if (placement !== undefined && shard !== undefined) {
        placementView = `placement sees voters ${shard.voters.join(",")}, learners ` +
          `${shard.learners.join(",") || "none"} at conf epoch ${shard.confEpoch}, ` +
          `${placement.state.tasks.length} moves`;
        const moving = placement.state.tasks.some((t) => t.move?.shardId === shardId);
        if (
          newLeader !== undefined && !moving && shard.leader !== "" &&
          shard.learners.length === 0 &&
          shard.voters.length === cluster.options.replicas && shard.confEpoch > removedAt
        ) {
          return `; ${newLeader}; back to ${shard.voters.length} voters ` +
            `(${shard.voters.join(",")}) after ${since()}`;
        }
      }
      await sleep(500);
    }
    return `; after ${since()}: ${newLeader ?? "no other leader yet"}, ${placementView}`;
  }

  /** A new kvnode (fresh data) on a free test host; waits (bounded) for the rebalancing. */
  async #join(event: FaultEvent): Promise<void> {
    const host = this.#freeHost()!;
    const node = await this.#cluster.startNewNode(host);
    event.detail = `${node.process.name} (${node.nodeId}) on host ${host}`;
    await this.#waitForMoves(60_000);
  }

  /** A kvnode drained through placement and, once empty, stopped for good. */
  async #drain(event: FaultEvent): Promise<void> {
    const placement = await this.#cluster.placementLeader();
    if (placement === undefined) return void (event.skipped = "no placement leader");
    const candidates = this.#cluster.liveNodes.filter((n) => n.process.running && !n.paused);
    const node = this.#random.pick(candidates);
    event.detail = `${node.process.name} (${node.nodeId})`;
    const answer = await this.#cluster.placementCall(placement.placement, "DrainNode", {
      nodeId: node.nodeId,
    });
    if (answer.kind !== "ok") return void (event.skipped = answer.message);
    if (!(await this.#waitUntilEmpty(node, 90_000))) {
      event.detail += "; still held replicas after 90 s, kept running";
      return;
    }
    node.retired = true;
    await node.process.stop();
    node.admin.close();
  }

  /** ZooKeeper crashed (SIGKILL) or stopped, then started again on its data. */
  async #restartZooKeeper(event: FaultEvent, hold: Hold): Promise<void> {
    const crash = this.#random.chance(0.5);
    event.detail = crash ? "SIGKILL" : "graceful stop";
    await this.#cluster.stopZooKeeper(crash);
    await hold(2000, 6000);
    await this.#restart("ZooKeeper", () => this.#cluster.startZooKeeper());
  }

  /** kill -9 of the placement leader, restarted after a few seconds. */
  async #killPlacementLeader(event: FaultEvent, hold: Hold): Promise<void> {
    const leader = await this.#cluster.placementLeader();
    if (leader === undefined) return void (event.skipped = "no placement leader");
    const process = leader.placement.process;
    event.detail = process.name;
    await process.kill();
    await hold(1000, 5000);
    await this.#restart(process.name, () => process.start(/placement serving on/, 60_000));
  }

  /** kill -9 of a gateway, restarted after a few seconds (clients fail over meanwhile). */
  async #killGateway(event: FaultEvent, hold: Hold): Promise<void> {
    const process = this.#random.pick(this.#cluster.gateways).process;
    event.detail = process.name;
    await process.kill();
    await hold(1000, 4000);
    await this.#restart(process.name, () => process.start(/gateway serving on/, 60_000));
  }

  /** Waits (bounded) until placement reports no move in progress. */
  async #waitForMoves(timeoutMs: number): Promise<void> {
    const deadline = this.#now() + timeoutMs;
    await sleep(500);
    while (this.#now() < deadline) {
      const leader = await this.#cluster.placementLeader();
      if (leader !== undefined && leader.state.tasks.length === 0) return;
      await sleep(500);
    }
  }

  /** Waits (bounded) until placement says `node` holds no replica. */
  async #waitUntilEmpty(node: ChaosNode, timeoutMs: number): Promise<boolean> {
    const deadline = this.#now() + timeoutMs;
    while (this.#now() < deadline) {
      const leader = await this.#cluster.placementLeader();
      const state = leader?.state;
      if (
        state !== undefined && state.tasks.length === 0 &&
        !state.shards.some((s) =>
          s.voters.includes(node.nodeId) || s.learners.includes(node.nodeId)
        )
      ) {
        return true;
      }
      await sleep(500);
    }
    return false;
  }
}

/**
 * The report's fault table: one row per kind in the order of first use — how many were applied
 * and skipped, and the seconds the applied ones lasted.
 */
export function faultTable(timeline: readonly FaultEvent[]): string[] {
  const rows = new Map<string, { applied: number; skipped: number; ms: number }>();
  for (const event of timeline) {
    const row = rows.get(event.kind) ?? { applied: 0, skipped: 0, ms: 0 };
    if (event.skipped === undefined) {
      row.applied++;
      row.ms += event.end - event.start;
    } else {
      row.skipped++;
    }
    rows.set(event.kind, row);
  }
  return [
    "| fault | applied | skipped | seconds applied |",
    "|---|---:|---:|---:|",
    ...[...rows].map(([kind, r]) =>
      `| ${kind} | ${r.applied} | ${r.skipped} | ${(r.ms / 1000).toFixed(1)} |`
    ),
  ];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
