/**
 * The results of `deno task bench:watch` and their rendering: what one cell measured, the rates
 * derived from it, each TinyKV cell beside the etcd cell with the same watchers and puts in flight
 * (ratios TinyKV / etcd), and the markdown report, whose correctness section says loudly when any
 * watcher missed, repeated or reordered an event. Everything here is pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { subjectName } from "./watch_report.ts";
 *
 * assert.equal(subjectName("tinykv-etcd"), "TinyKV, etcd Watch");
 * ```
 *
 * @module
 */
import type { UnexpectedExit } from "./compare_report.ts";
import { fixed, type MachineInfo, ratio, renderMachine } from "./compare_report.ts";
import { type DeliveryCheck, isClean, type LatencySummary } from "./watch_check.ts";

/**
 * What is watched through what: etcd through its `Watch`; TinyKV through `tinykv.v1.KV/Watch`, or
 * through the etcd `Watch` its gateway serves.
 */
export type Subject = "etcd" | "tinykv-kv" | "tinykv-etcd";

/** The name of a subject in the report. */
export function subjectName(subject: Subject): string {
  switch (subject) {
    case "etcd":
      return "etcd, etcd Watch";
    case "tinykv-kv":
      return "TinyKV, KV.Watch";
    case "tinykv-etcd":
      return "TinyKV, etcd Watch";
    default: {
      const never: never = subject;
      throw new Error(`Unknown subject ${JSON.stringify(never)}`);
    }
  }
}

/** What one cell measured. */
export interface WatchMeasurement {
  /** What was watched through what. */
  readonly subject: Subject;
  /** TinyKV's shard count; null for etcd. */
  readonly shards: number | null;
  /** Watchers, each on its own HTTP/2 connection. */
  readonly watchers: number;
  /** Puts the writer kept in flight. */
  readonly inFlight: number;
  /** From the start of the measured window until its last put was answered. */
  readonly writeSeconds: number;
  /** From the start of the measured window until every watcher had its events (the CPU window). */
  readonly seconds: number;
  /** Milliseconds from the last answer until every watcher had every event (or the bound). */
  readonly drainMs: number;
  /** Puts of the measured window that were acknowledged. */
  readonly puts: number;
  /** Puts of the window (and warmup) that failed; their keys were retired. */
  readonly putErrors: number;
  /** Failed puts by kind, e.g. `{"deadlineExceeded": 3}`. */
  readonly putErrorKinds: Readonly<Record<string, number>>;
  /** The first failure, `kind: message`. */
  readonly firstPutError: string | undefined;
  /** Put latency (send to acknowledgment) of the acknowledged puts of the window. */
  readonly putLatency: LatencySummary;
  /** Delivery latency (acknowledgment to first arrival), every watcher; negative ones as 0. */
  readonly latency: LatencySummary;
  /** Delivery latency from the put's send to the event's first arrival, every watcher. */
  readonly sinceSendLatency: LatencySummary;
  /** Deliveries that arrived before their put's acknowledgment (counted as 0 in `latency`). */
  readonly beforeAck: number;
  /** The delivery check, summed over the watchers. */
  readonly check: DeliveryCheck;
  /** Watchers whose stream ended before the cell did, with why. */
  readonly watcherFailures: readonly string[];
  /** CPU-seconds each server process used over `seconds`, keyed by its name. */
  readonly serverCpuSeconds: Readonly<Record<string, number>>;
  /** CPU-seconds this process (the writer and the watchers) used over `seconds`. */
  readonly driverCpuSeconds: number;
  /** Cores the rest of the machine used meanwhile. */
  readonly otherCores: number;
}

