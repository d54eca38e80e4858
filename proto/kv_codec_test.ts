/**
 * Checks the generated `tinykv.v1` codecs: every KV message round-trips (empty bytes, 1 MiB
 * values, unicode keys as UTF-8 bytes, 64-bit sequence numbers up to 2^53 - 1), decoding fully
 * defaults absent fields and skips unknown ones, and the wire format keeps the field numbers of
 * kv.proto (external tools depend on them).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import protobuf from "protobufjs";
import {
  AppendRequest,
  AppendResponse,
  CompareAndSwapRequest,
  CompareAndSwapResponse,
  DeleteRequest,
  DeleteResponse,
  DESCRIPTOR,
  GetRequest,
  GetResponse,
  KeyValue,
  KVService,
  type MessageCodec,
  PutRequest,
  PutResponse,
  ScanRequest,
  ScanResponse,
} from "./gen/tinykv/v1.ts";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const UNICODE_KEY = encoder.encode("ключ/☃/𝄞/\u0000");
const BIG_VALUE = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) % 256);
const SEQ_MAX = Number.MAX_SAFE_INTEGER;

function roundTrip<T>(codec: MessageCodec<T>, message: T): void {
  assert.deepStrictEqual(codec.decode(codec.encode(message)), message, codec.typeName);
}

Deno.test("every KV request round-trips", () => {
  const session = { clientId: "client-☃", seq: SEQ_MAX, ackSeq: SEQ_MAX - 1 };
  roundTrip(GetRequest, { key: UNICODE_KEY, serializable: true });
  roundTrip(GetRequest, { key: EMPTY, serializable: false });
  roundTrip(PutRequest, { key: UNICODE_KEY, value: BIG_VALUE, ...session });
  roundTrip(PutRequest, { key: UNICODE_KEY, value: EMPTY, clientId: "", seq: 0, ackSeq: 0 });
  roundTrip(DeleteRequest, { key: UNICODE_KEY, ...session });
  roundTrip(AppendRequest, { key: UNICODE_KEY, value: BIG_VALUE, ...session });
  roundTrip(CompareAndSwapRequest, {
    key: UNICODE_KEY,
    expected: BIG_VALUE,
    expectAbsent: false,
    value: EMPTY,
    delete: true,
    ...session,
  });
  roundTrip(CompareAndSwapRequest, {
    key: UNICODE_KEY,
    expected: EMPTY,
    expectAbsent: true,
    value: BIG_VALUE,
    delete: false,
    ...session,
  });
  roundTrip(ScanRequest, { start: EMPTY, end: EMPTY, limit: 10_000 });
  roundTrip(ScanRequest, { start: UNICODE_KEY, end: encoder.encode("z"), limit: 1 });
});

Deno.test("every KV response round-trips", () => {
  roundTrip(GetResponse, { found: true, value: BIG_VALUE });
  roundTrip(GetResponse, { found: true, value: EMPTY });
  roundTrip(PutResponse, {});
  roundTrip(DeleteResponse, { deleted: true });
  roundTrip(AppendResponse, { length: SEQ_MAX });
  roundTrip(CompareAndSwapResponse, { succeeded: false, found: true, current: BIG_VALUE });
  roundTrip(KeyValue, { key: UNICODE_KEY, value: EMPTY });
  roundTrip(ScanResponse, {
    kvs: [
      { key: UNICODE_KEY, value: BIG_VALUE },
      { key: encoder.encode("b"), value: EMPTY },
    ],
    more: true,
    next: encoder.encode("c"),
  });
  roundTrip(ScanResponse, { kvs: [], more: false, next: EMPTY });
});

Deno.test("decode() fully defaults absent fields", () => {
  assert.deepStrictEqual(CompareAndSwapRequest.decode(EMPTY), {
    key: EMPTY,
    expected: EMPTY,
    expectAbsent: false,
    value: EMPTY,
    delete: false,
    clientId: "",
    seq: 0,
    ackSeq: 0,
  });
  assert.deepStrictEqual(ScanResponse.decode(EMPTY), { kvs: [], more: false, next: EMPTY });
  assert.deepStrictEqual(PutRequest.create({ key: UNICODE_KEY }), {
    key: UNICODE_KEY,
    value: EMPTY,
    clientId: "",
    seq: 0,
    ackSeq: 0,
  });
});

Deno.test("decode() skips unknown fields of every wire type", () => {
  const bytes = new protobuf.Writer()
    .uint32((1 << 3) | 2).bytes(UNICODE_KEY) // key
    .uint32((90 << 3) | 0).uint64(123) // varint
    .uint32((91 << 3) | 1).fixed64(5) // 64-bit
    .uint32((92 << 3) | 2).string("future") // length-delimited
    .uint32((93 << 3) | 5).fixed32(9) // 32-bit
    .uint32((2 << 3) | 0).bool(true) // serializable
    .finish();
  assert.deepStrictEqual(GetRequest.decode(bytes), { key: UNICODE_KEY, serializable: true });
});

Deno.test("decoded bytes are plain Uint8Arrays, also from a Node Buffer", () => {
  const wire = GetResponse.encode({ found: true, value: encoder.encode("v") });
  assert.equal(wire.constructor, Uint8Array);
  const decoded = KVService.Get.responseDeserialize(KVService.Get.responseSerialize({
    found: true,
    value: encoder.encode("v"),
  }));
  assert.equal(decoded.value.constructor, Uint8Array);
  assert.deepStrictEqual(decoded, { found: true, value: encoder.encode("v") });
});

Deno.test("encode() and decode() reject sequence numbers beyond 2^53 - 1", () => {
  const request = { ...PutRequest.create({ key: UNICODE_KEY }), seq: 2 ** 53 };
  assert.throws(() => PutRequest.create(request), RangeError);
  assert.throws(() => PutRequest.encode(request), /tinykv\.v1\.PutRequest\.seq/);
  const wire = new protobuf.Writer().uint32((4 << 3) | 0).uint64("18446744073709551615").finish();
  assert.throws(() => PutRequest.decode(wire), /Cannot decode "tinykv\.v1\.PutRequest\.seq"/);
});

Deno.test("decode() names a 64-bit integer past 2^53 exactly", () => {
  // 2^53 + 1 is no double: the message must not show the nearest one (9007199254740992).
  const wire = new protobuf.Writer().uint32((4 << 3) | 0).uint64("9007199254740993").finish();
  assert.throws(() => PutRequest.decode(wire), /: 9007199254740993 is not a safe integer/);
});

Deno.test("a server reads a request's strings strictly as UTF-8; decode() as protobufjs does", () => {
  // PutRequest { key: "k", client_id: bytes }.
  const put = (id: number[]) => new Uint8Array([0x0a, 1, 0x6b, 0x1a, id.length, ...id]);
  const asRequest = (bytes: Uint8Array) => KVService.Put.requestDeserialize(Buffer.from(bytes));
  for (const bad of [[0xff], [0xfe], [0xc3], [0xed, 0xa0, 0x80], [0x61, 0x80, 0x62]]) {
    assert.throws(
      () => asRequest(put(bad)),
      /^TypeError: A string field holds bytes that are not UTF-8/,
      JSON.stringify(bad),
    );
    // Stored data an older version wrote is read as it always was (every replica alike).
    assert.equal(typeof PutRequest.decode(put(bad)).clientId, "string");
  }
  // The two ids that protobufjs reads as one.
  assert.equal(PutRequest.decode(put([0xff])).clientId, PutRequest.decode(put([0xfe])).clientId);
  // Valid: ASCII, "é", U+FFFD itself, a leading byte order mark (kept), a 4-byte character.
  const valid: Array<[number[], string]> = [
    [[0x61], "a"],
    [[0xc3, 0xa9], "\u00e9"],
    [[0xef, 0xbf, 0xbd], "\ufffd"],
    [[0xef, 0xbb, 0xbf, 0x61], "\ufeffa"],
    [[0xf0, 0x9f, 0x94, 0x91], "\u{1f511}"],
  ];
  for (const [bytes, text] of valid) {
    assert.equal(asRequest(put(bytes)).clientId, text, JSON.stringify(bytes));
    assert.equal(PutRequest.decode(put(bytes)).clientId, text, JSON.stringify(bytes));
  }
});

Deno.test("the wire format keeps kv.proto's names and field numbers", () => {
  const root = protobuf.Root.fromJSON(DESCRIPTOR as protobuf.INamespace);
  const ids = (name: string) =>
    Object.fromEntries(root.lookupType(`tinykv.v1.${name}`).fieldsArray.map((f) => [f.name, f.id]));
  assert.deepStrictEqual(ids("GetRequest"), { key: 1, serializable: 2 });
  assert.deepStrictEqual(ids("PutRequest"), { key: 1, value: 2, clientId: 3, seq: 4, ackSeq: 5 });
  assert.deepStrictEqual(ids("DeleteRequest"), { key: 1, clientId: 2, seq: 3, ackSeq: 4 });
  assert.deepStrictEqual(ids("AppendRequest"), {
    key: 1,
    value: 2,
    clientId: 3,
    seq: 4,
    ackSeq: 5,
  });
  assert.deepStrictEqual(ids("CompareAndSwapRequest"), {
    key: 1,
    expected: 2,
    expectAbsent: 3,
    value: 4,
    delete: 5,
    clientId: 6,
    seq: 7,
    ackSeq: 8,
  });
  assert.deepStrictEqual(ids("ScanRequest"), { start: 1, end: 2, limit: 3 });
  assert.deepStrictEqual(ids("GetResponse"), { found: 1, value: 2 });
  assert.deepStrictEqual(ids("PutResponse"), {});
  assert.deepStrictEqual(ids("DeleteResponse"), { deleted: 1 });
  assert.deepStrictEqual(ids("AppendResponse"), { length: 1 });
  assert.deepStrictEqual(ids("CompareAndSwapResponse"), { succeeded: 1, found: 2, current: 3 });
  assert.deepStrictEqual(ids("ScanResponse"), { kvs: 1, more: 2, next: 3 });
  assert.deepStrictEqual(ids("KeyValue"), { key: 1, value: 2 });
  assert.deepStrictEqual(ids("TxnCompare"), { key: 1, result: 2, target: 3, value: 4 });
  assert.deepStrictEqual(ids("TxnOp"), { kind: 1, key: 2, value: 3, prev: 4 });
  assert.deepStrictEqual(ids("TxnOpResult"), { found: 1, value: 2 });
  assert.deepStrictEqual(ids("TxnRequest"), {
    compares: 1,
    success: 2,
    failure: 3,
    clientId: 4,
    seq: 5,
    ackSeq: 6,
  });
  assert.deepStrictEqual(ids("TxnResponse"), { succeeded: 1, results: 2 });
  assert.deepStrictEqual(ids("WatchPosition"), { shard: 1, index: 2 });
  assert.deepStrictEqual(ids("WatchRequest"), { key: 1, prefix: 2, start: 3 });
  assert.deepStrictEqual(ids("WatchEvent"), { kind: 1, key: 2, value: 3, shard: 4, index: 5 });
  assert.deepStrictEqual(ids("WatchResponse"), { events: 1, positions: 2 });
  assert.deepStrictEqual(
    Object.values(KVService).map((m) => m.path),
    ["Get", "Put", "Delete", "Append", "CompareAndSwap", "Scan", "Txn", "Watch"].map((m) =>
      `/tinykv.v1.KV/${m}`
    ),
  );
  assert.deepStrictEqual(
    [KVService.Watch.requestStream, KVService.Watch.responseStream],
    [false, true],
    "Watch is a server stream",
  );
});
