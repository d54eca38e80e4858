/**
 * `deno task dev`: the local dev cluster. It runs the real ZooKeeper (data in `<data_dir>/zk`),
 * three kvnodes on `kvnode.port`, `+1`, `+2` (7901–7903; data in `<data_dir>/kvnode-<port>`), the
 * placement service (admin gRPC on 7800, HTTP on 7880) and a gateway on `rpc_server.port` (7700).
 * On the first start placement creates `sharding.num_shards` shards, each replicated on
 * `sharding.replica_count` kvnodes, and publishes the shard map in ZooKeeper; from then on it keeps
 * the map current and the cluster balanced. Everything is kept across restarts.
 *
 * Once every shard has a leader it prints a table of the processes (address, pid, each kvnode's
 * replicas and leaderships) and the `deno task tinykv` commands to try. Each process logs under
 * `log.dir` (`./data/logs`): the services' own logs (`kvnode-7901-YYYY-MM-DD.log`, …),
 * `zookeeper.log`, and whatever a service prints on stdout or stderr (e.g. a crash trace) in
 * `<name>.out` (`kvnode-7901.out`, `placement-7800.out`, `gateway-7700.out`).
 *
 * From then on the cluster survives its members: when a kvnode, placement or the gateway exits,
 * for whatever reason, dev says which one, its pid and exit code or signal (and, unless it exited
 * cleanly, the last lines of its `.out` file), keeps every other process running, and restarts it
 * after 2 s with the same command line, port and data dir, appending to the same `.out` file. A
 * process that keeps exiting soon after it starts waits twice as long each time, up to 30 s.
 * Only Ctrl-C (SIGINT), SIGTERM or ZooKeeper exiting stops the whole cluster (ZooKeeper exiting
 * makes dev exit with 1); Ctrl-C stops every process it started, restarted ones included, and
 * cancels pending restarts. Before the table is printed, a process that exits stops dev with what
 * it printed, so one that can never start (e.g. its port is taken) is not restarted forever.
 *
 * Flags: `--fresh` (wipe ZooKeeper's, the kvnodes' and the logs' directories first), `--nodes N`
 * (run N kvnodes, default 3), `--no-restart` (a process that exits stays down; the rest keeps
 * running), `--secure` (see below), `--config FILE` (default `default_config.toml`) and any
 * `--section.key=value` override.
 *
 * `--secure` runs a cluster of its own under `<data_dir>/secure` (ZooKeeper, kvnodes, logs) with
 * TLS and credentials on every port and a ZooKeeper credential: on its first start it makes a CA,
 * a server certificate, the cluster's keys, a token per process (kvnodes `n1`, `n2`, …;
 * `placement`, `gateway`) and for the operator (`admin.token`, `client.token`), and
 * `zookeeper.digest`, in `<data_dir>/secure/pki` (tools/credentials.ts), and it prints its "try
 * it" commands with `--ca` and `--token-file`.
 *
 * @module
 */
import { type Config, loadConfigFromArgs, splitConfigArgs } from "@tinykv/config";
import { EXIT_WITH_PARENT_ENV, serviceDenoFlags } from "@tinykv/lifecycle";
import { NodeAdminService, type NodeStatusResponse } from "@tinykv/proto/tinykv/v1";
import {
  GATEWAY_METRICS_PORT_OFFSET,
  KVNODE_METRICS_PORT_OFFSET,
  metricsPort,
} from "@tinykv/metrics";
import { type ClientSecurity, createGrpcClient, type GrpcClient, unaryCaller } from "@tinykv/rpc";
import { credentialFiles, ensureTokenFile, initCredentials } from "./credentials.ts";
import { servicePermissions } from "./service_permissions.ts";
import { startZooKeeper, type ZooKeeperServer } from "@tinykv/zk/server";
import { PLACEMENT_DEFAULT } from "./tinykv/admin.ts";

/** kvnodes the dev cluster runs unless `--nodes` says otherwise. */
const KVNODES_DEFAULT = 3;
const KVNODES_MAX = 9;
/** Where TinyKV's code and npm packages are: every service reads them. */
const CODE_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The `--config` file the services read, when one is named. */
let configFile: string | undefined;

/**
 * The permissions of `service` (tools/service_permissions.ts), with its own token file when the
 * cluster is `--secure`.
 */
