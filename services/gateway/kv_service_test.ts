// Checks the gateway's KV handlers without processes or sockets: a real KvRouter over in-memory
// fake kvnodes (`@tinykv/client/testing`) and a fixed shard map, all on one FakeClock. Requests at
// each limit of libs/shard/key_limits.ts pass and one past it get INVALID_ARGUMENT naming the limit
// without reaching a kvnode; each key goes to the kvnode of the shard its hash falls in, with the
// map's shard id and conf epoch; every kvnode outcome maps to its row of the status table; the
// answer comes DEADLINE_MARGIN_MS before the client's deadline (or the default, capped at the
// maximum); the gateway's own session is given, renewed and retried as documented; and a scan
// merges every shard's page in key order and pages through every key once (one key in two shards'
// pages is a broken invariant); each call's method, status and duration reach `observe` (the
// gateway's metrics).
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { ClientSession, KvRouter, StaticClusterView } from "@tinykv/client";
import {
  answerOf,
  failure,
  type FakeKvNodeHandler,
  FakeKvNodes,
  runOnClock,
} from "@tinykv/client/testing";
import {
  ItemFailure_Kind,
  type KeyValue,
  type PutRequest,
  TxnOp_Kind,
  type TxnRequest,
} from "@tinykv/proto/tinykv/v1";
import type { HandlerContext, RpcResult } from "@tinykv/rpc";
import {
  CLIENT_ID_BYTES_MAX,
  compareBytes,
  KEY_BYTES_MAX,
  nodeId,
  SCAN_LIMIT_MAX,
  shardForKey,
  shardId,
  type ShardMap,
  splitEvenly,
  TRACE_ID_CHARS_MAX,
} from "@tinykv/shard";
import { FakeClock } from "@tinykv/timer";
import { GatewaySession, kvHandlers } from "./kv_service.ts";

const START_MS = 1_700_000_000_000;
const VALUE_BYTES_MAX = 1024;
const REQUEST_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS_MAX = 5000;
/** libs/client's router answers this long before the deadline it was given. */
const DEADLINE_MARGIN_MS = 20;
const SHARDS = 4;
const ADDRESSES: Record<string, string> = {
  n1: "n1:7901",
  n2: "n2:7901",
  n3: "n3:7901",
  n4: "n4:7901",
};
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Shard i (1-based) lives on kvnode `n<i>` alone, at conf epoch 10 + i. */
const MAP: ShardMap = {
  version: 1,
  shards: splitEvenly(SHARDS).map((range, i) => ({
    id: shardId(i + 1),
    range,
    replicas: [nodeId(`n${i + 1}`)],
    learners: [],
    leaderHint: nodeId(`n${i + 1}`),
    confEpoch: 11 + i,
  })),
};

/** Gateway handlers over fake kvnodes answering with `handle`. */
function gateway(handle: FakeKvNodeHandler, map: ShardMap | null = MAP) {
  const clock = new FakeClock(START_MS);
  const nodes = new FakeKvNodes({ clock, handle });
  const router = new KvRouter({
    view: new StaticClusterView(map ?? undefined, ADDRESSES, { clock }),
    maxMessageBytes: 8 << 20,
    clock,
    prng: () => 0.5,
    connect: nodes.connect,
  });
  const session = new GatewaySession(new ClientSession({ clientId: "g-1" }));
  const inFlight = { count: 0 };
  const observed: Array<{ method: string; status: string; seconds: number }> = [];
  const logged: Array<Record<string, unknown>> = [];
  const handlers = kvHandlers({
    router,
    session,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    requestTimeoutMsMax: REQUEST_TIMEOUT_MS_MAX,
    valueBytesMax: VALUE_BYTES_MAX,
    inFlight,
    observe: (method, status, seconds) => observed.push({ method, status, seconds }),
    log: { info: (msg, fields) => logged.push({ msg, ...fields }) },
    monotonicMs: () => clock.now(),
  });
  /** Runs one handler call to its answer on the fake clock. */
  const call = <T>(answer: Promise<RpcResult<T>> | RpcResult<T>) =>
    runOnClock(clock, Promise.resolve(answer));
  return { clock, nodes, router, session, inFlight, observed, logged, handlers, call };
}

