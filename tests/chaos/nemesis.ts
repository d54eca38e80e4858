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
 * moves, a node drained and retired, a new node joining; ZooKeeper crashes and restarts; the
 * placement leader and gateways killed and restarted.
 *
 * @module
 */
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
    const cluster = this.#cluster;
    try {
      switch (kind) {
        case "kill": {
          const node = await this.#victim();
          if (node === undefined) return void (event.skipped = "no running node");
          const long = this.#random.chance(0.1);
          event.detail = `${node.process.name} (${node.nodeId})${long ? ", long" : ""}`;
          await node.process.kill();
          await (long ? hold(11_000, 15_000) : hold(1000, 6000));
          await this.#restart(node.process.name, () => cluster.restartNode(node));
          break;
        }
        case "kill-majority":
        case "kill-all": {
          // A shard's leader and one more of its voters (the shard stops until they return),
          // or every kvnode at once: acknowledged writes must survive on their synced logs.
          let victims: ChaosNode[];
          if (kind === "kill-all") {
            victims = cluster.liveNodes.filter((n) => n.process.running);
          } else {
            const placement = await cluster.placementLeader();
            if (placement === undefined) return void (event.skipped = "no placement leader");
            const shard = this.#random.pick(placement.state.shards);
            const voters = this.#shuffled(shard.voters.filter((v) => v !== shard.leader));
            const ids = new Set([shard.leader, voters[0]]);
            victims = cluster.liveNodes.filter((n) => ids.has(n.nodeId) && n.process.running);
            event.detail = `shard ${shard.shardId}: `;
          }
          event.detail += victims.map((n) => `${n.process.name} (${n.nodeId})`).join(", ");
          for (const node of victims) {
            if (node.paused) {
              node.process.signal("SIGCONT");
              node.paused = false;
            }
          }
          await Promise.all(victims.map((n) => n.process.kill()));
          await hold(1000, 5000);
          await Promise.all(
            victims.map((n) => this.#restart(n.process.name, () => cluster.restartNode(n))),
          );
          break;
        }
        case "pause": {
          const node = await this.#victim();
          if (node === undefined) return void (event.skipped = "no running node");
          event.detail = `${node.process.name} (${node.nodeId})`;
          node.process.signal("SIGSTOP");
          node.paused = true;
          await hold(1000, 5000);
          node.process.signal("SIGCONT");
          node.paused = false;
          break;
        }
        case "partition-halves":
        case "partition-one-way": {
          const hosts = this.#shuffled(cluster.liveNodes.map((n) => n.host));
          const cut = this.#random.range(1, Math.floor(hosts.length / 2));
          const [a, b] = [hosts.slice(0, cut), hosts.slice(cut)];
          const oneWay = kind === "partition-one-way";
          event.detail = `hosts ${a.join(",")} ${oneWay ? "->" : "|"} ${b.join(",")}`;
          for (const x of a) {
            for (const y of b) await (oneWay ? cluster.net.cut(x, y) : cluster.net.cutBoth(x, y));
          }
          await hold(2000, 8000);
          await cluster.net.heal();
          break;
        }
        case "isolate-leader": {
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
          break;
        }
        case "transfer-leader":
        case "move-replica": {
          const placement = await cluster.placementLeader();
          if (placement === undefined) return void (event.skipped = "no placement leader");
          const shard = this.#random.pick(placement.state.shards);
          if (kind === "transfer-leader") {
            const to = this.#random.pick(shard.voters.filter((v) => v !== shard.leader));
            event.detail = `shard ${shard.shardId} from ${shard.leader} to ${to}`;
            const answer = await cluster.placementCall(placement.placement, "TransferLeader", {
              shardId: shard.shardId,
              toNode: to,
            });
            if (answer.kind !== "ok") event.skipped = answer.message;
          } else {
            const members = new Set([...shard.voters, ...shard.learners]);
            const targets = placement.state.nodes.filter((n) =>
              n.live && !n.draining && !members.has(n.nodeId)
            );
            if (targets.length === 0) return void (event.skipped = "no node to move to");
            const from = this.#random.pick(shard.voters);
            const to = this.#random.pick(targets).nodeId;
            event.detail = `shard ${shard.shardId} from ${from} to ${to}`;
            const answer = await cluster.placementCall(placement.placement, "MoveReplica", {
              shardId: shard.shardId,
              fromNode: from,
              toNode: to,
            });
            if (answer.kind !== "ok") event.skipped = answer.message;
            else await this.#waitForMoves(30_000);
          }
          break;
        }
        case "join": {
          const host = this.#freeHost()!;
          const node = await cluster.startNewNode(host);
          event.detail = `${node.process.name} (${node.nodeId}) on host ${host}`;
          await this.#waitForMoves(60_000);
          break;
        }
        case "drain": {
          const placement = await cluster.placementLeader();
          if (placement === undefined) return void (event.skipped = "no placement leader");
          const candidates = cluster.liveNodes.filter((n) => n.process.running && !n.paused);
          const node = this.#random.pick(candidates);
          event.detail = `${node.process.name} (${node.nodeId})`;
          const answer = await cluster.placementCall(placement.placement, "DrainNode", {
            nodeId: node.nodeId,
          });
          if (answer.kind !== "ok") return void (event.skipped = answer.message);
          const emptied = await this.#waitUntilEmpty(node, 90_000);
          if (!emptied) {
            event.detail += "; still held replicas after 90 s, kept running";
            break;
          }
          node.retired = true;
          await node.process.stop();
          node.admin.close();
          break;
        }
        case "zookeeper-restart": {
          const crash = this.#random.chance(0.5);
          event.detail = crash ? "SIGKILL" : "graceful stop";
          await cluster.stopZooKeeper(crash);
          await hold(2000, 6000);
          await this.#restart("ZooKeeper", () => cluster.startZooKeeper());
          break;
        }
        case "placement-leader-kill": {
          const leader = await cluster.placementLeader();
          if (leader === undefined) return void (event.skipped = "no placement leader");
          event.detail = leader.placement.process.name;
          await leader.placement.process.kill();
          await hold(1000, 5000);
          await this.#restart(
            leader.placement.process.name,
            () => leader.placement.process.start(/placement serving on/, 60_000),
          );
          break;
        }
        case "gateway-kill": {
          const gateway = this.#random.pick(cluster.gateways);
          event.detail = gateway.process.name;
          await gateway.process.kill();
          await hold(1000, 4000);
          await this.#restart(
            gateway.process.name,
            () => gateway.process.start(/gateway serving on/, 60_000),
          );
          break;
        }
      }
    } catch (error) {
      event.skipped = `${error}`;
    } finally {
      event.end = this.#now();
      const took = ((event.end - event.start) / 1000).toFixed(1);
      this.#log(
        `fault ${kind} ${event.detail} (${took} s)${
          event.skipped ? ` — skipped: ${event.skipped}` : ""
        }`,
      );
    }
  }

  #shuffled<T>(items: T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.#random.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
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

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
