/**
 * The pure arithmetic of `deno task bench:compare`: latency quantiles, medians, and parsing what
 * `/proc` says about processes (`/proc/<pid>/stat` CPU times, `/proc/<pid>/status` memory) and
 * the machine (`/proc/stat`). Nothing here reads a file: the callers read `/proc` with `cat`
 * (Deno grants `/proc` reads only with `--allow-all`) and hand the text over.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LatencyRecorder, parseProcStats } from "./compare_stats.ts";
 *
 * const latencies = new LatencyRecorder();
 * for (let ms = 1; ms <= 100; ms++) latencies.add(ms);
 * assert.deepEqual(latencies.quantiles([0.5, 0.99]), [50, 99]);
 *
 * const stats = parseProcStats("42 (my app) S 1 42 42 0 -1 0 0 0 0 0 150 50 0 0 20 0 7 0 99\n");
 * assert.equal(stats.get(42)?.cpuTicks, 200);
 * ```
 *
 * @module
 */
import { mulberry32 } from "@tinykv/raft";

/** Latencies in milliseconds, in a buffer that grows as needed. */
export class LatencyRecorder {
  #values = new Float64Array(1 << 14);
  #count = 0;

  /** Records one latency. */
  add(ms: number): void {
    if (this.#count === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#count++] = ms;
  }

  /** How many latencies were recorded. */
  get count(): number {
    return this.#count;
  }

  /** The nearest-rank `q`-quantile of each of `qs` (NaN for each when nothing was recorded). */
  quantiles(qs: readonly number[]): number[] {
    const sorted = this.#values.slice(0, this.#count).sort();
    return qs.map((q) => quantileOfSorted(sorted, q));
  }
}

/**
 * The nearest-rank `q`-quantile (0 < q <= 1) of ascending `sorted`: the smallest value with at
 * least `q` of the values at or below it. NaN when `sorted` is empty.
 */
export function quantileOfSorted(sorted: ArrayLike<number>, q: number): number {
  if (!(q > 0 && q <= 1)) throw new RangeError(`Quantile ${q} is outside (0, 1]`);
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** The median of `values` (the mean of the two middle ones for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** What one line of `/proc/<pid>/stat` says about a process (times in clock ticks). */
export interface ProcStat {
  /** Its process id. */
  readonly pid: number;
  /** The command name, without the parentheses (it may hold spaces and parentheses). */
  readonly comm: string;
  /** utime + stime: CPU time of every thread of the process, live or exited. */
  readonly cpuTicks: number;
  /** Its threads now. */
  readonly threads: number;
}

/**
 * Parses one `/proc/<pid>/stat` line; undefined when it is not one. The command name sits in
 * parentheses and may itself hold spaces and `)`, so fields are counted from the last `)`.
 */
export function parseProcStatLine(line: string): ProcStat | undefined {
  const open = line.indexOf(" (");
  const close = line.lastIndexOf(")");
  if (open <= 0 || close < open) return undefined;
  const pid = Number(line.slice(0, open));
  // Field 3 (state) comes first after ") "; utime and stime are fields 14 and 15, threads 20.
  const fields = line.slice(close + 2).trim().split(/\s+/);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const threads = Number(fields[17]);
  if (![pid, utime, stime, threads].every(Number.isSafeInteger)) return undefined;
  return { pid, comm: line.slice(open + 2, close), cpuTicks: utime + stime, threads };
}

/** Parses the concatenated `/proc/<pid>/stat` lines `cat` printed, keyed by pid. */
export function parseProcStats(text: string): Map<number, ProcStat> {
  const stats = new Map<number, ProcStat>();
  for (const line of text.split("\n")) {
    const stat = parseProcStatLine(line);
    if (stat !== undefined) stats.set(stat.pid, stat);
  }
  return stats;
}

/**
 * Parses concatenated `/proc/<pid>/status` files: each process's resident memory (`VmRSS`) in
 * KiB, keyed by its `Pid:` line. A process without `VmRSS` (a zombie) is left out.
 */
export function parseStatusRssKib(text: string): Map<number, number> {
  const rss = new Map<number, number>();
  for (const block of text.split(/^(?=Name:)/m)) {
    const pid = /^Pid:\s+(\d+)\s*$/m.exec(block)?.[1];
    const kib = /^VmRSS:\s+(\d+) kB\s*$/m.exec(block)?.[1];
    if (pid !== undefined && kib !== undefined) rss.set(Number(pid), Number(kib));
  }
  return rss;
}

/** The machine's CPU time from the first (`cpu `) line of `/proc/stat`, in clock ticks. */
export interface MachineCpu {
  /** Every state but idle and iowait. */
  readonly busyTicks: number;
  /** Every state, idle included. */
  readonly totalTicks: number;
}

/** Parses the `cpu ` line of `/proc/stat` (anywhere in `text`); undefined when there is none. */
export function parseMachineCpu(text: string): MachineCpu | undefined {
  const line = /^cpu\s+([\d ]+)$/m.exec(text)?.[1];
  if (line === undefined) return undefined;
  // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
  const ticks = line.trim().split(/\s+/).slice(0, 8).map(Number);
  if (ticks.length < 5 || !ticks.every(Number.isSafeInteger)) return undefined;
  const totalTicks = ticks.reduce((sum, n) => sum + n, 0);
  return { busyTicks: totalTicks - ticks[3] - ticks[4], totalTicks };
}

/**
 * CPU-seconds each named process used between two samples (clock ticks of `ticksPerSecond`); a
 * process missing in either sample is NaN.
 */
export function cpuSecondsBetween(
  pids: Readonly<Record<string, number>>,
  samples: {
    before: ReadonlyMap<number, ProcStat>;
    after: ReadonlyMap<number, ProcStat>;
    ticksPerSecond: number;
  },
): Record<string, number> {
  const seconds: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    const before = samples.before.get(pid);
    const after = samples.after.get(pid);
    seconds[name] = before === undefined || after === undefined
      ? NaN
      : (after.cpuTicks - before.cpuTicks) / samples.ticksPerSecond;
  }
  return seconds;
}

/** The sum of `values`' own values. */
export function sumOf(values: Readonly<Record<string, number>>): number {
  return Object.values(values).reduce((sum, n) => sum + n, 0);
}

/** The first `model name` of `/proc/cpuinfo` ("unknown" when there is none). */
export function parseCpuModel(cpuinfo: string): string {
  return /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ?? "unknown";
}

/** `MemTotal` of `/proc/meminfo`, in KiB (NaN when there is none). */
export function parseMemTotalKib(meminfo: string): number {
  const kib = /^MemTotal:\s+(\d+) kB$/m.exec(meminfo)?.[1];
  return kib === undefined ? NaN : Number(kib);
}

/**
 * 32-bit random words from the project's one seeded PRNG (`mulberry32` of libs/raft), cheap enough
 * for a load driver's every request (crypto per request would cost it CPU).
 */
export function randomWords(seed: number): () => number {
  const next = mulberry32(seed >>> 0);
  return () => next() * 2 ** 32; // mulberry32 yields word / 2^32: this is the word, exactly
}
