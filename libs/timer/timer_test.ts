// Checks Timer on a FakeClock: exact fixed-period fires, random delays in [min, max) and
// reproducible for a seeded prng, reset, stop, no drift under slow callbacks, skipped and
// counted rounds, error handling and argument checks. One smoke test uses the real clock with
// a bounded wait.

import assert from "node:assert/strict";
import fc from "fast-check";
import { mulberry32 } from "@tinykv/raft";
import { AssertionError } from "./_assert.ts";
import { systemClock, TIMEOUT_MS_MAX } from "./clock.ts";
import { FakeClock } from "./fake_clock.ts";
import { Timer, type TimerFire, type TimerMode } from "./timer.ts";

function recordingTimer(clock: FakeClock, mode: TimerMode, extra: { prng?: () => number } = {}) {
  const fires: TimerFire[] = [];
  const timer = new Timer({ clock, mode, onFire: (fire) => fires.push(fire), ...extra });
  return { timer, fires, times: () => fires.map((fire) => fire.nowMs) };
}

const fixed = (periodMs: number): TimerMode => ({ kind: "fixed", periodMs });

Deno.test("Timer (fixed) fires at exact multiples of the period", () => {
  const clock = new FakeClock(1000);
  const { timer, fires, times } = recordingTimer(clock, fixed(10));
  assert.equal(timer.running, false);
  timer.start();
  assert.equal(timer.running, true);
  clock.advance(9);
  assert.deepEqual(times(), []);
  clock.advance(41);
  assert.deepEqual(times(), [1010, 1020, 1030, 1040, 1050]);
  assert.ok(fires.every((fire) => fire.intendedAtMs === fire.nowMs && fire.missedRounds === 0));
  assert.equal(timer.firedRounds, 5);
  assert.equal(clock.pendingCount, 1);
  timer.stop();
});

Deno.test("Timer.start() does nothing while running", () => {
  const clock = new FakeClock();
  const { timer, times } = recordingTimer(clock, fixed(10));
  timer.start();
  clock.advance(5);
  timer.start();
  clock.advance(10);
  assert.deepEqual(times(), [10]);
  assert.equal(clock.pendingCount, 1);
  timer.stop();
});

Deno.test("Timer.stop() prevents further fires, also from inside the callback", () => {
  const clock = new FakeClock();
  const { timer, times } = recordingTimer(clock, fixed(10));
  timer.start();
  clock.advance(25);
  timer.stop();
  timer.stop();
  assert.equal(timer.running, false);
  assert.equal(clock.pendingCount, 0);
  clock.advance(100);
  assert.deepEqual(times(), [10, 20]);

  let count = 0;
  const selfStopping: Timer = new Timer({
    clock,
    mode: fixed(10),
    onFire: () => {
      if (++count === 3) selfStopping.stop();
    },
  });
  selfStopping.start();
  clock.advance(100);
  assert.equal(count, 3);
  assert.equal(selfStopping.running, false);
  assert.equal(clock.pendingCount, 0);
});

Deno.test("Timer can start again after a stop, on a new schedule", () => {
  const clock = new FakeClock();
  const { timer, times } = recordingTimer(clock, fixed(10));
  timer.start();
  clock.advance(15);
  timer.stop();
  clock.advance(2);
  timer.start();
  clock.advance(20);
  assert.deepEqual(times(), [10, 27, 37]);
  timer.stop();
});

Deno.test("Timer.reset() (fixed) postpones the round to one period from now", () => {
  const clock = new FakeClock();
  const { timer, times } = recordingTimer(clock, fixed(10));
  timer.start();
  clock.advance(5);
  assert.equal(timer.reset(), true);
  clock.advance(14);
  assert.deepEqual(times(), [15]);
  clock.advance(8);
  assert.equal(timer.reset(), true); // At 27: the round due at 35 moves to 37.
  clock.advance(20);
  assert.deepEqual(times(), [15, 25, 37, 47]);
  timer.stop();
});

Deno.test("Timer.reset() does nothing to a stopped timer", () => {
  const clock = new FakeClock();
  const { timer, times } = recordingTimer(clock, fixed(10));
  assert.equal(timer.reset(), false);
  assert.equal(timer.running, false);
  clock.advance(100);
  assert.deepEqual(times(), []);
  assert.equal(clock.pendingCount, 0);
});

Deno.test("Timer.reset() from inside the callback restarts the round from now", () => {
  const clock = new FakeClock();
  const firedAt: number[] = [];
  const timer: Timer = new Timer({
    clock,
    mode: fixed(10),
    onFire: (fire) => {
      firedAt.push(fire.nowMs);
      clock.block(3);
      timer.reset();
    },
  });
  timer.start();
  clock.advance(40);
  assert.deepEqual(firedAt, [10, 23, 36]);
  assert.equal(clock.pendingCount, 1);
  timer.stop();
});

