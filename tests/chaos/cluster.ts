/**
 * {@linkcode ChaosCluster}: the real cluster the fault test runs — ZooKeeper, two placement
 * instances and two gateways in the root namespace, each kvnode on a test host of its own (see
 * {@linkcode ChaosNet}) — with the primitives the nemesis uses: kill -9 and restart, SIGSTOP and
 * SIGCONT, a node joining on a fresh data directory, ZooKeeper restarts, and queries of who leads.
 *
 * Defaults stay as shipped (ReadIndex reads, synced writes); only timings are shortened so that a
 * few minutes hold many elections and placement reacts within seconds.
 *
 * @module
 */
import {
  type ClusterStateResponse,
  NodeAdminService,
  type NodeStatusResponse,
  PlacementService,
  type ReplicaStatus,
  ReplicaStatus_Role,
} from "@tinykv/proto/tinykv/v1";
import {
  type ClientSecurity,
  createGrpcClient,
  type GrpcClient,
  type RequestOf,
  type ResponseOf,
  type RpcResult,
  unaryCaller,
  type UnaryMethodName,
} from "@tinykv/rpc";
import { startZooKeeper, type ZooKeeperServer } from "@tinykv/zk/server";
import { waitFor } from "@tinykv/zk/testing";
import type { Role } from "@tinykv/auth";
import { freePort, ServiceProcess } from "../_harness/processes.ts";
import {
  credentialFiles,
  ensureTokenFile,
  initCredentials,
  SERVER_NAME,
} from "../../tools/credentials.ts";
import { ChaosNet, HOST } from "./net.ts";

const MESSAGE_BYTES = 8 * 1024 * 1024;
const KVNODE_PORT = 7901;
const CLUSTER = "chaos";
const ZK_ROOT = "/tinykv";

/** The shape of the cluster. */
export interface ChaosClusterOptions {
  /** kvnodes running from the start (at least 5). */
  readonly nodes: number;
  /** Test hosts in all: `nodes` plus room for nodes that join later. */
  readonly hosts: number;
  readonly shards: number;
  readonly replicas: number;
  readonly gateways: number;
  readonly placements: number;
  /** Where data and logs go. */
  readonly dir: string;
}

/** A kvnode on its test host. */
export interface ChaosNode {
  readonly host: number;
  readonly address: string;
  readonly process: ServiceProcess;
  readonly admin: GrpcClient<typeof NodeAdminService>;
  nodeId: string;
  /** Paused with SIGSTOP. */
  paused: boolean;
  /** Drained and stopped for good: its host may take a new node. */
  retired: boolean;
}

/** A placement instance. */
export interface ChaosPlacement {
  readonly process: ServiceProcess;
  readonly adminAddress: string;
  readonly admin: GrpcClient<typeof PlacementService>;
}

/** A gateway. */
export interface ChaosGateway {
  readonly process: ServiceProcess;
  readonly address: string;
}

/** The running cluster. */
export class ChaosCluster {
  readonly net: ChaosNet;
  readonly options: ChaosClusterOptions;
  readonly nodes: ChaosNode[] = [];
  readonly placements: ChaosPlacement[] = [];
  readonly gateways: ChaosGateway[] = [];
  zk: ZooKeeperServer | undefined;
  readonly #zkPort: number;
  #incarnations = 0;
  /** How the test's own clients connect: TLS and an admin's token (set by `start`). */
  clientSecurity: ClientSecurity = {};
  /** The client role's token, for the workloads and probes. */
  clientToken = "";
  /** How the nodes' admin clients connect: TLS and a placement-role token (the nemesis). */
  #nodeSecurity: ClientSecurity = {};

  private constructor(net: ChaosNet, options: ChaosClusterOptions, zkPort: number) {
    this.net = net;
    this.options = options;
    this.#zkPort = zkPort;
  }

