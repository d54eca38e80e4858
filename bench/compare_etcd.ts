/**
 * A 3-member etcd cluster for the comparison: Debian's etcd 3.4 (`/usr/bin/etcd`, installed with
 * apt when missing), three members on 127.0.0.1 with their own temp data dirs and ports, and
 * otherwise etcd's defaults (syncs on, 100 ms heartbeat, 1 s election timeout). The system
 * service is never used. Members can be killed with SIGKILL and restarted on their data, as the
 * failover trials do.
 *
 * @module
 */
import { createGrpcClient, type GrpcClient, unaryCaller } from "@tinykv/rpc";
import { MESSAGE_BYTES_MAX } from "./compare_clients.ts";
import { EtcdMaintenanceService, type EtcdStatusResponse } from "./compare_etcd_api.ts";
import {
  killPid,
  type ProcessRegistry,
  sleep,
  stopProcess,
  type TrackedProcess,
} from "./compare_procs.ts";

/** Where Debian's `etcd-server` puts etcd. */
export const ETCD_BINARY = "/usr/bin/etcd";
/** The Debian packages of etcd 3.4's server and `etcdctl`. */
export const ETCD_PACKAGES: readonly string[] = ["etcd-server", "etcd-client"];
/** How long a start or a restart may take to give a healthy cluster. */
const HEALTHY_TIMEOUT_MS = 60_000;
const STATUS_DEADLINE_MS = 1000;

