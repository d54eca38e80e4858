// Checks the etcd API's mapping onto the gateway's own KV handlers, mostly without processes or
// sockets: an in-memory stand-in for `tinykv.v1.KV` (keys in byte order, scans in small pages whose
// pairs are views into one buffer, as decoded answers are; a compare-and-swap that another writer
// can beat; scans and deletes that can be held and failed). Range answers one key, a prefix, a
// range and everything with etcd's `limit`, `more` and `count`, keys only, counts only, both
// orders, and sorted by value (order NONE is ascending, the whole range before the limit) or by
// revision (key order); it holds values only for what it answers (copied out of the page), at most
// one answer's worth or, sorting by value or keeping the last keys, 4, each at the limit and one
// past; at most `rangesInFlightMax` ranges run at once. Put and delete with `prev_kv` return
// exactly the value they replaced (a one-operation Txn); a range delete whose values would not fit
// deletes nothing, and one whose delete fails starts no other, waits for those in flight and says
// how many keys it deleted, with the status of the outcome. A Txn becomes TinyKV's Txn (value
// compares as they are, revision compares against 0 as existence, lease compares decided by the
// gateway) and its answers map back per operation; one whose answer might not fit a message, one
// that writes a key twice, and a compare with a misplaced operand are refused before anything is
// proposed; what TinyKV cannot do is refused with its status and a reason, and nothing changes.
// Compact past revision 1 (OUT_OF_RANGE, etcd's words), Status, MemberList (client URLs etcdctl can
// dial) and the framing constants are checked. On a real gRPC server: an int64 past 2^53 is
// INVALID_ARGUMENT on a call and on the Watch stream (2^53 - 1 as a start revision is decoded,
// then refused as etcd refuses a watch, with the reason); Watch serves the gateway's watches (real
// `GatewayWatches` over fake kvnode streams the test plays: created once the key's shard started,
// its changes as etcd events, progress, cancel, the stream ended by the client), and without them
// is UNIMPLEMENTED; Deno's HTTP/2 server refuses `http://host:port` as an authority. Watch itself
// is checked in etcd_watch_test.ts; the real clients (etcdctl, npm etcd3) run against a dev
// cluster in tests/etcd_api_test.ts.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  Event_EventType,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  RangeResponse,
  type ResponseOp,
  TxnRequest as EtcdTxnRequest,
  TxnResponse as EtcdTxnResponse,
  WatchCreateRequest,
  WatchRequest,
  WatchResponse,
} from "@tinykv/proto/etcdserverpb";
import {
  type CompareAndSwapResponse,
  type KeyValue,
  type KVService,
  type ShardWatchRequest,
  type TxnCompare,
  TxnCompare_Result,
  TxnCompare_Target,
  TxnOp_Kind,
  TxnRequest,
  type TxnResponse,
  WatchEvent_Kind,
} from "@tinykv/proto/tinykv/v1";
import {
  type HandlerContext,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceHandlers,
  startGrpcServer,
} from "@tinykv/rpc";
import { compareBytes, keyHash, nodeId, shardId, splitEvenly } from "@tinykv/shard";
import {
  clientUrlOf,
  deleteBatchesOf,
  etcdHandlers,
  type EtcdServiceOptions,
  etcdServices,
  idOf,
  KEY_VALUE_FRAMING_BYTES,
  RESPONSE_OP_FRAMING_BYTES,
  REVISION,
  valueBytesBound,
} from "./etcd_service.ts";
import { kvBinding } from "./kv_service.ts";
import { GatewayWatches, type ShardStreamEvents } from "./watch.ts";

/** Two shards by the key's hash, as the gateway's shard map would say. */
const shardOf = (key: Uint8Array) => (keyHash(key) < 2 ** 31 ? 1 : 2);
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

const CONTEXT: HandlerContext = {
  method: "/etcdserverpb.KV/Range",
  metadata: new grpc.Metadata(),
  deadlineMs: Infinity,
  signal: new AbortController().signal,
};

/** The stand-in's scan pages hold at most this many pairs, so that ranges page. */
const PAGE = 3;

/** An in-memory `tinykv.v1.KV`: what the etcd handlers call. */
class FakeKv {
  readonly pairs = new Map<string, KeyValue>();
  readonly calls: string[] = [];
  readonly txns: TxnRequest[] = [];
  /** A failure every call answers with, when set. */
  failAll: RpcResult<never> | undefined;
  /** When set, every Scan waits for it before it answers. */
  scanGate: Promise<void> | undefined;
  /** When set, answers a Txn in its place (when it returns undefined, the stand-in does). */
  onTxn: ((request: TxnRequest) => Promise<RpcResult<TxnResponse>> | undefined) | undefined;

  set(key: string, value: string): void {
    this.pairs.set(hex(enc(key)), { key: enc(key), value: enc(value) });
  }

  value(key: string): string | undefined {
    const pair = this.pairs.get(hex(enc(key)));
    return pair === undefined ? undefined : dec(pair.value);
  }

  #sorted(): KeyValue[] {
    return [...this.pairs.values()].sort((a, b) => compareBytes(a.key, b.key));
  }

  handlers(): ServiceHandlers<typeof KVService> {
    const answer = <T>(method: string, work: () => RpcResult<T>) => {
      this.calls.push(method);
      return Promise.resolve(this.failAll ?? work());
    };
    return {
      Get: ({ key }) =>
        answer("Get", () => {
          const pair = this.pairs.get(hex(key));
          return rpcOk({ found: pair !== undefined, value: pair?.value ?? new Uint8Array() });
        }),
      Put: ({ key, value }) =>
        answer("Put", () => {
          this.pairs.set(hex(key), { key, value });
          return rpcOk({});
        }),
      Delete: ({ key }) => answer("Delete", () => rpcOk({ deleted: this.pairs.delete(hex(key)) })),
      Append: () => answer("Append", () => rpcFailure("internal", "not used")),
      CompareAndSwap: (request) =>
        answer<CompareAndSwapResponse>("CompareAndSwap", () => {
          const pair = this.pairs.get(hex(request.key));
          const matches = request.expectAbsent
            ? pair === undefined
            : pair !== undefined && compareBytes(pair.value, request.expected) === 0;
          if (!matches) {
            return rpcOk({
              succeeded: false,
              found: pair !== undefined,
              current: pair?.value ?? new Uint8Array(),
            });
          }
          if (request.delete) this.pairs.delete(hex(request.key));
          else this.pairs.set(hex(request.key), { key: request.key, value: request.value });
          return rpcOk({ succeeded: true, found: pair !== undefined, current: new Uint8Array() });
        }),
      Watch: (call) => call.end(),
      Txn: (request) =>
        this.onTxn?.(request) ?? answer<TxnResponse>("Txn", () => {
          const entries = [...request.compares, ...request.success, ...request.failure];
          const shards = new Set(entries.map((entry) => shardOf(entry.key)));
          if (shards.size > 1) {
            return rpcFailure("failedPrecondition", "A Txn's keys must be in one shard");
          }
          const holds = (compare: TxnCompare) => {
            const pair = this.pairs.get(hex(compare.key));
            let order: number;
            if (compare.target === TxnCompare_Target.VALUE) {
              if (pair === undefined) return false;
              order = Math.sign(compareBytes(pair.value, compare.value));
            } else order = pair === undefined ? 0 : 1;
            return [order === 0, order > 0, order < 0, order !== 0][compare.result];
          };
          const succeeded = request.compares.every(holds);
          const results = (succeeded ? request.success : request.failure).map((op) => {
            const pair = this.pairs.get(hex(op.key));
            const found = pair !== undefined;
            const value = op.kind === TxnOp_Kind.GET || op.prev
              ? pair?.value ?? new Uint8Array()
              : new Uint8Array();
            if (op.kind === TxnOp_Kind.PUT) {
              this.pairs.set(hex(op.key), { key: op.key, value: op.value });
            }
            if (op.kind === TxnOp_Kind.DELETE) this.pairs.delete(hex(op.key));
            return { found, value };
          });
          this.txns.push(request);
          return rpcOk({ succeeded, results });
        }),
      Scan: async ({ start, end, limit }) => {
        await this.scanGate;
        return await answer("Scan", () => {
          const inRange = this.#sorted().filter((p) =>
            compareBytes(p.key, start) >= 0 && (end.length === 0 || compareBytes(p.key, end) < 0)
          );
          const kvs = pageOf(inRange.slice(0, Math.min(limit, PAGE)));
          const more = inRange.length > kvs.length;
          return rpcOk({
            kvs,
            more,
            next: more ? inRange[kvs.length].key : new Uint8Array(),
          });
        });
      },
    };
  }
}

/**
 * A page's pairs as a decoded answer has them: views into one buffer of the whole page, so that a
 * handler that keeps a view keeps the page.
 */
function pageOf(pairs: readonly KeyValue[]): KeyValue[] {
  const page = new Uint8Array(pairs.reduce((sum, p) => sum + p.key.length + p.value.length, 0));
  let at = 0;
  const view = (bytes: Uint8Array) => {
    page.set(bytes, at);
    at += bytes.length;
    return page.subarray(at - bytes.length, at);
  };
  return pairs.map((pair) => ({ key: view(pair.key), value: view(pair.value) }));
}

function setup(overrides: Partial<EtcdServiceOptions> = {}) {
  const fake = new FakeKv();
  const options: EtcdServiceOptions = {
    kv: fake.handlers(),
    address: "127.0.0.1:7700",
    members: () => [{ address: "127.0.0.1:7700" }, { address: "127.0.0.1:7701" }],
    clusterId: () => "c-test",
    shardOf,
    maxMessageBytes: 4 * 1024 * 1024,
    ...overrides,
  };
  return { fake, etcd: etcdHandlers(options), options };
}

function ok<T>(result: RpcResult<T>): T {
  assert.equal(result.kind, "ok", JSON.stringify(result));
  return (result as { response: T }).response;
}

function range(overrides: Partial<RangeRequest>): RangeRequest {
  return {
    key: new Uint8Array(),
    rangeEnd: new Uint8Array(),
    limit: 0,
    revision: 0,
    sortOrder: RangeRequest_SortOrder.NONE,
    sortTarget: RangeRequest_SortTarget.KEY,
    serializable: false,
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
    ...overrides,
  };
}

