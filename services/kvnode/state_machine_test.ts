// Checks KvStateMachine on in-memory spaces: each operation's semantics, keys outside the shard,
// exactly-once sessions (duplicates, many requests in flight out of order, ack_seq, expiry and
// tombstones, the results bound), scans, snapshots (serialize/restore) and data hashes.
import assert from "node:assert/strict";
import type { Command } from "@tinykv/proto/tinykv/v1";
import { HASH_SPACE, keyHash } from "@tinykv/shard";
import { MemoryKvSpace } from "./kv_space.ts";
import {
  type ApplyResult,
  KvStateMachine,
  SESSION_RESULTS_MAX,
  SESSION_TTL_MS_DEFAULT,
} from "./state_machine.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const FULL = { lo: 0, hi: HASH_SPACE };
const NO_SESSION = { clientId: "", seq: 0, ackSeq: 0 };

function machine(range = FULL, sessionTtlMs?: number) {
  const spaces = {
    data: new MemoryKvSpace(),
    sessions: new MemoryKvSpace(),
    meta: new MemoryKvSpace(),
  };
  return { spaces, sm: new KvStateMachine(spaces, { range, sessionTtlMs }) };
}

type Session = { clientId: string; seq: number; ackSeq: number };

function put(key: string, value: string, session: Session = NO_SESSION, stampMs = 1): Command {
  return { stampMs, put: { key: enc(key), value: enc(value), ...session } };
}

function append(key: string, value: string, session: Session = NO_SESSION, stampMs = 1): Command {
  return { stampMs, append: { key: enc(key), value: enc(value), ...session } };
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
  const deleted = okResult(sm.apply({ stampMs: 1, delete: { key: enc("a"), ...NO_SESSION } }));
  assert.deepEqual(deleted.result, { kind: "delete", response: { deleted: true } });
  const again = okResult(sm.apply({ stampMs: 1, delete: { key: enc("a"), ...NO_SESSION } }));
  assert.deepEqual(again.result, { kind: "delete", response: { deleted: false } });
  assert.equal(sm.get(enc("a")).found, false);
});

Deno.test("KvStateMachine compare-and-swap: match, mismatch, expect_absent and delete", () => {
  const { sm } = machine();
  const cas = (fields: Partial<NonNullable<Command["compareAndSwap"]>>) =>
    okResult(sm.apply({
      stampMs: 1,
      compareAndSwap: {
        key: enc("k"),
        expected: new Uint8Array(),
        expectAbsent: false,
        value: new Uint8Array(),
        delete: false,
        ...NO_SESSION,
        ...fields,
      },
    })).result;
  assert.deepEqual(cas({ expectAbsent: true, value: enc("v1") }), {
    kind: "compareAndSwap",
    response: { succeeded: true, found: false, current: new Uint8Array() },
  });
  const mismatch = cas({ expectAbsent: true, value: enc("v2") });
  assert.equal(mismatch.kind === "compareAndSwap" && mismatch.response.succeeded, false);
  assert.equal(mismatch.kind === "compareAndSwap" && dec(mismatch.response.current), "v1");
  const wrong = cas({ expected: enc("nope"), value: enc("v2") });
  assert.equal(wrong.kind === "compareAndSwap" && wrong.response.succeeded, false);
  const swapped = cas({ expected: enc("v1"), value: enc("v2") });
  assert.equal(swapped.kind === "compareAndSwap" && swapped.response.succeeded, true);
  assert.equal(dec(sm.get(enc("k")).value), "v2");
  const removed = cas({ expected: enc("v2"), delete: true });
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
  assert.equal(spaces.sessions.size, 2, "a header and one result");
  okResult(sm.apply(put("b", "1", NO_SESSION, 1 + SESSION_TTL_MS_DEFAULT + 61_000)));
  assert.equal(spaces.sessions.size, 1, "the idle session became a tombstone");
  okResult(sm.apply(put("b", "2", NO_SESSION, 1 + 2 * SESSION_TTL_MS_DEFAULT + 200_000)));
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
  okResult(sm.apply({ stampMs: 1, delete: { key: enc("c"), ...NO_SESSION } }));
  okResult(sm.apply({ stampMs: 1, delete: { key: enc("missing"), ...NO_SESSION } }));
  okResult(sm.apply({
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
