/**
 * The command line of `deno task bench:compare` (bench/compare.ts): which parts run and how big
 * they are. Parsing is pure and returns a typed result; a bad flag is a message naming the flag,
 * the value and what was expected.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCompareFlags } from "./compare_flags.ts";
 *
 * const parsed = parseCompareFlags(["--seconds", "2", "--shards=1", "--no-idle"]);
 * assert.equal(parsed.kind, "ok");
 * if (parsed.kind === "ok") {
 *   assert.equal(parsed.options.seconds, 2);
 *   assert.deepEqual(parsed.options.shards, [1]);
 *   assert.equal(parsed.options.idle, false);
 * }
 * ```
 *
 * @module
 */
import {
  applyFlags,
  FlagError,
  integer,
  integerList,
  type Mutable,
  nonEmpty,
  positiveNumber,
  type ValueFlag,
} from "./flags.ts";

/** The operations a cell can run: puts, linearizable gets, or 95 % gets and 5 % puts. */
export type Op = "put" | "get" | "mix";

/** Every operation, in the order cells run. */
export const OPS: readonly Op[] = ["put", "get", "mix"];

/** What one run of the comparison does. */
export interface CompareOptions {
  /** Measured seconds per cell (after the warmup). */
  readonly seconds: number;
  /** Unmeasured seconds of the same load before each cell. */
  readonly warmupSeconds: number;
  /** TinyKV shard counts, one fresh cluster each. */
  readonly shards: readonly number[];
  /** Requests in flight per cell. */
  readonly concurrency: readonly number[];
  /** The operations measured, in the order cells run. */
  readonly ops: readonly Op[];
  /** Distinct keys (preloaded before the cells). */
  readonly keys: number;
  /** Run the load cells (false with `--no-cells`: only failover, move and idle). */
  readonly cells: boolean;
  /** Run etcd (false with `--no-etcd`). */
  readonly etcd: boolean;
  /** Run the leader failover trials (false with `--no-failover`). */
  readonly failover: boolean;
  /** Leader kills per system. */
  readonly failoverTrials: number;
  /** Measure moving one replica (through bench/snapshot_move.ts). */
  readonly move: boolean;
  /** GiB in the moved replica (0.4657 GiB = 500 MB). */
  readonly moveGib: number;
  /** Measure the idle cost (false with `--no-idle`). */
  readonly idle: boolean;
  /** TinyKV shard counts of the idle measurement. */
  readonly idleShards: readonly number[];
  /** Print the JSON result on stdout (the progress goes to stderr). */
  readonly json: boolean;
  /** Also write the JSON result to this file. */
  readonly out: string | undefined;
  /** A TinyKV checkout whose tools/dev.ts runs the clusters (default: this one). */
  readonly tinykvRoot: string | undefined;
  /** Print the usage and stop. */
  readonly help: boolean;
}

/** The defaults: the full comparison. */
export const DEFAULT_OPTIONS: CompareOptions = {
  seconds: 8,
  warmupSeconds: 1,
  shards: [1, 10],
  concurrency: [1, 16, 256],
  ops: OPS,
  keys: 20_000,
  cells: true,
  etcd: true,
  failover: true,
  failoverTrials: 20,
  move: true,
  moveGib: 0.4657,
  idle: true,
  idleShards: [10, 100, 1000],
  json: false,
  out: undefined,
  tinykvRoot: undefined,
  help: false,
};