  get #pki(): string {
    return `${this.options.dir}/pki`;
  }

  /**
   * The cluster runs secure, as a deployment off one machine must: TLS and tokens on every port
   * and a ZooKeeper credential (tools/credentials.ts makes them, for every test host's address).
   */
  async #makeCredentials(): Promise<void> {
    const hosts = ["127.0.0.1", this.net.address(HOST)];
    for (let host = 0; host < this.net.hosts; host++) hosts.push(this.net.address(host));
    await initCredentials(this.#pki, { hosts });
    await Deno.writeTextFile(`${this.#pki}/zookeeper.digest`, `tinykv:${crypto.randomUUID()}\n`);
    const files = credentialFiles(this.#pki);
    const admin = await ensureTokenFile(this.#pki, "admin", {
      cluster: CLUSTER,
      role: "admin",
      sub: "chaos-admin",
    });
    const client = await ensureTokenFile(this.#pki, "client", {
      cluster: CLUSTER,
      role: "client",
      sub: "chaos-client",
    });
    // The nemesis asks kvnodes for changes as placement would: it needs placement's role there.
    const nemesis = await ensureTokenFile(this.#pki, "nemesis", {
      cluster: CLUSTER,
      role: "placement",
      sub: "chaos-nemesis",
    });
    const tls = { ca: await Deno.readTextFile(files.ca), serverName: SERVER_NAME };
    this.clientSecurity = { tls, token: (await Deno.readTextFile(admin)).trim() };
    this.#nodeSecurity = { tls, token: (await Deno.readTextFile(nemesis)).trim() };
    this.clientToken = (await Deno.readTextFile(client)).trim();
  }

  /** `--security.*` and the ZooKeeper credential of a process whose token is `<name>.token`. */
  async #securityFlags(name: string, role: Role): Promise<string[]> {
    const files = credentialFiles(this.#pki);
    const token = await ensureTokenFile(this.#pki, name, { cluster: CLUSTER, role, sub: name });
    return [
      `--security.ca_file=${files.ca}`,
      `--security.cert_file=${files.cert}`,
      `--security.key_file=${files.key}`,
      `--security.verify_key_file=${files.verify}`,
      `--security.token_file=${token}`,
      `--zookeeper.digest_file=${this.#pki}/zookeeper.digest`,
    ];
  }

  /** Makes the network and starts every process; resolves once every shard has a leader. */
  static async start(options: ChaosClusterOptions): Promise<ChaosCluster> {
    const net = await ChaosNet.create(options.hosts);
    const cluster = new ChaosCluster(net, options, freePort());
    try {
      await Deno.mkdir(`${options.dir}/logs`, { recursive: true });
      await cluster.#makeCredentials();
      await cluster.startZooKeeper();
      await Promise.all(
        Array.from({ length: options.nodes }, (_, host) => cluster.startNewNode(host)),
      );
      for (let i = 0; i < options.placements; i++) await cluster.#startPlacement();
      for (let i = 0; i < options.gateways; i++) await cluster.#startGateway();
      await cluster.waitHealthy(90_000);
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  get zkConnect(): string {
    return `${this.net.address(HOST)}:${this.#zkPort}`;
  }

  /** Flags every service gets; `logDir` (default `<dir>/logs`) is where it logs. */
  #commonFlags(logDir = `${this.options.dir}/logs`): string[] {
    return [
      `--zookeeper.host=${this.net.address(HOST)}`,
      `--zookeeper.port=${this.#zkPort}`,
      `--zookeeper.root=${ZK_ROOT}`,
      `--zookeeper.cluster=${CLUSTER}`,
      "--zookeeper.session_timeout_ms=4000",
      `--log.dir=${logDir}`,
      "--log.stderr=false",
      `--sharding.num_shards=${this.options.shards}`,
      `--sharding.replica_count=${this.options.replicas}`,
    ];
  }

  /** Starts ZooKeeper on its address and port (data kept across restarts). */
  async startZooKeeper(): Promise<void> {
    this.zk = await startZooKeeper({
      dataDir: `${this.options.dir}/zk`,
      host: this.net.address(HOST),
      port: this.#zkPort,
      logFile: `${this.options.dir}/logs/zookeeper.log`,
    });
  }

  /** Stops ZooKeeper: with SIGKILL when `crash`, else gracefully. */
  async stopZooKeeper(crash: boolean): Promise<void> {
    const zk = this.zk;
    if (zk === undefined) return;
    this.zk = undefined;
    if (crash) {
      Deno.kill(zk.pid, "SIGKILL");
      await zk.exited;
    } else {
      await zk.stop();
    }
  }

  /** Starts a kvnode with a fresh data directory on test host `host`. */
  async startNewNode(host: number): Promise<ChaosNode> {
    const incarnation = this.#incarnations++;
    const address = `${this.net.address(host)}:${KVNODE_PORT}`;
    const process = new ServiceProcess(
      `kvnode h${host}#${incarnation}`,
      "services/kvnode/main.ts",
      [
        // Every kvnode listens on the same port (on its own address): one log folder each.
        ...this.#commonFlags(`${this.options.dir}/logs/kvnode-h${host}-${incarnation}`),
        `--storage.data_dir=${this.options.dir}/kvnode-h${host}-${incarnation}`,
        `--kvnode.host=${this.net.address(host)}`,
        `--kvnode.port=${KVNODE_PORT}`,
        "--raft.tick_ms=50",
        // Its node id is its token's: one per incarnation.
        ...(await this.#securityFlags(`k${host}-${incarnation}`, "kvnode")),
      ],
      { prefix: this.net.prefix(host) },
    );
    const node: ChaosNode = {
      host,
      address,
      process,
      admin: createGrpcClient(NodeAdminService, address, {
        maxMessageBytes: MESSAGE_BYTES,
        ...this.#nodeSecurity,
      }),
      nodeId: "",
      paused: false,
      retired: false,
    };
    this.nodes.push(node);
    await this.restartNode(node);
    return node;
  }

  /** Starts a stopped node again on its data. */
  async restartNode(node: ChaosNode): Promise<void> {
    await node.process.start(/kvnode (\S+) serving on/, 60_000);
    node.nodeId = /kvnode (\S+) serving on/.exec(node.process.output)?.[1] ?? "";
    node.paused = false;
  }

  async #startPlacement(): Promise<void> {
    const adminPort = freePort();
    const process = new ServiceProcess(`placement :${adminPort}`, "services/placement/main.ts", [
      ...this.#commonFlags(),
      `--placement.admin_port=${adminPort}`,
      `--placement.http_port=${freePort()}`,
      "--placement.status_interval_ms=300",
      "--placement.shard_cooldown_ms=2000",
      "--placement.down_after_ms=10000",
      ...(await this.#securityFlags(`placement-${adminPort}`, "placement")),
    ]);
    const adminAddress = `127.0.0.1:${adminPort}`;
    this.placements.push({
      process,
      adminAddress,
      admin: createGrpcClient(PlacementService, adminAddress, {
        maxMessageBytes: MESSAGE_BYTES,
        ...this.clientSecurity,
      }),
    });
    await process.start(/placement serving on/, 60_000);
  }

  async #startGateway(): Promise<void> {
    const port = freePort();
    const process = new ServiceProcess(`gateway :${port}`, "services/gateway/main.ts", [
      ...this.#commonFlags(),
      `--rpc_server.port=${port}`,
      ...(await this.#securityFlags(`gateway-${port}`, "gateway")),
    ]);
    this.gateways.push({ process, address: `127.0.0.1:${port}` });
    await process.start(/gateway serving on/, 60_000);
  }

  /** Every process of the cluster, for stopping and for failure reports. */
  get processes(): ServiceProcess[] {
    return [
      ...this.nodes.map((n) => n.process),
      ...this.placements.map((p) => p.process),
      ...this.gateways.map((g) => g.process),
    ];
  }

  /** The nodes that should be members: started and not retired. */
  get liveNodes(): ChaosNode[] {
    return this.nodes.filter((n) => !n.retired);
  }

  /** Calls a placement admin method on `placement` (5 s deadline). */
  placementCall<M extends UnaryMethodName<typeof PlacementService>>(
    placement: ChaosPlacement,
    method: M,
    request: RequestOf<(typeof PlacementService)[M]>,
  ): Promise<RpcResult<ResponseOf<(typeof PlacementService)[M]>>> {
    return unaryCaller(placement.admin, method)(request, { deadlineMs: 5000 });
  }

  /** The placement instance that leads, and its view of the cluster; undefined when none answers. */
  async placementLeader(): Promise<
    { placement: ChaosPlacement; state: ClusterStateResponse } | undefined
  > {
    for (const placement of this.placements) {
      if (!placement.process.running) continue;
      const answer = await this.placementCall(placement, "ClusterState", {});
      if (answer.kind === "ok" && answer.response.isLeader) {
        return { placement, state: answer.response };
      }
    }
    return undefined;
  }

  /** A node's status (3 s deadline); undefined when it does not answer. */
  async status(node: ChaosNode, withDataHash = false): Promise<NodeStatusResponse | undefined> {
    if (!node.process.running || node.paused) return undefined;
    const request = { withDataHash, resetTurnStats: false, sinceVersion: 0, sinceStartedAtMs: 0 };
    const answer = await unaryCaller(node.admin, "Status")(request, { deadlineMs: 3000 });
    return answer.kind === "ok" ? answer.response : undefined;
  }

  /** The node that leads `shardId` as the nodes report it, if any answers so. */
  async leaderOf(shardId: number): Promise<ChaosNode | undefined> {
    return (await this.leaderReplica(shardId))?.node;
  }

  /**
   * The replica that leads `shardId` as the nodes report it, with its node and that node's
   * status; undefined when no answering node leads it. When two say so (a deposed leader that
   * has not heard of the new term yet), the one of the higher term.
   */
  async leaderReplica(
    shardId: number,
  ): Promise<{ node: ChaosNode; status: NodeStatusResponse; replica: ReplicaStatus } | undefined> {
    let best: { node: ChaosNode; status: NodeStatusResponse; replica: ReplicaStatus } | undefined;
    for (const node of this.liveNodes) {
      const status = await this.status(node);
      const replica = status?.replicas.find((r) =>
        r.shardId === shardId && r.role === ReplicaStatus_Role.LEADER
      );
      if (status === undefined || replica === undefined) continue;
      if (best === undefined || replica.term > best.replica.term) best = { node, status, replica };
    }
    return best;
  }

  /**
   * Waits until placement has bootstrapped, every shard has `replicas` voters and a leader, and
   * no move is in progress.
   */
  async waitHealthy(timeoutMs: number): Promise<ClusterStateResponse> {
    let last: ClusterStateResponse | undefined;
    await waitFor(async () => {
      const leader = await this.placementLeader();
      last = leader?.state;
      return last !== undefined && last.bootstrapped && last.tasks.length === 0 &&
        last.shards.length === this.options.shards &&
        last.shards.every((s) =>
          s.voters.length === this.options.replicas && s.learners.length === 0 && s.leader !== ""
        );
    }, { timeoutMs, what: "a healthy cluster" }).catch((error) => {
      throw new Error(`${error}; placement's last view: ${JSON.stringify(last)}`);
    });
    return last!;
  }

  /** Stops every process, closes clients and removes the network. The data stays in `dir`. */
  async close(): Promise<void> {
    for (const node of this.nodes) {
      if (node.paused) node.process.signal("SIGCONT");
    }
    for (const gateway of this.gateways) await gateway.process.stop();
    for (const placement of this.placements) {
      placement.admin.close();
      await placement.process.stop();
    }
    await Promise.all(this.nodes.map(async (node) => {
      node.admin.close();
      await node.process.stop();
    }));
    await this.stopZooKeeper(false);
    await this.net.destroy();
  }
}
