// Checks the hash helpers against known values and for the properties models rely on.

import assert from "node:assert/strict";
import { combineHash, hashString, mixHash } from "./hash.ts";

Deno.test("hashString() computes 32-bit FNV-1a", () => {
  assert.equal(hashString(""), 0x811c9dc5);
  assert.equal(hashString("a"), 0xe40c292c);
  assert.equal(hashString("foobar"), 0xbf9cf968);
});

Deno.test("combineHash() is order-sensitive and stays unsigned", () => {
  const ab = combineHash(combineHash(1, hashString("a")), hashString("b"));
  const ba = combineHash(combineHash(1, hashString("b")), hashString("a"));
  assert.notEqual(ab, ba);
  for (const value of [ab, ba, mixHash(-1), mixHash(0x7fffffff)]) {
    assert.ok(Number.isSafeInteger(value) && value >= 0 && value < 2 ** 32);
  }
});
