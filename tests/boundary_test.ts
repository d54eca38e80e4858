// Boundary values of the client API `tinykv.v1.KV` (issue 12), end to end: every RPC (Get, Put,
// Delete, Append, CompareAndSwap, Scan, Txn) through a real gateway process on three real kvnode
// processes (4 shards, each on all three nodes), one cluster for the whole file.
//
// It checks keys of 1 B to 4,096 B, including lengths around LMDB's internal key limits, through
// every operation byte for byte; 4,096-byte keys that differ only in their last 2 bytes or only at
// byte 3,000, stored distinctly and scanned exactly once each in byte order (pages of any size,
// start and end between such keys); values, appends and compare-and-swaps of exactly 1 MiB;
// scans of 1 MiB values cut into pages; session ids and sequence numbers at their limits with
// exactly-once retries; many 1 MiB messages at once; and Txns at their limits (keys and values
// of exactly 2 × 1 MiB + 4,096 bytes in all, 128 compares and 128 operations per branch, values
// and keys at the limit, branches that return exactly 2 × 1 MiB, keys of two shards). One past a
// limit must get INVALID_ARGUMENT with a message that names the field and the limit, and change
// nothing (read back). Each case is one step: after it every process must still be alive, and after
// each group every shard must take a write and every replica must have applied the same entries to
// the same data (equal data hashes). A case that kills a process fails with the process's output
// and log; one that fails and leaves a shard that takes no write says so. Either way the rest of
// its group is not run, the cluster's logs are copied to a temp dir (named in the output), and the
// next group runs on a fresh cluster.
//
// Payloads are deterministic pseudo-random bytes (mulberry32 from a seed), never all one byte.
// Every call has a 15–20 s deadline, so a hang shows as DEADLINE_EXCEEDED in the case that hung.
import { patternBytes } from "./_harness/bytes.ts";
import assert from "node:assert/strict";
import {
  type KeyValue,
  KVService,
  type NodeStatusResponse,
  type TxnCompare,
  TxnCompare_Result,
  TxnCompare_Target,
  type TxnOp,
  TxnOp_Kind,
  type TxnResponse,
} from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, type RpcResult, unaryCaller } from "@tinykv/rpc";
import {
  KEY_BYTES_MAX,
  TXN_ENTRY_OVERHEAD_BYTES,
  TXN_OPS_MAX,
  txnBytesMax,
  VALUE_BYTES_MAX,
} from "@tinykv/shard";
import { waitFor } from "@tinykv/zk/testing";
import { KvNodeCluster } from "./_harness/kvnode_cluster.ts";
import type { ServiceProcess } from "./_harness/processes.ts";

// The contract (proto/tinykv/v1/kv.proto; docs/design.md "Limits and bad input" and "Scan").
const KEY_MAX = 4096;
const VALUE_MAX = 1024 * 1024;
const SCAN_LIMIT_MAX = 10_000;
const SCAN_PAGE_BYTES = 1024 * 1024;
const CLIENT_ID_MAX = 128;

const SHARDS = 4;
const MESSAGE_BYTES = 8 << 20;
const CALL = { deadlineMs: 15_000 };
const BIG_CALL = { deadlineMs: 20_000 };
const NO_SESSION = { clientId: "", seq: 0, ackSeq: 0 };
const EMPTY = new Uint8Array();

type Kv = GrpcClient<typeof KVService>;
type Method = "Get" | "Put" | "Delete" | "Append" | "CompareAndSwap" | "Scan" | "Txn";
type Req<M extends Method> = Parameters<Kv[M]>[0];
type Options = { deadlineMs: number };

/** Typed unary calls to the gateway, each with a 15 s deadline unless given one. */
const call = {
  Get: (kv: Kv, r: Req<"Get">, o: Options = CALL) =>
    unaryCaller<typeof KVService, "Get">(kv, "Get")(r, o),
  Put: (kv: Kv, r: Req<"Put">, o: Options = CALL) =>
    unaryCaller<typeof KVService, "Put">(kv, "Put")(r, o),
  Delete: (kv: Kv, r: Req<"Delete">, o: Options = CALL) =>
    unaryCaller<typeof KVService, "Delete">(kv, "Delete")(r, o),
  Append: (kv: Kv, r: Req<"Append">, o: Options = CALL) =>
    unaryCaller<typeof KVService, "Append">(kv, "Append")(r, o),
  CompareAndSwap: (kv: Kv, r: Req<"CompareAndSwap">, o: Options = CALL) =>
    unaryCaller<typeof KVService, "CompareAndSwap">(kv, "CompareAndSwap")(r, o),
  Scan: (kv: Kv, r: Req<"Scan">, o: Options = CALL) =>
    unaryCaller<typeof KVService, "Scan">(kv, "Scan")(r, o),
  Txn: (kv: Kv, r: Req<"Txn">, o: Options = CALL) =>
    unaryCaller<typeof KVService, "Txn">(kv, "Txn")(r, o),
};

// ---------------------------------------------------------------------------------------------
// Bytes.

const bytesOf = patternBytes;

/** A key of `length` bytes whose first byte is `tag` (each group owns a tag, so a range). */
function keyOf(tag: number, length: number, seed: number): Uint8Array {
  const key = bytesOf(length, seed * 7919 + tag);
  if (length > 0) key[0] = tag;
  return key;
}

function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Byte order (unsigned, a prefix first): the order a scan returns keys in. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * The smallest legal key above `key` and every key that starts with it, so that the scan
 * `[key, after(key))` holds `key` alone (and keys that extend it).
 */
function after(key: Uint8Array): Uint8Array {
  if (key.length < KEY_MAX) return concat(key, [0]);
  let n = key.length;
  while (n > 0 && key[n - 1] === 0xff) n--;
  assert.ok(n > 0, "a key of only 0xff bytes has no successor of at most 4,096 bytes");
  const out = key.slice(0, n);
  out[n - 1]++;
  return out;
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A short name of a key for messages: its length and both ends. */
function nameOf(key: Uint8Array): string {
  return key.length <= 8
    ? `${key.length}-byte key ${hex(key)}`
    : `${key.length}-byte key ${hex(key.subarray(0, 3))}…${hex(key.subarray(key.length - 3))}`;
}

/** Fails with the first difference (never a diff of megabytes). */
function assertBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.length !== expected.length) {
    assert.fail(`${what}: got ${actual.length} bytes, expected ${expected.length}`);
  }
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(
        `${what}: byte ${i} of ${expected.length} is ${actual[i]}, expected ${expected[i]}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Results.

function describe(result: RpcResult<unknown>): string {
  return result.kind === "ok" ? "OK" : `${result.kind}: ${result.message.slice(0, 600)}`;
}

function ok<T>(result: RpcResult<T>, what: string): T {
  if (result.kind !== "ok") assert.fail(`${what}: expected OK, got ${describe(result)}`);
  return result.response;
}

/** Field names that are no ordinary English words, so a message may name them unquoted. */
const PLAIN_FIELDS = new Set(["key", "value", "client_id", "seq", "ack_seq", "txn"]);

/**
 * Whether `message` names `field`: quoted ("limit", 'limit', `limit`), as "field limit", or as a
 * whole word when the word cannot mean anything else in a message ("Value has 5 bytes"; but not
 * "expected 1 to 10000" for the field "expected").
 */
function namesField(message: string, field: string): boolean {
  // A field of a list entry ("success[0].value") is matched literally.
  const name = field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const word = PLAIN_FIELDS.has(field) ? `|\\b${name}\\b` : "";
  return new RegExp(`["'\`]${name}["'\`]|\\bfield ${name}\\b${word}`, "i").test(message);
}

/** Whether `message` has the number `n`, written with or without thousands separators. */
function mentionsNumber(message: string, n: number): boolean {
  const plain = message.replace(/(\d)[,_](?=\d{3}(?!\d))/g, "$1");
  return new RegExp(`(?<!\\d)${n}(?!\\d)`).test(plain);
}

/** INVALID_ARGUMENT whose message names `field` and, when given, the number `limit`. */
function expectInvalid(result: RpcResult<unknown>, field: string, limit?: number): void {
  const wanted = `INVALID_ARGUMENT naming "${field}"${limit === undefined ? "" : ` and ${limit}`}`;
  if (result.kind !== "invalidArgument") assert.fail(`expected ${wanted}, got ${describe(result)}`);
  assert.ok(namesField(result.message, field), `expected ${wanted}, got: ${result.message}`);
  if (limit !== undefined) {
    assert.ok(mentionsNumber(result.message, limit), `expected ${wanted}, got: ${result.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Operations with checks.

async function put(kv: Kv, key: Uint8Array, value: Uint8Array, o: Options = CALL): Promise<void> {
  ok(await call.Put(kv, { key, value, ...NO_SESSION }, o), `put ${nameOf(key)}`);
}

/** Reads `key` linearizably, and serializably until that is current too (it may lag). */
async function expectValue(kv: Kv, key: Uint8Array, value: Uint8Array, what = ""): Promise<void> {
  const label = `get ${nameOf(key)}${what === "" ? "" : ` ${what}`}`;
  const got = ok(await call.Get(kv, { key, serializable: false }, BIG_CALL), label);
  assert.equal(got.found, true, `${label}: not found`);
  assertBytes(got.value, value, label);
  await eventually(`a serializable ${label} to be current`, async () => {
    const read = ok(await call.Get(kv, { key, serializable: true }, BIG_CALL), label);
    return read.found && compareBytes(read.value, value) === 0;
  });
}

async function expectAbsent(kv: Kv, key: Uint8Array, what = ""): Promise<void> {
  const label = `get ${nameOf(key)}${what === "" ? "" : ` ${what}`}`;
  const got = ok(await call.Get(kv, { key, serializable: false }), label);
  assert.equal(got.found, false, `${label}: found ${got.value.length} bytes, expected absent`);
}

function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  return waitFor(check, { timeoutMs: 10_000, what });
}

type CasFields = Partial<Omit<Req<"CompareAndSwap">, "key">>;

function cas(kv: Kv, key: Uint8Array, fields: CasFields, o: Options = BIG_CALL) {
  return call.CompareAndSwap(kv, {
    key,
    expected: EMPTY,
    expectAbsent: false,
    value: EMPTY,
    delete: false,
    ...NO_SESSION,
    ...fields,
  }, o);
}

/**
 * Scans `[start, end)` page by page with `limit`, checking each page (at most `limit` pairs, keys
 * ascending inside the range, at least one pair when `more`, cut once it reaches ~1 MiB, `next`
 * above the page and below the end, or empty when not `more`), and that the pages together hold
 * exactly `expected`, in order.
 */
async function expectScan(
  kv: Kv,
  range: { start: Uint8Array; end: Uint8Array; limit: number },
  expected: readonly KeyValue[],
): Promise<void> {
  const got: KeyValue[] = [];
  let start = range.start;
  const pagesMax = Math.ceil(expected.length / range.limit) + expected.length + 2;
  for (let page = 0;; page++) {
    const label = `scan page ${page} from ${nameOf(start)} (limit ${range.limit})`;
    assert.ok(page < pagesMax, `${label}: still more after ${pagesMax} pages`);
    const answer = ok(await call.Scan(kv, { ...range, start }, BIG_CALL), label);
    assert.ok(answer.kvs.length <= range.limit, `${label}: ${answer.kvs.length} pairs`);
    let bytes = 0;
    for (const [i, pair] of answer.kvs.entries()) {
      assert.ok(bytes < SCAN_PAGE_BYTES, `${label}: not cut after ${bytes} bytes (${i} pairs)`);
      bytes += pair.key.length + pair.value.length;
      assert.ok(compareBytes(pair.key, start) >= 0, `${label}: ${nameOf(pair.key)} before start`);
      if (range.end.length > 0) {
        assert.ok(
          compareBytes(pair.key, range.end) < 0,
          `${label}: ${nameOf(pair.key)} at/after end`,
        );
      }
      const previous = got.at(-1);
      if (previous !== undefined) {
        assert.ok(
          compareBytes(previous.key, pair.key) < 0,
          `${label}: ${nameOf(pair.key)} after ${nameOf(previous.key)}: not in byte order or twice`,
        );
      }
      got.push(pair);
    }
    if (!answer.more) {
      assert.equal(answer.next.length, 0, `${label}: next is not empty with more=false`);
      break;
    }
    assert.ok(answer.kvs.length > 0, `${label}: an empty page with more=true`);
    assert.ok(
      compareBytes(answer.next, answer.kvs.at(-1)!.key) > 0,
      `${label}: next ${nameOf(answer.next)} is not above the page's last key`,
    );
    assert.ok(
      range.end.length === 0 || compareBytes(answer.next, range.end) < 0,
      `${label}: more=true with next ${nameOf(answer.next)} at or after the end`,
    );
    start = answer.next;
  }
  const names = (pairs: readonly KeyValue[]) => pairs.map((p) => hex(p.key)).join(",");
  if (got.length !== expected.length || got.some((p, i) => compareBytes(p.key, expected[i].key))) {
    const missing = expected.filter((e) => !got.some((g) => compareBytes(g.key, e.key) === 0));
    const extra = got.filter((g) => !expected.some((e) => compareBytes(g.key, e.key) === 0));
    assert.fail(
      `scan of ${nameOf(range.start)}..${nameOf(range.end)} (limit ${range.limit}): got ` +
        `${got.length} keys, expected ${expected.length}; missing ${missing.length} ` +
        `[${names(missing.slice(0, 3)).slice(0, 300)}], extra ${extra.length} ` +
        `[${names(extra.slice(0, 3)).slice(0, 300)}]`,
    );
  }
  for (const [i, pair] of got.entries()) {
    assertBytes(pair.value, expected[i].value, `scanned value of ${nameOf(pair.key)}`);
  }
}

/** The pairs of `all` in `[start, end)`, in byte order. */
function within(all: readonly KeyValue[], start: Uint8Array, end: Uint8Array): KeyValue[] {
  return all.filter((p) =>
    compareBytes(p.key, start) >= 0 && (end.length === 0 || compareBytes(p.key, end) < 0)
  ).sort((a, b) => compareBytes(a.key, b.key));
}

/** Runs `tasks` with at most `parallel` at once. */
async function inParallel(parallel: number, tasks: (() => Promise<void>)[]): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < tasks.length) await tasks[next++]();
  }));
}

