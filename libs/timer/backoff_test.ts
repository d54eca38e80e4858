// Checks backoffDelayMs() bounds as a property over random options and attempts, its exact
// values for chosen prng samples, the Backoff counter, and argument checks.

import assert from "node:assert/strict";
import fc from "fast-check";
import { AssertionError } from "./_assert.ts";
import { Backoff, BACKOFF_ATTEMPT_MAX, backoffDelayMs } from "./backoff.ts";
import { TIMEOUT_MS_MAX } from "./clock.ts";

Deno.test("backoffDelayMs() stays in [minMs, min(maxMs, minMs * 2^(attempt + 1)))", () => {
  const options = fc.tuple(
    fc.double({ min: 0.001, max: 10_000, noNaN: true }),
    fc.double({ min: 1, max: 1000, noNaN: true }),
  ).map(([minMs, factor]) => ({ minMs, maxMs: Math.min(minMs * factor, TIMEOUT_MS_MAX) }));
  const sample = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
  fc.assert(
    fc.property(
      options,
      fc.integer({ min: 0, max: 200 }),
      sample,
      ({ minMs, maxMs }, attempt, u) => {
        const delay = backoffDelayMs(attempt, { minMs, maxMs, prng: () => u });
        const ceiling = Math.min(maxMs, minMs * 2 ** (attempt + 1));
        assert.ok(delay >= minMs, `delay ${delay} < minMs ${minMs}`);
        assert.ok(delay <= maxMs, `delay ${delay} > maxMs ${maxMs}`);
        if (ceiling > minMs) assert.ok(delay < ceiling, `delay ${delay} >= ceiling ${ceiling}`);
        else assert.equal(delay, minMs);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("backoffDelayMs() grows exponentially up to maxMs", () => {
  const options = { minMs: 10, maxMs: 1000 };
  const low = (attempt: number) => backoffDelayMs(attempt, { ...options, prng: () => 0 });
  const mid = (attempt: number) => backoffDelayMs(attempt, { ...options, prng: () => 0.5 });
  assert.deepEqual([0, 1, 2, 3].map(low), [10, 10, 10, 10]); // Full jitter reaches the floor.
  // Ceilings 20, 40, 80, 160, 320, 640, then maxMs 1000 from attempt 6 on.
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 100].map(mid), [
    15,
    25,
    45,
    85,
    165,
    325,
    505,
    505,
    505,
  ]);
  assert.equal(backoffDelayMs(1_000_000, { minMs: 10, maxMs: 10 }), 10);
});

Deno.test("backoffDelayMs() rejects bad options and attempts", () => {
  const bad: [number, number][] = [[0, 10], [-1, 10], [10, 5], [NaN, 10], [1, TIMEOUT_MS_MAX + 1]];
  for (const [minMs, maxMs] of bad) {
    assert.throws(() => backoffDelayMs(0, { minMs, maxMs }), RangeError, `[${minMs}, ${maxMs}]`);
  }
  assert.throws(() => backoffDelayMs(0, { minMs: 0, maxMs: 10 }), /expected 0 < minMs <= maxMs/);
  for (const attempt of [-1, 1.5, NaN]) {
    assert.throws(() => backoffDelayMs(attempt, { minMs: 1, maxMs: 10 }), RangeError);
  }
  assert.throws(() => backoffDelayMs(0, { minMs: 1, maxMs: 10, prng: () => 1 }), AssertionError);
});

Deno.test("Backoff counts attempts, saturates at BACKOFF_ATTEMPT_MAX, and resets", () => {
  const backoff = new Backoff({ minMs: 10, maxMs: 1000, prng: () => 0.5 });
  assert.deepEqual([1, 2, 3].map(() => backoff.nextDelayMs()), [15, 25, 45]);
  assert.equal(backoff.attempt, 3);
  for (let i = 0; i < 2 * BACKOFF_ATTEMPT_MAX; i++) backoff.nextDelayMs();
  assert.equal(backoff.attempt, BACKOFF_ATTEMPT_MAX);
  assert.equal(backoff.nextDelayMs(), 505);
  backoff.reset();
  assert.equal(backoff.attempt, 0);
  assert.equal(backoff.nextDelayMs(), 15);
  assert.throws(() => new Backoff({ minMs: 5, maxMs: 1 }), RangeError);
});
