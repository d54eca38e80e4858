// Checks every request limit at the limit and one past it, and that a rejection names the field
// and the limit.

import assert from "node:assert/strict";
import {
  checkRequest,
  checkTraceId,
  CLIENT_ID_BYTES_MAX,
  KEY_BYTES_MAX,
  KEY_BYTES_MIN,
  SCAN_LIMIT_MAX,
  TRACE_ID_CHARS_MAX,
  TXN_ENTRY_OVERHEAD_BYTES,
  TXN_OPS_MAX,
  txnBytesMax,
  type TxnFields,
  validateKey,
  validateValue,
  VALUE_BYTES_MAX,
} from "./key_limits.ts";

Deno.test("key and value limits match docs/design.md", () => {
  assert.equal(KEY_BYTES_MIN, 1);
  assert.equal(KEY_BYTES_MAX, 4096);
  assert.equal(VALUE_BYTES_MAX, 1048576);
});

Deno.test("validateKey() accepts 1 to KEY_BYTES_MAX bytes and names the limit otherwise", () => {
  assert.deepEqual(validateKey(new Uint8Array(1)), { kind: "ok" });
  assert.deepEqual(validateKey(new Uint8Array(KEY_BYTES_MAX)), { kind: "ok" });
  assert.deepEqual(validateKey(new Uint8Array(0)), {
    kind: "tooShort",
    byteLength: 0,
    limit: 1,
    limitName: "KEY_BYTES_MIN",
    message: 'Field "key" has 0 bytes: the minimum is 1 (KEY_BYTES_MIN)',
  });
  assert.deepEqual(validateKey(new Uint8Array(KEY_BYTES_MAX + 1)), {
    kind: "tooLong",
    byteLength: 4097,
    limit: 4096,
    limitName: "KEY_BYTES_MAX",
    message: 'Field "key" has 4097 bytes: the maximum is 4096 (KEY_BYTES_MAX)',
  });
});

Deno.test("validateKey() counts bytes, not characters", () => {
  const key = new TextEncoder().encode("é".repeat(2048)); // 2048 characters, 4096 bytes.
  assert.equal(validateKey(key).kind, "ok");
  assert.equal(validateKey(new TextEncoder().encode("é".repeat(2049))).kind, "tooLong");
});

Deno.test("validateValue() allows empty values and up to the configured limit", () => {
  assert.deepEqual(validateValue(new Uint8Array(0)), { kind: "ok" });
  assert.deepEqual(validateValue(new Uint8Array(VALUE_BYTES_MAX)), { kind: "ok" });
  const tooLong = validateValue(new Uint8Array(VALUE_BYTES_MAX + 1));
  assert.equal(tooLong.kind, "tooLong");
  assert.deepEqual(validateValue(new Uint8Array(11), { valueBytesMax: 10 }), {
    kind: "tooLong",
    byteLength: 11,
    limit: 10,
    limitName: "storage.value_bytes_max",
    message: 'Field "value" has 11 bytes: the maximum is 10 (storage.value_bytes_max)',
  });
});

Deno.test("validateValue() rejects a nonsensical limit", () => {
  assert.throws(() => validateValue(new Uint8Array(0), { valueBytesMax: -1 }), RangeError);
  assert.throws(() => validateValue(new Uint8Array(0), { valueBytesMax: 1.5 }), RangeError);
});

const bytes = (n: number) => new Uint8Array(n).fill(7);
const noSession = { clientId: "", seq: 0, ackSeq: 0 };
const LIMITS = { valueBytesMax: 100 };

/** The field a request is refused for, or "ok". */
function refused(request: Parameters<typeof checkRequest>[0]): string {
  return checkRequest(request, LIMITS)?.field ?? "ok";
}