// ---------------------------------------------------------------------------------------------
// The cluster.

/** One cluster (3 kvnodes, a gateway) and a gRPC client of the gateway. */
class Env {
  readonly cluster: KvNodeCluster;
  readonly kv: Kv;
  readonly address: string;
  /** One small key per shard. */
  readonly shardKeys: Uint8Array[];

  private constructor(cluster: KvNodeCluster, kv: Kv, address: string) {
    this.cluster = cluster;
    this.kv = kv;
    this.address = address;
    const keys = new Map<number, Uint8Array>();
    for (let i = 0; keys.size < SHARDS; i++) {
      const key = new TextEncoder().encode(`probe-${i}`);
      const shard = cluster.shardOf(key);
      if (!keys.has(shard)) keys.set(shard, key);
    }
    this.shardKeys = [...keys.values()];
  }

  static async start(): Promise<Env> {
    const cluster = await KvNodeCluster.start({ nodes: 3, shards: SHARDS });
    try {
      await cluster.bootstrap();
      await cluster.publishShardMap();
      const gateway = await cluster.startGateway();
      const kv = createGrpcClient(KVService, gateway.address, { maxMessageBytes: MESSAGE_BYTES });
      return new Env(cluster, kv, gateway.address);
    } catch (error) {
      await cluster.close();
      throw error;
    }
  }

  /** What each process that exited by itself printed and logged last. */
  async exited(): Promise<string[]> {
    const exited = await this.cluster.exitedProcesses();
    return await Promise.all(exited.map((process) => this.#report(process)));
  }

  async #report(process: ServiceProcess): Promise<string> {
    const port = /--(?:kvnode|rpc_server)\.port=(\d+)/.exec(process.args.join(" "))?.[1];
    let log = "";
    try {
      for await (const entry of Deno.readDir(`${this.cluster.dataDir}/logs`)) {
        if (port !== undefined && entry.name.includes(`-${port}-`)) {
          const text = await Deno.readTextFile(`${this.cluster.dataDir}/logs/${entry.name}`);
          log += text.split("\n").slice(-12).join("\n");
        }
      }
    } catch (error) {
      log = `(no log: ${error})`;
    }
    return `${process.name} (pid ${process.pid}) exited; it printed:\n` +
      `${process.output.slice(-2500)}\n--- the end of its log:\n${log.slice(-2500)}`;
  }

  /** Every process alive and every shard taking a write that reads back. */
  async assertHealthy(): Promise<void> {
    const exited = await this.exited();
    assert.equal(exited.length, 0, exited.join("\n\n"));
    const failures = await this.unwritableShards(CALL.deadlineMs);
    if (failures.length > 0) {
      assert.fail(
        `Not every shard takes a write: ${failures.join("; ")}\n` +
          `--- the last warnings and errors the cluster logged:\n${await this.#problems()}`,
      );
    }
    await this.#assertReplicasAgree();
  }

  /** The shards where a small put (and a get of it) fails within `deadlineMs`, and why. */
  async unwritableShards(deadlineMs: number): Promise<string[]> {
    const failures: string[] = [];
    await Promise.all(this.shardKeys.map(async (key, i) => {
      const value = bytesOf(16, 900 + i);
      const o = { deadlineMs };
      const written = await call.Put(this.kv, { key, value, ...NO_SESSION }, o);
      if (written.kind !== "ok") {
        failures.push(`shard ${this.cluster.shardOf(key)}: put: ${describe(written)}`);
        return;
      }
      const read = await call.Get(this.kv, { key, serializable: false }, o);
      if (read.kind !== "ok" || compareBytes(read.response.value, value) !== 0) {
        failures.push(`shard ${this.cluster.shardOf(key)}: get: ${describe(read)}`);
      }
    }));
    return failures;
  }

  /** The last few distinct warnings and errors in the cluster's logs. */
  async #problems(): Promise<string> {
    const lines: string[] = [];
    try {
      for await (const entry of Deno.readDir(`${this.cluster.dataDir}/logs`)) {
        const text = await Deno.readTextFile(`${this.cluster.dataDir}/logs/${entry.name}`);
        for (const line of text.split("\n")) {
          if (/"level":"(warn|error)"/.test(line)) lines.push(`${entry.name}: ${line}`);
        }
      }
    } catch (error) {
      return `(no logs: ${error})`;
    }
    const byMessage = new Map<string, string>();
    for (const line of lines) byMessage.set(/"msg":"([^"]*)"/.exec(line)?.[1] ?? line, line);
    return [...byMessage.values()].slice(-8).map((line) => line.slice(0, 400)).join("\n");
  }

  /**
   * Every replica of every shard applied the same entries (so a follower that would crash on one
   * has met it) and holds the same data: equal data hashes at equal applied indexes.
   */
  async #assertReplicasAgree(): Promise<void> {
    let detail = "";
    const disagreements = (statuses: NodeStatusResponse[], hashes: boolean): string[] => {
      const out: string[] = [];
      for (let shard = 1; shard <= SHARDS; shard++) {
        const replicas = statuses.flatMap((s) => s.replicas.filter((r) => r.shardId === shard));
        const applied = new Set(replicas.map((r) => r.appliedIndex));
        const commit = Math.max(...replicas.map((r) => r.commitIndex));
        if (replicas.length !== 3 || applied.size !== 1 || !applied.has(commit)) {
          out.push(
            `shard ${shard}: ${replicas.length} replicas applied ${[...applied]} of ${commit}`,
          );
        } else if (hashes && new Set(replicas.map((r) => r.dataHash)).size !== 1) {
          out.push(`shard ${shard}: data hashes differ at applied index ${commit}`);
        }
      }
      return out;
    };
    // Hashing every replica's data is slow: poll the indexes, then compare the hashes once.
    for (let attempt = 0;; attempt++) {
      await waitFor(async () => {
        detail = disagreements(await this.cluster.statuses(false), false).join("; ");
        return detail === "";
      }, { timeoutMs: 15_000, what: "every replica to apply every entry" }).catch((error) => {
        throw new Error(`${error}: ${detail}`);
      });
      detail = disagreements(await this.cluster.statuses(true), true).join("; ");
      if (detail === "") return;
      if (attempt === 2 || /hashes differ/.test(detail)) {
        assert.fail(`replicas disagree: ${detail}`);
      }
    }
  }

  /** Copies every log of the cluster to a new temp dir (it outlives the cluster); returns it. */
  async keepLogs(): Promise<string> {
    const kept = await Deno.makeTempDir({ prefix: "tinykv-boundary-logs-" });
    for await (const entry of Deno.readDir(`${this.cluster.dataDir}/logs`)) {
      await Deno.copyFile(`${this.cluster.dataDir}/logs/${entry.name}`, `${kept}/${entry.name}`);
    }
    return kept;
  }

  async close(): Promise<void> {
    this.kv.close();
    await this.cluster.close();
  }
}

/** One case: one line of a group's list. */
interface Case {
  readonly name: string;
  readonly run: (kv: Kv, env: Env) => Promise<void>;
}

interface Group {
  readonly name: string;
  /** Cases run in order; a later one may use what an earlier one stored. */
  readonly cases: readonly Case[];
}

const test = (name: string, run: Case["run"]): Case => ({ name, run });

// ---------------------------------------------------------------------------------------------
// Keys of every length through every operation (tags 0x11..: one per length).

const KEY_LENGTHS = [1, 1960, 1961, 1978, 1979, 2048, 4025, 4026, 4027, 4095, 4096];

