/**
 * The results of `deno task bench:compare` and their rendering: what the load driver measures in
 * one cell, the per-1000-operation CPU figures derived from it, the TinyKV/etcd ratios of matching
 * cells, and the markdown tables printed at the end (one per TinyKV shard count, then failover,
 * the replica move and the idle cost). Everything here is pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ratio } from "./compare_report.ts";
 *
 * assert.equal(ratio(50, 100), 0.5);
 * assert.ok(Number.isNaN(ratio(50, 0)));
 * ```
 *
 * @module
 */
import type { LogSummary } from "./compare_dev_output.ts";
import type { Op } from "./compare_flags.ts";
import { median } from "./compare_stats.ts";

/** The two systems compared. */
export type System = "etcd" | "tinykv";

/** What the load driver (bench/compare_load.ts) reports for one cell, as JSON on its stdout. */
export interface LoadMeasurement {
  /** The operation. */
  readonly op: Op;
  /** Requests in flight. */
  readonly inFlight: number;
  /** Separate gRPC channels (HTTP/2 connections) the requests were spread over. */
  readonly connections: number;
  /** Wall time from the start of the measured window until the last request answered. */
  readonly seconds: number;
  /** Operations that succeeded in the measured window. */
  readonly ops: number;
  /** Requests that failed (a get of a preloaded key that found nothing included). */
  readonly errors: number;
  /** Errors by kind, e.g. `{"deadlineExceeded": 3}`. */
  readonly errorKinds: Readonly<Record<string, number>>;
  /** The first failure, `kind: message`. */
  readonly firstError: string | undefined;
  /** Median latency of the successful requests. */
  readonly p50Ms: number;
  /** 99th percentile latency. */
  readonly p99Ms: number;
  /** 99.9th percentile latency. */
  readonly p999Ms: number;
  /** CPU-seconds each server process used over the measured window, keyed by its name. */
  readonly serverCpuSeconds: Readonly<Record<string, number>>;
  /** CPU-seconds the load driver itself used over the measured window. */
  readonly driverCpuSeconds: number;
  /** Cores the rest of the machine used meanwhile (other processes skew a cell). */
  readonly otherCores: number;
}

/** One measured cell: a system, its shard count (TinyKV), an operation and requests in flight. */
export interface CellResult extends LoadMeasurement {
  /** Which system. */
  readonly system: System;
  /** TinyKV's shard count; null for etcd. */
  readonly shards: number | null;
  /** Successful operations per second. */
  readonly opsPerSecond: number;
  /** The sum of {@linkcode LoadMeasurement.serverCpuSeconds}. */
  readonly serverCpuTotalSeconds: number;
  /** Server CPU-seconds per 1000 successful operations. */
  readonly serverCpuSecondsPer1000: number;
  /** Load driver CPU-seconds per 1000 successful operations. */
  readonly driverCpuSecondsPer1000: number;
}

/** `numerator / denominator`, NaN when either is missing, not finite, or the denominator is 0. */
export function ratio(numerator: number | undefined, denominator: number | undefined): number {
  if (numerator === undefined || denominator === undefined) return NaN;
  if (!Number.isFinite(numerator) || !Number.isFinite(denominator) || denominator === 0) {
    return NaN;
  }
  return numerator / denominator;
}

/** CPU-seconds per 1000 operations; NaN when nothing succeeded. */
export function perThousandOps(cpuSeconds: number, ops: number): number {
  return ops > 0 ? (cpuSeconds / ops) * 1000 : NaN;
}

/** Labels a driver's measurement and derives its rates. */
export function toCellResult(
  measurement: LoadMeasurement,
  labels: { system: System; shards: number | null },
): CellResult {
  const serverCpuTotalSeconds = Object.values(measurement.serverCpuSeconds)
    .reduce((sum, n) => sum + n, 0);
  return {
    ...measurement,
    ...labels,
    opsPerSecond: measurement.seconds > 0 ? measurement.ops / measurement.seconds : NaN,
    serverCpuTotalSeconds,
    serverCpuSecondsPer1000: perThousandOps(serverCpuTotalSeconds, measurement.ops),
    driverCpuSecondsPer1000: perThousandOps(measurement.driverCpuSeconds, measurement.ops),
  };
}