/** etcd's prefix end: the prefix with its last byte incremented. */
function prefixEnd(prefix: string): Uint8Array {
  const bytes = enc(prefix);
  bytes[bytes.length - 1]++;
  return bytes;
}

const keysOf = (kvs: ReadonlyArray<{ key: Uint8Array }>) => kvs.map((kv) => dec(kv.key));

Deno.test("Range answers one key, a prefix across pages, a range and all keys, in key order", async () => {
  const { fake, etcd } = setup();
  for (const key of ["a", "p/1", "p/2", "p/3", "p/4", "p/5", "q", "z"]) fake.set(key, `v-${key}`);

  const one = ok(await etcd.kv.Range(range({ key: enc("q") }), CONTEXT));
  assert.deepEqual(keysOf(one.kvs), ["q"]);
  assert.equal(dec(one.kvs[0].value), "v-q");
  assert.equal(one.count, 1);
  assert.equal(one.kvs[0].version, REVISION);
  const missing = ok(await etcd.kv.Range(range({ key: enc("nope") }), CONTEXT));
  assert.deepEqual([missing.kvs.length, missing.count, missing.more], [0, 0, false]);

  const prefix = ok(
    await etcd.kv.Range(range({ key: enc("p/"), rangeEnd: prefixEnd("p/") }), CONTEXT),
  );
  assert.deepEqual(keysOf(prefix.kvs), ["p/1", "p/2", "p/3", "p/4", "p/5"]);
  assert.deepEqual([prefix.count, prefix.more], [5, false]);

  const between = ok(await etcd.kv.Range(range({ key: enc("p/2"), rangeEnd: enc("q") }), CONTEXT));
  assert.deepEqual(keysOf(between.kvs), ["p/2", "p/3", "p/4", "p/5"]);

  // range_end "\0": every key from `key` on; key "\0" with it: every key.
  const from = ok(
    await etcd.kv.Range(range({ key: enc("q"), rangeEnd: new Uint8Array([0]) }), CONTEXT),
  );
  assert.deepEqual(keysOf(from.kvs), ["q", "z"]);
  const all = ok(
    await etcd.kv.Range(
      range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) }),
      CONTEXT,
    ),
  );
  assert.equal(all.count, 8);

  // An empty or backwards range holds nothing.
  const backwards = ok(await etcd.kv.Range(range({ key: enc("z"), rangeEnd: enc("a") }), CONTEXT));
  assert.deepEqual([backwards.kvs.length, backwards.count], [0, 0]);
});

Deno.test("Range's limit, more and count, keys only, counts only and descending order", async () => {
  const { fake, etcd } = setup();
  for (let i = 1; i <= 7; i++) fake.set(`k${i}`, `value-${i}`);
  const whole = { key: enc("k"), rangeEnd: prefixEnd("k") };

  const limited = ok(await etcd.kv.Range(range({ ...whole, limit: 2 }), CONTEXT));
  assert.deepEqual(keysOf(limited.kvs), ["k1", "k2"]);
  assert.deepEqual([limited.more, limited.count], [true, 7]);
  const exact = ok(await etcd.kv.Range(range({ ...whole, limit: 7 }), CONTEXT));
  assert.deepEqual([exact.kvs.length, exact.more, exact.count], [7, false, 7]);

  const keys = ok(await etcd.kv.Range(range({ ...whole, keysOnly: true }), CONTEXT));
  assert.equal(keys.kvs.length, 7);
  assert.ok(keys.kvs.every((kv) => kv.value.length === 0));

  const counted = ok(await etcd.kv.Range(range({ ...whole, countOnly: true }), CONTEXT));
  assert.deepEqual([counted.kvs.length, counted.count, counted.more], [0, 7, false]);

  const down = ok(
    await etcd.kv.Range(
      range({ ...whole, limit: 3, sortOrder: RangeRequest_SortOrder.DESCEND }),
      CONTEXT,
    ),
  );
  assert.deepEqual(keysOf(down.kvs), ["k7", "k6", "k5"]);
  assert.deepEqual([down.more, down.count], [true, 7]);

  // As in etcd, a negative limit is no limit.
  const negative = ok(await etcd.kv.Range(range({ ...whole, limit: -1 }), CONTEXT));
  assert.deepEqual([negative.kvs.length, negative.more, negative.count], [7, false, 7]);
});

Deno.test("Range refuses what needs history or an unknown sort, and an answer over the message limit", async () => {
  const { fake, etcd } = setup({ maxMessageBytes: 64 * 1024 + 100 });
  const refusals: Array<[Partial<RangeRequest>, RegExp]> = [
    [{ revision: 5 }, /revision 5: TinyKV keeps no history/],
    [{ minModRevision: 2 }, /revision filters/],
    [{ sortTarget: 5 as RangeRequest_SortTarget }, /target 5: expected KEY, VERSION/],
    [{ sortOrder: 3 as RangeRequest_SortOrder }, /sort order 3: expected NONE/],
  ];
  for (const [fields, message] of refusals) {
    const result = await etcd.kv.Range(range({ key: enc("k"), ...fields }), CONTEXT);
    assert.equal(result.kind, "unimplemented", JSON.stringify(fields));
    assert.match((result as { message: string }).message, message);
  }
  assert.deepEqual(fake.calls, [], "a refused Range reads nothing");

  // 100 bytes of room past the overhead: a 4-byte key, a 72-byte value and 24 bytes of framing
  // fit, one byte more does not.
  fake.set("big1", "x".repeat(72));
  const fits = await etcd.kv.Range(range({ key: enc("big1") }), CONTEXT);
  assert.equal(fits.kind, "ok");
  fake.set("big1", "x".repeat(73));
  const over = await etcd.kv.Range(range({ key: enc("big1") }), CONTEXT);
  assert.equal(over.kind, "resourceExhausted");
  assert.match((over as { message: string }).message, /rpc_server\.max_message_bytes/);
});

Deno.test("Put and DeleteRange with prev_kv return the value they replaced, in one Txn each", async () => {
  const { fake, etcd } = setup();
  const put = (key: string, value: string, prevKv = false) =>
    etcd.kv.Put({
      key: enc(key),
      value: enc(value),
      lease: 0,
      prevKv,
      ignoreValue: false,
      ignoreLease: false,
    }, CONTEXT);

  const first = ok(await put("k", "v1", true));
  assert.equal(first.prevKv, undefined, "no previous value: none returned");
  const second = ok(await put("k", "v2", true));
  assert.equal(dec(second.prevKv!.value), "v1");
  assert.equal(fake.value("k"), "v2");
  assert.deepEqual(fake.calls, ["Txn", "Txn"], "the read and the write are one atomic step");
  assert.deepEqual(fake.txns[1].success.map((op) => [op.kind, dec(op.key), op.prev]), [
    [TxnOp_Kind.PUT, "k", true],
  ]);

  const deleted = ok(
    await etcd.kv.DeleteRange({ key: enc("k"), rangeEnd: new Uint8Array(), prevKv: true }, CONTEXT),
  );
  assert.equal(deleted.deleted, 1);
  assert.equal(dec(deleted.prevKvs[0].value), "v2");
  assert.equal(fake.value("k"), undefined);
  const again = ok(
    await etcd.kv.DeleteRange({ key: enc("k"), rangeEnd: new Uint8Array(), prevKv: true }, CONTEXT),
  );
  assert.deepEqual([again.deleted, again.prevKvs.length], [0, 0]);

  // Without prev_kv, one plain write each.
  fake.calls.length = 0;
  ok(await put("k", "v4"));
  ok(
    await etcd.kv.DeleteRange(
      { key: enc("k"), rangeEnd: new Uint8Array(), prevKv: false },
      CONTEXT,
    ),
  );
  assert.deepEqual(fake.calls, ["Put", "Delete"]);

  const leased = await etcd.kv.Put({
    key: enc("k"),
    value: enc("x"),
    lease: 5,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  }, CONTEXT);
  assert.equal(leased.kind, "unimplemented");
  assert.match((leased as { message: string }).message, /Lease 5: TinyKV has no leases/);
});

Deno.test("DeleteRange of a prefix deletes every key in it and returns them in key order", async () => {
  const { fake, etcd } = setup();
  for (const key of ["d/1", "d/2", "d/3", "d/4", "d/5", "e"]) fake.set(key, `v-${key}`);
  const result = ok(
    await etcd.kv.DeleteRange({ key: enc("d/"), rangeEnd: prefixEnd("d/"), prevKv: true }, CONTEXT),
  );
  assert.equal(result.deleted, 5);
  assert.deepEqual(keysOf(result.prevKvs), ["d/1", "d/2", "d/3", "d/4", "d/5"]);
  assert.deepEqual(result.prevKvs.map((kv) => dec(kv.value)), [
    "v-d/1",
    "v-d/2",
    "v-d/3",
    "v-d/4",
    "v-d/5",
  ]);
  assert.deepEqual([...fake.pairs.values()].map((p) => dec(p.key)), ["e"]);
});

function txn(overrides: Partial<EtcdTxnRequest>): EtcdTxnRequest {
  return { compare: [], success: [], failure: [], ...overrides };
}

const valueIs = (key: string, value: string) => ({
  result: Compare_CompareResult.EQUAL,
  target: Compare_CompareTarget.VALUE,
  key: enc(key),
  value: enc(value),
  rangeEnd: new Uint8Array(),
});

const putOp = (key: string, value: string) => ({
  requestPut: {
    key: enc(key),
    value: enc(value),
    lease: 0,
    prevKv: true,
    ignoreValue: false,
    ignoreLease: false,
  },
});

const getOp = (key: string) => ({ requestRange: range({ key: enc(key) }) });

const deleteOp = (key: string) => ({
  requestDeleteRange: { key: enc(key), rangeEnd: new Uint8Array(), prevKv: true },
});

/** A key in the same shard as `key`, or in the other one. */
function keyBeside(key: string, same: boolean): string {
  for (let i = 0;; i++) {
    const other = `${key}-${i}`;
    if ((shardOf(enc(other)) === shardOf(enc(key))) === same) return other;
  }
}

