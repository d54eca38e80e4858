/**
 * `deno task dev`: the local dev cluster. It runs the real ZooKeeper (data in `<data_dir>/zk`),
 * three kvnodes on `kvnode.port`, `+1`, `+2` (7901–7903; data in `<data_dir>/kvnode-<port>`), the
 * placement service (admin gRPC on 7800, HTTP on 7880) and a gateway on `rpc_server.port` (7700).
 * On the first start placement creates `sharding.num_shards` shards, each replicated on
 * `sharding.replica_count` kvnodes, and publishes the shard map in ZooKeeper; from then on it keeps
 * the map current and the cluster balanced. Everything is kept across restarts; Ctrl-C stops every
 * process it started.
 *
 * Once every shard has a leader it prints a table of the processes (address, pid, each kvnode's
 * replicas and leaderships) and the `deno task tinykv` commands to try. Each process logs under
 * `log.dir` (`./data/logs`): the services' own logs (`kvnode-7901-YYYY-MM-DD.log`, …),
 * `zookeeper.log`, and whatever a service prints on stdout or stderr (e.g. a crash trace) in
 * `<name>.out` (`kvnode-7901.out`, `placement-7800.out`, `gateway-7700.out`).
 *
 * Flags: `--fresh` (wipe ZooKeeper's, the kvnodes' and the logs' directories first), `--nodes N`
 * (run N kvnodes, default 3), `--config FILE` (default `default_config.toml`) and any
 * `--section.key=value` override.
 *
 * @module
 */
import { type Config, loadConfigFromArgs, splitConfigArgs } from "@tinykv/config";
import { EXIT_WITH_PARENT_ENV } from "@tinykv/lifecycle";
import { NodeAdminService, type NodeStatusResponse } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, unaryCaller } from "@tinykv/rpc";
import { startZooKeeper, type ZooKeeperServer } from "@tinykv/zk/server";
import { PLACEMENT_DEFAULT } from "./tinykv/admin.ts";

/** kvnodes the dev cluster runs unless `--nodes` says otherwise. */
const KVNODES_DEFAULT = 3;
const KVNODES_MAX = 9;
const SERVICE_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
];
const KVNODE_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];
const START_TIMEOUT_MS = 60_000;
const LEADER_ROLE = 4;
/** The gateway `tinykv` talks to without `--endpoint` (`ENDPOINT_DEFAULT` in tools/tinykv.ts). */
const CLI_ENDPOINT_DEFAULT = "127.0.0.1:7700";
/** How much of a child's output is kept in memory for error messages; all of it goes to a file. */
const OUTPUT_TAIL_CHARS_MAX = 64 * 1024;
/** How much of a child's output an error message quotes. */
const OUTPUT_QUOTE_CHARS_MAX = 2000;

interface Child {
  /** For messages: `kvnode :7901`. */
  readonly name: string;
  /** What the table calls it: `kvnode`, `placement`, `gateway`. */
  readonly service: string;
  /** The address it serves on, `host:port`. */
  readonly address: string;
  readonly port: number;
  readonly process: Deno.ChildProcess;
  readonly exited: Promise<Deno.CommandStatus>;
  /** Where everything it prints on stdout and stderr is appended: `<log.dir>/<name>.out`. */
  readonly outputFile: string;
  /** Resolves once its stdout and stderr have ended and the output file is closed. */
  readonly outputDone: Promise<void>;
  /** The end of what it printed, at most {@linkcode OUTPUT_TAIL_CHARS_MAX} characters. */
  output: string;
}

/** The dev cluster's own flags (besides `--config` and `--section.key=value`). */
interface DevFlags {
  /** Wipe the cluster's data (ZooKeeper, kvnodes, logs) before starting. */
  readonly fresh: boolean;
  /** How many kvnodes to run, on `kvnode.port` and the ports after it. */
  readonly nodes: number;
}

/** Parses `--fresh` and `--nodes N`; returns a message for anything else. */
function parseDevFlags(rest: readonly string[]): DevFlags | string {
  let fresh = false;
  let nodes = KVNODES_DEFAULT;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === "--fresh") fresh = true;
    else if (arg === "--nodes" || arg.startsWith("--nodes=")) {
      const text = arg === "--nodes" ? rest[++i] : arg.slice("--nodes=".length);
      const value = Number(text);
      if (!Number.isInteger(value) || value < 1 || value > KVNODES_MAX) {
        return `Flag "--nodes" is ${JSON.stringify(text ?? "")}: expected 1 to ${KVNODES_MAX}`;
      }
      nodes = value;
    } else {
      return `Unknown argument "${arg}": expected --fresh, --nodes N, --config FILE or ` +
        "--section.key=value";
    }
  }
  return { fresh, nodes };
}

