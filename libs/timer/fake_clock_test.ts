// Checks FakeClock: due order (ties by setting order), clearing, timeouts set from callbacks,
// block() for late timers, guards against misuse, and a property test against a sorted-list
// oracle over random set/clear/advance scripts.

import assert from "node:assert/strict";
import fc from "fast-check";
import type { TimeoutHandle } from "./clock.ts";
import { FAKE_CLOCK_FIRES_PER_ADVANCE_MAX, FakeClock } from "./fake_clock.ts";

Deno.test("FakeClock.advance() fires due timeouts in due order, ties in setting order", () => {
  const clock = new FakeClock();
  const log: string[] = [];
  const record = (name: string) => () => log.push(`${name}@${clock.now()}`);
  clock.setTimeout(record("c"), 30);
  clock.setTimeout(record("a1"), 10);
  clock.setTimeout(record("b"), 20);
  clock.setTimeout(record("a2"), 10);
  clock.setTimeout(record("zero"), 0);
  assert.equal(clock.advance(25), 4);
  assert.deepEqual(log, ["zero@0", "a1@10", "a2@10", "b@20"]);
  assert.equal(clock.now(), 25);
  assert.equal(clock.advance(5), 1);
  assert.deepEqual(log.at(-1), "c@30");
  assert.equal(clock.pendingCount, 0);
});

Deno.test("FakeClock.clearTimeout() cancels a pending timeout and ignores stale handles", () => {
  const clock = new FakeClock(1000);
  let fired = 0;
  const handle = clock.setTimeout(() => fired++, 10);
  clock.setTimeout(() => fired++, 20);
  clock.clearTimeout(handle);
  clock.clearTimeout(handle);
  assert.equal(clock.pendingCount, 1);
  assert.equal(clock.nextDueMs(), 1020);
  clock.advance(100);
  assert.equal(fired, 1);
  clock.clearTimeout(handle);
  assert.equal(clock.nextDueMs(), undefined);
});

Deno.test("FakeClock.advance() fires timeouts set by callbacks when they fall due in time", () => {
  const clock = new FakeClock();
  const times: number[] = [];
  const tick = () => {
    times.push(clock.now());
    clock.setTimeout(tick, 10);
  };
  clock.setTimeout(tick, 10);
  clock.advance(45);
  assert.deepEqual(times, [10, 20, 30, 40]);
  assert.equal(clock.nextDueMs(), 50);
});

Deno.test("FakeClock.block() moves time without firing; overdue timeouts fire late, in order", () => {
  const clock = new FakeClock();
  const log: string[] = [];
  clock.setTimeout(() => log.push(`a@${clock.now()}`), 10);
  clock.setTimeout(() => {
    log.push(`slow@${clock.now()}`);
    clock.block(50); // The callback takes 50 ms.
  }, 5);
  clock.setTimeout(() => log.push(`b@${clock.now()}`), 20);
  clock.advance(6);
  assert.deepEqual(log, ["slow@5"]);
  assert.equal(clock.now(), 55);
  clock.advance(0);
  assert.deepEqual(log, ["slow@5", "a@55", "b@55"]);
  clock.block(10);
  assert.equal(clock.now(), 65);
});

Deno.test("FakeClock.runNext() and advanceTo() jump to a time", () => {
  const clock = new FakeClock();
  let fired = 0;
  clock.setTimeout(() => fired++, 30);
  clock.setTimeout(() => fired++, 30);
  clock.setTimeout(() => fired++, 40);
  assert.equal(clock.runNext(), 2);
  assert.equal(clock.now(), 30);
  assert.equal(clock.advanceTo(10), 0); // In the past: time stays.
  assert.equal(clock.now(), 30);
  assert.equal(clock.advanceTo(40), 1);
  assert.equal(clock.runNext(), 0);
  assert.equal(fired, 3);
});

Deno.test("FakeClock rejects bad arguments and nested advance()", () => {
  const clock = new FakeClock();
  assert.throws(() => clock.setTimeout(() => {}, NaN), RangeError);
  assert.throws(() => clock.setTimeout(() => {}, 2 ** 31), /TIMEOUT_MS_MAX/);
  assert.throws(() => clock.advance(-1), RangeError);
  assert.throws(() => clock.block(Infinity), RangeError);
  assert.throws(() => new FakeClock(NaN), RangeError);
  clock.setTimeout(() => clock.advance(1), 1);
  assert.throws(() => clock.advance(1), /from inside one of its callbacks/);
  // The clock is still usable.
  let fired = false;
  clock.setTimeout(() => (fired = true), 1);
  clock.advance(1);
  assert.ok(fired);
});

Deno.test("FakeClock.setTimeout() treats a negative delay as 0", () => {
  const clock = new FakeClock(5);
  let firedAt = -1;
  clock.setTimeout(() => (firedAt = clock.now()), -10);
  clock.advance(0);
  assert.equal(firedAt, 5);
});

Deno.test("FakeClock.advance() propagates a callback's error and stays consistent", () => {
  const clock = new FakeClock();
  let later = 0;
  clock.setTimeout(() => {
    throw new Error("boom");
  }, 10);
  clock.setTimeout(() => later++, 20);
  assert.throws(() => clock.advance(100), /boom/);
  assert.equal(clock.now(), 10);
  assert.equal(clock.advance(100), 1);
  assert.equal(later, 1);
});

Deno.test("FakeClock.advance() stops a callback that reschedules itself forever", () => {
  const clock = new FakeClock();
  const spin = () => {
    clock.setTimeout(spin, 0);
  };
  clock.setTimeout(spin, 0);
  assert.throws(() => clock.advance(0), /FAKE_CLOCK_FIRES_PER_ADVANCE_MAX/);
  assert.equal(FAKE_CLOCK_FIRES_PER_ADVANCE_MAX, 1_000_000);
});

Deno.test("FakeClock fires like a sorted-list oracle on random scripts", () => {
  type Op = { kind: "set"; ms: number } | { kind: "clear"; pick: number } | {
    kind: "advance";
    ms: number;
  };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant("set" as const), ms: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ kind: fc.constant("clear" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 30 }) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const clock = new FakeClock();
      const handles: TimeoutHandle[] = [];
      const fired: [number, number][] = [];
      // The oracle: pending [due, id] pairs, fired by a full sort.
      let oracleNow = 0;
      let oraclePending: [number, number][] = [];
      const oracleFired: [number, number][] = [];
      for (const step of ops) {
        if (step.kind === "set") {
          const id = handles.length;
          handles.push(clock.setTimeout(() => fired.push([clock.now(), id]), step.ms));
          oraclePending.push([oracleNow + step.ms, id]);
        } else if (step.kind === "clear") {
          if (handles.length === 0) continue;
          const id = step.pick % handles.length;
          clock.clearTimeout(handles[id]);
          oraclePending = oraclePending.filter(([, pendingId]) => pendingId !== id);
        } else {
          clock.advance(step.ms);
          oracleNow += step.ms;
          const due = oraclePending.filter(([dueMs]) => dueMs <= oracleNow);
          due.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
          oracleFired.push(...due);
          oraclePending = oraclePending.filter(([dueMs]) => dueMs > oracleNow);
        }
      }
      assert.deepEqual(fired, oracleFired);
      assert.equal(clock.pendingCount, oraclePending.length);
    }),
    { numRuns: 300 },
  );
});
