// Watches (`tinykv.v1.KV/Watch`, docs/design.md "Watch") end to end against real dev clusters
// (`tools/dev.ts`: ZooKeeper, kvnodes, placement, a gateway; 4 shards of 3 replicas), through the
// `tinykv watch` CLI (a subprocess with the permissions of `deno task tinykv`), `TinyKvClient.watch`
// and a raw gRPC client; and etcd's Watch on the gateway's etcd API through Debian's `etcdctl` 3.4
// (a subprocess) and the npm client `etcd3`.
//
// A cluster of 4 kvnodes with the default window (64 MiB):
// - CLI, one key: `watch KEY --count N --json` prints exactly the puts and deletes of KEY made after
//   it started (not a write made before it, not a longer key, not its shard's other keys, not a
//   delete of a missing key), with its shard and increasing indexes, and its final positions.
// - CLI, a prefix over keys in all 4 shards: every change once, each key's changes in order, none
//   of the neighbours outside the prefix; the final JSON positions resume it: `watch --from` them
//   after more writes prints exactly the changes made in between, and the `Resume with --from` it
//   prints on stderr resumes it again exactly.
// - Limits at the limit and one past: a key of 4,096 bytes is watched and its 1 MiB value (the dev
//   default `storage.value_bytes_max`) arrives whole; 4,097 bytes, an empty key without --prefix,
//   a --from naming a shard the watch does not cover, and a position past the shard's log end are
//   INVALID_ARGUMENT (CLI exit 3 with the server's message; gRPC status 3), and so is a start
//   naming one shard twice (gRPC: TinyKvClient and the CLI keep the last position of a shard).
// - `TinyKvClient.watch` over a prefix in every shard while a writer puts a numbered value after
//   another, across a leader transfer (`tinykv transfer-leader`), a replica move off a shard's
//   leader onto the 4th kvnode (`tinykv move`), and a shard leader's kvnode killed with SIGKILL
//   (dev restarts it): it sees every acknowledged write exactly once, in order per key and per
//   shard, and no write that was not made (nor one that failed as not applied). So do, over the
//   same writes, an `etcdctl watch --prefix` (in the background, live once it prints one of the
//   markers put until it does; killed by its pid at the end) and an etcd3 `watch().prefix()`, each
//   on one etcd Watch stream that goes on throughout: no cancel, no reconnect, etcdctl never exits
//   nor reports anything on stderr.
// - The gateway stopped (SIGTERM to its pid; dev restarts it): changes written straight to the
//   kvnodes while it is down, and through it once it is back, arrive exactly once when the watch
//   resumes with `start:` the positions it had reached before; a watch left open throughout
//   resumes by itself and gets every change exactly once too.
// A cluster of 3 kvnodes with `--kvnode.watch_window_bytes=1048576` (the minimum):
// - OUT_OF_RANGE: after 40 puts of 64 KiB to one shard, `watch --from` an older position exits 3
//   naming OUT_OF_RANGE and the oldest position held; a watch from that oldest position, and from
//   the newest, works.
// - A watcher that reads nothing (a `tinykv watch` stopped with SIGSTOP, so its socket is not read)
//   while changes of 256 KiB are written: the gateway cuts it once more than the 16 MiB a watch
//   may hold for its client wait (`tinykv_gateway_watches` drops to 0; bounded at 48 MiB), the
//   kvnodes' windows stay within their 1 MiB; resumed (SIGCONT) it prints a contiguous run of the
//   first changes, each once, then exits 4 with RESOURCE_EXHAUSTED; resuming from its last
//   position is OUT_OF_RANGE, naming the oldest position held. (A stopped process, not a paused
//   grpc-js stream: a paused stream leaves its connection's send window open, which the gateway
//   cannot see under Deno; docs/design.md "Limits of flow control on Deno".)
// Every wait is bounded; no process of either cluster exits, and both stop cleanly on Ctrl-C.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Etcd3, type IKeyValue } from "etcd3";
import {
  ClientSession,
  KvRouter,
  TinyKvClient,
  TinyKvError,
  type WatchUpdate,
  ZooKeeperClusterView,
} from "@tinykv/client";
import {
  type ClusterStateResponse,
  KVService,
  PlacementService,
  type WatchEvent,
  WatchEvent_Kind,
  type WatchPosition,
  type WatchRequest,
  type WatchResponse,
} from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, unaryCaller } from "@tinykv/rpc";
import { keysInEveryShard as keysInEachShard, shardOfKey } from "./_harness/shards.ts";
import { connectZooKeeper } from "@tinykv/zk";
import { waitFor } from "@tinykv/zk/testing";
import { patternBytes } from "./_harness/bytes.ts";
import { CLI_PERMISSIONS } from "./_harness/cli.ts";
import {
  devArgs,
  devPortsAvoiding,
  killDev,
  liveProcesses,
  REPO_ROOT,
  type RunningDev,
  runUntilServing,
  stopDev,
} from "./_harness/dev_cluster.ts";

// The contract (docs/design.md "Limits and bad input", "Watch"), restated on purpose.
/** The longest key (KEY_BYTES_MAX in libs/shard). */
const KEY_MAX = 4096;
/** The largest value: the dev cluster's default `storage.value_bytes_max`. */
const VALUE_MAX = 1024 * 1024;
/** The smallest `kvnode.watch_window_bytes`. */
const SMALL_WINDOW_BYTES = 1024 * 1024;
/** The largest value a cluster with that window may allow (2 × it + 64 KiB fits the window). */
const SMALL_WINDOW_VALUE_MAX = (SMALL_WINDOW_BYTES - 64 * 1024) / 2;
const SHARDS = 4;
const MESSAGE_BYTES = 8 * 1024 * 1024;
/** How long one CLI run may take before it is killed and the test fails. */
const CLI_KILL_MS = 30_000;
/**
 * `--timeout` of a CLI watch that should end by its `--count`: if changes go missing it ends by
 * itself and prints what it got (and where it would resume), for the failure message.
 */
const WATCH_TIMEOUT = "10000";
/** Debian's etcdctl 3.4 (`deno task setup --test` installs it). */
const ETCDCTL = "/usr/bin/etcdctl";
/** A backstop: an `etcdctl watch` still running after this is killed (the test kills it first). */
const ETCDCTL_WATCH_KILL_MS = 120_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The shard a key is in on a fresh cluster of {@linkcode SHARDS} shards. */
function shardOf(key: string): number {
  return shardOfKey(key, SHARDS);
}

/** `perShard` keys `<prefix>k<i>` in each shard, the first ones found, in key order. */
function keysInEveryShard(prefix: string, perShard: number): string[] {
  return keysInEachShard(SHARDS, perShard, (i) => `${prefix}k${i}`);
}

