/**
 * How a TinyKV service process reaches ZooKeeper, the same way in every service:
 * {@linkcode connectConfiguredZooKeeper} connects with the config's `[zookeeper]` section (servers,
 * root and cluster, session timeout) and reports the sessions through the service's logger;
 * {@linkcode connectConfiguredZooKeeperRetrying} keeps trying, for a service that must start while
 * ZooKeeper is down.
 *
 * @module
 */
import {
  connectZooKeeper,
  type ConnectZooKeeperOptions,
  type ZooKeeperClient,
  type ZooKeeperLogger,
} from "./client.ts";

/**
 * The keys of the config's `[zookeeper]` section that connecting reads (`@tinykv/config`'s
 * `Config["zookeeper"]` is one).
 */
export interface ZooKeeperSection {
  /**
   * Every server of the ensemble as a ZooKeeper connect string (`"h1:2181,h2:2181,h3:2181"`,
   * checked by `@tinykv/config`); "" or absent for the one server `host:port`.
   */
  readonly servers?: string;
  /** ZooKeeper's host, when `servers` is empty. */
  readonly host: string;
  /** ZooKeeper's client port, when `servers` is empty. */
  readonly port: number;
  /** The parent of every cluster's znodes, e.g. `/tinykv`. */
  readonly root: string;
  /** The cluster's name: its znodes live under `<root>/<cluster>`. */
  readonly cluster: string;
  /** The session timeout to ask for. */
  readonly session_timeout_ms: number;
  /** A file holding the ZooKeeper credential, `user:password` (digest); "" or absent for none. */
  readonly digest_file?: string;
}

/**
 * The digest credential in `path` (`user:password` on its first line). Throws, naming the file,
 * when it cannot be read or is not one.
 */
export function readDigestFile(path: string): { user: string; password: string } {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot read zookeeper.digest_file "${path}": ${reason}`);
  }
  const line = text.split("\n")[0].trim();
  const colon = line.indexOf(":");
  if (colon < 1 || colon === line.length - 1) {
    throw new Error(`zookeeper.digest_file "${path}" must hold "user:password" on its first line`);
  }
  return { user: line.slice(0, colon), password: line.slice(colon + 1) };
}

/** The methods of a service's logger used here (`@tinykv/log`'s `Logger` has them). */
export interface ServiceLog {
  /** Logs a routine event. */
  info(message: string, fields?: Readonly<Record<string, unknown>>): unknown;
  /** Logs a problem the caller works around. */
  warn(message: string, fields?: Readonly<Record<string, unknown>>): unknown;
}

/** Options of {@linkcode connectConfiguredZooKeeper}. */
export interface ConfiguredConnectOptions {
  /** Where the client reports its sessions (opened, expired) and the problems it works around. */
  readonly log: ServiceLog;
  /** Bound on the first connection. Default `CONNECT_TIMEOUT_MS_DEFAULT`. */
  readonly connectTimeoutMs?: number;
}

/** Options of {@linkcode connectConfiguredZooKeeperRetrying}. */
export interface RetryingConnectOptions extends ConfiguredConnectOptions {
  /** The pause after a failed attempt, before the next one. */
  readonly retryDelayMs: number;
  /** Asked before every attempt: once it returns true, no new attempt starts. */
  readonly stopped: () => boolean;
}

/** The outcome of {@linkcode connectConfiguredZooKeeperRetrying}. */
export type RetryingConnectResult =
  | { kind: "connected"; client: ZooKeeperClient }
  | { kind: "stopped" };

/**
 * The options {@linkcode connectConfiguredZooKeeper} passes to `connectZooKeeper`: the section's
 * servers (its connect string, or `host:port` when it names none), the root `<root>/<cluster>`,
 * its session timeout, and a logger that forwards the client's reports to `log`.
 */
export function configuredZooKeeperOptions(
  section: ZooKeeperSection,
  options: ConfiguredConnectOptions,
): ConnectZooKeeperOptions {
  const { log } = options;
  const logger: ZooKeeperLogger = {
    info: (message) => log.info(message),
    warn: (message) => log.warn(message),
  };
  return {
    connectString: connectStringOf(section),
    root: `${section.root}/${section.cluster}`,
    sessionTimeoutMs: section.session_timeout_ms,
    connectTimeoutMs: options.connectTimeoutMs,
    logger,
    ...(section.digest_file === undefined || section.digest_file === ""
      ? {}
      : { digest: readDigestFile(section.digest_file) }),
  };
}

/** The connect string of `section`: its `servers`, or `host:port` when that is empty. */
export function connectStringOf(section: ZooKeeperSection): string {
  const servers = section.servers ?? "";
  return servers === "" ? `${section.host}:${section.port}` : servers;
}

/**
 * Connects to the ZooKeeper that `section` names, under `<root>/<cluster>`, logging the client's
 * sessions to `options.log`.
 *
 * @throws {ZooKeeperError} As `connectZooKeeper` does: `"timeout"` when no session opens within
 * `connectTimeoutMs`. The caller decides whether that stops the service.
 */
export function connectConfiguredZooKeeper(
  section: ZooKeeperSection,
  options: ConfiguredConnectOptions,
): Promise<ZooKeeperClient> {
  return connectZooKeeper(configuredZooKeeperOptions(section, options));
}

/**
 * Connects as {@linkcode connectConfiguredZooKeeper} does, but never throws for an unreachable
 * ZooKeeper: each failed attempt is logged as a warning (`Cannot reach ZooKeeper: retrying`,
 * with the error) and retried after `retryDelayMs`, until an attempt connects (`connected`) or
 * `stopped()` returns true before one starts (`stopped`). An attempt in progress is not
 * interrupted: once `stopped()` turns true the result may take up to `connectTimeoutMs` plus
 * `retryDelayMs`, and may still be `connected` (the caller then closes the client).
 */
export async function connectConfiguredZooKeeperRetrying(
  section: ZooKeeperSection,
  options: RetryingConnectOptions,
): Promise<RetryingConnectResult> {
  while (!options.stopped()) {
    try {
      return { kind: "connected", client: await connectConfiguredZooKeeper(section, options) };
    } catch (error) {
      options.log.warn("Cannot reach ZooKeeper: retrying", { error });
      await new Promise((resolve) => setTimeout(resolve, options.retryDelayMs));
    }
  }
  return { kind: "stopped" };
}
