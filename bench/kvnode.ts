/**
 * The kvnode benchmark: three real kvnode processes (real LMDB with synced commits, real gRPC,
 * real ZooKeeper) on 127.0.0.1, bootstrapped through the node-admin API with one shard group and
 * with ten. For each concurrency a closed loop of N clients puts random 16-byte keys with 256-byte
 * values straight to each shard's leader over the batched data stream (through `libs/client`'s
 * router, which holds one `KvNodeStream` per node as a gateway does) for a fixed time, and
 * reports writes/s, p50/p99 latency and the CPU the three servers spent per 1000 writes (utime +
 * stime from `/proc/<pid>/stat`, all threads). Then it measures linearizable (ReadIndex) gets of
 * written keys at the highest concurrency.
 *
 * Each point also prints what skews it on a shared machine: the cores everything else used
 * meanwhile (from `/proc/stat`), how long the kvnodes' main threads waited for a CPU while
 * runnable (`/proc/<pid>/schedstat`), and the bytes the kvnodes wrote to disk per operation
 * (`/proc/<pid>/io`). Deno lets a script read `/proc` only with `--allow-all`, so one `cat` per
 * sample reads these files.
 *
 * The defaults of docs/design.md "Defaults that are never traded for speed" hold: syncs stay on, reads
 * are linearizable. Node flags are the test harness's (50 ms ticks), nothing else.
 *
 * Run (the `bench` task); `--allow-run` starts the kvnodes (`Deno.execPath()`), ZooKeeper's `sh`
 * watchdog, `cat` and `getconf`:
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-run --allow-net=127.0.0.1 --allow-env \
 *   bench/kvnode.ts [--seconds 5] [--shards 1,10] [--concurrency 1,16,256] [--json]
 * ```
 *
 * It stops by itself and removes its processes, data dirs and ZooKeeper root, also on an error or
 * Ctrl-C. A private ZooKeeper is started unless `TINYKV_TEST_ZK` names one. `--json` prints the
 * points as JSON on stdout and the progress lines on stderr.
 *
 * @module
 */
import type { KvRouter, RouteOp, RouteResult } from "@tinykv/client";
import { KvNodeCluster } from "../tests/_harness/kvnode_cluster.ts";
import { clockTicksPerSecond as readClockTicks } from "./compare_procs.ts";
import { LatencyRecorder, randomWords } from "./compare_stats.ts";
import type { ShardId } from "@tinykv/shard";

const KEY_BYTES = 16;
const VALUE_BYTES = 256;
/** Distinct random values the clients cycle through (generating one per put costs client CPU). */
const VALUE_POOL_SIZE = 64;
/** Written keys kept for the read phase. */
const READ_KEYS_MAX = 100_000;
/** How long one attempt may wait on the server. */
const ITEM_TIMEOUT_MS = 5000;
/** How long one request may take, retries included, before it counts as an error. */
const REQUEST_DEADLINE_MS = 10_000;
const WARMUP_SECONDS = 1;
const WARMUP_CONCURRENCY = 16;
const LEADER_ROLE = 4;

interface Options {
  seconds: number;
  shards: number[];
  concurrency: number[];
  json: boolean;
}

/** One measured point. */
interface Point {
  op: "put" | "get";
  shards: number;
  concurrency: number;
  ops: number;
  errors: number;
  seconds: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU-seconds of the three kvnode processes per 1000 operations. */
  serverCpuSecondsPer1000: number;
  /** CPU-seconds of this bench process per 1000 operations. */
  clientCpuSecondsPer1000: number;
  /** Server CPU use over the point, in cores (CPU-seconds per second). */
  serverCores: number;
  clientCores: number;
  /** Cores used meanwhile by everything else on the machine (a busy machine skews the point). */
  otherCores: number;
  /** How long the kvnodes' main threads waited for a CPU, in seconds per second (summed). */
  serverRunQueueWait: number;
  /** Bytes written to disk by the three kvnodes per operation. */
  serverDiskBytesPerOp: number;
}

