/**
 * The Deno permissions of each TinyKV service, named from its config: the paths it reads and
 * writes (its own files: not the other services' data or the cluster's other credentials), the
 * hosts it reaches, the environment variables and system information it reads, and (a kvnode) the
 * native library it loads. `deno task dev` starts every service with them; the deployment guide's
 * systemd units (`deploy/systemd/`) carry the flags this module prints for the guide's configs:
 *
 * ```
 * deno task permissions kvnode --config /etc/tinykv/kvnode.toml --code /opt/tinykv \
 *   --peers 10.0.0.21,10.0.0.22,10.0.0.23
 * ```
 *
 * What the libraries read, measured under Deno 2.9.3 (a variable not named here makes the
 * service fail at once, naming it): grpc-js its `GRPC_*` settings and the proxy variables; lmdb
 * (a kvnode) how to find its prebuilt binary and a few switches, and the CPU count, network
 * interfaces and host name.
 *
 * @module
 */
import { type Config, loadConfigFromArgs, zooKeeperServers } from "@tinykv/config";

/** The services whose permissions this module names. */
export type ServiceName = "kvnode" | "placement" | "gateway";
const SERVICES: readonly ServiceName[] = ["kvnode", "placement", "gateway"];

/** The variables every service may read. */
export const SERVICE_ENV: readonly string[] = [
  "GRPC_*",
  "grpc_proxy",
  "https_proxy",
  "http_proxy",
  "no_grpc_proxy",
  "no_proxy",
  "TINYKV_*",
];

/** What lmdb reads besides: finding its binary, and its switches. */
export const KVNODE_ENV: readonly string[] = [
  "PREBUILDS_ONLY",
  "ELECTRON_RUN_AS_NODE",
  "npm_config_arch",
  "npm_config_platform",
  "LIBC",
  "ARM_VERSION",
  "MSGPACKR_NATIVE_ACCELERATION_DISABLED",
  "LMDB_RESTORE",
];

/** The system information lmdb reads. */
export const KVNODE_SYS: readonly string[] = ["cpus", "networkInterfaces", "hostname"];

/** The service's files named by `[security]` and `[zookeeper] digest_file`. */
function credentialPaths(config: Config): string[] {
  const { ca_file, cert_file, key_file, verify_key_file, token_file } = config.security;
  return [ca_file, cert_file, key_file, verify_key_file, token_file, config.zookeeper.digest_file]
    .filter((path) => path !== "");
}

/** Options of {@linkcode servicePermissions}. */
export interface ServicePermissionsOptions {
  /** Where TinyKV's code and its npm packages are (the repository). */
  readonly code: string;
  /** The config file it reads, when not in `code`. */
  readonly configFile?: string;
  /** A kvnode's port, when not the config's. */
  readonly kvnodePort?: number;
  /**
   * The other hosts it reaches, in a deployment where every service has its own config: for a
   * kvnode every kvnode host (its peers), for a gateway every kvnode host, for placement every
   * kvnode and gateway host (it reads the gateways' metrics). With them the service may reach
   * only its ZooKeeper servers, its own address and these. Without them (the dev cluster, one
   * config for all) the hosts of every service in the config.
   */
  readonly peers?: readonly string[];
}