/** A TinyKV cell beside the etcd cell of the same operation and requests in flight. */
export interface ComparisonRow {
  /** The operation. */
  readonly op: Op;
  /** Requests in flight. */
  readonly inFlight: number;
  /** etcd's cell, if etcd ran. */
  readonly etcd: CellResult | undefined;
  /** TinyKV's cell, if it ran. */
  readonly tinykv: CellResult | undefined;
  /** TinyKV ops/s over etcd ops/s. */
  readonly opsRatio: number;
  /** TinyKV p50 over etcd p50. */
  readonly p50Ratio: number;
}

/**
 * Pairs the cells of one TinyKV shard count with etcd's, by operation and requests in flight, in
 * the order the TinyKV cells ran (etcd cells without a TinyKV partner come last).
 */
export function compareCells(
  etcd: readonly CellResult[],
  tinykv: readonly CellResult[],
): ComparisonRow[] {
  const key = (cell: CellResult) => `${cell.op}/${cell.inFlight}`;
  const etcdByKey = new Map(etcd.map((cell) => [key(cell), cell]));
  const rows: ComparisonRow[] = tinykv.map((cell) => row(etcdByKey.get(key(cell)), cell));
  const paired = new Set(tinykv.map(key));
  for (const cell of etcd) if (!paired.has(key(cell))) rows.push(row(cell, undefined));
  return rows;
}

function row(etcd: CellResult | undefined, tinykv: CellResult | undefined): ComparisonRow {
  const cell = (tinykv ?? etcd)!;
  return {
    op: cell.op,
    inFlight: cell.inFlight,
    etcd,
    tinykv,
    opsRatio: ratio(tinykv?.opsPerSecond, etcd?.opsPerSecond),
    p50Ratio: ratio(tinykv?.p50Ms, etcd?.p50Ms),
  };
}

/** `n` with `digits` decimals, or `—` when it is missing or not finite. */
export function fixed(n: number | undefined | null, digits: number): string {
  return n === undefined || n === null || !Number.isFinite(n) ? "—" : n.toFixed(digits);
}

function latencies(cell: CellResult | undefined): string {
  if (cell === undefined) return "—";
  return `${fixed(cell.p50Ms, 2)} / ${fixed(cell.p99Ms, 2)} / ${fixed(cell.p999Ms, 2)}`;
}

function pair(
  etcd: CellResult | undefined,
  tinykv: CellResult | undefined,
  value: (cell: CellResult) => string,
): string {
  return `${etcd === undefined ? "—" : value(etcd)} / ${
    tinykv === undefined ? "—" : value(tinykv)
  }`;
}

const CELL_HEADER = [
  "| op | in flight | etcd ops/s | etcd p50 / p99 / p999 ms | TinyKV ops/s " +
  "| TinyKV p50 / p99 / p999 ms | ops ratio | p50 ratio | errors etcd / TinyKV " +
  "| server CPU-s / 1000 ops etcd / TinyKV | driver CPU-s / 1000 ops etcd / TinyKV " +
  "| other load, cores etcd / TinyKV |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
];

