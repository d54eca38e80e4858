// Checks how the driver loop takes failures, on a one-replica shard over a MemoryNodeStore that can
// be made to fail: a read whose serving throws is answered INTERNAL and the node serves on, unless
// what it throws is a broken invariant (AssertionError), which stops the node; a storage failure
// while applying a committed entry stops the loop (`Driver.failed` resolves with the error) rather
// than skipping the entry, and the entry is never recorded as applied; a failed loop still answers
// whenIdle() waiters; the observer sees each persisted Ready after its apply.
import assert from "node:assert/strict";
import type { Command } from "@tinykv/proto/tinykv/v1";
import { HASH_SPACE } from "@tinykv/shard";
import type { LogIndex, PeerId } from "@tinykv/raft";
import { Driver } from "./driver.ts";
import { KvApplication, type KvDriver, type KvDriverOptions } from "./kv_app.ts";
import { MemoryNodeStore } from "./memory_node_store.ts";
import type { ItemOutcome } from "./outcome.ts";
import { TEST_TUNING } from "./_test_cluster.ts";
import { AssertionError } from "./_assert.ts";
import { shardId as toShardId } from "@tinykv/shard";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A store whose reads or writes of keys ending in a marker throw, as a failing disk would. */
class FaultyStore extends MemoryNodeStore {
  failReadsOf: string | undefined;
  failWritesOf: string | undefined;
  /** Reads of keys ending in this break an invariant (AssertionError). */
  breakReadsOf: string | undefined;

  override get(key: Uint8Array): Uint8Array | undefined {
    if (this.failReadsOf !== undefined && dec(key).endsWith(this.failReadsOf)) {
      throw new Error("Input/output error (simulated)");
    }
    if (this.breakReadsOf !== undefined && dec(key).endsWith(this.breakReadsOf)) {
      throw new AssertionError("Broken invariant (simulated)");
    }
    return super.get(key);
  }

  override put(key: Uint8Array, value: Uint8Array): void {
    if (this.failWritesOf !== undefined && dec(key).endsWith(this.failWritesOf)) {
      throw new Error("MDB_MAP_FULL: Environment mapsize limit reached (simulated)");
    }
    super.put(key, value);
  }
}

function put(key: string, value: string): Command {
  const request = { key: enc(key), value: enc(value), clientId: "", seq: 0, ackSeq: 0 };
  return { stampMs: 0, valueBytesMax: 0, sessionTtlMs: 0, put: request };
}

/** A started driver leading shard 1 (one voter) on `store`. */
async function soloLeader(store: MemoryNodeStore, observer?: KvDriverOptions["observer"]) {
  const errors: string[] = [];
  const infos: Array<Record<string, unknown>> = [];
  const driver = new Driver({
    store,
    nodeId: "n1",
    tuning: TEST_TUNING,
    outbound: { send() {}, flush() {}, ping() {} },
    clock: { now: () => 1_700_000_000_000 },
    log: {
      info: (msg, fields) => infos.push({ msg, ...fields }),
      warn() {},
      error: (msg) => errors.push(msg),
    },
    seed: 1,
    app: new KvApplication(),
    observer,
  });
  assert.equal(driver.load().kind, "ok");
  driver.start();
  const peer = { peerId: 11, nodeId: "n1", address: "mem:n1" };
  const created = await driver.createReplica({
    shardId: toShardId(1),
    peerId: 11,
    range: { lo: 0, hi: HASH_SPACE },
    peers: [peer],
    initialConfState: { voters: [11 as PeerId], learners: [], epoch: 0 as LogIndex },
  });
  assert.equal(created.kind, "ok");
  assert.equal(await driver.campaign(toShardId(1)), true);
  await driver.whenIdle();
  assert.ok(driver.replicas()[0].isLeader());
  const submit = (op: Parameters<KvDriver["submit"]>[0]["op"]) =>
    driver.submit({ shardId: toShardId(1), confEpoch: 0, op, deadlineMs: 1_700_000_060_000 });
  return { driver, errors, infos, submit };
}

function getValue(outcome: ItemOutcome): string | undefined {
  assert.equal(outcome.kind, "ok", JSON.stringify(outcome));
  if (outcome.kind !== "ok" || outcome.result.kind !== "get") return assert.fail("not a get");
  return outcome.result.response.found ? dec(outcome.result.response.value) : undefined;
}

Deno.test("Driver answers a read that throws with INTERNAL and serves on", async () => {
  const store = new FaultyStore();
  const { driver, errors, submit } = await soloLeader(store);
  try {
    assert.equal((await submit({ kind: "mutation", command: put("good", "1") })).kind, "ok");
    store.failReadsOf = "poison";
    for (const serializable of [false, true]) {
      const outcome = await submit({ kind: "get", key: enc("poison"), serializable });
      assert.equal(outcome.kind, "internal", JSON.stringify(outcome));
      assert.match(JSON.stringify(outcome), /Input\/output error/);
    }
    assert.equal(errors.filter((e) => e === "Serving a read failed").length, 2);
    assert.equal((await submit({ kind: "mutation", command: put("after", "2") })).kind, "ok");
    assert.equal(
      getValue(await submit({ kind: "get", key: enc("good"), serializable: false })),
      "1",
    );
    assert.equal(
      getValue(await submit({ kind: "get", key: enc("after"), serializable: false })),
      "2",
    );
  } finally {
    await driver.stop();
  }
});

