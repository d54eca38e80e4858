// Checks hexOf() and bytesOfHex() on every byte value, across hexOf()'s 8 KiB pieces, and that
// bytesOfHex() refuses anything but pairs of hex digits.

import assert from "node:assert/strict";
import { bytesOfHex, hexOf } from "./hex.ts";

Deno.test("hexOf() writes two lowercase digits per byte, and bytesOfHex() reads them back", () => {
  const every = Uint8Array.from({ length: 256 }, (_, i) => i);
  const expected = Array.from(every, (b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(hexOf(every), expected);
  assert.deepEqual(bytesOfHex(expected), every);
  assert.deepEqual(bytesOfHex(expected.toUpperCase()), every);
  assert.equal(hexOf(new Uint8Array()), "");
  assert.deepEqual(bytesOfHex(""), new Uint8Array());
  const long = Uint8Array.from({ length: 20_000 }, (_, i) => (i * 37) & 0xff);
  assert.deepEqual(bytesOfHex(hexOf(long)), long);
  assert.equal(hexOf(long).length, 40_000);
});

Deno.test("bytesOfHex() refuses odd lengths and characters that are not hex digits", () => {
  for (const text of ["0", "abc", "0g", "g0", " 00", "00 ", "0x00", "\u00e900", "-"]) {
    assert.equal(bytesOfHex(text), undefined, JSON.stringify(text));
  }
});
