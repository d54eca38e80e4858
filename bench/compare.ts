/**
 * `deno task bench:compare`: TinyKV against etcd, side by side, on this machine.
 *
 * 1. etcd 3.4 (Debian's `etcd-server`; installed with apt when `/usr/bin/etcd` is missing): three
 *    members on 127.0.0.1 with their own temp data dirs and ports, otherwise etcd's defaults
 *    (syncs on). Keys are preloaded, then every cell runs (below), then etcd's idle cost and its
 *    leader failover trials.
 * 2. TinyKV with each `--shards` count (1 and 10): a fresh dev cluster from `tools/dev.ts` (the
 *    real ZooKeeper, three kvnodes, placement, one gateway) on the comparison's own ports and temp
 *    dir, keys preloaded, every cell, and on the last one the leader failover trials.
 * 3. Moving one replica holding 500 MB (bench/snapshot_move.ts as a sub-process).
 * 4. TinyKV's idle cost with 10, 100 and 1000 shards, each a fresh cluster.
 *
 * A cell is one operation (put, linearizable get, or 95 % gets and 5 % puts of 256-byte values
 * over 20,000 keys) at one number of requests in flight (1, 16, 256), run by the load driver
 * (bench/compare_load.ts) in its own process — the same driver for both systems, each through
 * its own gRPC API with grpc-js — for `--seconds` after a warmup. Each cell reports ops/s,
 * p50/p99/p999 latency, errors, and CPU-seconds per 1000 operations of the server processes (etcd:
 * its three members; TinyKV: kvnodes, gateway, placement and ZooKeeper's java) and of the driver.
 *
 * The result is a markdown report on stdout (with `--json`, the JSON result instead; `--out FILE`
 * also writes the JSON to FILE); progress goes to stderr. Every process started is stopped by its
 * pid (SIGTERM, then SIGKILL after a bound), also on an error or Ctrl-C, and the temp dirs are
 * removed. `--help` lists the flags.
 *
 * Run (the `bench:compare` task):
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-net=127.0.0.1 \
 *   '--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy' \
 *   --allow-run=deno,/usr/bin/etcd,apt-get,cat,kill,getconf bench/compare.ts [flags]
 * ```
 *
 * @module
 */
import { errorMessage, machineInfo, part, say, stopOnSignal } from "./bench_run.ts";
import { ensureEtcd, EtcdCluster } from "./compare_etcd.ts";
import {
  etcdSubject,
  FAILOVER_DEADLINE_MS,
  runFailover,
  tinyKvSubject,
  WRITER_LOOPS,
  WRITER_STAGGER_MS,
} from "./compare_failover.ts";
import {
  type CompareOptions,
  loadArgs,
  type LoadSpec,
  type Op,
  parseCompareFlags,
  USAGE,
} from "./compare_flags.ts";
import { etcdIdle, tinyKvIdle } from "./compare_idle.ts";
import { runMove } from "./compare_move.ts";
import { findFreePlan, isPortFree } from "./compare_ports.ts";
import { clockTicksPerSecond, ProcessRegistry, sleep, stopProcess } from "./compare_procs.ts";
import {
  type CellResult,
  compareCells,
  type CompareResult,
  type FailoverResult,
  type IdleResult,
  type LoadMeasurement,
  type MoveResult,
  renderReport,
  type System,
  type TinyKvRun,
  toCellResult,
} from "./compare_report.ts";
import { TinyKvCluster } from "./compare_tinykv.ts";

/** This checkout: the load driver always runs from here. */
const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const VALUE_BYTES = 256;
/** Each request's deadline in the cells. */
const REQUEST_DEADLINE_MS = 10_000;
/** A cell may run this much longer than its warmup and measured seconds before it is stopped. */
const CELL_SLACK_MS = 120_000;
/** Bound on a preload. */
const PRELOAD_TIMEOUT_MS = 10 * 60_000;
/** Bound on a cluster being whole before its cells. */
const WHOLE_TIMEOUT_MS = 120_000;
/** The driver's permissions: gRPC to 127.0.0.1, grpc-js's environment, `cat` for `/proc`. */
const DRIVER_PERMISSIONS = [
  "--allow-net=127.0.0.1",
  "--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy",
  "--allow-run=cat,getconf",
];

