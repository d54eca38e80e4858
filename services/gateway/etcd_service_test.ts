// Checks the etcd API's mapping onto the gateway's own KV handlers without processes or sockets:
// an in-memory stand-in for `tinykv.v1.KV` (keys in byte order, scans in small pages, a
// compare-and-swap that another writer can beat). Range answers one key, a prefix, a range and
// everything with etcd's `limit`, `more` and `count`, keys only, counts only and both sort orders;
// put and delete with `prev_kv` return exactly the value they replaced, also when a concurrent
// write beats their first swap; a one-key Txn runs the branch its compares choose and makes its
// change in one swap; what TinyKV cannot do is refused with its status and a reason, and nothing
// changes; Status and MemberList describe the gateways. The real clients (etcdctl, npm etcd3)
// run against a dev cluster in tests/etcd_api_test.ts.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  type RangeRequest,
  RangeRequest_SortOrder,
  RangeRequest_SortTarget,
  type TxnRequest,
} from "@tinykv/proto/etcdserverpb";
import type { CompareAndSwapResponse, KeyValue, KVService } from "@tinykv/proto/tinykv/v1";
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
  SWAP_ATTEMPTS_MAX,
} from "./etcd_service.ts";

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
  /** Runs before each compare-and-swap (a concurrent writer). */
  beforeSwap: (() => void) | undefined;
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
          this.beforeSwap?.();
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
    // Two shards by the key's hash, as the gateway's shard map would say.
    shardOf: (key) => (keyHash(key) < 2 ** 31 ? 1 : 2),
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

Deno.test("Put and DeleteRange return exactly the value they replaced, also when beaten once", async () => {
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

  // Another writer changes the key between the read and the first swap: the swap fails, and the
  // second one replaces (and returns) the other writer's value.
  let beaten = false;
  fake.beforeSwap = () => {
    if (beaten) return;
    beaten = true;
    fake.set("k", "other");
  };
  const third = ok(await put("k", "v3", true));
  assert.equal(dec(third.prevKv!.value), "other");
  assert.equal(fake.value("k"), "v3");
  fake.beforeSwap = undefined;

  const deleted = ok(
    await etcd.kv.DeleteRange({ key: enc("k"), rangeEnd: new Uint8Array(), prevKv: true }, CONTEXT),
  );
  assert.equal(deleted.deleted, 1);
  assert.equal(dec(deleted.prevKvs[0].value), "v3");
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

  // A key that keeps changing: refused after SWAP_ATTEMPTS_MAX swaps, UNAVAILABLE (not applied).
  let n = 0;
  fake.beforeSwap = () => fake.set("hot", `w${n++}`);
  const hot = await put("hot", "mine", true);
  assert.equal(hot.kind, "unavailable");
  assert.equal(n, SWAP_ATTEMPTS_MAX);
  assert.notEqual(fake.value("hot"), "mine");
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

function txn(overrides: Partial<TxnRequest>): TxnRequest {
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

Deno.test("a one-key Txn runs the branch its compares choose and changes the key in one swap", async () => {
  const { fake, etcd } = setup();
  fake.set("k", "v1");

  const hit = ok(
    await etcd.kv.Txn(
      txn({
        compare: [valueIs("k", "v1")],
        success: [putOp("k", "v2"), getOp("k")],
        failure: [getOp("k")],
      }),
      CONTEXT,
    ),
  );
  assert.equal(hit.succeeded, true);
  assert.equal(dec(hit.responses[0].responsePut!.prevKv!.value), "v1");
  assert.equal(dec(hit.responses[1].responseRange!.kvs[0].value), "v2", "reads its own put");
  assert.equal(fake.value("k"), "v2");

  fake.calls.length = 0;
  const miss = ok(
    await etcd.kv.Txn(
      txn({ compare: [valueIs("k", "v1")], success: [putOp("k", "v3")], failure: [getOp("k")] }),
      CONTEXT,
    ),
  );
  assert.equal(miss.succeeded, false);
  assert.equal(dec(miss.responses[0].responseRange!.kvs[0].value), "v2");
  assert.equal(fake.value("k"), "v2");
  assert.deepEqual(fake.calls, ["Get"], "a branch that writes nothing swaps nothing");

  // Create only when absent: create_revision = 0.
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

  // A value compare on an absent key fails (as in etcd), whatever the operator.
  const notEqual = { ...valueIs("ghost", "x"), result: Compare_CompareResult.NOT_EQUAL };
  const ghost = ok(await etcd.kv.Txn(txn({ compare: [notEqual] }), CONTEXT));
  assert.equal(ghost.succeeded, false);

  // Beaten between its read and its swap: evaluated again on the new value.
  fake.set("k", "v1");
  let beaten = false;
  fake.beforeSwap = () => {
    if (beaten) return;
    beaten = true;
    fake.set("k", "other");
  };
  const raced = ok(
    await etcd.kv.Txn(
      txn({
        compare: [valueIs("k", "v1")],
        success: [putOp("k", "v9")],
        failure: [putOp("k", "lost")],
      }),
      CONTEXT,
    ),
  );
  assert.equal(raced.succeeded, false, "the compare saw the other writer's value");
  assert.equal(fake.value("k"), "lost");

  const empty = ok(await etcd.kv.Txn(txn({}), CONTEXT));
  assert.deepEqual([empty.succeeded, empty.responses.length], [true, 0]);
});

Deno.test("a Txn TinyKV cannot run is refused with its status and changes nothing", async () => {
  const { fake, etcd, options } = setup();
  fake.set("k", "v");
  // Two keys of different shards, and two of the same shard.
  let other = "a";
  for (let i = 0; options.shardOf(enc(other)) === options.shardOf(enc("k")); i++) other = `a${i}`;
  let same = "b";
  for (let i = 0; options.shardOf(enc(same)) !== options.shardOf(enc("k")); i++) same = `b${i}`;
  const refusals: Array<[TxnRequest, string, RegExp]> = [
    [
      txn({ compare: [valueIs("k", "v")], success: [putOp(other, "x")] }),
      "failedPrecondition",
      /must be in one shard: "k" is in shard \d and "a\d*" in shard \d/,
    ],
    [
      txn({ compare: [valueIs("k", "v")], success: [putOp(same, "x")] }),
      "unimplemented",
      /several keys/,
    ],
    [
      txn({ compare: [{ ...valueIs("k", "v"), rangeEnd: enc("z") }] }),
      "failedPrecondition",
      /range_end is set/,
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
  ];
  for (const [request, kind, message] of refusals) {
    const result = await etcd.kv.Txn(request, CONTEXT);
    assert.equal(result.kind, kind, JSON.stringify(result));
    assert.match((result as { message: string }).message, message);
  }
  assert.deepEqual(fake.calls, [], "nothing was read or written");
  assert.equal(fake.value("k"), "v");
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
