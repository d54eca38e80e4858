/**
 * The configuration schema: every section and key of `default_config.toml`, with its type, its
 * range and its default. The TypeScript object keeps the file's snake_case key names, so a key
 * reads the same in the file, on the command line and in code.
 *
 * @module
 */
import { z } from "zod";
import { ZOOKEEPER_SERVERS_EXPECTED } from "./zookeeper_servers.ts";

/** One leaf key: its zod schema and the words used when a value does not fit. */
export interface KeySpec<T = unknown> {
  readonly schema: z.ZodType<T>;
  readonly expected: string;
}

function integer(min: number, max: number, fallback: number): KeySpec<number> {
  return {
    schema: z.number().int().min(min).max(max).default(fallback),
    expected: `an integer from ${min} to ${max}`,
  };
}

function text(fallback: string): KeySpec<string> {
  return { schema: z.string().min(1).default(fallback), expected: "a non-empty string" };
}

/** A file path, or "" for none. */
function optionalPath(): KeySpec<string> {
  return { schema: z.string().max(4096).default(""), expected: 'a file path, or "" for none' };
}

function flag(fallback: boolean): KeySpec<boolean> {
  return { schema: z.boolean().default(fallback), expected: "true or false" };
}

function oneOf<const T extends string>(
  values: readonly [T, ...T[]],
  fallback: NoInfer<T>,
): KeySpec<T> {
  return {
    schema: z.enum(values).default(fallback),
    expected: `one of ${values.map((v) => `"${v}"`).join(", ")}`,
  };
}

function port(fallback: number): KeySpec<number> {
  return integer(1, 65535, fallback);
}

// Cluster names become a znode path segment: keep them to a safe alphabet.
const CLUSTER_NAME: KeySpec<string> = {
  schema: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/).default("dev"),
  expected:
    "a name of 1 to 63 characters from a-z, 0-9, '_' and '-', starting with a letter or digit",
};