function permissionsOf(
  service: "kvnode" | "placement" | "gateway",
  config: Config,
  tokenName: string,
  kvnodePort?: number,
): string[] {
  const token_file = secure === undefined ? "" : `${secure.pki}/${tokenName}.token`;
  return servicePermissions(service, { ...config, security: { ...config.security, token_file } }, {
    code: CODE_DIR,
    configFile,
    kvnodePort,
  });
}
const START_TIMEOUT_MS = 60_000;
const LEADER_ROLE = 4;
/** The gateway `tinykv` talks to without `--endpoint` (`ENDPOINT_DEFAULT` in tools/tinykv.ts). */
const CLI_ENDPOINT_DEFAULT = "127.0.0.1:7700";
/** How much of a child's output is kept in memory for error messages; all of it goes to a file. */
const OUTPUT_TAIL_CHARS_MAX = 64 * 1024;
/** How much of a child's output an error message quotes. */
const OUTPUT_QUOTE_CHARS_MAX = 2000;

/**
 * How long the dev cluster waits before restarting a process that exited. Each exit that follows
 * a short run doubles the wait, up to {@linkcode RESTART_DELAY_MS_MAX}, so that a process that
 * keeps crashing does not spin.
 */
const RESTART_DELAY_MS_MIN = 2_000;
/** The longest wait before a restart. */
const RESTART_DELAY_MS_MAX = 30_000;
/** A process that ran at least this long waits {@linkcode RESTART_DELAY_MS_MIN} again. */
const RESTART_STABLE_MS = 60_000;
/** How many of its last lines are quoted when a process exits abnormally. */
const EXIT_QUOTE_LINES_MAX = 20;
/** Bound on how long stopping waits for a process after SIGTERM before it sends SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;

/** One run of a service process; a restart is a new run of the same {@linkcode Member}. */
interface Child {
  readonly process: Deno.ChildProcess;
  readonly pid: number;
  /** `Date.now()` when it was spawned. */
  readonly startedAtMs: number;
  readonly exited: Promise<Deno.CommandStatus>;
  /** Set once it has exited. */
  status: Deno.CommandStatus | undefined;
  /** Resolves once its output first matches its service's `ready` pattern. */
  readonly ready: Promise<void>;
  /** Resolves once its stdout and stderr have ended and the output file is closed. */
  readonly outputDone: Promise<void>;
  /** The end of what this run printed, at most {@linkcode OUTPUT_TAIL_CHARS_MAX} characters. */
  output: string;
}

/** A service process the dev cluster keeps running, across its runs. */
interface Member {
  readonly spec: ServiceSpec;
  /** For messages: `kvnode :7901`. */
  readonly name: string;
  /** The address it serves on, `host:port`. */
  readonly address: string;
  /** Where everything it prints on stdout and stderr is appended: `<log.dir>/<name>.out`. */
  readonly outputFile: string;
  /** Its latest run (kept after it exited, for its output); undefined before the first spawn. */
  child: Child | undefined;
  /** The pending restart, if any. */
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  /** The wait before its next restart. */
  restartDelayMs: number;
}

/** The dev cluster's own flags (besides `--config` and `--section.key=value`). */
interface DevFlags {
  /** Wipe the cluster's data (ZooKeeper, kvnodes, logs) before starting. */
  readonly fresh: boolean;
  /** How many kvnodes to run, on `kvnode.port` and the ports after it. */
  readonly nodes: number;
  /** Restart a kvnode, placement or the gateway that exits (false with `--no-restart`). */
  readonly restart: boolean;
  /** TLS and credentials everywhere, in a cluster of its own (`--secure`). */
  readonly secure: boolean;
}

/** The credentials of a `--secure` dev cluster. */
interface SecureDev {
  /** Where they are: `<data_dir>/secure/pki`. */
  readonly pki: string;
  /** How dev itself and the printed commands connect: TLS and the admin's token. */
  readonly client: ClientSecurity;
}

/** Set once a `--secure` cluster's credentials are ready; undefined for a plain dev cluster. */
let secure: SecureDev | undefined;

