/**
 * Time for TinyKV, behind an injectable {@linkcode Clock}.
 *
 * - {@linkcode Timer}: a repeating event-driven timer. Fixed mode (a period, no drift, late
 *   rounds skipped and counted) drives each kvnode's Raft tick; random mode (a fresh delay in
 *   `[minMs, maxMs)` each round) serves jittered delays. `start()`, `reset()` and `stop()` never
 *   block. (Raft's own election randomness is counted in ticks inside `libs/raft`.)
 * - {@linkcode backoffDelayMs} and {@linkcode Backoff}: exponential backoff with full jitter
 *   between named bounds, for retries.
 * - {@linkcode systemClock} for real time and {@linkcode FakeClock} for tests and simulation:
 *   time moves only on `advance()`, and due timeouts fire in a deterministic order.
 * - {@linkcode BinaryHeap}: a priority queue that keeps ties in push order, behind `FakeClock`
 *   and the simulation's event queue.
 *
 * @example A fixed timer on a fake clock
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock, Timer } from "@tinykv/timer";
 *
 * const clock = new FakeClock();
 * const firedAt: number[] = [];
 * const timer = new Timer({
 *   clock,
 *   mode: { kind: "fixed", periodMs: 100 },
 *   onFire: (fire) => firedAt.push(fire.nowMs),
 * });
 * timer.start();
 * clock.advance(250);
 * timer.reset(); // The next round is now due at 350, not 300.
 * clock.advance(150);
 * timer.stop();
 * clock.advance(1000);
 * assert.deepEqual(firedAt, [100, 200, 350]);
 * ```
 *
 * @module
 */

export { type Clock, dateClock, systemClock, TIMEOUT_MS_MAX, type TimeoutHandle } from "./clock.ts";
export { FAKE_CLOCK_FIRES_PER_ADVANCE_MAX, FakeClock } from "./fake_clock.ts";
export { BinaryHeap, type Comparator } from "./binary_heap.ts";
export { Timer, type TimerFire, type TimerMode, type TimerOptions } from "./timer.ts";
export { Backoff, BACKOFF_ATTEMPT_MAX, backoffDelayMs, type BackoffOptions } from "./backoff.ts";
export { AssertionError } from "./_assert.ts";
