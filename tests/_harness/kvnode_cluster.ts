/**
 * A cluster of real kvnode processes for integration tests, bootstrapped directly through the
 * node-admin API (no placement): shards over equal FNV-1a ranges, each replicated on every node.
 * Requests go through `libs/client`'s router (the product's one leader-following retry loop) over
 * the batched data stream to whichever node leads, following `not_leader` hints and retrying with
 * the same `(client_id, seq)` until a deadline. With no published map, the router tries any shard
 * id on every running node ({@linkcode KvNodeCluster.router}).
 *
 * @module
 */
import {
  type ClusterView,
  KvRouter,
  type KvRouterOptions,
  type RouteOp,
  type RouteResult,
  type RouteShard,
  type RouteTarget,
} from "@tinykv/client";
import {
  ChangeMembershipRequest_Change,
  ItemFailure_Kind,
  NodeAdminService,
  type NodeStatusResponse,
  type Peer,
  type ResponseItem,
} from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, type RpcResult, unaryCaller } from "@tinykv/rpc";
import {
  encodeShardMap,
  keyHash,
  type NodeId,
  nodeId as toNodeId,
  type ShardId,
  shardId as toShardId,
  type ShardMap,
  splitEvenly,
} from "@tinykv/shard";
import { connectZooKeeper } from "@tinykv/zk";
import { randomTestRoot, removeTestRoot, testZooKeeper, waitFor } from "@tinykv/zk/testing";
import { freePort, ServiceProcess } from "./processes.ts";

const MESSAGE_BYTES = 8 * 1024 * 1024;

/** Options of {@linkcode KvNodeCluster.start}. */
export interface KvNodeClusterOptions {
  readonly nodes: number;
  readonly shards: number;
  /** Extra `--section.key=value` flags for every node. */
  readonly flags?: readonly string[];
  /** A ZooKeeper to use instead of the test run's shared one. */
  readonly zkConnect?: string;
}

/** One kvnode process of the cluster. */
export interface ClusterNode {
  readonly index: number;
  readonly port: number;
  readonly address: string;
  readonly process: ServiceProcess;
  nodeId: string;
  admin: GrpcClient<typeof NodeAdminService>;
}

