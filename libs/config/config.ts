/**
 * Loading a TinyKV config: read the TOML file, apply `--section.key=value` overrides from the
 * command line, validate everything, and either return the config or one precise message.
 *
 * @module
 */
import { parse as parseToml, TomlError } from "smol-toml";
import type { z } from "zod";
import { commandBytesMax, KEY_BYTES_MAX } from "@tinykv/shard";
import { type Config, CONFIG_SCHEMA, CONFIG_SPEC, keySpec } from "./schema.ts";
import { parseZooKeeperServers, ZOOKEEPER_SERVERS_EXPECTED } from "./zookeeper_servers.ts";

/** Bytes a Raft batch keeps for framing besides one message's entries. */
const RAFT_FRAMING_BYTES = 64 * 1024;

/**
 * The most bytes of entries one Raft message may carry under `maxMessageBytes`: half a gRPC
 * message (the transport's batch bound) less {@linkcode RAFT_FRAMING_BYTES}.
 */
export function raftMessageRoom(maxMessageBytes: number): number {
  return Math.floor(maxMessageBytes / 2) - RAFT_FRAMING_BYTES;
}

/** The outcome of loading a config: the config, or a message naming the source, key and problem. */
export type LoadConfigResult =
  | { readonly kind: "ok"; readonly config: Config; readonly path: string | undefined }
  | { readonly kind: "error"; readonly message: string };

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** The TOML file to read; when absent, only defaults and overrides apply. */
  readonly path?: string;
  /** Overrides as `section.key` → raw value text, applied after the file, in order. */
  readonly overrides?: ReadonlyArray<readonly [string, string]>;
  /** Reads a file; injectable for tests. Defaults to `Deno.readTextFileSync`. */
  readonly readTextFile?: (path: string) => string;
}

type Table = Record<string, unknown>;

/**
 * Reads, merges and validates a config. Never throws for bad input: every problem comes back as
 * `{ kind: "error" }` with a message such as
 * `Cannot load config "tinykv.toml": key "raft.tick_ms" must be an integer from 1 to 60000: got "fast"`.
 */
export function loadConfig(options: LoadConfigOptions = {}): LoadConfigResult {
  const source = options.path === undefined ? "defaults" : `"${options.path}"`;
  let raw: Table = {};
  if (options.path !== undefined) {
    const read = readToml(options.path, options.readTextFile ?? Deno.readTextFileSync);
    if (read.kind === "error") return read;
    raw = read.table;
  }
  for (const [dotted, value] of options.overrides ?? []) {
    const applied = applyOverride(raw, dotted, value);
    if (applied !== undefined) return { kind: "error", message: applied };
  }
  const parsed = CONFIG_SCHEMA.safeParse(raw);
  if (!parsed.success) {
    return { kind: "error", message: describeIssue(source, raw, parsed.error.issues[0]) };
  }
  const config = parsed.data as Config;
  const crossCheck = checkFormats(config) ?? checkAcrossKeys(config);
  if (crossCheck !== undefined) {
    return { kind: "error", message: `Cannot load config ${source}: ${crossCheck}` };
  }
  return { kind: "ok", config, path: options.path };
}

function readToml(
  path: string,
  readTextFile: (path: string) => string,
): { kind: "ok"; table: Table } | { kind: "error"; message: string } {
  let text: string;
  try {
    text = readTextFile(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { kind: "error", message: `Cannot read config file "${path}": ${reason}` };
  }
  try {
    return { kind: "ok", table: parseToml(text) as Table };
  } catch (error) {
    if (error instanceof TomlError) {
      const firstLine = error.message.split("\n")[0];
      return {
        kind: "error",
        message:
          `Cannot parse config file "${path}": line ${error.line}, column ${error.column}: ${firstLine}`,
      };
    }
    throw error;
  }
}

/** Applies one `section.key=value` override to `raw`; returns an error message or undefined. */
function applyOverride(raw: Table, dotted: string, valueText: string): string | undefined {
  const parts = dotted.split(".");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
    return `Cannot apply flag "--${dotted}": expected the form --section.key=value`;
  }
  const [section, key] = parts;
  if (keySpec(section, key) === undefined) {
    return `Cannot apply flag "--${dotted}": unknown key "${section}.${key}" (known keys: ${
      knownKeys(section)
    })`;
  }
  const existing = raw[section];
  const table: Table = isTable(existing) ? existing : {};
  table[key] = parseFlagValue(valueText);
  raw[section] = table;
  return undefined;
}