/** Put, get, append, CAS (match, mismatch, absent, delete), scan and delete on `key`. */
async function everyOperation(kv: Kv, key: Uint8Array): Promise<void> {
  const seed = key.length * 10;
  const first = bytesOf(300, seed);
  const tail = bytesOf(77, seed + 1);
  const second = bytesOf(500, seed + 2);
  const third = bytesOf(10, seed + 3);
  await put(kv, key, first);
  await expectValue(kv, key, first, "after put");
  const appended = ok(await call.Append(kv, { key, value: tail, ...NO_SESSION }), "append");
  assert.equal(appended.length, 377, "length after append");
  await expectValue(kv, key, concat(first, tail), "after append");
  const swapped = ok(await cas(kv, key, { expected: concat(first, tail), value: second }), "cas");
  assert.equal(swapped.succeeded, true, "a matching cas succeeds");
  assert.equal(swapped.found, true);
  await expectValue(kv, key, second, "after cas");
  const missed = ok(await cas(kv, key, { expected: first, value: third }), "mismatching cas");
  assert.equal(missed.succeeded, false, "a mismatching cas does not succeed");
  assert.equal(missed.found, true);
  assertBytes(missed.current, second, "mismatching cas current");
  const page = ok(await call.Scan(kv, { start: key, end: after(key), limit: 10 }), "scan");
  assert.equal(page.kvs.length, 1, `scan [key, after(key)) returns the key alone`);
  assertBytes(page.kvs[0].key, key, "scanned key");
  assertBytes(page.kvs[0].value, second, "scanned value");
  assert.equal(page.more, false);
  assert.equal(ok(await call.Delete(kv, { key, ...NO_SESSION }), "delete").deleted, true);
  await expectAbsent(kv, key, "after delete");
  assert.equal(ok(await call.Delete(kv, { key, ...NO_SESSION }), "delete").deleted, false);
  const created = ok(await cas(kv, key, { expectAbsent: true, value: third }), "cas absent");
  assert.equal(created.succeeded, true, "cas expect_absent on an absent key succeeds");
  await expectValue(kv, key, third, "after cas expect_absent");
  const removed = ok(await cas(kv, key, { expected: third, delete: true }), "cas delete");
  assert.equal(removed.succeeded, true, "a matching cas with delete succeeds");
  await expectAbsent(kv, key, "after cas delete");
}

const KEYS: Group = {
  name: "keys of 1 to 4,096 bytes (and around LMDB's key limits) through every operation",
  cases: [
    test("the limits in this test are the ones libs/shard enforces", () => {
      assert.equal(KEY_BYTES_MAX, KEY_MAX);
      assert.equal(VALUE_BYTES_MAX, VALUE_MAX);
      return Promise.resolve();
    }),
    ...KEY_LENGTHS.map((n, i) =>
      test(
        `a ${n}-byte key: put, get, append, cas, scan, delete, byte for byte`,
        (kv) => everyOperation(kv, keyOf(0x11 + i, n, n)),
      )
    ),
  ],
};

// ---------------------------------------------------------------------------------------------
// Keys of 0 and 4,097 bytes (tag 0x30).

/** Nothing is stored under `key`, nor under its first 4,096 bytes (a truncation). */
async function expectNothingStored(kv: Kv, key: Uint8Array): Promise<void> {
  if (key.length === 0) {
    const page = ok(await call.Scan(kv, { start: EMPTY, end: new Uint8Array([0]), limit: 10 }), "");
    assert.equal(page.kvs.length, 0, "the empty key is not stored");
    return;
  }
  const prefix = key.subarray(0, Math.min(key.length, KEY_MAX));
  await expectAbsent(kv, prefix, "(the first 4,096 bytes of the rejected key)");
  const page = ok(await call.Scan(kv, { start: prefix, end: after(prefix), limit: 10 }), "scan");
  assert.equal(page.kvs.length, 0, "no key that starts with the rejected key's 4,096 bytes");
}

const BAD_KEY_CALLS: Record<string, (kv: Kv, key: Uint8Array) => Promise<RpcResult<unknown>>> = {
  "Get": (kv, key) => call.Get(kv, { key, serializable: false }),
  "serializable Get": (kv, key) => call.Get(kv, { key, serializable: true }),
  "Put": (kv, key) => call.Put(kv, { key, value: bytesOf(8, 1), ...NO_SESSION }),
  "Delete": (kv, key) => call.Delete(kv, { key, ...NO_SESSION }),
  "Append": (kv, key) => call.Append(kv, { key, value: bytesOf(8, 2), ...NO_SESSION }),
  "CompareAndSwap": (kv, key) => cas(kv, key, { expectAbsent: true, value: bytesOf(8, 3) }),
};

// Issue 12 asks that the message for a 0-byte key name the field and 4096 too (e.g. "expected 1 to
// 4096 bytes"), as for a 4,097-byte key.
const BAD_KEYS: Group = {
  name: "keys of 0 and 4,097 bytes get INVALID_ARGUMENT and change nothing",
  cases: Object.entries(BAD_KEY_CALLS).flatMap(([op, send], i) =>
    [0, KEY_MAX + 1].map((n) =>
      test(`${op} with a ${n}-byte key: INVALID_ARGUMENT naming "key" and its limit`, async (kv) => {
        const key = n === 0 ? EMPTY : keyOf(0x30, n, i);
        // The empty key breaks the minimum (1 byte), the longer one the maximum (4,096 bytes).
        expectInvalid(await send(kv, key), "key", n === 0 ? 1 : KEY_MAX);
        await expectNothingStored(kv, key);
      })
    )
  ),
};

// ---------------------------------------------------------------------------------------------
// Values at the limit (tag 0x40).

const FULL = bytesOf(VALUE_MAX, 41);
const OVER = bytesOf(VALUE_MAX + 1, 42);

const VALUES: Group = {
  name: "values of up to 1,048,576 bytes, and appends up to that length",
  cases: [
    test("Put of 1,048,576 bytes under a 4,096-byte key: Get returns every byte", async (kv) => {
      await put(kv, keyOf(0x40, KEY_MAX, 1), FULL, BIG_CALL);
      await expectValue(kv, keyOf(0x40, KEY_MAX, 1), FULL);
    }),
    test('Put of 1,048,577 bytes: INVALID_ARGUMENT naming "value" and 1048576; the key keeps its value', async (kv) => {
      const key = keyOf(0x40, KEY_MAX, 1);
      expectInvalid(await call.Put(kv, { key, value: OVER, ...NO_SESSION }), "value", VALUE_MAX);
      await expectValue(kv, key, FULL, "after the rejected put");
    }),
    test("Put of an empty value: found, with 0 bytes", async (kv) => {
      const key = keyOf(0x40, KEY_MAX, 2);
      await put(kv, key, EMPTY);
      await expectValue(kv, key, EMPTY);
    }),
    // The appends use 24-byte keys, so that they do not depend on long keys working.
    test("Append of 1,048,575 then 1 byte: lengths 1,048,575 and 1,048,576, every byte", async (kv) => {
      const key = keyOf(0x40, 24, 3);
      const append = (value: Uint8Array) =>
        call.Append(kv, { key, value, ...NO_SESSION }, BIG_CALL);
      assert.equal(
        ok(await append(FULL.subarray(0, VALUE_MAX - 1)), "append").length,
        VALUE_MAX - 1,
      );
      assert.equal(ok(await append(FULL.subarray(VALUE_MAX - 1)), "append").length, VALUE_MAX);
      await expectValue(kv, key, FULL);
    }),
    test("Append of 0 bytes to a full value: OK, length 1,048,576", async (kv) => {
      const key = keyOf(0x40, 24, 3);
      const answer = ok(await call.Append(kv, { key, value: EMPTY, ...NO_SESSION }), "append");
      assert.equal(answer.length, VALUE_MAX);
      await expectValue(kv, key, FULL);
    }),
    test('Append of 1 more byte: INVALID_ARGUMENT naming "value" and 1048576; value unchanged', async (kv) => {
      const key = keyOf(0x40, 24, 3);
      const answer = await call.Append(kv, { key, value: bytesOf(1, 5), ...NO_SESSION });
      expectInvalid(answer, "value", VALUE_MAX);
      await expectValue(kv, key, FULL, "after the rejected append");
    }),
    test("Append of 1,048,576 bytes to an absent key creates it whole", async (kv) => {
      const key = keyOf(0x40, 24, 4);
      const answer = ok(await call.Append(kv, { key, value: FULL, ...NO_SESSION }, BIG_CALL), "");
      assert.equal(answer.length, VALUE_MAX);
      await expectValue(kv, key, FULL);
    }),
    test('Append of 1,048,577 bytes to an absent key: INVALID_ARGUMENT naming "value"; still absent', async (kv) => {
      const key = keyOf(0x40, 24, 5);
      expectInvalid(await call.Append(kv, { key, value: OVER, ...NO_SESSION }), "value", VALUE_MAX);
      await expectAbsent(kv, key, "after the rejected append");
    }),
    test('Append of 1,048,577 bytes to a small value: INVALID_ARGUMENT naming "value"; unchanged', async (kv) => {
      const key = keyOf(0x40, 24, 6);
      await put(kv, key, bytesOf(10, 6));
      expectInvalid(await call.Append(kv, { key, value: OVER, ...NO_SESSION }), "value", VALUE_MAX);
      await expectValue(kv, key, bytesOf(10, 6), "after the rejected append");
    }),
  ],
};

// ---------------------------------------------------------------------------------------------
// Compare-and-swap at the limit (tag 0x50). Each case has its own key (a hung shard then only
// fails the cases whose keys it owns).

const CAS_A = bytesOf(VALUE_MAX, 51);
const CAS_B = bytesOf(VALUE_MAX, 52);
const CAS_C = bytesOf(VALUE_MAX, 53);
const casKey = (seed: number) => keyOf(0x50, KEY_MAX, seed);

/** Puts `value` under `key` and reads it back, before a case's compare-and-swap. */
async function given(kv: Kv, key: Uint8Array, value: Uint8Array): Promise<void> {
  await put(kv, key, value, BIG_CALL);
  await expectValue(kv, key, value, "before the cas");
}