function parseOptions(args: string[]): Options {
  const options: Options = { seconds: 5, shards: [1, 10], concurrency: [1, 16, 256], json: false };
  const list = (flag: string, value: string | undefined): number[] => {
    const numbers = (value ?? "").split(",").map(Number);
    if (value === undefined || numbers.some((n) => !Number.isSafeInteger(n) || n < 1)) {
      throw new Error(`Flag "${flag}" is "${value}": expected positive integers like 1,16,256`);
    }
    return numbers;
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    switch (flag) {
      case "--seconds": {
        const seconds = Number(args[++i]);
        if (!(seconds > 0 && seconds <= 600)) {
          throw new Error(`Flag "--seconds" is "${args[i]}": expected a number in (0, 600]`);
        }
        options.seconds = seconds;
        break;
      }
      case "--shards":
        options.shards = list(flag, args[++i]);
        break;
      case "--concurrency":
        options.concurrency = list(flag, args[++i]);
        break;
      case "--json":
        options.json = true;
        break;
      default:
        throw new Error(
          `Unknown argument "${flag}": expected --seconds N, --shards A,B, --concurrency A,B, --json`,
        );
    }
  }
  return options;
}

// --- CPU accounting ----------------------------------------------------------------------------

/** USER_HZ, the unit of `/proc/<pid>/stat` times; set by `main` from `getconf CLK_TCK`. */
let clockTicksPerSecond = 100;

/** CPU-seconds used so far: by the kvnodes, by this process and by the whole machine. */
interface CpuSample {
  server: number;
  client: number;
  /** Non-idle CPU-seconds of every process on the machine (first line of `/proc/stat`). */
  machineBusy: number;
  /** Seconds the kvnodes' main (JS) threads waited for a CPU while runnable (`schedstat`). */
  serverRunQueue: number;
  /** Bytes the kvnodes caused to be written to disk (`write_bytes` of `/proc/<pid>/io`). */
  serverDiskBytes: number;
}

/**
 * Reads utime + stime of the kvnodes and of this process from `/proc/<pid>/stat` (all threads),
 * and the machine's busy time from `/proc/stat`. Deno grants reads under `/proc` only with
 * `--allow-all`, so one `cat` reads them (the bench needs `--allow-run` anyway).
 */
