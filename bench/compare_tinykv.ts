/**
 * A TinyKV dev cluster for the comparison, started with `tools/dev.ts` (of this checkout or of
 * `--tinykv-root`) on the comparison's own ports and temp data dir, with `--fresh`: the real
 * ZooKeeper, three kvnodes, placement and one gateway. It follows what dev prints (the table of
 * processes with their pids, restarts, exits) so it always knows each process's pid, asks the
 * kvnodes (`NodeAdmin.Status`) and placement (`ClusterState`) how the cluster is doing, and kills
 * kvnodes with SIGKILL for the failover trials (dev restarts them after about 2 s).
 *
 * A process that exits without having been killed here is recorded in
 * {@linkcode TinyKvCluster.unexpectedExits} with the last lines dev quoted from its output.
 *
 * @module
 */
import {
  NodeAdminService,
  type NodeStatusResponse,
  PlacementService,
} from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, unaryCaller } from "@tinykv/rpc";
import { MESSAGE_BYTES_MAX } from "./compare_clients.ts";
import { type LogSummary, parseDevLine, processName, summarizeLog } from "./compare_dev_output.ts";
import {
  killPid,
  type ProcessRegistry,
  readWithCat,
  sleep,
  stopProcess,
  type TrackedProcess,
} from "./compare_procs.ts";
import type { UnexpectedExit } from "./compare_report.ts";
import { type ClusterView, viewOf } from "./compare_shard_view.ts";

/** The permissions `deno task dev` gives tools/dev.ts. */
const DEV_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-net=127.0.0.1",
  "--allow-env",
];
const KVNODES = 3;
const REPLICA_COUNT = 3;
/** Bound on dev's start (it waits at most 60 s per process and 60 s for leaders itself). */
const START_TIMEOUT_MS = 5 * 60_000;
/** dev stops its processes within 10 s each; past this it gets SIGKILL. */
const DEV_STOP_GRACE_MS = 60_000;
const STATUS_DEADLINE_MS = 5000;
/** Lines of dev's output an error message quotes. */
const TAIL_LINES_MAX = 40;
/** Lines of a process's output dev quotes after an exit that are kept. */
const QUOTED_LINES_MAX = 20;

/** The ports of one cluster: kvnodes on `kvnode`, `kvnode + 1`, `kvnode + 2`. */
export interface TinyKvPorts {
  /** ZooKeeper's client port. */
  readonly zookeeper: number;
  /** The gateway's client API port. */
  readonly gateway: number;
  /** Placement's admin gRPC port. */
  readonly placementAdmin: number;
  /** Placement's HTTP port (status page). */
  readonly placementHttp: number;
  /** The first kvnode's port. */
  readonly kvnode: number;
}

/** How to start a cluster. */
export interface TinyKvOptions {
  /** The checkout whose tools/dev.ts runs. */
  readonly root: string;
  /** A temp dir for its data and logs. */
  readonly dir: string;
  /** `sharding.num_shards` of the new cluster. */
  readonly shards: number;
  /** The ports it listens on. */
  readonly ports: TinyKvPorts;
  /** Where progress and warnings go. */
  readonly say: (line: string) => void;
}

/** A running dev cluster. */
export class TinyKvCluster {
  /** How it was started. */
  readonly options: TinyKvOptions;
  /** The gateway's address, `host:port`. */
  readonly gateway: string;
  /** Processes that exited without being killed here, in order. */
  readonly unexpectedExits: UnexpectedExit[] = [];
  readonly #pids = new Map<string, number>();
  readonly #killed = new Set<number>();
  readonly #serving = Promise.withResolvers<void>();
  #dev: TrackedProcess | undefined;
  #quoting: UnexpectedExit | undefined;
  /** The last lines dev printed, for error messages. */
  readonly #tail: string[] = [];
  #admins: GrpcClient<typeof NodeAdminService>[] = [];
  #placement: GrpcClient<typeof PlacementService> | undefined;
  #stopped = false;

  private constructor(options: TinyKvOptions) {
    this.options = options;
    this.gateway = `127.0.0.1:${options.ports.gateway}`;
  }

  /** Starts a fresh cluster and waits (bounded) until dev says it serves. */
  static async start(registry: ProcessRegistry, options: TinyKvOptions): Promise<TinyKvCluster> {
    const cluster = new TinyKvCluster(options);
    cluster.#spawnDev(registry);
    try {
      await cluster.#waitServing();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    cluster.#connectAdmins();
    return cluster;
  }

  /** The kvnodes' names (`kvnode:<port>`), in port order. */
  get kvnodes(): string[] {
    return Array.from({ length: KVNODES }, (_, i) => processName("kvnode", this.#kvnodePort(i)));
  }

  #kvnodePort(index: number): number {
    return this.options.ports.kvnode + index;
  }

  /** Every server process's pid by name: kvnodes, gateway, placement and ZooKeeper's java. */
  pids(): Record<string, number> {
    return Object.fromEntries(this.#pids);
  }

  #spawnDev(registry: ProcessRegistry): void {
    const { root, dir, shards, ports } = this.options;
    const args = [
      "run",
      ...DEV_PERMISSIONS,
      `${root}/tools/dev.ts`,
      "--fresh",
      `--storage.data_dir=${dir}/data`,
      `--log.dir=${dir}/data/logs`,
      `--zookeeper.port=${ports.zookeeper}`,
      `--rpc_server.port=${ports.gateway}`,
      `--placement.admin_port=${ports.placementAdmin}`,
      `--placement.http_port=${ports.placementHttp}`,
      `--kvnode.port=${ports.kvnode}`,
      `--sharding.num_shards=${shards}`,
    ];
    this.#dev = registry.spawn("dev", {
      command: "deno",
      args,
      cwd: root,
      logFile: `${dir}/dev.out`,
      onLine: (line) => this.#onLine(line),
    }).process;
  }