Deno.test("a Txn runs the branch its compares choose, on TinyKV's Txn, and maps each answer back", async () => {
  const { fake, etcd } = setup();
  fake.set("k", "v1");
  const near = keyBeside("k", true);
  fake.set(near, "n1");

  const hit = ok(
    await etcd.kv.Txn(
      txn({
        compare: [valueIs("k", "v1"), valueIs(near, "n1")],
        success: [putOp("k", "v2"), getOp("k"), deleteOp(near), getOp(near)],
        failure: [getOp("k")],
      }),
      CONTEXT,
    ),
  );
  assert.equal(hit.succeeded, true);
  assert.equal(dec(hit.responses[0].responsePut!.prevKv!.value), "v1");
  assert.equal(dec(hit.responses[1].responseRange!.kvs[0].value), "v2", "reads its own put");
  assert.deepEqual(
    [
      hit.responses[2].responseDeleteRange!.deleted,
      dec(hit.responses[2].responseDeleteRange!.prevKvs[0].value),
    ],
    [1, "n1"],
  );
  assert.deepEqual([
    hit.responses[3].responseRange!.count,
    hit.responses[3].responseRange!.kvs.length,
  ], [0, 0]);
  assert.equal(fake.value("k"), "v2");
  assert.equal(fake.value(near), undefined);
  assert.equal(fake.txns.length, 1, "one atomic Txn");

  const miss = ok(
    await etcd.kv.Txn(
      txn({ compare: [valueIs("k", "v1")], success: [putOp("k", "v3")], failure: [getOp("k")] }),
      CONTEXT,
    ),
  );
  assert.equal(miss.succeeded, false);
  assert.equal(dec(miss.responses[0].responseRange!.kvs[0].value), "v2");
  assert.equal(fake.value("k"), "v2");

  // Create only when absent: create_revision = 0 becomes "does not exist".
  const absent = {
    result: Compare_CompareResult.EQUAL,
    target: Compare_CompareTarget.CREATE,
    key: enc("new"),
    createRevision: 0,
    rangeEnd: new Uint8Array(),
  };
  const created = ok(
    await etcd.kv.Txn(txn({ compare: [absent], success: [putOp("new", "n1")] }), CONTEXT),
  );
  assert.equal(created.succeeded, true);
  const notAgain = ok(
    await etcd.kv.Txn(txn({ compare: [absent], success: [putOp("new", "n2")] }), CONTEXT),
  );
  assert.equal(notAgain.succeeded, false);
  assert.equal(fake.value("new"), "n1");
  const exists = {
    result: Compare_CompareResult.GREATER,
    target: Compare_CompareTarget.VERSION,
    key: enc("new"),
    version: 0,
    rangeEnd: new Uint8Array(),
  };
  assert.equal(ok(await etcd.kv.Txn(txn({ compare: [exists] }), CONTEXT)).succeeded, true);

  // A lease is always 0: "lease = 0" holds, "lease > 0" fails the Txn (its failure branch runs).
  const lease = (result: Compare_CompareResult) => ({
    result,
    target: Compare_CompareTarget.LEASE,
    key: enc("k"),
    lease: 0,
    rangeEnd: new Uint8Array(),
  });
  const leaseHolds = ok(
    await etcd.kv.Txn(
      txn({ compare: [lease(Compare_CompareResult.EQUAL)], success: [getOp("k")] }),
      CONTEXT,
    ),
  );
  assert.equal(leaseHolds.succeeded, true);
  const leaseFails = ok(
    await etcd.kv.Txn(
      txn({
        compare: [lease(Compare_CompareResult.GREATER)],
        success: [putOp("k", "no")],
        failure: [getOp("k")],
      }),
      CONTEXT,
    ),
  );
  assert.equal(leaseFails.succeeded, false);
  assert.equal(fake.value("k"), "v2");

  const empty = ok(await etcd.kv.Txn(txn({}), CONTEXT));
  assert.deepEqual([empty.succeeded, empty.responses.length], [true, 0]);
});

Deno.test("a Txn TinyKV cannot run is refused with its status and changes nothing", async () => {
  const { fake, etcd } = setup();
  fake.set("k", "v");
  const far = keyBeside("k", false);
  const refusals: Array<[EtcdTxnRequest, string, RegExp]> = [
    [
      txn({ compare: [valueIs("k", "v")], success: [putOp(far, "x")] }),
      "failedPrecondition",
      /must be in one shard: key "k" is in shard \d and key "k-\d+" in shard \d/,
    ],
    [
      txn({ compare: [{ ...valueIs("k", "v"), rangeEnd: enc("z") }] }),
      "failedPrecondition",
      /range_end is set/,
    ],
    [
      txn({ success: [{ requestRange: range({ key: enc("a"), rangeEnd: enc("b") }) }] }),
      "failedPrecondition",
      /A Txn Range names a range/,
    ],
    [
      txn({
        compare: [{
          result: Compare_CompareResult.GREATER,
          target: Compare_CompareTarget.MOD,
          key: enc("k"),
          modRevision: 3,
          rangeEnd: new Uint8Array(),
        }],
      }),
      "unimplemented",
      /against 3: a revision or version/,
    ],
    [
      txn({ success: [{ requestPut: { ...putOp("k", "x").requestPut, lease: 7 } }] }),
      "unimplemented",
      /Lease 7: TinyKV has no leases/,
    ],
    [txn({ success: [{ requestTxn: txn({}) }] }), "unimplemented", /inside a Txn/],
    [txn({ success: [{}] }), "invalidArgument", /names no request/],
  ];
  for (const [request, kind, message] of refusals) {
    const result = await etcd.kv.Txn(request, CONTEXT);
    assert.equal(result.kind, kind, JSON.stringify(result));
    assert.match((result as { message: string }).message, message);
  }
  assert.equal(fake.value("k"), "v");
  assert.equal(fake.value(far), undefined);
});

Deno.test("a failure of the KV underneath is the etcd call's failure", async () => {
  const { fake, etcd } = setup();
  fake.failAll = rpcFailure("unavailable", "No leader for shard 3");
  const result = await etcd.kv.Range(range({ key: enc("p"), rangeEnd: prefixEnd("p") }), CONTEXT);
  assert.deepEqual(result, { kind: "unavailable", message: "No leader for shard 3" });
});

Deno.test("Status and MemberList describe the gateways; Compact up to revision 1 changes nothing", async () => {
  const { fake, etcd } = setup();
  fake.set("k", "v");
  const status = ok(await etcd.maintenance.Status({}, CONTEXT));
  assert.equal(status.header?.memberId, idOf("127.0.0.1:7700"));
  assert.equal(status.header?.clusterId, idOf("c-test"));
  assert.match(status.version, /^3\.4\.0\+tinykv$/);
  const members = ok(await etcd.cluster.MemberList({ linearizable: false }, CONTEXT)).members;
  assert.deepEqual(members.map((m) => m.clientURLs), [["127.0.0.1:7700"], ["127.0.0.1:7701"]]);
  assert.equal(members[0].ID, status.header?.memberId);
  assert.notEqual(members[0].ID, members[1].ID);
  ok(await etcd.kv.Compact({ revision: 1, physical: true }, CONTEXT));
  ok(await etcd.kv.Compact({ revision: 0, physical: false }, CONTEXT));
  // One past the current revision: etcd's error, word for word (its clients match the text), and
  // its status (OUT_OF_RANGE, rpctypes.ErrGRPCFutureRev).
  assert.deepEqual(await etcd.kv.Compact({ revision: 2, physical: false }, CONTEXT), {
    kind: "outOfRange",
    message: "etcdserver: mvcc: required revision is a future revision",
  });
  assert.equal(fake.value("k"), "v");
  const alarms = ok(await etcd.maintenance.Alarm({ action: 0, memberID: 0, alarm: 0 }, CONTEXT));
  assert.deepEqual(alarms.alarms, []);
});

Deno.test("ids are below 2^48, non-zero and differ between addresses", () => {
  const ids = new Set<number>();
  for (let port = 7000; port < 8000; port++) {
    const id = idOf(`127.0.0.1:${port}`);
    assert.ok(Number.isSafeInteger(id) && id > 0 && id < 2 ** 48, String(id));
    ids.add(id);
  }
  assert.equal(ids.size, 1000);
});

Deno.test("every etcd service TinyKV lacks is declared, so its calls get a reason", () => {
  const { options } = setup();
  const paths = etcdServices(options).flatMap((binding) =>
    Object.values(binding.definition).map((method) => method.path)
  );
  for (
    const path of [
      "/etcdserverpb.KV/Range",
      "/etcdserverpb.Watch/Watch",
      "/etcdserverpb.Lease/LeaseGrant",
      "/etcdserverpb.Lease/LeaseKeepAlive",
      "/etcdserverpb.Auth/Authenticate",
      "/etcdserverpb.Maintenance/Snapshot",
      "/etcdserverpb.Cluster/MemberAdd",
    ]
  ) {
    assert.ok(paths.includes(path), path);
  }
  assert.equal(new Set(paths).size, paths.length, "no method is declared twice");
});

Deno.test("DeleteRange with prev_kv whose values would not fit one answer deletes nothing", async () => {
  // 100 bytes of room past the overhead.
  const { fake, etcd } = setup({ maxMessageBytes: 64 * 1024 + 100 });
  const deleteAll = () =>
    etcd.kv.DeleteRange({ key: enc("r/"), rangeEnd: prefixEnd("r/"), prevKv: true }, CONTEXT);
  fake.set("r/1", "x".repeat(23));
  fake.set("r/2", "y".repeat(24));
  fake.set("r/3", "z".repeat(23));
  const refused = await deleteAll();
  assert.equal(refused.kind, "resourceExhausted");
  assert.match(
    (refused as { message: string }).message,
    /would return 3 keys and 151 bytes.*nothing was deleted/,
  );
  assert.equal(fake.pairs.size, 3);
  // One past: 2 × (3 + 24) + 23 + 24 = 101 bytes with the framing of two pairs.
  fake.pairs.delete(hex(enc("r/3")));
  const onePast = await deleteAll();
  assert.equal(onePast.kind, "resourceExhausted");
  assert.match((onePast as { message: string }).message, /2 keys and 101 bytes/);
  assert.equal(fake.pairs.size, 2);
  // At the limit (2 × (3 + 23 + 24) = 100 bytes): deleted and returned.
  fake.set("r/2", "y".repeat(23));
  const fits = ok(await deleteAll());
  assert.deepEqual([fits.deleted, fits.prevKvs.length, fake.pairs.size], [2, 2, 0]);
});