/** The usage text of `--help`. */
export const USAGE = `Usage: deno task bench:compare [flags]

TinyKV (3 kvnodes, placement, ZooKeeper, a gateway) against a 3-member etcd on this machine.

  --seconds N            measured seconds per cell (default 8)
  --warmup-seconds N     unmeasured seconds before each cell (default 1)
  --shards LIST          TinyKV shard counts, a fresh cluster each (default 1,10)
  --concurrency LIST     requests in flight per cell (default 1,16,256)
  --ops LIST             put, get, mix (95 % get, 5 % put) (default put,get,mix)
  --keys N               distinct keys, preloaded (default 20000)
  --failover-trials N    leader kills per system (default 20)
  --idle-shards LIST     TinyKV shard counts measured idle (default 10,100,1000)
  --move-gib N           size of the moved replica (default 0.4657 = 500 MB)
  --no-cells, --no-etcd, --no-failover, --no-move, --no-idle   skip that part
  --json                 the result as JSON on stdout (progress on stderr)
  --out FILE             also write the JSON result to FILE
  --tinykv-root DIR      run the clusters with DIR/tools/dev.ts (another checkout)
  --help                 this text`;

/** The parsed command line, or why it cannot be parsed. */
export type ParsedFlags =
  | { readonly kind: "ok"; readonly options: CompareOptions }
  | { readonly kind: "error"; readonly message: string };

const SWITCHES: Readonly<Record<string, (options: Mutable<CompareOptions>) => void>> = {
  "--no-cells": (o) => (o.cells = false),
  "--no-etcd": (o) => (o.etcd = false),
  "--no-failover": (o) => (o.failover = false),
  "--no-move": (o) => (o.move = false),
  "--no-idle": (o) => (o.idle = false),
  "--json": (o) => (o.json = true),
  "--help": (o) => (o.help = true),
};

const VALUE_FLAGS: Readonly<Record<string, ValueFlag<CompareOptions>>> = {
  "--seconds": (o, v, f) => (o.seconds = positiveNumber(f, v, 3600)),
  "--warmup-seconds": (o, v, f) => (o.warmupSeconds = positiveNumber(f, v, 600)),
  "--shards": (o, v, f) => (o.shards = integerList(f, v, 4096)),
  "--concurrency": (o, v, f) => (o.concurrency = integerList(f, v, 4096)),
  "--ops": (o, v, f) => (o.ops = opList(f, v)),
  "--keys": (o, v, f) => (o.keys = integer(f, v, 1_000_000)),
  "--failover-trials": (o, v, f) => (o.failoverTrials = integer(f, v, 1000)),
  "--idle-shards": (o, v, f) => (o.idleShards = integerList(f, v, 4096)),
  "--move-gib": (o, v, f) => (o.moveGib = positiveNumber(f, v, 64)),
  "--out": (o, v, f) => (o.out = nonEmpty(f, v)),
  "--tinykv-root": (o, v, f) => (o.tinykvRoot = nonEmpty(f, v)),
};

/** Parses the flags (`--flag value` or `--flag=value`); see {@linkcode USAGE}. */
export function parseCompareFlags(args: readonly string[]): ParsedFlags {
  try {
    return { kind: "ok", options: applyFlags(args, DEFAULT_OPTIONS, SWITCHES, VALUE_FLAGS) };
  } catch (error) {
    if (error instanceof FlagError) return { kind: "error", message: error.message };
    throw error;
  }
}

function opList(flag: string, text: string): Op[] {
  const parts = text.split(",");
  const unknown = parts.find((part) => !(OPS as readonly string[]).includes(part));
  if (unknown !== undefined) {
    throw new FlagError(`Flag "${flag}" is "${text}": expected some of ${OPS.join(",")}`);
  }
  // Cells run in the canonical order whatever order the flag names them in.
  return OPS.filter((op) => parts.includes(op));
}

/** What one run of the load driver (bench/compare_load.ts) does; its command line. */
export interface LoadSpec {
  /** Which system's client API the driver speaks. */
  readonly system: "etcd" | "tinykv";
  /** Servers to spread the connections over: the gateway, or etcd's members. */
  readonly endpoints: readonly string[];
  /** An operation to measure, or `preload` (write every key once, then report). */
  readonly op: Op | "preload";
  /** Requests in flight (closed loop). */
  readonly inFlight: number;
  /** Measured seconds. */
  readonly seconds: number;
  /** Unmeasured seconds before. */
  readonly warmupSeconds: number;
  /** Distinct keys. */
  readonly keys: number;
  /** Bytes per value. */
  readonly valueBytes: number;
  /** The server processes whose CPU is measured, by name. */
  readonly pids: Readonly<Record<string, number>>;
  /** Each request's deadline. */
  readonly deadlineMs: number;
}