/** The permission flags of `service` under `config`. */
export function servicePermissions(
  service: ServiceName,
  config: Config,
  options: ServicePermissionsOptions,
): string[] {
  // Of the code, what is read at run time (modules load without a read permission): the default
  // config, the dashboard's page, the npm packages' files. Not the data dir around it, where the
  // other services' data and the cluster's credentials may live.
  const read = [
    `${options.code}/default_config.toml`,
    `${options.code}/services`,
    `${options.code}/node_modules`,
    config.log.dir,
    ...credentialPaths(config),
    ...(options.configFile === undefined ? [] : [options.configFile]),
  ];
  const write = [config.log.dir];
  const hosts = new Set(zooKeeperServers(config.zookeeper).map((server) => server.host));
  if (service === "kvnode") {
    // Its own data dir only (main.ts: <data_dir>/kvnode-<port>).
    const own = `${config.storage.data_dir}/kvnode-${options.kvnodePort ?? config.kvnode.port}`;
    read.push(own);
    write.push(own);
    hosts.add(config.kvnode.host);
  } else if (service === "placement") {
    hosts.add(config.placement.host);
  } else {
    hosts.add(config.rpc_server.host);
  }
  // A kvnode reaches its peers, placement the kvnodes and the gateways' metrics, a gateway the
  // kvnodes: in a deployment, hosts the config does not list (`peers` names them).
  const others = options.peers ??
    [config.kvnode.host, config.rpc_server.host, config.placement.host];
  for (const host of others) hosts.add(host);
  const flags = [
    `--allow-read=${[...new Set(read)].join(",")}`,
    `--allow-write=${[...new Set(write)].join(",")}`,
    `--allow-net=${[...hosts].join(",")}`,
    `--allow-env=${[...SERVICE_ENV, ...(service === "kvnode" ? KVNODE_ENV : [])].join(",")}`,
  ];
  if (service === "kvnode") {
    flags.push(`--allow-sys=${KVNODE_SYS.join(",")}`);
    flags.push(`--allow-ffi=${options.code}/node_modules`);
  }
  return flags;
}

const USAGE = `deno task permissions SERVICE --config FILE --code DIR [--peers H1,H2,...] [--lines]

Prints the Deno permission flags of SERVICE (kvnode, placement or gateway) started with
--config FILE from the code in DIR (the repository, e.g. /opt/tinykv): its paths, hosts,
variables and system information (tools/service_permissions.ts). --peers names the other hosts it
reaches (a kvnode: every kvnode host; a gateway: every kvnode host; placement: every kvnode and
gateway host). The flags are printed on one line; --lines prints one per line.
`;

/** Runs the command line; returns the exit code. */
export function main(args: readonly string[]): number {
  const [service, ...rest] = args;
  if (service === undefined || service === "--help" || service === "-h") {
    console.log(USAGE);
    return service === undefined ? 2 : 0;
  }
  if (!(SERVICES as readonly string[]).includes(service)) {
    console.error(
      `permissions: unknown service "${service}": expected kvnode, placement or gateway`,
    );
    return 2;
  }
  const flags = new Map<string, string>();
  let lines = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const eq = arg.indexOf("=");
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (name === "--lines" && eq < 0) {
      lines = true;
      continue;
    }
    if (!["--config", "--code", "--peers"].includes(name)) {
      console.error(`permissions: unknown argument "${arg}"\n\n${USAGE}`);
      return 2;
    }
    const value = eq < 0 ? rest[++i] : arg.slice(eq + 1);
    if (value === undefined) {
      console.error(`permissions: "${name}" needs a value\n\n${USAGE}`);
      return 2;
    }
    flags.set(name, value);
  }
  const configFile = flags.get("--config");
  const code = flags.get("--code");
  if (configFile === undefined || code === undefined) {
    console.error(`permissions: --config and --code are needed\n\n${USAGE}`);
    return 2;
  }
  const loaded = loadConfigFromArgs([`--config=${configFile}`]);
  if (loaded.kind === "error") {
    console.error(`permissions: ${loaded.message}`);
    return 1;
  }
  const peersText = flags.get("--peers");
  const peers = peersText === undefined
    ? undefined
    : peersText.split(",").map((h) => h.trim()).filter((h) => h !== "");
  const permissions = servicePermissions(service as ServiceName, loaded.config, {
    code: code.replace(/\/$/, ""),
    configFile,
    peers,
  });
  console.log(permissions.join(lines ? "\n" : " "));
  return 0;
}

if (import.meta.main) {
  Deno.exit(main(Deno.args));
}