const COMPARE_AND_SWAP: Group = {
  name: "compare-and-swap with 1 MiB expected and new values on 4,096-byte keys",
  cases: [
    test("on a 24-byte key, a matching CAS (1 MiB expected, 1 MiB value) succeeds", async (kv) => {
      // As the next case but with a short key, to tell a CAS problem from a long-key one.
      const key = keyOf(0x50, 24, 7);
      await given(kv, key, CAS_A);
      const answer = ok(await cas(kv, key, { expected: CAS_A, value: CAS_B }), "cas");
      assert.equal(answer.succeeded, true, "a matching cas succeeds");
      await expectValue(kv, key, CAS_B, "after the cas");
      await put(kv, key, bytesOf(5, 55));
      await expectValue(kv, key, bytesOf(5, 55), "after a small put");
    }),
    test("a matching CAS (1 MiB expected, 1 MiB value) succeeds; Get returns the new value whole", async (kv) => {
      await given(kv, casKey(1), CAS_A);
      const answer = ok(await cas(kv, casKey(1), { expected: CAS_A, value: CAS_B }), "cas");
      assert.equal(answer.succeeded, true, "a matching cas succeeds");
      assert.equal(answer.found, true);
      await expectValue(kv, casKey(1), CAS_B, "after the cas");
    }),
    test("then a small Put of the same key succeeds within 5 s", async (kv) => {
      const started = Date.now();
      await put(kv, casKey(1), bytesOf(5, 54));
      const elapsedMs = Date.now() - started;
      assert.ok(elapsedMs < 5000, `the put took ${elapsedMs} ms`);
      await expectValue(kv, casKey(1), bytesOf(5, 54));
    }),
    test("a CAS that does not match: OK, succeeded=false, the 1 MiB current value whole", async (kv) => {
      await given(kv, casKey(2), CAS_B);
      const answer = ok(await cas(kv, casKey(2), { expected: CAS_A, value: CAS_C }), "cas");
      assert.equal(answer.succeeded, false, "a mismatching cas does not succeed");
      assert.equal(answer.found, true);
      assertBytes(answer.current, CAS_B, "cas current");
      await expectValue(kv, casKey(2), CAS_B, "after the mismatching cas");
    }),
    test('"expected" of 1,048,577 bytes: INVALID_ARGUMENT naming "expected" and 1048576; unchanged', async (kv) => {
      await given(kv, casKey(3), CAS_B);
      expectInvalid(
        await cas(kv, casKey(3), { expected: OVER, value: CAS_C }),
        "expected",
        VALUE_MAX,
      );
      await expectValue(kv, casKey(3), CAS_B, "after the rejected cas");
    }),
    test('"value" of 1,048,577 bytes: INVALID_ARGUMENT naming "value" and 1048576; unchanged', async (kv) => {
      await given(kv, casKey(4), CAS_B);
      expectInvalid(await cas(kv, casKey(4), { expected: CAS_B, value: OVER }), "value", VALUE_MAX);
      await expectValue(kv, casKey(4), CAS_B, "after the rejected cas");
    }),
    test("expect_absent with a 1 MiB value creates a key; a second one fails, current whole", async (kv) => {
      const key = casKey(5);
      const created = ok(await cas(kv, key, { expectAbsent: true, value: CAS_A }), "cas");
      assert.equal(created.succeeded, true, "expect_absent on an absent key succeeds");
      assert.equal(created.found, false);
      await expectValue(kv, key, CAS_A, "after the cas");
      const again = ok(await cas(kv, key, { expectAbsent: true, value: CAS_C }), "cas");
      assert.equal(again.succeeded, false, "expect_absent on a present key does not succeed");
      assert.equal(again.found, true);
      assertBytes(again.current, CAS_A, "cas current");
      await expectValue(kv, key, CAS_A, "after the failed cas");
    }),
    test("delete: a mismatching 1 MiB expected leaves the key, a matching one removes it", async (kv) => {
      const key = casKey(6);
      await given(kv, key, CAS_B);
      const kept = ok(await cas(kv, key, { expected: CAS_C, delete: true }), "cas delete");
      assert.equal(kept.succeeded, false, "a mismatching cas delete does not succeed");
      assertBytes(kept.current, CAS_B, "cas current");
      await expectValue(kv, key, CAS_B, "after the mismatching cas delete");
      const gone = ok(await cas(kv, key, { expected: CAS_B, delete: true }), "cas delete");
      assert.equal(gone.succeeded, true, "a matching cas delete succeeds");
      await expectAbsent(kv, key, "after the cas delete");
    }),
  ],
};

// ---------------------------------------------------------------------------------------------
// Scan parameters (tag 0x60).

const SCAN_KEYS: KeyValue[] = [1, 17, 300, 4095, 4096].map((n, i) => ({
  key: keyOf(0x60, n, 60 + i),
  value: bytesOf(20 + i, 60 + i),
})).sort((a, b) => compareBytes(a.key, b.key));
const SCAN_ALL = { start: new Uint8Array([0x60]), end: new Uint8Array([0x61]) };
const LONGEST = SCAN_KEYS.find((p) => p.key.length === KEY_MAX)!.key;

const SCAN_PARAMETERS: Group = {
  name: "scan limits and bounds",
  cases: [
    test("five keys of 1 to 4,096 bytes are stored", async (kv) => {
      for (const pair of SCAN_KEYS) await put(kv, pair.key, pair.value);
    }),
    test("limit 1: one key per page; paging with next returns every key once, in order", (kv) =>
      expectScan(kv, { ...SCAN_ALL, limit: 1 }, SCAN_KEYS)),
    test("limit 10,000: every key in one page, more=false", async (kv) => {
      const page = ok(await call.Scan(kv, { ...SCAN_ALL, limit: SCAN_LIMIT_MAX }), "scan");
      assert.equal(page.more, false);
      assert.deepEqual(page.kvs.map((p) => hex(p.key)), SCAN_KEYS.map((p) => hex(p.key)));
    }),
    test('limit 0: INVALID_ARGUMENT naming "limit"', async (kv) =>
      expectInvalid(await call.Scan(kv, { ...SCAN_ALL, limit: 0 }), "limit")),
    test('limit 10,001: INVALID_ARGUMENT naming "limit" and 10000', async (kv) =>
      expectInvalid(
        await call.Scan(kv, { ...SCAN_ALL, limit: SCAN_LIMIT_MAX + 1 }),
        "limit",
        SCAN_LIMIT_MAX,
      )),
    test("a 4,096-byte start is inclusive", (kv) =>
      expectScan(
        kv,
        { start: LONGEST, end: SCAN_ALL.end, limit: 2 },
        within(SCAN_KEYS, LONGEST, SCAN_ALL.end),
      )),
    test("a 4,096-byte end is exclusive", (kv) =>
      expectScan(
        kv,
        { start: SCAN_ALL.start, end: LONGEST, limit: 2 },
        within(SCAN_KEYS, SCAN_ALL.start, LONGEST),
      )),
    test('a start of 4,097 bytes: INVALID_ARGUMENT naming "start" and 4096', async (kv) =>
      expectInvalid(
        await call.Scan(kv, { start: concat(LONGEST, [0]), end: EMPTY, limit: 10 }),
        "start",
        KEY_MAX,
      )),
    test('an end of 4,097 bytes: INVALID_ARGUMENT naming "end" and 4096', async (kv) =>
      expectInvalid(
        await call.Scan(kv, { start: SCAN_ALL.start, end: concat(LONGEST, [0]), limit: 10 }),
        "end",
        KEY_MAX,
      )),
    test('start after a non-empty end (both 4,096 bytes): INVALID_ARGUMENT naming "start"', async (kv) =>
      expectInvalid(
        await call.Scan(kv, { start: after(LONGEST), end: LONGEST, limit: 10 }),
        "start",
      )),
    test("start equal to end (4,096 bytes): OK, no keys", (kv) =>
      expectScan(kv, { start: LONGEST, end: LONGEST, limit: 10 }, [])),
    test("a start of 4,096 0xff bytes with an empty end: OK, no keys", (kv) =>
      expectScan(kv, { start: new Uint8Array(KEY_MAX).fill(0xff), end: EMPTY, limit: 10 }, [])),
  ],
};

// ---------------------------------------------------------------------------------------------
// A scan over 1 MiB values (tag 0xe0).

const BIG_SCAN: KeyValue[] = Array.from({ length: 6 }, (_, i) => ({
  key: keyOf(0xe0, KEY_MAX, 70 + i),
  value: bytesOf(VALUE_MAX, 70 + i),
})).sort((a, b) => compareBytes(a.key, b.key));
const BIG_SCAN_RANGE = { start: new Uint8Array([0xe0]), end: new Uint8Array([0xe1]) };

const SCAN_BIG_VALUES: Group = {
  name: "a scan over 1 MiB values",
  cases: [
    test("six 1 MiB values under 4,096-byte keys are stored, one by one", async (kv) => {
      for (const pair of BIG_SCAN) await put(kv, pair.key, pair.value, BIG_CALL);
    }),
    test("limit 10,000: pages cut near 1 MiB, each with a pair; every key once, values whole", (kv) =>
      expectScan(kv, { ...BIG_SCAN_RANGE, limit: SCAN_LIMIT_MAX }, BIG_SCAN)),
    test("limit 2: the same", (kv) => expectScan(kv, { ...BIG_SCAN_RANGE, limit: 2 }, BIG_SCAN)),
    test("from between two of them: the keys above, once each", (kv) =>
      expectScan(
        kv,
        { start: after(BIG_SCAN[2].key), end: BIG_SCAN_RANGE.end, limit: 3 },
        BIG_SCAN.slice(3),
      )),
  ],
};

// ---------------------------------------------------------------------------------------------
// Long keys that share long prefixes (tag 0xf0, the highest tag: nothing is stored above them).

const PREFIX = keyOf(0xf0, KEY_MAX - 2, 80);
const LAST_TWO = Array.from(
  { length: 100 },
  (_, i) =>
    i === 0 ? 0 : i === 1 ? 0xffff : i === 2 ? 0x00ff : i === 3 ? 0xff00 : (i * 647 + 13) % 65536,
);
const AT_3000 = keyOf(0xf0, 3000, 81);
const REST = bytesOf(KEY_MAX - 3001, 82);
const BYTE_3000 = Array.from(
  { length: 20 },
  (_, i) => [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff][i] ?? (i * 19 + 3) & 255,
);
const TWINS: KeyValue[] = [
  ...LAST_TWO.map((v) => concat(PREFIX, [v >> 8, v & 255])),
  PREFIX,
  concat(PREFIX, [0x00]),
  concat(PREFIX, [0xff]),
  ...BYTE_3000.map((b) => concat(AT_3000, [b], REST)),
].map((key, i) => ({ key, value: bytesOf(40 + i, 1000 + i) }));
const TWINS_SORTED = [...TWINS].sort((a, b) => compareBytes(a.key, b.key));
const TWINS_RANGE = { start: new Uint8Array([0xf0]), end: new Uint8Array([0xf1]) };

/** Scans every window `[a, b)` of `bounds` (and `[a, "")`), pages of 4, against the model. */
async function expectWindows(kv: Kv, bounds: Uint8Array[]): Promise<void> {
  const sorted = [...bounds].sort(compareBytes);
  for (const [i, start] of sorted.entries()) {
    for (const end of [...sorted.slice(i), EMPTY]) {
      await expectScan(kv, { start, end, limit: 4 }, within(TWINS, start, end));
    }
  }
}

const sortedLastTwo = [...LAST_TWO].sort((a, b) => a - b);
const sortedByte3000 = [...BYTE_3000].sort((a, b) => a - b);
const twinAt3000 = (b: number) => concat(AT_3000, [b], REST);

const COMMON_PREFIXES: Group = {
  name: "4,096-byte keys that differ only in their last 2 bytes or only at byte 3,000",
  cases: [
    test(`${TWINS.length} such keys (and prefixes of them) are stored`, async (kv) => {
      assert.equal(new Set(TWINS.map((p) => hex(p.key))).size, TWINS.length, "distinct keys");
      assert.ok(TWINS.every((p) => p.key.length <= KEY_MAX));
      await inParallel(8, TWINS.map((pair) => () => put(kv, pair.key, pair.value)));
    }),
    test("each reads back its own value", async (kv) => {
      await inParallel(
        8,
        TWINS.map((pair) => async () => {
          const got = ok(await call.Get(kv, { key: pair.key, serializable: false }), "get");
          assert.equal(got.found, true, `${nameOf(pair.key)} not found`);
          assertBytes(got.value, pair.value, `value of ${nameOf(pair.key)}`);
        }),
      );
    }),
    test("one scan (limit 10,000) returns each exactly once, in byte order", (kv) =>
      expectScan(kv, { ...TWINS_RANGE, limit: SCAN_LIMIT_MAX }, TWINS_SORTED)),
    test("paging with limit 1: each exactly once, in byte order", (kv) =>
      expectScan(kv, { ...TWINS_RANGE, limit: 1 }, TWINS_SORTED)),
    test("paging with limit 7: each exactly once, in byte order", (kv) =>
      expectScan(kv, { ...TWINS_RANGE, limit: 7 }, TWINS_SORTED)),
    test("start/end between keys that differ only in their last 2 bytes", (kv) =>
      expectWindows(kv, [
        // Just above the 10th and 60th keys, a 4,095-byte cut, and a 4,093-byte cut of the prefix.
        concat(PREFIX, [(sortedLastTwo[10] + 1) >> 8, (sortedLastTwo[10] + 1) & 255]),
        concat(PREFIX, [(sortedLastTwo[60] + 1) >> 8, (sortedLastTwo[60] + 1) & 255]),
        concat(PREFIX, [sortedLastTwo[40] >> 8]),
        PREFIX.subarray(0, KEY_MAX - 3),
      ])),
    test("start/end between keys that differ only at byte 3,000", (kv) =>
      expectWindows(kv, [
        // A 3,001-byte cut below the 5th key, just above the 12th, the 3,000-byte stem, 3,002 bytes.
        concat(AT_3000, [sortedByte3000[5]]),
        after(twinAt3000(sortedByte3000[12])),
        AT_3000,
        concat(AT_3000, [sortedByte3000[17], 0xff]),
      ])),
    test("start/end on stored keys: start inclusive, end exclusive", (kv) =>
      expectWindows(kv, [
        PREFIX,
        TWINS_SORTED[30].key,
        TWINS_SORTED[31].key,
        twinAt3000(sortedByte3000[0]),
        twinAt3000(sortedByte3000[19]),
      ])),
    test("deleting one of them leaves its neighbours, in every scan", async (kv) => {
      const victim = TWINS_SORTED[50];
      assert.equal(ok(await call.Delete(kv, { key: victim.key, ...NO_SESSION }), "").deleted, true);
      await expectAbsent(kv, victim.key, "after delete");
      const rest = TWINS_SORTED.filter((p) => p !== victim);
      await expectScan(kv, { ...TWINS_RANGE, limit: 3 }, rest);
      await expectValue(kv, TWINS_SORTED[49].key, TWINS_SORTED[49].value);
      await expectValue(kv, TWINS_SORTED[51].key, TWINS_SORTED[51].value);
    }),
  ],
};

