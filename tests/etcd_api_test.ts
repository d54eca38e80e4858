// etcd's v3 API on the gateway's client port (services/gateway/etcd_service.ts), checked from
// outside with real etcd clients against a real dev cluster (3 kvnodes, 4 shards, placement,
// ZooKeeper, a gateway): Debian's `etcdctl` 3.4 (`deno task setup --test` installs it), one
// subprocess per command, and the npm client `etcd3`.
//
// With etcdctl: put and get of one key; `get --prefix` returns exactly the keys under the prefix,
// spread over every shard, in key order (neighbours just outside it stay out); `--keys-only`;
// `--limit 2` says `more` and counts the whole range; a missing key prints nothing and exits 0;
// `--sort-by=VALUE` (order NONE, as etcdctl sends it) sorts by value before the limit, and
// `--sort-by=MODIFY` keeps key order (every revision is 1); on a prefix of 32 MiB, more than a
// Range may hold while it reads (4 answers of 8 MiB less 64 KiB), `--limit 1` answers the first
// key (and with `--order=DESCEND` the last) with the whole count, while the whole prefix, and
// sorting it by value, are RESOURCE_EXHAUSTED saying why;
// `del` of one key (1, then 0 deleted), `del --prefix --prev-kv` returns every pair it deleted and
// they are gone; `put --prev-kv` returns the value it replaced. `txn`: a value compare that holds
// runs the success branch (its put is visible afterwards), one that does not runs the failure
// branch and changes nothing, `create("k") = "0"` creates only when the key is absent. Refusals,
// each with its gRPC status and a message that says why, and nothing changed: a txn on keys of two
// shards (FAILED_PRECONDITION naming both shards), `lease grant`, `get --rev`, a `mod` compare
// against a revision UNIMPLEMENTED; a txn that puts one key twice, and `compaction 2` (past the
// current revision, 1), with etcd's own error; a `--limit` of 2^53 INVALID_ARGUMENT (2^53 - 1
// works); `watch --rev=5` and `watch --prev-kv`, which the server refuses as etcd refuses a watch
// (created and canceled, with the reason: etcdctl exits 5). `endpoint status` and `member list`
// show the gateway as a member, with one id in both and a client URL etcdctl dials: `endpoint
// status --cluster` and `endpoint health --cluster` reach it. Limits, at the limit and one past
// it: a key of exactly 4,096 bytes reads back whole and one of 4,097 is INVALID_ARGUMENT and writes
// nothing; a value of exactly 1 MiB (the dev cluster's `storage.value_bytes_max`), put through
// etcdctl's stdin, reads back byte for byte, and one byte more is INVALID_ARGUMENT and leaves the
// old value as it was.
//
// With etcd3: put, get, prefix reads and counts, deleting a prefix, if-then-else and
// create-if-absent transactions, a lease grant refused (GRPCNotImplementedError); a watch of the
// prefix "js/" receives the puts and deletes of keys in every shard made after create() resolved
// (a delete of a whole prefix too), with keys and values, none of the keys beside the prefix, and
// cancel() ends it.
//
// Watches with etcdctl (`etcdctl watch` runs in the background; it prints nothing when it starts,
// so the test puts numbered markers until it prints one, then writes, waits (bounded) until the
// last change is printed and stops it): `watch KEY` prints exactly, in order and in etcdctl's
// simple format, the puts and deletes of KEY made after it started (not the put before it, not a
// longer or shorter key or another key of its shard, not a delete of a missing key);
// `watch --prefix P` prints every put and delete under P made after it started, in every shard
// (each key's in order; a Txn's two puts; a `del --prefix`), none beside it; `watch KEY` keeps
// printing while its shard's leadership moves to another kvnode (`tinykv transfer-leader`, leaders
// kept balanced so placement leaves them be): every put made before, during and after the
// transfer, numbered, is printed exactly once and in order.
//
// Payloads are deterministic pseudo-random printable bytes (etcdctl takes keys on its command
// line). Every etcdctl run is bounded (its --command-timeout, and a kill after 30 s; a watch is
// killed after 90 s), and so is every wait. The cluster's ports avoid the dev defaults and the
// ranges other tests use. Afterwards every process of the cluster is still alive, and the cluster
// stops cleanly.
import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import { Etcd3, GRPCNotImplementedError, type IKeyValue } from "etcd3";
import { type ClusterStateResponse, PlacementService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, unaryCaller } from "@tinykv/rpc";
import { keysInEveryShard as keysInEachShard, shardOfKey } from "./_harness/shards.ts";
import { waitFor } from "@tinykv/zk/testing";
import { patternBytes } from "./_harness/bytes.ts";
import { runCli } from "./_harness/cli.ts";
import {
  devArgs,
  devPortsAvoiding,
  killDev,
  liveProcesses,
  type RunningDev,
  runUntilServing,
  stopDev,
} from "./_harness/dev_cluster.ts";

// The contract (docs/design.md "Limits and bad input"), restated on purpose.
/** The longest key (KEY_BYTES_MAX in libs/shard). */
const KEY_MAX = 4096;
/** The largest value: the dev cluster's default `storage.value_bytes_max`. */
const VALUE_MAX = 1024 * 1024;

const SHARDS = 4;
const ETCDCTL = "/usr/bin/etcdctl";
/** How long one etcdctl command may take before it is killed. */
const ETCDCTL_KILL_MS = 30_000;
/** How long an `etcdctl watch` may run before it is killed. */
const WATCH_KILL_MS = 90_000;

