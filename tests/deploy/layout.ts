/**
 * The deployment guide's example cluster (docs/deploy.md "Hosts"), as the files under `deploy/`
 * name it, and the rewriting the deployment test applies to those files to run them on its test
 * hosts: the guide's addresses become the test hosts' addresses, the guide's paths a directory
 * per host, and a host's own address goes where the guide says to put it. Pure.
 *
 * @module
 */

/** What a host of the guide runs. */
export type Role = "zookeeper" | "placement" | "kvnode" | "gateway" | "balancer";

/** One host of the guide's example. */
export interface GuideHost {
  readonly name: string;
  readonly address: string;
  readonly roles: readonly Role[];
  /** Its ZooKeeper server id (`myid`), on ZooKeeper hosts. */
  readonly zookeeperId?: number;
}

/** The guide's hosts, in the order the test makes them. */
export const GUIDE_HOSTS: readonly GuideHost[] = [
  { name: "zk1", address: "10.0.0.11", roles: ["zookeeper", "placement"], zookeeperId: 1 },
  { name: "zk2", address: "10.0.0.12", roles: ["zookeeper", "placement"], zookeeperId: 2 },
  { name: "zk3", address: "10.0.0.13", roles: ["zookeeper"], zookeeperId: 3 },
  { name: "kv1", address: "10.0.0.21", roles: ["kvnode"] },
  { name: "kv2", address: "10.0.0.22", roles: ["kvnode"] },
  { name: "kv3", address: "10.0.0.23", roles: ["kvnode"] },
  { name: "gw1", address: "10.0.0.31", roles: ["gateway"] },
  { name: "gw2", address: "10.0.0.32", roles: ["gateway"] },
  { name: "lb", address: "10.0.0.40", roles: ["balancer"] },
];

/** The hosts that run `role`. */
export function hostsWith(role: Role): GuideHost[] {
  return GUIDE_HOSTS.filter((host) => host.roles.includes(role));
}

/** The cluster name of the guide's configs and tokens. */
export const GUIDE_CLUSTER = "prod";

/** Where the guide puts the code. */
export const GUIDE_CODE = "/opt/tinykv";

/** The TinyKV service a config file and a unit belong to. */
export type Service = "kvnode" | "placement" | "gateway";

/** The key of each service's config that holds its own host's address (the one per-host edit). */
export const OWN_ADDRESS_KEY: Readonly<Record<Service, readonly [string, string]>> = {
  kvnode: ["kvnode", "host"],
  placement: ["placement", "host"],
  gateway: ["rpc_server", "host"],
};

/**
 * The other hosts each service reaches, as the units' `--allow-net` names them beside ZooKeeper
 * and the service's own address (`deno task permissions … --peers`): a kvnode its peers, a
 * gateway the kvnodes, placement the kvnodes and the gateways (their metrics). One unit serves
 * every host of a role, so the list also holds that role's hosts: each host's own address.
 */
export function peersOf(service: Service): string[] {
  const addresses = (role: Role) => hostsWith(role).map((h) => h.address);
  const peers = service === "kvnode"
    ? addresses("kvnode")
    : service === "gateway"
    ? [...addresses("kvnode"), ...addresses("gateway")]
    : [...addresses("kvnode"), ...addresses("gateway"), ...addresses("placement")];
  return [...new Set(peers)];
}

/**
 * Sets `key` of `[section]` in a TOML text to `value` (TOML text, e.g. `"\"10.0.0.22\""`),
 * keeping the rest of its line (a comment) and every other line. Throws when the file has no such
 * key: the guide's per-host edit must name a key that is there.
 */
export function setTomlKey(text: string, section: string, key: string, value: string): string {
  const lines = text.split("\n");
  let inSection = false;
  for (let i = 0; i < lines.length; i++) {
    const header = /^\s*\[([^\]]+)\]\s*(#.*)?$/.exec(lines[i]);
    if (header !== null) {
      inSection = header[1].trim() === section;
      continue;
    }
    const assignment = new RegExp(`^(\\s*${key}\\s*=\\s*)("[^"]*"|[^\\s#]+)(.*)$`).exec(lines[i]);
    if (inSection && assignment !== null) {
      lines[i] = `${assignment[1]}${value}${assignment[3]}`;
      return lines.join("\n");
    }
  }
  throw new Error(`The file has no key "${key}" in [${section}]`);
}

/** An IPv4 address of the guide's subnet, not part of a longer dotted number. */
const GUIDE_ADDRESS = /(?<![\d.])10\.0\.0\.\d{1,3}(?![\d.])/g;

/**
 * Replaces every address of the guide's 10.0.0.0/24 in `text` with the test's (`addresses`:
 * guide address → test address). Throws on an address the map lacks.
 */
export function rewriteAddresses(text: string, addresses: ReadonlyMap<string, string>): string {
  return text.replace(GUIDE_ADDRESS, (address) => {
    const mapped = addresses.get(address);
    if (mapped === undefined) throw new Error(`No test host for the guide's address ${address}`);
    return mapped;
  });
}

/**
 * Rewrites the absolute paths in `text` that start with one of `prefixes` (each a directory or a
 * file of the guide, e.g. `/etc/tinykv` → `<host dir>/etc/tinykv`), matching whole path
 * components only (`/etc/tinykv2` is not under `/etc/tinykv`). The longest prefix wins.
 */
export function rewritePaths(text: string, prefixes: ReadonlyMap<string, string>): string {
  const ordered = [...prefixes.keys()].sort((a, b) => b.length - a.length);
  if (ordered.length === 0) return text;
  const escaped = ordered.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const pattern = new RegExp(`(?<![\\w./-])(${escaped.join("|")})(?=$|[/\\s,:"'=;])`, "gm");
  return text.replace(pattern, (prefix) => prefixes.get(prefix)!);
}