Deno.test("Driver stops on a broken invariant while serving a read, not answering INTERNAL", async () => {
  const store = new FaultyStore();
  const { driver, submit } = await soloLeader(store);
  try {
    store.breakReadsOf = "broken";
    const answer = submit({ kind: "get", key: enc("broken"), serializable: true });
    const error = await driver.failed;
    assert.equal(error.name, "AssertionError");
    await driver.stop();
    assert.equal((await answer).kind, "unavailable");
  } finally {
    await driver.stop();
  }
});

Deno.test("Driver stops on a storage failure while applying instead of skipping the entry", async () => {
  const store = new FaultyStore();
  const { driver, errors, submit } = await soloLeader(store);
  const applied = () => driver.replicas()[0].log.appliedState.applied;
  try {
    assert.equal((await submit({ kind: "mutation", command: put("before", "1") })).kind, "ok");
    const appliedBefore = applied();
    store.failWritesOf = "doomed";
    const answer = submit({ kind: "mutation", command: put("doomed", "x") });
    const error = await driver.failed;
    assert.match(error.message, /MDB_MAP_FULL/);
    assert.ok(errors.includes("Driver loop failed: stopping the node"));
    // Nothing of the failed turn was recorded: the entry is neither applied nor skipped.
    assert.equal(applied(), appliedBefore);
    await driver.stop();
    const outcome = await answer;
    assert.equal(outcome.kind, "unknown", JSON.stringify(outcome));
  } finally {
    await driver.stop();
  }
});

Deno.test("Driver answers whenIdle() waiters when its loop fails, instead of leaving them waiting", async () => {
  const store = new FaultyStore();
  const { driver, submit } = await soloLeader(store);
  try {
    store.failWritesOf = "doomed";
    const answer = submit({ kind: "mutation", command: put("doomed", "x") });
    // Asked before the failing turn ends: the waiter must be answered all the same.
    const idle = driver.whenIdle();
    await driver.failed;
    await idle;
    await driver.stop();
    assert.equal((await answer).kind, "unknown");
  } finally {
    await driver.stop();
  }
});

Deno.test("Driver shows its observer each persisted Ready with the applied index before it", async () => {
  const seen: Array<{ entries: number[]; committed: number[]; before: number; applied: number }> =
    [];
  const { driver, submit } = await soloLeader(new MemoryNodeStore(), {
    persisted: (replica, ready, before) =>
      seen.push({
        entries: ready.entries.map((e) => e.index),
        committed: ready.committedEntries.map((e) => e.index),
        before,
        applied: replica.log.appliedState.applied,
      }),
  });
  try {
    const start = seen.length;
    assert.ok(start > 0, "the election's Readies were observed");
    assert.equal((await submit({ kind: "mutation", command: put("k", "v") })).kind, "ok");
    const after = seen.slice(start);
    const persisted = after.flatMap((s) => s.entries);
    const applied = after.flatMap((s) => s.committed);
    assert.equal(persisted.length, 1);
    assert.deepEqual(applied, persisted);
    // Called after the apply: the replica's applied index already counts the Ready's entries.
    for (const s of after) {
      if (s.committed.length === 0) continue;
      assert.equal(s.committed[0], s.before + 1);
      assert.equal(s.applied, s.committed[s.committed.length - 1]);
    }
  } finally {
    await driver.stop();
  }
});

Deno.test("Driver logs each step of a traced request with its trace id, and nothing for others", async () => {
  const { driver, infos, submit } = await soloLeader(new MemoryNodeStore());
  try {
    const before = infos.length;
    const deadlineMs = 1_700_000_060_000;
    const traced = await driver.submit({
      shardId: toShardId(1),
      confEpoch: 0,
      op: { kind: "mutation", command: put("k", "v") },
      deadlineMs,
      traceId: "t-42",
    });
    assert.equal(traced.kind, "ok");
    const lines = infos.slice(before).filter((l) => l.trace === "t-42");
    assert.deepEqual(lines.map((l) => l.msg), [
      "Traced request arrived",
      "Traced request proposed",
      "Traced request answered",
    ]);
    assert.equal(lines[1].shard, 1);
    assert.ok(typeof lines[1].index === "number" && lines[1].index > 0);
    assert.equal(lines[2].outcome, "ok");
    const count = infos.length;
    assert.equal((await submit({ kind: "mutation", command: put("k", "w") })).kind, "ok");
    assert.equal(infos.slice(count).filter((l) => l.trace !== undefined).length, 0);
  } finally {
    await driver.stop();
  }
});

Deno.test("Driver answers a put of a one-voter group only after the sync of the turn that persisted it", async () => {
  // Syncs complete only when the test says so, once gated.
  let gated = false;
  const held: Array<() => void> = [];
  const store = new MemoryNodeStore({
    syncGate: (synced) => (gated ? held.push(synced) : queueMicrotask(synced)),
  });
  const { driver, submit } = await soloLeader(store);
  try {
    gated = true;
    let answered = false;
    const outcome = submit({ kind: "mutation", command: put("k", "v") }).then((o) => {
      answered = true;
      return o;
    });
    // The entry is persisted, committed (its only voter has it) and applied in one turn.
    for (let i = 0; i < 50 && held.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.equal(held.length, 1, "the turn that persists the put waits for its sync");
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setTimeout(resolve, 1));
    assert.equal(answered, false, "answered before its only copy was synced");
    gated = false;
    for (const synced of held.splice(0)) synced();
    assert.equal((await outcome).kind, "ok");
  } finally {
    gated = false;
    for (const synced of held.splice(0)) synced();
    await driver.stop();
  }
});