// ---------------------------------------------------------------------------------------------
// Sessions (tag 0x70).

/** A client id of `bytes` ASCII bytes, unique per `seed`. */
function clientIdOf(bytes: number, seed: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_";
  return [...bytesOf(bytes, 7000 + seed)].map((b) => alphabet[b % alphabet.length]).join("");
}

const sessionKey = (seed: number) => keyOf(0x70, 40, seed);

/** A mutation of each kind on `key` with `session`, for the session-field checks. */
const SESSION_CALLS: Record<
  string,
  (kv: Kv, key: Uint8Array, s: typeof NO_SESSION) => Promise<RpcResult<unknown>>
> = {
  "Put": (kv, key, s) => call.Put(kv, { key, value: bytesOf(4, 1), ...s }),
  "Delete": (kv, key, s) => call.Delete(kv, { key, ...s }),
  "Append": (kv, key, s) => call.Append(kv, { key, value: bytesOf(4, 2), ...s }),
  "CompareAndSwap": (kv, key, s) =>
    cas(kv, key, { expectAbsent: true, value: bytesOf(4, 3), ...s }),
};

/** `send` gets INVALID_ARGUMENT naming `field` (and `limit`), and `key` stays absent. */
async function rejectsSession(
  kv: Kv,
  seed: number,
  session: typeof NO_SESSION,
  field: string,
  limit?: number,
): Promise<void> {
  const key = sessionKey(seed);
  for (const [op, send] of Object.entries(SESSION_CALLS)) {
    const answer = await send(kv, key, session);
    try {
      expectInvalid(answer, field, limit);
    } catch (error) {
      throw new Error(`${op}: ${(error as Error).message}`);
    }
  }
  await expectAbsent(kv, key, "after the rejected mutations");
}

const SESSIONS: Group = {
  name: "client sessions: client_id, seq and ack_seq at their limits, and retries",
  cases: [
    test("a 128-byte client_id with seq 1 and ack_seq 0 works for every mutation", async (kv) => {
      const key = sessionKey(1);
      const s = (seq: number) => ({ clientId: clientIdOf(CLIENT_ID_MAX, 1), seq, ackSeq: seq - 1 });
      ok(await call.Put(kv, { key, value: bytesOf(3, 1), ...s(1) }), "put");
      assert.equal(ok(await call.Append(kv, { key, value: bytesOf(2, 2), ...s(2) }), "").length, 5);
      const swapped = ok(
        await cas(kv, key, {
          expected: concat(bytesOf(3, 1), bytesOf(2, 2)),
          value: bytesOf(4, 3),
          ...s(3),
        }),
        "cas",
      );
      assert.equal(swapped.succeeded, true);
      await expectValue(kv, key, bytesOf(4, 3));
      assert.equal(ok(await call.Delete(kv, { key, ...s(4) }), "delete").deleted, true);
      await expectAbsent(kv, key);
    }),
    test("a client_id of 64 two-byte characters (128 bytes) works", async (kv) => {
      const key = sessionKey(2);
      ok(
        await call.Put(kv, {
          key,
          value: bytesOf(3, 2),
          clientId: "é".repeat(64),
          seq: 1,
          ackSeq: 0,
        }),
        "put",
      );
      await expectValue(kv, key, bytesOf(3, 2));
    }),
    test('a 129-byte client_id: INVALID_ARGUMENT naming "client_id" and 128; nothing stored', (kv) =>
      rejectsSession(
        kv,
        3,
        { clientId: clientIdOf(CLIENT_ID_MAX + 1, 3), seq: 1, ackSeq: 0 },
        "client_id",
        CLIENT_ID_MAX,
      )),
    test('a client_id of 65 two-byte characters (130 bytes): INVALID_ARGUMENT naming "client_id"', (kv) =>
      rejectsSession(
        kv,
        4,
        { clientId: "é".repeat(65), seq: 1, ackSeq: 0 },
        "client_id",
        CLIENT_ID_MAX,
      )),
    test('seq 0 with a client_id: INVALID_ARGUMENT naming "seq"', (kv) =>
      rejectsSession(kv, 5, { clientId: clientIdOf(10, 5), seq: 0, ackSeq: 0 }, "seq")),
    test('ack_seq equal to seq: INVALID_ARGUMENT naming "ack_seq"', (kv) =>
      rejectsSession(kv, 6, { clientId: clientIdOf(10, 6), seq: 3, ackSeq: 3 }, "ack_seq")),
    test('ack_seq above seq: INVALID_ARGUMENT naming "ack_seq"', (kv) =>
      rejectsSession(kv, 7, { clientId: clientIdOf(10, 7), seq: 3, ackSeq: 4 }, "ack_seq")),
    test('seq without a client_id: INVALID_ARGUMENT naming "client_id"', (kv) =>
      rejectsSession(kv, 8, { clientId: "", seq: 1, ackSeq: 0 }, "client_id")),
    test('ack_seq without a client_id: INVALID_ARGUMENT naming "client_id"', (kv) =>
      rejectsSession(kv, 9, { clientId: "", seq: 0, ackSeq: 1 }, "client_id")),
    test("a retried Append (same client_id and seq) returns the same length; the value grows once", async (kv) => {
      const key = sessionKey(10);
      const clientId = clientIdOf(20, 10);
      const first = { key, value: bytesOf(3, 10), clientId, seq: 1, ackSeq: 0 };
      assert.equal(ok(await call.Append(kv, first), "append").length, 3);
      assert.equal(
        ok(await call.Append(kv, first), "retried append").length,
        3,
        "retry answered, not applied",
      );
      const second = { key, value: bytesOf(2, 11), clientId, seq: 2, ackSeq: 1 };
      assert.equal(ok(await call.Append(kv, second), "append").length, 5);
      assert.equal(
        ok(await call.Append(kv, second), "retried append").length,
        5,
        "retry answered, not applied",
      );
      await expectValue(kv, key, concat(bytesOf(3, 10), bytesOf(2, 11)));
    }),
    test("a retried Put after another client's write does not overwrite it", async (kv) => {
      const key = sessionKey(11);
      const request = {
        key,
        value: bytesOf(3, 12),
        clientId: clientIdOf(20, 11),
        seq: 1,
        ackSeq: 0,
      };
      ok(await call.Put(kv, request), "put");
      await put(kv, key, bytesOf(3, 13));
      ok(await call.Put(kv, request), "retried put");
      await expectValue(kv, key, bytesOf(3, 13), "after the retried put");
    }),
    test("a retried 512 KiB Append on a 4,096-byte key with a 128-byte client_id applies once", async (kv) => {
      const key = keyOf(0x70, KEY_MAX, 12);
      const value = bytesOf(VALUE_MAX / 2, 14);
      const request = { key, value, clientId: clientIdOf(CLIENT_ID_MAX, 12), seq: 1, ackSeq: 0 };
      assert.equal(ok(await call.Append(kv, request, BIG_CALL), "append").length, VALUE_MAX / 2);
      assert.equal(
        ok(await call.Append(kv, request, BIG_CALL), "retried append").length,
        VALUE_MAX / 2,
      );
      await expectValue(kv, key, value);
    }),
  ],
};

// ---------------------------------------------------------------------------------------------
// Many big legal messages at once (tag 0x80).

const LARGEST_KEY = keyOf(0x80, KEY_MAX, 99);
const LARGEST_VALUE = bytesOf(VALUE_MAX, 99);

/** Gets `LARGEST_KEY` `count` times (at once or one after another), each whole. */
async function getsOfTheLargest(
  kv: Kv,
  count: number,
  serializable: boolean,
  atOnce: boolean,
): Promise<void> {
  const get = async (i: number) => {
    const label = `${serializable ? "serializable" : "linearizable"} get ${i}`;
    const got = ok(await call.Get(kv, { key: LARGEST_KEY, serializable }, BIG_CALL), label);
    assert.equal(got.found, true, `${label}: not found`);
    assertBytes(got.value, LARGEST_VALUE, label);
  };
  if (atOnce) await Promise.all(Array.from({ length: count }, (_, i) => get(i)));
  else for (let i = 0; i < count; i++) await get(i);
}

const BIG_MESSAGES: Group = {
  name: "many 1 MiB messages at once (gateway-to-kvnode batches bounded in bytes)",
  cases: [
    test("8 concurrent 1 MiB Puts (24-byte keys) from one gRPC client succeed and read back whole", async (kv) => {
      const pairs = Array.from(
        { length: 8 },
        (_, i) => ({ key: keyOf(0x80, 24, i), value: bytesOf(VALUE_MAX, 800 + i) }),
      );
      await Promise.all(pairs.map((p) => put(kv, p.key, p.value, BIG_CALL)));
      for (const p of pairs) await expectValue(kv, p.key, p.value);
    }),
    test(
      "16 concurrent 1 MiB Puts (24-byte keys) from 16 gRPC clients (own channels) succeed, read back whole",
      async (kv, env) => {
        const clients = Array.from(
          { length: 16 },
          () => createGrpcClient(KVService, env.address, { maxMessageBytes: MESSAGE_BYTES }),
        );
        try {
          const pairs = clients.map((_, i) => ({
            key: keyOf(0x80, 24, 100 + i),
            value: bytesOf(VALUE_MAX, 900 + i),
          }));
          await Promise.all(pairs.map((p, i) => put(clients[i], p.key, p.value, BIG_CALL)));
          for (const p of pairs) await expectValue(kv, p.key, p.value);
        } finally {
          for (const client of clients) client.close();
        }
      },
    ),
    test("20 linearizable Gets of a 1 MiB value under a 4,096-byte key, one by one, all whole", async (kv) => {
      await put(kv, LARGEST_KEY, LARGEST_VALUE, BIG_CALL);
      await expectValue(kv, LARGEST_KEY, LARGEST_VALUE);
      await getsOfTheLargest(kv, 20, false, false);
    }),
    test("20 serializable Gets of it, one by one, all whole", (kv) =>
      getsOfTheLargest(kv, 20, true, false)),
    test("20 linearizable and 20 serializable Gets of it at once, all whole", async (kv) => {
      await Promise.all([
        getsOfTheLargest(kv, 20, false, true),
        getsOfTheLargest(kv, 20, true, true),
      ]);
    }),
  ],
};