/** Parses `--fresh`, `--nodes N` and `--no-restart`; returns a message for anything else. */
function parseDevFlags(rest: readonly string[]): DevFlags | string {
  let fresh = false;
  let nodes = KVNODES_DEFAULT;
  let restart = true;
  let secureFlag = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === "--fresh") fresh = true;
    else if (arg === "--secure") secureFlag = true;
    else if (arg === "--no-restart") restart = false;
    else if (arg === "--nodes" || arg.startsWith("--nodes=")) {
      const text = arg === "--nodes" ? rest[++i] : arg.slice("--nodes=".length);
      const value = Number(text);
      if (!Number.isInteger(value) || value < 1 || value > KVNODES_MAX) {
        return `Flag "--nodes" is ${JSON.stringify(text ?? "")}: expected 1 to ${KVNODES_MAX}`;
      }
      nodes = value;
    } else {
      return `Unknown argument "${arg}": expected --fresh, --nodes N, --no-restart, --secure, ` +
        "--config FILE or --section.key=value";
    }
  }
  return { fresh, nodes, restart, secure: secureFlag };
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

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The checked command line: the config, dev's own flags and the part the services get. */
interface DevCommandLine {
  readonly config: Config;
  readonly flags: DevFlags;
  /** `--config` and the `--section.key=value` overrides, passed on to every service. */
  readonly childArgs: readonly string[];
}

/** Loads the config and checks dev's flags; returns a message for bad input. */
function parseCommandLine(args: readonly string[]): DevCommandLine | string {
  const loaded = loadConfigFromArgs(args, { defaultPath: "default_config.toml" });
  if (loaded.kind === "error") return loaded.message;
  const flags = parseDevFlags(loaded.rest);
  if (typeof flags === "string") return flags;
  const { config } = loaded;
  if (flags.nodes < config.sharding.replica_count) {
    return `Flag "--nodes" is ${flags.nodes}: it must be at least sharding.replica_count ` +
      `(${config.sharding.replica_count})`;
  }
  if (config.zookeeper.servers !== "") {
    return `Key "zookeeper.servers" is "${config.zookeeper.servers}": the dev cluster runs its ` +
      'own ZooKeeper on zookeeper.host and zookeeper.port, so it must be "" here (an ensemble ' +
      "is for a deployment: docs/deploy.md)";
  }
  // The children get the config part of the command line only.
  const split = splitConfigArgs(args);
  configFile = split.path;
  const childArgs = [
    ...(split.path === undefined ? [] : [`--config=${split.path}`]),
    ...split.overrides.map(([key, value]) => `--${key}=${value}`),
  ];
  if (!flags.secure) return { config, flags, childArgs };
  // A secure cluster of its own: its data, logs and credentials under <data_dir>/secure.
  const dir = `${config.storage.data_dir}/secure`;
  const pki = `${dir}/pki`;
  const files = credentialFiles(pki);
  const securedConfig: Config = {
    ...config,
    storage: { ...config.storage, data_dir: dir },
    log: { ...config.log, dir: `${dir}/logs` },
    zookeeper: { ...config.zookeeper, digest_file: `${pki}/zookeeper.digest` },
    security: {
      ...config.security,
      ca_file: files.ca,
      cert_file: files.cert,
      key_file: files.key,
      verify_key_file: files.verify,
    },
  };
  return {
    config: securedConfig,
    flags,
    childArgs: [
      ...childArgs,
      `--storage.data_dir=${dir}`,
      `--log.dir=${dir}/logs`,
      `--security.ca_file=${files.ca}`,
      `--security.cert_file=${files.cert}`,
      `--security.key_file=${files.key}`,
      `--security.verify_key_file=${files.verify}`,
      `--zookeeper.digest_file=${pki}/zookeeper.digest`,
    ],
  };
}

