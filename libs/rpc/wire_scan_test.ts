/**
 * eachWireField() and repeatedPast() against messages protobufjs encodes (every wire type, long
 * lengths), malformed bytes (stop quietly), and the bound at its limit and one past it.
 */
import assert from "node:assert/strict";
import protobuf from "protobufjs";
import { eachWireField, MALFORMED, repeatedPast } from "./wire_scan.ts";

/** field 1 varint, 2 fixed64, 3 bytes of `length`, 5 fixed32, then `entries` × field 7 bytes. */
function message(length: number, entries: number): Uint8Array {
  const writer = new protobuf.Writer()
    .uint32((1 << 3) | 0).uint64("18446744073709551615")
    .uint32((2 << 3) | 1).fixed64(7)
    .uint32((3 << 3) | 2).bytes(new Uint8Array(length).fill(9))
    .uint32((5 << 3) | 5).fixed32(3);
  for (let i = 0; i < entries; i++) writer.uint32((7 << 3) | 2).bytes(new Uint8Array([i & 0xff]));
  return writer.finish();
}

Deno.test("eachWireField() visits every top-level field with its value's bounds", () => {
  const bytes = message(300, 2);
  const seen: Array<[number, number]> = [];
  eachWireField(bytes, ({ field, start, end }) => {
    seen.push([field, end - start]);
    return true;
  });
  assert.deepEqual(seen, [[1, 10], [2, 8], [3, 300], [5, 4], [7, 1], [7, 1]]);
  // A bytes field's bounds are its contents.
  eachWireField(bytes, ({ field, start, end }) => {
    if (field === 3) assert.ok(bytes.subarray(start, end).every((b) => b === 9));
    return true;
  });
  // Stopping early.
  let visits = 0;
  eachWireField(bytes, () => ++visits < 2);
  assert.equal(visits, 2);
});

Deno.test("eachWireField() stops quietly at malformed bytes", () => {
  const whole = message(20, 1);
  for (let cut = 0; cut < whole.length; cut++) {
    const fields: number[] = [];
    eachWireField(whole.subarray(0, cut), ({ field, end }) => {
      assert.ok(end <= cut, `a field past the end at cut ${cut}`);
      fields.push(field);
      return true;
    });
    assert.ok(fields.length <= 5);
  }
  // A whole message reads plainly; every cut of it short of its end does not (each cut here
  // falls inside a field).
  assert.equal(eachWireField(whole, () => true), true);
  for (const cut of [1, 5, 12, 14, 30]) {
    assert.equal(eachWireField(whole.subarray(0, cut), () => true), false, `cut ${cut}`);
  }
});

Deno.test("eachWireField() fails closed on encodings that could hide a field", () => {
  const visitsOf = (bytes: number[]) => {
    let visits = 0;
    const plain = eachWireField(new Uint8Array(bytes), () => ++visits > 0);
    return { plain, visits };
  };
  // A group (wire types 3 and 4), even an empty one in an unknown field.
  assert.deepEqual(visitsOf([0x7b, 0x7c, 0x12, 0]), { plain: false, visits: 0 });
  // A varint value of 11 bytes (protobufjs skips any length); 10 bytes is plain.
  const long = (n: number) => [...new Array(n - 1).fill(0x80), 0x01];
  assert.deepEqual(visitsOf([0x08, ...long(11), 0x12, 0]), { plain: false, visits: 0 });
  assert.deepEqual(visitsOf([0x08, ...long(10), 0x12, 0]), { plain: true, visits: 2 });
  // A tag of 5 bytes past 2^32 (protobufjs keeps its low 32 bits: field 2), or of 6 bytes.
  assert.deepEqual(visitsOf([0x92, 0x80, 0x80, 0x80, 0x10, 0]), { plain: false, visits: 0 });
  assert.deepEqual(visitsOf([0x92, 0x80, 0x80, 0x80, 0x80, 0x00, 0]), {
    plain: false,
    visits: 0,
  });
  // A tag of 5 bytes below 2^32 is plain: field 2^28 + 2.
  assert.deepEqual(visitsOf([0x92, 0x80, 0x80, 0x80, 0x08, 0]), { plain: true, visits: 1 });
  // Field 0, and a length past the end.
  assert.deepEqual(visitsOf([0x02, 0]), { plain: false, visits: 0 });
  assert.deepEqual(visitsOf([0x12, 5, 1]), { plain: false, visits: 0 });
});

Deno.test("repeatedPast() allows a list of exactly the maximum and names one entry more", () => {
  const names = new Map([[7, "ops"]]);
  assert.equal(repeatedPast(message(5, 128), names, 128, "OPS_MAX"), undefined);
  assert.equal(
    repeatedPast(message(5, 129), names, 128, "OPS_MAX"),
    'Field "ops" has more than 128 entries: the maximum is 128 (OPS_MAX)',
  );
  // Fields not named are not counted; a named one is, once per occurrence.
  assert.equal(repeatedPast(message(5, 129), new Map([[9, "none"]]), 0, "X"), undefined);
  assert.equal(repeatedPast(message(5, 0), new Map([[3, "b"]]), 1, "X"), undefined);
  assert.match(repeatedPast(message(5, 0), new Map([[3, "b"]]), 0, "X") ?? "", /"b" has more/);
  // A group in front hides nothing: the message is refused as malformed.
  const hidden = new Uint8Array([0x7b, 0x7c, ...message(5, 129)]);
  assert.equal(repeatedPast(hidden, names, 128, "OPS_MAX"), MALFORMED);
});
