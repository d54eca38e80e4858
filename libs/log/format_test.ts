// Checks the JSON encoding of lines and field values: every line parses, awkward values
// (bigint, bytes, errors, cycles, throwing getters) are written readably and never throw.

import assert from "node:assert/strict";
import {
  buildLine,
  BYTES_HEX_MAX,
  encodeFields,
  encodeValue,
  FIELD_DEPTH_MAX,
  FIELD_ITEMS_MAX,
  TimestampFormatter,
} from "./format.ts";
import { utf8Length } from "./_line_buffer.ts";

function decoded(value: unknown): unknown {
  const text = encodeValue(value);
  assert.notEqual(text, undefined);
  return JSON.parse(text!);
}

Deno.test("encodeValue() writes plain JSON values as JSON", () => {
  const table: [unknown, unknown][] = [
    ['a\nb"c', 'a\nb"c'],
    [42, 42],
    [-1.5, -1.5],
    [true, true],
    [null, null],
    [[1, "x", null], [1, "x", null]],
    [{ a: { b: [1] } }, { a: { b: [1] } }],
  ];
  for (const [input, expected] of table) assert.deepEqual(decoded(input), expected);
  assert.equal(encodeValue(undefined), undefined);
});

Deno.test("encodeValue() writes bigint, non-finite numbers, symbols and functions as strings", () => {
  assert.equal(decoded(12345678901234567890n), "12345678901234567890");
  assert.equal(decoded(Number.NaN), "NaN");
  assert.equal(decoded(-Infinity), "-Infinity");
  assert.equal(decoded(Symbol("s")), "Symbol(s)");
  assert.equal(decoded(function named() {}), "[function named]");
});

Deno.test("encodeValue() writes short bytes as hex and cuts long ones", () => {
  assert.equal(decoded(new Uint8Array([0, 1, 0xab, 0xff])), "0001abff");
  assert.equal(decoded(new Uint8Array(0)), "");
  const long = new Uint8Array(100).fill(0xee);
  assert.equal(decoded(long), "ee".repeat(BYTES_HEX_MAX) + "…(100 bytes)");
  const view = new Uint8Array([9, 1, 2, 9]).subarray(1, 3);
  assert.equal(decoded(view), "0102");
  assert.equal(decoded(new Uint16Array([0x0102]).buffer), "0201");
});

Deno.test("encodeValue() writes an Error with message, stack and cause", () => {
  const cause = new RangeError("inner");
  const error = new Error("outer", { cause });
  const value = decoded(error) as Record<string, unknown>;
  assert.equal(value.name, "Error");
  assert.equal(value.message, "outer");
  assert.match(String(value.stack), /outer/);
  assert.equal((value.cause as Record<string, unknown>).message, "inner");
  const notFound = decoded(new Deno.errors.NotFound("gone")) as Record<string, unknown>;
  assert.equal(notFound.name, "NotFound");
});

Deno.test("encodeValue() survives cycles, depth, throwing getters and toJSON", () => {
  const cyclic: Record<string, unknown> = { name: "a" };
  cyclic.self = cyclic;
  assert.deepEqual(decoded(cyclic), { name: "a", self: "[Circular]" });
  let deep: unknown = "bottom";
  for (let i = 0; i < FIELD_DEPTH_MAX + 2; i++) deep = { d: deep };
  assert.match(encodeValue(deep)!, /"\[Object\]"/);
  const throwing = {
    get bad() {
      throw new Error("no");
    },
    ok: 1,
  };
  assert.deepEqual(decoded(throwing), { bad: "[Unserializable: no]", ok: 1 });
  const badJson = {
    toJSON() {
      throw new Error("nope");
    },
  };
  assert.equal(decoded(badJson), "[Unserializable: nope]");
  assert.equal(decoded(new Date(0)), "1970-01-01T00:00:00.000Z");
  assert.deepEqual(decoded(new Map([["k", 1n]])), { k: "1" });
  assert.deepEqual(decoded(new Set([1, 2])), [1, 2]);
  const many = Array.from({ length: FIELD_ITEMS_MAX + 5 }, (_, i) => i);
  const listed = decoded(many) as unknown[];
  assert.equal(listed.length, FIELD_ITEMS_MAX + 1);
  assert.equal(listed.at(-1), `…(${FIELD_ITEMS_MAX + 5} items)`);
});

Deno.test("encodeFields() renames reserved and bound keys and skips undefined", () => {
  const text = encodeFields({ msg: "m", shard: 2, gone: undefined, ok: "y" }, new Set(["shard"]));
  const line = buildLine("2026-01-01T00:00:00.000Z", "info", "hello", ',"shard":1', text);
  assert.deepEqual(JSON.parse(line), {
    ts: "2026-01-01T00:00:00.000Z",
    level: "info",
    msg: "hello",
    shard: 1,
    msg_: "m",
    shard_: 2,
    ok: "y",
  });
  assert.ok(line.endsWith("}\n"));
  assert.equal(line.indexOf("\n"), line.length - 1);
});

Deno.test("TimestampFormatter.format() matches toISOString() and tracks the UTC day", () => {
  const formatter = new TimestampFormatter();
  const times = [
    0,
    999,
    1000,
    1_764_115_199_999,
    1_764_115_200_000,
    1_764_115_200_007.9,
    86_399_050,
  ];
  for (const ms of times) {
    const expected = new Date(Math.floor(ms)).toISOString();
    assert.equal(formatter.format(ms), expected);
    assert.equal(formatter.day, expected.slice(0, 10));
  }
});

Deno.test("utf8Length() matches TextEncoder", () => {
  const encoder = new TextEncoder();
  for (const text of ["", "abc", "é", "€", "😀x", "\ud800", "a\udc00b", "\ud800\ud800"]) {
    assert.equal(utf8Length(text), encoder.encode(text).length, JSON.stringify(text));
  }
});