async function main(args: string[]): Promise<number> {
  const commandLine = parseCommandLine(args);
  if (typeof commandLine === "string") {
    console.error(`dev: ${commandLine}`);
    return 2;
  }
  const { config, flags } = commandLine;
  if (flags.fresh) await wipe(config, flags.nodes);
  if (flags.secure) {
    try {
      secure = await prepareSecure(config, flags.nodes);
    } catch (error) {
      console.error(`dev: Cannot make the --secure cluster's credentials: ${errorMessage(error)}`);
      return 1;
    }
  }
  const zkDir = `${config.storage.data_dir}/zk`;
  await Deno.mkdir(zkDir, { recursive: true });
  await Deno.mkdir(config.log.dir, { recursive: true });

  say(`starting ZooKeeper on ${config.zookeeper.host}:${config.zookeeper.port} (data in ${zkDir})`);
  let zk: ZooKeeperServer;
  try {
    zk = await startZooKeeper({
      dataDir: zkDir,
      host: config.zookeeper.host,
      port: config.zookeeper.port,
      logFile: `${config.log.dir}/zookeeper.log`,
    });
  } catch (error) {
    console.error(`dev: ${errorMessage(error)}`);
    return 1;
  }
  say(`ZooKeeper serves on ${zk.connectString} (pid ${zk.pid})`);
  const code = await runCluster(commandLine, zk);
  say(`stopped; data kept in ${config.storage.data_dir}`);
  return code;
}

/**
 * Starts the services, then keeps them running (see {@linkcode Supervisor}) until SIGINT, SIGTERM
 * or ZooKeeper's exit; stops every process, ZooKeeper last, and returns dev's exit code: 0 after
 * a signal, 1 when the start failed or ZooKeeper exited.
 */
async function runCluster(
  { config, flags, childArgs }: DevCommandLine,
  zk: ZooKeeperServer,
): Promise<number> {
  const supervisor = new Supervisor(config.log.dir, { restart: flags.restart });
  const stopped = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => {
    // Children that exit from now on (a terminal's Ctrl-C reaches them too) are not restarted.
    supervisor.stopRestarts();
    stopped.resolve(name);
  };
  const signals: Array<[Deno.Signal, () => void]> = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ];
  for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
  const zkExited = zk.exited.then((exit) => {
    supervisor.stopRestarts();
    return `ZooKeeper exited with code ${exit.code} (its log: ${zk.logFile})`;
  });
  try {
    const startup = startCluster(config, supervisor, { zk, args: childArgs, nodes: flags.nodes });
    // When something else ends the start, what is still starting fails or is never spawned.
    startup.catch(() => {});
    let reason = await Promise.race([
      startup.then(() => "started"),
      stopped.promise,
      zkExited,
      supervisor.startupFailure,
    ]);
    if (reason === "started") {
      say(restartPolicy(flags));
      say("press Ctrl-C to stop (data is kept)");
      reason = await Promise.race([stopped.promise, zkExited]);
    }
    if (reason === "SIGINT" || reason === "SIGTERM") {
      say(`stopping (${reason})`);
      return 0;
    }
    say(`stopping every process: ${reason}`);
    return 1;
  } catch (error) {
    console.error(`dev: ${errorMessage(error)}`);
    for (const member of supervisor.members) {
      console.error(
        `--- ${member.name} (all of it in ${member.outputFile}):\n` +
          (member.child?.output ?? "").slice(-OUTPUT_QUOTE_CHARS_MAX),
      );
    }
    return 1;
  } finally {
    await supervisor.stop();
    await zk.stop();
    for (const [signal, handler] of signals) Deno.removeSignalListener(signal, handler);
  }
}

/**
 * Makes what a `--secure` cluster lacks of its credentials (kept across restarts): the CA and
 * server certificate for the configured hosts, the keys, and a token per process and for the
 * operator.
 */
async function prepareSecure(config: Config, nodes: number): Promise<SecureDev> {
  const pki = `${config.storage.data_dir}/pki`;
  const hosts = [
    ...new Set([config.kvnode.host, config.placement.host, config.rpc_server.host, "localhost"]),
  ];
  const made = await initCredentials(pki, { hosts });
  if (made.length > 0) say(`--secure: made a CA, a server certificate and the keys in ${pki}`);
  const digest = config.zookeeper.digest_file;
  try {
    await Deno.stat(digest);
  } catch {
    const password = crypto.getRandomValues(new Uint8Array(18));
    const text = btoa(String.fromCharCode(...password)).replace(/[+/=]/g, "x");
    await Deno.writeTextFile(digest, `tinykv:${text}\n`, { mode: 0o600 });
  }
  const cluster = config.zookeeper.cluster;
  for (let i = 0; i < nodes; i++) {
    await ensureTokenFile(pki, `n${i + 1}`, { cluster, role: "kvnode", sub: `n${i + 1}` });
  }
  await ensureTokenFile(pki, "placement", { cluster, role: "placement", sub: "placement" });
  await ensureTokenFile(pki, "gateway", { cluster, role: "gateway", sub: "gateway" });
  await ensureTokenFile(pki, "client", { cluster, role: "client", sub: "dev-client" });
  const admin = await ensureTokenFile(pki, "admin", { cluster, role: "admin", sub: "dev-admin" });
  const files = credentialFiles(pki);
  return {
    pki,
    client: {
      tls: { ca: await Deno.readTextFile(files.ca), serverName: config.security.server_name },
      token: (await Deno.readTextFile(admin)).trim(),
    },
  };
}

