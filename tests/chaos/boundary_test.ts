// Tests of the legal boundary probes of the fault test. An in-memory store that keeps the
// contract (keys to 4,096 bytes, values to 1 MiB, an append past the limit refused) passes every
// check; stores that break it one way each (a lost byte, an over-limit append accepted, a big
// value refused, a compare-and-swap that does not match) are reported wrong with a description;
// answers a fault explains (a timeout, UNAVAILABLE) leave a check unknown, never wrong.

import assert from "node:assert/strict";
import { type Bytes, bytes, type CasAction, type CasCondition, TinyKvError } from "@tinykv/client";
import type { RpcFailureKind } from "@tinykv/rpc";
import {
  BOUNDARY_KINDS,
  type BoundaryClient,
  boundaryKey,
  BoundaryReport,
  checkBoundary,
  KEY_BYTES_MAX,
  legalFailure,
  patternBytes,
  readDifference,
  VALUE_BYTES_MAX,
} from "./boundary.ts";

function failure(kind: RpcFailureKind, outcomeUnknown = false): TinyKvError {
  return new TinyKvError({ kind, message: `injected ${kind}` }, {
    outcomeUnknown,
    attempts: 1,
  });
}

/** A store that keeps the contract; each hook breaks one call for a test. */
class FakeStore implements BoundaryClient {
  readonly data = new Map<string, Uint8Array>();
  readonly deleted: string[] = [];
  hooks: {
    put?: (key: string, value: Uint8Array) => void;
    get?: (value: Uint8Array) => Uint8Array;
    appendLimit?: number;
    appendLength?: (length: number) => number;
    append?: (key: string, value: Uint8Array) => void;
    casSucceeds?: boolean;
  } = {};

  #check(key: Bytes, ...values: Uint8Array[]): string {
    const k = new TextDecoder().decode(bytes(key));
    if (bytes(key).length > KEY_BYTES_MAX) throw failure("invalidArgument");
    if (values.some((v) => v.length > VALUE_BYTES_MAX)) throw failure("invalidArgument");
    return k;
  }

  put(key: Bytes, value: Bytes): Promise<void> {
    const k = this.#check(key, bytes(value));
    this.hooks.put?.(k, bytes(value));
    this.data.set(k, bytes(value));
    return Promise.resolve();
  }

  get(key: Bytes) {
    const value = this.data.get(this.#check(key));
    if (value === undefined) return Promise.resolve({ found: false, value: new Uint8Array() });
    return Promise.resolve({ found: true, value: this.hooks.get?.(value) ?? value });
  }

  append(key: Bytes, value: Bytes): Promise<number> {
    const k = this.#check(key, bytes(value));
    this.hooks.append?.(k, bytes(value));
    const old = this.data.get(k) ?? new Uint8Array();
    if (old.length + bytes(value).length > (this.hooks.appendLimit ?? VALUE_BYTES_MAX)) {
      throw failure("invalidArgument");
    }
    const next = new Uint8Array(old.length + bytes(value).length);
    next.set(old);
    next.set(bytes(value), old.length);
    this.data.set(k, next);
    return Promise.resolve(this.hooks.appendLength?.(next.length) ?? next.length);
  }

  compareAndSwap(key: Bytes, condition: CasCondition, action: CasAction) {
    assert.ok("expected" in condition && "value" in action);
    const k = this.#check(key, bytes(condition.expected), bytes(action.value));
    const current = this.data.get(k);
    const matches = current !== undefined &&
      readDifference({ found: true, value: current }, bytes(condition.expected)) === undefined;
    const succeeded = this.hooks.casSucceeds ?? matches;
    if (succeeded) this.data.set(k, bytes(action.value));
    return Promise.resolve({
      succeeded,
      found: current !== undefined,
      current: current ?? new Uint8Array(),
    });
  }

  delete(key: Bytes): Promise<boolean> {
    const k = this.#check(key);
    this.deleted.push(k);
    return Promise.resolve(this.data.delete(k));
  }
}

