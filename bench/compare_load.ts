/**
 * The load driver of `deno task bench:compare`: one process, the same for TinyKV and etcd, that
 * runs one cell — a closed loop of `--in-flight` requests (puts, linearizable gets, or 95 % gets
 * and 5 % puts) of `--value-bytes` values over `--keys` keys, spread round-robin over
 * `min(in-flight, 8)` gRPC channels (at least one per endpoint), each its own HTTP/2 connection —
 * for `--warmup-seconds`, then measured for `--seconds`. It prints one JSON document on stdout: the
 * operations, errors by kind, p50/p99/p999 latency, and the CPU-seconds the `--pids` server
 * processes and this process used over the measured window (utime + stime of every thread, from
 * `/proc/<pid>/stat`, read with `cat`). With `--op=preload` it writes every key once instead.
 *
 * Errors carry no stack trace here (`Error.stackTraceLimit = 0`): Deno's `node:http2` builds an
 * error with a stack at the end of every grpc-js unary call, which cost 15-20 % of the driver's
 * CPU, the same for both systems.
 *
 * Run by bench/compare.ts:
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-run=cat,getconf \
 *   '--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy' \
 *   bench/compare_load.ts --system=etcd --endpoints=127.0.0.1:23791,… --op=get --in-flight=16 \
 *   --seconds=8 --warmup-seconds=1 --keys=20000 --value-bytes=256 --pids=etcd:m1=123,… \
 *   --deadline-ms=10000
 * ```
 *
 * @module
 */
import { connect, type KvConnection, type Outcome } from "./compare_clients.ts";
import { connectionCount, type LoadSpec, type Op, parseLoadArgs } from "./compare_flags.ts";
import { clockTicksPerSecond, type CpuSample, sampleCpu } from "./compare_procs.ts";
import type { LoadMeasurement } from "./compare_report.ts";
import { cpuSecondsBetween, LatencyRecorder, randomWords, sumOf } from "./compare_stats.ts";

/** Requests in flight while preloading. */
const PRELOAD_IN_FLIGHT = 64;
/** Attempts per key while preloading (a write that fails is tried again). */
const PRELOAD_ATTEMPTS_MAX = 10;
/** Distinct random values the requests cycle through. */
const VALUE_POOL_SIZE = 64;
/** Stack frames kept in errors (see `main`). */
const STACK_TRACE_LIMIT = 0;
/** Share of the mix that is puts, in percent. */
const MIX_PUT_PERCENT = 5;

/** The keys `compare/00000` … and a pool of random values. */
interface Workload {
  readonly keys: readonly Uint8Array[];
  readonly values: readonly Uint8Array[];
}

function workloadOf(spec: LoadSpec): Workload {
  const encoder = new TextEncoder();
  const width = String(spec.keys - 1).length;
  return {
    keys: Array.from(
      { length: spec.keys },
      (_, i) => encoder.encode(`compare/${String(i).padStart(width, "0")}`),
    ),
    values: Array.from(
      { length: VALUE_POOL_SIZE },
      () => crypto.getRandomValues(new Uint8Array(spec.valueBytes)),
    ),
  };
}

/** What one loop did. */
interface Tally {
  ops: number;
  errors: number;
  errorKinds: Record<string, number>;
  firstError: string | undefined;
}

function recordFailure(tally: Tally, kind: string, message: string): void {
  tally.errors++;
  tally.errorKinds[kind] = (tally.errorKinds[kind] ?? 0) + 1;
  tally.firstError ??= `${kind}: ${message}`;
}

/** Channels handed out round-robin, one per request (as etcd's client balancer does). */
class Channels {
  readonly #connections: KvConnection[];
  #next = 0;

  constructor(spec: LoadSpec) {
    const count = connectionCount(spec.inFlight, spec.endpoints.length);
    this.#connections = Array.from(
      { length: count },
      (_, i) => connect(spec.system, spec.endpoints[i % spec.endpoints.length]),
    );
  }

  get size(): number {
    return this.#connections.length;
  }

  next(): KvConnection {
    const connection = this.#connections[this.#next];
    this.#next = (this.#next + 1) % this.#connections.length;
    return connection;
  }

  close(): void {
    for (const connection of this.#connections) connection.close();
  }
}

/** Sends one request of `op` to a random key; a get that finds nothing counts as failed. */
async function request(
  spec: LoadSpec & { op: Op },
  context: { channels: Channels; workload: Workload; next: () => number },
): Promise<Outcome> {
  const { channels, workload, next } = context;
  const key = workload.keys[next() % workload.keys.length];
  const isPut = spec.op === "put" || (spec.op === "mix" && next() % 100 < MIX_PUT_PERCENT);
  if (isPut) {
    const value = workload.values[next() % workload.values.length];
    return await channels.next().put(key, value, spec.deadlineMs);
  }
  const outcome = await channels.next().get(key, spec.deadlineMs);
  return outcome.kind === "ok" && !outcome.found
    ? { kind: "failed", failure: "notFound", message: "A preloaded key was not found" }
    : outcome;
}