Deno.test("Range sorts by value as etcd does with order NONE, and by revisions in key order", async () => {
  const { fake, etcd } = setup();
  // Values out of key order, two of them equal, one a prefix of another (bytewise: shorter first).
  const values: Record<string, string> = {
    s1: "pear",
    s2: "apple",
    s3: "fig",
    s4: "apple",
    s5: "ap",
  };
  for (const [key, value] of Object.entries(values)) fake.set(key, value);
  const whole = { key: enc("s"), rangeEnd: prefixEnd("s") };
  const sorted = async (fields: Partial<RangeRequest>) => {
    const answer = ok(await etcd.kv.Range(range({ ...whole, ...fields }), CONTEXT));
    return { ...answer, pairs: answer.kvs.map((kv) => `${dec(kv.key)}=${dec(kv.value)}`) };
  };
  const byValue = { sortTarget: RangeRequest_SortTarget.VALUE };

  // etcdctl get --sort-by=VALUE sends order NONE: ascending by value; equal values in key order.
  const none = await sorted(byValue);
  assert.deepEqual(none.pairs, ["s5=ap", "s2=apple", "s4=apple", "s3=fig", "s1=pear"]);
  const ascend = await sorted({ ...byValue, sortOrder: RangeRequest_SortOrder.ASCEND });
  assert.deepEqual(ascend.pairs, none.pairs);
  const descend = await sorted({ ...byValue, sortOrder: RangeRequest_SortOrder.DESCEND });
  assert.deepEqual(descend.pairs, ["s1=pear", "s3=fig", "s2=apple", "s4=apple", "s5=ap"]);

  // The whole range is sorted before the limit: the smallest values, though the last keys.
  const limited = await sorted({ ...byValue, limit: 2 });
  assert.deepEqual(limited.pairs, ["s5=ap", "s2=apple"]);
  assert.deepEqual([limited.more, limited.count], [true, 5]);
  const keysOnly = await sorted({ ...byValue, limit: 3, keysOnly: true });
  assert.deepEqual(
    keysOnly.pairs,
    ["s5=", "s2=", "s4="],
    "sorted by the values it does not return",
  );

  // Every version and revision is 1: sorted by them, in either direction, is key order.
  for (
    const target of [
      RangeRequest_SortTarget.VERSION,
      RangeRequest_SortTarget.CREATE,
      RangeRequest_SortTarget.MOD,
    ]
  ) {
    for (const order of [RangeRequest_SortOrder.NONE, RangeRequest_SortOrder.DESCEND]) {
      const answer = await sorted({ sortTarget: target, sortOrder: order, limit: 4 });
      assert.deepEqual(keysOf(answer.kvs), ["s1", "s2", "s3", "s4"], `target ${target}`);
      assert.deepEqual([answer.more, answer.count], [true, 5]);
    }
  }
});

Deno.test("Range with a limit holds values only for the keys it answers, and counts the rest", async () => {
  // 100 bytes of room past the overhead; each pair below takes 100 (3 + 73 + 24 of framing), so
  // the range holds 10 answers' worth: more than the 4 a Range may hold while it reads.
  const { fake, etcd } = setup({ maxMessageBytes: 64 * 1024 + 100 });
  for (let i = 0; i < 10; i++) fake.set(`b/${i}`, String(i).repeat(73));
  const whole = { key: enc("b/"), rangeEnd: prefixEnd("b/") };

  const first = ok(await etcd.kv.Range(range({ ...whole, limit: 1 }), CONTEXT));
  assert.deepEqual([keysOf(first.kvs), first.count, first.more], [["b/0"], 10, true]);
  assert.equal(dec(first.kvs[0].value), "0".repeat(73));
  // What is answered is copied out of the page it came in: the page is not held.
  assert.equal(first.kvs[0].value.buffer.byteLength, 73);
  assert.equal(first.kvs[0].key.buffer.byteLength, 3);

  const last = ok(
    await etcd.kv.Range(
      range({ ...whole, limit: 1, sortOrder: RangeRequest_SortOrder.DESCEND }),
      CONTEXT,
    ),
  );
  assert.deepEqual([keysOf(last.kvs), last.count, last.more], [["b/9"], 10, true]);
  assert.equal(dec(last.kvs[0].value), "9".repeat(73));

  const counted = ok(await etcd.kv.Range(range({ ...whole, countOnly: true }), CONTEXT));
  assert.deepEqual([counted.count, counted.kvs.length], [10, 0]);
  // Three keys of 3 bytes take 81 bytes with their framing; a fourth would take 108.
  const keys = ok(await etcd.kv.Range(range({ ...whole, keysOnly: true, limit: 3 }), CONTEXT));
  assert.deepEqual([keysOf(keys.kvs), keys.count, keys.more], [["b/0", "b/1", "b/2"], 10, true]);
  const allKeys = await etcd.kv.Range(range({ ...whole, keysOnly: true }), CONTEXT);
  assert.equal(allKeys.kind, "resourceExhausted");
  assert.match((allKeys as { message: string }).message, /at least 4 keys and 108 bytes/);

  // Without a limit the answer is the whole range: refused as soon as it cannot fit.
  const all = await etcd.kv.Range(range(whole), CONTEXT);
  assert.equal(all.kind, "resourceExhausted");
  assert.match((all as { message: string }).message, /at least 2 keys and 200 bytes/);
});

Deno.test("Range keeps at most 4 answers' worth while it sorts by value or keeps the last keys", async () => {
  // 100 bytes of room past the overhead: a Range may hold 400 while it reads.
  const { fake, etcd } = setup({ maxMessageBytes: 64 * 1024 + 100 });
  const set = (key: string, valueBytes: number) => fake.set(key, "v".repeat(valueBytes));
  // Four pairs of 100 bytes each (3 + 73 + 24): 400, at the limit.
  for (let i = 1; i <= 4; i++) set(`h/${i}`, 73);
  const whole = { key: enc("h/"), rangeEnd: prefixEnd("h/") };
  const byValue = range({ ...whole, sortTarget: RangeRequest_SortTarget.VALUE, limit: 1 });
  const atLimit = ok(await etcd.kv.Range(byValue, CONTEXT));
  assert.deepEqual([keysOf(atLimit.kvs), atLimit.count], [["h/1"], 4]);
  set("h/4", 74);
  const onePast = await etcd.kv.Range(byValue, CONTEXT);
  assert.equal(onePast.kind, "resourceExhausted");
  assert.match((onePast as { message: string }).message, /4 keys and 401 bytes .* 400 bytes/);

  // Descending with limit 2 keeps a window of the last 2 pairs: at most 400 at any time, though
  // the answer (the last two, small) fits.
  fake.pairs.clear();
  set("h/1", 173); // 200 bytes with its key and framing
  set("h/2", 173);
  set("h/3", 1);
  set("h/4", 1);
  const descend = range({ ...whole, limit: 2, sortOrder: RangeRequest_SortOrder.DESCEND });
  const window = ok(await etcd.kv.Range(descend, CONTEXT));
  assert.deepEqual([keysOf(window.kvs), window.count, window.more], [["h/4", "h/3"], 4, true]);
  set("h/2", 174);
  const wider = await etcd.kv.Range(descend, CONTEXT);
  assert.equal(wider.kind, "resourceExhausted");
  assert.match(
    (wider as { message: string }).message,
    /^Range would hold 2 keys and 401 bytes .*the most it may is 400 bytes/,
  );
});

Deno.test("Range and DeleteRange over ranges run at most rangesInFlightMax at once", async () => {
  const { fake, etcd } = setup({ rangesInFlightMax: 2 });
  for (const key of ["g/1", "g/2", "g/3"]) fake.set(key, "v");
  const gate = Promise.withResolvers<void>();
  fake.scanGate = gate.promise;
  const prefix = { key: enc("g/"), rangeEnd: prefixEnd("g/") };
  // At the limit: two ranges in flight, waiting on their scans.
  const first = etcd.kv.Range(range(prefix), CONTEXT);
  const second = etcd.kv.DeleteRange({ ...prefix, prevKv: false }, CONTEXT);
  // One past: refused at once, with what to do.
  for (
    const refused of [
      await etcd.kv.Range(range({ ...prefix, countOnly: true }), CONTEXT),
      await etcd.kv.DeleteRange({ ...prefix, prevKv: false }, CONTEXT),
    ]
  ) {
    assert.equal(refused.kind, "resourceExhausted");
    assert.match((refused as { message: string }).message, /2 Range and DeleteRange .*retry later/);
  }
  // One key is not a range: served meanwhile.
  assert.equal(ok(await etcd.kv.Range(range({ key: enc("g/1") }), CONTEXT)).count, 1);
  gate.resolve();
  assert.equal(ok(await first).count, 3);
  assert.equal(ok(await second).deleted, 3);
  // Both slots are free again.
  fake.set("g/4", "v");
  assert.equal(ok(await etcd.kv.Range(range(prefix), CONTEXT)).count, 1);
});

/** Lets every promise callback that can run, run (the stand-in answers without timers). */
async function settle(): Promise<void> {
  for (let i = 0; i < 1000; i++) await Promise.resolve();
}

/**
 * Batches of a range delete (Txns of deletes) that wait until released, each with the answer it
 * is released with: `started` holds each batch's keys, `answer(i, …)` releases the `i`th.
 */
function heldBatches(fake: FakeKv) {
  const started: string[][] = [];
  const release: Array<(result: RpcResult<TxnResponse>) => void> = [];
  fake.onTxn = (request) => {
    started.push(request.success.map((op) => dec(op.key)));
    return new Promise((resolve) => release.push(resolve));
  };
  const answer = (i: number, result: RpcResult<TxnResponse> | "deleted") => {
    if (result !== "deleted") return release[i](result);
    const results = started[i].map((key) => ({
      found: fake.pairs.delete(hex(enc(key))),
      value: new Uint8Array(),
    }));
    release[i](rpcOk({ succeeded: true, results }));
  };
  return { started, answer };
}