/** The first key `<prefix><i>` in `shard` (or, with `not`, in any other shard). */
function keyInShard(prefix: string, shard: number, not = false): string {
  for (let i = 0; i < 10_000; i++) {
    const key = `${prefix}${i}`;
    if ((shardOf(key) === shard) !== not) return key;
  }
  throw new Error(`No key under ${prefix} ${not ? "outside" : "in"} shard ${shard}`);
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** `length` pseudo-random letters and digits from `seed` (printable, so CLI output is text). */
function printable(length: number, seed: number): string {
  const codes = encoder.encode(ALNUM);
  return decoder.decode(patternBytes(length, seed).map((byte) => codes[byte % codes.length]));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a failure naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// The CLI, followed while it runs

/** What one CLI run printed, and how it exited. */
interface CliRun {
  readonly args: readonly string[];
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function describeRun(run: { args: readonly string[]; stdout: string; stderr: string }): string {
  const cut = (text: string) => (text.length > 1500 ? `${text.slice(0, 1500)}…` : text);
  const args = run.args.map((arg) => (arg.length > 80 ? `<${arg.length} bytes>` : arg));
  return `tinykv ${args.join(" ")}\nstdout: ${cut(run.stdout)}\nstderr: ${cut(run.stderr)}`;
}

/** `tinykv ARGS…` as `deno task tinykv` runs it, its output readable while it runs. */
class CliProcess {
  readonly args: readonly string[];
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  #stdout = "";
  #stderr = "";
  #exited = false;

  constructor(args: readonly string[]) {
    this.args = args;
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...CLI_PERMISSIONS, "tools/tinykv.ts", ...args],
      cwd: REPO_ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>, add: (text: string) => void) => {
      const streamDecoder = new TextDecoder();
      for await (const chunk of stream) add(streamDecoder.decode(chunk, { stream: true }));
    };
    const pumps = Promise.all([
      pump(this.#child.stdout, (text) => (this.#stdout += text)),
      pump(this.#child.stderr, (text) => (this.#stderr += text)),
    ]);
    this.#status = this.#child.status.then(async (status) => {
      await pumps;
      this.#exited = true;
      return status;
    });
  }

  get pid(): number {
    return this.#child.pid;
  }

  get stdout(): string {
    return this.#stdout;
  }

  /** Kills the CLI (this test's own child) with SIGKILL; its output so far stays readable. */
  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Waits (bounded) until `condition` holds; fails if the CLI exits first. */
  async until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    await waitFor(() => this.#exited || condition(), { timeoutMs, what }).catch((error) => {
      throw new Error(`${error}\n${describeRun(this)}`);
    });
    if (!condition()) throw new Error(`tinykv exited before ${what}:\n${describeRun(this)}`);
  }

  /** Waits (bounded) until the watch has started: its first `{"positions"…}` or stderr line. */
  async started(): Promise<void> {
    await this.until(
      () => /^\{"positions"/m.test(this.#stdout) || /^Watching from /m.test(this.#stderr),
      "the watch to start",
    );
  }

  /** Waits for the exit; kills the CLI (this test's own child) after `timeoutMs` and fails. */
  async finish(timeoutMs = CLI_KILL_MS): Promise<CliRun> {
    let status: Deno.CommandStatus;
    try {
      status = await within(this.#status, timeoutMs, `tinykv ${this.args[0]} to exit`);
    } catch (error) {
      this.kill();
      await this.#status;
      throw new Error(`${error}\n${describeRun(this)}`);
    }
    return { args: this.args, code: status.code, stdout: this.#stdout, stderr: this.#stderr };
  }
}

/**
 * `etcdctl watch ARGS…` (v3 API, simple output) in the background against a gateway's etcd port,
 * its output collected as it comes. It prints nothing when it starts: see the markers of the
 * TinyKvClient step.
 */
class EtcdctlWatch {
  readonly args: readonly string[];
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<Deno.CommandStatus>;
  #stdout = "";
  #stderr = "";
  /** Set once the process has been waited for: its pid is no longer ours to signal. */
  #reaped = false;

  constructor(endpoint: string, args: readonly string[]) {
    this.args = ["watch", ...args];
    this.#child = new Deno.Command(ETCDCTL, {
      args: [`--endpoints=${endpoint}`, "--dial-timeout=5s", ...this.args],
      env: { ETCDCTL_API: "3" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(ETCDCTL_WATCH_KILL_MS),
    }).spawn();
    const collect = async (from: ReadableStream<Uint8Array>, add: (text: string) => void) => {
      for await (const text of from.pipeThrough(new TextDecoderStream())) add(text);
    };
    const reading = Promise.all([
      collect(this.#child.stdout, (text) => (this.#stdout += text)),
      collect(this.#child.stderr, (text) => (this.#stderr += text)),
    ]);
    const status = this.#child.status.then((status) => {
      this.#reaped = true;
      return status;
    });
    this.#done = Promise.all([status, reading]).then(([status]) => status);
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Whether it still runs (it never ends by itself: a canceled watch makes it exit). */
  get running(): boolean {
    return !this.#reaped;
  }

  get stderr(): string {
    return this.#stderr;
  }

  describe(): string {
    const cut = (text: string) => (text.length > 3000 ? `…${text.slice(-3000)}` : text);
    return `etcdctl ${this.args.join(" ")} (pid ${this.pid}, ` +
      `${this.running ? "running" : "exited"})\nstdout: ${cut(this.#stdout)}\n` +
      `stderr: ${cut(this.#stderr)}`;
  }

  /** The changes printed so far (whole ones: `PUT`/`DELETE`, the key, the value line ended). */
  printed(): Change[] {
    const lines = this.#stdout.split("\n");
    const changes: Change[] = [];
    for (let i = 0; i + 3 < lines.length; i += 3) {
      const [type, key, value] = lines.slice(i, i + 3);
      assert.ok(
        type === "PUT" || type === "DELETE",
        `a change's type, line ${i}:\n${this.describe()}`,
      );
      changes.push(type === "PUT" ? put(key, value) : del(key));
    }
    return changes;
  }

  /** Kills it by its pid (SIGTERM) unless it has exited; how it ended (bounded). */
  async kill(): Promise<Deno.CommandStatus> {
    if (!this.#reaped) {
      try {
        Deno.kill(this.pid, "SIGTERM");
      } catch {
        // It exited just now.
      }
    }
    return await within(this.#done, 10_000, `etcdctl (pid ${this.pid}) to exit once killed`);
  }
}

/** A change as the test makes it. */
interface Change {
  readonly kind: "put" | "delete";
  readonly key: string;
  readonly value?: string;
}

/** A change as a watch reported it. */
interface Seen extends Change {
  readonly shard: number;
  readonly index: number;
}

const put = (key: string, value: string): Change => ({ kind: "put", key, value });
const del = (key: string): Change => ({ kind: "delete", key });

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Bytes as the CLI's JSON carries them: a string, or `{"base64": …}`. */
function jsonText(value: string | { base64: string }): string {
  return typeof value === "string" ? value : decoder.decode(fromBase64(value.base64));
}

/** A `watch --json` run's output: its events, each update's positions, and the final ones. */
function jsonWatch(run: CliRun): { events: Seen[]; updates: WatchPosition[][] } {
  const events: Seen[] = [];
  const updates: WatchPosition[][] = [];
  for (const line of run.stdout.split("\n").filter((l) => l !== "")) {
    // deno-lint-ignore no-explicit-any
    let doc: any;
    try {
      doc = JSON.parse(line);
    } catch {
      assert.fail(`not a JSON line: ${line.slice(0, 200)}\n${describeRun(run)}`);
    }
    if ("positions" in doc) updates.push(doc.positions);
    else {
      assert.ok(doc.kind === "put" || doc.kind === "delete", `an event: ${line.slice(0, 200)}`);
      events.push({
        kind: doc.kind,
        key: jsonText(doc.key),
        ...(doc.kind === "put" ? { value: jsonText(doc.value) } : {}),
        shard: doc.shard,
        index: doc.index,
      });
    }
  }
  assert.ok(updates.length >= 1, `positions printed:\n${describeRun(run)}`);
  return { events, updates };
}

/** A `watch` run's human output: `PUT\tKEY\tVALUE\tS:I` and `DELETE\tKEY\tS:I` lines. */
function humanWatch(run: CliRun): Seen[] {
  const events: Seen[] = [];
  for (const line of run.stdout.split("\n").filter((l) => l !== "")) {
    const putLine = /^PUT\t([^\t]*)\t([^\t]*)\t(\d+):(\d+)$/.exec(line);
    const delLine = /^DELETE\t([^\t]*)\t(\d+):(\d+)$/.exec(line);
    if (putLine !== null) {
      events.push({
        kind: "put",
        key: putLine[1],
        value: putLine[2],
        shard: Number(putLine[3]),
        index: Number(putLine[4]),
      });
    } else if (delLine !== null) {
      events.push({
        kind: "delete",
        key: delLine[1],
        shard: Number(delLine[2]),
        index: Number(delLine[3]),
      });
    } else assert.fail(`not a change line: ${JSON.stringify(line)}\n${describeRun(run)}`);
  }
  return events;
}

/** `S:I,S:I` in shard order, as `--from` takes it. */
function fromArg(positions: readonly WatchPosition[]): string {
  return [...positions].sort((a, b) => a.shard - b.shard).map((p) => `${p.shard}:${p.index}`)
    .join(",");
}

function parseFrom(text: string): WatchPosition[] {
  return text.split(",").map((part) => {
    const [shard, index] = part.split(":").map(Number);
    return { shard, index };
  });
}

/** The positions a human-mode watch printed on stderr: where it started and where to resume. */
function stderrPositions(run: CliRun): { watching: string; resume: string } {
  const watching = /^Watching from (\S+)$/m.exec(run.stderr);
  const resume = /^Resume with --from (\S+)$/m.exec(run.stderr);
  assert.ok(watching !== null && resume !== null, `stderr positions:\n${describeRun(run)}`);
  return { watching: watching[1], resume: resume[1] };
}

/** Each key's changes in order: `put:VALUE` or `delete`. */
function byKey(changes: readonly Change[]): Record<string, string[]> {
  const keys: Record<string, string[]> = {};
  for (const change of changes) {
    (keys[change.key] ??= []).push(change.kind === "put" ? `put:${change.value}` : "delete");
  }
  return Object.fromEntries(Object.entries(keys).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * `seen` is exactly `expected`: the same changes, each once, each key's in order; each in its
 * key's shard, and each shard's in increasing index order (every change here is its own entry).
 */
function assertExactly(seen: readonly Seen[], expected: readonly Change[], what: string): void {
  const context = `${what}\nseen: ${JSON.stringify(seen.map(short))}`;
  assert.deepEqual(
    byKey(seen),
    byKey(expected),
    `each key's changes, once and in order: ${context}`,
  );
  assert.equal(seen.length, expected.length, context);
  assertShardOrder(seen, context);
}

/** A change for messages; its shard and index when the watch reported them. */
function short(event: Change & { readonly shard?: number; readonly index?: number }): string {
  const value = event.value === undefined
    ? ""
    : `=${event.value.length > 24 ? `<${event.value.length}>` : event.value}`;
  const at = event.shard === undefined ? "" : ` @${event.shard}:${event.index}`;
  return `${event.kind} ${event.key.slice(0, 40)}${value}${at}`;
}

/** Each event in its key's shard; each shard's indexes strictly increasing. */
function assertShardOrder(seen: readonly Seen[], context: string): void {
  const last = new Map<number, number>();
  for (const event of seen) {
    assert.equal(event.shard, shardOf(event.key), `the shard of ${event.key}: ${context}`);
    const before = last.get(event.shard) ?? 0;
    assert.ok(
      event.index > before,
      `shard ${event.shard} in index order (${before}, then ` +
        `${event.index}): ${context}`,
    );
    last.set(event.shard, event.index);
  }
}

function seenOf(event: WatchEvent): Seen {
  const putEvent = event.kind === WatchEvent_Kind.PUT;
  return {
    kind: putEvent ? "put" : "delete",
    key: decoder.decode(event.key),
    ...(putEvent ? { value: decoder.decode(event.value) } : {}),
    shard: event.shard,
    index: event.index,
  };
}

// ---------------------------------------------------------------------------------------------
// The cluster

/** The pid the dev status table gives for `service` on `port`. */
function tablePid(output: string, service: string, port: number): number {
  const row = new RegExp(`^ {2}${service} +127\\.0\\.0\\.1:${port} +(\\d+) {2}`, "m").exec(output);
  assert.ok(row !== null, `no table row for ${service} :${port}:\n${output}`);
  return Number(row[1]);
}

/** Every one of `pids` runs, and dev reported no exit except the `expected` ones. */
async function assertAlive(
  running: RunningDev,
  pids: readonly number[],
  expectedExits: readonly RegExp[] = [],
): Promise<void> {
  const live = new Set((await liveProcesses()).map((p) => p.pid));
  for (const pid of pids) {
    assert.ok(live.has(pid), `pid ${pid} still runs:\n${running.dev.output()}`);
  }
  const exits = running.dev.output().split("\n").filter((line) => / exited \(pid /.test(line));
  const unexpected = exits.filter((line) => !expectedExits.some((pattern) => pattern.test(line)));
  assert.deepEqual(unexpected, [], `no process exited:\n${running.dev.output()}`);
}

/** Waits (bounded) until dev has printed a line matching `pattern`; returns the match. */
async function devLine(running: RunningDev, pattern: RegExp, timeoutMs: number) {
  let match: RegExpExecArray | null = null;
  await waitFor(() => (match = pattern.exec(running.dev.output())) !== null, {
    timeoutMs,
    what: `dev to print ${pattern}`,
  }).catch((error) => {
    throw new Error(`${error}; dev printed:\n${running.dev.output()}`);
  });
  return match!;
}

/** Placement's view (its admin API, polled cheaply). */
async function clusterState(admin: string): Promise<ClusterStateResponse> {
  const client = createGrpcClient(PlacementService, admin, { maxMessageBytes: MESSAGE_BYTES });
  try {
    const answer = await unaryCaller(client, "ClusterState")({}, { deadlineMs: 5_000 });
    assert.equal(answer.kind, "ok", JSON.stringify(answer));
    return (answer as { response: ClusterStateResponse }).response;
  } finally {
    client.close();
  }
}

/** Waits (bounded, polling every 200 ms) until `check` holds of placement's view; returns it. */
async function stateWhere(
  admin: string,
  check: (state: ClusterStateResponse) => boolean,
  what: string,
  timeoutMs: number,
): Promise<ClusterStateResponse> {
  let last: ClusterStateResponse | undefined;
  await waitFor(async () => {
    last = await clusterState(admin);
    if (check(last)) return true;
    await sleep(200);
    return false;
  }, { timeoutMs, what }).catch((error) => {
    throw new Error(`${error}; last state: ${JSON.stringify(last)}`);
  });
  return last!;
}

/** No move in flight, and every shard has 3 voters and a leader. */
function settled(state: ClusterStateResponse): boolean {
  return state.bootstrapped && state.tasks.length === 0 && state.shards.length === SHARDS &&
    state.shards.every((s) => s.voters.length === 3 && s.learners.length === 0 && s.leader !== "");
}

/** The value of the metric `name` (no labels) at `/metrics` on `port`, if it has one. */
async function metric(port: number, name: string): Promise<number | undefined> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, {
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.text();
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return match === null ? undefined : Number(match[1]);
}

/** A raw `KV/Watch` call's first message or its status (bounded), then cancelled. */
async function rawWatchOutcome(
  gateway: string,
  request: WatchRequest,
): Promise<{ first?: WatchResponse; error?: grpc.ServiceError }> {
  const kv = createGrpcClient(KVService, gateway, { maxMessageBytes: MESSAGE_BYTES });
  try {
    const call = kv.Watch(request, new grpc.Metadata(), {});
    const outcome = Promise.withResolvers<{ first?: WatchResponse; error?: grpc.ServiceError }>();
    call.on("data", (first: WatchResponse) => outcome.resolve({ first }));
    call.on("error", (error: grpc.ServiceError) => outcome.resolve({ error }));
    const result = await within(outcome.promise, 15_000, "a raw watch to answer");
    call.cancel();
    return result;
  } finally {
    kv.close();
  }
}

// ---------------------------------------------------------------------------------------------

Deno.test("watch: CLI, limits, leader changes and a move, gateway restart", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-watch-" });
  const ports = devPortsAvoiding();
  const gateway = `127.0.0.1:${ports.gateway}`;
  const admin = `127.0.0.1:${ports.admin}`;
  let running: RunningDev | undefined;
  let client: TinyKvClient | undefined;
  const tinykv = (...args: string[]) => new CliProcess(["--endpoint", gateway, ...args]);
  const cli = (...args: string[]) => tinykv(...args).finish();
  try {
    running = await runUntilServing([...devArgs(dir, ports, SHARDS), "--nodes", "4"]);
    assert.equal(running.pids.length, 7, "ZooKeeper, 4 kvnodes, placement, gateway");
    const pids = [...running.pids];
    /** The exits the test caused (dev restarts those processes). */
    const caused: RegExp[] = [];
    client = TinyKvClient.connect({
      endpoints: [gateway],
      deadlineMs: 15_000,
      maxMessageBytes: MESSAGE_BYTES,
    });
    const kv = client;

    await t.step("CLI: watch KEY prints exactly that key's changes after it started", async () => {
      const key = "w1/one";
      const shard = shardOf(key);
      const sameShard = keyInShard("w1/same-", shard);
      const otherShard = keyInShard("w1/other-", shard, true);
      await kv.put(key, "before the watch");
      const watch = tinykv("--json", "watch", key, "--count", "4", "--timeout", WATCH_TIMEOUT);
      await watch.started();
      const start = JSON.parse(watch.stdout.split("\n")[0]).positions as WatchPosition[];
      assert.equal(start.length, 1, `one shard covered: ${JSON.stringify(start)}`);
      assert.equal(start[0].shard, shard);
      await kv.put(key, "a");
      await kv.put(`${key}0`, "a longer key");
      await kv.put(sameShard, "another key of its shard");
      await kv.put(key, "b");
      assert.equal(await kv.delete(key), true);
      assert.equal(await kv.delete(key), false, "the second delete finds nothing");
      await kv.put(otherShard, "a key of another shard");
      await kv.delete(sameShard);
      await kv.put(key, "c");
      const run = await watch.finish();
      assert.equal(run.code, 0, describeRun(run));
      assert.equal(run.stderr, "", describeRun(run));
      const { events, updates } = jsonWatch(run);
      assertExactly(events, [put(key, "a"), put(key, "b"), del(key), put(key, "c")], "one key");
      assert.ok(events[0].index > start[0].index, `after the start: ${JSON.stringify(events)}`);
      assert.deepEqual(updates[0], start);
      assert.deepEqual(updates.at(-1), [{ shard, index: events.at(-1)!.index }], "final position");
    });

    await t.step(
      "CLI: watch PREFIX --prefix over 4 shards, then --from resumes exactly",
      async () => {
        const prefix = "w1p/";
        const keys = keysInEveryShard(prefix, 2);
        assert.equal(new Set(keys.map(shardOf)).size, SHARDS, `keys in every shard: ${keys}`);
        const outside = ["w1p", "w1p.", "w1p0", "w1o/k0", "w1q/"];
        const round = async (r: number, expected: Change[]) => {
          // Every key's put at once, so the shards' changes interleave.
          await Promise.all(keys.map((key) => kv.put(key, `r${r}:${key}`)));
          expected.push(...keys.map((key) => put(key, `r${r}:${key}`)));
        };
        const expected: Change[] = [];
        const count = 3 * keys.length + 2;
        const watch = tinykv(
          "--json",
          "watch",
          prefix,
          "--prefix",
          "--count",
          String(count),
          "--timeout",
          WATCH_TIMEOUT,
        );
        await watch.started();
        const start = JSON.parse(watch.stdout.split("\n")[0]).positions as WatchPosition[];
        assert.deepEqual(start.map((p) => p.shard).sort(), [1, 2, 3, 4], "every shard started");
        await round(0, expected);
        await Promise.all(outside.map((key) => kv.put(key, "outside")));
        await round(1, expected);
        for (const key of [keys[0], keys[5]]) {
          assert.equal(await kv.delete(key), true);
          expected.push(del(key));
        }
        await Promise.all(outside.map((key) => kv.delete(key)));
        await round(2, expected);
        const first = await watch.finish();
        assert.equal(first.code, 0, describeRun(first));
        const { events, updates } = jsonWatch(first);
        assertExactly(events, expected, "the prefix");
        const reached = updates.at(-1)!;
        assert.deepEqual(reached.map((p) => p.shard).sort(), [1, 2, 3, 4], "final: every shard");
        for (const position of reached) {
          const last = events.filter((e) => e.shard === position.shard).at(-1)!;
          assert.ok(
            position.index >= last.index,
            `shard ${position.shard} ends at or after its last change: ${position.index}`,
          );
        }

        // More writes with no watch running; the final JSON positions resume exactly after them.
        const between: Change[] = [];
        await round(3, between);
        assert.equal(await kv.delete(keys[1]), true);
        between.push(del(keys[1]));
        const second = await cli(
          "watch",
          prefix,
          "--prefix",
          "--from",
          fromArg(reached),
          "--count",
          String(between.length),
          "--timeout",
          WATCH_TIMEOUT,
        );
        assert.equal(second.code, 0, describeRun(second));
        assertExactly(humanWatch(second), between, "resumed from the JSON positions");
        const { watching, resume } = stderrPositions(second);
        assert.equal(watching, fromArg(reached), "it starts where it was told");

        // And the `Resume with --from` of stderr resumes it again.
        const third: Change[] = [];
        await round(4, third);
        const again = await cli(
          "--json",
          "watch",
          prefix,
          "--prefix",
          "--from",
          resume,
          "--count",
          String(third.length),
          "--timeout",
          WATCH_TIMEOUT,
        );
        assert.equal(again.code, 0, describeRun(again));
        assertExactly(jsonWatch(again).events, third, "resumed from the stderr positions");
        assert.deepEqual(jsonWatch(again).updates[0], parseFrom(resume));
      },
    );

    await t.step("limits: a 4,096-byte key and a 1 MiB value; bad watches refused", async () => {
      const key = `w6/${printable(KEY_MAX - 3, 1)}`;
      assert.equal(encoder.encode(key).length, KEY_MAX);
      const value = printable(VALUE_MAX, 2);
      const watch = tinykv("--json", "watch", key, "--count", "1", "--timeout", WATCH_TIMEOUT);
      await watch.started();
      await kv.put(key, value);
      const run = await watch.finish();
      assert.equal(run.code, 0, describeRun(run));
      const { events } = jsonWatch(run);
      assert.equal(events.length, 1, describeRun(run));
      assert.equal(events[0].key, key, "the 4,096-byte key whole");
      assert.equal(events[0].value?.length, VALUE_MAX, "the 1 MiB value whole");
      assert.ok(events[0].value === value, "the 1 MiB value byte for byte");
      assert.equal(events[0].shard, shardOf(key));

      const small = "w6/small";
      const shard = shardOf(small);
      const other = shard === 1 ? 2 : 1;
      const tooLong = `w6/${printable(KEY_MAX - 2, 3)}`;
      const refusals: Array<[string[], RegExp]> = [
        [["watch", tooLong], /^error: invalidArgument: Key has 4097 bytes: the maximum is 4096$/m],
        [["watch", tooLong, "--prefix"], /^error: invalidArgument: Key has 4097 bytes/m],
        [["watch", ""], /^error: invalidArgument: Key has 0 bytes: the minimum is 1 /m],
        [
          ["watch", small, "--from", `${other}:1`],
          new RegExp(
            `^error: invalidArgument: Watch start position names shard ${other}, which the ` +
              `watch does not cover \\(it covers shard ${shard}\\)$`,
            "m",
          ),
        ],
        [
          ["watch", "w6/", "--prefix", "--from", "1:1,99:1"],
          /^error: invalidArgument: .*names shard 99, .*\(it covers shards 1, 2, 3, 4\)$/m,
        ],
        [
          ["watch", small, "--from", `${shard}:1000000000`],
          new RegExp(
            `^error: invalidArgument: .*Watch position 1000000000 of shard ${shard} is past the ` +
              `end of its log \\(\\d+\\)`,
            "m",
          ),
        ],
      ];
      const runs = await Promise.all(
        refusals.map(([args]) => cli("--timeout", "15000", ...args)),
      );
      for (const [i, refused] of runs.entries()) {
        assert.equal(refused.code, 3, `exit 3 (invalid argument):\n${describeRun(refused)}`);
        assert.equal(refused.stdout, "", describeRun(refused));
        assert.match(refused.stderr, refusals[i][1], describeRun(refused));
      }
      const json = await cli("--json", "watch", "");
      assert.equal(json.code, 3, describeRun(json));
      assert.equal(JSON.parse(json.stdout).error.code, "invalidArgument", describeRun(json));

      // The gRPC status itself, at the limit and one past.
      const status = async (key: Uint8Array, prefix: boolean) =>
        (await rawWatchOutcome(gateway, { key, prefix, start: [] })).error?.code;
      assert.equal(await status(new Uint8Array(KEY_MAX + 1).fill(97), false), 3);
      assert.equal(await status(new Uint8Array(KEY_MAX + 1).fill(97), true), 3);
      assert.equal(await status(new Uint8Array(0), false), 3);
      // One shard named twice (TinyKvClient and the CLI keep the last of each shard's).
      const twice = await rawWatchOutcome(gateway, {
        key: encoder.encode(small),
        prefix: false,
        start: [{ shard, index: 1 }, { shard, index: 2 }],
      });
      assert.equal(twice.error?.code, 3, `refused: ${JSON.stringify(twice.first)}`);
      assert.match(twice.error!.details, new RegExp(`^Watch start names shard ${shard} twice$`));
      const atLimit = await rawWatchOutcome(gateway, {
        key: new Uint8Array(KEY_MAX).fill(97),
        prefix: true,
        start: [],
      });
      assert.equal(atLimit.error, undefined, `a 4,096-byte prefix: ${atLimit.error?.message}`);
      assert.equal(atLimit.first?.positions.length, SHARDS, "a plain prefix covers every shard");
      // An empty key with --prefix is every key.
      const everything = await cli("watch", "", "--prefix", "--timeout", "1000");
      assert.equal(everything.code, 0, describeRun(everything));
      const { watching } = stderrPositions(everything);
      assert.deepEqual(parseFrom(watching).map((p) => p.shard), [1, 2, 3, 4], watching);
      await assertAlive(running!, pids);
    });

    await t.step(
      "TinyKvClient, etcdctl and etcd3: every acknowledged write once, in order, across a leader " +
        "transfer, a move and a leader's kvnode killed",
      async () => {
        const prefix = "w2/";
        const keys = keysInEveryShard(prefix, 2);
        /** Where the markers that tell when etcdctl watches go: under the prefix, no writer's key. */
        const marker = `${prefix}marker`;
        await stateWhere(admin, settled, "a settled cluster", 30_000);
        // The TinyKvClient watch, in the background.
        const stop = new AbortController();
        const seen: Seen[] = [];
        const updates: WatchUpdate[] = [];
        let watchError: unknown;
        const watching = (async () => {
          for await (const update of kv.watch(prefix, { prefix: true, signal: stop.signal })) {
            updates.push(update);
            seen.push(...update.events.map(seenOf));
          }
        })().catch((error) => (watchError = error));
        await waitFor(() => updates.length > 0 || watchError !== undefined, {
          timeoutMs: 15_000,
          what: "the watch to start",
        });
        assert.equal(watchError, undefined, `the watch started: ${watchError}`);

        // Real etcd clients watch the same prefix on the gateway's etcd API (its client port), on
        // one etcd Watch stream each, which must keep delivering throughout: no cancel, no
        // reconnect. (A reconnected etcd client asks to resume from a revision, which TinyKV
        // cannot honour; the gateway resumes its shard streams itself, so through the transfer,
        // the move and the kill the etcd stream stays the same one.)
        const etcd = new Etcd3({ hosts: gateway });
        let ctlWatch: EtcdctlWatch | undefined;
        try {
          // etcd3: created once the watch has started in every shard, so it gets every change
          // made after create() resolved, the markers included.
          const watcher = await within(
            etcd.watch().prefix(prefix).create(),
            10_000,
            "etcd3 watch create()",
          );
          const etcdSeen: Change[] = [];
          const etcdTrouble: string[] = [];
          let cancelling = false;
          watcher.on("put", (pair: IKeyValue) => {
            etcdSeen.push(put(pair.key.toString(), pair.value.toString()));
          });
          watcher.on("delete", (pair: IKeyValue) => etcdSeen.push(del(pair.key.toString())));
          watcher.on("error", (error: unknown) => etcdTrouble.push(`error: ${error}`));
          watcher.on(
            "disconnected",
            (error: unknown) => etcdTrouble.push(`disconnected: ${error}`),
          );
          watcher.on("connected", () => etcdTrouble.push("connected again"));
          watcher.on("end", () => {
            if (!cancelling) etcdTrouble.push("ended");
          });
          // etcdctl prints nothing when its watch starts: markers until it prints one. The
          // TinyKvClient and etcd3 watches started before the first marker; etcdctl gets the
          // markers from some K on, `start-K` to the last.
          ctlWatch = new EtcdctlWatch(gateway, ["--prefix", prefix]);
          const ctl = ctlWatch;
          let lastMarker = -1;
          for (let n = 0; lastMarker < 0; n++) {
            assert.ok(n < 30, `etcdctl printed none of 30 markers:\n${ctl.describe()}`);
            await kv.put(marker, `start-${n}`);
            const printed = () =>
              ctl.printed().some((change) =>
                change.key === marker && change.value === `start-${n}`
              );
            await waitFor(() => printed() || !ctl.running, { timeoutMs: 1000 }).catch(() => {});
            assert.ok(ctl.running, `etcdctl watch runs:\n${ctl.describe()}`);
            if (printed()) lastMarker = n;
          }

          // The writer: value i goes to keys[i % 8]; every outcome is kept.
          const outcomes = new Map<string, "ok" | "unknown" | "failed">();
          const failures: string[] = [];
          let writing = true;
          let acknowledged = 0;
          const writer = (async () => {
            for (let i = 0; writing; i++) {
              const value = String(i);
              try {
                await kv.put(keys[i % keys.length], value, { deadlineMs: 10_000 });
                outcomes.set(value, "ok");
                acknowledged++;
              } catch (error) {
                if (!(error instanceof TinyKvError)) throw error;
                outcomes.set(value, error.outcomeUnknown ? "unknown" : "failed");
                failures.push(`${value}: ${error.code}: ${error.message}`);
              }
            }
          })();
          const progress = async (writes: number, what: string) => {
            const target = acknowledged + writes;
            await waitFor(() => acknowledged >= target, { timeoutMs: 20_000, what });
          };
          /** No etcd watch was canceled or cut so far (checked after each disruption). */
          const etcdWatching = (when: string) => {
            assert.deepEqual(etcdTrouble, [], `the etcd3 watch goes on ${when}`);
            assert.ok(ctl.running, `etcdctl watch runs ${when}:\n${ctl.describe()}`);
            assert.equal(ctl.stderr, "", `etcdctl reports nothing ${when}:\n${ctl.describe()}`);
          };
          try {
            await progress(30, "writes before the transfer");

            const before = await clusterState(admin);
            const transferred = before.shards[0];
            const newLeader = transferred.voters.find((v) => v !== transferred.leader)!;
            const transfer = await cli(
              "--placement",
              admin,
              "transfer-leader",
              String(transferred.shardId),
              "--to",
              newLeader,
            );
            assert.equal(transfer.code, 0, describeRun(transfer));
            assert.match(transfer.stdout, /^Started/);
            await stateWhere(
              admin,
              (s) =>
                s.shards.some((x) => x.shardId === transferred.shardId && x.leader === newLeader),
              `shard ${transferred.shardId} led by ${newLeader}`,
              20_000,
            );
            await progress(30, "writes after the transfer");
            etcdWatching("across the leader transfer");

            const now = await stateWhere(admin, settled, "no move in flight", 30_000);
            const moved = now.shards.find((s) => s.shardId !== transferred.shardId)!;
            const from = moved.leader;
            const to = now.nodes.find((n) => !moved.voters.includes(n.nodeId))!.nodeId;
            const move = await cli(
              "--placement",
              admin,
              "move",
              String(moved.shardId),
              "--from",
              from,
              "--to",
              to,
            );
            assert.equal(move.code, 0, describeRun(move));
            assert.match(move.stdout, /^Started: /);
            await stateWhere(
              admin,
              (s) => {
                const shard = s.shards.find((x) => x.shardId === moved.shardId)!;
                return shard.voters.includes(to) && !shard.voters.includes(from) &&
                  shard.learners.length === 0 && !s.tasks.some((x) =>
                    x.move?.shardId === moved.shardId
                  );
              },
              `shard ${moved.shardId} moved from its leader ${from} to ${to}`,
              45_000,
            );
            await progress(30, "writes after the move");
            etcdWatching("across the replica move");

            // The kvnode leading a shard killed with SIGKILL (dev restarts it).
            const led = await stateWhere(
              admin,
              (s) => s.shards.every((x) => x.leader !== ""),
              "every shard led",
              15_000,
            );
            const victim = led.nodes.find((n) => n.nodeId === led.shards[0].leader)!;
            const port = Number(victim.address.split(":")[1]);
            const victimPid = tablePid(running!.dev.output(), "kvnode", port);
            Deno.kill(victimPid, "SIGKILL");
            const exit = new RegExp(
              `kvnode :${port} exited \\(pid ${victimPid}, killed by SIGKILL\\)`,
            );
            caused.push(exit);
            await devLine(running!, exit, 10_000);
            await progress(30, "writes while the killed kvnode is down");
            const restarted = await devLine(
              running!,
              new RegExp(`dev: restarted kvnode :${port} \\(pid (\\d+)\\)`),
              15_000,
            );
            pids.splice(pids.indexOf(victimPid), 1, Number(restarted[1]));
            await devLine(running!, new RegExp(`dev: kvnode :${port} serves again`), 30_000);
            await progress(30, "writes after it came back");
          } finally {
            writing = false;
            await writer;
          }

          // Every acknowledged write arrives at every watch (bounded), then they stop.
          const lastAcknowledged = new Map<string, string>();
          for (const [value, outcome] of outcomes) {
            if (outcome === "ok") lastAcknowledged.set(keys[Number(value) % keys.length], value);
          }
          const arrived = (events: readonly Change[]) =>
            [...lastAcknowledged].every(([key, value]) =>
              events.some((e) => e.key === key && e.value === value)
            );
          await waitFor(
            () =>
              (arrived(seen) && arrived(etcdSeen) && arrived(ctl.printed())) ||
              watchError !== undefined || etcdTrouble.length > 0 || !ctl.running,
            { timeoutMs: 15_000, what: "the last acknowledged writes to arrive at every watch" },
          ).catch((error) => {
            throw new Error(
              `${error}; arrived at TinyKvClient ${arrived(seen)} (error: ${watchError}), ` +
                `etcd3 ${arrived(etcdSeen)} (${JSON.stringify(etcdTrouble)}), etcdctl ` +
                `${arrived(ctl.printed())}:\n${ctl.describe()}`,
            );
          });
          stop.abort();
          await within(watching, 10_000, "the watch to end once aborted");
          assert.equal(watchError, undefined, `the watch went on throughout: ${watchError}`);
          etcdWatching("until the end");
          // etcdctl never ends by itself (a canceled watch would make it exit): killed by its pid.
          const printed = ctl.printed();
          const ctlStatus = await ctl.kill();
          assert.equal(ctlStatus.signal, "SIGTERM", `etcdctl ran until killed:\n${ctl.describe()}`);
          cancelling = true;
          await within(watcher.cancel(), 10_000, "the etcd3 watch's cancel()");
          assert.deepEqual(etcdTrouble, [], "the etcd3 watch went on throughout");

          const context = `${outcomes.size} writes (${failures.length} failed: ` +
            `${failures.slice(0, 5).join("; ")})`;
          assert.ok(acknowledged >= 90, context);
          /**
           * What `watch` got besides the markers is every acknowledged write, each key's once and
           * in order, and nothing that was not written: no write that failed as not applied; a
           * write whose outcome is unknown at most once. Returns the markers' values it got.
           */
          const assertWrites = (watch: string, events: readonly Change[]): string[] => {
            const writes = events.filter((e) => e.key !== marker);
            const about = `${watch}: ${context}; ${writes.length} events`;
            for (const event of writes) {
              assert.ok(keys.includes(event.key), `${watch}: only the watched keys: ${event.key}`);
              assert.equal(event.kind, "put", `${watch}: only puts were made: ${short(event)}`);
              const outcome = outcomes.get(event.value!);
              assert.ok(outcome !== undefined, `a write that was made: ${short(event)}; ${about}`);
              assert.notEqual(
                outcome,
                "failed",
                `${watch}: a write refused as not applied: ${short(event)}`,
              );
              assert.equal(
                keys[Number(event.value) % keys.length],
                event.key,
                `${watch}: the value of its key: ${short(event)}`,
              );
            }
            // Each key's values once and increasing; every acknowledged one among them.
            for (const key of keys) {
              const values = writes.filter((e) => e.key === key).map((e) => Number(e.value));
              for (let i = 1; i < values.length; i++) {
                assert.ok(
                  values[i] > values[i - 1],
                  `${key}: ${values[i - 1]} then ${values[i]} (once, in order); ${about}`,
                );
              }
            }
            const values = new Set(writes.map((e) => e.value));
            const missing = [...outcomes].filter(([value, outcome]) =>
              outcome === "ok" && !values.has(value)
            ).map(([value]) => value);
            assert.deepEqual(missing, [], `every acknowledged write arrived; ${about}`);
            return events.filter((e) => e.key === marker).map((e) =>
              e.kind === "put" ? e.value! : "delete"
            );
          };
          const markers = (first: number) =>
            Array.from({ length: lastMarker - first + 1 }, (_, i) => `start-${first + i}`);

          assert.deepEqual(assertWrites("TinyKvClient", seen), markers(0), "its markers");
          assertShardOrder(seen, context);
          // Positions never go back, and cover every event.
          const reached = new Map<number, number>();
          for (const update of updates) {
            for (const position of update.positions) {
              assert.ok(position.index >= (reached.get(position.shard) ?? 0), "positions go on");
              reached.set(position.shard, position.index);
            }
            for (const event of update.events) {
              assert.ok(event.index <= reached.get(event.shard)!, "an event within its position");
            }
          }
          assert.deepEqual(assertWrites("etcd3", etcdSeen), markers(0), "etcd3's markers");
          const ctlMarkers = assertWrites(`etcdctl\n${ctl.describe()}\n`, printed);
          assert.deepEqual(
            ctlMarkers,
            markers(lastMarker - ctlMarkers.length + 1),
            `etcdctl's markers: from one on, the last included, once, in order`,
          );
        } finally {
          stop.abort();
          if (ctlWatch?.running) await ctlWatch.kill().catch(() => {});
          etcd.close();
        }
        await assertAlive(running!, pids, caused);
      },
    );

    await t.step(
      "gateway restart: resuming from the positions gets exactly what it missed",
      async () => {
        const prefix = "w3/";
        const keys = keysInEveryShard(prefix, 1);
        const stop = new AbortController();
        const seen: Seen[] = [];
        const positions = new Map<number, number>();
        let updates = 0;
        const watching = (async () => {
          for await (const update of kv.watch(prefix, { prefix: true, signal: stop.signal })) {
            updates++;
            for (const position of update.positions) positions.set(position.shard, position.index);
            seen.push(...update.events.map(seenOf));
          }
        })();
        await waitFor(() => updates > 0, { timeoutMs: 15_000, what: "the watch to start" });
        // A second watch stays open throughout: TinyKvClient resumes it by itself.
        const live = new AbortController();
        const liveSeen: Seen[] = [];
        let liveStarted = false;
        let liveError: unknown;
        const living = (async () => {
          for await (const update of kv.watch(prefix, { prefix: true, signal: live.signal })) {
            liveStarted = true;
            liveSeen.push(...update.events.map(seenOf));
          }
        })().catch((error) => (liveError = error));
        await waitFor(() => liveStarted || liveError !== undefined, {
          timeoutMs: 15_000,
          what: "the live watch to start",
        });
        const before = keys.map((key) => put(key, `before:${key}`));
        for (const change of before) await kv.put(change.key, change.value!);
        await waitFor(() => seen.length >= before.length, {
          timeoutMs: 15_000,
          what: "the changes before the restart",
        });
        stop.abort();
        await within(watching, 10_000, "the watch to end once aborted");
        assertExactly(seen, before, "before the restart");
        const start: WatchPosition[] = [...positions].map(([shard, index]) => ({ shard, index }));
        assert.equal(start.length, SHARDS, JSON.stringify(start));

        // Stop the gateway; write straight to the kvnodes while it is down.
        const gatewayPid = tablePid(running!.dev.output(), "gateway", ports.gateway);
        Deno.kill(gatewayPid, "SIGTERM");
        const exit = new RegExp(
          `dev: gateway :${ports.gateway} exited \\(pid ${gatewayPid}, exit code 0\\)`,
        );
        caused.push(exit);
        await devLine(running!, exit, 15_000);
        const missed: Change[] = [];
        const zk = await connectZooKeeper({
          connectString: `127.0.0.1:${ports.zk}`,
          root: "/tinykv/dev",
        });
        const view = new ZooKeeperClusterView(zk);
        const router = new KvRouter({ view, maxMessageBytes: MESSAGE_BYTES });
        const session = new ClientSession();
        try {
          const write = async (change: Change) => {
            const key = encoder.encode(change.key);
            const { seq, ackSeq } = session.next()!;
            const ids = { clientId: session.clientId, seq, ackSeq };
            const result = await router.route(
              { key },
              change.kind === "put"
                ? { put: { key, value: encoder.encode(change.value!), ...ids } }
                : { delete: { key, ...ids } },
              Date.now() + 15_000,
            );
            session.answered(seq);
            assert.equal(
              result.kind,
              "ok",
              `${change.kind} ${change.key}: ${JSON.stringify(result)}`,
            );
            missed.push(change);
          };
          for (const key of keys) await write(put(key, `down:${key}`));
          await write(del(keys[0]));
          assert.ok(
            !running!.dev.output().includes(`dev: gateway :${ports.gateway} serves again`),
            "the writes were made while the gateway was down",
          );
        } finally {
          router.close();
          view.close();
          await zk.close();
        }
        const restarted = await devLine(
          running!,
          new RegExp(`dev: restarted gateway :${ports.gateway} \\(pid (\\d+)\\)`),
          15_000,
        );
        const newPid = Number(restarted[1]);
        assert.notEqual(newPid, gatewayPid);
        const others = pids.filter((pid) => pid !== gatewayPid);
        pids.splice(0, pids.length, ...others, newPid);
        await devLine(running!, new RegExp(`dev: gateway :${ports.gateway} serves again`), 20_000);
        for (const key of keys) {
          await kv.put(key, `after:${key}`);
          missed.push(put(key, `after:${key}`));
        }

        // Resume from the positions reached before: exactly what was missed.
        const resumed: Seen[] = [];
        let first: WatchUpdate | undefined;
        const resume = new AbortController();
        const again = (async () => {
          for await (
            const update of kv.watch(prefix, { prefix: true, start, signal: resume.signal })
          ) {
            first ??= update;
            resumed.push(...update.events.map(seenOf));
          }
        })();
        const lastOf = (key: string) =>
          resumed.some((e) => e.key === key && e.value === `after:${key}`);
        // Bounded; what arrived by then is checked below either way.
        await waitFor(() => keys.every(lastOf), {
          timeoutMs: 10_000,
          what: "the missed changes to arrive",
        }).catch(() => {});
        resume.abort();
        await within(again, 10_000, "the resumed watch to end once aborted");
        const liveLast = (key: string) =>
          liveSeen.some((e) => e.key === key && e.value === `after:${key}`);
        await waitFor(() => keys.every(liveLast) || liveError !== undefined, {
          timeoutMs: 10_000,
          what: "the live watch to get the changes",
        }).catch(() => {});
        live.abort();
        await within(living, 10_000, "the live watch to end once aborted");
        await assertAlive(running!, pids, caused);
        assert.ok(first !== undefined, "the resumed watch started");
        assert.deepEqual(
          [...first.positions].sort((a, b) => a.shard - b.shard),
          [...start].sort((a, b) => a.shard - b.shard),
          "it resumes where it stood",
        );
        assertExactly(resumed, missed, "resumed after the gateway restart");
        assert.equal(liveError, undefined, `the live watch went on: ${liveError}`);
        assertExactly(liveSeen, [...before, ...missed], "the live watch, across the restart");
      },
    );

    client.close();
    client = undefined;
    await stopDev({ dev: running.dev, pids }, dir);
    running = undefined;
  } finally {
    client?.close();
    await killDev(running);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("watch: a 1 MiB window: OUT_OF_RANGE, and a slow watcher cut", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-watch-window-" });
  const ports = devPortsAvoiding();
  const gateway = `127.0.0.1:${ports.gateway}`;
  let running: RunningDev | undefined;
  let client: TinyKvClient | undefined;
  const tinykv = (...args: string[]) => new CliProcess(["--endpoint", gateway, ...args]);
  const cli = (...args: string[]) => tinykv(...args).finish();
  try {
    running = await runUntilServing([
      ...devArgs(dir, ports, SHARDS),
      `--kvnode.watch_window_bytes=${SMALL_WINDOW_BYTES}`,
      // The smallest window holds the largest Txn's changes only with smaller values.
      `--storage.value_bytes_max=${SMALL_WINDOW_VALUE_MAX}`,
      "--no-restart",
    ]);
    const pids = [...running.pids];
    client = TinyKvClient.connect({
      endpoints: [gateway],
      deadlineMs: 15_000,
      maxMessageBytes: MESSAGE_BYTES,
    });
    const kv = client;
    const chunk = (i: number) =>
      `${String(i).padStart(4, "0")}:${printable(64 * 1024 - 5, 100 + i)}`;

    await t.step(
      "OUT_OF_RANGE: a position the window no longer holds; newer ones work",
      async () => {
        const key = "w4/big";
        const shard = shardOf(key);
        // A position: the watch's final one after one change.
        const watch = tinykv("--json", "watch", key, "--count", "1", "--timeout", WATCH_TIMEOUT);
        await watch.started();
        await kv.put(key, "first");
        const run = await watch.finish();
        assert.equal(run.code, 0, describeRun(run));
        const old = jsonWatch(run).updates.at(-1)!;
        assert.equal(old.length, 1);
        assert.equal(old[0].shard, shard);
        const values: string[] = [];
        for (let i = 0; i < 40; i++) {
          values.push(chunk(i));
          await kv.put(key, values[i]);
        }

        const refused = await cli("watch", key, "--from", fromArg(old), "--timeout", "15000");
        assert.equal(refused.code, 3, `exit 3:\n${describeRun(refused)}`);
        const named = new RegExp(
          `^error: outOfRange: .*Watch position ${old[0].index} of shard ${shard} is no longer ` +
            `held: the oldest position it holds is (\\d+) `,
          "m",
        ).exec(refused.stderr);
        assert.ok(
          named !== null,
          `OUT_OF_RANGE naming the oldest position:\n${describeRun(refused)}`,
        );
        const oldest = Number(named[1]);
        assert.ok(oldest > old[0].index, `the oldest position ${oldest} is past ${old[0].index}`);
        const json = await cli("--json", "watch", key, "--from", fromArg(old));
        assert.equal(json.code, 3, describeRun(json));
        assert.equal(JSON.parse(json.stdout).error.code, "outOfRange", describeRun(json));

        // From the oldest position held: the changes after it, the newest of the 40 puts.
        const fromOldest = await cli(
          "--json",
          "watch",
          key,
          "--from",
          `${shard}:${oldest}`,
          "--count",
          "1",
          "--timeout",
          WATCH_TIMEOUT,
        );
        assert.equal(fromOldest.code, 0, describeRun(fromOldest));
        const held = jsonWatch(fromOldest).events;
        assert.equal(held.length, 1, describeRun(fromOldest));
        assert.ok(held[0].index > oldest);
        const at = values.indexOf(held[0].value!);
        assert.ok(at > 0, `one of the later puts: ${short(held[0])}`);
        // From the newest position: the next change.
        const now = await cli("--json", "watch", key, "--timeout", "1000");
        assert.equal(now.code, 0, describeRun(now));
        const newest = jsonWatch(now).updates.at(-1)!;
        await kv.put(key, "after");
        const next = await cli("--json", "watch", key, "--from", fromArg(newest), "--count", "1");
        assert.equal(next.code, 0, describeRun(next));
        assertExactly(jsonWatch(next).events, [put(key, "after")], "from the newest position");
        await assertAlive(running!, pids);
      },
    );

    await t.step(
      "a watcher that reads nothing is cut with RESOURCE_EXHAUSTED; the nodes are unharmed",
      async () => {
        const key = "w5/slow";
        const gatewayMetrics = ports.gateway + 90;
        // The slow watcher: a CLI watch stopped with SIGSTOP, so nothing reads its socket.
        const watch = tinykv("watch", key, "--timeout", "60000");
        let stopped = false;
        let done = false;
        try {
          await watch.started();
          const start = parseFrom(/^Watching from (\S+)$/m.exec(watch.stderr)![1]);
          assert.equal(await metric(gatewayMetrics, "tinykv_gateway_watches"), 1, "it is open");
          Deno.kill(watch.pid, "SIGSTOP");
          stopped = true;
          // Changes of 256 KiB until the gateway cuts it: past the 16 MiB a watch may hold for
          // its client, plus what the sockets hold (bounded: 48 MiB).
          const values: string[] = [];
          let open = 1;
          while (open > 0) {
            const i = values.length;
            if (i === 192) {
              const queued = await metric(gatewayMetrics, "tinykv_gateway_watch_queued_bytes");
              assert.fail(
                `the gateway did not cut a watch whose client reads nothing after ${i / 4} MiB ` +
                  `of its changes (tinykv_gateway_watches ${open}, ` +
                  `tinykv_gateway_watch_queued_bytes ${queued})`,
              );
            }
            values.push(`${String(i).padStart(4, "0")}:${printable(256 * 1024 - 5, 1000 + i)}`);
            await kv.put(key, values[i]);
            if (i % 4 === 3) open = (await metric(gatewayMetrics, "tinykv_gateway_watches"))!;
          }
          const written = values.length / 4;
          assert.ok(written > 16, `cut after ${written} MiB: more than 16 MiB were held for it`);
          // Every kvnode's windows stay within their budget.
          for (let i = 0; i < 3; i++) {
            const bytes = await metric(ports.base + 1000 + i, "tinykv_kvnode_watch_window_bytes");
            assert.ok(bytes !== undefined, `kvnode ${i} reports its window bytes`);
            assert.ok(bytes <= SMALL_WINDOW_BYTES, `kvnode ${i} holds ${bytes} bytes`);
          }
          // Going on, it reads what was in flight, then the status: RESOURCE_EXHAUSTED (exit 4).
          Deno.kill(watch.pid, "SIGCONT");
          stopped = false;
          const run = await watch.finish();
          done = true;
          assert.equal(run.code, 4, `exit 4 (retry later):\n${describeRun(run)}`);
          assert.match(
            run.stderr,
            /^error: resourceExhausted: .*reads its watch too slowly/m,
            describeRun(run),
          );
          // What it printed before: the first changes, each once and in order, not all of them.
          const got = humanWatch(run);
          assert.ok(got.length < values.length, `cut before the end: ${got.length} changes`);
          assertExactly(got, values.slice(0, got.length).map((v) => put(key, v)), "before the cut");
          // Resuming from its last position is OUT_OF_RANGE, naming the oldest one held.
          const last = got.at(-1)?.index ?? start[0].index;
          const resumed = await rawWatchOutcome(gateway, {
            key: encoder.encode(key),
            prefix: false,
            start: [{ shard: shardOf(key), index: last }],
          });
          assert.equal(
            resumed.error?.code,
            grpc.status.OUT_OF_RANGE,
            resumed.error?.message ?? "the resumed watch started",
          );
          assert.match(resumed.error!.details, /the oldest position it holds is \d+/);
        } finally {
          if (stopped) Deno.kill(watch.pid, "SIGCONT");
          if (!done) {
            watch.kill();
            await watch.finish(5_000).catch(() => {});
          }
        }
        await assertAlive(running!, pids);
      },
    );

    client.close();
    client = undefined;
    await stopDev(running, dir);
    running = undefined;
  } finally {
    client?.close();
    await killDev(running);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