Deno.test("checkRequest() takes every limit at the limit and refuses one past it", () => {
  const key = bytes(KEY_BYTES_MAX);
  const tooLongKey = bytes(KEY_BYTES_MAX + 1);
  const cases: Array<[string, Parameters<typeof checkRequest>[0], string]> = [
    ["get, longest key", { get: { key } }, "ok"],
    ["get, key too long", { get: { key: tooLongKey } }, "key"],
    ["get, empty key", { get: { key: bytes(0) } }, "key"],
    ["put, largest value", { put: { key, value: bytes(100), ...noSession } }, "ok"],
    ["put, value too long", { put: { key, value: bytes(101), ...noSession } }, "value"],
    ["put, key too long", { put: { key: tooLongKey, value: bytes(1), ...noSession } }, "key"],
    ["delete, longest key", { delete: { key, ...noSession } }, "ok"],
    ["append, largest value", { append: { key, value: bytes(100), ...noSession } }, "ok"],
    ["append, value too long", { append: { key, value: bytes(101), ...noSession } }, "value"],
    [
      "cas, largest expected and value",
      { compareAndSwap: { key, expected: bytes(100), value: bytes(100), ...noSession } },
      "ok",
    ],
    [
      "cas, expected too long",
      { compareAndSwap: { key, expected: bytes(101), value: bytes(1), ...noSession } },
      "expected",
    ],
    [
      "cas, value too long",
      { compareAndSwap: { key, expected: bytes(1), value: bytes(101), ...noSession } },
      "value",
    ],
    [
      "longest client id",
      { delete: { key, clientId: "c".repeat(CLIENT_ID_BYTES_MAX), seq: 1, ackSeq: 0 } },
      "ok",
    ],
    [
      "client id too long",
      { delete: { key, clientId: "c".repeat(CLIENT_ID_BYTES_MAX + 1), seq: 1, ackSeq: 0 } },
      "client_id",
    ],
    ["seq 0 with a client id", { delete: { key, clientId: "c", seq: 0, ackSeq: 0 } }, "seq"],
    ["ack_seq not below seq", { delete: { key, clientId: "c", seq: 3, ackSeq: 3 } }, "seq"],
    ["seq without a client id", { delete: { key, clientId: "", seq: 1, ackSeq: 0 } }, "client_id"],
    ["scan, limit 1", { scan: { start: bytes(0), end: bytes(0), limit: 1 } }, "ok"],
    ["scan, largest limit", { scan: { start: key, end: key, limit: SCAN_LIMIT_MAX } }, "ok"],
    ["scan, limit 0", { scan: { start: bytes(0), end: bytes(0), limit: 0 } }, "limit"],
    [
      "scan, limit too large",
      { scan: { start: bytes(0), end: bytes(0), limit: SCAN_LIMIT_MAX + 1 } },
      "limit",
    ],
    ["scan, start too long", { scan: { start: tooLongKey, end: bytes(0), limit: 1 } }, "start"],
    ["scan, end too long", { scan: { start: bytes(0), end: tooLongKey, limit: 1 } }, "end"],
    [
      "scan, start after end",
      { scan: { start: new Uint8Array([2]), end: new Uint8Array([1]), limit: 1 } },
      "start",
    ],
    ["no operation", {}, "op"],
    ["two operations", { get: { key }, delete: { key, ...noSession } }, "op"],
  ];
  for (const [name, request, expected] of cases) {
    assert.equal(refused(request), expected, name);
  }
});

Deno.test("checkRequest() messages name the field and the limit", () => {
  const violation = checkRequest({
    compareAndSwap: { key: bytes(1), expected: bytes(1), value: bytes(101), ...noSession },
  }, LIMITS);
  assert.equal(
    violation?.message,
    'Field "value" has 101 bytes: the maximum is 100 (storage.value_bytes_max)',
  );
  const scan = checkRequest({ scan: { start: bytes(0), end: bytes(0), limit: 0 } }, LIMITS);
  assert.equal(scan?.message, 'Field "limit" is 0: expected 1 to 10000 (SCAN_LIMIT_MAX)');
});

Deno.test("checkTraceId() takes 1 to TRACE_ID_CHARS_MAX characters of A-Z a-z 0-9 . _ - only", () => {
  assert.equal(checkTraceId("a"), undefined);
  assert.equal(checkTraceId("x".repeat(TRACE_ID_CHARS_MAX)), undefined);
  assert.equal(checkTraceId("t-AZ.az_09"), undefined);
  assert.match(checkTraceId("x".repeat(TRACE_ID_CHARS_MAX + 1))!, /TRACE_ID_CHARS_MAX/);
  assert.match(checkTraceId("")!, /not 1 to 64 characters/);
  for (const bad of ["a b", "é", "a/b", "a\nb", '"']) {
    assert.ok(checkTraceId(bad) !== undefined, bad);
  }
});