/** What one etcdctl command printed, and how it exited. */
interface EtcdctlRun {
  readonly args: readonly string[];
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A pair as etcdctl's JSON output carries it (base64), decoded. */
interface Pair {
  readonly key: string;
  readonly value: Uint8Array;
  readonly hasValue: boolean;
}

/** A `RangeResponse` as `etcdctl get -w json` prints it, its pairs decoded. */
interface RangeAnswer {
  readonly kvs: Pair[];
  readonly count: number;
  readonly more: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function pairOf(kv: { key: string; value?: string }): Pair {
  return {
    key: decoder.decode(fromBase64(kv.key)),
    value: fromBase64(kv.value ?? ""),
    hasValue: kv.value !== undefined,
  };
}

/** `length` pseudo-random bytes from `alphabet` (patternBytes, mapped onto it). */
function printable(length: number, seed: number, alphabet: string): Uint8Array {
  const codes = encoder.encode(alphabet);
  return patternBytes(length, seed).map((byte) => codes[byte % codes.length]);
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/** Every printable ASCII character, and newlines. */
const TEXT = ALNUM + " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\n";

/** The shard a key is in on a fresh cluster of {@linkcode SHARDS} shards. */
function shardOf(key: string): number {
  return shardOfKey(key, SHARDS);
}

/** `perShard` keys `<prefix>item-<i>` in each shard, the first ones found, in key order. */
function keysInEveryShard(prefix: string, perShard: number): string[] {
  return keysInEachShard(SHARDS, perShard, (i) => `${prefix}item-${i}`);
}

/** Runs etcdctl against `endpoint`, with `stdin` fed to it when given. */
async function etcdctl(
  endpoint: string,
  args: readonly string[],
  stdin?: string | Uint8Array,
): Promise<EtcdctlRun> {
  const child = new Deno.Command(ETCDCTL, {
    args: [`--endpoints=${endpoint}`, "--dial-timeout=5s", "--command-timeout=15s", ...args],
    env: { ETCDCTL_API: "3" },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(ETCDCTL_KILL_MS),
  }).spawn();
  const output = child.output();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(typeof stdin === "string" ? encoder.encode(stdin) : stdin);
    await writer.close();
  }
  const { code, signal, stdout, stderr } = await output;
  assert.equal(signal, null, `etcdctl ${args.join(" ")} was killed after ${ETCDCTL_KILL_MS} ms`);
  return { args, code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** A short summary of a run for assertion messages (long arguments and output cut). */
function describe(run: EtcdctlRun): string {
  const cut = (text: string) => (text.length > 600 ? `${text.slice(0, 600)}…` : text);
  const args = run.args.map((arg) => (arg.length > 80 ? `<${arg.length} bytes>` : arg));
  return `etcdctl ${args.join(" ")}: exit ${run.code}\nstdout: ${cut(run.stdout)}\n` +
    `stderr: ${cut(run.stderr)}`;
}

/** The run exited 0; its stdout. */
function ok(run: EtcdctlRun): string {
  assert.equal(run.code, 0, `expected exit 0:\n${describe(run)}`);
  return run.stdout;
}

/** The run exited 0 and printed JSON (`-w json`); that JSON. */
// deno-lint-ignore no-explicit-any
function json(run: EtcdctlRun): any {
  return JSON.parse(ok(run));
}

/**
 * The run failed with gRPC status `code` (as etcdctl prints it, `rpc error: code = Unimplemented
 * desc = ...`); its message, which must match every one of `why`.
 */
function refused(run: EtcdctlRun, code: string, why: readonly RegExp[]): string {
  assert.notEqual(run.code, 0, `expected a refusal (${code}), got exit 0:\n${describe(run)}`);
  const match = /^Error: .*?rpc error: code = (\w+) desc = (.*?)\)?$/m.exec(run.stderr);
  assert.ok(match !== null, `expected "Error: rpc error: code = ${code}":\n${describe(run)}`);
  assert.equal(match[1], code, `expected status ${code}:\n${describe(run)}`);
  for (const pattern of why) {
    assert.match(match[2], pattern, `the message of ${code} says why:\n${describe(run)}`);
  }
  return match[2];
}

/** A change as `etcdctl watch` prints it (simple output: a type, a key and a value line). */
interface Printed {
  readonly type: "PUT" | "DELETE";
  readonly key: string;
  readonly value: string;
}

/** `etcdctl watch`'s simple output of `changes`. */
function printedText(changes: readonly Printed[]): string {
  return changes.map((change) => `${change.type}\n${change.key}\n${change.value}\n`).join("");
}

/** `etcdctl watch ARGS` running in the background, its output collected as it comes. */
class EtcdctlWatch {
  readonly args: readonly string[];
  stdout = "";
  stderr = "";
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<unknown>;

  constructor(endpoint: string, args: readonly string[]) {
    this.args = ["watch", ...args];
    this.#child = new Deno.Command(ETCDCTL, {
      args: [`--endpoints=${endpoint}`, "--dial-timeout=5s", ...this.args],
      env: { ETCDCTL_API: "3" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(WATCH_KILL_MS),
    }).spawn();
    const collect = async (from: ReadableStream<Uint8Array>, into: "stdout" | "stderr") => {
      for await (const text of from.pipeThrough(new TextDecoderStream())) this[into] += text;
    };
    this.#reading = Promise.all([
      collect(this.#child.stdout, "stdout"),
      collect(this.#child.stderr, "stderr"),
    ]);
  }

  /** The changes printed so far (whole ones: a value line ended). */
  printed(): Printed[] {
    const lines = this.stdout.split("\n");
    const changes: Printed[] = [];
    for (let i = 0; i + 3 < lines.length; i += 3) {
      const type = lines[i];
      assert.ok(type === "PUT" || type === "DELETE", `a change's type, line ${i}:\n${this.stdout}`);
      changes.push({ type, key: lines[i + 1], value: lines[i + 2] });
    }
    return changes;
  }

  /** Whether `check` holds of the changes printed within `timeoutMs` (polled). */
  async seen(check: (printed: Printed[]) => boolean, timeoutMs: number): Promise<boolean> {
    return await waitFor(() => check(this.printed()), { timeoutMs }).then(() => true, () => false);
  }

  /** Waits (bounded) until `check` holds of the changes printed. */
  async until(check: (printed: Printed[]) => boolean, what: string): Promise<void> {
    if (await this.seen(check, 20_000)) return;
    throw new Error(
      `etcdctl ${this.args.join(" ")} printed no ${what} within 20 s:\n` +
        `stdout: ${this.stdout}\nstderr: ${this.stderr}`,
    );
  }

  /** Stops it (SIGTERM) unless it exited by itself; how it ran. */
  async stop(): Promise<EtcdctlRun> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // It exited by itself.
    }
    const { code } = await this.#child.status;
    await this.#reading;
    return { args: this.args, code, stdout: this.stdout, stderr: this.stderr };
  }
}

/**
 * Puts `key` = `start-N` (N = 0, 1, …) until `watch` prints it: the watch is then live (etcdctl
 * prints nothing when it starts). Returns N. Every marker put after the watch started is printed:
 * `start-K` to `start-N`, see {@linkcode afterMarkers}.
 */
