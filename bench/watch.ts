/**
 * `deno task bench:watch`: watches of TinyKV and of etcd, side by side, on this machine.
 *
 * 1. etcd 3.4 (Debian's `etcd-server`, installed with apt when `/usr/bin/etcd` is missing): three
 *    members on 127.0.0.1, as `bench:compare` starts them, watched through etcd's `Watch`.
 * 2. TinyKV with each `--shards` count (1 and 10): a fresh dev cluster (bench/compare_tinykv.ts:
 *    the real ZooKeeper, three kvnodes, placement, one gateway), watched through
 *    `tinykv.v1.KV/Watch`, then through the etcd `Watch` its gateway serves on the same port (what
 *    an etcd user gets).
 *
 * A cell is W watchers (`--watchers`, 1 and 16), each its own grpc-js channel and so its own
 * HTTP/2 connection, watching one prefix, all started before the first put (etcd: `created`
 * answered; KV.Watch: its first response, which lists the positions). Then one writer keeps C puts
 * (`--concurrency`, 16) of 256-byte values in flight over 1,000 keys under the prefix, through the
 * system's own put (TinyKV: `tinykv.v1.KV/Put` without a session; etcd: `KV.Put`), for
 * `--warmup-seconds` unmeasured, then for `--seconds` measured. A key never has two puts in flight,
 * so each key's writes apply in the order of their sequence numbers (bench/watch_workload.ts).
 * After the last put is answered, the watchers get up to 10 s to catch up.
 *
 * Each cell reports puts/s, events delivered/s (all watchers), the latency from a put's
 * acknowledgment to its event's arrival at each watcher (an event that beats the acknowledgment
 * counts as 0 and in "before ack"), and whether every watcher got every acknowledged put of the
 * window exactly once and each key's events in order (bench/watch_check.ts), plus the CPU-seconds
 * per 1000 delivered events of the server processes (etcd: its members; TinyKV: kvnodes, gateway,
 * placement and ZooKeeper's java) and of this process, which writes and watches. A fault of any
 * kind makes the report say so in bold, and the run exit 1 at the end.
 *
 * The result is a markdown report on stdout (with `--json`, the JSON result instead; `--out FILE`
 * also writes the JSON to FILE); progress goes to stderr. Every process started is stopped by its
 * pid (SIGTERM, then SIGKILL after a bound), also on an error or Ctrl-C, and the temp dirs are
 * removed. `--help` lists the flags. The defaults take about 2.5 minutes.
 *
 * Run (the `bench:watch` task):
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-net=127.0.0.1 \
 *   '--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy' \
 *   --allow-run=deno,/usr/bin/etcd,apt-get,cat,kill,getconf bench/watch.ts [flags]
 * ```
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { KVService, WatchEvent_Kind, type WatchResponse } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, failureFromError } from "@tinykv/rpc";
import { connect, type KvConnection, MESSAGE_BYTES_MAX } from "./compare_clients.ts";
import { errorMessage, machineInfo, part, say, stopOnSignal } from "./bench_run.ts";
import { ensureEtcd, EtcdCluster } from "./compare_etcd.ts";
import { connectionCount } from "./compare_flags.ts";
import { findFreePlan, isPortFree, PORT_BASE_DEFAULT } from "./compare_ports.ts";
import {
  clockTicksPerSecond,
  type CpuSample,
  ProcessRegistry,
  sampleCpu,
  sleep,
} from "./compare_procs.ts";
import type { System } from "./compare_report.ts";
import { cpuSecondsBetween, sumOf } from "./compare_stats.ts";
import { TinyKvCluster } from "./compare_tinykv.ts";
import {
  checkDeliveries,
  deliveryLatencies,
  firstLacking,
  putLatencies,
  type SeqRange,
  sumChecks,
  summarizeLatencies,
  WatcherLog,
} from "./watch_check.ts";
import { ETCD_EVENT_PUT, type EtcdWatchResponse, EtcdWatchService } from "./watch_etcd_api.ts";
import { parseWatchFlags, type TinyKvApi, USAGE, type WatchOptions } from "./watch_flags.ts";
import {
  type ClusterExits,
  compareWatchCells,
  deliveryFaults,
  renderWatchReport,
  shardsLabel,
  type Subject,
  subjectName,
  toWatchCell,
  type WatchCell,
  type WatchMeasurement,
  type WatchResult,
} from "./watch_report.ts";
import {
  encodeValue,
  FILLER_BYTES,
  keyBytes,
  KeyRing,
  KEYS,
  prefixEnd,
  PutLog,
  VALUE_BYTES,
} from "./watch_workload.ts";

/** This checkout: its tools/dev.ts runs the TinyKV clusters. */
const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** Each put's deadline. */
const PUT_DEADLINE_MS = 10_000;
/** Bound on every watcher of a cell having started. */
const WATCH_START_TIMEOUT_MS = 30_000;
/** Bound on the watchers catching up after the last put was answered. */
const DRAIN_TIMEOUT_MS = 10_000;
/** How often the catch-up is checked. */
const DRAIN_POLL_MS = 10;
/** Bound on a TinyKV cluster being whole before its cells. */
const WHOLE_TIMEOUT_MS = 120_000;
/**
 * The first block of ports tried: one bench:compare reaches only after ten taken blocks, so the
 * two rarely meet (and each skips a block with any port in use).
 */
