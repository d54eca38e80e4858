// Checks the key and value size limits at and around each boundary.

import assert from "node:assert/strict";
import {
  KEY_BYTES_MAX,
  KEY_BYTES_MIN,
  validateKey,
  validateValue,
  VALUE_BYTES_MAX,
} from "./key_limits.ts";

Deno.test("key and value limits match DESIGN.md", () => {
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
    message: "Key has 0 bytes: the minimum is 1 (KEY_BYTES_MIN)",
  });
  assert.deepEqual(validateKey(new Uint8Array(KEY_BYTES_MAX + 1)), {
    kind: "tooLong",
    byteLength: 4097,
    limit: 4096,
    limitName: "KEY_BYTES_MAX",
    message: "Key has 4097 bytes: the maximum is 4096 (KEY_BYTES_MAX)",
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
    limitName: "valueBytesMax",
    message: "Value has 11 bytes: the maximum is 10 (valueBytesMax)",
  });
});

Deno.test("validateValue() rejects a nonsensical limit", () => {
  assert.throws(() => validateValue(new Uint8Array(0), { valueBytesMax: -1 }), RangeError);
  assert.throws(() => validateValue(new Uint8Array(0), { valueBytesMax: 1.5 }), RangeError);
});