/** The `--security.token_file` of a `--secure` cluster's process `name` (none otherwise). */
function tokenArgs(name: string): string[] {
  return secure === undefined ? [] : [`--security.token_file=${secure.pki}/${name}.token`];
}

/** What happens when a service process exits, for the line printed once the cluster serves. */
function restartPolicy(flags: DevFlags): string {
  return flags.restart
    ? "a kvnode, placement or the gateway that exits is restarted after " +
      `${RESTART_DELAY_MS_MIN / 1000} s (longer if it keeps exiting); the rest keeps running`
    : "--no-restart: a kvnode, placement or the gateway that exits stays down; " +
      "the rest keeps running";
}

/**
 * Starts the kvnodes (in parallel), placement and the gateway, waits (bounded) for every shard to
 * have a leader, prints the table of processes, and from then on has the supervisor restart a
 * process that exits. Until then, any process that exits ends the start.
 */
async function startCluster(
  config: Config,
  supervisor: Supervisor,
  { zk, args, nodes }: { zk: ZooKeeperServer; args: readonly string[]; nodes: number },
): Promise<void> {
  await Promise.all(
    Array.from({ length: nodes }, (_, i) => supervisor.start(kvnodeSpec(config, args, i))),
  );
  await supervisor.start({
    service: "placement",
    port: config.placement.admin_port,
    host: config.placement.host,
    script: "../services/placement/main.ts",
    permissions: permissionsOf("placement", config, "placement"),
    args: [...args, ...tokenArgs("placement")],
    ready: /placement serving on/,
  });
  await supervisor.start({
    service: "gateway",
    port: config.rpc_server.port,
    host: config.rpc_server.host,
    script: "../services/gateway/main.ts",
    permissions: permissionsOf("gateway", config, "gateway"),
    args: [...args, ...tokenArgs("gateway")],
    ready: /gateway serving on/,
  });
  const kvnodes = supervisor.members.filter((m) => m.spec.service === "kvnode")
    .sort((a, b) => a.spec.port - b.spec.port);
  const view = await waitForLeaders(config, kvnodes);
  if (supervisor.stopping) return;
  printStatus(config, { zk, members: supervisor.members, kvnodes, view });
  supervisor.supervise();
}

function kvnodePort(config: Config, index: number): number {
  return config.kvnode.port + index;
}