/** A flag value is read as a TOML value when it is one (`50`, `true`, `"x"`), else as text. */
function parseFlagValue(text: string): unknown {
  try {
    return (parseToml(`v = ${text}`) as Table).v;
  } catch {
    return text;
  }
}

function isTable(value: unknown): value is Table {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function knownKeys(section: string): string {
  if (Object.hasOwn(CONFIG_SPEC, section)) {
    const keys = Object.keys(CONFIG_SPEC[section as keyof typeof CONFIG_SPEC]);
    return keys.map((k) => `${section}.${k}`).join(", ");
  }
  return `sections are ${Object.keys(CONFIG_SPEC).map((s) => `[${s}]`).join(", ")}`;
}

function describeIssue(source: string, raw: Table, issue: z.core.$ZodIssue | undefined): string {
  const prefix = `Cannot load config ${source}`;
  if (issue === undefined) return `${prefix}: the file does not match the schema`;
  const path = issue.path.map(String);
  if (issue.code === "unrecognized_keys") {
    const where = path.length === 0 ? "" : `${path.join(".")}.`;
    const unknown = issue.keys.map((k) => `"${where}${k}"`).join(", ");
    const hint = path.length === 0 ? knownKeys("") : `known keys: ${knownKeys(path[0])}`;
    return `${prefix}: unknown key ${unknown} (${hint})`;
  }
  if (path.length === 1) {
    return `${prefix}: "${path[0]}" must be a table ([${path[0]}]): got ${show(raw[path[0]])}`;
  }
  const [section, key] = path;
  const spec = keySpec(section, key);
  const got = show(isTable(raw[section]) ? raw[section][key] : undefined);
  const expected = spec?.expected ?? issue.message;
  return `${prefix}: key "${section}.${key}" must be ${expected}: got ${got}`;
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "nothing";
  if (typeof value === "object" && value !== null) {
    return Array.isArray(value) ? "an array" : "a table";
  }
  return String(value);
}

/** Keys whose text has a format of its own; returns a message for the first one broken. */
function checkFormats(config: Config): string | undefined {
  const { servers } = config.zookeeper;
  if (servers === "") return undefined;
  const parsed = parseZooKeeperServers(servers);
  if (parsed.kind === "ok") return undefined;
  return `key "zookeeper.servers" must be ${ZOOKEEPER_SERVERS_EXPECTED}: ${parsed.problem}`;
}

/**
 * The smallest `kvnode.watch_window_bytes` for `valueBytesMax`: one entry's changes (at most two
 * values at the limit, 4 KiB of keys and 96 bytes per change) must fit the window, with room.
 */
export function watchWindowBytesMin(valueBytesMax: number): number {
  return 2 * valueBytesMax + 64 * 1024;
}

/** Rules that relate several keys; returns a message for the first one broken. */
function checkAcrossKeys(config: Config): string | undefined {
  const { raft, gateway, rpc_server, storage } = config;
  if (raft.heartbeat_ticks >= raft.election_ticks) {
    return `key "raft.heartbeat_ticks" must be less than "raft.election_ticks" (${raft.election_ticks}): got ${raft.heartbeat_ticks}`;
  }
  if (raft.read_mode === "lease" && !raft.check_quorum) {
    return `key "raft.read_mode" must be "read_index" when "raft.check_quorum" is false (a leader's lease rests on check-quorum): got "lease"`;
  }
  if (gateway.request_timeout_ms > gateway.request_timeout_max_ms) {
    return `key "gateway.request_timeout_ms" must not exceed "gateway.request_timeout_max_ms" (${gateway.request_timeout_max_ms}): got ${gateway.request_timeout_ms}`;
  }
  // Raft messages travel in batches of at most half a gRPC message (the transport's bound), and
  // one Raft message must fit in a batch of its own: the largest command (a compare-and-swap of
  // two values at the limit and a 4 KiB key), and an AppendEntries of message_bytes_max.
  const room = raftMessageRoom(rpc_server.max_message_bytes);
  const largest = commandBytesMax(storage.value_bytes_max);
  if (largest > room) {
    const valueMax = Math.floor((room - commandBytesMax(0)) / 2);
    return `key "storage.value_bytes_max" must be at most ${valueMax}: its largest command (a compare-and-swap of two such values and a ${KEY_BYTES_MAX}-byte key, ${largest} bytes) must fit in one Raft message of at most ${room} bytes (half of "rpc_server.max_message_bytes" less 64 KiB): got ${storage.value_bytes_max}`;
  }
  if (raft.message_bytes_max > room) {
    return `key "raft.message_bytes_max" must be at most ${room} (half of "rpc_server.max_message_bytes" less 64 KiB): got ${raft.message_bytes_max}`;
  }
  // The changes of one entry travel to a watcher together: the window must hold the largest (a
  // Txn of two values at the limit, with its keys and each change's overhead) with room to spare.
  const windowMin = watchWindowBytesMin(storage.value_bytes_max);
  if (config.kvnode.watch_window_bytes < windowMin) {
    return `key "kvnode.watch_window_bytes" must be at least ${windowMin} (2 × "storage.value_bytes_max" + 64 KiB: the changes of the largest Txn): got ${config.kvnode.watch_window_bytes}`;
  }
  // Snapshots being received are staged in the node's LMDB map beside its data.
  const snapshotMax = Math.floor(storage.map_bytes / 2);
  if (storage.snapshot_bytes_max > snapshotMax) {
    return `key "storage.snapshot_bytes_max" must be at most ${snapshotMax} (half of "storage.map_bytes"): got ${storage.snapshot_bytes_max}`;
  }
  return undefined;
}

/** Command-line arguments split into the config's part and the program's own. */
export interface ConfigArgs {
  /** The value of `--config`, if given. */
  readonly path: string | undefined;
  /** Every `--section.key=value` (or `--section.key value`) flag, in order. */
  readonly overrides: ReadonlyArray<readonly [string, string]>;
  /** Every argument that is neither, in order, for the program to interpret. */
  readonly rest: readonly string[];
}

/**
 * Splits `args` into `--config`, `--section.key=value` overrides and the rest. A flag with a dot
 * in its name is always a config override, so a program's own flags must not contain dots.
 */
export function splitConfigArgs(args: readonly string[]): ConfigArgs {
  let path: string | undefined;
  const overrides: Array<readonly [string, string]> = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const match = /^--([^=]+)(?:=(.*))?$/s.exec(arg);
    const name = match?.[1];
    if (match === null || name === undefined || (name !== "config" && !name.includes("."))) {
      rest.push(arg);
      continue;
    }
    let value = match[2];
    if (value === undefined && i + 1 < args.length) value = args[++i];
    if (value === undefined) {
      rest.push(arg);
      continue;
    }
    if (name === "config") path = value;
    else overrides.push([name, value]);
  }
  return { path, overrides, rest };
}

/**
 * Loads the config named by `args` (`--config`, else `defaultPath`) with its overrides applied.
 * Returns the program's remaining arguments beside it.
 */
export function loadConfigFromArgs(
  args: readonly string[],
  options: { readonly defaultPath?: string; readonly readTextFile?: (path: string) => string } = {},
): LoadConfigResult & { readonly rest: readonly string[] } {
  const split = splitConfigArgs(args);
  const result = loadConfig({
    path: split.path ?? options.defaultPath,
    overrides: split.overrides,
    readTextFile: options.readTextFile,
  });
  return { ...result, rest: split.rest };
}