Deno.test("Timer (fixed) does not drift when callbacks are slow", () => {
  const clock = new FakeClock();
  const fires: TimerFire[] = [];
  const timer = new Timer({
    clock,
    mode: fixed(10),
    onFire: (fire) => {
      fires.push(fire);
      clock.block(7); // Each callback takes 7 ms of the 10 ms period.
    },
  });
  timer.start();
  clock.advance(1000);
  // A timer that rescheduled "period after the callback" would fire at 10, 27, 44, ...
  assert.deepEqual(
    fires.map((fire) => fire.nowMs),
    Array.from({ length: 100 }, (_, i) => 10 * (i + 1)),
  );
  assert.ok(fires.every((fire) => fire.intendedAtMs === fire.nowMs && fire.missedRounds === 0));
  assert.equal(timer.missedRounds, 0);
  timer.stop();
});

Deno.test("Timer (fixed) skips rounds a period or more late and counts them", () => {
  const clock = new FakeClock();
  let calls = 0;
  const fires: TimerFire[] = [];
  const timer = new Timer({
    clock,
    mode: fixed(10),
    onFire: (fire) => {
      fires.push(fire);
      if (++calls === 1) clock.block(25); // The first callback takes 25 ms: 10 -> 35.
    },
  });
  timer.start();
  clock.advance(45);
  assert.deepEqual(fires, [
    { nowMs: 10, intendedAtMs: 10, missedRounds: 0 },
    { nowMs: 35, intendedAtMs: 30, missedRounds: 1 }, // The round at 20 was skipped.
    { nowMs: 40, intendedAtMs: 40, missedRounds: 0 },
  ]);
  assert.equal(timer.missedRounds, 1);

  clock.block(1000); // A long stall of the event loop: 45 -> 1045.
  clock.advance(0);
  assert.deepEqual(fires.at(-1), { nowMs: 1045, intendedAtMs: 1040, missedRounds: 99 });
  assert.equal(timer.missedRounds, 100);
  clock.advance(5);
  assert.deepEqual(fires.at(-1), { nowMs: 1050, intendedAtMs: 1050, missedRounds: 0 });
  timer.stop();
});

Deno.test("Timer (fixed) fires a round less than a period late without skipping", () => {
  const clock = new FakeClock();
  const { timer, fires } = recordingTimer(clock, fixed(10));
  timer.start();
  clock.block(19); // The round due at 10 is 9 ms late.
  clock.advance(0);
  assert.deepEqual(fires, [{ nowMs: 19, intendedAtMs: 10, missedRounds: 0 }]);
  clock.advance(1);
  assert.deepEqual(fires.at(-1), { nowMs: 20, intendedAtMs: 20, missedRounds: 0 });
  timer.stop();
});

Deno.test("Timer (fixed) accounts for every round under random stalls", () => {
  const blocks = fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 40 });
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 20 }), blocks, (periodMs, blockList) => {
      const clock = new FakeClock();
      const fires: TimerFire[] = [];
      const timer = new Timer({
        clock,
        mode: fixed(periodMs),
        onFire: (fire) => {
          fires.push(fire);
          clock.block(blockList[fires.length % blockList.length]);
        },
      });
      timer.start();
      clock.advance(periodMs * 50);
      timer.stop();
      let accounted = 0; // Rounds fired or skipped so far.
      for (const fire of fires) {
        accounted += fire.missedRounds + 1;
        assert.equal(fire.intendedAtMs, accounted * periodMs, "the schedule stays on the grid");
        assert.ok(fire.nowMs >= fire.intendedAtMs && fire.nowMs - fire.intendedAtMs < periodMs);
      }
      assert.equal(timer.firedRounds, fires.length);
      assert.equal(timer.missedRounds, accounted - fires.length);
    }),
    { numRuns: 200 },
  );
});

Deno.test("Timer (random) draws each delay from [minMs, maxMs) with the prng", () => {
  const clock = new FakeClock();
  const samples = [0, 0.5, 0.25, 0.75, 1 - 2 ** -53];
  let next = 0;
  const prng = () => samples[next++ % samples.length];
  const { timer, times } = recordingTimer(clock, { kind: "random", minMs: 100, maxMs: 200 }, {
    prng,
  });
  timer.start();
  clock.advance(1000);
  const gaps = times().map((t, i, all) => t - (i === 0 ? 0 : all[i - 1]));
  // The last sample rounds to exactly maxMs, which the range excludes: the timer uses minMs.
  assert.deepEqual(gaps.slice(0, 5), [100, 150, 125, 175, 100]);
  assert.ok(gaps.every((gap) => gap >= 100 && gap < 200));
  timer.stop();
});