/** Removes the dev cluster's data: ZooKeeper's, each kvnode's and the logs. */
async function wipe(config: Config, nodes: number): Promise<void> {
  const dirs = [
    `${config.storage.data_dir}/zk`,
    ...Array.from(
      { length: nodes },
      (_, i) => `${config.storage.data_dir}/kvnode-${kvnodePort(config, i)}`,
    ),
    config.log.dir,
  ];
  for (const dir of dirs) {
    try {
      await Deno.remove(dir, { recursive: true });
      say(`--fresh: removed ${dir}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
}

function say(line: string): void {
  console.log(`dev: ${line}`);
}

async function main(args: string[]): Promise<number> {
  const loaded = loadConfigFromArgs(args, { defaultPath: "default_config.toml" });
  if (loaded.kind === "error") {
    console.error(`dev: ${loaded.message}`);
    return 2;
  }
  const flags = parseDevFlags(loaded.rest);
  if (typeof flags === "string") {
    console.error(`dev: ${flags}`);
    return 2;
  }
  const { config } = loaded;
  if (flags.nodes < config.sharding.replica_count) {
    console.error(
      `dev: Flag "--nodes" is ${flags.nodes}: it must be at least sharding.replica_count ` +
        `(${config.sharding.replica_count})`,
    );
    return 2;
  }
  // The children get the config part of the command line only.
  const split = splitConfigArgs(args);
  const childArgs = [
    ...(split.path === undefined ? [] : [`--config=${split.path}`]),
    ...split.overrides.map(([key, value]) => `--${key}=${value}`),
  ];
  if (flags.fresh) await wipe(config, flags.nodes);
  const zkDir = `${config.storage.data_dir}/zk`;
  await Deno.mkdir(zkDir, { recursive: true });
  await Deno.mkdir(config.log.dir, { recursive: true });

  say(`starting ZooKeeper on ${config.zookeeper.host}:${config.zookeeper.port} (data in ${zkDir})`);
  const zk = await startZooKeeper({
    dataDir: zkDir,
    host: config.zookeeper.host,
    port: config.zookeeper.port,
    logFile: `${config.log.dir}/zookeeper.log`,
  });
  say(`ZooKeeper serves on ${zk.connectString} (pid ${zk.pid})`);
  const children: Child[] = [];
  const stopped = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => stopped.resolve(name);
  const signals: Array<[Deno.Signal, () => void]> = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ];
  for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
  let code = 0;
  try {
    const started = startKvNodes(config, childArgs, children, flags.nodes);
    const outcome = await Promise.race([
      started.then(() => "started"),
      stopped.promise,
      zk.exited.then(() => "ZooKeeper exited"),
    ]);
    if (outcome === "started") {
      await startService(config, children, {
        service: "placement",
        port: config.placement.admin_port,
        host: config.placement.host,
        script: "../services/placement/main.ts",
        permissions: SERVICE_PERMISSIONS,
        args: childArgs,
        ready: /placement serving on/,
      });
      await startService(config, children, {
        service: "gateway",
        port: config.rpc_server.port,
        host: config.rpc_server.host,
        script: "../services/gateway/main.ts",
        permissions: SERVICE_PERMISSIONS,
        args: childArgs,
        ready: /gateway serving on/,
      });
      await printStatus(config, { zk, children });
      say("press Ctrl-C to stop (data is kept)");
      const reason = await Promise.race([
        stopped.promise,
        zk.exited.then(() => `ZooKeeper exited (its log: ${zk.logFile})`),
        ...children.map((c) =>
          c.exited.then((s) => `${c.name} exited with code ${s.code} (its output: ${c.outputFile})`)
        ),
      ]);
      say(`stopping (${reason})`);
      if (reason !== "SIGINT" && reason !== "SIGTERM") code = 1;
    } else {
      say(`stopping (${outcome})`);
      if (outcome !== "SIGINT" && outcome !== "SIGTERM") code = 1;
    }
  } catch (error) {
    console.error(`dev: ${error instanceof Error ? error.message : String(error)}`);
    for (const child of children) {
      console.error(
        `--- ${child.name} (all of it in ${child.outputFile}):\n` +
          child.output.slice(-OUTPUT_QUOTE_CHARS_MAX),
      );
    }
    code = 1;
  } finally {
    await stopChildren(children);
    await zk.stop();
    for (const [signal, handler] of signals) Deno.removeSignalListener(signal, handler);
  }
  say(`stopped; data kept in ${config.storage.data_dir}`);
  return code;
}

function kvnodePort(config: Config, index: number): number {
  return config.kvnode.port + index;
}

/** A service to start: its script, permissions and arguments, and what it prints once serving. */
interface ServiceSpec {
  /** `kvnode`, `placement` or `gateway`; with `port` it names the log files (`kvnode-7901`). */
  readonly service: string;
  readonly host: string;
  readonly port: number;
  readonly script: string;
  readonly permissions: readonly string[];
  readonly args: readonly string[];
  readonly ready: RegExp;
}

/** Starts a service and waits until it says it serves. */
async function startService(config: Config, children: Child[], spec: ServiceSpec): Promise<void> {
  const outputFile = `${config.log.dir}/${spec.service}-${spec.port}.out`;
  const file = await Deno.open(outputFile, { append: true, create: true });
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...spec.permissions,
      new URL(spec.script, import.meta.url).pathname,
      ...spec.args,
      "--log.stderr=false",
    ],
    // The child exits when this pipe closes, even if the dev cluster itself is killed.
    env: { [EXIT_WITH_PARENT_ENV]: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const outputDone = Promise.withResolvers<void>();
  const child: Child = {
    name: `${spec.service} :${spec.port}`,
    service: spec.service,
    address: `${spec.host}:${spec.port}`,
    port: spec.port,
    process,
    exited: process.status,
    outputFile,
    outputDone: outputDone.promise,
    output: "",
  };
  const recorder = outputRecorder(outputFile, file);
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      recorder.write(chunk);
      child.output += decoder.decode(chunk, { stream: true });
      if (child.output.length > 2 * OUTPUT_TAIL_CHARS_MAX) {
        child.output = child.output.slice(-OUTPUT_TAIL_CHARS_MAX);
      }
    }
  };
  Promise.all([pump(process.stdout), pump(process.stderr)])
    .catch((error) => say(`Cannot read the output of ${child.name}: ${error}`))
    .finally(() => {
      file.close();
      outputDone.resolve();
    });
  children.push(child);
  await waitForOutput(child, spec.ready, START_TIMEOUT_MS);
  say(child.output.trim().split("\n").find((l) => /serving on/.test(l)) ?? `${child.name} serves`);
}

/**
 * Appends a child's output to its file. A failed write (e.g. a full disk) is an environment
 * failure that must not stop the cluster: it is reported once and the file is no longer written.
 */
function outputRecorder(path: string, file: Deno.FsFile): { write(bytes: Uint8Array): void } {
  let failed = false;
  return {
    write(bytes: Uint8Array): void {
      if (failed) return;
      try {
        // Synchronous, so the chunks of stdout and stderr land whole and in arrival order.
        for (let written = 0; written < bytes.length;) {
          written += file.writeSync(bytes.subarray(written));
        }
      } catch (error) {
        failed = true;
        say(`Cannot write "${path}": ${error instanceof Error ? error.message : String(error)}`);
      }
    },
  };
}

/** Starts the kvnodes (in parallel) and waits until each serves. */
async function startKvNodes(
  config: Config,
  args: string[],
  children: Child[],
  count: number,
): Promise<void> {
  await Promise.all(Array.from({ length: count }, (_, i) => {
    const port = kvnodePort(config, i);
    return startService(config, children, {
      service: "kvnode",
      host: config.kvnode.host,
      port,
      script: "../services/kvnode/main.ts",
      permissions: KVNODE_PERMISSIONS,
      args: [...args, `--kvnode.port=${port}`],
      ready: /serving on/,
    });
  }));
}

async function waitForOutput(child: Child, pattern: RegExp, timeoutMs: number): Promise<void> {
  let exited = false;
  child.exited.then(() => (exited = true));
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(child.output)) {
    if (exited) {
      await child.outputDone;
      throw new Error(
        `${child.name} exited while starting (all of its output is in ${child.outputFile}):\n` +
          child.output.slice(-OUTPUT_QUOTE_CHARS_MAX),
      );
    }
    if (Date.now() > deadline) {
      throw new Error(`${child.name} did not start within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function adminClient(config: Config, address: string): GrpcClient<typeof NodeAdminService> {
  return createGrpcClient(NodeAdminService, address, {
    maxMessageBytes: config.rpc_server.max_message_bytes,
  });
}

async function statusOf(admin: GrpcClient<typeof NodeAdminService>): Promise<NodeStatusResponse> {
  const result = await unaryCaller(admin, "Status")({ withDataHash: false }, { deadlineMs: 5000 });
  if (result.kind !== "ok") throw new Error(`Cannot read a kvnode's status: ${result.message}`);
  return result.response;
}

/** What the kvnodes report once every shard has a leader (or the wait is over). */
interface ClusterView {
  readonly statuses: readonly NodeStatusResponse[];
  /** The node leading each shard that has a leader. */
  readonly leaders: ReadonlyMap<number, string>;
}

/** Polls the kvnodes (bounded, 60 s) until every shard has a leader. */
async function waitForLeaders(config: Config, kvnodes: readonly Child[]): Promise<ClusterView> {
  const admins = kvnodes.map((child) => adminClient(config, child.address));
  try {
    const deadline = Date.now() + 60_000;
    let statuses: NodeStatusResponse[] = [];
    let leaders = new Map<number, string>();
    while (Date.now() < deadline) {
      statuses = await Promise.all(admins.map(statusOf));
      leaders = new Map();
      for (const status of statuses) {
        for (const r of status.replicas) {
          if (r.role === LEADER_ROLE) leaders.set(r.shardId, status.nodeId);
        }
      }
      if (leaders.size >= config.sharding.num_shards) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return { statuses, leaders };
  } finally {
    for (const admin of admins) admin.close();
  }
}

/** The processes of the running cluster. */
interface Cluster {
  readonly zk: ZooKeeperServer;
  readonly children: readonly Child[];
}

/**
 * Waits (bounded) for every shard to have a leader, then prints a table of the processes, where
 * the logs are and the `tinykv` commands to try.
 */
async function printStatus(config: Config, { zk, children }: Cluster): Promise<void> {
  const kvnodes = children.filter((c) => c.service === "kvnode")
    .sort((a, b) => a.port - b.port);
  const { statuses, leaders } = await waitForLeaders(config, kvnodes);
  const statusPage = `http://${config.placement.host}:${config.placement.http_port}/`;
  const rows: Array<[string, string, number, string]> = [
    ["ZooKeeper", zk.connectString, zk.pid, `data in ${zk.dataDir}`],
  ];
  for (const service of ["placement", "gateway"]) {
    const child = children.find((c) => c.service === service);
    if (child === undefined) continue;
    const detail = service === "placement"
      ? `status page ${statusPage}`
      : "client API (gRPC tinykv.v1.KV)";
    rows.push([service, child.address, child.process.pid, detail]);
  }
  for (const [i, status] of statuses.entries()) {
    const leads = [...leaders.values()].filter((n) => n === status.nodeId).length;
    const detail = `node ${status.nodeId}: ${status.replicas.length} replicas, leads ${leads}`;
    rows.push(["kvnode", kvnodes[i].address, kvnodes[i].process.pid, detail]);
  }
  console.log("");
  console.log(`  ${"service".padEnd(10)} ${"address".padEnd(16)} ${"pid".padStart(7)}  details`);
  for (const [service, address, pid, detail] of rows) {
    console.log(
      `  ${service.padEnd(10)} ${address.padEnd(16)} ${String(pid).padStart(7)}  ${detail}`,
    );
  }
  console.log("");
  say(
    `cluster serves: ZooKeeper ${zk.connectString}, ${statuses.length} kvnodes, ` +
      `${leaders.size}/${config.sharding.num_shards} shards with a leader`,
  );
  say(`logs in ${config.log.dir} (one file per process; what a service prints: <name>.out)`);
  console.log("");
  console.log("Try it from another terminal:");
  for (const command of cliCommands(config)) console.log(`  ${command}`);
  console.log(`  open ${statusPage} (placement's status page)`);
  console.log("");
}

/** Copy-pasteable `tinykv` commands; they name the gateway and placement when not the CLI's defaults. */
function cliCommands(config: Config): string[] {
  const gateway = `${config.rpc_server.host}:${config.rpc_server.port}`;
  const placement = `${config.placement.host}:${config.placement.admin_port}`;
  const data = gateway === CLI_ENDPOINT_DEFAULT ? "" : ` --endpoint ${gateway}`;
  const admin = placement === PLACEMENT_DEFAULT ? "" : ` --placement ${placement}`;
  return [
    `deno task tinykv${data} put hello world`,
    `deno task tinykv${data} get hello`,
    `deno task tinykv${data} scan`,
    `deno task tinykv${admin} status`,
    "deno task tinykv --help",
  ];
}

/** Stops the children in reverse start order (gateway, placement, then the kvnodes). */
async function stopChildren(children: Child[]): Promise<void> {
  for (const child of [...children].reverse()) {
    try {
      child.process.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => {
      try {
        child.process.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, 10_000);
    await child.exited;
    clearTimeout(timer);
    await child.process.stdin.close().catch(() => {});
    await child.outputDone;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