Deno.test("deleteBatchesOf() makes Txns of one shard's keys within a Txn's limits", () => {
  const keys = (n: number, bytes = 8, tag = "a") =>
    Array.from({ length: n }, (_, i) => enc(`{${tag}}${String(i).padStart(bytes - 3, "0")}`));
  const oneShard = () => 7;
  const sizes = (batches: Uint8Array[][]) => batches.map((batch) => batch.length);
  // 128 keys make one batch; the 129th starts another.
  assert.deepEqual(sizes(deleteBatchesOf(keys(128), { shardOf: oneShard, valueBytesMax: 1 })), [
    128,
  ]);
  assert.deepEqual(
    sizes(deleteBatchesOf(keys(129), { shardOf: oneShard, valueBytesMax: 1 })),
    [128, 1],
  );
  // Bytes: a Txn carries at most 4,096 + 2 × valueBytesMax, counting 16 bytes per delete. Keys
  // of 1,000 bytes and a value limit of 64: 4,224 bytes; 4 keys take 4,064.
  const long = keys(5, 1000);
  assert.deepEqual(sizes(deleteBatchesOf(long, { shardOf: oneShard, valueBytesMax: 64 })), [4, 1]);
  // A value limit of 1,036 makes 6,168 bytes: room for 6 keys (6,096), not 7 (7,112).
  const seven = keys(7, 1000);
  assert.deepEqual(
    sizes(deleteBatchesOf(seven, { shardOf: oneShard, valueBytesMax: 1036 })),
    [6, 1],
  );
  // 7 × 1,016 = 7,112 = 4,096 + 2 × 1,508: at the limit, one batch; a byte less, two.
  assert.deepEqual(
    sizes(deleteBatchesOf(seven, { shardOf: oneShard, valueBytesMax: 1508 })),
    [7],
  );
  assert.deepEqual(
    sizes(deleteBatchesOf(seven, { shardOf: oneShard, valueBytesMax: 1507 })),
    [6, 1],
  );
  // prev_kv: the values as scanned add up to at most valueBytesMax per batch.
  const five = keys(5);
  assert.deepEqual(
    sizes(
      deleteBatchesOf(five, {
        shardOf: oneShard,
        valueBytes: [40, 30, 30, 1, 0],
        valueBytesMax: 100,
      }),
    ),
    [3, 2],
  );
  assert.deepEqual(
    sizes(
      deleteBatchesOf(five, {
        shardOf: oneShard,
        valueBytes: [40, 30, 29, 1, 0],
        valueBytesMax: 100,
      }),
    ),
    [5],
  );
  // A value at the limit shares a batch with no other value, and a key whose shard is not known
  // is a batch of its own.
  assert.deepEqual(
    sizes(
      deleteBatchesOf(five, {
        shardOf: oneShard,
        valueBytes: [1, 100, 1, 0, 0],
        valueBytesMax: 100,
      }),
    ),
    [1, 1, 3],
  );
  const unknown = (key: Uint8Array) => (dec(key).endsWith("2") ? undefined : 1);
  assert.deepEqual(sizes(deleteBatchesOf(five, { shardOf: unknown, valueBytesMax: 100 })), [4, 1]);
  // Keys of two shards never share a batch, and each batch keeps the keys' order.
  const mixed = [...keys(3, 8, "a"), ...keys(3, 8, "b")].sort(compareBytes);
  const batches = deleteBatchesOf(mixed, { shardOf, valueBytesMax: 100 });
  for (const batch of batches) {
    assert.equal(new Set(batch.map(shardOf)).size, 1, "one shard per batch");
    assert.deepEqual(batch, [...batch].sort(compareBytes));
  }
  assert.deepEqual(batches.flat().map(dec).sort(), mixed.map(dec).sort(), "every key once");
});

Deno.test("DeleteRange deletes a range in Txns of up to 128 keys of one shard", async () => {
  for (const prevKv of [false, true]) {
    const { fake, etcd } = setup();
    const keys = Array.from({ length: 300 }, (_, i) => `d/${String(i).padStart(3, "0")}`);
    for (const key of keys) fake.set(key, `v${key}`);
    fake.set("d0", "outside");
    const deleted = ok(
      await etcd.kv.DeleteRange({ key: enc("d/"), rangeEnd: prefixEnd("d/"), prevKv }, CONTEXT),
    );
    assert.equal(deleted.deleted, 300);
    assert.deepEqual(
      deleted.prevKvs.map((kv) => [dec(kv.key), dec(kv.value)]),
      prevKv ? keys.map((key) => [key, `v${key}`]) : [],
    );
    assert.deepEqual([...fake.pairs.values()].map((pair) => dec(pair.key)), ["d0"]);
    assert.equal(fake.calls.filter((call) => call === "Delete").length, 0, "no key by key");
    const perShard = new Map<number, number>();
    for (const txn of fake.txns) {
      assert.ok(txn.success.length <= 128, `a batch of ${txn.success.length}`);
      assert.ok(txn.success.every((op) => op.kind === TxnOp_Kind.DELETE && op.prev === prevKv));
      const shard = shardOf(txn.success[0].key);
      perShard.set(shard, (perShard.get(shard) ?? 0) + 1);
    }
    const inShard = (s: number) => keys.filter((key) => shardOf(enc(key)) === s).length;
    for (const s of [1, 2]) {
      assert.equal(perShard.get(s), Math.ceil(inShard(s) / 128), `Txns of shard ${s}`);
    }
  }
});

Deno.test("DeleteRange deletes a batch refused as INVALID_ARGUMENT again key by key", async () => {
  for (const prevKv of [false, true]) {
    const { fake, etcd } = setup();
    for (let i = 0; i < 10; i++) fake.set(`{r}${i}`, `v${i}`);
    let refused = 0;
    fake.onTxn = (request) => {
      if (request.success.length === 1) return undefined;
      refused++;
      return Promise.resolve(rpcFailure("invalidArgument", "Txn would return too much"));
    };
    const answer = ok(
      await etcd.kv.DeleteRange({ key: enc("{r}"), rangeEnd: prefixEnd("{r}"), prevKv }, CONTEXT),
    );
    assert.equal(refused, 1);
    assert.equal(answer.deleted, 10);
    assert.equal(answer.prevKvs.length, prevKv ? 10 : 0);
    assert.equal(fake.pairs.size, 0);
    const single = prevKv ? "Txn" : "Delete";
    assert.equal(fake.calls.filter((call) => call === single).length, 10);
  }
});

Deno.test("DeleteRange counts the keys of a batch deleted key by key when one of them fails", async () => {
  const { fake, etcd } = setup();
  for (const key of ["{r}a", "{r}b", "{r}c"]) fake.set(key, "v");
  fake.onTxn = (request) => {
    if (request.success.length > 1) {
      return Promise.resolve(rpcFailure("invalidArgument", "Txn would return too much"));
    }
    if (dec(request.success[0].key) !== "{r}b") return undefined;
    return Promise.resolve(rpcFailure("deadlineExceeded", "No answer in time"));
  };
  const result = await etcd.kv.DeleteRange(
    { key: enc("{r}"), rangeEnd: prefixEnd("{r}"), prevKv: true },
    CONTEXT,
  );
  assert.equal(result.kind, "deadlineExceeded");
  assert.match(
    (result as { message: string }).message,
    /deleted 1 of the range's 3 keys, then a delete failed \(DEADLINE_EXCEEDED: No answer in time\); 1 keys of failed deletes may have been deleted and 1 keys were not tried/,
  );
  assert.deepEqual([...fake.pairs.values()].map((pair) => dec(pair.key)).sort(), ["{r}b", "{r}c"]);
});