Deno.test("Timer (random) keeps delays in [minMs, maxMs) and repeats for a seed", () => {
  const bounds = fc.tuple(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 1000 }))
    .map(([minMs, spanMs]) => ({ minMs, maxMs: minMs + spanMs }));
  fc.assert(
    fc.property(fc.integer(), bounds, (seed, { minMs, maxMs }) => {
      const run = () => {
        const clock = new FakeClock();
        const mode: TimerMode = { kind: "random", minMs, maxMs };
        const { timer, times } = recordingTimer(clock, mode, { prng: mulberry32(seed) });
        timer.start();
        clock.advance(maxMs * 20);
        timer.stop();
        return times();
      };
      const first = run();
      assert.ok(first.length >= 20);
      first.forEach((t, i) => {
        const gap = t - (i === 0 ? 0 : first[i - 1]);
        assert.ok(gap >= minMs && gap < maxMs, `gap ${gap} outside [${minMs}, ${maxMs})`);
      });
      assert.deepEqual(run(), first);
    }),
    { numRuns: 100 },
  );
});

Deno.test("Timer.reset() (random) draws a fresh delay from now", () => {
  const clock = new FakeClock();
  const samples = [0.5, 0];
  let next = 0;
  const prng = () => samples[next++ % samples.length];
  const { timer, times } = recordingTimer(clock, { kind: "random", minMs: 10, maxMs: 20 }, {
    prng,
  });
  timer.start(); // Due at 15.
  clock.advance(12);
  timer.reset(); // Due at 12 + 10.
  clock.advance(10);
  assert.deepEqual(times(), [22]);
  timer.stop();
});

Deno.test("Timer asserts that the prng returns [0, 1)", () => {
  const clock = new FakeClock();
  const timer = new Timer({
    clock,
    mode: { kind: "random", minMs: 1, maxMs: 2 },
    prng: () => 1,
    onFire: () => {},
  });
  assert.throws(() => timer.start(), AssertionError);
});

Deno.test("Timer reports callback errors to onError and keeps going", () => {
  const clock = new FakeClock();
  const errors: unknown[] = [];
  let calls = 0;
  const timer = new Timer({
    clock,
    mode: fixed(10),
    onFire: () => {
      if (++calls % 2 === 1) throw new Error(`fail ${calls}`);
    },
    onError: (error) => errors.push(error),
  });
  timer.start();
  clock.advance(40);
  assert.equal(calls, 4);
  assert.deepEqual(errors.map((error) => (error as Error).message), ["fail 1", "fail 3"]);
  assert.equal(timer.running, true);
  timer.stop();
});

Deno.test("Timer without onError rethrows a callback error but keeps its schedule", () => {
  const clock = new FakeClock();
  let calls = 0;
  const timer = new Timer({
    clock,
    mode: fixed(10),
    onFire: () => {
      if (++calls === 1) throw new Error("boom");
    },
  });
  timer.start();
  assert.throws(() => clock.advance(30), /boom/);
  assert.equal(clock.now(), 10);
  assert.equal(timer.running, true);
  clock.advance(20);
  assert.equal(calls, 3);
  timer.stop();
});

Deno.test("Timer rejects bad modes with a clear error", () => {
  const clock = new FakeClock();
  const create = (mode: TimerMode) => () => new Timer({ clock, mode, onFire: () => {} });
  for (const periodMs of [0, -5, NaN, Infinity, TIMEOUT_MS_MAX + 1]) {
    assert.throws(create(fixed(periodMs)), RangeError, `periodMs ${periodMs}`);
  }
  assert.throws(
    create(fixed(0)),
    /periodMs 0: expected 0 < periodMs <= 2147483647 \(TIMEOUT_MS_MAX\)/,
  );
  const badRandom: [number, number][] = [[10, 10], [20, 10], [-1, 10], [NaN, 10], [0, NaN], [
    0,
    TIMEOUT_MS_MAX + 1,
  ]];
  for (const [minMs, maxMs] of badRandom) {
    assert.throws(create({ kind: "random", minMs, maxMs }), RangeError, `[${minMs}, ${maxMs})`);
  }
  assert.throws(
    create({ kind: "random", minMs: 10, maxMs: 10 }),
    /minMs 10 and maxMs 10: expected 0 <= minMs < maxMs/,
  );
  assert.doesNotThrow(create(fixed(0.5)));
  assert.doesNotThrow(create({ kind: "random", minMs: 0, maxMs: 1 }));
});

Deno.test("Timer on the system clock fires and stops (bounded wait)", async () => {
  const { promise, resolve } = Promise.withResolvers<void>();
  let fired = 0;
  const timer = new Timer({
    clock: systemClock,
    mode: fixed(5),
    onFire: () => {
      if (++fired === 3) resolve();
    },
  });
  const deadline = setTimeout(() => resolve(), 2000);
  timer.start();
  await promise;
  timer.stop();
  clearTimeout(deadline);
  assert.ok(fired >= 3, `fired ${fired} times in 2 s`);
  assert.equal(timer.running, false);
});