// The znode under which clusters live: an absolute path without a trailing slash.
const ZNODE_ROOT: KeySpec<string> = {
  schema: z.string().regex(/^(\/[A-Za-z0-9_.-]+)+$/).default("/tinykv"),
  expected: 'an absolute znode path such as "/tinykv" (letters, digits, "_", ".", "-")',
};

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** The sections and keys of a TinyKV config file, with defaults equal to `default_config.toml`. */
export const CONFIG_SPEC = {
  zookeeper: {
    /**
     * Every server of the ZooKeeper ensemble, as a connect string (`"h1:2181,h2:2181,h3:2181"`;
     * checked by `parseZooKeeperServers`); "" for the one server `host:port`.
     */
    servers: {
      schema: z.string().max(16_384).default(""),
      expected: ZOOKEEPER_SERVERS_EXPECTED,
    },
    /** The one ZooKeeper server's host, used when `servers` is empty. */
    host: text("127.0.0.1"),
    /** Its client port, used when `servers` is empty. */
    port: port(2181),
    root: ZNODE_ROOT,
    cluster: CLUSTER_NAME,
    session_timeout_ms: integer(1000, 600_000, 10_000),
    /**
     * A file holding the cluster's ZooKeeper credential, `user:password` (digest scheme): the
     * services authenticate with it and the znodes they create may be changed only with it.
     */
    digest_file: optionalPath(),
  },
  rpc_server: {
    host: text("127.0.0.1"),
    port: port(7700),
    max_message_bytes: integer(64 * 1024, 512 * MIB, 8 * MIB),
  },
  sharding: {
    num_shards: integer(1, 4096, 10),
    replica_count: integer(1, 7, 3),
  },
  raft: {
    tick_ms: integer(1, 60_000, 100),
    election_ticks: integer(2, 1000, 10),
    heartbeat_ticks: integer(1, 1000, 1),
    quiesce_ticks: integer(0, 1_000_000, 20),
    pre_vote: flag(true),
    check_quorum: flag(true),
    /** How a leader confirms a linearizable read: its lease, or a heartbeat round (ReadIndex). */
    read_mode: oneOf(["lease", "read_index"], "lease"),
    inflight_messages_max: integer(1, 65_536, 256),
    message_bytes_max: integer(1024, 256 * MIB, MIB),
    uncommitted_bytes_max: integer(MIB, 16 * GIB, 64 * MIB),
    snapshot_entries: integer(16, 100_000_000, 10_000),
    snapshot_log_bytes: integer(64 * 1024, 64 * GIB, 64 * MIB),
  },
  storage: {
    data_dir: text("./data"),
    map_bytes: integer(16 * MIB, 1024 * GIB, 16 * GIB),
    /** The largest snapshot a kvnode receives: a larger declared or sent one is refused. */
    snapshot_bytes_max: integer(MIB, 1024 * GIB, 8 * GIB),
    value_bytes_max: integer(1, 64 * MIB, MIB),
  },
  log: {
    dir: text("./data/logs"),
    level: oneOf(["debug", "info", "warn", "error"], "info"),
    batch_bytes: integer(256, 16 * MIB, 4096),
    flush_interval_ms: integer(1, 60_000, 200),
    buffer_bytes_max: integer(4096, GIB, 8 * MIB),
    overflow: oneOf(["drop", "block"], "drop"),
    stderr: flag(true),
  },
  gateway: {
    request_timeout_ms: integer(1, 600_000, 5000),
    request_timeout_max_ms: integer(1, 600_000, 30_000),
    batch_requests_max: integer(1, 4096, 64),
    /** Prometheus `/metrics`; 0: `rpc_server.port` + 90 (7790 in dev). */
    http_port: integer(0, 65535, 0),
  },
  placement: {
    host: text("127.0.0.1"),
    admin_port: port(7800),
    http_port: port(7880),
    down_after_ms: integer(100, 86_400_000, 30_000),
    status_interval_ms: integer(10, 600_000, 1000),
    moves_per_node_max: integer(1, 64, 2),
    shard_cooldown_ms: integer(0, 86_400_000, 10_000),
    snapshot_bytes_per_second: integer(1024, 64 * GIB, 64 * MIB),
  },
  kvnode: {
    host: text("127.0.0.1"),
    port: port(7901),
    /** Prometheus `/metrics`; 0: `kvnode.port` + 1000 (8901–8903 in dev). */
    http_port: integer(0, 65535, 0),
    session_ttl_ms: integer(1000, 86_400_000, 600_000),
    /** The recent changes every replica keeps for watches, all replicas of a node together. */
    watch_window_bytes: integer(MIB, 16 * GIB, 64 * MIB),
  },
  security: {
    /** The cluster's CA (PEM): servers present certificates it signed; clients trust it. */
    ca_file: optionalPath(),
    /** This process's certificate and key (PEM): TLS on every port it serves when set. */
    cert_file: optionalPath(),
    key_file: optionalPath(),
    /** The cluster's token verify key (Ed25519, SPKI PEM): every call needs a credential when set. */
    verify_key_file: optionalPath(),
    /** This process's own token, sent with the calls it makes. */
    token_file: optionalPath(),
    /** The name clients check in servers' certificates (every TinyKV server certificate has it). */
    server_name: text("tinykv"),
    /** Serve off loopback without TLS and credentials anyway. */
    insecure: flag(false),
  },
} as const satisfies Record<string, Record<string, KeySpec>>;

type Spec = typeof CONFIG_SPEC;
type Section<S extends Record<string, KeySpec>> = {
  readonly [K in keyof S]: S[K] extends KeySpec<infer T> ? T : never;
};

/** A complete, validated TinyKV configuration. */
export type Config = { readonly [S in keyof Spec]: Section<Spec[S]> };

/** The name of one config section. */
export type SectionName = keyof Spec;

function sectionSchema(section: Record<string, KeySpec>): z.ZodType {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, spec] of Object.entries(section)) shape[key] = spec.schema;
  return z.strictObject(shape).prefault({});
}

/** The zod schema of a whole config file; missing keys take their defaults. */
export const CONFIG_SCHEMA: z.ZodType = (() => {
  const shape: Record<string, z.ZodType> = {};
  for (const [name, section] of Object.entries(CONFIG_SPEC)) shape[name] = sectionSchema(section);
  return z.strictObject(shape);
})();

/** Looks up the spec of `section.key`, or undefined when there is no such key. */
export function keySpec(section: string, key: string): KeySpec | undefined {
  if (!Object.hasOwn(CONFIG_SPEC, section)) return undefined;
  const keys: Record<string, KeySpec> = CONFIG_SPEC[section as SectionName];
  return Object.hasOwn(keys, key) ? keys[key] : undefined;
}