/** What every part of a run shares. */
interface RunContext {
  readonly options: CompareOptions;
  readonly registry: ProcessRegistry;
  /** The TinyKV checkout whose tools/dev.ts runs. */
  readonly root: string;
  readonly ticksPerSecond: number;
  /** Where the driver's and the parts' logs go while the run lasts. */
  readonly logDir: string;
  /** What went wrong so far (a failed cell or part), for the report. */
  readonly errors: string[];
}

// --- Cells -------------------------------------------------------------------------------------

/** Runs the load driver once; returns what it printed as JSON. */
async function runDriver(context: RunContext, spec: LoadSpec, timeoutMs: number): Promise<unknown> {
  const { process, stdout } = context.registry.spawn(`driver ${spec.system} ${spec.op}`, {
    command: "deno",
    args: ["run", ...DRIVER_PERMISSIONS, `${REPO_ROOT}/bench/compare_load.ts`, ...loadArgs(spec)],
    cwd: REPO_ROOT,
    logFile: `${context.logDir}/driver.log`,
    captureStdout: true,
    onLine: (line) => say(`  driver: ${line}`),
  });
  const timer = setTimeout(() => stopProcess(process), timeoutMs);
  try {
    const status = await process.exited;
    const text = (await stdout).trim();
    if (!status.success || text === "") {
      throw new Error(
        `The load driver exited with code ${status.code} (${spec.system} ${spec.op})`,
      );
    }
    return JSON.parse(text.split("\n").at(-1)!);
  } finally {
    clearTimeout(timer);
  }
}

/** Where a system's cells go and which processes they measure. */
interface Target {
  readonly system: System;
  readonly shards: number | null;
  readonly endpoints: readonly string[];
  readonly pids: () => Record<string, number>;
}

function specOf(context: RunContext, target: Target, op: Op | "preload", inFlight: number) {
  const { options } = context;
  return {
    system: target.system,
    endpoints: target.endpoints,
    op,
    inFlight,
    seconds: options.seconds,
    warmupSeconds: options.warmupSeconds,
    keys: options.keys,
    valueBytes: VALUE_BYTES,
    pids: target.pids(),
    deadlineMs: REQUEST_DEADLINE_MS,
  };
}

/** Preloads the keys, then runs every cell of `target`. */
async function runCells(context: RunContext, target: Target): Promise<CellResult[]> {
  const { options } = context;
  const label = target.shards === null ? target.system : `${target.system} ${target.shards} shards`;
  const preload = await runDriver(
    context,
    specOf(context, target, "preload", 64),
    PRELOAD_TIMEOUT_MS,
  ) as { ops: number; errors: number; seconds: number; firstError?: string };
  say(
    `  ${label}: preloaded ${preload.ops} keys in ${preload.seconds.toFixed(1)} s` +
      (preload.errors > 0 ? ` (${preload.errors} failed: ${preload.firstError})` : ""),
  );
  const cells: CellResult[] = [];
  const cellMs = (options.seconds + options.warmupSeconds) * 1000 + CELL_SLACK_MS;
  for (const op of options.ops) {
    for (const inFlight of options.concurrency) {
      try {
        const measurement = await runDriver(context, specOf(context, target, op, inFlight), cellMs);
        const labels = { system: target.system, shards: target.shards };
        const cell = toCellResult(measurement as LoadMeasurement, labels);
        cells.push(cell);
        say(describeCell(label, cell));
      } catch (error) {
        // One failed cell (e.g. the driver was stopped at its bound) does not end the others.
        const message = `${label} ${op} x${inFlight}: ${errorMessage(error)}`;
        say(`  FAILED: ${message}`);
        context.errors.push(message);
      }
    }
  }
  return cells;
}

function describeCell(label: string, cell: CellResult): string {
  const errors = cell.errors === 0 ? "" : `, ${cell.errors} errors (first: ${cell.firstError})`;
  return `  ${label} ${cell.op} x${cell.inFlight}: ${cell.opsPerSecond.toFixed(0)} ops/s, ` +
    `p50 ${cell.p50Ms?.toFixed(2)} p99 ${cell.p99Ms?.toFixed(2)} p999 ${
      cell.p999Ms?.toFixed(2)
    } ms, ` +
    `server ${cell.serverCpuSecondsPer1000.toFixed(3)} / driver ` +
    `${cell.driverCpuSecondsPer1000.toFixed(3)} CPU-s per 1000 ops, others ` +
    `${cell.otherCores?.toFixed(2)} cores${errors}`;
}

