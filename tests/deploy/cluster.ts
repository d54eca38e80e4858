/**
 * {@linkcode DeployCluster}: the deployment guide's example cluster built on test hosts. Each host
 * of the guide (tests/deploy/layout.ts) is a network namespace of its own (the fault test's
 * {@linkcode ChaosNet}, under names and a subnet of this test's own), with a directory standing
 * for its file system: the guide's paths (`/etc/tinykv`, `/var/lib/tinykv`, `/etc/zookeeper/…`)
 * map into it. Onto each host go the files the guide ships (`deploy/`), rewritten only as the
 * guide tells an operator to (a host's own address) and as the test hosts need (their addresses
 * and directories), with the owners and modes the guide gives; every process starts from the
 * `ExecStart=` of its unit (`deploy/systemd/`, Debian's haproxy unit), with the unit's
 * environment, working directory and user (`tinykv` is played by `nobody:nogroup`).
 *
 * @module
 */
import {
  credentialFiles,
  initCredentials,
  makeToken,
  SERVER_NAME,
} from "../../tools/credentials.ts";
import { makeCertificate } from "@tinykv/auth/pki";
import type { Role as TokenRole } from "@tinykv/auth";
import { ChaosNet, type NetNames, run } from "../chaos/net.ts";
import {
  GUIDE_CLUSTER,
  GUIDE_CODE,
  GUIDE_HOSTS,
  type GuideHost,
  OWN_ADDRESS_KEY,
  rewriteAddresses,
  rewritePaths,
  type Service,
  setTomlKey,
} from "./layout.ts";
import { HostProcess } from "./process.ts";
import { parseUnitFile, unitCommand } from "./systemd.ts";

/** This test's namespaces and addresses: never the fault test's (`tkvc`, 10.213.0.0/16). */
export const DEPLOY_NAMES: NetNames = { prefix: "tkvd", subnet16: "10.214" };

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const DEPLOY = `${REPO}/deploy`;
/** Debian's haproxy unit, as the guide uses it. */
export const HAPROXY_UNIT = "/lib/systemd/system/haproxy.service";
/** Who plays the guide's `tinykv` user and group. */
const SERVICE_USER = { user: "nobody", group: "nogroup" };

/** The guide's directories that belong to a host (everything else is shared, as installed). */
const HOST_PATHS = [
  "/etc/tinykv",
  "/var/lib/tinykv",
  "/var/log/tinykv",
  "/var/cache/tinykv",
  "/etc/zookeeper/tinykv",
  "/var/lib/zookeeper",
  "/etc/haproxy",
  "/run",
];

/** A host of the guide, on its test host. */
export interface TestHost {
  readonly guide: GuideHost;
  readonly index: number;
  readonly address: string;
  /** The directory standing for its file system. */
  readonly root: string;
  /** Its processes by what they are: "zookeeper", "kvnode", "placement", "gateway", "haproxy". */
  readonly processes: Map<string, HostProcess>;
}

/** What a kvnode is: its host and its node id (its token's subject). */
export interface KvNodeHost {
  readonly host: TestHost;
  readonly nodeId: string;
}

/** Users and groups by name, from /etc/passwd and /etc/group. */
function ids(file: string): Map<string, number> {
  return new Map(
    Deno.readTextFileSync(file).split("\n").filter((l) => l.includes(":")).map((line) => {
      const [name, , id] = line.split(":");
      return [name, Number(id)];
    }),
  );
}

/** The guide's example cluster on test hosts; see the module doc. */
export class DeployCluster {
  readonly net: ChaosNet;
  readonly dir: string;
  readonly hosts: TestHost[];
  /** The operator's workstation: the CA, the admin and client tokens. */
  readonly admin: { ca: string; adminToken: string; clientToken: string; pki: string };
  readonly #addresses: Map<string, string>;
  readonly #users = ids("/etc/passwd");
  readonly #groups = ids("/etc/group");