export const WATCH_PORT_BASE = PORT_BASE_DEFAULT + 1000;
/** Stack frames kept in errors while the bench runs (see `main`). */
const STACK_TRACE_LIMIT = 0;

// --- Watchers ----------------------------------------------------------------------------------

/** One watch on its own channel, folding what arrives into its {@linkcode WatcherLog}. */
interface Watcher {
  /** What it received. */
  readonly log: WatcherLog;
  /** Resolves once the watch started; rejects if it failed first. */
  readonly started: Promise<void>;
  /** Why its stream ended before {@linkcode Watcher.stop}; undefined while it is open. */
  failure(): string | undefined;
  /** Cancels the watch and closes the channel. */
  stop(): void;
}

/** What both kinds of watcher share: the start, the failure, and ignoring what follows a stop. */
class WatcherState {
  readonly #name: string;
  readonly #started = Promise.withResolvers<void>();
  #failure: string | undefined;
  #stopped = false;

  constructor(name: string) {
    this.#name = name;
    // A watcher that fails after the cell stopped waiting for it is reported by `failure()`.
    this.#started.promise.catch(() => {});
  }

  get started(): Promise<void> {
    return this.#started.promise;
  }

  markStarted(): void {
    this.#started.resolve();
  }

  fail(why: string): void {
    if (this.#stopped || this.#failure !== undefined) return;
    this.#failure = `${this.#name} ended: ${why}`;
    this.#started.reject(new Error(this.#failure));
  }

  get failure(): string | undefined {
    return this.#failure;
  }

  stop(): void {
    this.#stopped = true;
  }
}

/** Watches `prefix` through `tinykv.v1.KV/Watch` of the gateway at `address`. */
function openKvWatcher(address: string, prefix: Uint8Array, name: string): Watcher {
  const log = new WatcherLog(prefix, KEYS);
  const state = new WatcherState(name);
  const client = createGrpcClient(KVService, address, { maxMessageBytes: MESSAGE_BYTES_MAX });
  const call = client.Watch({ key: prefix, prefix: true, start: [] }, new grpc.Metadata(), {});
  call.on("data", (response: WatchResponse) => {
    const arrivalMs = performance.now();
    // The first response lists the starting position of every shard: the watch has started.
    state.markStarted();
    for (const event of response.events) {
      if (event.kind === WatchEvent_Kind.PUT) log.record(event.key, event.value, arrivalMs);
      else log.recordOther();
    }
  });
  call.on("error", (error: unknown) => {
    const failure = failureFromError(error);
    state.fail(`${failure.kind}: ${failure.message}`);
  });
  call.on("end", () => state.fail("the server ended the stream"));
  return {
    log,
    started: state.started,
    failure: () => state.failure,
    stop: () => {
      state.stop();
      call.cancel();
      client.close();
    },
  };
}

/** Watches `prefix` through etcd's `Watch` at `address` (an etcd member or a TinyKV gateway). */
function openEtcdWatcher(address: string, prefix: Uint8Array, name: string): Watcher {
  const log = new WatcherLog(prefix, KEYS);
  const state = new WatcherState(name);
  const client = createGrpcClient(EtcdWatchService, address, {
    maxMessageBytes: MESSAGE_BYTES_MAX,
  });
  const call = client.Watch(new grpc.Metadata(), {});
  call.on("data", (response: EtcdWatchResponse) => {
    const arrivalMs = performance.now();
    if (response.canceled) {
      state.fail(`canceled: ${response.cancelReason}`);
      return;
    }
    if (response.created) state.markStarted();
    for (const event of response.events) {
      if (event.type === ETCD_EVENT_PUT) log.record(event.key, event.value, arrivalMs);
      else log.recordOther();
    }
  });
  call.on("error", (error: unknown) => {
    const failure = failureFromError(error);
    state.fail(`${failure.kind}: ${failure.message}`);
  });
  call.on("end", () => state.fail("the server ended the stream"));
  call.write({ createRequest: { key: prefix, rangeEnd: prefixEnd(prefix) } });
  return {
    log,
    started: state.started,
    failure: () => state.failure,
    stop: () => {
      state.stop();
      call.cancel();
      client.close();
    },
  };
}

// --- The writer --------------------------------------------------------------------------------

/** Failed puts by kind. */
interface PutFailures {
  count: number;
  kinds: Record<string, number>;
  first: string | undefined;
}

/** One writer: puts with sequence numbers over a cell's keys, `inFlight` at a time. */
class Writer {
  readonly puts = new PutLog();
  readonly failures: PutFailures = { count: 0, kinds: {}, first: undefined };
  readonly #ring = new KeyRing(KEYS);
  readonly #keys: Uint8Array[];
  readonly #filler = crypto.getRandomValues(new Uint8Array(FILLER_BYTES));
  readonly #connections: KvConnection[];
  readonly #inFlight: number;
  #next = 0;