/** A handler context with the client's deadline (`Infinity`: none). */
function context(deadlineMs = Infinity): HandlerContext {
  return {
    method: "/tinykv.v1.KV/Test",
    metadata: new grpc.Metadata(),
    deadlineMs,
    signal: new AbortController().signal,
  };
}

function put(key: Uint8Array | string, options: Partial<PutRequest> = {}): PutRequest {
  const bytes = typeof key === "string" ? enc(key) : key;
  return { key: bytes, value: enc("v"), clientId: "", seq: 0, ackSeq: 0, ...options };
}

const ok: FakeKvNodeHandler = (request) => ({ answer: answerOf(request) });

function assertFailure(result: RpcResult<unknown>, kind: string, message?: RegExp): void {
  assert.equal(result.kind, kind, JSON.stringify(result));
  if (message !== undefined && result.kind !== "ok") assert.match(result.message, message);
}

Deno.test("kvService accepts requests at each limit and refuses one past it, unrouted", async () => {
  const { handlers, call, nodes, clock } = gateway(ok);
  const ctx = context();
  const key = (bytes: number) => new Uint8Array(bytes).fill(0x61);
  const value = (bytes: number) => new Uint8Array(bytes).fill(0x62);
  const scan = (limit: number, start = new Uint8Array(), end = new Uint8Array()) =>
    handlers.Scan({ start, end, limit }, ctx);
  type Send = () => Promise<RpcResult<unknown>> | RpcResult<unknown>;
  const cases: Array<[string, Send, string, RegExp?]> = [
    ["a key of KEY_BYTES_MAX", () => handlers.Put(put(key(KEY_BYTES_MAX)), ctx), "ok"],
    [
      "a longer key",
      () => handlers.Put(put(key(KEY_BYTES_MAX + 1)), ctx),
      "invalidArgument",
      /4097 bytes: the maximum is 4096 \(KEY_BYTES_MAX\)/,
    ],
    [
      "an empty key",
      () => handlers.Get({ key: key(0), serializable: false }, ctx),
      "invalidArgument",
      /"key" has 0 bytes: the minimum is 1/,
    ],
    [
      "a get of KEY_BYTES_MAX + 1",
      () => handlers.Get({ key: key(KEY_BYTES_MAX + 1), serializable: true }, ctx),
      "invalidArgument",
      /KEY_BYTES_MAX/,
    ],
    [
      "a value of the limit",
      () => handlers.Put(put("k", { value: value(VALUE_BYTES_MAX) }), ctx),
      "ok",
    ],
    [
      "a longer value",
      () => handlers.Put(put("k", { value: value(VALUE_BYTES_MAX + 1) }), ctx),
      "invalidArgument",
      /"value" has 1025 bytes: the maximum is 1024 \(storage\.value_bytes_max\)/,
    ],
    [
      "an append past the limit",
      () => handlers.Append({ ...put("k"), value: value(VALUE_BYTES_MAX + 1) }, ctx),
      "invalidArgument",
      /"value" has 1025 bytes/,
    ],
    [
      "a longer expected value",
      () =>
        handlers.CompareAndSwap({
          ...put("k"),
          expected: value(VALUE_BYTES_MAX + 1),
          expectAbsent: false,
          delete: false,
        }, ctx),
      "invalidArgument",
      /"expected" has 1025 bytes/,
    ],
    [
      "a client id of CLIENT_ID_BYTES_MAX",
      () => handlers.Put(put("k", { clientId: "c".repeat(CLIENT_ID_BYTES_MAX), seq: 1 }), ctx),
      "ok",
    ],
    [
      "a longer client id",
      () => handlers.Put(put("k", { clientId: "c".repeat(CLIENT_ID_BYTES_MAX + 1), seq: 1 }), ctx),
      "invalidArgument",
      /"client_id" has 129 bytes: the maximum is 128 \(CLIENT_ID_BYTES_MAX\)/,
    ],
    [
      "a seq without a client id",
      () => handlers.Delete({ key: enc("k"), clientId: "", seq: 3, ackSeq: 0 }, ctx),
      "invalidArgument",
      /need a "client_id"/,
    ],
    [
      "an ack_seq not below seq",
      () => handlers.Put(put("k", { clientId: "c", seq: 2, ackSeq: 2 }), ctx),
      "invalidArgument",
      /seq must be positive and greater than ack_seq/,
    ],
    ["a scan of SCAN_LIMIT_MAX", () => scan(SCAN_LIMIT_MAX), "ok"],
    [
      "a scan past SCAN_LIMIT_MAX",
      () => scan(SCAN_LIMIT_MAX + 1),
      "invalidArgument",
      /"limit" is 10001: expected 1 to 10000 \(SCAN_LIMIT_MAX\)/,
    ],
    ["a scan of limit 0", () => scan(0), "invalidArgument", /"limit" is 0/],
    [
      "a scan from a too long key",
      () => scan(10, key(KEY_BYTES_MAX + 1)),
      "invalidArgument",
      /"start" has 4097 bytes/,
    ],
    [
      "a scan with start after end",
      () => scan(10, enc("b"), enc("a")),
      "invalidArgument",
      /"start" is after "end"/,
    ],
  ];
  for (const [name, send, kind, message] of cases) {
    const before = nodes.received.length;
    const result = await call(send());
    assertFailure(result, kind, message);
    if (kind === "invalidArgument") {
      assert.equal(nodes.received.length, before, `${name}: no kvnode saw it`);
    } else {
      assert.ok(nodes.received.length > before, `${name}: routed`);
    }
  }
  assert.equal(clock.now(), START_MS, "nothing was retried");
});