/** A cell with its rates. */
export interface WatchCell extends WatchMeasurement {
  /** Acknowledged puts of the window per second of `writeSeconds`. */
  readonly putsPerSecond: number;
  /** Events delivered (every watcher, first deliveries of the window's puts) per second. */
  readonly eventsPerSecond: number;
  /** The sum of the server processes' CPU-seconds. */
  readonly serverCpuTotalSeconds: number;
  /** Server CPU-seconds per 1000 delivered events. */
  readonly serverCpuSecondsPer1000Events: number;
  /** Driver CPU-seconds per 1000 delivered events. */
  readonly driverCpuSecondsPer1000Events: number;
  /** Cores the driver used: near 1, it was the bottleneck (one JavaScript thread). */
  readonly driverCores: number;
}

function perThousand(cpuSeconds: number, events: number): number {
  return events > 0 ? (cpuSeconds / events) * 1000 : NaN;
}

/** Derives a cell's rates. */
export function toWatchCell(measurement: WatchMeasurement): WatchCell {
  const serverCpuTotalSeconds = Object.values(measurement.serverCpuSeconds)
    .reduce((sum, n) => sum + n, 0);
  const events = measurement.check.delivered;
  return {
    ...measurement,
    putsPerSecond: ratio(measurement.puts, measurement.writeSeconds),
    eventsPerSecond: ratio(events, measurement.seconds),
    serverCpuTotalSeconds,
    serverCpuSecondsPer1000Events: perThousand(serverCpuTotalSeconds, events),
    driverCpuSecondsPer1000Events: perThousand(measurement.driverCpuSeconds, events),
    driverCores: ratio(measurement.driverCpuSeconds, measurement.seconds),
  };
}

/** Whether every watcher of a cell got every acknowledged put once, in order, and stayed open. */
export function isCorrect(cell: WatchMeasurement): boolean {
  return isClean(cell.check) && cell.watcherFailures.length === 0;
}

/** A TinyKV cell beside etcd's cell of the same watchers and puts in flight. */
export interface WatchComparisonRow {
  /** The TinyKV cell. */
  readonly tinykv: WatchCell;
  /** etcd's, if etcd ran. */
  readonly etcd: WatchCell | undefined;
  /** TinyKV puts/s over etcd's. */
  readonly putsRatio: number;
  /** TinyKV events/s over etcd's. */
  readonly eventsRatio: number;
  /** TinyKV delivery p50 over etcd's. */
  readonly p50Ratio: number;
  /** TinyKV delivery p99 over etcd's. */
  readonly p99Ratio: number;
  /** TinyKV p50 from send to event over etcd's. */
  readonly sinceSendP50Ratio: number;
  /** TinyKV server CPU-s per 1000 events over etcd's. */
  readonly cpuRatio: number;
}

/** Pairs each TinyKV cell with etcd's cell of the same watchers and puts in flight. */
export function compareWatchCells(cells: readonly WatchCell[]): WatchComparisonRow[] {
  const key = (cell: WatchCell) => `${cell.watchers}/${cell.inFlight}`;
  const etcd = new Map(cells.filter((c) => c.subject === "etcd").map((c) => [key(c), c]));
  return cells.filter((c) => c.subject !== "etcd").map((tinykv) => {
    const other = etcd.get(key(tinykv));
    return {
      tinykv,
      etcd: other,
      putsRatio: ratio(tinykv.putsPerSecond, other?.putsPerSecond),
      eventsRatio: ratio(tinykv.eventsPerSecond, other?.eventsPerSecond),
      p50Ratio: ratio(tinykv.latency.p50Ms, other?.latency.p50Ms),
      p99Ratio: ratio(tinykv.latency.p99Ms, other?.latency.p99Ms),
      sinceSendP50Ratio: ratio(tinykv.sinceSendLatency.p50Ms, other?.sinceSendLatency.p50Ms),
      cpuRatio: ratio(tinykv.serverCpuSecondsPer1000Events, other?.serverCpuSecondsPer1000Events),
    };
  });
}

/** The TinyKV processes that exited unexpectedly while one cluster ran. */
export interface ClusterExits {
  /** The cluster's shard count. */
  readonly shards: number;
  /** Its unexpected exits, in order. */
  readonly exits: readonly UnexpectedExit[];
}