// --- Parts -------------------------------------------------------------------------------------

/** etcd: cells, idle cost, failover trials. */
async function etcdPart(
  context: RunContext,
  into: { cells: CellResult[]; idle: IdleResult[]; failover: FailoverResult[] },
): Promise<void> {
  const plan = findFreePlan(isPortFree);
  const dir = await context.registry.tempDir("etcd-compare-");
  say(`etcd: starting 3 members (clients on ${plan.etcd.clientPort}-${plan.etcd.clientPort + 2})`);
  const etcd = await EtcdCluster.start(context.registry, { dir, ports: plan.etcd });
  try {
    const target = { system: "etcd" as const, shards: null, endpoints: etcd.endpoints };
    if (context.options.cells) {
      into.cells.push(...await runCells(context, { ...target, pids: () => etcd.pids() }));
    }
    if (context.options.idle) {
      say("etcd: idle cost");
      into.idle.push(await etcdIdle(etcd, context.ticksPerSecond));
    }
    if (context.options.failover) {
      say(`etcd: ${context.options.failoverTrials} failover trials`);
      const trials = context.options.failoverTrials;
      into.failover.push(await runFailover(etcdSubject(etcd), { trials, say }));
    }
  } finally {
    await etcd.stop();
    await context.registry.removeTempDir(dir);
  }
}

/** TinyKV with `shards` shards: cells, and the failover trials when `failover`. */
async function tinyKvPart(
  context: RunContext,
  shards: number,
  failover: FailoverResult[] | undefined,
): Promise<TinyKvRun> {
  const plan = findFreePlan(isPortFree);
  const dir = await context.registry.tempDir(`tinykv-compare-${shards}-`);
  say(`TinyKV ${shards} shards: starting a dev cluster (gateway on ${plan.tinykv.gateway})`);
  const cluster = await TinyKvCluster.start(context.registry, {
    root: context.root,
    dir,
    shards,
    ports: plan.tinykv,
    say,
  });
  try {
    await waitWhole(cluster);
    const cells = context.options.cells
      ? await runCells(context, {
        system: "tinykv",
        shards,
        endpoints: [cluster.gateway],
        pids: () => cluster.pids(),
      })
      : [];
    if (failover !== undefined) {
      say(`TinyKV ${shards} shards: ${context.options.failoverTrials} failover trials`);
      failover.push(
        await runFailover(tinyKvSubject(cluster), { trials: context.options.failoverTrials, say }),
      );
    }
    await cluster.stop();
    const logs = await cluster.logSummaries();
    return { shards, cells, unexpectedExits: cluster.unexpectedExits, logs };
  } finally {
    await cluster.stop();
    await context.registry.removeTempDir(dir);
  }
}

async function waitWhole(cluster: TinyKvCluster): Promise<void> {
  const deadline = Date.now() + WHOLE_TIMEOUT_MS;
  while (!(await cluster.view()).view.whole) {
    if (Date.now() > deadline) {
      throw new Error(`The cluster was not whole within ${WHOLE_TIMEOUT_MS / 1000} s`);
    }
    await sleep(200);
  }
}

// --- The run -----------------------------------------------------------------------------------

function methodLines(options: CompareOptions, root: string): string[] {
  return [
    `cells: ${options.seconds} s measured after ${options.warmupSeconds} s of warmup; ` +
    `${VALUE_BYTES}-byte values over ${options.keys} keys, preloaded; gets are linearizable ` +
    "(etcd Range without serializable, TinyKV Get with serializable = false)",
    "one load driver process (bench/compare_load.ts, grpc-js) for both; requests round-robin " +
    "over max(min(in flight, 8), endpoints) channels, each its own HTTP/2 connection; etcd: " +
    "channels spread over its 3 members (as its client balances); TinyKV: all to its gateway",
    "server CPU: etcd's 3 members; TinyKV's 3 kvnodes, gateway, placement and ZooKeeper's java " +
    "(utime + stime of all threads from /proc/<pid>/stat); ratios are TinyKV / etcd",
    `TinyKV: tools/dev.ts of ${root} (defaults but ports, dirs, num_shards); etcd: 3.4 defaults`,
    "etcd's cells run once and stand beside each TinyKV shard count; other load: cores the rest " +
    "of the machine used during the cell (from /proc/stat), which skews it",
    `failover: ${WRITER_LOOPS} writer loops ${WRITER_STAGGER_MS} ms apart, each put with a ` +
    `${FAILOVER_DEADLINE_MS} ms deadline (TinyKV through the gateway, etcd through a follower); ` +
    "TinyKV's victim is restarted by dev after 2 s, doubling up to 30 s when the same kvnode " +
    "is killed again within a minute, which is most of its whole-again time",
  ];
}

