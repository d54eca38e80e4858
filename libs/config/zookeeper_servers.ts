/**
 * The ZooKeeper servers a service connects to: `[zookeeper] servers`, a ZooKeeper connect string
 * naming every server of an ensemble (`"10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181"`), or, when
 * it is empty, the one server `host:port`.
 *
 * The connect string goes to the ZooKeeper client (`node-zookeeper-client`) as it is, so the
 * rules here are what that client reads correctly: it splits each server at `:` (so an IPv6
 * address cannot be written) and reads a `/` as the start of a chroot path (TinyKV has
 * `zookeeper.root` and `zookeeper.cluster` for that).
 *
 * @module
 */

/** One ZooKeeper server: a host name or IPv4 address, and its client port. */
export interface ZooKeeperServerAddress {
  readonly host: string;
  readonly port: number;
}

/** The most servers a connect string may name (an ensemble has 3, 5 or 7; 255 is ZooKeeper's myid range). */
export const ZOOKEEPER_SERVERS_MAX = 255;

/** What `[zookeeper] servers` must hold, as config errors say it. */
export const ZOOKEEPER_SERVERS_EXPECTED =
  'a ZooKeeper connect string, "host:port" entries separated by commas ' +
  '(e.g. "10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181"), or "" for zookeeper.host and zookeeper.port';

// A host name (labels of letters, digits and '-', separated by dots) or an IPv4 address.
const HOST =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV4_LIKE = /^[\d.]+$/;
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** The outcome of {@linkcode parseZooKeeperServers}. */
export type ZooKeeperServersResult =
  | { readonly kind: "ok"; readonly servers: readonly ZooKeeperServerAddress[] }
  | { readonly kind: "error"; readonly problem: string };

/**
 * Parses a non-empty connect string into its servers, or says precisely what is wrong with it
 * (which server, and why), e.g. `server 2 "10.0.0.12" has no port: write "host:port"`.
 */
export function parseZooKeeperServers(text: string): ZooKeeperServersResult {
  const error = (problem: string): ZooKeeperServersResult => ({ kind: "error", problem });
  if (text === "") return error("it is empty");
  if (text.includes("/")) {
    return error(
      'it has a chroot path ("/…"), which TinyKV does not take: the cluster\'s znodes live ' +
        "under zookeeper.root and zookeeper.cluster",
    );
  }
  const entries = text.split(",");
  if (entries.length > ZOOKEEPER_SERVERS_MAX) {
    return error(`it names ${entries.length} servers: at most ${ZOOKEEPER_SERVERS_MAX}`);
  }
  const servers: ZooKeeperServerAddress[] = [];
  const seen = new Map<string, number>();
  for (const [index, entry] of entries.entries()) {
    const n = index + 1;
    const parsed = parseServer(entry, n);
    if (typeof parsed === "string") return error(parsed);
    const key = `${parsed.host.toLowerCase()}:${parsed.port}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) return error(`server ${n} "${entry}" repeats server ${earlier}`);
    seen.set(key, n);
    servers.push(parsed);
  }
  return { kind: "ok", servers };
}

/** Parses server `n` of a connect string; a string says what is wrong with it. */
function parseServer(entry: string, n: number): ZooKeeperServerAddress | string {
  const named = `server ${n} "${entry}"`;
  if (entry === "") return `server ${n} is empty (two commas in a row, or one at an end)`;
  if (/\s/.test(entry)) return `${named} has white space: write "host:port,host:port"`;
  const parts = entry.split(":");
  if (parts.length === 1) return `${named} has no port: write "host:port"`;
  if (parts.length > 2) {
    return `${named} has more than one ":": IPv6 addresses cannot be written (the ZooKeeper ` +
      "client splits a server at its colons); use a host name or an IPv4 address";
  }
  const [host, portText] = parts;
  if (host === "") return `${named} has no host`;
  const validHost = IPV4_LIKE.test(host) ? IPV4.test(host) : HOST.test(host) && host.length <= 253;
  if (!validHost) return `${named} has host "${host}": expected a host name or an IPv4 address`;
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    return `${named} has port "${portText}": expected an integer from 1 to 65535`;
  }
  return { host, port };
}

/** The keys of `[zookeeper]` that name the servers. */
export interface ZooKeeperServerKeys {
  readonly servers: string;
  readonly host: string;
  readonly port: number;
}

/**
 * The servers a section names: those of `servers`, or `host:port` when `servers` is empty.
 * Throws on a `servers` that does not parse, which a loaded config never has (`loadConfig`
 * refuses it).
 */
export function zooKeeperServers(section: ZooKeeperServerKeys): ZooKeeperServerAddress[] {
  if (section.servers === "") return [{ host: section.host, port: section.port }];
  const parsed = parseZooKeeperServers(section.servers);
  if (parsed.kind === "error") {
    throw new Error(`Invalid zookeeper.servers "${section.servers}": ${parsed.problem}`);
  }
  return [...parsed.servers];
}