// ---------------------------------------------------------------------------------------------
// Txn at its limits (tag 0x90). A Txn's keys must share a shard: each key here is the tag byte,
// a hash tag `{name}` (only the bytes between the first `{` and the next `}` are hashed), then
// pseudo-random bytes, so keys of one name share a shard.

/** What a Txn may carry: 4,096 + 2 × 1,048,576 bytes of keys and values, 16 more per entry. */
const TXN_MAX = KEY_MAX + 2 * VALUE_MAX;
/** What a Txn's branch may return: 2 × 1,048,576 bytes of values. */
const TXN_ANSWER_MAX = 2 * VALUE_MAX;
const TXN_A = bytesOf(VALUE_MAX, 91);
const TXN_B = bytesOf(VALUE_MAX, 92);
const TXN_C = bytesOf(VALUE_MAX, 93);

/** A key of `length` bytes: the tag byte 0x90, the hash tag `{name}`, pseudo-random bytes. */
function taggedKey(name: string, length: number, seed: number): Uint8Array {
  const head = concat([0x90], new TextEncoder().encode(`{${name}}`));
  assert.ok(length >= head.length, `a ${length}-byte key has no room for {${name}}`);
  const key = keyOf(0x90, length, seed);
  key.set(head);
  return key;
}

/** The range `[start, end)` of every key {@linkcode taggedKey} makes with `name`. */
function taggedRange(name: string): { start: Uint8Array; end: Uint8Array } {
  const start = concat([0x90], new TextEncoder().encode(`{${name}}`));
  const end = start.slice();
  end[end.length - 1]++;
  return { start, end };
}

type Compared = keyof typeof TxnCompare_Result;

/** A VALUE compare: the key's value `result` `value` (fails on an absent key). */
const ifValue = (key: Uint8Array, result: Compared, value: Uint8Array): TxnCompare => ({
  key,
  result: TxnCompare_Result[result],
  target: TxnCompare_Target.VALUE,
  value,
});
/** An EXISTS compare (against 0): EQUAL holds on an absent key, GREATER on a present one. */
const ifExists = (key: Uint8Array, result: Compared): TxnCompare => ({
  key,
  result: TxnCompare_Result[result],
  target: TxnCompare_Target.EXISTS,
  value: EMPTY,
});
const ifAbsent = (key: Uint8Array) => ifExists(key, "EQUAL");
const txnGet = (key: Uint8Array): TxnOp => ({
  kind: TxnOp_Kind.GET,
  key,
  value: EMPTY,
  prev: false,
});
const txnPut = (key: Uint8Array, value: Uint8Array, prev = false): TxnOp => ({
  kind: TxnOp_Kind.PUT,
  key,
  value,
  prev,
});
const txnDelete = (key: Uint8Array, prev = false): TxnOp => ({
  kind: TxnOp_Kind.DELETE,
  key,
  value: EMPTY,
  prev,
});

type TxnFields = Partial<Req<"Txn">>;

function txn(kv: Kv, fields: TxnFields, o: Options = BIG_CALL) {
  return call.Txn(kv, { compares: [], success: [], failure: [], ...NO_SESSION, ...fields }, o);
}

/** The bytes a Txn carries as the contract counts them (the model of `checkTxn`'s sum). */
function txnBytes(fields: TxnFields): number {
  let bytes = 0;
  for (const c of fields.compares ?? []) {
    bytes += c.key.length + c.value.length + TXN_ENTRY_OVERHEAD_BYTES;
  }
  for (const op of [...fields.success ?? [], ...fields.failure ?? []]) {
    const value = op.kind === TxnOp_Kind.PUT ? op.value.length : 0;
    bytes += op.key.length + value + TXN_ENTRY_OVERHEAD_BYTES;
  }
  return bytes;
}

/** What one operation of a Txn should find: `found`, and the value it returns (else empty). */
type Found = { found: boolean; value?: Uint8Array };

/** The Txn ran the branch `succeeded` says, and its results are `expected`, byte for byte. */
function expectTxn(
  answer: TxnResponse,
  succeeded: boolean,
  expected: readonly Found[],
  what = "txn",
): void {
  assert.equal(answer.succeeded, succeeded, `${what}: succeeded`);
  assert.equal(
    answer.results.length,
    expected.length,
    `${what}: ${answer.results.length} results, expected ${expected.length}`,
  );
  for (const [i, e] of expected.entries()) {
    assert.equal(answer.results[i].found, e.found, `${what}: results[${i}].found`);
    assertBytes(answer.results[i].value, e.value ?? EMPTY, `${what}: results[${i}].value`);
  }
}

/** INVALID_ARGUMENT saying the Txn would return `bytes` bytes and the maximum, 2 × 1 MiB. */
function expectAnswerTooBig(result: RpcResult<unknown>, bytes: number): void {
  expectInvalid(result, "txn", TXN_ANSWER_MAX);
  assert.ok(
    result.kind === "invalidArgument" && mentionsNumber(result.message, bytes),
    `expected a message saying the Txn would return ${bytes} bytes, got: ${describe(result)}`,
  );
}

// The Txn of exactly the maximum: a 1 MiB VALUE compare and a 1 MiB PUT, both on one key of
// (4,096 − 2 × 16) / 2 = 2,032 bytes; one past it puts to a key of 2,033 bytes instead.
const AT_MAX_KEY = taggedKey("t90", (KEY_MAX - 2 * TXN_ENTRY_OVERHEAD_BYTES) / 2, 1);
const PAST_MAX_KEY = taggedKey("t90", AT_MAX_KEY.length + 1, 2);
// A value and a key at their limits, and one byte past them.
const LONG_KEY = taggedKey("t91", KEY_MAX, 3);
const TOO_LONG_KEY = taggedKey("t91", KEY_MAX + 1, 4);
// 128 keys of 4,096 bytes with 1 KiB values, and 129 small keys.
const MANY = Array.from({ length: TXN_OPS_MAX }, (_, i) => ({
  key: taggedKey("t92", KEY_MAX, 200 + i),
  value: bytesOf(1024, 200 + i),
})).sort((a, b) => compareBytes(a.key, b.key));
const TOO_MANY = Array.from({ length: TXN_OPS_MAX + 1 }, (_, i) => taggedKey("t93", 24, 400 + i));
// Two 1 MiB values, a 1-byte one, and keys for the branches' writes.
const READ_A = taggedKey("t94", 24, 1);
const READ_B = taggedKey("t94", 24, 2);
const READ_ONE = taggedKey("t94", 24, 3);
const ONE_BYTE = bytesOf(1, 94);
const txnTarget = (seed: number) => taggedKey("t94", 24, 10 + seed);

/**
 * A Txn at both of its limits under the hash tag `name`: 2,101,248 bytes in (a 1 MiB compare on a
 * 1,350-byte key, a 1 MiB PUT with prev on a 1,348-byte key, a GET of the first key) and 2,097,152
 * bytes out (the value the PUT replaced and the value read).
 */
function atBothLimits(name: string, seed: number) {
  const compared = taggedKey(name, 1350, seed);
  const replaced = taggedKey(name, 1348, seed + 1);
  const kept = bytesOf(VALUE_MAX, 10 * seed);
  const old = bytesOf(VALUE_MAX, 10 * seed + 1);
  const fresh = bytesOf(VALUE_MAX, 10 * seed + 2);
  const request = {
    compares: [ifValue(compared, "EQUAL", kept)],
    success: [txnPut(replaced, fresh, true), txnGet(compared)],
  };
  assert.equal(txnBytes(request), TXN_MAX);
  return {
    /** Stores the value compared and the value replaced. */
    store: async (kv: Kv) => {
      await put(kv, compared, kept, BIG_CALL);
      await put(kv, replaced, old, BIG_CALL);
    },
    /** Runs the Txn: it succeeds and returns both 1 MiB values whole. */
    run: async (kv: Kv) => {
      const answer = ok(await txn(kv, request), `txn {${name}}`);
      expectTxn(answer, true, [{ found: true, value: old }, { found: true, value: kept }], name);
    },
    /** The PUT applied, the compared value is unchanged. */
    check: async (kv: Kv) => {
      await expectValue(kv, replaced, fresh, "after the txn");
      await expectValue(kv, compared, kept, "after the txn");
    },
  };
}