/** Everything one run measured (the JSON output). */
export interface WatchResult {
  /** When the run started (ISO 8601). */
  readonly startedAt: string;
  /** How long it took. */
  readonly durationSeconds: number;
  /** The machine it ran on. */
  readonly machine: MachineInfo;
  /** The options it was given (watch_flags.ts). */
  readonly options: Readonly<Record<string, unknown>>;
  /** How the cells ran. */
  readonly method: readonly string[];
  /** Every cell, in the order they ran. */
  readonly cells: readonly WatchCell[];
  /** Each TinyKV cell beside etcd's. */
  readonly comparisons: readonly WatchComparisonRow[];
  /** Whether every watcher of every cell got everything once and in order. */
  readonly correct: boolean;
  /** TinyKV processes that exited unexpectedly. */
  readonly unexpectedExits: readonly ClusterExits[];
  /** Seconds each part took. */
  readonly phaseSeconds: Readonly<Record<string, number>>;
  /** What failed (a part, a cell), with why. */
  readonly errors: readonly string[];
}

/** `1 shard`, `10 shards`. */
export function shardsLabel(shards: number): string {
  return `${shards} shard${shards === 1 ? "" : "s"}`;
}

/** A cell's name: subject, shards, watchers and puts in flight. */
export function cellLabel(cell: WatchMeasurement): string {
  const shards = cell.shards === null ? "" : ` ${shardsLabel(cell.shards)}`;
  return `${subjectName(cell.subject)}${shards}, ${cell.watchers} watcher${
    cell.watchers === 1 ? "" : "s"
  }, ${cell.inFlight} in flight`;
}

const CELL_HEADER = [
  "| watched | shards | watchers | in flight | puts/s | events/s | put p50 ms " +
  "| after ack p50 / p99 / max ms | before ack | after send p50 / p99 ms " +
  "| missing / dup / out of order / unexpected | put errors | server CPU-s / 1000 events " +
  "| driver CPU-s / 1000 events | driver cores | other load, cores |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
];

/** `n (p %)` of `n` out of `total`; just `n` when the total is 0. */
function countWithShare(n: number, total: number): string {
  return total > 0 ? `${n} (${fixed((n / total) * 100, 0)} %)` : String(n);
}

/** The table of every cell; delivery latencies are per event, every watcher. */
export function renderCells(cells: readonly WatchCell[]): string {
  const lines = ["### Cells", "", ...CELL_HEADER];
  for (const c of cells) {
    const faults = `${c.check.missing} / ${c.check.duplicated} / ${c.check.outOfOrder} / ` +
      `${c.check.unexpected}`;
    lines.push(
      `| ${subjectName(c.subject)} | ${c.shards ?? "—"} | ${c.watchers} | ${c.inFlight} ` +
        `| ${fixed(c.putsPerSecond, 0)} | ${fixed(c.eventsPerSecond, 0)} ` +
        `| ${fixed(c.putLatency.p50Ms, 2)} ` +
        `| ${fixed(c.latency.p50Ms, 2)} / ${fixed(c.latency.p99Ms, 2)} / ` +
        `${fixed(c.latency.maxMs, 2)} | ${countWithShare(c.beforeAck, c.latency.count)} ` +
        `| ${fixed(c.sinceSendLatency.p50Ms, 2)} / ${fixed(c.sinceSendLatency.p99Ms, 2)} ` +
        `| ${isCorrect(c) ? faults : `**${faults}**`} | ${c.putErrors} ` +
        `| ${fixed(c.serverCpuSecondsPer1000Events, 3)} ` +
        `| ${fixed(c.driverCpuSecondsPer1000Events, 3)} | ${fixed(c.driverCores, 2)} ` +
        `| ${fixed(c.otherCores, 2)} |`,
    );
  }
  return lines.join("\n");
}

const RATIO_HEADER = [
  "| TinyKV watched through | shards | watchers | in flight | puts/s | events/s " +
  "| after ack p50 | after ack p99 | after send p50 | server CPU-s / 1000 events |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
];