const txnOp = (kind: number, key: Uint8Array, value = bytes(0)) => ({ kind, key, value });
const txnOf = (fields: Partial<TxnFields>): TxnFields => ({
  compares: [],
  success: [],
  failure: [],
  ...noSession,
  ...fields,
});

/** A value limit under which 128 operations in each branch still fit a Txn's byte bound. */
const TXN_LIMITS = { valueBytesMax: 1024 };

Deno.test("checkTxn() takes every limit at the limit and refuses one past it", () => {
  const key = bytes(1);
  const get = txnOp(1, key);
  const ok = (fields: Partial<TxnFields>) => {
    const problem = checkRequest({ txn: txnOf(fields) }, TXN_LIMITS);
    assert.equal(problem, undefined, problem?.message ?? "");
  };
  const refused = (fields: Partial<TxnFields>, field: string) =>
    assert.equal(checkRequest({ txn: txnOf(fields) }, TXN_LIMITS)?.field, field);

  refused({}, "compares");
  ok({ success: [get] });
  const many = Array.from({ length: TXN_OPS_MAX }, () => get);
  ok({ success: many, failure: many });
  refused({ success: [...many, get] }, "success");
  refused({ failure: [...many, get] }, "failure");
  const compare = { key, result: 0, target: 0, value: bytes(0) };
  ok({ compares: Array.from({ length: TXN_OPS_MAX }, () => compare) });
  refused({ compares: Array.from({ length: TXN_OPS_MAX + 1 }, () => compare) }, "compares");

  // Keys and values as everywhere: the key 1 B – KEY_BYTES_MAX, each value within the limit.
  ok({ success: [txnOp(2, bytes(KEY_BYTES_MAX), bytes(TXN_LIMITS.valueBytesMax))] });
  refused({ success: [txnOp(2, bytes(KEY_BYTES_MAX + 1))] }, "success[0].key");
  refused({ success: [txnOp(1, bytes(0))] }, "success[0].key");
  refused({ success: [txnOp(2, key, bytes(TXN_LIMITS.valueBytesMax + 1))] }, "success[0].value");
  refused(
    { compares: [{ ...compare, value: bytes(TXN_LIMITS.valueBytesMax + 1) }] },
    "compares[0].value",
  );
  // A GET's or DELETE's value is not sent anywhere: not counted.
  ok({ success: [txnOp(3, key, bytes(TXN_LIMITS.valueBytesMax + 1))] });

  // Unknown kinds, results and targets.
  refused({ success: [txnOp(0, key)] }, "success[0]");
  refused({ success: [txnOp(4, key)] }, "success[0]");
  refused({ compares: [{ ...compare, result: 4 }] }, "compares[0]");
  refused({ compares: [{ ...compare, target: 2 }] }, "compares[0]");

  // In all at most txnBytesMax: 2 values and a key of the largest size, framing counted.
  const max = txnBytesMax(TXN_LIMITS.valueBytesMax);
  const full = (extra: number) => [
    txnOp(
      2,
      bytes(KEY_BYTES_MAX - 3 * TXN_ENTRY_OVERHEAD_BYTES - 2 + extra),
      bytes(TXN_LIMITS.valueBytesMax),
    ),
    txnOp(2, bytes(1), bytes(TXN_LIMITS.valueBytesMax)),
    txnOp(1, bytes(1)),
  ];
  assert.equal(
    full(0).reduce(
      (n, op) =>
        n + op.key.length + (op.kind === 2 ? op.value.length : 0) + TXN_ENTRY_OVERHEAD_BYTES,
      0,
    ),
    max,
  );
  ok({ success: full(0) });
  refused({ success: full(1) }, "txn");

  // The session fields as for every mutation.
  refused({ success: [get], clientId: "", seq: 1 }, "client_id");
  ok({ success: [get], clientId: "c", seq: 2, ackSeq: 1 });
});