async function startMarkers(
  watch: EtcdctlWatch,
  ctl: (...args: string[]) => Promise<EtcdctlRun>,
  key: string,
): Promise<number> {
  for (let n = 0; n < 30; n++) {
    ok(await ctl("put", key, `start-${n}`));
    const printed = (changes: Printed[]) =>
      changes.some((change) => change.key === key && change.value === `start-${n}`);
    if (await watch.seen(printed, 1000)) return n;
  }
  throw new Error(
    `etcdctl ${watch.args.join(" ")} printed none of 30 markers:\n` +
      `stdout: ${watch.stdout}\nstderr: ${watch.stderr}`,
  );
}

/**
 * The changes printed after the markers of `key` (all first, in order, `start-K` to `start-last`
 * with nothing missing).
 */
function afterMarkers(printed: readonly Printed[], key: string, last: number): Printed[] {
  const isMarker = (change: Printed) => change.key === key && /^start-\d+$/.test(change.value);
  const count = printed.findIndex((change) => !isMarker(change));
  const markers = count === -1 ? printed : printed.slice(0, count);
  const first = last - markers.length + 1;
  assert.ok(first >= 0, `markers: ${JSON.stringify(markers)}`);
  assert.deepEqual(
    markers,
    Array.from({ length: markers.length }, (_, i) => ({
      type: "PUT",
      key,
      value: `start-${first + i}`,
    })),
    "the markers put after the watch started, each once, in order",
  );
  const rest = printed.slice(markers.length);
  assert.ok(!rest.some(isMarker), `no marker after the others: ${JSON.stringify(rest)}`);
  return rest;
}

/** Each key's changes, in the order printed. */
function byKey(changes: readonly Printed[]): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const change of changes) {
    const list = keys.get(change.key) ?? [];
    list.push(change.type === "PUT" ? `PUT ${change.value}` : "DELETE");
    keys.set(change.key, list);
  }
  return keys;
}

/** Placement's view, through its admin API. */
async function clusterState(admin: string): Promise<ClusterStateResponse> {
  const client = createGrpcClient(PlacementService, admin, { maxMessageBytes: 4 * 1024 * 1024 });
  try {
    const answer = await unaryCaller(client, "ClusterState")({}, { deadlineMs: 5_000 });
    assert.equal(answer.kind, "ok", JSON.stringify(answer));
    return (answer as { response: ClusterStateResponse }).response;
  } finally {
    client.close();
  }
}