const TXN: Group = {
  name: "Txn: 2 × 1 MiB + 4 KiB in all, 128 compares and operations, answers of 2 × 1 MiB",
  cases: [
    test("the limits in this test are the ones libs/shard enforces", () => {
      assert.equal(txnBytesMax(VALUE_MAX), TXN_MAX);
      assert.equal(TXN_MAX, 2_101_248);
      assert.equal(TXN_OPS_MAX, 128);
      assert.equal(TXN_ENTRY_OVERHEAD_BYTES, 16);
      return Promise.resolve();
    }),
    test(`a Txn of exactly ${TXN_MAX} bytes (1 MiB compare, 1 MiB PUT with prev on a 2,032-byte key): Get returns every byte`, async (kv) => {
      await put(kv, AT_MAX_KEY, TXN_A, BIG_CALL);
      await expectValue(kv, AT_MAX_KEY, TXN_A, "before the txn");
      const request = {
        compares: [ifValue(AT_MAX_KEY, "EQUAL", TXN_A)],
        success: [txnPut(AT_MAX_KEY, TXN_B, true)],
      };
      assert.equal(txnBytes(request), TXN_MAX);
      expectTxn(ok(await txn(kv, request), "txn"), true, [{ found: true, value: TXN_A }]);
      await expectValue(kv, AT_MAX_KEY, TXN_B, "after the txn");
    }),
    test(`a Txn of exactly ${TXN_MAX} bytes whose 1 MiB compare fails runs its 1 MiB failure PUT`, async (kv) => {
      const request = {
        compares: [ifValue(AT_MAX_KEY, "EQUAL", TXN_A)],
        failure: [txnPut(AT_MAX_KEY, TXN_C, true)],
      };
      assert.equal(txnBytes(request), TXN_MAX);
      expectTxn(ok(await txn(kv, request), "txn"), false, [{ found: true, value: TXN_B }]);
      await expectValue(kv, AT_MAX_KEY, TXN_C, "after the txn");
    }),
    test(`one byte more (the PUT on a 2,033-byte key): INVALID_ARGUMENT naming "txn" and ${TXN_MAX}; nothing changed`, async (kv) => {
      const request = {
        compares: [ifValue(AT_MAX_KEY, "EQUAL", TXN_C)],
        success: [txnPut(PAST_MAX_KEY, TXN_A)],
      };
      assert.equal(txnBytes(request), TXN_MAX + 1);
      const answer = await txn(kv, request);
      expectInvalid(answer, "txn", TXN_MAX);
      assert.ok(
        answer.kind === "invalidArgument" && mentionsNumber(answer.message, TXN_MAX + 1),
        `expected the message to say the Txn carries ${TXN_MAX + 1} bytes: ${describe(answer)}`,
      );
      await expectValue(kv, AT_MAX_KEY, TXN_C, "after the rejected txn");
      await expectAbsent(kv, PAST_MAX_KEY, "after the rejected txn");
    }),
    test("a PUT of 1,048,576 bytes under a 4,096-byte key, then a GET of it: every byte", async (kv) => {
      expectTxn(ok(await txn(kv, { success: [txnPut(LONG_KEY, TXN_A)] }), "put"), true, [
        { found: false },
      ]);
      const read = ok(await txn(kv, { success: [txnGet(LONG_KEY)] }), "get");
      expectTxn(read, true, [{ found: true, value: TXN_A }], "get");
      await expectValue(kv, LONG_KEY, TXN_A, "after the txn");
    }),
    test('a PUT of 1,048,577 bytes: INVALID_ARGUMENT naming "success[0].value" (or "failure[1].value") and 1048576; unchanged', async (kv) => {
      expectInvalid(
        await txn(kv, { success: [txnPut(LONG_KEY, OVER)] }),
        "success[0].value",
        VALUE_MAX,
      );
      expectInvalid(
        await txn(kv, {
          compares: [ifAbsent(LONG_KEY)],
          failure: [txnGet(LONG_KEY), txnPut(LONG_KEY, OVER)],
        }),
        "failure[1].value",
        VALUE_MAX,
      );
      await expectValue(kv, LONG_KEY, TXN_A, "after the rejected txns");
    }),
    test('a compare operand of 1,048,577 bytes: INVALID_ARGUMENT naming "compares[0].value" and 1048576; unchanged', async (kv) => {
      const answer = await txn(kv, {
        compares: [ifValue(LONG_KEY, "NOT_EQUAL", OVER)],
        success: [txnDelete(LONG_KEY)],
      });
      expectInvalid(answer, "compares[0].value", VALUE_MAX);
      await expectValue(kv, LONG_KEY, TXN_A, "after the rejected txn");
    }),
    test("a 4,097-byte key in a GET, a PUT or a compare: INVALID_ARGUMENT naming its field and 4096; nothing stored", async (kv) => {
      const small = bytesOf(8, 95);
      expectInvalid(
        await txn(kv, { success: [txnGet(TOO_LONG_KEY)] }),
        "success[0].key",
        KEY_MAX,
      );
      expectInvalid(
        await txn(kv, { success: [txnGet(LONG_KEY), txnPut(TOO_LONG_KEY, small)] }),
        "success[1].key",
        KEY_MAX,
      );
      expectInvalid(
        await txn(kv, { compares: [ifAbsent(TOO_LONG_KEY)], success: [txnPut(LONG_KEY, small)] }),
        "compares[0].key",
        KEY_MAX,
      );
      await expectNothingStored(kv, TOO_LONG_KEY);
      await expectValue(kv, LONG_KEY, TXN_A, "after the rejected txns");
    }),
    test('an empty key: INVALID_ARGUMENT naming "success[1].key" and 1; nothing changed', async (kv) => {
      const answer = await txn(kv, {
        success: [txnDelete(LONG_KEY), txnPut(EMPTY, bytesOf(8, 96))],
      });
      expectInvalid(answer, "success[1].key", 1);
      await expectNothingStored(kv, EMPTY);
      await expectValue(kv, LONG_KEY, TXN_A, "after the rejected txn");
    }),
    test("128 compares and 128 operations in each branch, all on 4,096-byte keys: every one runs", async (kv) => {
      const request = {
        compares: MANY.map((p) => ifAbsent(p.key)),
        success: MANY.map((p) => txnPut(p.key, p.value)),
        failure: MANY.map((p) => txnGet(p.key)),
      };
      assert.ok(txnBytes(request) <= TXN_MAX);
      const answer = ok(await txn(kv, request), "txn");
      expectTxn(answer, true, MANY.map(() => ({ found: false })));
      await expectScan(kv, { ...taggedRange("t92"), limit: 1000 }, MANY);
    }),
    test("128 VALUE compares of which the 128th fails: the 128 GETs of the failure branch run, whole", async (kv) => {
      const request = {
        compares: MANY.map((p, i) =>
          ifValue(p.key, "EQUAL", i === 127 ? bytesOf(1024, 1) : p.value)
        ),
        success: MANY.map((p) => txnDelete(p.key)),
        failure: MANY.map((p) => txnGet(p.key)),
      };
      const answer = ok(await txn(kv, request), "txn");
      expectTxn(answer, false, MANY.map((p) => ({ found: true, value: p.value })));
      await expectScan(kv, { ...taggedRange("t92"), limit: 1000 }, MANY);
    }),
    test("128 VALUE compares that hold: the 128 DELETEs (with prev) run, each returning its value", async (kv) => {
      const request = {
        compares: MANY.map((p) => ifValue(p.key, "EQUAL", p.value)),
        success: MANY.map((p) => txnDelete(p.key, true)),
        failure: MANY.map((p) => txnGet(p.key)),
      };
      const answer = ok(await txn(kv, request), "txn");
      expectTxn(answer, true, MANY.map((p) => ({ found: true, value: p.value })));
      await expectScan(kv, { ...taggedRange("t92"), limit: 1000 }, []);
    }),
    test('129 compares, or 129 operations in a branch: INVALID_ARGUMENT naming "compares", "success" or "failure" and 128; nothing stored', async (kv) => {
      const small = bytesOf(8, 97);
      const few = TOO_MANY.slice(0, TXN_OPS_MAX);
      expectInvalid(
        await txn(kv, { compares: TOO_MANY.map(ifAbsent), success: [txnPut(TOO_MANY[0], small)] }),
        "compares",
        TXN_OPS_MAX,
      );
      expectInvalid(
        await txn(kv, { success: TOO_MANY.map((key) => txnPut(key, small)) }),
        "success",
        TXN_OPS_MAX,
      );
      expectInvalid(
        await txn(kv, {
          compares: few.map((key) => ifExists(key, "GREATER")),
          success: few.map((key) => txnGet(key)),
          failure: TOO_MANY.map((key) => txnPut(key, small)),
        }),
        "failure",
        TXN_OPS_MAX,
      );
      await expectScan(kv, { ...taggedRange("t93"), limit: 1000 }, []);
    }),
    test("two 1 MiB values and a 1-byte value are stored under one hash tag", async (kv) => {
      await put(kv, READ_A, TXN_A, BIG_CALL);
      await put(kv, READ_B, TXN_B, BIG_CALL);
      await put(kv, READ_ONE, ONE_BYTE);
      await expectValue(kv, READ_A, TXN_A);
      await expectValue(kv, READ_B, TXN_B);
      await expectValue(kv, READ_ONE, ONE_BYTE);
    }),
    test(`a branch whose GETs return exactly ${TXN_ANSWER_MAX} bytes: OK, both values whole; its PUT applies`, async (kv) => {
      const answer = ok(
        await txn(kv, {
          compares: [ifExists(READ_A, "GREATER")],
          success: [txnGet(READ_A), txnGet(READ_B), txnPut(txnTarget(1), bytesOf(8, 1))],
        }),
        "txn",
      );
      expectTxn(answer, true, [
        { found: true, value: TXN_A },
        { found: true, value: TXN_B },
        { found: false },
      ]);
      await expectValue(kv, txnTarget(1), bytesOf(8, 1), "after the txn");
    }),
    test(`one byte more (a third GET, of 1 byte): INVALID_ARGUMENT "would return ${TXN_ANSWER_MAX + 1} bytes", max ${TXN_ANSWER_MAX}; its PUT and DELETE not applied`, async (kv) => {
      const answer = await txn(kv, {
        success: [
          txnGet(READ_A),
          txnGet(READ_B),
          txnGet(READ_ONE),
          txnPut(txnTarget(1), bytesOf(8, 2)),
          txnDelete(READ_B),
        ],
      });
      expectAnswerTooBig(answer, TXN_ANSWER_MAX + 1);
      await expectValue(kv, txnTarget(1), bytesOf(8, 1), "after the refused txn");
      await expectValue(kv, READ_B, TXN_B, "after the refused txn");
    }),
    test("the same in the failure branch; the values PUT and DELETE return with prev count too", async (kv) => {
      const failing = await txn(kv, {
        compares: [ifAbsent(READ_A)],
        success: [txnPut(txnTarget(2), bytesOf(8, 3))],
        failure: [
          txnGet(READ_A),
          txnGet(READ_B),
          txnPut(txnTarget(2), bytesOf(8, 4)),
          txnGet(READ_ONE),
        ],
      });
      expectAnswerTooBig(failing, TXN_ANSWER_MAX + 1);
      await expectAbsent(kv, txnTarget(2), "after the refused txn");
      const prev = await txn(kv, {
        success: [
          txnGet(READ_A),
          txnPut(READ_B, bytesOf(8, 5), true),
          txnDelete(READ_ONE, true),
        ],
      });
      expectAnswerTooBig(prev, TXN_ANSWER_MAX + 1);
      await expectValue(kv, READ_B, TXN_B, "after the refused txn");
      await expectValue(kv, READ_ONE, ONE_BYTE, "after the refused txn");
    }),
    test(`the branch's own 1 MiB PUT read twice returns ${TXN_ANSWER_MAX} bytes: OK; read three times: refused, not written`, async (kv) => {
      const answer = ok(
        await txn(kv, {
          success: [txnPut(txnTarget(3), TXN_C), txnGet(txnTarget(3)), txnGet(txnTarget(3))],
        }),
        "txn",
      );
      expectTxn(answer, true, [
        { found: false },
        { found: true, value: TXN_C },
        { found: true, value: TXN_C },
      ]);
      await expectValue(kv, txnTarget(3), TXN_C, "after the txn");
      const refused = await txn(kv, {
        success: [
          txnPut(txnTarget(4), TXN_C),
          txnGet(txnTarget(4)),
          txnGet(txnTarget(4)),
          txnGet(READ_ONE),
        ],
      });
      expectAnswerTooBig(refused, TXN_ANSWER_MAX + 1);
      await expectAbsent(kv, txnTarget(4), "after the refused txn");
    }),
    test(`a retried Txn (client_id, seq) that returned ${TXN_ANSWER_MAX} bytes returns them again; it applied once`, async (kv) => {
      const key = txnTarget(5);
      const request = {
        compares: [ifAbsent(key)],
        success: [txnGet(READ_A), txnGet(READ_B), txnPut(key, bytesOf(8, 6))],
        failure: [txnPut(key, bytesOf(8, 7))],
        clientId: clientIdOf(CLIENT_ID_MAX, 90),
        seq: 1,
        ackSeq: 0,
      };
      const expected = [{ found: true, value: TXN_A }, { found: true, value: TXN_B }, {
        found: false,
      }];
      expectTxn(ok(await txn(kv, request), "txn"), true, expected);
      expectTxn(ok(await txn(kv, request), "retried txn"), true, expected, "retried txn");
      await expectValue(kv, key, bytesOf(8, 6), "after the retried txn");
    }),
    test("a retried Txn that was refused (it would return too much) is refused again, even once it fits", async (kv) => {
      const key = txnTarget(6);
      const request = {
        success: [txnGet(READ_A), txnGet(READ_B), txnGet(READ_ONE), txnPut(key, bytesOf(8, 8))],
        clientId: clientIdOf(40, 91),
        seq: 1,
        ackSeq: 0,
      };
      expectAnswerTooBig(await txn(kv, request), TXN_ANSWER_MAX + 1);
      await put(kv, READ_ONE, EMPTY);
      expectAnswerTooBig(await txn(kv, request), TXN_ANSWER_MAX + 1);
      await expectAbsent(kv, key, "after the retried txn");
      const next = { ...request, seq: 2, ackSeq: 1 };
      const answer = ok(await txn(kv, next), "the next seq");
      expectTxn(answer, true, [
        { found: true, value: TXN_A },
        { found: true, value: TXN_B },
        { found: true },
        { found: false },
      ]);
      await expectValue(kv, key, bytesOf(8, 8), "after the next seq");
    }),
    test(`a Txn at both limits: ${TXN_MAX} bytes in, ${TXN_ANSWER_MAX} bytes out, every byte`, async (kv) => {
      const both = atBothLimits("t98", 1000);
      await both.store(kv);
      await both.run(kv);
      await both.check(kv);
    }),
    test("8 such Txns at once from one gRPC client (8 hash tags), every byte", async (kv) => {
      const all = Array.from({ length: 8 }, (_, i) => atBothLimits(`t99-${i}`, 1100 + 10 * i));
      for (const both of all) await both.store(kv);
      await Promise.all(all.map((both) => both.run(kv)));
      for (const both of all) await both.check(kv);
    }),
    test(
      "keys of two shards: INVALID_ARGUMENT naming both shards, also with two 1 MiB PUTs; nothing written",
      async (kv, env) => {
        const first = taggedKey("t95-0", 24, 1);
        const shard = env.cluster.shardOf(first);
        let other: Uint8Array | undefined;
        for (let i = 1; other === undefined; i++) {
          const key = taggedKey(`t95-${i}`, 24, 1 + i);
          if (env.cluster.shardOf(key) !== shard) other = key;
        }
        const otherShard = env.cluster.shardOf(other);
        const requests: TxnFields[] = [
          { success: [txnPut(first, bytesOf(8, 9)), txnPut(other, bytesOf(8, 10))] },
          { compares: [ifAbsent(other)], success: [txnPut(first, bytesOf(8, 11))] },
          { compares: [ifAbsent(first)], failure: [txnDelete(first), txnGet(other)] },
          { success: [txnPut(first, TXN_A), txnPut(other, TXN_B)] },
        ];
        for (const [i, request] of requests.entries()) {
          const answer = await txn(kv, request);
          const what = `request ${i}: expected INVALID_ARGUMENT naming shards ${shard} and ` +
            `${otherShard}, got ${describe(answer)}`;
          assert.ok(answer.kind === "invalidArgument", what);
          assert.match(answer.message, new RegExp(`\\bshard ${shard}\\b`), what);
          assert.match(answer.message, new RegExp(`\\bshard ${otherShard}\\b`), what);
        }
        await expectAbsent(kv, first, "after the refused txns");
        await expectAbsent(kv, other, "after the refused txns");
      },
    ),
    test("an empty Txn, an operation of kind 0 and a compare result of 4: INVALID_ARGUMENT", async (kv) => {
      expectInvalid(await txn(kv, {}), "txn");
      const key = taggedKey("t96", 24, 1);
      expectInvalid(
        await txn(kv, {
          success: [txnPut(key, bytesOf(8, 12)), {
            ...txnGet(key),
            kind: TxnOp_Kind.KIND_UNSPECIFIED,
          }],
        }),
        "success[1].kind",
      );
      expectInvalid(
        await txn(kv, {
          compares: [{ ...ifAbsent(key), result: Number(4) as TxnCompare_Result }],
          success: [txnPut(key, bytesOf(8, 13))],
        }),
        "compares[0].result",
      );
      await expectAbsent(kv, key, "after the rejected txns");
    }),
    test("compares: VALUE =, !=, >, < and EXISTS on present and absent keys choose the branch", async (kv) => {
      const key = taggedKey("t96", 24, 2);
      const absent = taggedKey("t96", 24, 3);
      const m = new Uint8Array([0x6d]);
      await put(kv, key, m);
      const cases: [TxnCompare, boolean][] = [
        [ifValue(key, "EQUAL", m), true],
        [ifValue(key, "EQUAL", new Uint8Array([0x6e])), false],
        [ifValue(key, "NOT_EQUAL", new Uint8Array([0x6e])), true],
        [ifValue(key, "NOT_EQUAL", m), false],
        [ifValue(key, "GREATER", new Uint8Array([0x6c])), true],
        [ifValue(key, "GREATER", EMPTY), true],
        [ifValue(key, "GREATER", m), false],
        [ifValue(key, "LESS", new Uint8Array([0x6e])), true],
        [ifValue(key, "LESS", new Uint8Array([0x6d, 0x00])), true],
        [ifValue(key, "LESS", m), false],
        [ifExists(key, "EQUAL"), false],
        [ifExists(key, "GREATER"), true],
        [ifExists(key, "NOT_EQUAL"), true],
        [ifExists(absent, "EQUAL"), true],
        [ifExists(absent, "GREATER"), false],
        [ifValue(absent, "EQUAL", EMPTY), false],
        [ifValue(absent, "NOT_EQUAL", m), false],
        [ifValue(absent, "LESS", m), false],
      ];
      for (const [i, [compare, holds]] of cases.entries()) {
        const answer = ok(
          await txn(kv, {
            compares: [ifExists(key, "GREATER"), compare],
            success: [txnGet(key)],
            failure: [txnGet(absent)],
          }),
          `compare ${i}`,
        );
        expectTxn(
          answer,
          holds,
          [holds ? { found: true, value: m } : { found: false }],
          `compare ${i}`,
        );
      }
      const none = ok(await txn(kv, { compares: [ifValue(key, "EQUAL", m)] }), "compares only");
      expectTxn(none, true, [], "compares only");
      await expectValue(kv, key, m, "after the compares");
      await expectAbsent(kv, absent, "after the compares");
    }),
    test("each operation sees the ones before it; the last write stays", async (kv) => {
      const key = taggedKey("t96", 24, 4);
      const [v1, v2, v3] = [bytesOf(10, 14), bytesOf(20, 15), bytesOf(30, 16)];
      const answer = ok(
        await txn(kv, {
          success: [
            txnPut(key, v1),
            txnGet(key),
            txnPut(key, v2, true),
            txnDelete(key, true),
            txnGet(key),
            txnDelete(key, true),
            txnPut(key, v3, true),
            txnGet(key),
          ],
        }),
        "txn",
      );
      expectTxn(answer, true, [
        { found: false },
        { found: true, value: v1 },
        { found: true, value: v1 },
        { found: true, value: v2 },
        { found: false },
        { found: false },
        { found: false },
        { found: true, value: v3 },
      ]);
      await expectValue(kv, key, v3, "after the txn");
    }),
    test("a retried Txn (client_id, seq) returns the first answer and applies once, even after another write", async (kv) => {
      const key = taggedKey("t97", 24, 1);
      const [v1, v2, v3] = [bytesOf(10, 17), bytesOf(20, 18), bytesOf(30, 19)];
      const request = {
        compares: [ifAbsent(key)],
        success: [txnPut(key, v1), txnGet(key)],
        failure: [txnPut(key, v2, true), txnGet(key)],
        clientId: clientIdOf(CLIENT_ID_MAX, 92),
        seq: 1,
        ackSeq: 0,
      };
      const first = [{ found: false }, { found: true, value: v1 }];
      expectTxn(ok(await txn(kv, request), "txn"), true, first);
      expectTxn(ok(await txn(kv, request), "retried txn"), true, first, "retried txn");
      await expectValue(kv, key, v1, "after the retried txn");
      await put(kv, key, v3);
      expectTxn(ok(await txn(kv, request), "retried txn"), true, first, "retried txn");
      await expectValue(kv, key, v3, "after another client's write and the retried txn");
      const next = ok(await txn(kv, { ...request, seq: 2, ackSeq: 1 }), "the next seq");
      expectTxn(next, false, [{ found: true, value: v3 }, { found: true, value: v2 }], "next seq");
      await expectValue(kv, key, v2, "after the next seq");
    }),
  ],
};

