/**
 * The command line of `deno task bench:watch` (bench/watch.ts): which systems and cells run and
 * for how long. Parsing is pure and returns a typed result; a bad flag is a message naming the
 * flag, the value and what was expected.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseWatchFlags } from "./watch_flags.ts";
 *
 * const parsed = parseWatchFlags(["--seconds", "2", "--watchers=1", "--shards", "1"]);
 * assert.equal(parsed.kind, "ok");
 * if (parsed.kind === "ok") {
 *   assert.equal(parsed.options.seconds, 2);
 *   assert.deepEqual(parsed.options.watchers, [1]);
 *   assert.deepEqual(parsed.options.shards, [1]);
 * }
 * ```
 *
 * @module
 */
import {
  applyFlags,
  FlagError,
  integerList,
  type Mutable,
  nonEmpty,
  nonNegativeNumber,
  positiveNumber,
  type ValueFlag,
} from "./flags.ts";
import { KEYS } from "./watch_workload.ts";

/** TinyKV's two watch APIs on its gateway: `tinykv.v1.KV/Watch`, and etcd's `Watch`. */
export type TinyKvApi = "kv" | "etcd";

/** Both, in the order their cells run. */
export const TINYKV_APIS: readonly TinyKvApi[] = ["kv", "etcd"];

/** The most watchers of one cell (each is its own HTTP/2 connection). */
export const WATCHERS_MAX = 256;
/** The most puts in flight: half the keys, since a key has at most one put in flight. */
export const IN_FLIGHT_MAX = KEYS / 2;

/** What one run of the watch benchmark does. */
export interface WatchOptions {
  /** Measured seconds of writes per cell (after the warmup). */
  readonly seconds: number;
  /** Unmeasured seconds of the same writes before each cell's measured ones. */
  readonly warmupSeconds: number;
  /** TinyKV shard counts, one fresh cluster each. */
  readonly shards: readonly number[];
  /** Watchers per cell. */
  readonly watchers: readonly number[];
  /** Puts in flight per cell. */
  readonly concurrency: readonly number[];
  /** TinyKV's watch APIs measured. */
  readonly apis: readonly TinyKvApi[];
  /** Run etcd (false with `--no-etcd`). */
  readonly etcd: boolean;
  /** Run TinyKV (false with `--no-tinykv`). */
  readonly tinykv: boolean;
  /** Print the JSON result on stdout (the report then goes to stderr). */
  readonly json: boolean;
  /** Also write the JSON result to this file. */
  readonly out: string | undefined;
  /** Print the usage and stop. */
  readonly help: boolean;
}

/** The defaults: about 2.5 minutes in all. */
export const DEFAULT_OPTIONS: WatchOptions = {
  seconds: 10,
  warmupSeconds: 2,
  shards: [1, 10],
  watchers: [1, 16],
  concurrency: [16],
  apis: TINYKV_APIS,
  etcd: true,
  tinykv: true,
  json: false,
  out: undefined,
  help: false,
};

/** The usage text of `--help`. */
export const USAGE = `Usage: deno task bench:watch [flags]

Watches of TinyKV (3 kvnodes, placement, ZooKeeper, a gateway; through tinykv.v1.KV/Watch and
through the etcd Watch API of its gateway) against a 3-member etcd 3.4's Watch, on this machine.
A cell: W watchers of one prefix, one writer keeping C puts of 256-byte values in flight over
${KEYS} keys; puts/s, events/s, latency from a put's acknowledgment to its event, and whether
every watcher got every acknowledged put exactly once and in each key's order.

  --seconds N            measured seconds of writes per cell (default 10)
  --warmup-seconds N     unmeasured seconds of writes before (default 2)
  --shards LIST          TinyKV shard counts, a fresh cluster each (default 1,10)
  --watchers LIST        watchers per cell, at most ${WATCHERS_MAX} (default 1,16)
  --concurrency LIST     puts in flight per cell, at most ${IN_FLIGHT_MAX} (default 16)
  --apis LIST            TinyKV's watch APIs: kv, etcd (default kv,etcd)
  --no-etcd, --no-tinykv skip that system
  --json                 the result as JSON on stdout (report and progress on stderr)
  --out FILE             also write the JSON result to FILE
  --help                 this text

Exits 1 when a watcher missed, repeated or reordered an event, or a part failed.`;

/** The parsed command line, or why it cannot be parsed. */
export type ParsedWatchFlags =
  | { readonly kind: "ok"; readonly options: WatchOptions }
  | { readonly kind: "error"; readonly message: string };

const SWITCHES: Readonly<Record<string, (options: Mutable<WatchOptions>) => void>> = {
  "--no-etcd": (o) => (o.etcd = false),
  "--no-tinykv": (o) => (o.tinykv = false),
  "--json": (o) => (o.json = true),
  "--help": (o) => (o.help = true),
};

const VALUE_FLAGS: Readonly<Record<string, ValueFlag<WatchOptions>>> = {
  "--seconds": (o, v, f) => (o.seconds = positiveNumber(f, v, 3600)),
  "--warmup-seconds": (o, v, f) => (o.warmupSeconds = nonNegativeNumber(f, v, 600)),
  "--shards": (o, v, f) => (o.shards = integerList(f, v, 4096)),
  "--watchers": (o, v, f) => (o.watchers = integerList(f, v, WATCHERS_MAX)),
  "--concurrency": (o, v, f) => (o.concurrency = integerList(f, v, IN_FLIGHT_MAX)),
  "--apis": (o, v, f) => (o.apis = apiList(f, v)),
  "--out": (o, v, f) => (o.out = nonEmpty(f, v)),
};

/** Parses the flags (`--flag value` or `--flag=value`); see {@linkcode USAGE}. */
export function parseWatchFlags(args: readonly string[]): ParsedWatchFlags {
  let options: Mutable<WatchOptions>;
  try {
    options = applyFlags(args, DEFAULT_OPTIONS, SWITCHES, VALUE_FLAGS);
  } catch (error) {
    if (error instanceof FlagError) return { kind: "error", message: error.message };
    throw error;
  }
  if (!options.etcd && !options.tinykv) {
    return { kind: "error", message: `Flags "--no-etcd" and "--no-tinykv" leave nothing to run` };
  }
  return { kind: "ok", options };
}

function apiList(flag: string, text: string): TinyKvApi[] {
  const parts = text.split(",");
  if (parts.some((part) => !(TINYKV_APIS as readonly string[]).includes(part))) {
    throw new FlagError(`Flag "${flag}" is "${text}": expected some of ${TINYKV_APIS.join(",")}`);
  }
  // Cells run in the canonical order whatever order the flag names the APIs in.
  return TINYKV_APIS.filter((api) => parts.includes(api));
}