function kvnodeSpec(config: Config, args: readonly string[], index: number): ServiceSpec {
  const port = kvnodePort(config, index);
  return {
    service: "kvnode",
    host: config.kvnode.host,
    port,
    script: "../services/kvnode/main.ts",
    permissions: permissionsOf("kvnode", config, `n${index + 1}`, port),
    args: [
      ...args,
      `--kvnode.port=${port}`,
      // A port named for the first kvnode: the others take the ports after it.
      ...(config.kvnode.http_port === 0
        ? []
        : [`--kvnode.http_port=${config.kvnode.http_port + index}`]),
      ...tokenArgs(`n${index + 1}`),
    ],
    ready: /serving on/,
  };
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

/**
 * Starts the dev cluster's service processes and keeps them running.
 *
 * Until {@linkcode Supervisor.supervise} is called (the cluster has started), a process that exits
 * fails the start ({@linkcode Supervisor.startupFailure}), so a process that can never start (e.g.
 * its port is taken) stops the dev cluster instead of being restarted forever. From then on an
 * exit is reported and, unless `restart` is false, the process is started again with the same
 * command line after a delay that doubles while it keeps exiting soon after starting. After
 * {@linkcode Supervisor.stopRestarts} (and so after {@linkcode Supervisor.stop}) no process is
 * spawned any more, not even by a restart that was pending.
 */
class Supervisor {
  readonly #logDir: string;
  readonly #restart: boolean;
  readonly #members: Member[] = [];
  readonly #startupFailed = Promise.withResolvers<never>();
  /** The first exit before {@linkcode supervise}. */
  #failure: Error | undefined;
  #supervising = false;
  #stopping = false;

  constructor(logDir: string, options: { restart: boolean }) {
    this.#logDir = logDir;
    this.#restart = options.restart;
    // Whoever waits for the start races this; a failure nobody waits for any more is no error.
    this.#startupFailed.promise.catch(() => {});
  }

  /** Every process started, in start order (kvnodes, placement, gateway). */
  get members(): readonly Member[] {
    return this.#members;
  }

  /** Whether {@linkcode stopRestarts} or {@linkcode stop} was called. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Rejects when a process exits before {@linkcode supervise}, with what it printed. */
  get startupFailure(): Promise<never> {
    return this.#startupFailed.promise;
  }

  /** Starts a service and waits (bounded) until it says it serves. */
  async start(spec: ServiceSpec): Promise<void> {
    const member: Member = {
      spec,
      name: `${spec.service} :${spec.port}`,
      address: `${spec.host}:${spec.port}`,
      outputFile: `${this.#logDir}/${spec.service}-${spec.port}.out`,
      child: undefined,
      restartTimer: undefined,
      restartDelayMs: RESTART_DELAY_MS_MIN,
    };
    this.#members.push(member);
    const child = await this.#spawn(member);
    if (child === undefined) throw new Error(`Cannot start ${member.name}: dev is stopping`);
    const timedOut = Promise.withResolvers<never>();
    const timer = setTimeout(
      () =>
        timedOut.reject(new Error(`${member.name} did not start within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    try {
      await Promise.race([child.ready, this.#startupFailed.promise, timedOut.promise]);
    } finally {
      clearTimeout(timer);
    }
    say(servingLine(member, child));
  }

  /** From now on an exit is reported and handled; throws if a process exited before. */
  supervise(): void {
    if (this.#failure !== undefined) throw this.#failure;
    this.#supervising = true;
  }

  /** Cancels pending restarts; no process is spawned from now on and exits are not reported. */
  stopRestarts(): void {
    this.#stopping = true;
    for (const member of this.#members) {
      clearTimeout(member.restartTimer);
      member.restartTimer = undefined;
    }
  }

  /** Stops every process in reverse start order (gateway, placement, then the kvnodes). */
  async stop(): Promise<void> {
    this.stopRestarts();
    for (const member of [...this.#members].reverse()) {
      if (member.child !== undefined) await stopChild(member.child);
    }
  }

  /** Spawns a run of `member`; undefined when dev is stopping. */
  async #spawn(member: Member): Promise<Child | undefined> {
    const file = await Deno.open(member.outputFile, { append: true, create: true });
    // Checked after the last await, so no process is spawned once stopping has begun.
    if (this.#stopping) {
      file.close();
      return undefined;
    }
    let child: Child;
    try {
      child = spawnChild(member, file);
    } catch (error) {
      file.close();
      throw error;
    }
    member.child = child;
    child.exited
      .then((status) => this.#onExit(member, child, status))
      .catch((error) => say(`Cannot handle the exit of ${member.name}: ${errorMessage(error)}`));
    return child;
  }

  async #onExit(member: Member, child: Child, status: Deno.CommandStatus): Promise<void> {
    child.status = status;
    await child.process.stdin.close().catch(() => {});
    await child.outputDone;
    if (this.#stopping) return;
    if (!this.#supervising) {
      this.#failure ??= new Error(
        `${member.name} exited while starting (${describeExit(status)}; all of its output is ` +
          `in ${member.outputFile}):\n${child.output.slice(-OUTPUT_QUOTE_CHARS_MAX)}`,
      );
      this.#startupFailed.reject(this.#failure);
      return;
    }
    reportExit(member, child, status);
    if (!this.#restart) {
      say(`${member.name} stays down (--no-restart); the other processes keep running`);
      return;
    }
    if (Date.now() - child.startedAtMs >= RESTART_STABLE_MS) {
      member.restartDelayMs = RESTART_DELAY_MS_MIN;
    }
    this.#scheduleRestart(member);
  }

  #scheduleRestart(member: Member): void {
    const delayMs = member.restartDelayMs;
    member.restartDelayMs = Math.min(2 * delayMs, RESTART_DELAY_MS_MAX);
    say(`restarting ${member.name} in ${delayMs / 1000} s`);
    member.restartTimer = setTimeout(() => {
      member.restartTimer = undefined;
      this.#restartNow(member);
    }, delayMs);
  }

  async #restartNow(member: Member): Promise<void> {
    let child: Child | undefined;
    try {
      child = await this.#spawn(member);
    } catch (error) {
      // An environment failure (e.g. the output file cannot be opened): try again later.
      say(`Cannot restart ${member.name}: ${errorMessage(error)}`);
      if (!this.#stopping) this.#scheduleRestart(member);
      return;
    }
    if (child === undefined) return;
    say(`restarted ${member.name} (pid ${child.pid})`);
    const restarted = child;
    restarted.ready.then(() => {
      if (!this.#stopping && restarted.status === undefined) {
        say(`${member.name} serves again: ${servingLine(member, restarted)}`);
      }
    });
  }
}

/** The line in which a run said it serves, for messages. */
function servingLine(member: Member, child: Child): string {
  return child.output.trim().split("\n").find((l) => /serving on/.test(l)) ??
    `${member.name} serves`;
}

/** `exit code 1` or `killed by SIGKILL`. */
function describeExit(status: Deno.CommandStatus): string {
  return status.signal === null ? `exit code ${status.code}` : `killed by ${status.signal}`;
}

/** Says that a supervised process exited and, unless it exited cleanly, what it printed last. */
function reportExit(member: Member, child: Child, status: Deno.CommandStatus): void {
  say(`${member.name} exited (pid ${child.pid}, ${describeExit(status)})`);
  if (status.success) return;
  const text = child.output.slice(-OUTPUT_QUOTE_CHARS_MAX).trimEnd();
  if (text === "") {
    say(`${member.name} printed nothing before it exited (its output file: ${member.outputFile})`);
    return;
  }
  say(`the last lines of ${member.outputFile}:`);
  for (const line of text.split("\n").slice(-EXIT_QUOTE_LINES_MAX)) console.log(`  | ${line}`);
}

/** Spawns one run of `member`, appending everything it prints to `file` (which it closes). */
function spawnChild(member: Member, file: Deno.FsFile): Child {
  const { spec } = member;
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...serviceDenoFlags(),
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
  const ready = Promise.withResolvers<void>();
  let isReady = false;
  const child: Child = {
    process,
    pid: process.pid,
    startedAtMs: Date.now(),
    exited: process.status,
    status: undefined,
    ready: ready.promise,
    outputDone: outputDone.promise,
    output: "",
  };
  const recorder = outputRecorder(member.outputFile, file);
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      recorder.write(chunk);
      child.output += decoder.decode(chunk, { stream: true });
      if (!isReady && spec.ready.test(child.output)) {
        isReady = true;
        ready.resolve();
      }
      if (child.output.length > 2 * OUTPUT_TAIL_CHARS_MAX) {
        child.output = child.output.slice(-OUTPUT_TAIL_CHARS_MAX);
      }
    }
  };
  Promise.all([pump(process.stdout), pump(process.stderr)])
    .catch((error) => say(`Cannot read the output of ${member.name}: ${error}`))
    .finally(() => {
      file.close();
      outputDone.resolve();
    });
  return child;
}

/** Stops one run: SIGTERM, then SIGKILL after {@linkcode STOP_TIMEOUT_MS}; waits for its output. */
async function stopChild(child: Child): Promise<void> {
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
  }, STOP_TIMEOUT_MS);
  await child.exited;
  clearTimeout(timer);
  await child.process.stdin.close().catch(() => {});
  await child.outputDone;
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
        say(`Cannot write "${path}": ${errorMessage(error)}`);
      }
    },
  };
}

function adminClient(config: Config, address: string): GrpcClient<typeof NodeAdminService> {
  return createGrpcClient(NodeAdminService, address, {
    maxMessageBytes: config.rpc_server.max_message_bytes,
    ...secure?.client,
  });
}

async function statusOf(admin: GrpcClient<typeof NodeAdminService>): Promise<NodeStatusResponse> {
  const result = await unaryCaller(admin, "Status")(
    { withDataHash: false, resetTurnStats: false, sinceVersion: 0, sinceStartedAtMs: 0 },
    { deadlineMs: 5000 },
  );
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
async function waitForLeaders(config: Config, kvnodes: readonly Member[]): Promise<ClusterView> {
  const admins = kvnodes.map((member) => adminClient(config, member.address));
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

/** The processes of the running cluster and what its kvnodes report. */
interface Cluster {
  readonly zk: ZooKeeperServer;
  readonly members: readonly Member[];
  /** The kvnodes, in the order of `view.statuses`. */
  readonly kvnodes: readonly Member[];
  readonly view: ClusterView;
}

/** Prints a table of the processes, where the logs are and the `tinykv` commands to try. */
function printStatus(config: Config, { zk, members, kvnodes, view }: Cluster): void {
  const { statuses, leaders } = view;
  const scheme = secure === undefined ? "http" : "https";
  const statusPage = `${scheme}://${config.placement.host}:${config.placement.http_port}/`;
  const rows: Array<[string, string, number, string]> = [
    ["ZooKeeper", zk.connectString, zk.pid, `data in ${zk.dataDir}`],
  ];
  for (const service of ["placement", "gateway"]) {
    const member = members.find((m) => m.spec.service === service);
    if (member?.child === undefined) continue;
    const detail = service === "placement"
      ? `dashboard ${statusPage}`
      : "client API (gRPC tinykv.v1.KV)";
    rows.push([service, member.address, member.child.pid, detail]);
  }
  for (const [i, status] of statuses.entries()) {
    const leads = [...leaders.values()].filter((n) => n === status.nodeId).length;
    const detail = `node ${status.nodeId}: ${status.replicas.length} replicas, leads ${leads}`;
    rows.push(["kvnode", kvnodes[i].address, kvnodes[i].child?.pid ?? 0, detail]);
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
  console.log(`  open ${statusPage} (the live dashboard)`);
  const gatewayMetrics = metricsPort(
    config.gateway.http_port,
    config.rpc_server.port,
    GATEWAY_METRICS_PORT_OFFSET,
  );
  const kvnodeMetrics = kvnodes.map((_, i) => kvnodeMetricsPort(config, i)?.port);
  const host = config.rpc_server.host;
  const cacert = secure === undefined ? "" : `--cacert ${secure.pki}/ca.crt `;
  console.log(
    `  curl ${cacert}${scheme}://${host}:${gatewayMetrics?.port}/metrics (Prometheus metrics; ` +
      `also kvnodes :${kvnodeMetrics.join(", :")}, placement ${statusPage}metrics; ` +
      "deploy/prometheus.yml)",
  );
  if (secure !== undefined) {
    console.log(
      `  (--secure: TLS and credentials on every port; the CA, keys and tokens are in ` +
        `${secure.pki}; admin.token may do everything, client.token reads and writes)`,
    );
  }
  console.log("");
}

/** The `/metrics` port of the kvnode at `index` (0, 1, 2): see `kvnodeSpec`. */
function kvnodeMetricsPort(config: Config, index: number) {
  const named = config.kvnode.http_port === 0 ? 0 : config.kvnode.http_port + index;
  return metricsPort(named, config.kvnode.port + index, KVNODE_METRICS_PORT_OFFSET);
}

/** Copy-pasteable `tinykv` commands; they name the gateway and placement when not the CLI's defaults. */
function cliCommands(config: Config): string[] {
  const gateway = `${config.rpc_server.host}:${config.rpc_server.port}`;
  const placement = `${config.placement.host}:${config.placement.admin_port}`;
  const credentials = secure === undefined
    ? ""
    : ` --ca ${secure.pki}/ca.crt --token-file ${secure.pki}/admin.token`;
  const data = (gateway === CLI_ENDPOINT_DEFAULT ? "" : ` --endpoint ${gateway}`) + credentials;
  const admin = (placement === PLACEMENT_DEFAULT ? "" : ` --placement ${placement}`) +
    credentials;
  return [
    `deno task tinykv${data} put hello world`,
    `deno task tinykv${data} get hello`,
    `deno task tinykv${data} scan`,
    `deno task tinykv${admin} status`,
    "deno task tinykv --help",
  ];
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