  #onLine(line: string): void {
    this.#tail.push(line);
    if (this.#tail.length > TAIL_LINES_MAX) this.#tail.shift();
    if (this.#quoting !== undefined && line.startsWith("  | ")) {
      if (this.#quoting.lastLines.length < QUOTED_LINES_MAX) {
        this.#quoting.lastLines.push(line.slice(4));
      }
      return;
    }
    this.#quoting = undefined;
    const event = parseDevLine(line);
    if (event === undefined) return;
    switch (event.kind) {
      case "process":
      case "restarted":
        this.#pids.set(event.name, event.pid);
        return;
      case "serving":
        this.#serving.resolve();
        return;
      case "exited":
        this.#onExit(event);
        return;
      case "servesAgain":
        return;
      default: {
        const never: never = event;
        throw new Error(`Unexpected dev event ${JSON.stringify(never)}`);
      }
    }
  }

  #onExit(event: { name: string; pid: number; how: string }): void {
    if (this.#killed.has(event.pid)) return;
    const exit: UnexpectedExit = { ...event, atMs: Date.now(), lastLines: [] };
    this.unexpectedExits.push(exit);
    this.#quoting = exit;
    this.options.say(`WARNING: ${event.name} exited unexpectedly (pid ${event.pid}, ${event.how})`);
  }

  async #waitServing(): Promise<void> {
    const dev = this.#dev!;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `dev did not serve within ${START_TIMEOUT_MS / 1000} s; it printed:\n` +
                this.#tail.join("\n"),
            ),
          ),
        START_TIMEOUT_MS,
      );
    });
    const exited = dev.exited.then((status) => {
      throw new Error(
        `dev exited with code ${status.code} while starting; it printed:\n${this.#tail.join("\n")}`,
      );
    });
    try {
      await Promise.race([this.#serving.promise, exited, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  #connectAdmins(): void {
    const options = { maxMessageBytes: MESSAGE_BYTES_MAX };
    this.#admins = Array.from(
      { length: KVNODES },
      (_, i) => createGrpcClient(NodeAdminService, `127.0.0.1:${this.#kvnodePort(i)}`, options),
    );
    this.#placement = createGrpcClient(
      PlacementService,
      `127.0.0.1:${this.options.ports.placementAdmin}`,
      options,
    );
  }

  /** Each kvnode's status (in port order); undefined for one that did not answer. */
  async statuses(): Promise<(NodeStatusResponse | undefined)[]> {
    return await Promise.all(this.#admins.map(async (admin) => {
      const result = await unaryCaller(admin, "Status")(
        { withDataHash: false, resetTurnStats: false, sinceVersion: 0, sinceStartedAtMs: 0 },
        { deadlineMs: STATUS_DEADLINE_MS },
      );
      return result.kind === "ok" ? result.response : undefined;
    }));
  }

  /** The statuses and what they say about the cluster. */
  async view(): Promise<{ statuses: (NodeStatusResponse | undefined)[]; view: ClusterView }> {
    const statuses = await this.statuses();
    return {
      statuses,
      view: viewOf(statuses, { shards: this.options.shards, replicaCount: REPLICA_COUNT }),
    };
  }

  /** Moves placement has in flight; undefined when placement does not answer as leader. */
  async placementTasks(): Promise<number | undefined> {
    const result = await unaryCaller(this.#placement!, "ClusterState")({}, {
      deadlineMs: STATUS_DEADLINE_MS,
    });
    if (result.kind !== "ok" || !result.response.isLeader) return undefined;
    return result.response.tasks.length;
  }

  /** Kills a process with SIGKILL by its pid; dev reports the exit and restarts it. */
  async kill(name: string): Promise<number> {
    const pid = this.#pids.get(name);
    if (pid === undefined) throw new Error(`Cannot kill ${name}: its pid is unknown`);
    this.#killed.add(pid);
    if (!(await killPid(pid, "KILL"))) throw new Error(`Cannot kill ${name} (pid ${pid})`);
    return pid;
  }

  /** Waits until dev restarted `name` (a pid other than `oldPid`); false after `timeoutMs`. */
  async waitRestarted(name: string, oldPid: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.#pids.get(name) !== oldPid) return true;
      await sleep(50);
    }
    return false;
  }

  /** The service logs with warnings or errors (call after {@linkcode stop}: logs are flushed). */
  async logSummaries(): Promise<LogSummary[]> {
    const dir = `${this.options.dir}/data/logs`;
    const summaries: LogSummary[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (!entry.isFile || !entry.name.endsWith(".log") || entry.name === "zookeeper.log") {
          continue;
        }
        const summary = summarizeLog(entry.name, await Deno.readTextFile(`${dir}/${entry.name}`));
        if (summary.warnings + summary.errors > 0) summaries.push(summary);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return summaries.sort((a, b) => a.file.localeCompare(b.file));
  }

  /** Stops dev (SIGTERM; it stops its processes and ZooKeeper), then SIGKILL after a bound. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const admin of this.#admins) admin.close();
    this.#placement?.close();
    if (this.#dev !== undefined) await stopProcess(this.#dev, DEV_STOP_GRACE_MS);
    // A child dev could not stop exits when its pipe from dev closes; one still running after
    // that (its command line names this cluster's dir, so it is no other process) gets SIGKILL.
    for (const pid of this.#pids.values()) {
      const commandLine = await readWithCat([`/proc/${pid}/cmdline`]);
      if (commandLine.includes(this.options.dir)) await killPid(pid, "KILL");
    }
  }
}