  private constructor(net: ChaosNet, dir: string) {
    this.net = net;
    this.dir = dir;
    this.hosts = GUIDE_HOSTS.map((guide, index) => ({
      guide,
      index,
      address: net.address(index),
      root: `${dir}/hosts/${guide.name}`,
      processes: new Map(),
    }));
    this.#addresses = new Map(this.hosts.map((h) => [h.guide.address, h.address]));
    const pki = `${dir}/admin/pki`;
    this.admin = {
      pki,
      ca: `${dir}/admin/ca.crt`,
      adminToken: `${dir}/admin/admin.token`,
      clientToken: `${dir}/admin/client.token`,
    };
  }

  /** Makes the hosts and puts the guide's files on them (nothing runs yet). */
  static async build(dir: string): Promise<DeployCluster> {
    const net = await ChaosNet.create(GUIDE_HOSTS.length, DEPLOY_NAMES);
    const cluster = new DeployCluster(net, dir);
    try {
      await cluster.#credentials();
      for (const host of cluster.hosts) await cluster.#install(host);
    } catch (error) {
      await net.destroy();
      throw error;
    }
    return cluster;
  }

  /** The test address of a guide address. */
  addressOf(guideAddress: string): string {
    return rewriteAddresses(guideAddress, this.#addresses);
  }

  /** The host of the guide named `name`. */
  host(name: string): TestHost {
    const host = this.hosts.find((h) => h.guide.name === name);
    if (host === undefined) throw new Error(`No host "${name}" in the guide`);
    return host;
  }

  /** Hosts running `role` in the guide. */
  hostsWith(role: GuideHost["roles"][number]): TestHost[] {
    return this.hosts.filter((h) => h.guide.roles.includes(role));
  }

  /** The kvnode hosts with their node ids (the guide names each node after its host). */
  get kvnodes(): KvNodeHost[] {
    return this.hostsWith("kvnode").map((host) => ({ host, nodeId: host.guide.name }));
  }

  /** Placement's admin addresses, as the operator's `--placement`. */
  get placementAddresses(): string[] {
    return this.hostsWith("placement").map((h) => `${h.address}:7800`);
  }

  /** The load balancer's client address. */
  get balancerAddress(): string {
    return `${this.hostsWith("balancer")[0].address}:7700`;
  }

  // -------------------------------------------------------------------------------------------
  // Files.

  /**
   * The guide's "Credentials" step on the operator's workstation: a CA, a certificate per host
   * (name "tinykv" and the host's address), a token per process, the admin's and a client's
   * token, the ZooKeeper credential.
   */
  async #credentials(): Promise<void> {
    const { pki } = this.admin;
    await initCredentials(pki, { hosts: [] });
    for (const host of this.hosts) {
      if (!host.guide.roles.some((r) => r === "kvnode" || r === "placement" || r === "gateway")) {
        continue;
      }
      await this.renewCertificate(host);
    }
    const token = (role: TokenRole, sub: string) =>
      makeToken(pki, { cluster: GUIDE_CLUSTER, role, sub });
    await Deno.copyFile(credentialFiles(pki).ca, this.admin.ca);
    await Deno.writeTextFile(this.admin.adminToken, `${await token("admin", "ops")}\n`);
    await Deno.writeTextFile(this.admin.clientToken, `${await token("client", "loadgen")}\n`);
    const password = crypto.getRandomValues(new Uint8Array(18));
    const secret = btoa(String.fromCharCode(...password)).replace(/[+/=]/g, "x");
    await Deno.writeTextFile(`${pki}/zookeeper.digest`, `tinykv:${secret}\n`);
  }