/** The most gRPC channels the driver opens for one cell. */
export const CONNECTIONS_MAX = 8;

/**
 * How many channels (HTTP/2 connections) carry a cell: `min(inFlight, 8)`, but at least one per
 * endpoint, so that with etcd every member gets requests (etcd's own client balances round-robin
 * over its endpoints).
 */
export function connectionCount(inFlight: number, endpoints: number): number {
  return Math.max(endpoints, Math.min(inFlight, CONNECTIONS_MAX));
}

/** The driver's command line for `spec` (the inverse of {@linkcode parseLoadArgs}). */
export function loadArgs(spec: LoadSpec): string[] {
  return [
    `--system=${spec.system}`,
    `--endpoints=${spec.endpoints.join(",")}`,
    `--op=${spec.op}`,
    `--in-flight=${spec.inFlight}`,
    `--seconds=${spec.seconds}`,
    `--warmup-seconds=${spec.warmupSeconds}`,
    `--keys=${spec.keys}`,
    `--value-bytes=${spec.valueBytes}`,
    `--pids=${Object.entries(spec.pids).map(([name, pid]) => `${name}=${pid}`).join(",")}`,
    `--deadline-ms=${spec.deadlineMs}`,
  ];
}

/** Parses the driver's command line (every flag `--name=value`, all of them required). */
export function parseLoadArgs(args: readonly string[]): LoadSpec | string {
  const values = new Map<string, string>();
  for (const arg of args) {
    const match = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (match === null) return `Unknown argument "${arg}": expected --name=value`;
    values.set(match[1], match[2]);
  }
  try {
    return loadSpecOf(values);
  } catch (error) {
    if (error instanceof FlagError) return error.message;
    throw error;
  }
}

function loadSpecOf(values: Map<string, string>): LoadSpec {
  const get = (name: string) => {
    const value = values.get(name);
    if (value === undefined) throw new FlagError(`Flag "--${name}" is missing`);
    return value;
  };
  const system = get("system");
  if (system !== "etcd" && system !== "tinykv") {
    throw new FlagError(`Flag "--system" is "${system}": expected etcd or tinykv`);
  }
  const op = get("op");
  if (op !== "preload" && !(OPS as readonly string[]).includes(op)) {
    throw new FlagError(`Flag "--op" is "${op}": expected preload, ${OPS.join(", ")}`);
  }
  const endpoints = get("endpoints").split(",").filter((e) => e !== "");
  if (endpoints.length === 0) throw new FlagError(`Flag "--endpoints" is empty`);
  return {
    system,
    endpoints,
    op: op as Op | "preload",
    inFlight: integer("--in-flight", get("in-flight"), 100_000),
    seconds: positiveNumber("--seconds", get("seconds"), 3600),
    warmupSeconds: nonNegative("--warmup-seconds", get("warmup-seconds")),
    keys: integer("--keys", get("keys"), 10_000_000),
    valueBytes: integer("--value-bytes", get("value-bytes"), 1 << 20),
    pids: pidsOf(get("pids")),
    deadlineMs: integer("--deadline-ms", get("deadline-ms"), 600_000),
  };
}

function nonNegative(flag: string, text: string): number {
  return text === "0" ? 0 : positiveNumber(flag, text, 600);
}

function pidsOf(text: string): Record<string, number> {
  const pids: Record<string, number> = {};
  for (const part of text.split(",").filter((p) => p !== "")) {
    const match = /^([^=]+)=(\d+)$/.exec(part);
    if (match === null) throw new FlagError(`Flag "--pids" has "${part}": expected name=pid`);
    pids[match[1]] = Number(match[2]);
  }
  return pids;
}