/** The ratios TinyKV / etcd of each TinyKV cell (above 1: TinyKV more; latency and CPU: worse). */
export function renderRatios(rows: readonly WatchComparisonRow[]): string {
  const lines = ["### TinyKV / etcd", "", ...RATIO_HEADER];
  for (const r of rows) {
    const api = r.tinykv.subject === "tinykv-kv" ? "KV.Watch" : "etcd Watch";
    lines.push(
      `| ${api} | ${r.tinykv.shards ?? "—"} | ${r.tinykv.watchers} | ${r.tinykv.inFlight} ` +
        `| ${fixed(r.putsRatio, 2)} | ${fixed(r.eventsRatio, 2)} | ${fixed(r.p50Ratio, 2)} ` +
        `| ${fixed(r.p99Ratio, 2)} | ${fixed(r.sinceSendP50Ratio, 2)} | ${fixed(r.cpuRatio, 2)} |`,
    );
  }
  return lines.join("\n");
}

/** The faults of each cell that has any, one line each; empty when every cell is correct. */
export function deliveryFaults(cells: readonly WatchMeasurement[]): string[] {
  const lines: string[] = [];
  for (const cell of cells.filter((c) => !isCorrect(c))) {
    const { missing, duplicated, outOfOrder, unexpected, expected } = cell.check;
    lines.push(
      `${cellLabel(cell)}: ${missing} missing, ${duplicated} duplicated, ${outOfOrder} out of ` +
        `order, ${unexpected} unexpected (of ${expected} expected deliveries)` +
        cell.watcherFailures.map((failure) => `; ${failure}`).join(""),
    );
  }
  return lines;
}

/** The correctness section: one line when all is well, every fault in bold when not. */
export function renderCorrectness(cells: readonly WatchMeasurement[]): string {
  const faults = deliveryFaults(cells);
  if (faults.length === 0) {
    const expected = cells.reduce((sum, c) => sum + c.check.expected, 0);
    return `### Delivery\n\nEvery watcher of all ${cells.length} cells got each of the ` +
      `${expected} acknowledged puts it should have (summed over watchers) exactly once, and ` +
      "each key's events in the order of its writes.";
  }
  return [
    "### Delivery: FAULTS",
    "",
    "**Watchers missed, repeated or reordered events, or watches ended: this run FAILED.**",
    "",
    ...faults.map((line) => `- **${line}**`),
  ].join("\n");
}

/** Put failures, unexpected exits and failed parts; empty when there were none. */
export function renderProblems(result: WatchResult): string {
  const lines: string[] = [];
  for (const cell of result.cells.filter((c) => c.putErrors > 0)) {
    lines.push(
      `- ${cellLabel(cell)}: ${cell.putErrors} puts failed ${
        JSON.stringify(cell.putErrorKinds)
      }, ` +
        `first: ${cell.firstPutError ?? "—"}`,
    );
  }
  for (const { shards, exits } of result.unexpectedExits) {
    for (const exit of exits) {
      lines.push(`- TinyKV ${shards} shards: ${exit.name} exited (pid ${exit.pid}, ${exit.how})`);
      for (const line of exit.lastLines) lines.push(`  > ${line}`);
    }
  }
  for (const error of result.errors) lines.push(`- ${error}`);
  return lines.length === 0 ? "" : ["### Problems", "", ...lines].join("\n");
}

/** The whole markdown report. */
export function renderWatchReport(result: WatchResult): string {
  const sections = [
    `## Watch: TinyKV against etcd (${result.startedAt}, ${
      fixed(result.durationSeconds / 60, 1)
    } min)`,
    renderMachine(result.machine),
    result.method.map((line) => `- ${line}`).join("\n"),
    renderCells(result.cells),
  ];
  if (result.comparisons.length > 0) sections.push(renderRatios(result.comparisons));
  sections.push(renderCorrectness(result.cells));
  const problems = renderProblems(result);
  if (problems !== "") sections.push(problems);
  return sections.join("\n\n");
}