/** Installs etcd with apt when `/usr/bin/etcd` is missing; returns `etcd --version`'s version. */
export async function ensureEtcd(say: (line: string) => void): Promise<string> {
  if (!(await fileExists(ETCD_BINARY))) {
    say(`${ETCD_BINARY} is missing: installing Debian's ${ETCD_PACKAGES.join(" and ")}`);
    await aptGet(["update"], say);
    await aptGet(["install", "-y", "--no-install-recommends", ...ETCD_PACKAGES], say);
    if (!(await fileExists(ETCD_BINARY))) {
      throw new Error(`Cannot find ${ETCD_BINARY} after installing ${ETCD_PACKAGES.join(", ")}`);
    }
  }
  const output = await new Deno.Command(ETCD_BINARY, { args: ["--version"], stderr: "null" })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  return /etcd Version: (\S+)/.exec(text)?.[1] ?? "unknown";
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function aptGet(args: string[], say: (line: string) => void): Promise<void> {
  say(`running: apt-get ${args.join(" ")}`);
  const child = new Deno.Command("apt-get", {
    args,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  // What apt prints goes to stderr, so that stdout holds only the report (or the JSON).
  await child.stdout.pipeTo(Deno.stderr.writable, { preventClose: true });
  const status = await child.status;
  if (!status.success) {
    throw new Error(
      `Cannot install etcd: "apt-get ${args.join(" ")}" exited with code ${status.code} ` +
        `(run as root, or install ${ETCD_PACKAGES.join(" and ")} yourself)`,
    );
  }
}

/** The ports of the cluster: member i listens for clients on `clientPort + i`, peers on `peerPort + i`. */
export interface EtcdPorts {
  /** The first member's client port. */
  readonly clientPort: number;
  /** The first member's peer port. */
  readonly peerPort: number;
}

/** One member. */
export interface EtcdMember {
  /** `m1`, `m2`, `m3`. */
  readonly name: string;
  /** Where it serves clients, `host:port`. */
  readonly clientAddress: string;
  /** Where it talks to its peers. */
  readonly peerUrl: string;
  /** Its own data dir, kept across a kill and restart. */
  readonly dataDir: string;
  /** Its current process (undefined before the first start). */
  process: TrackedProcess | undefined;
}

/** A running 3-member etcd cluster. */
export class EtcdCluster {
  /** The three members, `m1` to `m3`. */
  readonly members: readonly EtcdMember[];
  readonly #registry: ProcessRegistry;
  readonly #dir: string;
  readonly #token: string;
  readonly #admins: GrpcClient<typeof EtcdMaintenanceService>[];

  private constructor(registry: ProcessRegistry, dir: string, ports: EtcdPorts) {
    this.#registry = registry;
    this.#dir = dir;
    this.#token = `tinykv-compare-${crypto.randomUUID().slice(0, 8)}`;
    this.members = [0, 1, 2].map((i) => ({
      name: `m${i + 1}`,
      clientAddress: `127.0.0.1:${ports.clientPort + i}`,
      peerUrl: `http://127.0.0.1:${ports.peerPort + i}`,
      dataDir: `${dir}/m${i + 1}`,
      process: undefined,
    }));
    this.#admins = this.members.map((m) =>
      createGrpcClient(EtcdMaintenanceService, m.clientAddress, {
        maxMessageBytes: MESSAGE_BYTES_MAX,
      })
    );
  }

  /** Starts three fresh members under `dir` and waits (bounded) until they agree on a leader. */
  static async start(
    registry: ProcessRegistry,
    options: { dir: string; ports: EtcdPorts },
  ): Promise<EtcdCluster> {
    const { dir, ports } = options;
    const cluster = new EtcdCluster(registry, dir, ports);
    for (const member of cluster.members) cluster.#spawn(member);
    await cluster.waitHealthy(HEALTHY_TIMEOUT_MS);
    return cluster;
  }

  /** The client endpoints, `host:port`. */
  get endpoints(): string[] {
    return this.members.map((m) => m.clientAddress);
  }

  /** The members' pids by name (`etcd:m1` …); a member that is down is left out. */
  pids(): Record<string, number> {
    const pids: Record<string, number> = {};
    for (const m of this.members) {
      if (m.process !== undefined && m.process.status === undefined) {
        pids[`etcd:${m.name}`] = m.process.pid;
      }
    }
    return pids;
  }

  #spawn(member: EtcdMember): void {
    const url = (address: string) => `http://${address}`;
    const args = [
      `--name=${member.name}`,
      `--data-dir=${member.dataDir}`,
      `--listen-client-urls=${url(member.clientAddress)}`,
      `--advertise-client-urls=${url(member.clientAddress)}`,
      `--listen-peer-urls=${member.peerUrl}`,
      `--initial-advertise-peer-urls=${member.peerUrl}`,
      `--initial-cluster=${this.members.map((m) => `${m.name}=${m.peerUrl}`).join(",")}`,
      `--initial-cluster-token=${this.#token}`,
      "--initial-cluster-state=new",
    ];
    member.process = this.#registry.spawn(`etcd ${member.name}`, {
      command: ETCD_BINARY,
      args,
      logFile: `${this.#dir}/${member.name}.log`,
    }).process;
  }

  /** Each member's status; undefined for one that did not answer. */
  async statuses(): Promise<(EtcdStatusResponse | undefined)[]> {
    return await Promise.all(this.#admins.map(async (admin) => {
      const result = await unaryCaller(admin, "Status")({}, { deadlineMs: STATUS_DEADLINE_MS });
      return result.kind === "ok" ? result.response : undefined;
    }));
  }

  /** The member every answering member names as leader, if they agree and all three answer. */
  async leader(): Promise<EtcdMember | undefined> {
    const statuses = await this.statuses();
    if (statuses.some((s) => s === undefined)) return undefined;
    const leaders = new Set(statuses.map((s) => s!.leader));
    if (leaders.size !== 1 || leaders.has("0")) return undefined;
    const leaderId = statuses[0]!.leader;
    const index = statuses.findIndex((s) => s!.memberId === leaderId);
    return index < 0 ? undefined : this.members[index];
  }

  /** Waits until all three members answer and agree on a leader; throws after `timeoutMs`. */
  async waitHealthy(timeoutMs: number): Promise<EtcdMember> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const exited = this.members.find((m) => m.process?.status !== undefined);
      if (exited !== undefined) {
        throw new Error(`etcd ${exited.name} exited (see ${this.#dir}/${exited.name}.log)`);
      }
      const leader = await this.leader();
      if (leader !== undefined) return leader;
      await sleep(100);
    }
    throw new Error(`etcd did not agree on a leader within ${timeoutMs} ms`);
  }

  /** Kills a member with SIGKILL (by pid, with `kill`) and waits until it is gone. */
  async kill(member: EtcdMember): Promise<void> {
    const process = member.process;
    if (process === undefined || process.status !== undefined) return;
    await killPid(process.pid, "KILL");
    await process.exited;
  }

  /** Starts a killed member again on its data dir and waits until the cluster is healthy. */
  async restart(member: EtcdMember): Promise<void> {
    this.#spawn(member);
    await this.waitHealthy(HEALTHY_TIMEOUT_MS);
  }

  /** Stops the members (SIGTERM, then SIGKILL after a bound) and closes the admin channels. */
  async stop(): Promise<void> {
    for (const admin of this.#admins) admin.close();
    for (const member of this.members) {
      if (member.process !== undefined) await stopProcess(member.process);
    }
  }
}