/** The markdown table of one TinyKV shard count against etcd (ratios are TinyKV / etcd). */
export function renderCellTable(shards: number, rows: readonly ComparisonRow[]): string {
  const lines = [
    `### TinyKV with ${shards} shard${shards === 1 ? "" : "s"} against etcd`,
    "",
    ...CELL_HEADER,
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.op} | ${r.inFlight} | ${fixed(r.etcd?.opsPerSecond, 0)} | ${latencies(r.etcd)} ` +
        `| ${fixed(r.tinykv?.opsPerSecond, 0)} | ${latencies(r.tinykv)} ` +
        `| ${fixed(r.opsRatio, 2)} | ${fixed(r.p50Ratio, 2)} ` +
        `| ${pair(r.etcd, r.tinykv, (c) => String(c.errors))} ` +
        `| ${pair(r.etcd, r.tinykv, (c) => fixed(c.serverCpuSecondsPer1000, 3))} ` +
        `| ${pair(r.etcd, r.tinykv, (c) => fixed(c.driverCpuSecondsPer1000, 3))} ` +
        `| ${pair(r.etcd, r.tinykv, (c) => fixed(c.otherCores, 2))} |`,
    );
  }
  return lines.join("\n");
}

/** One leader kill: how long until a write to the killed leader's shard succeeded again. */
export interface FailoverTrial {
  /** What was killed, e.g. `kvnode :27902 (leads shard 4)` or `etcd member m2`. */
  readonly victim: string;
  /** Milliseconds from the kill to the first successful write sent after it; null if none. */
  readonly failoverMs: number | null;
  /** Milliseconds from the kill until the cluster was whole again (victim back, leaders, voters). */
  readonly recoveredMs: number | null;
  /** What went wrong, if anything. */
  readonly error?: string;
}

/** The failover trials of one system. */
export interface FailoverResult {
  /** Which system. */
  readonly system: System;
  /** Where the trials ran, e.g. `TinyKV, 10 shards`. */
  readonly setup: string;
  /** Every counted trial, in order. */
  readonly trials: readonly FailoverTrial[];
  /** Median time to the first write, over trials that got one. */
  readonly medianMs: number;
  /** Longest time to the first write, over trials that got one. */
  readonly maxMs: number;
  /** Trials without a successful write (not in the median and max). */
  readonly failed: number;
  /** The median time until the cluster was whole again, in ms. */
  readonly recoveredMedianMs: number;
  /** Trials run again because the leader had moved before the kill (not counted). */
  readonly redone: number;
}

/** Summarizes trials: the median and max over those that got a write through. */
export function summarizeFailover(
  trials: readonly FailoverTrial[],
  labels: { system: System; setup: string; redone: number },
): FailoverResult {
  const times = trials.flatMap((t) => t.failoverMs === null ? [] : [t.failoverMs]);
  const recovered = trials.flatMap((t) => t.recoveredMs === null ? [] : [t.recoveredMs]);
  return {
    ...labels,
    trials,
    recoveredMedianMs: median(recovered),
    medianMs: median(times),
    maxMs: times.length === 0 ? NaN : Math.max(...times),
    failed: trials.length - times.length,
  };
}

/** The markdown table of the failover trials. */
export function renderFailover(results: readonly FailoverResult[]): string {
  const lines = [
    "### Leader failover (kill -9 of a leader, until the first successful write)",
    "",
    "| system | setup | trials | median ms | max ms | trials without a write " +
    "| whole again after, median s |",
    "|---|---|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    lines.push(
      `| ${r.system} | ${r.setup} | ${r.trials.length} | ${fixed(r.medianMs, 0)} ` +
        `| ${fixed(r.maxMs, 0)} | ${r.failed} | ${fixed(r.recoveredMedianMs / 1000, 1)} |`,
    );
  }
  const redone = results.filter((r) => r.redone > 0)
    .map((r) => `- ${r.system}: ${r.redone} trials run again: the leader moved before the kill`);
  if (redone.length > 0) lines.push("", ...redone);
  return lines.join("\n");
}

/** Moving one replica (bench/snapshot_move.ts), or why it could not be measured. */
export type MoveResult =
  | {
    readonly kind: "ok";
    readonly shardBytes: number;
    readonly copySeconds: number;
    readonly copyMibPerSecond: number;
    /** From the start of the copy until the source deleted its copy. */
    readonly moveSeconds: number;
    /** Everything bench/snapshot_move.ts reported. */
    readonly details: Readonly<Record<string, unknown>>;
  }
  | { readonly kind: "failed"; readonly message: string };

/** The lines about the replica move. */
export function renderMove(move: MoveResult): string {
  const title = "### Moving one replica (TinyKV, bench/snapshot_move.ts)";
  if (move.kind === "failed") return `${title}\n\nNot measured: ${move.message}`;
  const mib = move.shardBytes / (1024 * 1024);
  return `${title}\n\n` +
    `${fixed(mib, 0)} MiB (${fixed(move.shardBytes / 1e6, 0)} MB) copied to a new replica in ` +
    `${fixed(move.copySeconds, 1)} s (${fixed(move.copyMibPerSecond, 1)} MiB/s); the whole move ` +
    `(copy, promotion, removal, the source deleting its copy) took ${
      fixed(move.moveSeconds, 1)
    } s` +
    writerDuringMove(move.details);
}

/** What snapshot_move.ts's writer saw during the move, when it says. */
function writerDuringMove(details: Readonly<Record<string, unknown>>): string {
  const { writerOps, writerP50Ms, writerP99Ms, writerMaxMs } = details;
  if (typeof writerOps !== "number" || typeof writerP99Ms !== "number") return "";
  return `; a writer meanwhile: ${writerOps} puts, p50 ${fixed(Number(writerP50Ms), 1)} ms, ` +
    `p99 ${fixed(writerP99Ms, 1)} ms, max ${fixed(Number(writerMaxMs), 1)} ms`;
}

/** One process measured idle. */
export interface IdleProcess {
  /** `kvnode:<port>`, `gateway`, `placement`, `zookeeper`, or `etcd:m1` …. */
  readonly name: string;
  /** CPU over the window, in % of one core. */
  readonly cpuPercent: number;
  /** Resident memory (VmRSS) at the end of the window, in MiB. */
  readonly rssMib: number;
}

/** The idle cost of one cluster. */
export interface IdleResult {
  /** Which system. */
  readonly system: System;
  /** TinyKV's shard count; null for etcd. */
  readonly shards: number | null;
  /** Whether every shard got a leader and the cluster settled before the timeout. */
  readonly settled: boolean;
  /** Seconds from the start until it settled (or until the wait gave up). */
  readonly settleSeconds: number;
  /** Shards that had a leader when the wait ended. */
  readonly shardsWithLeader: number;
  /** Length of the measured window (0 when not measured). */
  readonly windowSeconds: number;
  /** Each process measured. */
  readonly processes: readonly IdleProcess[];
  /** All processes' CPU, in % of one core. */
  readonly totalCpuPercent: number;
  /** All processes' resident memory. */
  readonly totalRssMib: number;
  /** What else the report should say (not settled, unexpected exits). */
  readonly note?: string;
}

/** Sums the processes' CPU and memory into an {@linkcode IdleResult}. */
export function summarizeIdle(
  base: Omit<IdleResult, "totalCpuPercent" | "totalRssMib">,
): IdleResult {
  const total = (pick: (p: IdleProcess) => number) =>
    base.processes.reduce((sum, p) => sum + pick(p), 0);
  return {
    ...base,
    totalCpuPercent: total((p) => p.cpuPercent),
    totalRssMib: total((p) => p.rssMib),
  };
}

/** The markdown table of the idle measurements. */
export function renderIdle(results: readonly IdleResult[]): string {
  const lines = [
    "### Idle cost (no load)",
    "",
    "| system | shards | settled | shards with a leader | CPU % of one core | RSS MiB " +
    "| per process (CPU %, RSS MiB) |",
    "|---|---:|---|---:|---:|---:|---|",
  ];
  for (const r of results) {
    const perProcess = r.processes
      .map((p) => `${p.name} ${fixed(p.cpuPercent, 1)} %, ${fixed(p.rssMib, 0)}`)
      .join("; ");
    const settled = r.shards === null
      ? "—"
      : r.settled
      ? `yes, in ${fixed(r.settleSeconds, 0)} s`
      : `NO after ${fixed(r.settleSeconds, 0)} s`;
    lines.push(
      `| ${r.system} | ${r.shards ?? "—"} | ${settled} | ${
        r.shards === null ? "—" : r.shardsWithLeader
      } ` +
        `| ${fixed(r.totalCpuPercent, 1)} | ${fixed(r.totalRssMib, 0)} | ${perProcess} |`,
    );
  }
  const notes = results.flatMap((r) =>
    r.note === undefined ? [] : [`- ${r.system} ${r.shards ?? ""}: ${r.note}`]
  );
  return [...lines, ...(notes.length === 0 ? [] : ["", ...notes])].join("\n");
}

/** The machine the comparison ran on. */
export interface MachineInfo {
  /** `model name` of `/proc/cpuinfo`. */
  readonly cpuModel: string;
  /** Logical CPUs. */
  readonly cores: number;
  /** `MemTotal`. */
  readonly memoryMib: number;
  /** The Linux release. */
  readonly kernel: string;
  /** The Deno version. */
  readonly deno: string;
  /** etcd's version ("not run" with `--no-etcd`). */
  readonly etcd: string;
}

/** One line describing the machine. */
export function renderMachine(machine: MachineInfo): string {
  return `Machine: ${machine.cpuModel}, ${machine.cores} cores, ${
    fixed(machine.memoryMib / 1024, 1)
  } GiB, ` +
    `Linux ${machine.kernel}, Deno ${machine.deno}, etcd ${machine.etcd}`;
}

/** A TinyKV process that exited without being killed by the comparison. */
export interface UnexpectedExit {
  /** `kvnode:<port>`, `placement` or `gateway`. */
  readonly name: string;
  /** Its pid. */
  readonly pid: number;
  /** `exit code 1` or `killed by SIGSEGV`, as dev said. */
  readonly how: string;
  /** `Date.now()` when dev reported it. */
  readonly atMs: number;
  /** The last lines of its output, as dev quoted them. */
  readonly lastLines: string[];
}

/** The cells of one TinyKV cluster (one shard count). */
export interface TinyKvRun {
  /** The cluster's shard count. */
  readonly shards: number;
  /** Its cells, in the order they ran. */
  readonly cells: readonly CellResult[];
  /** Processes that exited without being killed by the comparison while it ran. */
  readonly unexpectedExits: readonly UnexpectedExit[];
  /** The service logs that hold warnings or errors. */
  readonly logs: readonly LogSummary[];
}

/** Everything one run of the comparison measured (the JSON output). */
export interface CompareResult {
  /** When the run started (ISO 8601). */
  readonly startedAt: string;
  /** How long the run took. */
  readonly durationSeconds: number;
  /** The machine it ran on. */
  readonly machine: MachineInfo;
  /** The options the run was given (see compare_flags.ts). */
  readonly options: Readonly<Record<string, unknown>>;
  /** How the cells were run (value size, keys, connections, deadlines). */
  readonly method: readonly string[];
  /** etcd's cells; null with `--no-etcd`. */
  readonly etcd: { readonly cells: readonly CellResult[] } | null;
  /** TinyKV's cells, one run per shard count. */
  readonly tinykv: readonly TinyKvRun[];
  /** Per TinyKV shard count, each cell beside etcd's with the ratios. */
  readonly comparisons: ReadonlyArray<{ shards: number; rows: readonly ComparisonRow[] }>;
  /** Failover trials, etcd's first. */
  readonly failover: readonly FailoverResult[];
  /** The replica move; null with `--no-move`. */
  readonly move: MoveResult | null;
  /** Idle costs, etcd's first. */
  readonly idle: readonly IdleResult[];
  /** Seconds each part took. */
  readonly phaseSeconds: Readonly<Record<string, number>>;
  /** Parts that failed, with why. */
  readonly errors: readonly string[];
}

/** The whole markdown report. */
export function renderReport(result: CompareResult): string {
  const sections = [
    `## TinyKV against etcd (${result.startedAt}, ${fixed(result.durationSeconds / 60, 1)} min)`,
    renderMachine(result.machine),
    result.method.map((line) => `- ${line}`).join("\n"),
    ...result.comparisons.map((c) => renderCellTable(c.shards, c.rows)),
  ];
  if (result.failover.length > 0) sections.push(renderFailover(result.failover));
  if (result.move !== null) sections.push(renderMove(result.move));
  if (result.idle.length > 0) sections.push(renderIdle(result.idle));
  const problems = renderProblems(result);
  if (problems !== "") sections.push(problems);
  const logs = renderLogs(result.tinykv);
  if (logs !== "") sections.push(logs);
  return sections.join("\n\n");
}