  constructor(system: System, endpoints: readonly string[], options: {
    prefix: Uint8Array;
    inFlight: number;
  }) {
    this.#keys = Array.from({ length: KEYS }, (_, i) => keyBytes(options.prefix, i));
    this.#inFlight = options.inFlight;
    // As bench:compare's driver: min(in flight, 8) channels, at least one per endpoint.
    const count = connectionCount(options.inFlight, endpoints.length);
    this.#connections = Array.from(
      { length: count },
      (_, i) => connect(system, endpoints[i % endpoints.length]),
    );
  }

  /** Keeps `inFlight` puts going for `seconds`; resolves once the last one was answered. */
  async run(seconds: number): Promise<void> {
    const endMs = performance.now() + seconds * 1000;
    const worker = async () => {
      while (performance.now() < endMs) {
        const key = this.#ring.take();
        // Only when failures retired most keys: nothing is left to write without reordering.
        if (key === undefined) return;
        await this.#put(key);
      }
    };
    await Promise.all(Array.from({ length: this.#inFlight }, worker));
  }

  async #put(key: number): Promise<void> {
    const seq = this.puts.add(key, performance.now());
    const value = encodeValue(seq, key, this.#filler);
    const connection = this.#connections[this.#next];
    this.#next = (this.#next + 1) % this.#connections.length;
    const outcome = await connection.put(this.#keys[key], value, PUT_DEADLINE_MS);
    if (outcome.kind === "ok") {
      this.puts.ack(seq, performance.now());
      this.#ring.release(key);
      return;
    }
    this.#ring.retire(key);
    this.failures.count++;
    this.failures.kinds[outcome.failure] = (this.failures.kinds[outcome.failure] ?? 0) + 1;
    this.failures.first ??= `${outcome.failure}: ${outcome.message}`;
  }

  close(): void {
    for (const connection of this.#connections) connection.close();
  }
}

// --- A cell ------------------------------------------------------------------------------------

/** Where a cell writes and watches, and which processes it measures. */
export interface CellTarget {
  /** What is watched through what. */
  readonly subject: Subject;
  /** TinyKV's shard count; null for etcd. */
  readonly shards: number | null;
  /** Whose put API the writer uses. */
  readonly system: System;
  /** Where the writer's channels go (spread over them). */
  readonly putEndpoints: readonly string[];
  /** Which watch API the watchers use. */
  readonly watchApi: TinyKvApi;
  /** Where the watchers go: watcher i to endpoint i modulo their number. */
  readonly watchEndpoints: readonly string[];
  /** The server processes' pids by name. */
  readonly pids: () => Record<string, number>;
}

/** How big a cell is. */
export interface CellSpec {
  /** Watchers. */
  readonly watchers: number;
  /** Puts in flight. */
  readonly inFlight: number;
  /** Measured seconds of puts. */
  readonly seconds: number;
  /** Unmeasured seconds of puts before. */
  readonly warmupSeconds: number;
  /** The cell's own key prefix (no other cell writes under it). */
  readonly prefix: string;
}

/** Runs one cell: starts the watchers, writes, lets them catch up, checks and measures. */
export async function runCell(
  target: CellTarget,
  spec: CellSpec,
  options: { readonly ticksPerSecond: number },
): Promise<WatchCell> {
  const prefix = new TextEncoder().encode(spec.prefix);
  const open = target.watchApi === "kv" ? openKvWatcher : openEtcdWatcher;
  const watchers: Watcher[] = [];
  const writer = new Writer(target.system, target.putEndpoints, {
    prefix,
    inFlight: spec.inFlight,
  });
  try {
    for (let i = 0; i < spec.watchers; i++) {
      const endpoint = target.watchEndpoints[i % target.watchEndpoints.length];
      watchers.push(open(endpoint, prefix, `watcher ${i} (${endpoint})`));
    }
    const started = Promise.all(watchers.map((w) => w.started));
    await within(started, WATCH_START_TIMEOUT_MS, `${spec.watchers} watches to start`);
    if (spec.warmupSeconds > 0) await writer.run(spec.warmupSeconds);
    const pids = target.pids();
    const pidList = [...Object.values(pids), Deno.pid];
    const fromSeq = writer.puts.count;
    const before = await sampleCpu(pidList);
    await writer.run(spec.seconds);
    const writeEndMs = performance.now();
    const window = { fromSeq, toSeq: writer.puts.count };
    const drainMs = await drain(watchers, writer.puts, window);
    const after = await sampleCpu(pidList);
    const cpu = cpuOf(pids, { before, after, ticksPerSecond: options.ticksPerSecond });
    return toWatchCell({
      ...labelsOf(target, spec),
      ...deliveryOf(watchers, writer.puts, window),
      writeSeconds: (writeEndMs - before.atMs) / 1000,
      seconds: (after.atMs - before.atMs) / 1000,
      drainMs,
      putErrors: writer.failures.count,
      putErrorKinds: writer.failures.kinds,
      firstPutError: writer.failures.first,
      ...cpu,
    });
  } finally {
    for (const watcher of watchers) watcher.stop();
    writer.close();
  }
}

function labelsOf(target: CellTarget, spec: CellSpec) {
  return {
    subject: target.subject,
    shards: target.shards,
    watchers: spec.watchers,
    inFlight: spec.inFlight,
  };
}

/** Rejects when `promise` has not settled within `timeoutMs` (`what` names the wait). */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Waited ${timeoutMs / 1000} s for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits (bounded) until every open watcher got every acknowledged put of `window`; returns how
 * long that took. A watcher whose stream ended is not waited for: its failure is reported.
 */
async function drain(watchers: readonly Watcher[], puts: PutLog, window: SeqRange) {
  const startedMs = performance.now();
  const deadlineMs = startedMs + DRAIN_TIMEOUT_MS;
  let pending = watchers.map((watcher) => ({ watcher, fromSeq: window.fromSeq }));
  while (true) {
    for (const entry of pending) {
      entry.fromSeq = firstLacking(puts, entry.watcher.log, { ...window, fromSeq: entry.fromSeq });
    }
    pending = pending.filter((e) => e.fromSeq < window.toSeq && e.watcher.failure() === undefined);
    if (pending.length === 0 || performance.now() >= deadlineMs) {
      return performance.now() - startedMs;
    }
    await sleep(DRAIN_POLL_MS);
  }
}

/** The delivery check and the latencies over every watcher. */
function deliveryOf(watchers: readonly Watcher[], puts: PutLog, window: SeqRange) {
  const check = sumChecks(watchers.map((w) => checkDeliveries(puts, w.log, window)));
  const sinceAckMs: number[] = [];
  const sinceSendMs: number[] = [];
  let beforeAck = 0;
  for (const watcher of watchers) {
    const latencies = deliveryLatencies(puts, watcher.log, window);
    for (const ms of latencies.sinceAckMs) sinceAckMs.push(ms);
    for (const ms of latencies.sinceSendMs) sinceSendMs.push(ms);
    beforeAck += latencies.beforeAck;
  }
  const putLatenciesMs = putLatencies(puts, window);
  return {
    puts: putLatenciesMs.length,
    putLatency: summarizeLatencies(putLatenciesMs),
    latency: summarizeLatencies(sinceAckMs),
    sinceSendLatency: summarizeLatencies(sinceSendMs),
    beforeAck,
    check,
    watcherFailures: watchers.flatMap((w) => w.failure() ?? []),
  };
}

/** Server and driver CPU-seconds between two samples, and the machine's other load in cores. */
function cpuOf(
  pids: Record<string, number>,
  samples: { before: CpuSample; after: CpuSample; ticksPerSecond: number },
): Pick<WatchMeasurement, "serverCpuSeconds" | "driverCpuSeconds" | "otherCores"> {
  const { before, after, ticksPerSecond } = samples;
  const stats = { before: before.stats, after: after.stats, ticksPerSecond };
  const serverCpuSeconds = cpuSecondsBetween(pids, stats);
  const driverCpuSeconds = cpuSecondsBetween({ driver: Deno.pid }, stats).driver;
  const seconds = (after.atMs - before.atMs) / 1000;
  const machine = before.machine !== undefined && after.machine !== undefined
    ? (after.machine.busyTicks - before.machine.busyTicks) / ticksPerSecond
    : NaN;
  const otherCores = Math.max(0, machine - sumOf(serverCpuSeconds) - driverCpuSeconds) / seconds;
  return { serverCpuSeconds, driverCpuSeconds, otherCores };
}

function describeCell(cell: WatchCell): string {
  const { check } = cell;
  const faults = check.missing + check.duplicated + check.outOfOrder + check.unexpected;
  return `  ${subjectName(cell.subject)}${
    cell.shards === null ? "" : ` ${shardsLabel(cell.shards)}`
  }` +
    ` W${cell.watchers} C${cell.inFlight}: ${cell.putsPerSecond.toFixed(0)} puts/s, ` +
    `${cell.eventsPerSecond.toFixed(0)} events/s, after ack p50 ${cell.latency.p50Ms.toFixed(2)} ` +
    `p99 ${cell.latency.p99Ms.toFixed(2)} max ${cell.latency.maxMs.toFixed(2)} ms ` +
    `(${cell.beforeAck} of ${cell.latency.count} before ack), after send p50 ` +
    `${cell.sinceSendLatency.p50Ms.toFixed(2)} ms, server ` +
    `${cell.serverCpuSecondsPer1000Events.toFixed(3)} / ` +
    `driver ${cell.driverCpuSecondsPer1000Events.toFixed(3)} CPU-s per 1000 events, ` +
    `${cell.putErrors} put errors, ` +
    (faults === 0 && cell.watcherFailures.length === 0
      ? "all delivered once, in order"
      : `DELIVERY FAULTS: ${check.missing} missing, ${check.duplicated} duplicated, ` +
        `${check.outOfOrder} out of order, ${check.unexpected} unexpected; ` +
        cell.watcherFailures.join("; "));
}

// --- Parts -------------------------------------------------------------------------------------

/** What every part of a run shares. */
interface RunContext {
  readonly options: WatchOptions;
  readonly registry: ProcessRegistry;
  readonly ticksPerSecond: number;
  /** Every cell so far, in order. */
  readonly cells: WatchCell[];
  /** What failed so far (a cell, a part). */
  readonly errors: string[];
  /** Numbers the cells, for their prefixes. */
  cellCount: number;
}

/** Runs every watchers × in-flight cell of `target`; a failed cell is recorded, the others run. */
async function runCells(context: RunContext, target: CellTarget): Promise<void> {
  const { options } = context;
  for (const watchers of options.watchers) {
    for (const inFlight of options.concurrency) {
      const prefix = `watch/${++context.cellCount}-${target.subject}/`;
      const { seconds, warmupSeconds } = options;
      const spec = { watchers, inFlight, prefix, seconds, warmupSeconds };
      const shards = target.shards === null ? "" : ` ${shardsLabel(target.shards)}`;
      const label = `${subjectName(target.subject)}${shards} W${watchers} C${inFlight}`;
      try {
        const cell = await runCell(target, spec, { ticksPerSecond: context.ticksPerSecond });
        context.cells.push(cell);
        say(describeCell(cell));
      } catch (error) {
        const message = `${label}: ${errorMessage(error)}`;
        say(`  FAILED: ${message}`);
        context.errors.push(message);
      }
    }
  }
}

/** etcd: three members, its cells. */
async function etcdPart(context: RunContext): Promise<void> {
  const plan = findFreePlan(isPortFree, WATCH_PORT_BASE);
  const dir = await context.registry.tempDir("etcd-watch-");
  say(`etcd: starting 3 members (clients on ${plan.etcd.clientPort}-${plan.etcd.clientPort + 2})`);
  const etcd = await EtcdCluster.start(context.registry, { dir, ports: plan.etcd });
  try {
    await runCells(context, {
      subject: "etcd",
      shards: null,
      system: "etcd",
      putEndpoints: etcd.endpoints,
      watchApi: "etcd",
      watchEndpoints: etcd.endpoints,
      pids: () => etcd.pids(),
    });
  } finally {
    await etcd.stop();
    await context.registry.removeTempDir(dir);
  }
}

/** Where a TinyKV cell writes (its own Put) and watches (KV.Watch or the etcd Watch). */
export function tinyKvTarget(cluster: TinyKvCluster, api: TinyKvApi): CellTarget {
  return {
    subject: api === "kv" ? "tinykv-kv" : "tinykv-etcd",
    shards: cluster.options.shards,
    system: "tinykv",
    putEndpoints: [cluster.gateway],
    watchApi: api,
    watchEndpoints: [cluster.gateway],
    pids: () => cluster.pids(),
  };
}

/** TinyKV with `shards` shards: a fresh cluster, its cells through each API. */
async function tinyKvPart(context: RunContext, shards: number): Promise<ClusterExits> {
  const plan = findFreePlan(isPortFree, WATCH_PORT_BASE);
  const dir = await context.registry.tempDir(`tinykv-watch-${shards}-`);
  say(`TinyKV ${shardsLabel(shards)}: starting a dev cluster (gateway on ${plan.tinykv.gateway})`);
  const cluster = await TinyKvCluster.start(context.registry, {
    root: REPO_ROOT,
    dir,
    shards,
    ports: plan.tinykv,
    say,
  });
  try {
    await waitWhole(cluster);
    for (const api of context.options.apis) await runCells(context, tinyKvTarget(cluster, api));
    return { shards, exits: cluster.unexpectedExits };
  } finally {
    await cluster.stop();
    await context.registry.removeTempDir(dir);
  }
}

/** Waits (bounded) until every shard has its leader and three voters. */
export async function waitWhole(cluster: TinyKvCluster): Promise<void> {
  const deadline = Date.now() + WHOLE_TIMEOUT_MS;
  while (!(await cluster.view()).view.whole) {
    if (Date.now() > deadline) {
      throw new Error(`The cluster was not whole within ${WHOLE_TIMEOUT_MS / 1000} s`);
    }
    await sleep(200);
  }
}

// --- The run -----------------------------------------------------------------------------------

/** How the cells ran, for the report. */
export function methodLines(options: WatchOptions): string[] {
  return [
    `cells: ${options.seconds} s of puts measured after ${options.warmupSeconds} s of warmup; ` +
    `one writer keeps the cell's puts in flight, ${VALUE_BYTES}-byte values over ${KEYS} keys ` +
    "under a prefix of the cell's own, a key never twice in flight; puts through each system's " +
    "own Put (TinyKV: tinykv.v1.KV/Put without a session; etcd: KV.Put) over min(in flight, 8) " +
    "channels (etcd: spread over its 3 members)",
    "watchers: each its own grpc-js channel (HTTP/2 connection) with one watch of the prefix, " +
    "started before the first put (etcd Watch: `created` answered; KV.Watch: its first " +
    "response); etcd's spread over its members, TinyKV's all on its gateway",
    "delivery latency: from a put's acknowledgment (after ack) and from its send (after send) " +
    "to its event's arrival, every watcher; an event that beat the acknowledgment counts as 0 " +
    'after ack and in "before ack". The writer and the ' +
    "watchers share this one process (one JavaScript thread): at driver cores near 1 it, not " +
    "the server, set the pace",
    "checked per watcher: each acknowledged put of the window delivered once (missing, dup), " +
    "each key's events in write order (out of order), no other events (unexpected); after the " +
    `last answer the watchers get up to ${DRAIN_TIMEOUT_MS / 1000} s to catch up`,
    "CPU over the window and the catch-up, per 1000 delivered events (all watchers): etcd's 3 " +
    "members; TinyKV's 3 kvnodes, gateway, placement and ZooKeeper's java; events/s over the " +
    "same time, puts/s over the writing only; ratios are TinyKV / etcd",
    `TinyKV: tools/dev.ts of ${REPO_ROOT} (defaults but ports, dirs, num_shards), the KV.Watch ` +
    "and the etcd Watch cells on one cluster; etcd: 3.4 defaults",
  ];
}

/** Runs every part and gathers the result. */
async function runWatchBench(context: RunContext, etcdVersion: string): Promise<WatchResult> {
  const { options } = context;
  const startedAt = new Date().toISOString();
  const started = performance.now();
  const record = { phaseSeconds: {} as Record<string, number>, errors: context.errors };
  const unexpectedExits: ClusterExits[] = [];
  if (options.etcd) await part("etcd", record, () => etcdPart(context));
  if (options.tinykv) {
    for (const shards of options.shards) {
      await part(`TinyKV ${shardsLabel(shards)}`, record, async () => {
        const exits = await tinyKvPart(context, shards);
        if (exits.exits.length > 0) unexpectedExits.push(exits);
      });
    }
  }
  const cells = context.cells;
  return {
    startedAt,
    durationSeconds: (performance.now() - started) / 1000,
    machine: await machineInfo(etcdVersion),
    options: { ...options },
    method: methodLines(options),
    cells,
    comparisons: compareWatchCells(cells),
    correct: deliveryFaults(cells).length === 0,
    unexpectedExits,
    phaseSeconds: record.phaseSeconds,
    errors: record.errors,
  };
}

/** Prints the report (or the JSON) and returns the exit code. */
async function publish(result: WatchResult, options: WatchOptions): Promise<number> {
  const report = renderWatchReport(result);
  const json = JSON.stringify(result, null, 2);
  if (options.out !== undefined) await Deno.writeTextFile(options.out, `${json}\n`);
  if (options.json) {
    console.error(`\n${report}\n`);
    console.log(json);
  } else console.log(`\n${report}\n`);
  for (const fault of deliveryFaults(result.cells)) say(`watch: DELIVERY FAULT: ${fault}`);
  if (!result.correct) say("watch: FAILED: watchers missed, repeated or reordered events");
  return result.correct && result.errors.length === 0 ? 0 : 1;
}

async function main(args: readonly string[]): Promise<number> {
  const parsed = parseWatchFlags(args);
  if (parsed.kind === "error") {
    console.error(`watch: ${parsed.message}`);
    return 2;
  }
  const { options } = parsed;
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  // Deno's node:http2 builds an error, stack trace and all, at the end of every grpc-js unary
  // call (see bench/compare_load.ts): a cost in this process's CPU the same for both systems,
  // which nothing here reads, so it is cut for both.
  Error.stackTraceLimit = STACK_TRACE_LIMIT;
  const registry = new ProcessRegistry();
  stopOnSignal(registry, "watch");
  try {
    const etcdVersion = options.etcd ? await ensureEtcd(say) : "not run";
    const context: RunContext = {
      options,
      registry,
      ticksPerSecond: await clockTicksPerSecond(),
      cells: [],
      errors: [],
      cellCount: 0,
    };
    say(`watch: ${methodLines(options).join("; ")}`);
    return await publish(await runWatchBench(context, etcdVersion), options);
  } finally {
    await registry.cleanUp();
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    console.error(`watch: ${error instanceof Error ? error.stack ?? error.message : error}`);
    code = 1;
  }
  Deno.exit(code);
}