Deno.test("kvService routes each key to the kvnode of the shard its hash falls in", async () => {
  const { handlers, call, nodes } = gateway(ok);
  // Keys until every shard has three, so every shard is exercised.
  const keys: Uint8Array[] = [];
  const perShard = new Map<number, number>();
  for (let i = 0; [...perShard.values()].filter((n) => n >= 3).length < SHARDS; i++) {
    const key = enc(`user:${i}`);
    const shard = shardForKey(MAP, key).id;
    perShard.set(shard, (perShard.get(shard) ?? 0) + 1);
    keys.push(key);
  }
  for (const key of keys) {
    assertFailure(await call(handlers.Put(put(key), context())), "ok");
    const shard = shardForKey(MAP, key);
    const { address, item } = nodes.received.at(-1)!;
    assert.equal(address, ADDRESSES[shard.replicas[0]]);
    assert.equal(item.shardId, shard.id);
    assert.equal(item.confEpoch, shard.confEpoch);
  }
  // Keys with the same hash tag share a shard.
  const tagged = ["{cart42}:a", "{cart42}:b", "{cart42}:c"].map((key) =>
    shardForKey(MAP, enc(key))
  );
  for (const key of ["{cart42}:a", "{cart42}:b", "{cart42}:c"]) {
    await call(handlers.Get({ key: enc(key), serializable: false }, context()));
    assert.equal(nodes.received.at(-1)!.item.shardId, tagged[0].id);
  }
  assert.equal(new Set(nodes.received.map((r) => r.address)).size, SHARDS, "every shard was used");
});