Deno.test("DeleteRange starts no batch after one fails, waits for those in flight, and says how many it deleted", async () => {
  const { fake, etcd } = setup({ valueBytesMax: 64 });
  // Keys of 1,000 bytes: 4 to a batch (a Txn carries at most 4,224 bytes with values of 64), so
  // 80 keys in two shards make more than 16 batches.
  const keys = Array.from(
    { length: 80 },
    (_, i) => `x/${String(i).padStart(2, "0")}`.padEnd(1000, "k"),
  );
  for (const key of keys) fake.set(key, "v");
  const batches = heldBatches(fake);
  let answered = false;
  const call = Promise.resolve(etcd.kv.DeleteRange(
    { key: enc("x/"), rangeEnd: prefixEnd("x/"), prevKv: false },
    CONTEXT,
  )).finally(() => (answered = true));
  await settle();
  assert.equal(batches.started.length, 16, "16 batches in flight");
  assert.ok(batches.started.every((batch) => batch.length === 4), "batches of 4");

  batches.answer(0, rpcFailure("unavailable", "No leader for shard 2"));
  await settle();
  assert.equal(answered, false, "no answer while batches are in flight");
  for (let i = 1; i < 16; i++) batches.answer(i, "deleted");
  const result = await call;
  assert.equal(batches.started.length, 16, "no batch started after the failure");
  assert.equal(result.kind, "deadlineExceeded", "some keys were deleted: a partial outcome");
  const message = (result as { message: string }).message;
  assert.match(message, /^Outcome unknown: DeleteRange deleted 60 of the range's 80 keys, then /);
  assert.match(message, /a delete failed \(UNAVAILABLE: No leader for shard 2\); 0 keys of /);
  assert.match(message, /failed deletes may have been deleted and 16 keys were not tried/);
  assert.equal(fake.pairs.size, 20);
});

Deno.test("DeleteRange that changed nothing before its deletes failed keeps the failure's status", async () => {
  const { fake, etcd } = setup();
  // Ten keys of each shard.
  const all = Array.from({ length: 1000 }, (_, i) => `y/${String(i).padStart(3, "0")}`);
  const keys = [1, 2].flatMap((s) => all.filter((key) => shardOf(enc(key)) === s).slice(0, 10));
  assert.equal(keys.length, 20, "ten keys in each shard");
  for (const key of keys) fake.set(key, "v");
  const batches = heldBatches(fake);
  const call = etcd.kv.DeleteRange(
    { key: enc("y/"), rangeEnd: prefixEnd("y/"), prevKv: false },
    CONTEXT,
  );
  await settle();
  assert.equal(batches.started.length, 2, "a batch per shard");
  for (let i = 0; i < 2; i++) batches.answer(i, rpcFailure("unavailable", "No leader for shard 1"));
  const result = await call;
  assert.equal(result.kind, "unavailable");
  const message = (result as { message: string }).message;
  assert.match(message, /deleted 0 of the range's 20 keys: a delete failed \(UNAVAILABLE: /);
  assert.match(message, /No leader for shard 1\), and 0 were not tried; nothing changed$/);

  // A batch whose outcome is unknown may have applied: DEADLINE_EXCEEDED, though none is known.
  const again = etcd.kv.DeleteRange(
    { key: enc("y/"), rangeEnd: prefixEnd("y/"), prevKv: false },
    CONTEXT,
  );
  await settle();
  assert.equal(batches.started.length, 4);
  const unknownKeys = batches.started[2].length;
  batches.answer(2, rpcFailure("deadlineExceeded", "No answer in time"));
  batches.answer(3, rpcFailure("unavailable", "No leader for shard 1"));
  const unknown = await again;
  assert.equal(unknown.kind, "deadlineExceeded");
  assert.match(
    (unknown as { message: string }).message,
    new RegExp(
      `deleted 0 of the range's 20 keys, .*; ${unknownKeys} keys of failed deletes may have ` +
        "been deleted and 0 keys",
    ),
  );
  assert.equal(fake.pairs.size, 20);
});

Deno.test("a Txn whose answer might not fit one message is refused before it is proposed", async () => {
  // 1,000 bytes of room past the overhead; values of at most 100 bytes. Keys of one hash tag
  // share a shard.
  const { fake, etcd } = setup({ maxMessageBytes: 64 * 1024 + 1000, valueBytesMax: 100 });
  const k = "{t}k";
  fake.set(k, "v");
  // A put with prev_kv and a get return a key and a value each: 2 × 64 bytes of framing, the two
  // keys, and 2 values of at most 100 bytes.
  const bound = (key: string) => 2 * 64 + enc(k).length + enc(key).length + 2 * 100;
  const key = "{t}" + "x".repeat(1000 - bound("{t}"));
  assert.equal(bound(key), 1000);
  for (const branch of ["success", "failure"] as const) {
    const request = (other: string) =>
      txn({
        compare: [valueIs(k, branch === "success" ? "v" : "not v")],
        [branch]: [putOp(k, `by ${branch}`), getOp(other)],
      });
    fake.txns.length = 0;
    const atLimit = ok(await etcd.kv.Txn(request(key), CONTEXT));
    assert.equal(atLimit.succeeded, branch === "success");
    assert.equal(fake.value(k), `by ${branch}`);
    fake.set(k, "v");
    const onePast = await etcd.kv.Txn(request(`${key}x`), CONTEXT);
    assert.equal(onePast.kind, "invalidArgument", branch);
    assert.match(
      (onePast as { message: string }).message,
      new RegExp(`^Txn's ${branch} branch could answer 1001 bytes .*about 1000 bytes .*nothing`),
    );
    assert.equal(fake.txns.length, 1, "the refused Txn was not proposed");
    assert.equal(fake.value(k), "v");
  }
  // Counts only return no key and no value: 64 bytes each, 15 of them fit, 16 do not.
  const count = (i: number) => ({ requestRange: range({ key: enc(`{t}${i}`), countOnly: true }) });
  const fifteen = Array.from({ length: 15 }, (_, i) => count(i));
  assert.equal(ok(await etcd.kv.Txn(txn({ success: fifteen }), CONTEXT)).responses.length, 15);
  const sixteen = [...fifteen, count(15)];
  assert.equal((await etcd.kv.Txn(txn({ success: sixteen }), CONTEXT)).kind, "invalidArgument");
});

Deno.test("valueBytesBound() is the largest value limit a config admits for a message size", () => {
  // docs/design.md "Limits and bad input": 2,062,144 bytes with the default 8 MiB messages.
  assert.equal(valueBytesBound(8 * 1024 * 1024), 2_062_144);
  assert.equal(valueBytesBound(64 * 1024), 0);
  // With that limit no Txn a gateway accepts can answer more than one message holds: 2 values,
  // keys of as many bytes as a Txn carries (4,096 + 2 values), 128 operations' framing.
  const max = 8 * 1024 * 1024;
  const value = valueBytesBound(max);
  assert.ok(2 * value + (4096 + 2 * value) + 128 * 64 <= max - 64 * 1024);
});

Deno.test("the framing constants bound what a KeyValue and a Txn operation take when encoded", () => {
  const key = new Uint8Array(4096).fill(0x6b);
  const value = new Uint8Array(3 << 20).fill(0x76); // past 2^21: a 4-byte length
  const header = { clusterId: 2 ** 48 - 1, memberId: 2 ** 48 - 1, revision: REVISION, raftTerm: 0 };
  const kv = {
    key,
    value,
    createRevision: REVISION,
    modRevision: REVISION,
    version: REVISION,
    lease: 0,
  };
  const rangeBytes = (kvs: typeof kv[]) =>
    RangeResponse.encode({ header, kvs, more: true, count: 2 ** 40 }).length;
  assert.ok(rangeBytes([kv]) - rangeBytes([]) <= 4096 + value.length + KEY_VALUE_FRAMING_BYTES);
  const txnBytes = (responses: ResponseOp[]) =>
    EtcdTxnResponse.encode({ header, succeeded: true, responses }).length;
  const empty = txnBytes([]);
  const ops: ResponseOp[] = [
    { responseRange: { header, kvs: [kv], more: false, count: 1 } },
    { responsePut: { header, prevKv: kv } },
    { responseDeleteRange: { header, deleted: 1, prevKvs: [kv] } },
  ];
  for (const op of ops) {
    const bytes = txnBytes([op]) - empty;
    assert.ok(
      bytes <= 4096 + value.length + RESPONSE_OP_FRAMING_BYTES,
      `${Object.keys(op)}: ${bytes - 4096 - value.length} bytes of framing`,
    );
  }
});

Deno.test("a Txn that writes one key twice in a branch is refused as etcd refuses it", async () => {
  const { fake, etcd } = setup();
  fake.set("k", "v");
  const del = (key: string) => ({
    requestDeleteRange: { key: enc(key), rangeEnd: new Uint8Array(), prevKv: false },
  });
  const refused: EtcdTxnRequest[] = [
    txn({ success: [putOp("k", "1"), putOp("k", "2")] }),
    txn({ success: [del("k"), putOp("k", "1")] }),
    txn({ failure: [putOp("k", "1"), getOp("k"), del("k")] }),
  ];
  for (const request of refused) {
    assert.deepEqual(await etcd.kv.Txn(request, CONTEXT), {
      kind: "invalidArgument",
      message: "etcdserver: duplicate key given in txn request",
    });
  }
  assert.equal(fake.txns.length, 0, "nothing was proposed");
  assert.equal(fake.value("k"), "v");
  // Reads of a written key, two deletes of one key, and one write of a key in each branch are
  // allowed, as in etcd.
  const allowed: EtcdTxnRequest[] = [
    txn({ success: [getOp("k"), putOp("k", "1"), getOp("k")] }),
    txn({ success: [del("k"), del("k")] }),
    txn({ success: [putOp("k", "2")], failure: [putOp("k", "3")] }),
  ];
  for (const request of allowed) ok(await etcd.kv.Txn(request, CONTEXT));
  assert.equal(fake.txns.length, 3);
  assert.equal(fake.value("k"), "2");
});

Deno.test("a compare whose operand is in another member than its target's is refused", async () => {
  const { fake, etcd } = setup();
  fake.set("k", "v");
  const compare = (target: Compare_CompareTarget, operand: Record<string, unknown>) => ({
    result: Compare_CompareResult.EQUAL,
    target,
    key: enc("k"),
    rangeEnd: new Uint8Array(),
    ...operand,
  });
  const refusals: Array<[ReturnType<typeof compare>, RegExp]> = [
    [
      compare(Compare_CompareTarget.VALUE, { version: 0 }),
      /in "version": its target compares "value"/,
    ],
    [
      compare(Compare_CompareTarget.MOD, { createRevision: 0 }),
      /in "create_revision": its target compares "mod_revision"/,
    ],
    [compare(Compare_CompareTarget.LEASE, { value: enc("v") }), /in "value": .* "lease"/],
  ];
  for (const [wrong, message] of refusals) {
    const result = await etcd.kv.Txn(
      txn({ compare: [wrong], success: [putOp("k", "x")] }),
      CONTEXT,
    );
    assert.equal(result.kind, "invalidArgument");
    assert.match((result as { message: string }).message, message);
  }
  assert.equal(fake.value("k"), "v");
  // No operand at all is etcd's 0 (or an empty value): "version = 0" fails, the key exists.
  const none = ok(
    await etcd.kv.Txn(
      txn({ compare: [compare(Compare_CompareTarget.VERSION, {})], success: [putOp("k", "x")] }),
      CONTEXT,
    ),
  );
  assert.equal(none.succeeded, false);
});

Deno.test("clientUrlOf() gives a URL etcd clients dial: https with TLS, no wildcard host", () => {
  const cases: Array<[string, boolean, string]> = [
    ["127.0.0.1:7700", false, "127.0.0.1:7700"],
    ["127.0.0.1:7700", true, "https://127.0.0.1:7700"],
    ["gw1.example:7700", true, "https://gw1.example:7700"],
    ["0.0.0.0:7700", false, "127.0.0.1:7700"],
    ["0.0.0.0:7700", true, "https://127.0.0.1:7700"],
    [":7700", false, "127.0.0.1:7700"],
    [":::7700", false, "127.0.0.1:7700"],
    ["[::]:7700", false, "127.0.0.1:7700"],
    ["::1:7700", false, "[::1]:7700"],
    ["[::1]:7700", true, "https://[::1]:7700"],
  ];
  for (const [address, tls, url] of cases) {
    assert.equal(clientUrlOf(address, tls), url, `${address} (TLS ${tls})`);
  }
});

Deno.test("MemberList lists a gateway on every address at 127.0.0.1, with its own id", async () => {
  const { etcd } = setup({
    address: "0.0.0.0:7700",
    members: () => [{ address: "10.0.0.2:7700" }],
    tls: true,
  });
  const status = ok(await etcd.maintenance.Status({}, CONTEXT));
  const members = ok(await etcd.cluster.MemberList({ linearizable: false }, CONTEXT)).members;
  assert.deepEqual(members.map((m) => [m.ID, m.clientURLs]), [
    [idOf("0.0.0.0:7700"), ["https://127.0.0.1:7700"]],
    [idOf("10.0.0.2:7700"), ["https://10.0.0.2:7700"]],
  ]);
  assert.equal(members[0].ID, status.header?.memberId);
});

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

/** A `KvNode.Watch` call the gateway's watches opened, played by the test. */
interface FakeShardStream {
  readonly request: ShardWatchRequest;
  readonly events: ShardStreamEvents;
  cancelled: boolean;
}

/**
 * The gateway's watches over the two shards of {@linkcode shardOf}, each at `kvnode-<id>:1`; every
 * `KvNode.Watch` call they open is recorded in `opened`, for the test to answer.
 */
function fakeWatches(): { watches: GatewayWatches; opened: FakeShardStream[] } {
  const opened: FakeShardStream[] = [];
  const entries = splitEvenly(2).map((range, i) => ({
    id: shardId(i + 1),
    range,
    replicas: [nodeId(`n${i + 1}`)],
    learners: [],
    confEpoch: 1,
  }));
  const watches = new GatewayWatches({
    router: {
      shards: () => entries.map((entry) => entry.id),
      shardOf: (key) => entries[shardOf(key) - 1],
      candidates: (id) => ({ confEpoch: 1, addresses: [`kvnode-${id}:1`] }),
      noteLeader: () => {},
      mapChanged: () => Promise.resolve(),
    },
    open: (_address, request, events) => {
      const stream: FakeShardStream = { request, events, cancelled: false };
      opened.push(stream);
      return {
        pause: () => {},
        resume: () => {},
        cancel: () => (stream.cancelled = true),
      };
    },
  });
  return { watches, opened };
}

/**
 * The etcd services of `setup()` on a real gRPC server on 127.0.0.1, with the gateway's watches of
 * {@linkcode fakeWatches} (unless `overrides` says otherwise), and a raw client of it.
 */
async function served(overrides: Partial<EtcdServiceOptions> = {}) {
  const { watches, opened } = fakeWatches();
  const { fake, options } = setup({ watches, ...overrides });
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: options.maxMessageBytes,
    services: etcdServices(options),
  });
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const close = async () => {
    client.close();
    await server.shutdown(1000);
    watches.close();
  };
  return { fake, server, client, close, watches, opened };
}

