// Checks KvStateMachine on in-memory spaces: each operation's semantics, keys outside the shard,
// exactly-once sessions (duplicates, many requests in flight out of order, ack_seq, expiry and
// tombstones, the results bound), scans, snapshots (serialize/restore) and data hashes; and Txn:
// its branches, compares, bounds and exactly-once answer.
import assert from "node:assert/strict";
import {
  type Command,
  type TxnCompare,
  TxnCompare_Result,
  TxnCompare_Target,
  TxnOp_Kind,
} from "@tinykv/proto/tinykv/v1";
import { HASH_SPACE, keyHash, VALUE_BYTES_MAX } from "@tinykv/shard";
import { MemoryKvSpace } from "./kv_space.ts";
import {
  type ApplyResult,
  HASH_SLICE_PAIRS,
  hashSpacesInSlices,
  KvStateMachine,
  LEGACY_VALUE_BYTES_MAX,
  SESSION_RESULTS_MAX,
  SESSION_SWEEP_INTERVAL_MS,
  SESSION_TTL_MS_DEFAULT,
} from "./state_machine.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const FULL = { lo: 0, hi: HASH_SPACE };
const NO_SESSION = { clientId: "", seq: 0, ackSeq: 0 };
/** What a leader stamps into every command: the default value limit, the default session TTL. */
const STAMPS = { valueBytesMax: VALUE_BYTES_MAX, sessionTtlMs: 0 };

function machine(
  range = FULL,
  sessionTtlMs?: number,
  bounds: { sessionResultBytesMax?: number; sessionsMax?: number } = {},
) {
  const spaces = {
    data: new MemoryKvSpace(),
    sessions: new MemoryKvSpace(),
    meta: new MemoryKvSpace(),
  };
  return { spaces, sm: new KvStateMachine(spaces, { range, sessionTtlMs, ...bounds }) };
}

type Session = { clientId: string; seq: number; ackSeq: number };

function put(key: string, value: string, session: Session = NO_SESSION, stampMs = 1): Command {
  return { ...STAMPS, stampMs, put: { key: enc(key), value: enc(value), ...session } };
}

function append(key: string, value: string, session: Session = NO_SESSION, stampMs = 1): Command {
  return { ...STAMPS, stampMs, append: { key: enc(key), value: enc(value), ...session } };
}

function cas(
  key: string,
  fields: Partial<NonNullable<Command["compareAndSwap"]>>,
  options: { stamps?: Partial<typeof STAMPS>; stampMs?: number } = {},
): Command {
  return {
    ...STAMPS,
    ...options.stamps,
    stampMs: options.stampMs ?? 1,
    compareAndSwap: {
      key: enc(key),
      expected: new Uint8Array(),
      expectAbsent: false,
      value: new Uint8Array(),
      delete: false,
      ...NO_SESSION,
      ...fields,
    },
  };
}

function okResult(result: ApplyResult) {
  assert.equal(result.kind, "ok", JSON.stringify(result));
  return result.kind === "ok" ? result : assert.fail();
}

Deno.test("KvStateMachine applies put, delete, append and reads them back", () => {
  const { sm } = machine();
  okResult(sm.apply(put("a", "1")));
  assert.equal(dec(sm.get(enc("a")).value), "1");
  const appended = okResult(sm.apply(append("a", "23")));
  assert.deepEqual(appended.result, { kind: "append", response: { length: 3 } });
  const created = okResult(sm.apply(append("b", "xy")));
  assert.deepEqual(created.result, { kind: "append", response: { length: 2 } });
  const deleted = okResult(
    sm.apply({ ...STAMPS, stampMs: 1, delete: { key: enc("a"), ...NO_SESSION } }),
  );
  assert.deepEqual(deleted.result, { kind: "delete", response: { deleted: true } });
  const again = okResult(
    sm.apply({ ...STAMPS, stampMs: 1, delete: { key: enc("a"), ...NO_SESSION } }),
  );
  assert.deepEqual(again.result, { kind: "delete", response: { deleted: false } });
  assert.equal(sm.get(enc("a")).found, false);
});