Deno.test("kvService maps every kvnode outcome to its status", async () => {
  const always = (kind: ItemFailure_Kind): FakeKvNodeHandler => () => failure(kind, `Kind ${kind}`);
  let calls = 0;
  const unknownThenUnavailable: FakeKvNodeHandler = (request) =>
    ++calls === 1
      ? { ...failure(ItemFailure_Kind.UNKNOWN, "Proposal timed out"), afterMs: request.timeoutMs }
      : failure(ItemFailure_Kind.UNAVAILABLE, "No leader");
  const cases: Array<[string, FakeKvNodeHandler, string, RegExp]> = [
    ["INVALID", always(ItemFailure_Kind.INVALID), "invalidArgument", /^Kind 3$/],
    ["SESSION_EXPIRED", always(ItemFailure_Kind.SESSION_EXPIRED), "failedPrecondition", /^Kind 6$/],
    [
      "RESOURCE_EXHAUSTED",
      always(ItemFailure_Kind.RESOURCE_EXHAUSTED),
      "resourceExhausted",
      /^Kind 7$/,
    ],
    ["DATA_LOSS", always(ItemFailure_Kind.DATA_LOSS), "dataLoss", /^Kind 8$/],
    ["INTERNAL", always(ItemFailure_Kind.INTERNAL), "internal", /^Kind 9$/],
    [
      "UNAVAILABLE until the deadline",
      always(ItemFailure_Kind.UNAVAILABLE),
      "unavailable",
      /^Request did not complete before its deadline: .*Kind 4$/,
    ],
    [
      "UNKNOWN, then UNAVAILABLE",
      unknownThenUnavailable,
      "deadlineExceeded",
      /^Request did not complete before its deadline/,
    ],
    [
      "another operation's response",
      () => ({ answer: { get: { found: false, value: new Uint8Array() } } }),
      "internal",
      /another operation's response/,
    ],
  ];
  for (const [name, handle, kind, message] of cases) {
    const { handlers, call } = gateway(handle);
    // A client's own session, so SESSION_EXPIRED is the client's to act on.
    const request = put("k", { clientId: "c-7", seq: 5, ackSeq: 4 });
    const result = await call(handlers.Put(request, context(START_MS + 2500)));
    assert.equal(result.kind, kind, `${name}: ${JSON.stringify(result)}`);
    if (result.kind !== "ok") assert.match(result.message, message, name);
  }
});

Deno.test("kvService answers before the client's deadline, or the default, capped at the maximum", async () => {
  const cases: Array<[string, number, number]> = [
    ["the client's deadline", START_MS + 300, 300],
    ["no deadline: the default", Infinity, REQUEST_TIMEOUT_MS],
    ["a long deadline: the maximum", START_MS + 60_000, REQUEST_TIMEOUT_MS_MAX],
  ];
  for (const [name, deadlineMs, expectedMs] of cases) {
    const { handlers, call, clock, nodes } = gateway(() =>
      failure(ItemFailure_Kind.UNAVAILABLE, "No leader")
    );
    const result = await call(
      handlers.Get({ key: enc("k"), serializable: false }, context(deadlineMs)),
    );
    assert.equal(result.kind, "unavailable", name);
    assert.equal(clock.now(), START_MS + expectedMs - DEADLINE_MARGIN_MS, name);
    assert.equal(nodes.received[0].item.timeoutMs, Math.min(2000, expectedMs - DEADLINE_MARGIN_MS));
  }
});

Deno.test("kvService gives a mutation without a client id the gateway's session", async () => {
  const { handlers, call, nodes, session, inFlight } = gateway(ok);
  const counting = handlers.Put(put("a"), context());
  assert.equal(inFlight.count, 1, "the call is counted while in flight");
  await call(counting);
  assert.equal(inFlight.count, 0);
  await call(handlers.Append({ ...put("b"), value: enc("x") }, context()));
  const sessions = nodes.received.map((r) => {
    const mutation = r.item.put ?? r.item.append!;
    return [mutation.clientId, mutation.seq, mutation.ackSeq];
  });
  assert.deepEqual(sessions, [["g-1", 1, 0], ["g-1", 2, 1]]);
  assert.equal(session.current.outstanding, 0, "both seqs are answered");
  // A client's own session passes through untouched.
  await call(handlers.Put(put("c", { clientId: "c-9", seq: 40, ackSeq: 39 }), context()));
  assert.deepEqual(nodes.received.at(-1)!.item.put!.clientId, "c-9");
  assert.deepEqual(nodes.received.at(-1)!.item.put!.seq, 40);
});

