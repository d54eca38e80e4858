/**
 * Real placement processes for integration tests, beside a {@linkcode KvNodeCluster}: each
 * instance joins the cluster's ZooKeeper root with fast timings, and is reached through its
 * `Placement` admin client and its HTTP port.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ClientSession, KvRouter, ZooKeeperClusterView } from "@tinykv/client";
import { type ClusterStateResponse, PlacementService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, type RpcResult, unaryCaller } from "@tinykv/rpc";
import { connectZooKeeper, type ZooKeeperClient } from "@tinykv/zk";
import { waitFor } from "@tinykv/zk/testing";
import { KvNodeCluster } from "./kvnode_cluster.ts";
import { freePort, ServiceProcess } from "./processes.ts";

/** Flags that make placement react within a second or two. */
export const FAST_PLACEMENT_FLAGS: readonly string[] = [
  "--placement.status_interval_ms=300",
  "--placement.shard_cooldown_ms=500",
  "--placement.moves_per_node_max=2",
];

/** One placement process. */
export class PlacementProcess {
  readonly process: ServiceProcess;
  readonly adminPort: number;
  readonly httpPort: number;
  readonly admin: GrpcClient<typeof PlacementService>;

  private constructor(process: ServiceProcess, adminPort: number, httpPort: number) {
    this.process = process;
    this.adminPort = adminPort;
    this.httpPort = httpPort;
    this.admin = createGrpcClient(PlacementService, `127.0.0.1:${adminPort}`, {
      maxMessageBytes: 8 * 1024 * 1024,
    });
  }

  get adminAddress(): string {
    return `127.0.0.1:${this.adminPort}`;
  }

  /** Starts an instance for `cluster` with `flags` (`--section.key=value`). */
  static async start(
    cluster: KvNodeCluster,
    options: { name?: string; flags?: readonly string[] } = {},
  ): Promise<PlacementProcess> {
    const adminPort = freePort();
    const httpPort = freePort();
    const [host, zkPort] = cluster.zkConnect.split(":");
    const process = new ServiceProcess(
      options.name ?? `placement ${adminPort}`,
      "services/placement/main.ts",
      [
        `--zookeeper.host=${host}`,
        `--zookeeper.port=${zkPort}`,
        `--zookeeper.root=${cluster.zkRoot}`,
        `--zookeeper.cluster=${cluster.clusterName}`,
        "--zookeeper.session_timeout_ms=4000",
        `--log.dir=${cluster.dataDir}/logs`,
        "--log.stderr=false",
        `--placement.admin_port=${adminPort}`,
        `--placement.http_port=${httpPort}`,
        `--sharding.num_shards=${cluster.shards}`,
        ...FAST_PLACEMENT_FLAGS,
        ...(options.flags ?? []),
      ],
    );
    const placement = new PlacementProcess(process, adminPort, httpPort);
    try {
      await process.start(/placement serving on/);
    } catch (error) {
      placement.admin.close();
      throw error;
    }
    return placement;
  }

  /** Calls an admin method with a 10 s deadline. */
  call<
    M extends
      | "ClusterState"
      | "Rebalance"
      | "MoveReplica"
      | "TransferLeader"
      | "DrainNode"
      | "ListDecisions",
  >(
    method: M,
    request: Parameters<ReturnType<typeof unaryCaller<typeof PlacementService, M>>>[0],
  ): Promise<
    RpcResult<
      Awaited<ReturnType<ReturnType<typeof unaryCaller<typeof PlacementService, M>>>> extends
        RpcResult<infer R> ? R : never
    >
  > {
    // deno-lint-ignore no-explicit-any
    return unaryCaller(this.admin, method)(request as any, { deadlineMs: 10_000 }) as any;
  }

  /** Waits until this instance says it leads. */
  async waitUntilLeader(timeoutMs = 20_000): Promise<void> {
    await waitFor(() => /is the leader/.test(this.process.output), {
      timeoutMs,
      what: `${this.process.name} to lead`,
    });
  }

  /** Stops the process and closes the client. */
  async close(): Promise<void> {
    this.admin.close();
    await this.process.stop();
  }
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A client of the cluster through the published shard map. */
export class Client {
  readonly zk: ZooKeeperClient;
  readonly view: ZooKeeperClusterView;
  readonly router: KvRouter;
  readonly session = new ClientSession();

  private constructor(zk: ZooKeeperClient) {
    this.zk = zk;
    this.view = new ZooKeeperClusterView(zk);
    this.router = new KvRouter({ view: this.view, maxMessageBytes: 8 << 20 });
  }

  static async open(cluster: KvNodeCluster): Promise<Client> {
    const zk = await connectZooKeeper({
      connectString: cluster.zkConnect,
      root: `${cluster.zkRoot}/${cluster.clusterName}`,
    });
    return new Client(zk);
  }