const raw = (bytes: Buffer) => bytes;

/** A unary call of `path` with raw `bytes`: its status code and details (0 and the answer when ok). */
function rawUnary(client: grpc.Client, path: string, bytes: Uint8Array) {
  return within(
    new Promise<{ code: number; details: string; answer?: Buffer }>((resolve) =>
      client.makeUnaryRequest(path, raw, raw, Buffer.from(bytes), (error, answer) =>
        resolve(
          error === null
            ? { code: 0, details: "", answer: answer! }
            : { code: error.code, details: error.details },
        ))
    ),
    10_000,
    `${path} answer`,
  );
}

/** An etcd TxnRequest nested `depth` deep (each level a success op whose request_txn is the next). */
function nestedTxnBytes(depth: number): Uint8Array {
  const buffer = new Uint8Array(depth * 12);
  let at = buffer.length;
  const prepend = (bytes: number[]) => {
    at -= bytes.length;
    buffer.set(bytes, at);
  };
  for (let level = 0; level < depth; level++) {
    // RequestOp { request_txn (4) = the Txn so far }, then TxnRequest { success (2) = that op }.
    prepend([0x22, ...varint(BigInt(buffer.length - at))]);
    prepend([0x12, ...varint(BigInt(buffer.length - at))]);
  }
  return buffer.subarray(at);
}

Deno.test("a Txn of more than 128 entries in a list is refused before it is decoded, on both APIs", async () => {
  const { fake, client, close } = await served();
  const kvServer = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 4 * 1024 * 1024,
    services: [kvBinding(fake.handlers())],
  });
  const kvClient = new grpc.Client(`127.0.0.1:${kvServer.port}`, grpc.credentials.createInsecure());
  try {
    // TinyKV's Txn: 128 gets run; 129 (or 129 compares) are refused naming the list.
    const gets = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        kind: TxnOp_Kind.GET,
        key: enc(`{t}${i}`),
        value: new Uint8Array(),
        prev: false,
      }));
    const tinykv = (success: number, compares = 0) =>
      TxnRequest.encode(TxnRequest.create({
        success: gets(success),
        compares: Array.from({ length: compares }, (_, i) => ({
          key: enc(`{t}${i}`),
          result: TxnCompare_Result.EQUAL,
          target: TxnCompare_Target.VALUE,
          value: enc("v"),
        })),
      }));
    assert.equal((await rawUnary(kvClient, "/tinykv.v1.KV/Txn", tinykv(128))).code, 0);
    for (
      const [request, list] of [[tinykv(129), "success"], [tinykv(1, 129), "compares"]] as const
    ) {
      const refused = await rawUnary(kvClient, "/tinykv.v1.KV/Txn", request);
      assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
      assert.match(
        refused.details,
        new RegExp(`"${list}" has more than 128 entries: the maximum is 128 \\(TXN_OPS_MAX\\)`),
      );
    }

    // etcd's Txn: the same bound on its lists, counted before decoding.
    const ranges = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ requestRange: range({ key: enc(`{t}${i}`) }) }));
    const etcd = (n: number) => EtcdTxnRequest.encode(txn({ failure: ranges(n) }));
    assert.equal((await rawUnary(client, "/etcdserverpb.KV/Txn", etcd(128))).code, 0);
    const refused = await rawUnary(client, "/etcdserverpb.KV/Txn", etcd(129));
    assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
    assert.match(refused.details, /"failure" has more than 128 entries: the maximum is 128/);

    // Nothing hides a list from the scan: an empty group in front (protobufjs skips it in an
    // unknown field) makes the bytes malformed, on both APIs.
    const group = (bytes: Uint8Array) => new Uint8Array([0x7b, 0x7c, ...bytes]);
    for (
      const [target, path, request] of [
        [kvClient, "/tinykv.v1.KV/Txn", tinykv(129)],
        [client, "/etcdserverpb.KV/Txn", etcd(129)],
      ] as const
    ) {
      const hidden = await rawUnary(target, path, group(request));
      assert.equal(hidden.code, grpc.status.INVALID_ARGUMENT, path);
      assert.match(hidden.details, /not plain protobuf \(a group/);
    }
    // Nor an operation holding a nested Txn; and the lists are counted before nesting is looked
    // at.
    const hiddenNest = nestedTxnBytes(2);
    const op = hiddenNest.subarray(2);
    const grouped = new Uint8Array([0x12, op.length + 2, 0x7b, 0x7c, ...op]);
    assert.equal(
      (await rawUnary(client, "/etcdserverpb.KV/Txn", grouped)).code,
      grpc.status.INVALID_ARGUMENT,
    );
    const manyAndNested = new Uint8Array([...etcd(129), ...nestedTxnBytes(2)]);
    const counted = await rawUnary(client, "/etcdserverpb.KV/Txn", manyAndNested);
    assert.equal(counted.code, grpc.status.INVALID_ARGUMENT);
    assert.match(counted.details, /"failure" has more than 128 entries/);

    // A Txn inside a Txn is never decoded, however deep: UNIMPLEMENTED as any nested one (decoding
    // 20,000 levels would overflow the stack).
    for (const depth of [2, 20_000]) {
      const nested = await rawUnary(client, "/etcdserverpb.KV/Txn", nestedTxnBytes(depth));
      assert.equal(nested.code, grpc.status.UNIMPLEMENTED, `${depth}: ${nested.details}`);
      assert.match(nested.details, /A Txn inside a Txn is not supported by TinyKV/);
    }
  } finally {
    kvClient.close();
    await kvServer.shutdown(1000);
    await close();
  }
});

Deno.test("Range and DeleteRange name etcd's fields in refusals; a negative limit is no limit", async () => {
  const { fake, etcd } = setup();
  for (const key of ["n/1", "n/2", "n/3"]) fake.set(key, "v");
  const long = new Uint8Array(4097).fill(0x6e);
  const atMax = long.subarray(0, 4096);
  const refusal = (result: RpcResult<unknown>) => {
    assert.equal(result.kind, "invalidArgument");
    return (result as { message: string }).message;
  };
  // A range's bounds: 4,096 bytes work, one more is refused with the field's etcd name.
  assert.equal(
    ok(await etcd.kv.Range(range({ key: atMax, rangeEnd: enc("\0") }), CONTEXT)).count,
    0,
  );
  assert.match(
    refusal(await etcd.kv.Range(range({ key: long, rangeEnd: enc("\0") }), CONTEXT)),
    /^Field "key" has 4097 bytes: the maximum is 4096/,
  );
  assert.equal(
    ok(await etcd.kv.Range(range({ key: enc("n/"), rangeEnd: atMax }), CONTEXT)).count,
    3,
  );
  assert.match(
    refusal(await etcd.kv.Range(range({ key: enc("n/"), rangeEnd: long }), CONTEXT)),
    /^Field "range_end" has 4097 bytes/,
  );
  for (const prevKv of [false, true]) {
    const del = (key: Uint8Array, rangeEnd = new Uint8Array()) =>
      etcd.kv.DeleteRange({ key, rangeEnd, prevKv }, CONTEXT);
    assert.match(refusal(await del(new Uint8Array())), /^Field "key" has 0 bytes: the minimum/);
    assert.match(refusal(await del(long)), /^Field "key" has 4097 bytes/);
    assert.match(refusal(await del(enc("n/"), long)), /^Field "range_end" has 4097 bytes/);
  }
  assert.equal(fake.pairs.size, 3, "nothing deleted");
  // etcd reads a limit of 0 or less as none.
  const all = ok(
    await etcd.kv.Range(range({ key: enc("n/"), rangeEnd: enc("n0"), limit: -1 }), CONTEXT),
  );
  assert.deepEqual([all.kvs.length, all.count, all.more], [3, 3, false]);
});