async function run(store: FakeStore, kind: (typeof BOUNDARY_KINDS)[number], round = 7) {
  return await checkBoundary(store, { round, kind });
}

Deno.test("boundaryKey() is 4,096 bytes and distinct per round and kind", () => {
  const keys = new Set<string>();
  for (let round = 0; round < 50; round++) {
    for (const kind of BOUNDARY_KINDS) {
      const key = boundaryKey(round, kind);
      assert.equal(new TextEncoder().encode(key).length, KEY_BYTES_MAX);
      assert.ok(!key.includes("{"), "no hash tag: the keys spread over the shards");
      keys.add(key);
    }
  }
  assert.equal(keys.size, 150);
});

Deno.test("patternBytes() is deterministic, seed-dependent and never one byte repeated", () => {
  assert.deepEqual(patternBytes(64, 3), patternBytes(64, 3));
  assert.notDeepEqual(patternBytes(64, 3), patternBytes(64, 4));
  const big = patternBytes(VALUE_BYTES_MAX, 0);
  assert.equal(big.length, VALUE_BYTES_MAX);
  assert.ok(new Set(big).size > 200);
});

Deno.test("readDifference() says how a read differs, or nothing when it is exact", () => {
  const v = new Uint8Array([1, 2, 3]);
  const table: Array<[{ found: boolean; value: Uint8Array }, string | undefined]> = [
    [{ found: true, value: new Uint8Array([1, 2, 3]) }, undefined],
    [{ found: false, value: new Uint8Array() }, "no value (the key is absent)"],
    [{ found: true, value: new Uint8Array([1, 2]) }, "2 bytes (expected 3), a prefix or extension"],
    [
      { found: true, value: new Uint8Array([1, 2, 3, 4]) },
      "4 bytes (expected 3), a prefix or extension",
    ],
    [
      { found: true, value: new Uint8Array([1, 9, 3]) },
      "3 bytes (expected 3) differing first at byte 1 (9, expected 2)",
    ],
  ];
  for (const [got, expected] of table) assert.equal(readDifference(got, v), expected);
});

Deno.test("legalFailure() makes a fault's answers unknown and contract breaks wrong", () => {
  const table: Array<[RpcFailureKind, "unknown" | "wrong"]> = [
    ["unavailable", "unknown"],
    ["deadlineExceeded", "unknown"],
    ["resourceExhausted", "unknown"],
    ["failedPrecondition", "unknown"],
    ["cancelled", "unknown"],
    ["invalidArgument", "wrong"],
    ["internal", "wrong"],
    ["dataLoss", "wrong"],
  ];
  for (const [code, kind] of table) {
    assert.equal(legalFailure("the put", failure(code)).kind, kind, code);
  }
  const step = legalFailure("the put", failure("deadlineExceeded", true));
  assert.ok(step.kind === "unknown" && step.mayHaveApplied && step.code === "deadlineExceeded");
  assert.equal(legalFailure("the put", new Error("boom")).kind, "wrong");
});

Deno.test("checkBoundary() passes every kind on a store that keeps the contract", async () => {
  const store = new FakeStore();
  for (const kind of BOUNDARY_KINDS) {
    assert.deepEqual(await run(store, kind), { kind: "ok" }, kind);
  }
  assert.equal(store.data.size, 0, "every check deletes its key");
  assert.equal(store.deleted.length, 3);
});

Deno.test("checkBoundary() reports a read that lost a byte of an acknowledged put", async () => {
  const store = new FakeStore();
  store.hooks.get = (value) => value.subarray(0, value.length - 1);
  for (const kind of BOUNDARY_KINDS) {
    const outcome = await run(store, kind);
    assert.equal(outcome.kind, "wrong", kind);
    assert.match(outcome.kind === "wrong" ? outcome.why : "", /1048575 bytes \(expected 1048576\)/);
  }
});