/** Runs every selected part and gathers the result. */
async function runComparison(context: RunContext, etcdVersion: string): Promise<CompareResult> {
  const { options } = context;
  const startedAt = new Date().toISOString();
  const started = performance.now();
  const record = { phaseSeconds: {} as Record<string, number>, errors: context.errors };
  const etcd = {
    cells: [] as CellResult[],
    idle: [] as IdleResult[],
    failover: [] as FailoverResult[],
  };
  const tinykv: TinyKvRun[] = [];
  const idle: IdleResult[] = [];
  let move: MoveResult | null = null;
  if (options.etcd) await part("etcd", record, () => etcdPart(context, etcd));
  for (const [i, shards] of options.shards.entries()) {
    if (!options.cells && !options.failover) break;
    const failover = options.failover && i === options.shards.length - 1
      ? etcd.failover
      : undefined;
    await part(`TinyKV ${shards} shards`, record, async () => {
      tinykv.push(await tinyKvPart(context, shards, failover));
    });
  }
  if (options.move) {
    await part("move", record, async () => {
      say(`TinyKV: moving one replica of ${options.moveGib} GiB (bench/snapshot_move.ts)`);
      move = await runMove(context.registry, { ...context, gib: options.moveGib, say });
    });
  }
  if (options.idle) {
    for (const shards of options.idleShards) {
      await part(`idle ${shards} shards`, record, async () => {
        say(`TinyKV idle with ${shards} shards`);
        const ports = findFreePlan(isPortFree).tinykv;
        idle.push(await tinyKvIdle(context.registry, { ...context, shards, ports, say }));
      });
    }
  }
  return {
    startedAt,
    durationSeconds: (performance.now() - started) / 1000,
    machine: await machineInfo(etcdVersion),
    options: { ...options },
    method: methodLines(options, context.root),
    etcd: options.etcd ? { cells: etcd.cells } : null,
    tinykv,
    comparisons: tinykv.map((run) => ({
      shards: run.shards,
      rows: compareCells(etcd.cells, run.cells),
    })),
    failover: etcd.failover,
    move,
    idle: [...etcd.idle, ...idle],
    phaseSeconds: record.phaseSeconds,
    errors: record.errors,
  };
}

async function main(args: readonly string[]): Promise<number> {
  const parsed = parseCompareFlags(args);
  if (parsed.kind === "error") {
    console.error(`compare: ${parsed.message}`);
    return 2;
  }
  const { options } = parsed;
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  const registry = new ProcessRegistry();
  stopOnSignal(registry, "compare");
  try {
    const etcdVersion = options.etcd ? await ensureEtcd(say) : "not run";
    const context: RunContext = {
      options,
      registry,
      root: options.tinykvRoot === undefined ? REPO_ROOT : await Deno.realPath(options.tinykvRoot),
      ticksPerSecond: await clockTicksPerSecond(),
      logDir: await registry.tempDir("compare-logs-"),
      errors: [],
    };
    say(`compare: ${methodLines(options, context.root).join("; ")}`);
    const result = await runComparison(context, etcdVersion);
    const report = renderReport(result);
    const json = JSON.stringify(result, null, 2);
    if (options.out !== undefined) await Deno.writeTextFile(options.out, `${json}\n`);
    if (options.json) {
      console.error(`\n${report}\n`);
      console.log(json);
    } else console.log(`\n${report}\n`);
    return result.errors.length === 0 ? 0 : 1;
  } finally {
    await registry.cleanUp();
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    console.error(`compare: ${error instanceof Error ? error.stack : error}`);
    code = 1;
  }
  Deno.exit(code);
}