async function sampleCpu(pids: readonly number[]): Promise<CpuSample> {
  const paths = [...pids, Deno.pid].map((pid) => `/proc/${pid}/stat`);
  const schedPaths = pids.map((pid) => `/proc/${pid}/schedstat`);
  const ioPaths = pids.map((pid) => `/proc/${pid}/io`);
  const output = await new Deno.Command("cat", {
    args: [...paths, "/proc/stat", ...schedPaths, ...ioPaths],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`Cannot read ${paths.join(", ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  const lines = text.split("\n");
  const processSeconds = (line: string) => {
    // Fields after the command name (which may hold spaces) start at field 3; utime is field 14.
    const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
  };
  const server = lines.slice(0, pids.length).reduce((sum, line) => sum + processSeconds(line), 0);
  const client = processSeconds(lines[pids.length]);
  // "cpu  user nice system idle iowait irq softirq steal …": busy is all but idle and iowait.
  const cpu = lines[pids.length + 1].split(/\s+/).slice(1, 9).map(Number);
  const busyTicks = cpu.reduce((sum, n) => sum + n, 0) - cpu[3] - cpu[4];
  // schedstat: "<ns on a CPU> <ns waiting on a run queue> <time slices>" of the main thread.
  const schedLines = lines.slice(pids.length + 1).filter((line) => /^\d+ \d+ \d+$/.test(line));
  const serverRunQueue = schedLines.reduce((sum, line) => sum + Number(line.split(" ")[1]), 0) /
    1e9;
  const serverDiskBytes = [...text.matchAll(/^write_bytes: (\d+)$/gm)]
    .reduce((sum, match) => sum + Number(match[1]), 0);
  return {
    server,
    client,
    machineBusy: busyTicks / clockTicksPerSecond,
    serverRunQueue,
    serverDiskBytes,
  };
}

function serverPids(cluster: KvNodeCluster): number[] {
  return cluster.nodes.map((node) => {
    const pid = node.process.pid;
    if (pid === undefined) throw new Error(`${node.process.name} is not running`);
    return pid;
  });
}

// --- Load --------------------------------------------------------------------------------------

/**
 * Sends each request to its shard's leader through the cluster's router (the product's retry
 * loop: it follows NOT_LEADER hints and retries UNAVAILABLE, UNKNOWN and broken streams with
 * backoff until the request's deadline), and counts the retries.
 */
class Load {
  readonly #cluster: KvNodeCluster;
  readonly #router: KvRouter;
  /** Attempts beyond the first, over every request (a leader moved, a stream broke). */
  retries = 0;

  constructor(cluster: KvNodeCluster) {
    this.#cluster = cluster;
    this.#router = cluster.router({ attemptTimeoutMsMax: ITEM_TIMEOUT_MS });
  }

  /** Leaders per node address, e.g. `{"127.0.0.1:4001": 4, …}`, once every shard has one. */
  async leaderSpread(): Promise<Record<string, number>> {
    await this.#cluster.waitForLeaders();
    const spread: Record<string, number> = {};
    for (const node of this.#cluster.nodes) spread[node.address] = 0;
    for (const status of await this.#cluster.statuses()) {
      for (const replica of status.replicas) {
        if (replica.role === LEADER_ROLE) spread[status.address]++;
      }
    }
    return spread;
  }

  /** Sends `op` to shard `shardId`; resolves with the answer or the final failure. */
  async send(shardId: ShardId, op: RouteOp): Promise<RouteResult> {
    const result = await this.#router.route({ shardId }, op, Date.now() + REQUEST_DEADLINE_MS);
    this.retries += Math.max(0, result.attempts - 1);
    return result;
  }

  close(): void {
    this.#router.close();
  }
}

interface LoadContext {
  readonly cluster: KvNodeCluster;
  readonly load: Load;
  readonly values: readonly Uint8Array[];
  /** Keys written so far (a bounded sample), for the read phase. */
  readonly written: Uint8Array[];
}

interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
  latencies: LatencyRecorder;
  serverCpu: number;
  clientCpu: number;
  /** CPU-seconds the rest of the machine used meanwhile (other processes, kernel threads). */
  otherCpu: number;
  /** Seconds the kvnodes' main threads were runnable but waited for a CPU. */
  serverRunQueue: number;
  serverDiskBytes: number;
  firstError?: string;
}

/** Runs `concurrency` closed-loop clients doing `op` for `seconds`; measures what they did. */
async function runLoad(
  context: LoadContext,
  op: "put" | "get",
  concurrency: number,
  seconds: number,
): Promise<LoadResult> {
  const pids = serverPids(context.cluster);
  const latencies = new LatencyRecorder();
  const result: LoadResult = {
    ops: 0,
    errors: 0,
    seconds: 0,
    latencies,
    serverCpu: 0,
    clientCpu: 0,
    otherCpu: 0,
    serverRunQueue: 0,
    serverDiskBytes: 0,
  };
  const before = await sampleCpu(pids);
  const start = performance.now();
  const end = start + seconds * 1000;
  const client = async (index: number) => {
    const next = randomWords((Math.random() * 2 ** 32) ^ index);
    let n = 0;
    while (performance.now() < end) {
      const { shardId, item } = op === "put" ? putItem(context, next, n++) : getItem(context, next);
      const sent = performance.now();
      const answer = await context.load.send(shardId, item);
      const done = performance.now();
      if (answer.kind !== "ok") {
        result.errors++;
        result.firstError ??= `${answer.kind}: ${answer.message}`;
        continue;
      }
      if (op === "get" && answer.item.get?.found !== true) {
        result.errors++;
        result.firstError ??= "A written key was not found";
        continue;
      }
      result.ops++;
      latencies.add(done - sent);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => client(i)));
  result.seconds = (performance.now() - start) / 1000;
  const after = await sampleCpu(pids);
  result.serverCpu = after.server - before.server;
  result.clientCpu = after.client - before.client;
  result.serverRunQueue = after.serverRunQueue - before.serverRunQueue;
  result.serverDiskBytes = after.serverDiskBytes - before.serverDiskBytes;
  result.otherCpu = after.machineBusy - before.machineBusy - result.serverCpu - result.clientCpu;
  return result;
}

function putItem(
  context: LoadContext,
  next: () => number,
  n: number,
): { shardId: ShardId; item: RouteOp } {
  const key = new Uint8Array(KEY_BYTES);
  const words = new Uint32Array(key.buffer);
  for (let i = 0; i < words.length; i++) words[i] = next();
  if (context.written.length < READ_KEYS_MAX) context.written.push(key);
  else context.written[next() % READ_KEYS_MAX] = key;
  const value = context.values[n % context.values.length];
  return {
    shardId: context.cluster.shardOf(key),
    item: { put: { key, value, clientId: "", seq: 0, ackSeq: 0 } },
  };
}

function getItem(
  context: LoadContext,
  next: () => number,
): { shardId: ShardId; item: RouteOp } {
  const key = context.written[next() % context.written.length];
  return {
    shardId: context.cluster.shardOf(key),
    item: { get: { key, serializable: false } },
  };
}

function toPoint(
  op: "put" | "get",
  shards: number,
  concurrency: number,
  result: LoadResult,
): Point {
  const [p50Ms, p99Ms] = result.latencies.quantiles([0.5, 0.99]);
  const per1000 = (cpu: number) => result.ops === 0 ? NaN : (cpu / result.ops) * 1000;
  return {
    op,
    shards,
    concurrency,
    ops: result.ops,
    errors: result.errors,
    seconds: result.seconds,
    opsPerSecond: result.ops / result.seconds,
    p50Ms,
    p99Ms,
    serverCpuSecondsPer1000: per1000(result.serverCpu),
    clientCpuSecondsPer1000: per1000(result.clientCpu),
    serverCores: result.serverCpu / result.seconds,
    clientCores: result.clientCpu / result.seconds,
    otherCores: Math.max(0, result.otherCpu / result.seconds),
    serverRunQueueWait: result.serverRunQueue / result.seconds,
    serverDiskBytesPerOp: result.ops === 0 ? NaN : result.serverDiskBytes / result.ops,
  };
}

// --- Scenarios ---------------------------------------------------------------------------------

/** Clusters starting or running, closed on Ctrl-C. */
const openClusters = new Set<Promise<KvNodeCluster>>();

async function benchShards(
  shards: number,
  options: Options,
  report: (line: string) => void,
): Promise<Point[]> {
  const startedAt = performance.now();
  const starting = KvNodeCluster.start({ nodes: 3, shards });
  openClusters.add(starting);
  // A failed start has already closed what it started.
  starting.catch(() => openClusters.delete(starting));
  const cluster = await starting;
  const load = new Load(cluster);
  try {
    await cluster.bootstrap();
    const spread = JSON.stringify(await load.leaderSpread());
    const upSeconds = ((performance.now() - startedAt) / 1000).toFixed(1);
    report(`# ${shards} shard(s): cluster up in ${upSeconds} s, leaders per node ${spread}`);
    const values = Array.from(
      { length: VALUE_POOL_SIZE },
      () => crypto.getRandomValues(new Uint8Array(VALUE_BYTES)),
    );
    const context: LoadContext = { cluster, load, values, written: [] };
    const warmup = await runLoad(context, "put", WARMUP_CONCURRENCY, WARMUP_SECONDS);
    if (warmup.ops === 0) throw new Error(`Warm-up wrote nothing: ${warmup.firstError}`);
    const points: Point[] = [];
    for (const concurrency of options.concurrency) {
      const result = await runLoad(context, "put", concurrency, options.seconds);
      const point = toPoint("put", shards, concurrency, result);
      points.push(point);
      report(describe(point, result.firstError));
    }
    const readConcurrency = Math.max(...options.concurrency);
    const reads = await runLoad(context, "get", readConcurrency, options.seconds);
    const readPoint = toPoint("get", shards, readConcurrency, reads);
    points.push(readPoint);
    report(describe(readPoint, reads.firstError));
    if (load.retries > 0) report(`#   ${load.retries} attempts were retries (leader moved?)`);
    return points;
  } finally {
    load.close();
    await cluster.close();
    openClusters.delete(starting);
  }
}

function describe(point: Point, firstError: string | undefined): string {
  const errors = point.errors === 0 ? "" : `, ${point.errors} errors (first: ${firstError})`;
  return `#   ${point.op} c=${point.concurrency}: ${point.ops} ops in ${
    point.seconds.toFixed(1)
  } s` +
    `, server ${point.serverCores.toFixed(2)} cores, client ${point.clientCores.toFixed(2)} cores` +
    `, others ${point.otherCores.toFixed(2)} cores` +
    `, kvnode main threads waited ${point.serverRunQueueWait.toFixed(2)} s/s for a CPU` +
    `, disk ${(point.serverDiskBytesPerOp / 1024).toFixed(1)} KiB per op` +
    errors;
}

function table(points: readonly Point[]): string {
  const rows = [
    "| shards | concurrency | writes/s | p50 ms | p99 ms | server CPU-s / 1000 writes " +
    "| client CPU-s / 1000 writes |",
    "|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const p of points.filter((p) => p.op === "put")) {
    rows.push(
      `| ${p.shards} | ${p.concurrency} | ${p.opsPerSecond.toFixed(0)} | ${p.p50Ms.toFixed(2)} ` +
        `| ${p.p99Ms.toFixed(2)} | ${p.serverCpuSecondsPer1000.toFixed(3)} ` +
        `| ${p.clientCpuSecondsPer1000.toFixed(3)} |`,
    );
  }
  rows.push("");
  for (const p of points.filter((p) => p.op === "get")) {
    rows.push(
      `Linearizable gets, ${p.shards} shard(s), concurrency ${p.concurrency}: ` +
        `${p.opsPerSecond.toFixed(0)}/s, p50 ${p.p50Ms.toFixed(2)} ms, ` +
        `p99 ${p.p99Ms.toFixed(2)} ms, server ${p.serverCpuSecondsPer1000.toFixed(3)} CPU-s ` +
        `per 1000 gets`,
    );
  }
  return rows.join("\n");
}

async function main(args: string[]): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(args);
  } catch (error) {
    console.error(`kvnode bench: ${error instanceof Error ? error.message : error}`);
    return 2;
  }
  clockTicksPerSecond = await readClockTicks();
  const report = (line: string) => options.json ? console.error(line) : console.log(line);
  report(
    `# kvnode bench: 3 kvnodes, ${KEY_BYTES} B keys, ${VALUE_BYTES} B values, syncs on, ` +
      `${options.seconds} s per point, CLK_TCK ${clockTicksPerSecond}, ` +
      `${navigator.hardwareConcurrency} CPUs`,
  );
  const points: Point[] = [];
  for (const shards of options.shards) points.push(...await benchShards(shards, options, report));
  if (options.json) console.log(JSON.stringify(points, null, 2));
  else console.log(`\n${table(points)}`);
  return 0;
}

/** On Ctrl-C or SIGTERM: stop the kvnodes, remove their data, then exit. */
function closeOnSignal(): void {
  let closing = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, async () => {
      if (closing) return;
      closing = true;
      console.error(`kvnode bench: ${signal}: stopping the kvnodes`);
      await Promise.all(
        [...openClusters].map((starting) =>
          starting.then((cluster) => cluster.close()).catch(() => {})
        ),
      );
      Deno.exit(130);
    });
  }
}

if (import.meta.main) {
  closeOnSignal();
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    console.error(`kvnode bench: ${error instanceof Error ? error.stack : error}`);
    code = 1;
  }
  // A private ZooKeeper dies with this process (its watchdog sees stdin close).
  Deno.exit(code);
}