/** The warnings and errors TinyKV's services logged during the cells and trials. */
export function renderLogs(runs: readonly TinyKvRun[]): string {
  const lines: string[] = [];
  for (const run of runs) {
    for (const log of run.logs) {
      lines.push(
        `- ${run.shards} shard${run.shards === 1 ? "" : "s"}, ${log.file}: ${log.errors} errors, ` +
          `${log.warnings} warnings; ${log.samples.join("; ")}`,
      );
    }
  }
  return lines.length === 0
    ? ""
    : ["### TinyKV service logs: warnings and errors (cells and failover)", "", ...lines].join(
      "\n",
    );
}

/** Errors in cells, unexpected exits and failed parts; empty when there were none. */
export function renderProblems(result: CompareResult): string {
  const lines: string[] = [];
  const cells = [...(result.etcd?.cells ?? []), ...result.tinykv.flatMap((run) => run.cells)];
  for (const cell of cells.filter((c) => c.errors > 0)) {
    lines.push(
      `- ${cell.system}${cell.shards === null ? "" : ` ${cell.shards} shards`} ${cell.op} ` +
        `x${cell.inFlight}: ${cell.errors} errors ${JSON.stringify(cell.errorKinds)}, first: ` +
        `${cell.firstError ?? "—"}`,
    );
  }
  for (const run of result.tinykv) {
    for (const exit of run.unexpectedExits) {
      lines.push(
        `- TinyKV ${run.shards} shards: ${exit.name} exited (pid ${exit.pid}, ${exit.how})`,
      );
      for (const line of exit.lastLines) lines.push(`  > ${line}`);
    }
  }
  for (const error of result.errors) lines.push(`- ${error}`);
  return lines.length === 0 ? "" : ["### Problems", "", ...lines].join("\n");
}