// ---------------------------------------------------------------------------------------------
// The run.

const GROUPS: readonly Group[] = [
  KEYS,
  BAD_KEYS,
  VALUES,
  COMPARE_AND_SWAP,
  SCAN_PARAMETERS,
  SCAN_BIG_VALUES,
  COMMON_PREFIXES,
  SESSIONS,
  BIG_MESSAGES,
  TXN,
];

/**
 * Runs `group`'s cases as steps, each followed by a check that no process exited (a case after
 * an exit is not run), then checks the cluster's health. Returns whether the cluster is healthy.
 */
async function runGroup(t: Deno.TestContext, env: Env, group: Group): Promise<boolean> {
  let healthy = true;
  await t.step(group.name, async (g) => {
    // Once a process has exited or a shard takes no write, the rest of the group is not run.
    let broken = false;
    for (const item of group.cases) {
      broken ||= (await env.exited()).length > 0;
      await g.step({
        name: item.name,
        ignore: broken,
        fn: async () => {
          const startedMs = Date.now();
          let failure: unknown;
          try {
            await item.run(env.kv, env);
          } catch (error) {
            failure = error;
          }
          const exited = await env.exited();
          const elapsedMs = Date.now() - startedMs;
          timings.push(
            `${failure === undefined && exited.length === 0 ? "ok  " : "FAIL"} ${
              String(elapsedMs).padStart(6)
            } ms  ${item.name}`,
          );
          if (exited.length > 0) {
            throw new Error(
              `A process exited during this case${
                failure === undefined ? "" : ` (which also failed: ${failure})`
              }:\n${exited.join("\n\n")}`,
            );
          }
          if (failure !== undefined) {
            const stuck = await env.unwritableShards(10_000);
            if (stuck.length > 0) {
              broken = true;
              throw new Error(
                `${failure}\n(and then a small write failed: ${stuck.join("; ")}: the rest of ` +
                  "this group is not run)",
                { cause: failure },
              );
            }
            throw failure;
          }
        },
      });
    }
    await g.step(
      "afterwards every process is alive, every shard takes a write, replicas agree",
      async () => {
        try {
          await env.assertHealthy();
        } catch (error) {
          healthy = false;
          throw error;
        }
      },
    );
  });
  return healthy;
}

const timings: string[] = [];

Deno.test({
  name: "boundary values of tinykv.v1.KV through a gateway on real kvnodes",
  // The cluster's processes, streams and clients live across the steps.
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  let env = await Env.start();
  try {
    for (const group of GROUPS) {
      const startedMs = Date.now();
      const healthy = await runGroup(t, env, group);
      timings.push(`---- ${Date.now() - startedMs} ms for "${group.name}"`);
      if (!healthy) {
        const kept = await env.keepLogs().catch((error) => `(not kept: ${error})`);
        timings.push(`---- the cluster is broken; its logs are kept in ${kept}`);
      }
      if (!healthy && group !== GROUPS.at(-1)) {
        await env.close();
        const freshMs = Date.now();
        env = await Env.start();
        timings.push(`---- ${Date.now() - freshMs} ms to start a fresh cluster`);
      }
    }
  } finally {
    await env.close();
    console.log(timings.join("\n"));
  }
});