/** Runs the closed loop for `seconds`; records latencies when `latencies` is given. */
async function runLoop(
  spec: LoadSpec & { op: Op },
  context: { channels: Channels; workload: Workload },
  window: { seconds: number; latencies?: LatencyRecorder },
): Promise<Tally> {
  const tally: Tally = { ops: 0, errors: 0, errorKinds: {}, firstError: undefined };
  const end = performance.now() + window.seconds * 1000;
  const worker = async (index: number) => {
    const next = randomWords((Math.random() * 2 ** 32) ^ (index * 2654435761));
    while (performance.now() < end) {
      const sent = performance.now();
      const outcome = await request(spec, { ...context, next });
      if (outcome.kind === "failed") {
        recordFailure(tally, outcome.failure, outcome.message);
        continue;
      }
      tally.ops++;
      window.latencies?.add(performance.now() - sent);
    }
  };
  await Promise.all(Array.from({ length: spec.inFlight }, (_, i) => worker(i)));
  return tally;
}

/** Warms up, then measures one cell, CPU included. */
async function measure(spec: LoadSpec & { op: Op }): Promise<LoadMeasurement> {
  const ticks = await clockTicksPerSecond();
  const channels = new Channels(spec);
  const context = { channels, workload: workloadOf(spec) };
  try {
    if (spec.warmupSeconds > 0) await runLoop(spec, context, { seconds: spec.warmupSeconds });
    const pids = [...Object.values(spec.pids), Deno.pid];
    const latencies = new LatencyRecorder();
    const before = await sampleCpu(pids);
    const tally = await runLoop(spec, context, { seconds: spec.seconds, latencies });
    const after = await sampleCpu(pids);
    const [p50Ms, p99Ms, p999Ms] = latencies.quantiles([0.5, 0.99, 0.999]);
    return {
      op: spec.op,
      inFlight: spec.inFlight,
      connections: channels.size,
      seconds: (after.atMs - before.atMs) / 1000,
      ...tally,
      p50Ms,
      p99Ms,
      p999Ms,
      ...cpuOf(spec, { before, after }, ticks),
    };
  } finally {
    channels.close();
  }
}

function cpuOf(
  spec: LoadSpec,
  samples: { before: CpuSample; after: CpuSample },
  ticks: number,
): { serverCpuSeconds: Record<string, number>; driverCpuSeconds: number; otherCores: number } {
  const stats = { before: samples.before.stats, after: samples.after.stats, ticksPerSecond: ticks };
  const serverCpuSeconds = cpuSecondsBetween(spec.pids, stats);
  const driverCpuSeconds = cpuSecondsBetween({ driver: Deno.pid }, stats).driver;
  const seconds = (samples.after.atMs - samples.before.atMs) / 1000;
  const machine = samples.before.machine !== undefined && samples.after.machine !== undefined
    ? (samples.after.machine.busyTicks - samples.before.machine.busyTicks) / ticks
    : NaN;
  const otherCores = Math.max(0, machine - sumOf(serverCpuSeconds) - driverCpuSeconds) / seconds;
  return { serverCpuSeconds, driverCpuSeconds, otherCores };
}

/** Writes every key once (retrying failures), `PRELOAD_IN_FLIGHT` at a time. */
async function preload(spec: LoadSpec): Promise<Record<string, unknown>> {
  const channels = new Channels({ ...spec, inFlight: PRELOAD_IN_FLIGHT });
  const workload = workloadOf(spec);
  const tally: Tally = { ops: 0, errors: 0, errorKinds: {}, firstError: undefined };
  const started = performance.now();
  let nextKey = 0;
  const worker = async () => {
    for (let i = nextKey++; i < workload.keys.length; i = nextKey++) {
      const value = workload.values[i % workload.values.length];
      for (let attempt = 1; attempt <= PRELOAD_ATTEMPTS_MAX; attempt++) {
        const outcome = await channels.next().put(workload.keys[i], value, spec.deadlineMs);
        if (outcome.kind === "ok") {
          tally.ops++;
          break;
        }
        if (attempt === PRELOAD_ATTEMPTS_MAX) {
          recordFailure(tally, outcome.failure, outcome.message);
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: PRELOAD_IN_FLIGHT }, worker));
  } finally {
    channels.close();
  }
  return { op: "preload", ...tally, seconds: (performance.now() - started) / 1000 };
}

async function main(args: readonly string[]): Promise<number> {
  // Deno's node:http2 builds an ERR_STREAM_ALREADY_FINISHED error, stack trace and all, at the
  // end of every grpc-js unary call (grpc-js destroyHttp2Stream calls end() on a finished
  // stream): 15-20 % of this process's CPU. Nothing reads those stacks, and the cost is the same
  // for both systems, so it is cut for both.
  Error.stackTraceLimit = STACK_TRACE_LIMIT;
  const spec = parseLoadArgs(args);
  if (typeof spec === "string") {
    console.error(`compare load: ${spec}`);
    return 2;
  }
  const result = spec.op === "preload"
    ? await preload(spec)
    : await measure({ ...spec, op: spec.op });
  console.log(JSON.stringify(result));
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