  async put(key: string, value: string, deadlineMs = 20_000): Promise<void> {
    const { seq, ackSeq } = this.session.next()!;
    const result = await this.router.route({ key: enc(key) }, {
      put: { key: enc(key), value: enc(value), clientId: this.session.clientId, seq, ackSeq },
    }, Date.now() + deadlineMs);
    this.session.answered(seq);
    assert.equal(result.kind, "ok", `put "${key}": ${JSON.stringify(result)}`);
  }

  async get(key: string): Promise<string | undefined> {
    const result = await this.router.route(
      { key: enc(key) },
      { get: { key: enc(key), serializable: false } },
      Date.now() + 20_000,
    );
    assert.equal(result.kind, "ok", `get "${key}": ${JSON.stringify(result)}`);
    if (result.kind !== "ok") return undefined;
    return result.item.get?.found ? dec(result.item.get.value) : undefined;
  }

  async close(): Promise<void> {
    this.router.close();
    this.view.close();
    await this.zk.close();
  }
}

/** Keys that cover every shard of an `n`-shard cluster: one per shard. */
export function keyPerShard(cluster: KvNodeCluster): string[] {
  const keys = new Map<number, string>();
  for (let i = 0; keys.size < cluster.shards; i++) {
    const key = `k${i}`;
    const shard = cluster.shardOf(enc(key));
    if (!keys.has(shard)) keys.set(shard, key);
  }
  return [...keys.values()];
}

export async function state(placement: PlacementProcess): Promise<ClusterStateResponse> {
  const answer = await placement.call("ClusterState", {});
  assert.equal(answer.kind, "ok", JSON.stringify(answer));
  return (answer as { response: ClusterStateResponse }).response;
}

/** Waits until every shard has `replicas` voters, none on `excluded`, a leader, and no move. */
export async function waitSettled(
  placement: PlacementProcess,
  options: {
    replicas: number;
    excluded?: string[];
    timeoutMs: number;
    balanced?: string[];
    extra?: (state: ClusterStateResponse) => boolean;
  },
): Promise<ClusterStateResponse> {
  let last: ClusterStateResponse | undefined;
  await waitFor(async () => {
    const answer = await placement.call("ClusterState", {});
    if (answer.kind !== "ok") return false;
    last = answer.response;
    return last.bootstrapped && last.tasks.length === 0 && last.shards.length > 0 &&
      last.shards.every((s) =>
        s.voters.length === options.replicas && s.learners.length === 0 && s.leader !== "" &&
        !s.voters.some((v) => options.excluded?.includes(v))
      ) &&
      (options.balanced ?? []).every((node) =>
        last!.nodes.some((n) => n.nodeId === node && n.replicas > 0)
      ) && (options.extra?.(last) ?? true);
  }, { timeoutMs: options.timeoutMs, what: "a settled cluster" }).catch((error) => {
    throw new Error(`${error}; last state: ${JSON.stringify(last)}`);
  });
  return last!;
}

export async function withPlacement(
  options: { nodes: number; shards: number; placementFlags?: string[] },
  body: (cluster: KvNodeCluster, placement: PlacementProcess, client: Client) => Promise<void>,
): Promise<void> {
  const cluster = await KvNodeCluster.start({ nodes: options.nodes, shards: options.shards });
  let placement: PlacementProcess | undefined;
  let client: Client | undefined;
  try {
    placement = await PlacementProcess.start(cluster, { flags: options.placementFlags });
    client = await Client.open(cluster);
    await body(cluster, placement, client);
  } catch (error) {
    if (placement !== undefined) {
      console.error(`--- placement printed:\n${placement.process.output}`);
    }
    throw error;
  } finally {
    await client?.close();
    await placement?.close();
    await cluster.close();
  }
}

/**
 * Writes unique keys one after another through the router until stopped, remembering every
 * acknowledged write, then checks that each one reads back.
 */
export class Writer {
  readonly #client: Client;
  readonly #prefix: string;
  #stop = false;
  #acknowledged = 0;
  #done: Promise<void>;

  constructor(client: Client, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
    this.#done = this.#run();
  }

  get acknowledged(): number {
    return this.#acknowledged;
  }

  async #run(): Promise<void> {
    while (!this.#stop) {
      await this.#client.put(`${this.#prefix}-${this.#acknowledged}`, `v${this.#acknowledged}`);
      this.#acknowledged++;
    }
  }

  /** Stops writing, then reads back every acknowledged write. */
  async stopAndVerify(): Promise<number> {
    this.#stop = true;
    await this.#done;
    for (let i = 0; i < this.#acknowledged; i++) {
      assert.equal(
        await this.#client.get(`${this.#prefix}-${i}`),
        `v${i}`,
        `acknowledged write "${this.#prefix}-${i}" is lost`,
      );
    }
    return this.#acknowledged;
  }
}