Deno.test("kvService renews the gateway's expired session and sends the mutation once more", async () => {
  const expiredOnce: FakeKvNodeHandler = (request) =>
    request.put!.clientId === "g-1"
      ? failure(ItemFailure_Kind.SESSION_EXPIRED, 'Session "g-1" expired')
      : { answer: answerOf(request) };
  const renewed = gateway(expiredOnce);
  assertFailure(await renewed.call(renewed.handlers.Put(put("k"), context())), "ok");
  assert.equal(renewed.session.renewals, 1);
  const [first, second] = renewed.nodes.received.map((r) => r.item.put!.clientId);
  assert.equal(first, "g-1");
  assert.notEqual(second, "g-1");
  assert.equal(second, renewed.session.current.clientId);

  const refused = gateway(() => failure(ItemFailure_Kind.SESSION_EXPIRED, "Session expired"));
  assertFailure(
    await refused.call(refused.handlers.Put(put("k"), context())),
    "unavailable",
    /^The gateway's new session was refused: Session expired$/,
  );
  assert.equal(refused.nodes.received.length, 2, "sent once more, not again");

  let calls = 0;
  const appliedMaybe = gateway(() =>
    ++calls === 1
      ? { ...failure(ItemFailure_Kind.UNKNOWN, "Proposal timed out"), afterMs: 50 }
      : failure(ItemFailure_Kind.SESSION_EXPIRED, "Session expired")
  );
  assertFailure(
    await appliedMaybe.call(appliedMaybe.handlers.Put(put("k"), context())),
    "deadlineExceeded",
    /^Outcome unknown: an attempt may have applied the request before the gateway's session expired/,
  );
});

/** Fake kvnodes holding `keys`, each in its shard, answering scans as a kvnode does. */
function scanningNodes(keys: readonly string[]): FakeKvNodeHandler {
  const byShard = new Map<number, KeyValue[]>();
  for (const key of keys) {
    const shard = shardForKey(MAP, enc(key)).id;
    byShard.set(shard, [...byShard.get(shard) ?? [], { key: enc(key), value: enc(`v-${key}`) }]);
  }
  for (const kvs of byShard.values()) kvs.sort((a, b) => compareBytes(a.key, b.key));
  return (request) => {
    const { start, end, limit } = request.scan!;
    const inRange = (byShard.get(request.shardId) ?? []).filter((kv) =>
      compareBytes(kv.key, start) >= 0 && (end.length === 0 || compareBytes(kv.key, end) < 0)
    );
    const page = inRange.slice(0, limit);
    const more = inRange.length > limit;
    return {
      answer: { scan: { kvs: page, more, next: more ? inRange[limit].key : new Uint8Array() } },
    };
  };
}

Deno.test("kvService scans every shard and pages through every key once, in key order", async () => {
  const keys = Array.from({ length: 30 }, (_, i) => `k${String(i).padStart(2, "0")}`);
  const { handlers, call, nodes } = gateway(scanningNodes(keys));
  const seen: string[] = [];
  let start: Uint8Array = new Uint8Array();
  for (let page = 0; page < 10; page++) {
    const result = await call(handlers.Scan({ start, end: new Uint8Array(), limit: 7 }, context()));
    assert.equal(result.kind, "ok");
    if (result.kind !== "ok") return;
    seen.push(...result.response.kvs.map((kv) => dec(kv.key)));
    for (const kv of result.response.kvs) assert.equal(dec(kv.value), `v-${dec(kv.key)}`);
    if (!result.response.more) break;
    assert.equal(
      dec(result.response.next),
      keys[seen.length],
      "next is the first key not returned",
    );
    start = result.response.next;
  }
  assert.deepEqual(seen, keys);
  assert.equal(new Set(nodes.received.map((r) => r.item.shardId)).size, SHARDS);
  // A bounded range.
  const bounded = await call(
    handlers.Scan({ start: enc("k05"), end: enc("k09"), limit: 100 }, context()),
  );
  assert.deepEqual(
    bounded.kind === "ok" ? bounded.response.kvs.map((kv) => dec(kv.key)) : bounded,
    ["k05", "k06", "k07", "k08"],
  );
});

Deno.test("kvService refuses a scan while no shard map is known", async () => {
  const { handlers, call, nodes } = gateway(ok, null);
  assertFailure(
    await call(
      handlers.Scan({ start: new Uint8Array(), end: new Uint8Array(), limit: 5 }, context()),
    ),
    "unavailable",
    /^No shard map is known yet$/,
  );
  assert.equal(nodes.received.length, 0);
});