/** Real kvnodes sharing one ZooKeeper cluster root. */
export class KvNodeCluster {
  readonly nodes: ClusterNode[] = [];
  readonly dataDir: string;
  readonly clusterName: string;
  /** A random test root (`/tinykv-test/<hex>`) that holds this cluster's znodes. */
  readonly zkRoot: string;
  readonly zkConnect: string;
  readonly shards: number;
  clusterId = "";
  readonly #gateways: ServiceProcess[] = [];
  /** The router {@linkcode send} uses, made on first use. */
  #sendRouter: KvRouter | undefined;
  /** Shard id → the node last seen leading it by {@linkcode waitForLeaders}: routers' first try. */
  readonly #leaderHints = new Map<ShardId, NodeId>();
  /** The kvnodes by node id, for routers; there is no published map to name them. */
  readonly #view: ClusterView = {
    shardMap: () => undefined,
    nodeAddress: (id) => this.nodes.find((node) => node.nodeId === id)?.address,
    changed: (timeoutMs) => new Promise<void>((resolve) => setTimeout(resolve, timeoutMs)),
    close: () => {},
  };

  private constructor(dataDir: string, clusterName: string, zkConnect: string, shards: number) {
    this.dataDir = dataDir;
    this.clusterName = clusterName;
    this.zkRoot = randomTestRoot();
    this.zkConnect = zkConnect;
    this.shards = shards;
  }

  /** Starts `nodes` kvnodes (not yet hosting anything). */
  static async start(options: KvNodeClusterOptions): Promise<KvNodeCluster> {
    const zkConnect = options.zkConnect ?? (await testZooKeeper()).connectString;
    const dataDir = await Deno.makeTempDir({ prefix: "tinykv-kvnodes-" });
    const name = `t${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const cluster = new KvNodeCluster(dataDir, name, zkConnect, options.shards);
    try {
      for (let i = 0; i < options.nodes; i++) await cluster.addNode(options.flags ?? []);
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  /** Starts one more kvnode. */
  async addNode(flags: readonly string[] = []): Promise<ClusterNode> {
    const port = freePort();
    const [host, zkPort] = this.zkConnect.split(":");
    const process = new ServiceProcess(`kvnode ${this.nodes.length}`, "services/kvnode/main.ts", [
      `--zookeeper.host=${host}`,
      `--zookeeper.port=${zkPort}`,
      `--zookeeper.root=${this.zkRoot}`,
      `--zookeeper.cluster=${this.clusterName}`,
      `--storage.data_dir=${this.dataDir}`,
      `--log.dir=${this.dataDir}/logs`,
      "--log.stderr=false",
      `--kvnode.port=${port}`,
      "--raft.tick_ms=50",
      "--zookeeper.session_timeout_ms=4000",
      ...flags,
    ]);
    const address = `127.0.0.1:${port}`;
    const node: ClusterNode = {
      index: this.nodes.length,
      port,
      address,
      process,
      nodeId: "",
      admin: createGrpcClient(NodeAdminService, address, { maxMessageBytes: MESSAGE_BYTES }),
    };
    this.nodes.push(node);
    await this.#startNode(node);
    return node;
  }

  async #startNode(node: ClusterNode): Promise<void> {
    await node.process.start(/kvnode (\S+) serving on/);
    const match = /kvnode (\S+) serving on \S+ \(cluster (\S+),/.exec(node.process.output);
    node.nodeId = match?.[1] ?? "";
    this.clusterId = match?.[2] ?? "";
  }

  /** Restarts a stopped or killed node on its data. */
  async restart(node: ClusterNode): Promise<void> {
    await this.#startNode(node);
  }

  peer(node: ClusterNode, peerId: number): Peer {
    return { peerId, nodeId: node.nodeId, address: node.address };
  }

  /** Creates every shard on `members` (default: the first three nodes). */
  async bootstrap(members: ClusterNode[] = this.nodes.slice(0, 3)): Promise<void> {
    const ranges = splitEvenly(this.shards);
    for (let s = 0; s < this.shards; s++) {
      const shardId = s + 1;
      const voters = members.map((node, i) => this.peer(node, shardId * 100 + i));
      for (const node of members) {
        const result = await this.call(node, "CreateReplica", {
          clusterId: this.clusterId,
          shardId,
          rangeLo: ranges[s].lo,
          rangeHi: ranges[s].hi,
          peerId: voters.find((p) => p.nodeId === node.nodeId)!.peerId,
          voters,
          learners: [],
          confEpoch: 0,
          join: false,
        });
        if (result.kind !== "ok") throw new Error(`CreateReplica failed: ${result.message}`);
      }
    }
    await this.waitForLeaders();
  }

  /** Calls a node-admin method with a 10 s deadline. */
  call<
    M extends "CreateReplica" | "ChangeMembership" | "TransferLeader" | "Status" | "DeleteReplica",
  >(
    node: ClusterNode,
    method: M,
    request: Parameters<ReturnType<typeof unaryCaller<typeof NodeAdminService, M>>>[0],
  ): Promise<
    RpcResult<
      Awaited<ReturnType<ReturnType<typeof unaryCaller<typeof NodeAdminService, M>>>> extends
        RpcResult<infer R> ? R : never
    >
  > {
    // deno-lint-ignore no-explicit-any
    return unaryCaller(node.admin, method)(request as any, { deadlineMs: 10_000 }) as any;
  }

  /** Everything a kvnode logged so far (its log files under the cluster's data dir). */
  async logOf(node: ClusterNode): Promise<string> {
    let text = "";
    for await (const entry of Deno.readDir(`${this.dataDir}/logs`)) {
      if (entry.name.startsWith(`kvnode-${node.port}-`)) {
        text += await Deno.readTextFile(`${this.dataDir}/logs/${entry.name}`);
      }
    }
    return text;
  }

  /** The status of every running node. */
  async statuses(withDataHash = false): Promise<NodeStatusResponse[]> {
    const out: NodeStatusResponse[] = [];
    for (const node of this.nodes) {
      if (!node.process.running) continue;
      const result = await this.call(node, "Status", {
        withDataHash,
        resetTurnStats: false,
        sinceVersion: 0,
        sinceStartedAtMs: 0,
      });
      if (result.kind === "ok") out.push(result.response as NodeStatusResponse);
    }
    return out;
  }

  /** Waits until every shard has a leader among the running nodes. */
  async waitForLeaders(timeoutMs = 30_000): Promise<void> {
    let leaders = new Map<ShardId, NodeId>();
    await waitFor(async () => {
      leaders = new Map();
      for (const status of await this.statuses()) {
        for (const replica of status.replicas) {
          if (replica.role === 4) leaders.set(toShardId(replica.shardId), status.nodeId as NodeId);
        }
      }
      return leaders.size === this.shards;
    }, {
      timeoutMs,
      what: `leaders of ${this.shards} shards (have ${[...leaders.keys()].join(",")})`,
    });
    for (const [shard, leader] of leaders) this.#leaderHints.set(shard, leader);
  }

  /** The shard owning `key`. */
  shardOf(key: Uint8Array): ShardId {
    const hash = keyHash(key);
    const ranges = splitEvenly(this.shards);
    return toShardId(ranges.findIndex((r) => r.lo <= hash && hash < r.hi) + 1);
  }

  /**
   * A router to this cluster's shards. No map is published for them, so any shard id (or a key's
   * shard under {@linkcode shardOf}) is tried on every running node, with conf epoch 0 (never
   * stale), first on the leader {@linkcode waitForLeaders} saw last, then following NOT_LEADER
   * hints. Close it when done.
   */
  router(
    options: Partial<Pick<KvRouterOptions, "attemptTimeoutMsMax" | "batchItemsMax">> = {},
  ): KvRouter {
    return new KvRouter({
      view: this.#view,
      locate: (target) => this.#locate(target),
      maxMessageBytes: MESSAGE_BYTES,
      ...options,
    });
  }

  #locate(target: RouteTarget): RouteShard {
    const id = "key" in target ? this.shardOf(target.key) : target.shardId;
    const replicas: NodeId[] = [];
    for (const node of this.nodes) {
      if (node.process.running && node.nodeId !== "") replicas.push(node.nodeId as NodeId);
    }
    return { id, confEpoch: 0, replicas, leaderHint: this.#leaderHints.get(id) };
  }

  /**
   * Sends `item` to the shard's leader through the router, retrying (same item, so the same
   * `(client_id, seq)`) on NOT_LEADER, UNAVAILABLE, UNKNOWN and broken streams until `deadlineMs`
   * passes. Returns the answer, or the final failure as a `ResponseItem` failure.
   */
  async send(
    shardId: ShardId,
    item: RouteOp,
    deadlineMs = 20_000,
  ): Promise<ResponseItem> {
    this.#sendRouter ??= this.router();
    const result = await this.#sendRouter.route({ shardId }, item, Date.now() + deadlineMs);
    return result.kind === "ok" ? result.item : failureItem(result);
  }

  /** Proposes a membership change on the shard's leader, with the current epoch. */
  async changeMembership(
    shardId: ShardId,
    change: "addLearner" | "promote" | "remove",
    peer: Peer,
  ): Promise<RpcResult<unknown>> {
    const codes = {
      addLearner: ChangeMembershipRequest_Change.ADD_LEARNER,
      promote: ChangeMembershipRequest_Change.PROMOTE,
      remove: ChangeMembershipRequest_Change.REMOVE,
    };
    const leader = await this.leaderOf(shardId);
    return await this.call(leader.node, "ChangeMembership", {
      clusterId: this.clusterId,
      shardId,
      expectedConfEpoch: leader.confEpoch,
      change: codes[change],
      peer,
      timeoutMs: 10_000,
    });
  }

  /** The node leading `shardId` and the shard's conf epoch there. */
  async leaderOf(shardId: ShardId): Promise<{ node: ClusterNode; confEpoch: number }> {
    let found: { node: ClusterNode; confEpoch: number } | undefined;
    await waitFor(async () => {
      for (const node of this.nodes.filter((n) => n.process.running)) {
        const status = await this.call(node, "Status", {
          withDataHash: false,
          resetTurnStats: false,
          sinceVersion: 0,
          sinceStartedAtMs: 0,
        });
        if (status.kind !== "ok") continue;
        const replica = (status.response as NodeStatusResponse).replicas.find((r) =>
          r.shardId === shardId && r.role === 4
        );
        if (replica !== undefined) found = { node, confEpoch: replica.confEpoch };
      }
      return found !== undefined;
    }, { timeoutMs: 20_000, what: `a leader of shard ${shardId}` });
    return found!;
  }

  /**
   * Publishes a shard map for the bootstrapped shards (replicas on the first three nodes) in
   * ZooKeeper, as placement does, so gateways and routers can find them.
   */
  async publishShardMap(): Promise<void> {
    const nodes = this.nodes.slice(0, 3).map((n) => toNodeId(n.nodeId));
    const map: ShardMap = {
      version: 1,
      shards: splitEvenly(this.shards).map((range, i) => ({
        id: toShardId(i + 1),
        range,
        replicas: nodes,
        learners: [],
        confEpoch: 0,
      })),
    };
    const encoded = encodeShardMap(map);
    if (encoded.kind !== "ok") throw new Error(`Cannot encode the shard map: ${encoded.kind}`);
    const zk = await connectZooKeeper({
      connectString: this.zkConnect,
      root: `${this.zkRoot}/${this.clusterName}`,
    });
    try {
      const created = await zk.create("/shardmap", encoded.bytes);
      if (created.kind !== "ok") throw new Error(`Cannot publish the shard map: ${created.kind}`);
    } finally {
      await zk.close();
    }
  }

  /** Starts a gateway process on a free port, routing for this cluster. */
  async startGateway(
    flags: readonly string[] = [],
  ): Promise<{ process: ServiceProcess; address: string }> {
    const port = freePort();
    const [host, zkPort] = this.zkConnect.split(":");
    const process = new ServiceProcess(`gateway :${port}`, "services/gateway/main.ts", [
      `--zookeeper.host=${host}`,
      `--zookeeper.port=${zkPort}`,
      `--zookeeper.root=${this.zkRoot}`,
      `--zookeeper.cluster=${this.clusterName}`,
      `--log.dir=${this.dataDir}/logs`,
      "--log.stderr=false",
      `--rpc_server.port=${port}`,
      ...flags,
    ]);
    this.#gateways.push(process);
    await process.start(/gateway serving on/);
    return { process, address: `127.0.0.1:${port}` };
  }

  /** The gateway processes started by {@linkcode startGateway}, in start order. */
  get gateways(): readonly ServiceProcess[] {
    return this.#gateways;
  }

  /**
   * The kvnode and gateway processes the harness started and has not stopped that are no longer
   * alive (they exited by themselves, e.g. crashed). Asked of `ps`, because Deno reads `/proc`
   * only with every permission; a zombie counts as exited.
   */
  async exitedProcesses(): Promise<ServiceProcess[]> {
    const started = [...this.nodes.map((n) => n.process), ...this.#gateways].filter((p) =>
      p.pid !== undefined
    );
    if (started.length === 0) return [];
    // This process is asked about too, so a `ps` that lists nothing cannot pass for "all exited".
    const ps = await new Deno.Command("ps", {
      args: ["-o", "pid=,stat=", "-p", [Deno.pid, ...started.map((p) => p.pid)].join(",")],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const alive = new Set<number>();
    for (const line of new TextDecoder().decode(ps.stdout).split("\n")) {
      const match = /^\s*(\d+)\s+(\S+)/.exec(line);
      if (match !== null && !match[2].startsWith("Z")) alive.add(Number(match[1]));
    }
    if (!alive.has(Deno.pid)) {
      throw new Error(
        `Cannot tell which processes are alive: ps printed nothing about this one: ${
          new TextDecoder().decode(ps.stderr)
        }`,
      );
    }
    return started.filter((p) => !alive.has(p.pid!));
  }

  /** Stops every process, closes clients and removes data and the ZooKeeper root. */
  async close(): Promise<void> {
    this.#sendRouter?.close();
    this.#sendRouter = undefined;
    for (const gateway of this.#gateways) await gateway.stop();
    for (const node of this.nodes) {
      node.admin.close();
      await node.process.stop();
    }
    await removeTestRoot(this.zkConnect, this.zkRoot).catch(() => {});
    await Deno.remove(this.dataDir, { recursive: true }).catch(() => {});
  }
}

/** The kvnode failure kind each final router result stands for. */
const FAILURE_KINDS: Readonly<Record<Exclude<RouteResult["kind"], "ok">, ItemFailure_Kind>> = {
  invalidArgument: ItemFailure_Kind.INVALID,
  unavailable: ItemFailure_Kind.UNAVAILABLE,
  deadlineExceeded: ItemFailure_Kind.UNKNOWN,
  failedPrecondition: ItemFailure_Kind.SESSION_EXPIRED,
  resourceExhausted: ItemFailure_Kind.RESOURCE_EXHAUSTED,
  dataLoss: ItemFailure_Kind.DATA_LOSS,
  internal: ItemFailure_Kind.INTERNAL,
};

/** A router's final failure as the kvnode failure it stands for, with the router's message. */
function failureItem(result: Exclude<RouteResult, { kind: "ok" }>): ResponseItem {
  return {
    id: 0,
    failure: {
      kind: FAILURE_KINDS[result.kind],
      message: result.message,
      leaderNode: "",
      leaderAddress: "",
      confEpoch: 0,
    },
  };
}