Deno.test("Authenticate: etcd's 'authentication is not enabled' without tokens, UNIMPLEMENTED with them", async () => {
  for (const tokensRequired of [false, true]) {
    const { client, close } = await served({ tokensRequired });
    try {
      // AuthenticateRequest { name: "root", password: "pw" }.
      const request = Buffer.from([0x0a, 4, ...enc("root"), 0x12, 2, ...enc("pw")]);
      const answer = await within(
        new Promise<grpc.ServiceError | null>((resolve) =>
          client.makeUnaryRequest(
            "/etcdserverpb.Auth/Authenticate",
            raw,
            raw,
            request,
            (error) => resolve(error),
          )
        ),
        5000,
        "Authenticate answer",
      );
      if (tokensRequired) {
        assert.equal(answer?.code, grpc.status.UNIMPLEMENTED);
        assert.match(answer!.details, /^etcdserverpb\.Auth\.Authenticate: .*no etcd users/);
      } else {
        // Word for word: etcd's clients recognise it by its text and go on without a token.
        assert.equal(answer?.code, grpc.status.FAILED_PRECONDITION);
        assert.equal(answer!.details, "etcdserver: authentication is not enabled");
      }
    } finally {
      await close();
    }
  }
});

/** A protobuf varint. */
function varint(n: bigint): number[] {
  const out: number[] = [];
  for (; n >= 0x80n; n >>= 7n) out.push(Number(n & 0x7fn) | 0x80);
  out.push(Number(n));
  return out;
}

Deno.test("an int64 past 2^53 is refused INVALID_ARGUMENT naming its field, on a call and a stream", async () => {
  const { fake, client, close } = await served();
  fake.set("k", "v");
  try {
    // RangeRequest { key: "k", range_end: "l", limit: n }.
    const rangeWith = (limit: bigint) =>
      within(
        new Promise<{ code: number; details: string; count?: number }>((resolve) => {
          const bytes = Buffer.from([0x0a, 1, 0x6b, 0x12, 1, 0x6c, 0x18, ...varint(limit)]);
          client.makeUnaryRequest("/etcdserverpb.KV/Range", raw, raw, bytes, (error, answer) => {
            if (error !== null) resolve({ code: error.code, details: error.details });
            else resolve({ code: 0, details: "", count: RangeResponse.decode(answer!).count });
          });
        }),
        5000,
        "Range answer",
      );
    assert.deepEqual(await rangeWith(2n ** 53n - 1n), { code: 0, details: "", count: 1 });
    const past = await rangeWith(2n ** 53n);
    assert.equal(past.code, grpc.status.INVALID_ARGUMENT);
    assert.match(
      past.details,
      /"etcdserverpb\.RangeRequest\.limit": 9007199254740992 is not a safe/,
    );
    // Named exactly, not as the nearest double (2^53 + 1 would read 9007199254740992).
    const odd = await rangeWith(2n ** 53n + 1n);
    assert.equal(odd.code, grpc.status.INVALID_ARGUMENT);
    assert.match(odd.details, /limit": 9007199254740993 is not a safe/);
    const large = await rangeWith(123456789012345678n);
    assert.match(large.details, /limit": 123456789012345678 is not a safe/);

    // WatchRequest { create_request { key: "k", start_revision: n } }.
    const watchWith = (revision: bigint) =>
      within(
        new Promise<{ code: number; details: string; answers: WatchResponse[] }>((resolve) => {
          const stream = client.makeBidiStreamRequest("/etcdserverpb.Watch/Watch", raw, raw);
          const answers: WatchResponse[] = [];
          stream.on("data", (bytes: Buffer) => {
            answers.push(WatchResponse.decode(bytes));
            stream.end();
          });
          stream.on("error", () => {});
          stream.on("status", (status: grpc.StatusObject) =>
            resolve({ code: status.code, details: status.details, answers }));
          const create = [0x0a, 1, 0x6b, 0x18, ...varint(revision)];
          stream.write(Buffer.from([0x0a, create.length, ...create]));
        }),
        5000,
        "end of the Watch stream",
      );
    // 2^53 - 1 is decoded, and refused as etcd refuses a watch: TinyKV watches from now only.
    const fits = await watchWith(2n ** 53n - 1n);
    assert.deepEqual([fits.code, fits.answers.length], [grpc.status.OK, 1]);
    assert.deepEqual([fits.answers[0].created, fits.answers[0].canceled], [true, true]);
    assert.match(
      fits.answers[0].cancelReason,
      /^Watch on key "k" refused: it asks to start at revision 9007199254740991, /,
    );
    const watchPast = await watchWith(2n ** 53n);
    assert.deepEqual([watchPast.code, watchPast.answers.length], [grpc.status.INVALID_ARGUMENT, 0]);
    assert.match(watchPast.details, /startRevision": 9007199254740992 is not a safe integer/);
  } finally {
    await close();
  }
});

Deno.test("Watch serves the gateway's watches: created once the key's shard started, events, progress, cancel, the end", async () => {
  const { client, close, watches, opened } = await served();
  try {
    const stream = client.makeBidiStreamRequest(
      "/etcdserverpb.Watch/Watch",
      (request: WatchRequest) => Buffer.from(WatchRequest.encode(request)),
      (bytes: Buffer) => WatchResponse.decode(bytes),
    );
    const answers: WatchResponse[] = [];
    let next = Promise.withResolvers<void>();
    stream.on("data", (answer: WatchResponse) => {
      answers.push(answer);
      next.resolve();
    });
    const ended = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
    stream.on("error", () => {});
    /** Sends `request` (when given), then waits (bounded) until `count` answers arrived in all. */
    const ask = async (request: WatchRequest | undefined, count: number) => {
      if (request !== undefined) stream.write(request);
      while (answers.length < count) {
        await within(next.promise, 5000, `Watch answer ${count}`);
        next = Promise.withResolvers<void>();
      }
    };
    const key = enc("w/1");
    stream.write(WatchRequest.create({ createRequest: WatchCreateRequest.create({ key }) }));
    for (const deadline = Date.now() + 5000; opened.length === 0;) {
      assert.ok(Date.now() < deadline, "No kvnode stream opened within 5000 ms");
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const [part] = opened;
    assert.deepEqual(
      [part.request.shardId, dec(part.request.start), dec(part.request.end), part.request.resume],
      [shardOf(key), "w/1", "w/1\0", false],
      "one key: its shard, [key, key + 0x00)",
    );
    // Nothing until the shard started; then created, with the header of every etcd answer.
    await ask(WatchRequest.create({ progressRequest: {} }), 1);
    part.events.onMessage({ events: [], index: 3 });
    await ask(undefined, 2);
    const [progress, created] = answers;
    assert.deepEqual([progress.watchId, progress.created, progress.canceled], [-1, false, false]);
    assert.deepEqual(
      [created.watchId, created.created, created.canceled, created.cancelReason],
      [0, true, false, ""],
    );
    assert.deepEqual(created.header, {
      clusterId: idOf("c-test"),
      memberId: idOf("127.0.0.1:7700"),
      revision: REVISION,
      raftTerm: 0,
    });

    part.events.onMessage({
      index: 4,
      events: [{ kind: WatchEvent_Kind.PUT, key, value: enc("v"), shard: 1, index: 4 }],
    });
    await ask(undefined, 3);
    const [event] = answers[2].events;
    assert.deepEqual(
      [answers[2].watchId, event.type, dec(event.kv!.key), dec(event.kv!.value)],
      [0, Event_EventType.PUT, "w/1", "v"],
    );
    assert.equal(event.kv!.modRevision, REVISION);

    await ask(WatchRequest.create({ cancelRequest: { watchId: 0 } }), 4);
    assert.deepEqual([answers[3].watchId, answers[3].canceled], [0, true]);
    assert.equal(part.cancelled, true);
    assert.equal(watches.count, 0);
    // A cancel of a watch that does not exist gets no answer, as in etcd; the client then ends.
    stream.write(WatchRequest.create({ cancelRequest: { watchId: 5 } }));
    stream.end();
    const status = await within(ended, 5000, "end of the Watch stream");
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.equal(answers.length, 4);
  } finally {
    await close();
  }
});

Deno.test("Watch without the gateway's watches is UNIMPLEMENTED (unit tests of the other calls)", async () => {
  const { client, close } = await served({ watches: undefined });
  try {
    const status = await within(
      new Promise<grpc.StatusObject>((resolve) => {
        const stream = client.makeBidiStreamRequest("/etcdserverpb.Watch/Watch", raw, raw);
        stream.on("data", () => {});
        stream.on("error", () => {});
        stream.on("status", resolve);
        stream.write(
          Buffer.from(WatchRequest.encode(WatchRequest.create({ progressRequest: {} }))),
        );
      }),
      5000,
      "end of the Watch stream",
    );
    assert.deepEqual(
      [status.code, status.details],
      [grpc.status.UNIMPLEMENTED, "This gateway serves no watches"],
    );
  } finally {
    await close();
  }
});

Deno.test("the gateway's HTTP/2 server accepts the authority of a client URL, not of http://host:port", async () => {
  // etcdctl 3.4 dials one endpoint (endpoint status --cluster) with the endpoint's text as the
  // :authority. Deno's HTTP/2 server refuses a URL there (GOAWAY, PROTOCOL_ERROR), so the client
  // URLs of MemberList carry no http:// scheme.
  const { server, close } = await served();
  const statusWith = (authority: string) =>
    within(
      new Promise<string>((resolve) => {
        const session = http2.connect(`http://127.0.0.1:${server.port}`);
        session.on("error", () => {});
        const stream = session.request({
          ":method": "POST",
          ":path": "/etcdserverpb.Maintenance/Status",
          ":authority": authority,
          "content-type": "application/grpc",
          "te": "trailers",
        });
        let grpcStatus = "none";
        stream.on("trailers", (trailers) => (grpcStatus = String(trailers["grpc-status"])));
        stream.on("error", () => {});
        stream.on("data", () => {});
        stream.on("close", () => {
          resolve(`rst ${stream.rstCode}, grpc-status ${grpcStatus}`);
          session.close();
        });
        stream.end(new Uint8Array([0, 0, 0, 0, 0]));
      }),
      5000,
      `an answer with :authority ${authority}`,
    );
  try {
    const url = clientUrlOf(`127.0.0.1:${server.port}`, false);
    assert.equal(await statusWith(url), "rst 0, grpc-status 0");
    assert.equal(await statusWith(`http://${url}`), "rst 1, grpc-status none");
  } finally {
    await close();
  }
});