Deno.test("kvService reports each call's method, status and duration to observe()", async () => {
  const { handlers, call, observed, clock } = gateway((request) => {
    clock.advance(3);
    return { answer: answerOf(request) };
  });
  assert.equal((await call(handlers.Put(put("k"), context()))).kind, "ok");
  assertFailure(
    await call(handlers.Get({ key: enc(""), serializable: false }, context())),
    "invalidArgument",
  );
  assert.deepEqual(observed.map(({ method, status }) => [method, status]), [
    ["Put", "OK"],
    ["Get", "INVALID_ARGUMENT"],
  ]);
  assert.ok(observed[0].seconds >= 0.003, `the Put took ${observed[0].seconds} s`);
  assert.equal(observed[1].seconds, 0);
});

Deno.test("kvService treats one key in two shards' scan pages as a broken invariant, not a page", async () => {
  // Every shard answers with the same key: a routing or placement bug the client must never see.
  const { handlers, call } = gateway(() => ({
    answer: { scan: { kvs: [{ key: enc("k"), value: enc("v") }], more: false, next: enc("") } },
  }));
  await assert.rejects(
    call(handlers.Scan({ start: new Uint8Array(), end: new Uint8Array(), limit: 5 }, context())),
    { name: "AssertionError", message: /Two shards answered a scan with the same key/ },
  );
});

Deno.test("kvService follows a request the client asked to trace, and refuses a malformed trace id", async () => {
  const { handlers, call, nodes, logged } = gateway(ok);
  const traced = (id: string) => {
    const ctx = context();
    ctx.metadata.set("tinykv-trace", id);
    return ctx;
  };
  const id = "t-".padEnd(TRACE_ID_CHARS_MAX, "x");
  assert.equal((await call(handlers.Put(put("k"), traced(id)))).kind, "ok");
  assert.equal(nodes.received.at(-1)!.item.traceId, id, "the kvnode gets the trace id");
  assert.deepEqual(logged.map((l) => [l.msg, l.trace, l.method, l.status]), [
    ["Traced request received", id, "Put", undefined],
    ["Traced request answered", id, "Put", "OK"],
  ]);
  assert.equal(
    (await call(handlers.Get({ key: enc("k"), serializable: false }, context()))).kind,
    "ok",
  );
  assert.equal(nodes.received.at(-1)!.item.traceId, "", "an untraced request");
  assert.equal(logged.length, 2, "nothing logged for it");
  const sent = nodes.received.length;
  for (const bad of [id + "x", "a b", ""]) {
    assertFailure(
      await call(handlers.Put(put("k"), traced(bad))),
      "invalidArgument",
      /Trace id .* is not 1 to 64 characters/,
    );
  }
  assert.equal(nodes.received.length, sent, "a malformed trace id reaches no kvnode");
});

Deno.test("kvService routes a Txn to the shard of its keys with the gateway's session, and refuses keys of two shards (INVALID_ARGUMENT)", async () => {
  const { handlers, call, nodes } = gateway(ok);
  const op = (key: string) => ({
    kind: TxnOp_Kind.PUT,
    key: enc(key),
    value: enc("v"),
    prev: false,
  });
  const txn = (keys: string[]): TxnRequest => ({
    compares: [],
    success: keys.map(op),
    failure: [],
    clientId: "",
    seq: 0,
    ackSeq: 0,
  });
  const tagged = ["{cart7}:a", "{cart7}:b", "{cart7}:c"];
  assertFailure(await call(handlers.Txn(txn(tagged), context())), "ok");
  const { item } = nodes.received.at(-1)!;
  assert.equal(item.shardId, shardForKey(MAP, enc(tagged[0])).id);
  assert.deepEqual([item.txn!.clientId, item.txn!.seq], ["g-1", 1]);

  // Two keys of different shards: refused before any kvnode sees it, naming both shards.
  let other = "x0";
  for (let i = 1; shardForKey(MAP, enc(other)).id === shardForKey(MAP, enc("a")).id; i++) {
    other = `x${i}`;
  }
  const before = nodes.received.length;
  const refused = await call(handlers.Txn(txn(["a", other]), context()));
  assertFailure(
    refused,
    "invalidArgument",
    /must be in one shard: key "a" is in shard \d and key "x\d+" in shard \d/,
  );
  // A Txn past a limit: INVALID_ARGUMENT naming it.
  const empty = await call(handlers.Txn(txn([]), context()));
  assertFailure(empty, "invalidArgument", /names no key/);
  assert.equal(nodes.received.length, before, "no kvnode saw either");
});