Deno.test("KvStateMachine compare-and-swap: match, mismatch, expect_absent and delete", () => {
  const { sm } = machine();
  const casK = (fields: Partial<NonNullable<Command["compareAndSwap"]>>) =>
    okResult(sm.apply(cas("k", fields))).result;
  assert.deepEqual(casK({ expectAbsent: true, value: enc("v1") }), {
    kind: "compareAndSwap",
    response: { succeeded: true, found: false, current: new Uint8Array() },
  });
  const mismatch = casK({ expectAbsent: true, value: enc("v2") });
  assert.equal(mismatch.kind === "compareAndSwap" && mismatch.response.succeeded, false);
  assert.equal(mismatch.kind === "compareAndSwap" && dec(mismatch.response.current), "v1");
  const wrong = casK({ expected: enc("nope"), value: enc("v2") });
  assert.equal(wrong.kind === "compareAndSwap" && wrong.response.succeeded, false);
  const swapped = casK({ expected: enc("v1"), value: enc("v2") });
  assert.equal(swapped.kind === "compareAndSwap" && swapped.response.succeeded, true);
  assert.equal(dec(sm.get(enc("k")).value), "v2");
  const removed = casK({ expected: enc("v2"), delete: true });
  assert.equal(removed.kind === "compareAndSwap" && removed.response.succeeded, true);
  assert.equal(sm.get(enc("k")).found, false);
});

