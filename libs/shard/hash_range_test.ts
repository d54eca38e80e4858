// Checks splitEvenly() exhaustively for 1..1024 shards (exact cover, near-equal sizes) and the
// small range helpers on a table.

import assert from "node:assert/strict";
import { HASH_SPACE, isHashRange, rangeContains, SHARDS_MAX, splitEvenly } from "./hash_range.ts";

Deno.test("splitEvenly() covers [0, 2^32) exactly for 1..1024 shards", () => {
  for (let n = 1; n <= 1024; n++) {
    const ranges = splitEvenly(n);
    assert.equal(ranges.length, n);
    assert.equal(ranges[0].lo, 0);
    assert.equal(ranges[n - 1].hi, HASH_SPACE);
    const floor = Math.floor(HASH_SPACE / n);
    for (let i = 0; i < n; i++) {
      const { lo, hi } = ranges[i];
      assert.ok(isHashRange(ranges[i]), `n=${n} i=${i}`);
      if (i > 0) assert.equal(lo, ranges[i - 1].hi, `n=${n}: gap or overlap before range ${i}`);
      const size = hi - lo;
      assert.ok(size === floor || size === floor + 1, `n=${n} i=${i}: size ${size}`);
    }
  }
});

Deno.test("splitEvenly() covers the space at SHARDS_MAX", () => {
  const ranges = splitEvenly(SHARDS_MAX);
  assert.equal(ranges.length, SHARDS_MAX);
  assert.equal(ranges.at(-1)?.hi, HASH_SPACE);
  assert.ok(ranges.every((range, i) => i === 0 || range.lo === ranges[i - 1].hi));
});

Deno.test("splitEvenly() splits powers of two on exact boundaries", () => {
  assert.deepEqual(splitEvenly(1), [{ lo: 0, hi: 2 ** 32 }]);
  assert.deepEqual(splitEvenly(4), [
    { lo: 0, hi: 0x40000000 },
    { lo: 0x40000000, hi: 0x80000000 },
    { lo: 0x80000000, hi: 0xc0000000 },
    { lo: 0xc0000000, hi: 2 ** 32 },
  ]);
});

Deno.test("splitEvenly() rejects counts outside [1, SHARDS_MAX]", () => {
  for (const n of [0, -1, 1.5, NaN, Infinity, SHARDS_MAX + 1]) {
    assert.throws(() => splitEvenly(n), RangeError, `splitEvenly(${n})`);
  }
  assert.throws(() => splitEvenly(0), /expected an integer from 1 to 4096 \(SHARDS_MAX\)/);
});

Deno.test("isHashRange() accepts only integers with 0 <= lo < hi <= 2^32", () => {
  const table: [number, number, boolean][] = [
    [0, 1, true],
    [0, 2 ** 32, true],
    [2 ** 32 - 1, 2 ** 32, true],
    [5, 5, false],
    [6, 5, false],
    [-1, 5, false],
    [0, 2 ** 32 + 1, false],
    [0.5, 5, false],
    [0, NaN, false],
  ];
  for (const [lo, hi, expected] of table) {
    assert.equal(isHashRange({ lo, hi }), expected, `[${lo}, ${hi})`);
  }
});

Deno.test("rangeContains() includes lo and excludes hi", () => {
  const range = { lo: 10, hi: 20 };
  assert.equal(rangeContains(range, 9), false);
  assert.equal(rangeContains(range, 10), true);
  assert.equal(rangeContains(range, 19), true);
  assert.equal(rangeContains(range, 20), false);
  assert.equal(rangeContains({ lo: 0, hi: 2 ** 32 }, 2 ** 32 - 1), true);
});