Deno.test("checkBoundary() reports an append past the limit that was accepted", async () => {
  const store = new FakeStore();
  store.hooks.appendLimit = VALUE_BYTES_MAX + 1;
  const outcome = await run(store, "append-to-limit");
  assert.equal(outcome.kind, "wrong");
  assert.match(outcome.kind === "wrong" ? outcome.why : "", /was accepted \(length 1048577\)/);
});

Deno.test("checkBoundary() reports an append to the limit answering the wrong length", async () => {
  const store = new FakeStore();
  store.hooks.appendLength = (length) => length - 1;
  const outcome = await run(store, "append-to-limit");
  assert.equal(outcome.kind, "wrong");
  assert.match(outcome.kind === "wrong" ? outcome.why : "", /answered length 1048575/);
});

Deno.test("checkBoundary() reports INVALID_ARGUMENT on a legal 1 MiB request", async () => {
  const store = new FakeStore();
  store.hooks.put = (_key, value) => {
    if (value.length >= VALUE_BYTES_MAX - 1) throw failure("invalidArgument");
  };
  for (const kind of BOUNDARY_KINDS) {
    const outcome = await run(store, kind);
    assert.equal(outcome.kind, "wrong", kind);
    assert.match(outcome.kind === "wrong" ? outcome.why : "", /invalidArgument on a legal request/);
  }
});

Deno.test("checkBoundary() reports a compare-and-swap that does not match the value put", async () => {
  const store = new FakeStore();
  store.hooks.casSucceeds = false;
  const outcome = await run(store, "cas");
  assert.equal(outcome.kind, "wrong");
  assert.match(outcome.kind === "wrong" ? outcome.why : "", /did not succeed/);
});

Deno.test("checkBoundary() leaves a check unknown when a fault explains a failure", async () => {
  // A put that timed out without applying: the read finds nothing, which proves nothing.
  const store = new FakeStore();
  store.hooks.put = () => {
    throw failure("deadlineExceeded", true);
  };
  for (const kind of BOUNDARY_KINDS) {
    const outcome = await run(store, kind);
    assert.equal(outcome.kind, "unknown", kind);
    assert.equal(outcome.kind === "unknown" ? outcome.code : "", "deadlineExceeded");
  }
  // The append past the limit got UNAVAILABLE: unknown, and the value is still checked.
  const unavailable = new FakeStore();
  unavailable.hooks.append = (key) => {
    if (unavailable.data.get(key)?.length === VALUE_BYTES_MAX) throw failure("unavailable");
  };
  const outcome = await run(unavailable, "append-to-limit");
  assert.equal(outcome.kind, "unknown");
});

Deno.test("checkBoundary() reports a put that certainly failed yet shows", async () => {
  const store = new FakeStore();
  let first = true;
  store.hooks.put = (key, value) => {
    if (!first) return;
    first = false;
    store.data.set(key, value);
    throw failure("unavailable", false);
  };
  const outcome = await run(store, "put-get");
  assert.equal(outcome.kind, "wrong");
  assert.match(outcome.kind === "wrong" ? outcome.why : "", /certainly failed/);
});

Deno.test("BoundaryReport counts outcomes by kind and lists the wrong ones", () => {
  const report = new BoundaryReport();
  report.add("put-get", 0, { kind: "ok" });
  report.add("cas", 2, { kind: "ok" });
  report.add("cas", 5, { kind: "unknown", code: "deadlineExceeded", why: "timed out" });
  report.add("append-to-limit", 4, { kind: "wrong", why: "a byte too many" });
  assert.equal(report.okTotal, 2);
  assert.equal(report.unknownTotal, 1);
  assert.deepEqual(report.ok, { "put-get": 1, "append-to-limit": 0, "cas": 1 });
  assert.deepEqual([...report.unknownCodes], [["deadlineExceeded", 1]]);
  assert.deepEqual(report.wrong, ["legal boundary probe 4 (append-to-limit): a byte too many"]);
});
