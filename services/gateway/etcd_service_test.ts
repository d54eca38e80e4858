// Checks the etcd API's mapping onto the gateway's own KV handlers without processes or sockets:
// an in-memory stand-in for `tinykv.v1.KV` (keys in byte order, scans in small pages, a
// compare-and-swap that another writer can beat). Range answers one key, a prefix, a range and
// everything with etcd's `limit`, `more` and `count`, keys only, counts only and both sort orders;
// put and delete with `prev_kv` return exactly the value they replaced (a one-operation Txn); a Txn
// becomes TinyKV's Txn (value compares as they are, revision compares against 0 as existence, lease
// compares decided by the gateway) and its answers map back per operation; what TinyKV cannot do is
// refused with its status and a reason, and nothing changes; Status and MemberList describe the
// gateways. The real clients (etcdctl, npm etcd3)
// run against a dev cluster in tests/etcd_api_test.ts.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type TxnRequest as EtcdTxnRequest,
} from "@tinykv/proto/etcdserverpb";
import {
  type CompareAndSwapResponse,
  type KeyValue,
  type KVService,
  type TxnCompare,
  TxnCompare_Target,
  TxnOp_Kind,
  type TxnRequest,
  type TxnResponse,
} from "@tinykv/proto/tinykv/v1";
import {
  type HandlerContext,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceHandlers,
} from "@tinykv/rpc";
import { compareBytes, keyHash } from "@tinykv/shard";
import {
  etcdHandlers,
  type EtcdServiceOptions,
  etcdServices,
  idOf,
  REVISION,
} from "./etcd_service.ts";

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
        answer<TxnResponse>("Txn", () => {
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
      Scan: ({ start, end, limit }) =>
        answer("Scan", () => {
          const inRange = this.#sorted().filter((p) =>
            compareBytes(p.key, start) >= 0 && (end.length === 0 || compareBytes(p.key, end) < 0)
          );
          const kvs = inRange.slice(0, Math.min(limit, PAGE));
          const more = inRange.length > kvs.length;
          return rpcOk({
            kvs,
            more,
            next: more ? inRange[kvs.length].key : new Uint8Array(),
          });
        }),
    };
  }
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

  const negative = await etcd.kv.Range(range({ ...whole, limit: -1 }), CONTEXT);
  assert.equal(negative.kind, "invalidArgument");
});

Deno.test("Range refuses what needs history or another sort, and an answer over the message limit", async () => {
  const { fake, etcd } = setup({ maxMessageBytes: 64 * 1024 + 100 });
  const refusals: Array<[Partial<RangeRequest>, RegExp]> = [
    [{ revision: 5 }, /revision 5: TinyKV keeps no history/],
    [{ minModRevision: 2 }, /revision filters/],
    [
      { sortOrder: RangeRequest_SortOrder.ASCEND, sortTarget: RangeRequest_SortTarget.VALUE },
      /sorts by key only/,
    ],
  ];
  for (const [fields, message] of refusals) {
    const result = await etcd.kv.Range(range({ key: enc("k"), ...fields }), CONTEXT);
    assert.equal(result.kind, "unimplemented", JSON.stringify(fields));
    assert.match((result as { message: string }).message, message);
  }
  assert.deepEqual(fake.calls, [], "a refused Range reads nothing");

  // 100 bytes of room past the overhead: 90 fit, 101 do not.
  fake.set("big1", "x".repeat(86));
  const fits = await etcd.kv.Range(range({ key: enc("big1") }), CONTEXT);
  assert.equal(fits.kind, "ok");
  fake.set("big1", "x".repeat(97));
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
    ...absent,
    result: Compare_CompareResult.GREATER,
    target: Compare_CompareTarget.VERSION,
    version: 0,
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

Deno.test("Status and MemberList describe the gateways; Compact changes nothing", async () => {
  const { fake, etcd } = setup();
  fake.set("k", "v");
  const status = ok(await etcd.maintenance.Status({}, CONTEXT));
  assert.equal(status.header?.memberId, idOf("127.0.0.1:7700"));
  assert.equal(status.header?.clusterId, idOf("c-test"));
  assert.match(status.version, /^3\.4\.0\+tinykv$/);
  const members = ok(await etcd.cluster.MemberList({ linearizable: false }, CONTEXT)).members;
  assert.deepEqual(members.map((m) => m.clientURLs), [
    ["http://127.0.0.1:7700"],
    ["http://127.0.0.1:7701"],
  ]);
  assert.equal(members[0].ID, status.header?.memberId);
  assert.notEqual(members[0].ID, members[1].ID);
  ok(await etcd.kv.Compact({ revision: 1, physical: true }, CONTEXT));
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
  fake.set("r/1", "x".repeat(40));
  fake.set("r/2", "y".repeat(40));
  fake.set("r/3", "z".repeat(40));
  const refused = await etcd.kv.DeleteRange({
    key: enc("r/"),
    rangeEnd: prefixEnd("r/"),
    prevKv: true,
  }, CONTEXT);
  assert.equal(refused.kind, "resourceExhausted");
  assert.match((refused as { message: string }).message, /nothing was deleted/);
  assert.equal(fake.pairs.size, 3);
  // Two of them fit (2 × (3 + 40) = 86 bytes): deleted and returned.
  fake.pairs.delete(hex(enc("r/3")));
  const fits = ok(
    await etcd.kv.DeleteRange({ key: enc("r/"), rangeEnd: prefixEnd("r/"), prevKv: true }, CONTEXT),
  );
  assert.deepEqual([fits.deleted, fits.prevKvs.length, fake.pairs.size], [2, 2, 0]);
});