/** `promise`, or a failure naming `what` after `ms` milliseconds. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`No ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("etcd's v3 API on the gateway, through etcdctl 3.4 and the etcd3 client", async (t) => {
  const etcdctlInstalled = await Deno.stat(ETCDCTL).then(() => true, () => false);
  assert.ok(etcdctlInstalled, `${ETCDCTL} is missing: run deno task setup --test`);
  const root = await Deno.makeTempDir({ prefix: "tinykv-etcd-" });
  const dir = `${root}/dev`;
  const ports = devPortsAvoiding();
  const endpoint = `127.0.0.1:${ports.gateway}`;
  const admin = `127.0.0.1:${ports.admin}`;
  let running: RunningDev | undefined;
  const ctl = (...args: string[]) => etcdctl(endpoint, args);
  /** `etcdctl get ARGS -w json`, decoded. */
  const get = async (...args: string[]): Promise<RangeAnswer> => {
    const answer = json(await ctl("get", ...args, "-w", "json"));
    return {
      kvs: (answer.kvs ?? []).map(pairOf),
      count: answer.count ?? 0,
      more: answer.more ?? false,
    };
  };
  /** The value of `key` as text, or undefined when it is absent. */
  const valueOf = async (key: string): Promise<string | undefined> => {
    const { kvs } = await get(key);
    assert.ok(kvs.length <= 1, `one key read back at most: ${kvs.length}`);
    return kvs.length === 0 ? undefined : decoder.decode(kvs[0].value);
  };
  try {
    running = await runUntilServing(["--fresh", "--no-restart", ...devArgs(dir, ports, SHARDS)]);

    await t.step("etcdctl: put, get, prefix, keys only, limit, a missing key", async () => {
      assert.equal(ok(await ctl("put", "hello", "world")), "OK\n");
      assert.equal(ok(await ctl("get", "hello")), "hello\nworld\n");
      assert.equal(ok(await ctl("get", "hello", "--print-value-only")), "world\n");

      // Keys in every shard under the prefix, and neighbours on each side that are not under it.
      const keys = keysInEveryShard("ctl/p/", 2);
      assert.equal(new Set(keys.map(shardOf)).size, SHARDS, `keys in every shard: ${keys}`);
      for (const key of [...keys, "ctl/p", "ctl/p.", "ctl/p0"]) {
        ok(await ctl("put", key, `v:${key}`));
      }
      const all = await get("--prefix", "ctl/p/");
      assert.deepEqual(all.kvs.map((kv) => kv.key), keys, "exactly the prefix's keys, in order");
      for (const kv of all.kvs) assert.equal(decoder.decode(kv.value), `v:${kv.key}`);
      assert.equal(all.count, keys.length);
      assert.equal(all.more, false);
      // The simple output: key, value, key, value...
      assert.equal(
        ok(await ctl("get", "--prefix", "ctl/p/")),
        keys.map((key) => `${key}\nv:${key}\n`).join(""),
      );

      const keysOnly = await get("--prefix", "ctl/p/", "--keys-only");
      assert.deepEqual(keysOnly.kvs.map((kv) => kv.key), keys);
      assert.ok(
        keysOnly.kvs.every((kv) => !kv.hasValue),
        `--keys-only returns no values: ${JSON.stringify(keysOnly.kvs)}`,
      );

      const limited = await get("--prefix", "ctl/p/", "--limit", "2");
      assert.deepEqual(limited.kvs.map((kv) => kv.key), keys.slice(0, 2));
      assert.equal(limited.more, true, "more keys than the limit: more is true");
      assert.equal(limited.count, keys.length, "count is the whole range's");

      const missing = await ctl("get", "ctl/missing");
      assert.equal(ok(missing), "", `a missing key prints nothing:\n${describe(missing)}`);
      assert.deepEqual(await get("ctl/missing"), { kvs: [], count: 0, more: false });
    });

    await t.step(
      "etcdctl: get --sort-by=VALUE sorts before the limit, --sort-by=MODIFY keeps key order",
      async () => {
        // Keys in every shard, their values in another order than the keys (the key's number,
        // counting down), two of them equal.
        const keys = keysInEveryShard("ctl/s/", 2);
        const valueOf = (i: number) =>
          `value-${String(Math.max(keys.length - i, 2)).padStart(2, "0")}`;
        for (const [i, key] of keys.entries()) ok(await ctl("put", key, valueOf(i)));
        const pairs = (answer: RangeAnswer) =>
          answer.kvs.map((kv) => `${kv.key}=${decoder.decode(kv.value)}`);
        const byValue = keys.map((key, i) => ({ key, value: valueOf(i) }))
          .sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : a.key < b.key ? -1 : 1))
          .map(({ key, value }) => `${key}=${value}`);
        assert.notDeepEqual(byValue.map((pair) => pair.split("=")[0]), keys, "not key order");

        const ascending = await get("--prefix", "ctl/s/", "--sort-by=VALUE");
        assert.deepEqual(
          pairs(ascending),
          byValue,
          "ascending by value, equal values in key order",
        );
        const descending = await get("--prefix", "ctl/s/", "--sort-by=VALUE", "--order=DESCEND");
        assert.deepEqual(
          descending.kvs.map((kv) => decoder.decode(kv.value)),
          byValue.map((pair) => pair.split("=")[1]).reverse(),
        );
        const limited = await get("--prefix", "ctl/s/", "--sort-by=VALUE", "--limit", "2");
        assert.deepEqual(pairs(limited), byValue.slice(0, 2), "the smallest values, whatever key");
        assert.deepEqual([limited.count, limited.more], [keys.length, true]);

        for (const order of ["ASCEND", "DESCEND"]) {
          const modified = await get("--prefix", "ctl/s/", "--sort-by=MODIFY", `--order=${order}`);
          assert.deepEqual(
            modified.kvs.map((kv) => kv.key),
            keys,
            `every revision is 1 (${order})`,
          );
        }
      },
    );

    await t.step("etcdctl: del of one key, del --prefix --prev-kv, put --prev-kv", async () => {
      ok(await ctl("put", "ctl/d/one", "1"));
      assert.equal(json(await ctl("del", "ctl/d/one", "-w", "json")).deleted, 1);
      // etcdctl's JSON leaves out a deleted count of 0.
      assert.equal(json(await ctl("del", "ctl/d/one", "-w", "json")).deleted ?? 0, 0);
      assert.equal(ok(await ctl("del", "ctl/d/one")), "0\n");
      assert.equal(await valueOf("ctl/d/one"), undefined);

      const keys = keysInEveryShard("ctl/d/many/", 2);
      for (const key of keys) ok(await ctl("put", key, `gone:${key}`));
      ok(await ctl("put", "ctl/d/manz", "stays"));
      const deleted = json(await ctl("del", "--prefix", "--prev-kv", "ctl/d/many/", "-w", "json"));
      assert.equal(deleted.deleted, keys.length);
      const prev = (deleted.prev_kvs ?? []).map(pairOf)
        .map((kv: Pair) => [kv.key, decoder.decode(kv.value)])
        .sort();
      assert.deepEqual(prev, keys.map((key) => [key, `gone:${key}`]), "every deleted pair");
      assert.deepEqual(await get("--prefix", "ctl/d/many/"), { kvs: [], count: 0, more: false });
      assert.equal(await valueOf("ctl/d/manz"), "stays", "a key outside the prefix stays");

      // put --prev-kv: nothing before the first put, then the value it replaced.
      assert.equal(ok(await ctl("put", "--prev-kv", "ctl/prev", "first")), "OK\n");
      assert.equal(
        ok(await ctl("put", "--prev-kv", "ctl/prev", "second")),
        "OK\nctl/prev\nfirst\n",
      );
      const prevKv = json(await ctl("put", "--prev-kv", "ctl/prev", "third", "-w", "json")).prev_kv;
      assert.ok(prevKv !== undefined, "put --prev-kv -w json carries prev_kv");
      assert.deepEqual(pairOf(prevKv), {
        key: "ctl/prev",
        value: encoder.encode("second"),
        hasValue: true,
      });
      assert.equal(await valueOf("ctl/prev"), "third");
    });

    await t.step("etcdctl: txn on value and create compares", async () => {
      ok(await ctl("put", "ctl/t", "v1"));
      const holds = json(
        await etcdctl(
          endpoint,
          ["txn", "-w", "json"],
          'value("ctl/t") = "v1"\n\nput ctl/t v2\nget ctl/t\n\nput ctl/t failed\n\n',
        ),
      );
      assert.equal(holds.succeeded, true, `the compare holds: ${JSON.stringify(holds)}`);
      assert.equal(holds.responses.length, 2);
      assert.deepEqual(
        holds.responses[1].Response.ResponseRange.kvs.map(pairOf),
        [{ key: "ctl/t", value: encoder.encode("v2"), hasValue: true }],
        "the branch's get sees its put",
      );
      assert.equal(await valueOf("ctl/t"), "v2");

      const fails = await etcdctl(
        endpoint,
        ["txn"],
        'value("ctl/t") = "v1"\n\nput ctl/t v3\n\nget ctl/t\n\n',
      );
      assert.equal(ok(fails), "FAILURE\n\nctl/t\nv2\n", "the failure branch's get ran");
      assert.equal(await valueOf("ctl/t"), "v2", "a txn whose compare fails changes nothing");

      const script = (value: string) =>
        `create("ctl/c") = "0"\n\nput ctl/c ${value}\n\nget ctl/c\n\n`;
      assert.equal(ok(await etcdctl(endpoint, ["txn"], script("first"))), "SUCCESS\n\nOK\n");
      const again = json(await etcdctl(endpoint, ["txn", "-w", "json"], script("second")));
      // etcdctl's JSON leaves out succeeded when it is false.
      assert.equal(again.succeeded ?? false, false, `the key exists: ${JSON.stringify(again)}`);
      assert.equal(
        decoder.decode(pairOf(again.responses[0].Response.ResponseRange.kvs[0]).value),
        "first",
      );
      assert.equal(await valueOf("ctl/c"), "first", "created only when absent");

      // Keys that share a hash tag share a shard: one atomic Txn over several of them.
      ok(await ctl("put", "{cart}:count", "1"));
      const tagged = json(
        await etcdctl(
          endpoint,
          ["txn", "-w", "json"],
          'value("{cart}:count") = "1"\ncreate("{cart}:item") = "0"\n\n' +
            "put {cart}:count 2\nput {cart}:item apple\nget {cart}:item\n\n\n",
        ),
      );
      assert.equal(tagged.succeeded, true, JSON.stringify(tagged));
      assert.equal(
        decoder.decode(pairOf(tagged.responses[2].Response.ResponseRange.kvs[0]).value),
        "apple",
      );
      assert.equal(await valueOf("{cart}:count"), "2");
      assert.equal(await valueOf("{cart}:item"), "apple");
      const stale = await etcdctl(
        endpoint,
        ["txn"],
        'value("{cart}:count") = "1"\n\nput {cart}:count 3\ndel {cart}:item\n\n\n',
      );
      assert.equal(ok(stale), "FAILURE\n", "the compare no longer holds");
      assert.equal(await valueOf("{cart}:item"), "apple", "neither write applied");
    });

    await t.step("etcdctl: refusals say why and change nothing", async () => {
      // A txn on keys of two shards: a compare that holds, and a put into another shard.
      const a = "ctl/x/a";
      const other = keysInEveryShard("ctl/x/", 1).find((key) => shardOf(key) !== shardOf(a))!;
      ok(await ctl("put", a, "x"));
      const spread = await etcdctl(
        endpoint,
        ["txn"],
        `value("${a}") = "x"\n\nput ${other} y\n\n\n`,
      );
      refused(spread, "FailedPrecondition", [
        new RegExp(`"${a}"`),
        new RegExp(`"${other}"`),
        new RegExp(`shard ${shardOf(a)}\\b`),
        new RegExp(`shard ${shardOf(other)}\\b`),
        /one shard/,
      ]);
      assert.equal(await valueOf(other), undefined, "the refused txn wrote nothing");
      assert.equal(await valueOf(a), "x");

      refused(await ctl("lease", "grant", "10"), "Unimplemented", [/no leases/]);
      refused(await ctl("get", "--rev=5", "ctl/t"), "Unimplemented", [/revision 5/, /history/]);

      const mod = await etcdctl(endpoint, ["txn"], 'mod("ctl/t") > "3"\n\nput ctl/t mod\n\n\n');
      refused(mod, "Unimplemented", [/"ctl\/t"/, /\b3\b/, /history/]);
      assert.equal(await valueOf("ctl/t"), "v2", "the refused txn changed nothing");

      // A watch from a past revision, or with previous values, is refused as etcd refuses a
      // watch (created and canceled at once, with the reason): etcdctl says why and exits 5 (its
      // ExitInterrupted).
      const refusals: [string[], RegExp][] = [
        [["--rev=5"], /it asks to start at revision 5, .*watch from now \(start_revision 0\)/],
        [["--prev-kv"], /TinyKV's watch events carry no previous value \(prev_kv\)/],
      ];
      for (const [args, why] of refusals) {
        const watch = await ctl("watch", ...args, "ctl/t");
        assert.equal(watch.code, 5, `watch is canceled:\n${describe(watch)}`);
        assert.match(
          watch.stderr,
          /^watch was canceled \(Watch on key "ctl\/t" refused: .*\)$/m,
          describe(watch),
        );
        assert.match(watch.stderr, why, describe(watch));
        assert.match(watch.stderr, /^Error: watch is canceled by the server$/m, describe(watch));
        assert.equal(watch.stdout, "", "no event");
      }

      // etcd's own errors, word for word, so that etcdctl (and clientv3) recognise them.
      const twice = await etcdctl(endpoint, ["txn"], "\nput ctl/dup a\nput ctl/dup b\n\n\n");
      assert.notEqual(twice.code, 0, describe(twice));
      assert.match(
        twice.stderr,
        /code = InvalidArgument desc = etcdserver: duplicate key given in txn request/,
        describe(twice),
      );
      assert.match(twice.stderr, /^Error: etcdserver: duplicate key given in txn request$/m);
      assert.equal(await valueOf("ctl/dup"), undefined, "the refused txn wrote nothing");
      assert.equal(ok(await ctl("compaction", "1")), "compacted revision 1\n");
      const future = await ctl("compaction", "2");
      assert.notEqual(future.code, 0, describe(future));
      assert.match(
        future.stderr,
        /^Error: etcdserver: mvcc: required revision is a future revision$/m,
        describe(future),
      );

      // A limit a number cannot hold exactly is refused, naming the field; one less is served.
      refused(
        await ctl("get", "--prefix", "ctl/p/", "--limit", String(2 ** 53)),
        "InvalidArgument",
        [
          /RangeRequest\.limit": 9007199254740992 is not a safe integer/,
        ],
      );
      const safe = await get("--prefix", "ctl/p/", "--limit", String(2 ** 53 - 1));
      assert.deepEqual([safe.kvs.length, safe.count, safe.more], [SHARDS * 2, SHARDS * 2, false]);
    });

    await t.step(
      "etcdctl: --user works while TinyKV's tokens are off; del --prefix of 3,000 keys",
      async () => {
        // etcd's clients first ask for a token; told that authentication is not enabled (etcd's
        // words), they go on without one, as against an etcd without auth.
        ok(await ctl("--user=root:secret", "put", "ctl/user", "u"));
        assert.equal(ok(await ctl("--user=root:secret", "get", "ctl/user")), "ctl/user\nu\n");

        // A range delete goes in Txns of one shard's keys: 3,000 keys in every shard, all gone.
        const client = new Etcd3({ hosts: endpoint });
        const many = Array.from({ length: 3000 }, (_, i) => `ctl/many/${i}`);
        try {
          for (let i = 0; i < many.length; i += 100) {
            await Promise.all(many.slice(i, i + 100).map((key) => client.put(key).value("v")));
          }
          await client.put("ctl/many0").value("outside");
        } finally {
          client.close();
        }
        assert.equal(new Set(many.map(shardOf)).size, SHARDS, "keys in every shard");
        assert.equal((await get("--prefix", "ctl/many/", "--limit", "1")).count, 3000);
        assert.equal(ok(await ctl("del", "--prefix", "ctl/many/")), "3000\n");
        assert.equal((await get("--prefix", "ctl/many/", "--limit", "1")).count, 0);
        assert.equal(await valueOf("ctl/many0"), "outside", "the key beside the prefix stays");
      },
    );

    await t.step("etcdctl: endpoint status --cluster, member list show the gateway", async () => {
      const [status] = json(await ctl("endpoint", "status", "-w", "json"));
      assert.equal(status.Endpoint, endpoint);
      const memberId = status.Status.header.member_id;
      assert.ok(Number.isSafeInteger(memberId) && memberId > 0, `member id ${memberId}`);
      assert.match(status.Status.version, /^3\.\d+\.\d+/, "an etcd API version");

      const list = json(await ctl("member", "list", "-w", "json"));
      assert.equal(list.header.member_id, memberId, "member list answers from the same member");
      const gateway = list.members.find((m: { ID: number }) => m.ID === memberId);
      assert.ok(gateway !== undefined, `the gateway is a member: ${JSON.stringify(list)}`);
      // No http:// scheme: etcdctl 3.4 would send it in the :authority, which the server refuses.
      assert.deepEqual(gateway.clientURLs, [endpoint]);
      assert.equal(list.header.cluster_id, status.Status.header.cluster_id, "one cluster id");

      // --cluster: etcdctl dials every member's client URL.
      const cluster = json(await ctl("endpoint", "status", "--cluster", "-w", "json"));
      assert.deepEqual(
        cluster.map((s: { Endpoint: string; Status: { header: { member_id: number } } }) => [
          s.Endpoint,
          s.Status.header.member_id,
        ]),
        [[endpoint, memberId]],
      );
      const health = json(await ctl("endpoint", "health", "--cluster", "-w", "json"));
      assert.deepEqual(
        health.map((h: { endpoint: string; health: boolean }) => [h.endpoint, h.health]),
        [[endpoint, true]],
      );
    });

    await t.step("limits: a key of 4096 bytes, a value of 1 MiB, and one byte more", async () => {
      // The etcd3 client reads back the bytes that etcdctl wrote.
      const client = new Etcd3({ hosts: endpoint });
      try {
        const key = "ctl/key/" + decoder.decode(printable(KEY_MAX - 8, 1, ALNUM));
        assert.equal(encoder.encode(key).length, KEY_MAX);
        assert.equal(ok(await ctl("put", key, "at the limit")), "OK\n");
        const read = await get(key);
        assert.equal(read.kvs.length, 1, "the 4096-byte key is found");
        assert.equal(read.kvs[0].key, key, "the 4096-byte key reads back whole");
        assert.equal(decoder.decode(read.kvs[0].value), "at the limit");
        assert.deepEqual(await client.getAll().prefix("ctl/key/").keys(), [key]);
        refused(await ctl("put", `${key}X`, "one past"), "InvalidArgument", [
          /"key" has 4097 bytes/,
          /maximum is 4096/,
        ]);
        const under = await get("--prefix", key, "--keys-only");
        assert.deepEqual(under.kvs.map((kv) => kv.key), [key], "the 4097-byte key was not written");

        // Values go through stdin: one argument may have at most 128 KiB.
        const value = printable(VALUE_MAX, 2, TEXT);
        assert.equal(ok(await etcdctl(endpoint, ["put", "ctl/big"], value)), "OK\n");
        const stored = await client.get("ctl/big").buffer();
        assert.ok(
          stored !== null && equalBytes(stored, value),
          `the 1 MiB value reads back byte for byte (read ${stored?.length} bytes)`,
        );
        const [pair] = (await get("ctl/big")).kvs;
        assert.ok(equalBytes(pair.value, value), "etcdctl -w json reads the same bytes");
        const printed = ok(await ctl("get", "ctl/big", "--print-value-only"));
        assert.ok(
          printed === `${decoder.decode(value)}\n`,
          "--print-value-only: the value, a newline",
        );

        const over = printable(VALUE_MAX + 1, 3, TEXT);
        refused(await etcdctl(endpoint, ["put", "ctl/big"], over), "InvalidArgument", [
          /"value" has 1048577 bytes/,
          /maximum is 1048576/,
        ]);
        const after = await client.get("ctl/big").buffer();
        assert.ok(
          after !== null && equalBytes(after, value),
          `the refused put left the old value as it was (read ${after?.length} bytes)`,
        );

        // A prefix delete whose previous values would not fit in one answer (the dev cluster's
        // rpc_server.max_message_bytes is 8 MiB) is refused before anything is deleted.
        const bigKeys = Array.from({ length: 9 }, (_, i) => `ctl/bulk/${i}`);
        for (const key of bigKeys) await client.put(key).value(Buffer.from(value));
        refused(await ctl("del", "--prefix", "--prev-kv", "ctl/bulk/"), "ResourceExhausted", [
          /would return 9 keys/,
          /nothing was deleted/,
        ]);
        assert.equal(await client.getAll().prefix("ctl/bulk/").count(), 9, "nothing deleted");
        assert.equal(ok(await ctl("del", "--prefix", "ctl/bulk/")), "9\n", "without prev_kv");

        // 32 values of 1 MiB: 33,555,520 bytes with keys and framing, past the 33,292,288 a
        // Range may hold while it reads (4 × (8 MiB - 64 KiB)). A limit keeps the first (or
        // last) values only, and counts the rest.
        const huge = Array.from({ length: 32 }, (_, i) => `ctl/huge/${String(i).padStart(2, "0")}`);
        for (const key of huge) await client.put(key).value(Buffer.from(value));
        const first = await get("--prefix", "ctl/huge/", "--limit", "1");
        assert.deepEqual(first.kvs.map((kv) => kv.key), [huge[0]]);
        assert.ok(equalBytes(first.kvs[0].value, value), "the first value, whole");
        assert.deepEqual([first.count, first.more], [32, true]);
        const last = await get("--prefix", "ctl/huge/", "--limit", "1", "--order=DESCEND");
        assert.deepEqual([last.kvs.map((kv) => kv.key), last.count], [[huge[31]], 32]);
        assert.equal(await client.getAll().prefix("ctl/huge/").count(), 32);
        refused(await ctl("get", "--prefix", "ctl/huge/"), "ResourceExhausted", [
          /Range answer would hold at least 8 keys/,
          /rpc_server\.max_message_bytes/,
          /ask with a limit/,
        ]);
        refused(
          await ctl("get", "--prefix", "ctl/huge/", "--sort-by=VALUE", "--limit", "1"),
          "ResourceExhausted",
          [/Range would hold 32 keys/, /the most it may is 33292288 bytes/],
        );
        assert.equal(ok(await ctl("del", "--prefix", "ctl/huge/")), "32\n");
      } finally {
        client.close();
      }
    });

    await t.step("etcd3: put, get, prefix, delete, txn, lease refused", async () => {
      const client = new Etcd3({ hosts: endpoint });
      try {
        await client.put("js/one").value("1");
        assert.equal(await client.get("js/one").string(), "1");
        assert.equal(await client.get("js/missing").string(), null);

        const keys = keysInEveryShard("js/p/", 2);
        for (const key of keys) await client.put(key).value(`v:${key}`);
        await client.put("js/p0").value("outside");
        assert.deepEqual(
          await client.getAll().prefix("js/p/").strings(),
          Object.fromEntries(keys.map((key) => [key, `v:${key}`])),
        );
        assert.deepEqual(await client.getAll().prefix("js/p/").keys(), keys, "in key order");
        assert.equal(await client.getAll().prefix("js/p/").count(), keys.length);

        // If-then-else: the compare holds, then it does not.
        const holds = await client.if("js/one", "Value", "==", "1")
          .then(client.put("js/one").value("2"))
          .else(client.get("js/one"))
          .commit();
        assert.equal(holds.succeeded, true);
        assert.equal(await client.get("js/one").string(), "2");
        const fails = await client.if("js/one", "Value", "==", "1")
          .then(client.put("js/one").value("3"))
          .else(client.get("js/one"))
          .commit();
        assert.equal(fails.succeeded, false);
        assert.equal(fails.responses[0].response_range?.kvs[0].value.toString(), "2");
        assert.equal(await client.get("js/one").string(), "2", "the failed compare wrote nothing");

        // Create if absent.
        const create = (value: string) =>
          client.if("js/created", "Create", "==", 0)
            .then(client.put("js/created").value(value))
            .commit();
        assert.equal((await create("first")).succeeded, true);
        assert.equal((await create("second")).succeeded, false);
        assert.equal(await client.get("js/created").string(), "first");

        const deleted = await client.delete().prefix("js/p/");
        assert.equal(Number(deleted.deleted), keys.length);
        assert.equal(await client.getAll().prefix("js/p/").count(), 0);
        assert.equal(await client.get("js/p0").string(), "outside");
        assert.equal(Number((await client.delete().key("js/one")).deleted), 1);
        assert.equal(Number((await client.delete().key("js/one")).deleted), 0);

        const lease = client.lease(10);
        lease.on("lost", () => {}); // The grant's refusal is what is checked here.
        await assert.rejects(lease.grant(), (error: unknown) => {
          assert.ok(error instanceof GRPCNotImplementedError, `${error}`);
          assert.match(error.message, /no leases/);
          return true;
        });
      } finally {
        client.close();
      }
    });

    await t.step('etcd3: watch().prefix("js/").create() receives puts and deletes', async () => {
      const client = new Etcd3({ hosts: endpoint });
      try {
        await client.put("js/w/before").value("made before the watch");
        const watcher = await within(client.watch().prefix("js/").create(), 10_000, "create()");
        const seen: string[] = [];
        let revisions = "";
        const failures: unknown[] = [];
        watcher.on("put", (kv: IKeyValue) => {
          seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`);
          revisions = `${kv.create_revision}/${kv.mod_revision}/${kv.version}`;
        });
        watcher.on("delete", (kv: IKeyValue) => seen.push(`delete ${kv.key.toString()}`));
        watcher.on("error", (error: unknown) => failures.push(error));

        const keys = keysInEveryShard("js/w/", 1);
        const expected: string[] = [];
        for (const key of keys) {
          await client.put(key).value(`1:${key}`);
          expected.push(`put ${key}=1:${key}`);
        }
        for (const beside of ["js", "jt/w", "j"]) await client.put(beside).value("beside");
        await client.put(keys[0]).value("2");
        expected.push(`put ${keys[0]}=2`);
        assert.equal(Number((await client.delete().key(keys[1])).deleted), 1);
        expected.push(`delete ${keys[1]}`);
        // The rest of js/w/, the key made before the watch included.
        assert.equal(Number((await client.delete().prefix("js/w/")).deleted), keys.length);
        for (const key of ["js/w/before", keys[0], ...keys.slice(2)]) {
          expected.push(`delete ${key}`);
        }

        await waitFor(() => seen.length >= expected.length || failures.length > 0, {
          timeoutMs: 15_000,
          what: `${expected.length} events (seen: ${JSON.stringify(seen)})`,
        });
        assert.deepEqual(failures, []);
        // Events of different shards arrive in any order; each key's in the order made.
        const perKey = (events: string[]) => {
          const keyed = new Map<string, string[]>();
          for (const event of events) {
            const key = event.split(" ")[1].split("=")[0];
            keyed.set(key, [...keyed.get(key) ?? [], event]);
          }
          return Object.fromEntries([...keyed].sort());
        };
        assert.deepEqual(perKey(seen), perKey(expected), `every change once: ${seen}`);
        assert.equal(seen.length, expected.length);
        assert.equal(revisions, "1/1/1", "every revision is 1");
        await within(watcher.cancel(), 10_000, "cancel()");
      } finally {
        client.close();
      }
    });

    await t.step(
      "etcdctl watch KEY prints exactly the changes of KEY made after it started",
      async () => {
        const key = "ctl/w/key";
        const sameShard = keysInEveryShard("ctl/w/other-", 1).find((k) =>
          shardOf(k) === shardOf(key)
        )!;
        ok(await ctl("put", key, "before"));
        const watch = new EtcdctlWatch(endpoint, [key]);
        let last = -1;
        try {
          last = await startMarkers(watch, ctl, key);
          ok(await ctl("put", key, "one"));
          ok(await ctl("put", `${key}2`, "a longer key"));
          ok(await ctl("put", "ctl/w/ke", "a shorter key"));
          ok(await ctl("put", sameShard, "another key of its shard"));
          ok(await ctl("put", key, "two"));
          assert.equal(ok(await ctl("del", key)), "1\n");
          assert.equal(ok(await ctl("del", key)), "0\n", "a delete of a missing key");
          ok(await ctl("put", key, "three"));
          await watch.until(
            (printed) => printed.some((change) => change.value === "three"),
            "put of three",
          );
        } finally {
          await watch.stop();
        }
        const rest = afterMarkers(watch.printed(), key, last);
        const expected: Printed[] = [
          { type: "PUT", key, value: "one" },
          { type: "PUT", key, value: "two" },
          { type: "DELETE", key, value: "" },
          { type: "PUT", key, value: "three" },
        ];
        assert.deepEqual(rest, expected, watch.stdout);
        // Byte for byte, as etcdctl prints them.
        assert.ok(watch.stdout.endsWith(printedText(expected)), watch.stdout);
      },
    );

    await t.step(
      "etcdctl watch --prefix prints every change under it, in every shard",
      async () => {
        const prefix = "ctl/wp/";
        const keys = keysInEveryShard(prefix, 1);
        const marker = `${prefix}marker`;
        ok(await ctl("put", keys[0], "before"));
        const watch = new EtcdctlWatch(endpoint, ["--prefix", prefix]);
        const expected: Printed[] = [];
        const put = async (key: string, value: string) => {
          ok(await ctl("put", key, value));
          expected.push({ type: "PUT", key, value });
        };
        let last = -1;
        try {
          last = await startMarkers(watch, ctl, marker);
          for (const key of keys) await put(key, `1:${key}`);
          for (const beside of ["ctl/wp", "ctl/wp0", "ctl/wq/x", "ctl/w"]) {
            ok(await ctl("put", beside, "beside"));
          }
          await put(keys[1], "2");
          await put(keys[2], "2");
          assert.equal(ok(await ctl("del", keys[0])), "1\n");
          expected.push({ type: "DELETE", key: keys[0], value: "" });
          // A Txn's two puts (keys of one hash tag: one shard).
          const tagged = [`${prefix}{t}a`, `${prefix}{t}b`];
          const txn = await etcdctl(
            endpoint,
            ["txn"],
            `\nput ${tagged[0]} ta\nput ${tagged[1]} tb\n\n\n`,
          );
          assert.equal(ok(txn), "SUCCESS\n\nOK\n\nOK\n", describe(txn));
          expected.push({ type: "PUT", key: tagged[0], value: "ta" });
          expected.push({ type: "PUT", key: tagged[1], value: "tb" });
          // A prefix delete: one change per key.
          assert.equal(ok(await ctl("del", "--prefix", `${prefix}item-`)), "3\n");
          for (const key of keys.slice(1)) expected.push({ type: "DELETE", key, value: "" });
          await watch.until(
            (printed) =>
              printed.filter((change) => change.key !== marker).length >= expected.length,
            `${expected.length} changes`,
          );
        } finally {
          await watch.stop();
        }
        const rest = afterMarkers(watch.printed(), marker, last);
        assert.deepEqual(
          Object.fromEntries([...byKey(rest)].sort()),
          Object.fromEntries([...byKey(expected)].sort()),
          `each key's changes, once, in order:\n${watch.stdout}`,
        );
        assert.equal(rest.length, expected.length, "nothing else");
      },
    );

    await t.step(
      "etcdctl watch prints every put once, in order, across a leader transfer of its shard",
      async () => {
        // The shard of a node leading the most moves to a voter leading the fewest: leaders stay
        // balanced, so placement leaves them be.
        let state = await clusterState(admin);
        await waitFor(async () => {
          state = await clusterState(admin);
          return state.tasks.length === 0 && state.shards.length === SHARDS &&
            state.shards.every((s) => s.leader !== "" && s.voters.length === 3);
        }, { timeoutMs: 20_000, what: "every shard led, 3 voters each, no move in flight" });
        const leads = (node: string) => state.shards.filter((s) => s.leader === node).length;
        const shard = [...state.shards].sort((a, b) => leads(b.leader) - leads(a.leader))[0];
        const to = shard.voters.filter((v) => v !== shard.leader)
          .sort((a, b) => leads(a) - leads(b))[0];
        const key = keysInEveryShard("ctl/wl/", 1).find((k) => shardOf(k) === shard.shardId)!;
        const watch = new EtcdctlWatch(endpoint, [key]);
        const outcomes: { value: string; run: EtcdctlRun }[] = [];
        let last = -1;
        let writing = true;
        const acknowledged = () => outcomes.filter((o) => o.run.code === 0).length;
        try {
          last = await startMarkers(watch, ctl, key);
          const writer = (async () => {
            for (let i = 0; writing; i++) {
              outcomes.push({ value: `v-${i}`, run: await ctl("put", key, `v-${i}`) });
            }
          })();
          try {
            await waitFor(() => acknowledged() >= 10, {
              timeoutMs: 20_000,
              what: "10 puts before the transfer",
            });
            const transfer = await runCli([
              "--placement",
              admin,
              "transfer-leader",
              String(shard.shardId),
              "--to",
              to,
            ]);
            assert.equal(transfer.code, 0, JSON.stringify(transfer));
            assert.match(
              transfer.stdout,
              new RegExp(`^Started: leader of shard ${shard.shardId} moved to ${to}`),
            );
            await waitFor(async () => {
              const now = await clusterState(admin);
              return now.shards.find((s) => s.shardId === shard.shardId)?.leader === to;
            }, { timeoutMs: 20_000, what: `shard ${shard.shardId} led by ${to}` });
            const after = acknowledged();
            await waitFor(() => acknowledged() >= after + 10, {
              timeoutMs: 20_000,
              what: "10 puts after the transfer",
            });
          } finally {
            writing = false;
            await writer;
          }
          const lastValue = outcomes.findLast((o) => o.run.code === 0)!.value;
          await watch.until(
            (printed) => printed.some((change) => change.value === lastValue),
            `the last put (${lastValue})`,
          );
        } finally {
          await watch.stop();
        }
        const printed = afterMarkers(watch.printed(), key, last);
        // A put that failed UNAVAILABLE was not applied; one that failed DEADLINE_EXCEEDED may
        // have been (its outcome is unknown).
        const failed = outcomes.filter((o) => o.run.code !== 0);
        for (const { run } of failed) {
          assert.match(run.stderr, /code = (DeadlineExceeded|Unavailable)/, describe(run));
        }
        const unknown = failed.filter((o) => /code = DeadlineExceeded/.test(o.run.stderr));
        const values = printed.map((change) => {
          assert.deepEqual([change.type, change.key], ["PUT", key]);
          return change.value;
        });
        const numbers = values.map((value) => Number(value.slice(2)));
        assert.ok(
          numbers.every((n, i) => i === 0 || n > numbers[i - 1]),
          `each put once, in order: ${values}`,
        );
        const acked = outcomes.filter((o) => o.run.code === 0).map((o) => o.value);
        assert.deepEqual(
          values.filter((value) => acked.includes(value)),
          acked,
          "every acknowledged put printed",
        );
        const extra = values.filter((value) => !acked.includes(value));
        assert.ok(
          extra.every((value) => unknown.some((o) => o.value === value)),
          `only puts that were made: ${extra}`,
        );
        assert.ok(acked.length >= 20, `${acked.length} puts`);
      },
    );

    // No process of the cluster exited during the test.
    const live = new Set((await liveProcesses()).map((p) => p.pid));
    const gone = running.pids.filter((pid) => !live.has(pid));
    assert.deepEqual(gone, [], `every process of the cluster is alive:\n${running.dev.output()}`);
    assert.doesNotMatch(running.dev.output(), / exited \(pid /, "no process exited");
    await stopDev(running, dir);
    running = undefined;
  } finally {
    await killDev(running);
    await Deno.remove(root, { recursive: true });
  }
});

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
