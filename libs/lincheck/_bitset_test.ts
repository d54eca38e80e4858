// Checks the bitset behind the search's memo cache: membership, the incrementally kept hash
// (which must depend only on the members) and snapshots.

import assert from "node:assert/strict";
import { AssertionError } from "./_assert.ts";
import { Bitset } from "./_bitset.ts";

Deno.test("Bitset.add() and delete() track membership across word boundaries", () => {
  const bits = new Bitset(70);
  for (const i of [0, 31, 32, 63, 69]) bits.add(i);
  assert.equal(bits.count, 5);
  for (let i = 0; i < 70; i++) assert.equal(bits.has(i), [0, 31, 32, 63, 69].includes(i), `${i}`);
  bits.delete(31);
  assert.equal(bits.has(31), false);
  assert.equal(bits.count, 4);
});

Deno.test("Bitset.hash depends only on the members, not the order of changes", () => {
  const a = new Bitset(100);
  const b = new Bitset(100);
  for (const i of [3, 50, 99]) a.add(i);
  for (const i of [99, 7, 3, 50]) b.add(i);
  b.delete(7);
  assert.equal(a.hash, b.hash);
  assert.ok(a.equalsSnapshot(b.snapshot()));
  b.delete(3);
  assert.notEqual(a.hash, b.hash);
  assert.ok(!a.equalsSnapshot(b.snapshot()));
  b.delete(50);
  b.delete(99);
  assert.equal(b.hash, new Bitset(100).hash);
});

Deno.test("Bitset.snapshot() is a copy", () => {
  const bits = new Bitset(10);
  bits.add(1);
  const snapshot = bits.snapshot();
  bits.add(2);
  assert.ok(!bits.equalsSnapshot(snapshot));
});

Deno.test("Bitset rejects out-of-range indices and double adds", () => {
  const bits = new Bitset(8);
  assert.throws(() => bits.add(8), AssertionError);
  assert.throws(() => bits.has(-1), AssertionError);
  bits.add(0);
  assert.throws(() => bits.add(0), AssertionError);
  assert.throws(() => bits.delete(1), AssertionError);
});
