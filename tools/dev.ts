/**
 * `deno task dev`: the local dev cluster. It runs the real ZooKeeper (data in `<data_dir>/zk`),
 * three kvnodes on `kvnode.port`, `+1`, `+2` (7901–7903; data in `<data_dir>/kvnode-<port>`), the
 * placement service (admin gRPC on 7800, HTTP on 7880) and a gateway on `rpc_server.port` (7700).
 * On the first start placement creates `sharding.num_shards` shards, each replicated on
 * `sharding.replica_count` kvnodes, and publishes the shard map in ZooKeeper; from then on it keeps
 * the map current and the cluster balanced. Everything is kept across restarts; Ctrl-C stops every
 * process it started.
 *
 * Flags: `--config FILE` (default `default_config.toml`) and any `--section.key=value` override.
 *
 * @module
 */
import { type Config, loadConfigFromArgs, splitConfigArgs } from "@tinykv/config";
import { EXIT_WITH_PARENT_ENV } from "@tinykv/lifecycle";
import { NodeAdminService, type NodeStatusResponse } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, unaryCaller } from "@tinykv/rpc";
import { startZooKeeper } from "@tinykv/zk/server";

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

interface Child {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  readonly exited: Promise<Deno.CommandStatus>;
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
      await startService(children, {
        name: `placement :${config.placement.admin_port}`,
        script: "../services/placement/main.ts",
        permissions: SERVICE_PERMISSIONS,
        args: childArgs,
        ready: /placement serving on/,
      });
      await startService(children, {
        name: `gateway :${config.rpc_server.port}`,
        script: "../services/gateway/main.ts",
        permissions: SERVICE_PERMISSIONS,
        args: childArgs,
        ready: /gateway serving on/,
      });
      await printStatus(config, flags.nodes);
      say("press Ctrl-C to stop (data is kept)");
      const reason = await Promise.race([
        stopped.promise,
        zk.exited.then(() => "ZooKeeper exited"),
        ...children.map((c) => c.exited.then((s) => `${c.name} exited with code ${s.code}`)),
      ]);
      say(`stopping (${reason})`);
      if (reason !== "SIGINT" && reason !== "SIGTERM") code = 1;
    } else {
      say(`stopping (${outcome})`);
      if (outcome !== "SIGINT" && outcome !== "SIGTERM") code = 1;
    }
  } catch (error) {
    console.error(`dev: ${error instanceof Error ? error.message : String(error)}`);
    for (const child of children) console.error(`--- ${child.name}:\n${child.output.slice(-2000)}`);
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
  readonly name: string;
  readonly script: string;
  readonly permissions: readonly string[];
  readonly args: readonly string[];
  readonly ready: RegExp;
}

/** Starts a service and waits until it says it serves. */
async function startService(children: Child[], service: ServiceSpec): Promise<void> {
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...service.permissions,
      new URL(service.script, import.meta.url).pathname,
      ...service.args,
      "--log.stderr=false",
    ],
    // The child exits when this pipe closes, even if the dev cluster itself is killed.
    env: { [EXIT_WITH_PARENT_ENV]: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const child: Child = { name: service.name, process, exited: process.status, output: "" };
  children.push(child);
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) child.output += decoder.decode(chunk, { stream: true });
  };
  pump(process.stdout);
  pump(process.stderr);
  await waitForOutput(child, service.ready, START_TIMEOUT_MS);
  say(child.output.trim().split("\n").find((l) => /serving on/.test(l)) ?? `${child.name} serves`);
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
    return startService(children, {
      name: `kvnode :${port}`,
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
    if (exited) throw new Error(`${child.name} exited while starting:\n${child.output}`);
    if (Date.now() > deadline) {
      throw new Error(`${child.name} did not start within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function adminClients(
  config: Config,
  count: number,
): Array<{ address: string; admin: GrpcClient<typeof NodeAdminService> }> {
  return Array.from({ length: count }, (_, i) => {
    const address = `${config.kvnode.host}:${kvnodePort(config, i)}`;
    const admin = createGrpcClient(NodeAdminService, address, {
      maxMessageBytes: config.rpc_server.max_message_bytes,
    });
    return { address, admin };
  });
}

async function statusOf(admin: GrpcClient<typeof NodeAdminService>): Promise<NodeStatusResponse> {
  const result = await unaryCaller(admin, "Status")({ withDataHash: false }, { deadlineMs: 5000 });
  if (result.kind !== "ok") throw new Error(`Cannot read a kvnode's status: ${result.message}`);
  return result.response;
}

/** Waits (bounded) for every shard to have a leader and prints a table of the cluster. */
async function printStatus(config: Config, count: number): Promise<void> {
  const nodes = adminClients(config, count);
  try {
    const deadline = Date.now() + 60_000;
    let statuses: NodeStatusResponse[] = [];
    let leaders = new Map<number, string>();
    while (Date.now() < deadline) {
      statuses = await Promise.all(nodes.map((n) => statusOf(n.admin)));
      leaders = new Map();
      for (const status of statuses) {
        for (const r of status.replicas) {
          if (r.role === LEADER_ROLE) leaders.set(r.shardId, status.nodeId);
        }
      }
      if (leaders.size >= config.sharding.num_shards) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    console.log("");
    console.log("  node        address          replicas  leads");
    for (const [i, status] of statuses.entries()) {
      const leads = [...leaders.values()].filter((n) => n === status.nodeId).length;
      console.log(
        `  ${status.nodeId.padEnd(10)}  ${nodes[i].address.padEnd(15)}  ${
          String(status.replicas.length).padStart(8)
        }  ${String(leads).padStart(5)}`,
      );
    }
    console.log("");
    say(
      `cluster serves: ZooKeeper ${config.zookeeper.host}:${config.zookeeper.port}, ` +
        `${statuses.length} kvnodes, ${leaders.size}/${config.sharding.num_shards} shards with a leader`,
    );
    say(
      `clients talk to the gateway at ${config.rpc_server.host}:${config.rpc_server.port} ` +
        "(gRPC tinykv.v1.KV); placement's admin API is on " +
        `${config.placement.host}:${config.placement.admin_port}, its status page on ` +
        `http://${config.placement.host}:${config.placement.http_port}/`,
    );
  } finally {
    for (const node of nodes) node.admin.close();
  }
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
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