  /**
   * Makes `<pki>/<host>.crt` and `.key` anew, as the guide's certificate rotation does
   * (`deno task credentials cert`), and puts them on the host as `server.crt` and `server.key`.
   * Returns the new certificate's serial number (openssl's hex).
   */
  async renewCertificate(host: TestHost): Promise<string> {
    const files = credentialFiles(this.admin.pki);
    const made = await makeCertificate(
      this.admin.pki,
      { cert: files.ca, key: files.caKey },
      host.guide.name,
      [SERVER_NAME, host.address],
    );
    const etc = `${host.root}/etc/tinykv`;
    if (await exists(etc)) {
      await this.#put(made.cert, `${etc}/server.crt`, 0o644);
      await this.#put(made.key, `${etc}/server.key`, 0o640);
    }
    return (await run("openssl", ["x509", "-noout", "-serial", "-in", made.cert])).trim();
  }

  /** Copies `from` to `to`, owned by root and the service group, with `mode`. */
  async #put(from: string, to: string, mode: number): Promise<void> {
    await Deno.copyFile(from, to);
    await this.#own(to, "root", SERVICE_USER.group, mode);
  }

  async #own(path: string, user: string, group: string, mode: number): Promise<void> {
    const uid = this.#users.get(user);
    const gid = this.#groups.get(group);
    if (uid === undefined || gid === undefined) {
      throw new Error(`No user "${user}" or group "${group}" on this machine`);
    }
    await Deno.chown(path, uid, gid);
    await Deno.chmod(path, mode);
  }

  /** A file of the guide, rewritten for `host`: its addresses, its paths. */
  #forHost(host: TestHost, text: string): string {
    return rewritePaths(rewriteAddresses(text, this.#addresses), this.#pathMap(host));
  }

  #pathMap(host: TestHost): Map<string, string> {
    const map = new Map(HOST_PATHS.map((p) => [p, `${host.root}${p}`]));
    map.set(GUIDE_CODE, REPO);
    map.set("/usr/local/bin/deno", Deno.execPath());
    return map;
  }

  /** Puts on `host` what the guide installs there for its roles. */
  async #install(host: TestHost): Promise<void> {
    await Deno.mkdir(`${host.root}/run`, { recursive: true, mode: 0o755 });
    await Deno.chmod(this.dir, 0o755);
    for (const service of ["kvnode", "placement", "gateway"] as const) {
      if (host.guide.roles.includes(service)) await this.#installService(host, service);
    }
    if (host.guide.roles.includes("zookeeper")) await this.#installZooKeeper(host);
    if (host.guide.roles.includes("balancer")) {
      await Deno.mkdir(`${host.root}/etc/haproxy`, { recursive: true });
      const cfg = await Deno.readTextFile(`${DEPLOY}/haproxy.cfg`);
      await Deno.writeTextFile(`${host.root}/etc/haproxy/haproxy.cfg`, this.#forHost(host, cfg));
    }
  }

  /**
   * The guide's steps for a TinyKV service host: /etc/tinykv (root:tinykv 0750) with the config
   * (its own address set), the CA, the host's certificate and key, the verify key, the process's
   * token and the ZooKeeper credential (secrets 0640); the directories systemd makes for the unit
   * (StateDirectory, LogsDirectory, CacheDirectory), owned by the service user.
   */
  async #installService(host: TestHost, service: Service): Promise<void> {
    const etc = `${host.root}/etc/tinykv`;
    await Deno.mkdir(etc, { recursive: true });
    await this.#own(etc, "root", SERVICE_USER.group, 0o750);
    for (const dir of ["var/lib/tinykv", "var/log/tinykv", "var/cache/tinykv"]) {
      await Deno.mkdir(`${host.root}/${dir}`, { recursive: true });
      await this.#own(`${host.root}/${dir}`, SERVICE_USER.user, SERVICE_USER.group, 0o750);
    }
    const files = credentialFiles(this.admin.pki);
    await this.#put(files.ca, `${etc}/ca.crt`, 0o644);
    await this.#put(files.verify, `${etc}/verify.pem`, 0o644);
    await this.#put(`${this.admin.pki}/zookeeper.digest`, `${etc}/zookeeper.digest`, 0o640);
    await this.#put(`${this.admin.pki}/${host.guide.name}.crt`, `${etc}/server.crt`, 0o644);
    await this.#put(`${this.admin.pki}/${host.guide.name}.key`, `${etc}/server.key`, 0o640);
    const sub = service === "kvnode" ? host.guide.name : `${service}-${host.guide.name}`;
    const token = await makeToken(this.admin.pki, { cluster: GUIDE_CLUSTER, role: service, sub });
    await Deno.writeTextFile(`${etc}/${service}.token`, `${token}\n`);
    await this.#own(`${etc}/${service}.token`, "root", SERVICE_USER.group, 0o640);
    const [section, key] = OWN_ADDRESS_KEY[service];
    const config = setTomlKey(
      await Deno.readTextFile(`${DEPLOY}/config/${service}.toml`),
      section,
      key,
      `"${host.guide.address}"`,
    );
    await Deno.writeTextFile(`${etc}/${service}.toml`, this.#forHost(host, config));
    await this.#own(`${etc}/${service}.toml`, "root", SERVICE_USER.group, 0o644);
  }

  /** The guide's ZooKeeper steps: zoo.cfg, and myid in the data dir (owned by zookeeper). */
  async #installZooKeeper(host: TestHost): Promise<void> {
    const conf = `${host.root}/etc/zookeeper/tinykv`;
    const data = `${host.root}/var/lib/zookeeper/tinykv`;
    await Deno.mkdir(conf, { recursive: true });
    await Deno.mkdir(data, { recursive: true });
    const cfg = await Deno.readTextFile(`${DEPLOY}/zookeeper/zoo.cfg`);
    await Deno.writeTextFile(`${conf}/zoo.cfg`, this.#forHost(host, cfg));
    await Deno.writeTextFile(`${data}/myid`, `${host.guide.zookeeperId}\n`);
    await this.#own(data, "zookeeper", "zookeeper", 0o750);
    await this.#own(`${data}/myid`, "zookeeper", "zookeeper", 0o644);
  }

  // -------------------------------------------------------------------------------------------
  // Processes.

  /**
   * The process `what` on `host`, made from its unit's `ExecStart=` (rewritten for the host) the
   * first time, then reused: `systemctl start` of the same unit.
   */
  async #process(host: TestHost, what: string, unitFile: string): Promise<HostProcess> {
    const existing = host.processes.get(what);
    if (existing !== undefined) return existing;
    const command = unitCommand(parseUnitFile(await Deno.readTextFile(unitFile)));
    const rewrite = (text: string) => this.#forHost(host, text);
    const environment: Record<string, string> = {};
    for (const [name, value] of Object.entries(command.environment)) {
      environment[name] = rewrite(value);
    }
    const user = command.user === undefined
      ? undefined
      : command.user === "tinykv"
      ? SERVICE_USER
      : { user: command.user, group: command.group ?? command.user };
    const process = new HostProcess({
      name: `${what} ${host.guide.name}`,
      prefix: this.net.prefix(host.index),
      argv: command.argv.map(rewrite),
      env: environment,
      cwd: command.workingDirectory === undefined ? undefined : rewrite(command.workingDirectory),
      user,
      outputFile: `${host.root}/${what}.journal`,
    });
    host.processes.set(what, process);
    return process;
  }

  /** Starts ZooKeeper on `host` (`systemctl start tinykv-zookeeper`); resolves with its PID. */
  async startZooKeeper(host: TestHost): Promise<number> {
    const unit = `${DEPLOY}/systemd/tinykv-zookeeper.service`;
    return await (await this.#process(host, "zookeeper", unit)).start();
  }

  /** Asks ZooKeeper on `host` `srvr`; its `Mode:` (leader, follower, …) or undefined. */
  async zooKeeperMode(host: TestHost): Promise<string | undefined> {
    try {
      const conn = await Deno.connect({ hostname: host.address, port: 2181 });
      const timer = setTimeout(() => conn.close(), 2000);
      try {
        await conn.write(new TextEncoder().encode("srvr"));
        const answer = await new Response(conn.readable).text();
        return /^Mode: (\S+)/m.exec(answer)?.[1];
      } finally {
        clearTimeout(timer);
      }
    } catch {
      return undefined;
    }
  }

  /**
   * Starts `service` on `host` (`systemctl start tinykv-<service>`) and waits until it says it
   * serves; returns that line's match.
   */
  async startService(host: TestHost, service: Service, timeoutMs = 60_000) {
    const process = await this.#process(
      host,
      service,
      `${DEPLOY}/systemd/tinykv-${service}.service`,
    );
    await process.start();
    // "kvnode kv1 serving on …", "placement serving on …", "gateway serving on …".
    return await process.waitForOutput(
      new RegExp(`^${service} (?:\\S+ )?serving on `, "m"),
      timeoutMs,
    );
  }

  /**
   * Starts haproxy on the balancer host from Debian's unit (its config is the guide's); resolves
   * once it accepts connections on the client port.
   */
  async startBalancer(timeoutMs = 30_000): Promise<void> {
    const [host] = this.hostsWith("balancer");
    const process = await this.#process(host, "haproxy", HAPROXY_UNIT);
    await process.start();
    const deadline = Date.now() + timeoutMs;
    while (true) {
      try {
        (await Deno.connect({ hostname: host.address, port: 7700 })).close();
        return;
      } catch {
        if (!process.running || Date.now() > deadline) {
          throw new Error(`haproxy does not accept connections: ${await process.output()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** Stops `what` on `host` as `systemctl stop` would (SIGTERM, SIGKILL after 30 s). */
  async stop(host: TestHost, what: string, timeoutMs = 30_000) {
    const process = host.processes.get(what);
    if (process === undefined) {
      throw new Error(`Nothing called "${what}" runs on ${host.guide.name}`);
    }
    return await process.stop(timeoutMs);
  }

  /** Every process, for stopping and reports. */
  get processes(): HostProcess[] {
    return this.hosts.flatMap((h) => [...h.processes.values()]);
  }

  // -------------------------------------------------------------------------------------------
  // The operator's tools, run on the workstation (the root namespace).

  /**
   * Runs the `tinykv` CLI with the admin's CA and token and both placement addresses; returns
   * its exit code and output.
   */
  async tinykv(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return await this.#tool("tools/tinykv.ts", [
      "--placement",
      this.placementAddresses.join(","),
      "--ca",
      this.admin.ca,
      "--token-file",
      this.admin.adminToken,
      ...args,
    ]);
  }

  /** Runs `deno task caught-up NODE` as the guide does; returns its exit code and output. */
  async caughtUp(nodeId: string, timeoutMs: number) {
    return await this.#tool("tools/caught_up.ts", [
      nodeId,
      "--placement",
      this.placementAddresses.join(","),
      "--ca",
      this.admin.ca,
      "--token-file",
      this.admin.adminToken,
      "--timeout",
      String(timeoutMs),
    ]);
  }

  async #tool(script: string, args: readonly string[]) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy,TINYKV_CA,TINYKV_TOKEN_FILE",
        `--allow-read=${this.dir}/admin`,
        `${REPO}/${script}`,
        ...args,
      ],
      cwd: REPO,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  }

  /** Stops every process (SIGTERM, SIGKILL after 10 s) and removes the test hosts. */
  async close(): Promise<void> {
    // Clients first (the balancer, gateways), then placement, kvnodes, ZooKeeper last.
    const order = ["haproxy", "gateway", "placement", "kvnode", "zookeeper"];
    for (const what of order) {
      await Promise.all(
        this.hosts.map((h) => h.processes.get(what)?.stop(10_000).catch(() => {})),
      );
    }
    await this.net.destroy();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
