/**
 * Reading what `tools/dev.ts` prints, line by line, to follow the dev cluster's processes: the
 * table of processes it prints once every shard has a leader (service, address, pid), the
 * `cluster serves:` line, and from then on the exits and restarts of its members. Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDevLine } from "./compare_dev_output.ts";
 *
 * assert.deepEqual(parseDevLine("dev: restarted kvnode :27902 (pid 4150)"), {
 *   kind: "restarted",
 *   name: "kvnode:27902",
 *   pid: 4150,
 * });
 * ```
 *
 * @module
 */

/** Something dev said about its processes. */
export type DevEvent =
  /** A row of the table of processes: `name` is `zookeeper`, `placement`, `gateway` or `kvnode:<port>`. */
  | {
    readonly kind: "process";
    readonly name: string;
    readonly address: string;
    readonly pid: number;
  }
  /** The cluster serves (`shardsWithLeader` of `shards` have a leader). */
  | { readonly kind: "serving"; readonly shardsWithLeader: number; readonly shards: number }
  | { readonly kind: "exited"; readonly name: string; readonly pid: number; readonly how: string }
  | { readonly kind: "restarted"; readonly name: string; readonly pid: number }
  | { readonly kind: "servesAgain"; readonly name: string };

const TABLE_ROW = /^\s+(ZooKeeper|placement|gateway|kvnode)\s+(\S+:(\d+))\s+(\d+)\s/;
const SERVING = /^dev: cluster serves: .* (\d+)\/(\d+) shards with a leader/;
const EXITED = /^dev: (kvnode|placement|gateway) :(\d+) exited \(pid (\d+), (.+)\)$/;
const RESTARTED = /^dev: restarted (kvnode|placement|gateway) :(\d+) \(pid (\d+)\)/;
const SERVES_AGAIN = /^dev: (kvnode|placement|gateway) :(\d+) serves again/;

/** The name a process goes by in the results: `kvnode:<port>` for a kvnode, else its service. */
export function processName(service: string, port: number | string): string {
  return service === "kvnode" ? `kvnode:${port}` : service;
}

/** Parses one line dev printed; undefined for the lines that say nothing about processes. */
export function parseDevLine(line: string): DevEvent | undefined {
  let match = TABLE_ROW.exec(line);
  if (match !== null) {
    const service = match[1] === "ZooKeeper" ? "zookeeper" : match[1];
    return {
      kind: "process",
      name: processName(service, match[3]),
      address: match[2],
      pid: Number(match[4]),
    };
  }
  if ((match = SERVING.exec(line)) !== null) {
    return { kind: "serving", shardsWithLeader: Number(match[1]), shards: Number(match[2]) };
  }
  if ((match = EXITED.exec(line)) !== null) {
    return {
      kind: "exited",
      name: processName(match[1], match[2]),
      pid: Number(match[3]),
      how: match[4],
    };
  }
  if ((match = RESTARTED.exec(line)) !== null) {
    return { kind: "restarted", name: processName(match[1], match[2]), pid: Number(match[3]) };
  }
  if ((match = SERVES_AGAIN.exec(line)) !== null) {
    return { kind: "servesAgain", name: processName(match[1], match[2]) };
  }
  return undefined;
}

/** The warnings and errors in one service log (JSON lines with a `level` and a `msg`). */
export interface LogSummary {
  /** The log file's name, e.g. `kvnode-24331-2026-12-03.log`. */
  readonly file: string;
  readonly warnings: number;
  readonly errors: number;
  /** The first few distinct messages (`level: msg`), in order. */
  readonly samples: readonly string[];
}

/** Distinct messages a {@linkcode LogSummary} keeps. */
export const LOG_SAMPLES_MAX = 5;

/** Counts the `warn` and `error` lines of a service log; lines that are not JSON are skipped. */
export function summarizeLog(file: string, text: string): LogSummary {
  let warnings = 0;
  let errors = 0;
  const samples: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.includes('"level":"warn"') && !line.includes('"level":"error"')) continue;
    let entry: { level?: unknown; msg?: unknown };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (entry.level === "warn") warnings++;
    else if (entry.level === "error") errors++;
    else continue;
    const sample = `${entry.level}: ${String(entry.msg)}`;
    if (samples.length < LOG_SAMPLES_MAX && !samples.includes(sample)) samples.push(sample);
  }
  return { file, warnings, errors, samples };
}
