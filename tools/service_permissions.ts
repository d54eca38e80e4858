/**
 * The Deno permissions of each TinyKV service, named from its config: the paths it reads and
 * writes (its own files: not the other services' data or the cluster's other credentials), the hosts it reaches, the environment variables and system information it reads, and
 * (a kvnode) the native library it loads. `deno task dev` starts every service with them; the
 * deployment guide's units use the same lists.
 *
 * What the libraries read, measured under Deno 2.9.3 (a variable not named here makes the
 * service fail at once, naming it): grpc-js its `GRPC_*` settings and the proxy variables; lmdb
 * (a kvnode) how to find its prebuilt binary and a few switches, and the CPU count, network
 * interfaces and host name.
 *
 * @module
 */
import type { Config } from "@tinykv/config";

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

/**
 * The permission flags of `service` under `config`. `code` is where TinyKV's code and its npm
 * packages are (the repository); `configFile` the config file it reads, when not in `code`.
 */
export function servicePermissions(
  service: "kvnode" | "placement" | "gateway",
  config: Config,
  options: { code: string; configFile?: string; kvnodePort?: number },
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
  const hosts = new Set([config.zookeeper.host]);
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
  // kvnodes: in a deployment, hosts the config does not list (the guide's units name them).
  for (const host of [config.kvnode.host, config.rpc_server.host, config.placement.host]) {
    hosts.add(host);
  }
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