Deno.test("KvStateMachine refuses keys outside its hash range and empty keys", () => {
  const hash = keyHash(enc("inside"));
  const { sm } = machine({ lo: hash, hi: hash + 1 });
  okResult(sm.apply(put("inside", "x")));
  const outside = sm.apply(put("outside", "x"));
  assert.equal(outside.kind, "invalid");
  assert.match(outside.kind === "invalid" ? outside.message : "", /outside this shard's range/);
  const empty = sm.apply(put("", "x"));
  assert.equal(empty.kind, "invalid");
});

Deno.test("KvStateMachine applies a duplicate (client_id, seq) once and answers it again", () => {
  const { sm } = machine();
  const session = { clientId: "c1", seq: 1, ackSeq: 0 };
  const first = okResult(sm.apply(append("k", "ab", session)));
  const retry = okResult(sm.apply(append("k", "ab", session)));
  assert.equal(first.duplicate, false);
  assert.equal(retry.duplicate, true);
  assert.deepEqual(retry.result, first.result);
  assert.equal(dec(sm.get(enc("k")).value), "ab");
});

Deno.test("KvStateMachine applies 200 in-flight seqs once each, retried out of order", () => {
  const { sm } = machine();
  const order: number[] = [];
  for (let seq = 200; seq >= 1; seq--) order.push(seq);
  for (let seq = 1; seq <= 200; seq += 3) order.push(seq); // retries, interleaved
  for (const seq of order) {
    okResult(sm.apply(append("log", `${seq},`, { clientId: "many", seq, ackSeq: 0 })));
  }
  const tokens = dec(sm.get(enc("log")).value).split(",").filter((t) => t !== "");
  assert.equal(tokens.length, 200);
  assert.equal(new Set(tokens).size, 200);
});

Deno.test("KvStateMachine forgets results at or below ack_seq and refuses those seqs", () => {
  const { sm } = machine();
  okResult(sm.apply(put("a", "1", { clientId: "c", seq: 1, ackSeq: 0 })));
  okResult(sm.apply(put("a", "2", { clientId: "c", seq: 2, ackSeq: 1 })));
  const old = sm.apply(put("a", "1", { clientId: "c", seq: 1, ackSeq: 0 }));
  assert.equal(old.kind, "invalid");
  assert.equal(dec(sm.get(enc("a")).value), "2");
  const bad = sm.apply(put("a", "3", { clientId: "c", seq: 3, ackSeq: 3 }));
  assert.equal(bad.kind, "invalid");
});

Deno.test("KvStateMachine expires idle sessions by replicated time, then forgets the tombstone", () => {
  const ttl = 1000;
  const { sm } = machine(FULL, ttl);
  okResult(sm.apply(put("a", "1", { clientId: "c", seq: 1, ackSeq: 0 }, 10_000)));
  // Within the TTL the session lives, and a retry is deduplicated.
  const retry = okResult(sm.apply(put("a", "1", { clientId: "c", seq: 1, ackSeq: 0 }, 10_900)));
  assert.equal(retry.duplicate, true);
  // Idle past the TTL: refused, never applied a second time.
  const late = sm.apply(put("a", "late", { clientId: "c", seq: 1, ackSeq: 0 }, 12_000));
  assert.equal(late.kind, "sessionExpired");
  assert.equal(dec(sm.get(enc("a")).value), "1");
  const stillRefused = sm.apply(put("a", "x", { clientId: "c", seq: 2, ackSeq: 1 }, 12_500));
  assert.equal(stillRefused.kind, "sessionExpired");
  // A TTL after the expiry, the client id may start afresh.
  okResult(sm.apply(put("a", "fresh", { clientId: "c", seq: 1, ackSeq: 0 }, 13_100)));
  assert.equal(dec(sm.get(enc("a")).value), "fresh");
});

Deno.test("KvStateMachine sweeps sessions of idle clients as replicated time passes", () => {
  const { sm, spaces } = machine();
  okResult(sm.apply(put("a", "1", { clientId: "gone", seq: 1, ackSeq: 0 }, 1)));
  assert.equal(spaces.sessions.size, 1, "the header is held until the flush");
  sm.flush();
  assert.equal(spaces.sessions.size, 2, "a header and one result");
  okResult(sm.apply(put("b", "1", NO_SESSION, 1 + SESSION_TTL_MS_DEFAULT + 61_000)));
  sm.flush();
  assert.equal(spaces.sessions.size, 1, "the idle session became a tombstone");
  okResult(sm.apply(put("b", "2", NO_SESSION, 1 + 2 * SESSION_TTL_MS_DEFAULT + 200_000)));
  sm.flush();
  assert.equal(spaces.sessions.size, 0, "the tombstone was swept");
  // The clock never goes backwards, whatever the stamps.
  okResult(sm.apply(put("b", "3", NO_SESSION, 5)));
  assert.equal(sm.clockMs, 1 + 2 * SESSION_TTL_MS_DEFAULT + 200_000);
});

Deno.test("KvStateMachine refuses a mutation past the session's results bound", () => {
  const { sm } = machine();
  for (let seq = 1; seq <= SESSION_RESULTS_MAX; seq++) {
    okResult(sm.apply(put("k", "v", { clientId: "greedy", seq, ackSeq: 0 })));
  }
  const refused = sm.apply(
    put("k", "v", { clientId: "greedy", seq: SESSION_RESULTS_MAX + 1, ackSeq: 0 }),
  );
  assert.equal(refused.kind, "resourceExhausted");
  okResult(
    sm.apply(put("k", "v", { clientId: "greedy", seq: SESSION_RESULTS_MAX + 1, ackSeq: 10 })),
  );
});

Deno.test("KvStateMachine.scan() pages in key order with limit and resume key", () => {
  const { sm } = machine();
  for (const key of ["d", "a", "c", "b", "e"]) okResult(sm.apply(put(key, key.toUpperCase())));
  const page = sm.scan({ start: enc("b"), end: new Uint8Array(), limit: 2 });
  assert.deepEqual(page.kvs.map((kv) => dec(kv.key)), ["b", "c"]);
  assert.equal(page.more, true);
  assert.equal(dec(page.next), "d");
  const rest = sm.scan({ start: page.next, end: enc("e"), limit: 10 });
  assert.deepEqual(rest.kvs.map((kv) => dec(kv.key)), ["d"]);
  assert.equal(rest.more, false);
  assert.equal(rest.next.length, 0);
});

Deno.test("KvStateMachine.scan() cuts an answer at about 1 MiB", () => {
  const { sm } = machine();
  const big = "x".repeat(300 * 1024);
  for (const key of ["a", "b", "c", "d", "e"]) okResult(sm.apply(put(key, big)));
  const page = sm.scan({ start: new Uint8Array(), end: new Uint8Array(), limit: 100 });
  assert.equal(page.kvs.length, 4);
  assert.equal(page.more, true);
  assert.equal(dec(page.next), "e");
});

Deno.test("KvStateMachine snapshots round-trip with equal hashes; bad input changes nothing", () => {
  const source = machine();
  okResult(source.sm.apply(put("a", "1", { clientId: "c", seq: 1, ackSeq: 0 }, 100)));
  okResult(source.sm.apply(append("b", "xyz", NO_SESSION, 200)));
  const bytes = source.sm.serialize();
  const target = machine();
  okResult(target.sm.apply(put("stale", "gone")));
  assert.deepEqual(target.sm.restore(bytes), { kind: "ok" });
  assert.equal(target.sm.dataHash(), source.sm.dataHash());
  assert.equal(target.sm.get(enc("stale")).found, false);
  // The restored session still deduplicates.
  const retry = okResult(target.sm.apply(put("a", "1", { clientId: "c", seq: 1, ackSeq: 0 }, 300)));
  assert.equal(retry.duplicate, true);

  const before = target.sm.dataHash();
  const broken = target.sm.restore(bytes.subarray(0, bytes.length - 1));
  assert.equal(broken.kind, "invalid");
  assert.equal(target.sm.dataHash(), before);
});

Deno.test("KvStateMachine gives the same hash for the same commands, another for others", () => {
  const one = machine();
  const two = machine();
  const commands = [
    put("x", "1"),
    append("x", "2"),
    put("y", "3", { clientId: "c", seq: 1, ackSeq: 0 }),
  ];
  for (const command of commands) {
    okResult(one.sm.apply(command));
    okResult(two.sm.apply(command));
  }
  assert.equal(one.sm.dataHash(), two.sm.dataHash());
  okResult(two.sm.apply(put("x", "different")));
  assert.notEqual(one.sm.dataHash(), two.sm.dataHash());
  assert.deepEqual(one.sm.dataSize(), { keys: 2, bytes: 1 + 2 + 1 + 1 });
});

Deno.test("KvStateMachine.dataSize() counters follow every kind of change and snapshots", () => {
  const { sm } = machine();
  const scanCount = () => {
    const page = sm.scan({ start: new Uint8Array(), end: new Uint8Array(), limit: 10_000 });
    const bytes = page.kvs.reduce((sum, kv) => sum + kv.key.length + kv.value.length, 0);
    return { keys: page.kvs.length, bytes };
  };
  okResult(sm.apply(put("a", "111")));
  okResult(sm.apply(put("a", "1")));
  okResult(sm.apply(append("b", "xy")));
  okResult(sm.apply(append("b", "z")));
  okResult(sm.apply(put("c", "gone")));
  okResult(sm.apply({ ...STAMPS, stampMs: 1, delete: { key: enc("c"), ...NO_SESSION } }));
  okResult(sm.apply({ ...STAMPS, stampMs: 1, delete: { key: enc("missing"), ...NO_SESSION } }));
  okResult(sm.apply({
    ...STAMPS,
    stampMs: 1,
    compareAndSwap: {
      key: enc("d"),
      expected: new Uint8Array(),
      expectAbsent: true,
      value: enc("new"),
      delete: false,
      ...NO_SESSION,
    },
  }));
  assert.deepEqual(sm.dataSize(), scanCount());
  assert.deepEqual(sm.dataSize(), { keys: 3, bytes: 2 + 4 + 4 });
  const copy = machine();
  copy.sm.restore(sm.serialize());
  assert.deepEqual(copy.sm.dataSize(), sm.dataSize());
});

Deno.test("KvStateMachine keeps its clock and counters in the meta space: a restore or clear replaces the ones it read", () => {
  const source = machine();
  okResult(source.sm.apply(put("s", "source", NO_SESSION, 5_000)));
  const target = machine();
  okResult(target.sm.apply(put("t1", "one", NO_SESSION, 100)));
  okResult(target.sm.apply(put("t2", "two", NO_SESSION, 200)));
  // Read before the restore, so the target has them in hand.
  assert.deepEqual(target.sm.dataSize(), { keys: 2, bytes: 2 + 3 + 2 + 3 });
  assert.equal(target.sm.clockMs, 200);
  // A machine over the same spaces reads what the first wrote (nothing kept only in memory).
  assert.deepEqual(new KvStateMachine(target.spaces, { range: FULL }).dataSize(), {
    keys: 2,
    bytes: 10,
  });
  assert.deepEqual(target.sm.restore(source.sm.serialize()), { kind: "ok" });
  assert.deepEqual(target.sm.dataSize(), { keys: 1, bytes: 1 + 6 });
  assert.equal(target.sm.clockMs, 5_000);
  okResult(target.sm.apply(put("u", "x", NO_SESSION, 10)));
  assert.deepEqual(target.sm.dataSize(), { keys: 2, bytes: 7 + 2 });
  assert.equal(target.sm.clockMs, 5_000, "the clock never steps back");
  target.sm.clearAll();
  assert.deepEqual(target.sm.dataSize(), { keys: 0, bytes: 0 });
  assert.equal(target.sm.clockMs, 0);
});

Deno.test("KvStateMachine appends up to the stamped value limit and refuses one byte more", () => {
  const { sm } = machine();
  const limit = { ...STAMPS, valueBytesMax: 10 };
  const appendTo = (value: string, session = NO_SESSION) => ({
    ...append("k", value, session),
    ...limit,
  });
  assert.deepEqual(okResult(sm.apply(appendTo("123456789"))).result, {
    kind: "append",
    response: { length: 9 },
  });
  assert.deepEqual(okResult(sm.apply(appendTo("0"))).result, {
    kind: "append",
    response: { length: 10 },
  });
  const over = sm.apply(appendTo("x"));
  assert.equal(over.kind, "invalid");
  assert.match(
    over.kind === "invalid" ? over.message : "",
    /Append would make the value 11 bytes long: the maximum is 10 \(storage\.value_bytes_max\); the value is unchanged \(10 bytes\)/,
  );
  assert.equal(dec(sm.get(enc("k")).value), "1234567890");
  // The refusal is remembered: a retry of the same seq gets it again, even once it would fit.
  const session = { clientId: "c", seq: 1, ackSeq: 0 };
  assert.equal(sm.apply(appendTo("y", session)).kind, "invalid");
  okResult(sm.apply({ ...STAMPS, stampMs: 1, delete: { key: enc("k"), ...NO_SESSION } }));
  const retried = sm.apply(appendTo("y", session));
  assert.equal(retried.kind, "invalid");
  assert.equal(sm.get(enc("k")).found, false);
});

Deno.test("KvStateMachine keeps the old answer of an Append past the bound in unstamped entries", () => {
  const { sm } = machine();
  okResult(sm.apply({ ...put("k", "x"), valueBytesMax: 0 }));
  const big = new Uint8Array(LEGACY_VALUE_BYTES_MAX).fill(1);
  const legacy = sm.apply({
    stampMs: 1,
    valueBytesMax: 0,
    sessionTtlMs: 0,
    append: { key: enc("k"), value: big, ...NO_SESSION },
  });
  assert.deepEqual(okResult(legacy).result, { kind: "append", response: { length: 1 } });
});

Deno.test("KvStateMachine checks every field against the stamped limit when it applies", () => {
  const { sm } = machine();
  const stamps = { valueBytesMax: 4 };
  okResult(sm.apply(cas("k", { expectAbsent: true, value: enc("1234") }, { stamps })));
  const expectedTooLong = sm.apply(
    cas("k", { expected: enc("12345"), value: enc("1") }, { stamps }),
  );
  assert.equal(expectedTooLong.kind, "invalid");
  assert.match(expectedTooLong.kind === "invalid" ? expectedTooLong.message : "", /"expected"/);
  const valueTooLong = sm.apply(
    cas("k", { expected: enc("1234"), value: enc("12345") }, { stamps }),
  );
  assert.equal(valueTooLong.kind, "invalid");
  assert.equal(dec(sm.get(enc("k")).value), "1234");
  const longKey = sm.apply({
    ...put("k", "v"),
    put: { ...put("k", "v").put!, key: new Uint8Array(4097) },
  });
  assert.equal(longKey.kind, "invalid");
});

Deno.test("KvStateMachine refuses a mutation once a session holds its bytes of results", () => {
  const { sm } = machine(FULL, undefined, { sessionResultBytesMax: 3000 });
  okResult(sm.apply(put("k", "x".repeat(1000))));
  // Each failed compare-and-swap keeps the whole current value (1,000 bytes) as its result.
  for (let seq = 1; seq <= 3; seq++) {
    const result = okResult(sm.apply(cas("k", { expected: enc("no"), clientId: "c", seq })));
    assert.equal(
      result.result.kind === "compareAndSwap" && result.result.response.succeeded,
      false,
    );
  }
  const refused = sm.apply(cas("k", { expected: enc("no"), clientId: "c", seq: 4 }));
  assert.equal(refused.kind, "resourceExhausted");
  assert.match(
    refused.kind === "resourceExhausted" ? refused.message : "",
    /holds 30\d\d bytes of unacknowledged results: the limit is 3000 \(SESSION_RESULT_BYTES_MAX/,
  );
  // Acknowledging the answered seqs frees the room.
  okResult(sm.apply(cas("k", { expected: enc("no"), clientId: "c", seq: 4, ackSeq: 3 })));
});

Deno.test("KvStateMachine keeps what a refused mutation acknowledged: a forgotten seq stays refused", () => {
  const { sm } = machine(FULL, undefined, { sessionResultBytesMax: 3000 });
  okResult(sm.apply(put("k", "small")));
  // Failed compare-and-swaps keep the current value as their result: seq 1 a few bytes, seqs 2-4
  // 1,000 bytes each (the third is allowed: the session held about 2,000 bytes before it).
  okResult(sm.apply(cas("k", { expected: enc("no"), clientId: "c", seq: 1 })));
  okResult(sm.apply(put("k", "x".repeat(1000))));
  for (let seq = 2; seq <= 4; seq++) {
    okResult(sm.apply(cas("k", { expected: enc("no"), clientId: "c", seq })));
  }
  // Seq 5 acknowledges seq 1: its result is forgotten, and the rest still fill the session.
  const refused = sm.apply(cas("k", { expected: enc("no"), clientId: "c", seq: 5, ackSeq: 1 }));
  assert.equal(refused.kind, "resourceExhausted", JSON.stringify(refused));
  // The acknowledgement stands: seq 1 is refused, not applied a second time.
  const again = sm.apply(
    cas("k", { expected: enc("small"), value: enc("v2"), clientId: "c", seq: 1 }),
  );
  assert.equal(again.kind, "invalid", JSON.stringify(again));
  assert.equal(dec(sm.get(enc("k")).value), "x".repeat(1000));
  // And the session's bytes were counted down: acknowledging seq 2 makes room for seq 5.
  okResult(sm.apply(cas("k", { expected: enc("no"), clientId: "c", seq: 5, ackSeq: 2 })));
});

Deno.test("KvStateMachine refuses a new client past the shard's sessions bound", () => {
  const { sm } = machine(FULL, 1000, { sessionsMax: 3 });
  for (const clientId of ["a", "b", "c"]) {
    okResult(sm.apply(put("k", clientId, { clientId, seq: 1, ackSeq: 0 }, 10_000)));
  }
  const fourth = sm.apply(put("k", "d", { clientId: "d", seq: 1, ackSeq: 0 }, 10_000));
  assert.equal(fourth.kind, "resourceExhausted");
  assert.match(
    fourth.kind === "resourceExhausted" ? fourth.message : "",
    /Shard has 3 client sessions: the limit is 3 \(SESSIONS_MAX\)/,
  );
  assert.equal(dec(sm.get(enc("k")).value), "c");
  // A known client goes on.
  okResult(sm.apply(put("k", "a2", { clientId: "a", seq: 2, ackSeq: 1 }, 10_000)));
  // Once the idle sessions expired and their tombstones were swept, a new client fits.
  okResult(sm.apply(put("k", "late", NO_SESSION, 10_000 + 61_000)));
  okResult(sm.apply(put("k", "later", NO_SESSION, 10_000 + 2 * 61_000)));
  okResult(sm.apply(put("k", "d", { clientId: "d", seq: 1, ackSeq: 0 }, 10_000 + 2 * 61_000)));
});

Deno.test("KvStateMachine expires sessions by the TTL the leader stamped", () => {
  const { sm } = machine();
  const stamped = (stampMs: number, seq: number) => ({
    ...put("k", `v${seq}`, { clientId: "c", seq, ackSeq: seq - 1 }, stampMs),
    sessionTtlMs: 2000,
  });
  okResult(sm.apply(stamped(10_000, 1)));
  okResult(sm.apply(stamped(11_900, 2)));
  assert.equal(sm.apply(stamped(14_000, 3)).kind, "sessionExpired");
});

Deno.test("the hash taken in slices off the loop equals dataHash(), past one slice", async () => {
  const { sm, spaces } = machine();
  for (let i = 0; i < HASH_SLICE_PAIRS + 10; i++) {
    okResult(sm.apply(put(`k${i}`, `v${i}`, { clientId: "c", seq: i + 1, ackSeq: i })));
  }
  sm.flush();
  assert.equal(await hashSpacesInSlices(spaces), sm.dataHash());
  const empty = machine();
  assert.equal(await hashSpacesInSlices(empty.spaces), empty.sm.dataHash());
});

function txn(
  fields: Partial<NonNullable<Command["txn"]>>,
  options: { stamps?: Partial<typeof STAMPS>; stampMs?: number } = {},
): Command {
  return {
    ...STAMPS,
    ...options.stamps,
    stampMs: options.stampMs ?? 1,
    txn: { compares: [], success: [], failure: [], ...NO_SESSION, ...fields },
  };
}

const valueIs = (
  key: string,
  value: string,
  result: TxnCompare_Result = TxnCompare_Result.EQUAL,
) => ({
  key: enc(key),
  result,
  target: TxnCompare_Target.VALUE,
  value: enc(value),
});
const exists = (key: string, result: TxnCompare_Result) => ({
  key: enc(key),
  result,
  target: TxnCompare_Target.EXISTS,
  value: new Uint8Array(),
});
const txnPut = (key: string, value: string, prev = false) => ({
  kind: TxnOp_Kind.PUT,
  key: enc(key),
  value: enc(value),
  prev,
});
const txnGet = (key: string) => ({
  kind: TxnOp_Kind.GET,
  key: enc(key),
  value: new Uint8Array(),
  prev: false,
});
const txnDelete = (key: string, prev = false) => ({
  kind: TxnOp_Kind.DELETE,
  key: enc(key),
  value: new Uint8Array(),
  prev,
});

function txnAnswer(result: ApplyResult) {
  const ok = okResult(result);
  assert.equal(ok.result.kind, "txn");
  return ok.result.kind === "txn" ? ok.result.response : assert.fail();
}

Deno.test("KvStateMachine runs a Txn's chosen branch atomically, each operation seeing the last", () => {
  const { sm } = machine();
  okResult(sm.apply(put("a", "1")));
  okResult(sm.apply(put("b", "2")));
  const hit = txnAnswer(sm.apply(txn({
    compares: [valueIs("a", "1"), exists("b", TxnCompare_Result.GREATER)],
    success: [
      txnPut("a", "10", true),
      txnGet("a"),
      txnDelete("b", true),
      txnGet("b"),
      txnPut("c", "3"),
    ],
    failure: [txnGet("a")],
  })));
  assert.equal(hit.succeeded, true);
  assert.deepEqual(hit.results.map((r) => [r.found, dec(r.value)]), [
    [true, "1"],
    [true, "10"],
    [true, "2"],
    [false, ""],
    [false, ""],
  ]);
  assert.equal(dec(sm.get(enc("a")).value), "10");
  assert.equal(sm.get(enc("b")).found, false);
  assert.equal(dec(sm.get(enc("c")).value), "3");
  assert.deepEqual(sm.dataSize(), { keys: 2, bytes: 1 + 2 + 1 + 1 });

  const miss = txnAnswer(sm.apply(txn({
    compares: [valueIs("a", "1")],
    success: [txnPut("a", "never")],
    failure: [txnGet("a"), txnPut("d", "4")],
  })));
  assert.equal(miss.succeeded, false);
  assert.deepEqual(miss.results.map((r) => dec(r.value)), ["10", ""]);
  assert.equal(dec(sm.get(enc("a")).value), "10");
  assert.equal(dec(sm.get(enc("d")).value), "4");
});

Deno.test("KvStateMachine Txn compares: value order, existence, and a value compare on an absent key fails", () => {
  const { sm } = machine();
  okResult(sm.apply(put("k", "m")));
  const holds = (compare: TxnCompare) =>
    txnAnswer(sm.apply(txn({ compares: [compare] }))).succeeded;
  assert.equal(holds(valueIs("k", "m")), true);
  assert.equal(holds(valueIs("k", "a", TxnCompare_Result.GREATER)), true);
  assert.equal(holds(valueIs("k", "z", TxnCompare_Result.LESS)), true);
  assert.equal(holds(valueIs("k", "m", TxnCompare_Result.NOT_EQUAL)), false);
  assert.equal(holds(valueIs("k", "m", TxnCompare_Result.GREATER)), false);
  for (const result of [0, 1, 2, 3] as TxnCompare_Result[]) {
    assert.equal(holds(valueIs("absent", "", result)), false, `value compare ${result}`);
  }
  assert.equal(holds(exists("absent", TxnCompare_Result.EQUAL)), true);
  assert.equal(holds(exists("k", TxnCompare_Result.EQUAL)), false);
  assert.equal(holds(exists("k", TxnCompare_Result.NOT_EQUAL)), true);
  assert.equal(holds(exists("k", TxnCompare_Result.LESS)), false);
});

Deno.test("KvStateMachine refuses a Txn whose answer would pass the bound, or with a key of another shard, changing nothing", () => {
  const small = { valueBytesMax: 10 };
  const { sm } = machine();
  okResult(sm.apply(put("a", "x".repeat(10))));
  okResult(sm.apply(put("b", "y".repeat(10))));
  // 2 × value_bytes_max = 20 bytes of values returned: at the bound it runs, one past it is refused.
  const atBound = txnAnswer(
    sm.apply(txn({ success: [txnGet("a"), txnGet("b")] }, { stamps: small })),
  );
  assert.equal(atBound.results.length, 2);
  okResult(sm.apply(put("c", "z")));
  const over = sm.apply(
    txn({ success: [txnPut("d", "new"), txnGet("a"), txnGet("b"), txnGet("c")] }, {
      stamps: small,
    }),
  );
  assert.equal(over.kind, "invalid");
  assert.match(
    (over as { message: string }).message,
    /would return 21 bytes of values: the maximum is 20/,
  );
  assert.equal(sm.get(enc("d")).found, false, "the first put did not apply");

  // A shard holding half of the hash space: a Txn naming a key of the other half is refused.
  const half = machine({ lo: 0, hi: HASH_SPACE / 2 });
  const inside = ["k0", "k1", "k2", "k3", "k4", "k5"].find((k) =>
    keyHash(enc(k)) < HASH_SPACE / 2
  )!;
  const outside = ["k0", "k1", "k2", "k3", "k4", "k5"].find((k) =>
    keyHash(enc(k)) >= HASH_SPACE / 2
  )!;
  const refused = half.sm.apply(txn({ success: [txnPut(inside, "v"), txnPut(outside, "v")] }));
  assert.equal(refused.kind, "invalid");
  assert.equal(half.sm.get(enc(inside)).found, false);
});

Deno.test("KvStateMachine answers a Txn retried in its session with the first answer, applying it once", () => {
  const { sm } = machine();
  const session = { clientId: "c1", seq: 1, ackSeq: 0 };
  const first = txnAnswer(sm.apply(txn({
    compares: [exists("n", TxnCompare_Result.EQUAL)],
    success: [txnPut("n", "1", true)],
    failure: [txnGet("n")],
    ...session,
  })));
  assert.equal(first.succeeded, true);
  const retried = okResult(sm.apply(txn({
    compares: [exists("n", TxnCompare_Result.EQUAL)],
    success: [txnPut("n", "1", true)],
    failure: [txnGet("n")],
    ...session,
  })));
  assert.equal(retried.duplicate, true);
  assert.deepEqual(retried.result, { kind: "txn", response: first });
});

Deno.test("KvStateMachine holding headers and numbers until a flush stores what writing through does", () => {
  // Two machines apply the same commands with the same answers: one flushes after every apply,
  // the other at seeded random points. At each of the latter's flushes both spaces hold the same
  // records. The commands mix clients, acknowledgements, retries, clients that idle past their
  // TTL, stamps that cross the sweep interval, clients refused for the sessions bound or a full
  // session, and new clients after the counter was lost (older data: the count is taken by a scan).
  const refusals = new Set<string>();
  for (let seed = 1; seed <= 40; seed++) {
    let state = seed;
    const random = () => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state / 2147483648;
    };
    const ttl = 5_000;
    const bounds = { sessionsMax: 4, sessionResultBytesMax: 30 };
    const each: { spaces: ReturnType<typeof machine>["spaces"]; sm: KvStateMachine } = machine(
      FULL,
      ttl,
      bounds,
    );
    const held: { spaces: ReturnType<typeof machine>["spaces"]; sm: KvStateMachine } = machine(
      FULL,
      ttl,
      bounds,
    );
    const clients = ["a", "b", "c", "d", "e", "f"].map((clientId) => ({
      clientId,
      seq: 0,
      acked: 0,
    }));
    let now = 1;
    let flushes = 0;
    for (let step = 0; step < 300; step++) {
      const roll = random();
      now += roll < 0.05 ? SESSION_SWEEP_INTERVAL_MS + 1 : roll < 0.1 ? ttl + 1 : 10;
      if (random() < 0.03) {
        // Older data without the session counter: both machines lose it (and their caches).
        for (const side of [each, held]) {
          side.sm.flush();
          side.spaces.meta.delete(enc("sessions"));
        }
        const fresh = (side: ReturnType<typeof machine>) =>
          new KvStateMachine(side.spaces, { range: FULL, sessionTtlMs: ttl, ...bounds });
        each.sm = fresh(each);
        held.sm = fresh(held);
      }
      const client = clients[Math.floor(random() * clients.length)];
      const retry = client.seq > client.acked && random() < 0.1;
      if (!retry) client.seq++;
      if (random() < 0.3) client.acked = Math.max(client.acked, client.seq - 1);
      const session = { clientId: client.clientId, seq: client.seq, ackSeq: client.acked };
      const command = random() < 0.5
        ? put(`k${Math.floor(random() * 20)}`, `v${step}`, session, now)
        : append(`k${Math.floor(random() * 20)}`, `${step},`, session, now);
      const expected = each.sm.apply(command);
      each.sm.flush();
      assert.deepEqual(held.sm.apply(command), expected, `seed ${seed}, step ${step}`);
      if (expected.kind === "sessionExpired") client.seq = client.acked = 0;
      if (expected.kind === "resourceExhausted") {
        refusals.add(expected.message.includes("client sessions") ? "sessions" : "full");
      }
      if (random() < 0.3) {
        held.sm.flush();
        flushes++;
        for (const space of ["data", "sessions", "meta"] as const) {
          assert.deepEqual(
            [...held.spaces[space].scan(new Uint8Array(), undefined)],
            [...each.spaces[space].scan(new Uint8Array(), undefined)],
            `seed ${seed}, step ${step}: the ${space} space`,
          );
        }
      }
    }
    assert.ok(flushes > 50, `seed ${seed}: ${flushes} flushes`);
    assert.equal(held.sm.dataHash(), each.sm.dataHash(), `seed ${seed}: dataHash flushes first`);
  }
  assert.deepEqual([...refusals].sort(), ["full", "sessions"], "both bounds were reached");
});
