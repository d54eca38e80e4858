/**
 * {@linkcode FakeClock}: a manual, deterministic {@linkcode Clock} for tests and simulation.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { BinaryHeap } from "./binary_heap.ts";
import { type Clock, TIMEOUT_MS_MAX, type TimeoutHandle } from "./clock.ts";

/**
 * The most timeouts one {@linkcode FakeClock.advance} call may fire. A timeout that keeps
 * setting a zero-delay timeout would otherwise spin forever; hitting this limit is a test bug.
 */
export const FAKE_CLOCK_FIRES_PER_ADVANCE_MAX = 1_000_000;

interface Pending {
  readonly handle: number;
  readonly dueMs: number;
  readonly fn: () => void;
}

/**
 * A {@linkcode Clock} whose time moves only when told to. {@linkcode FakeClock.advance} fires the
 * due timeouts in order of due time, then of setting, with `now()` equal to each one's due time
 * while it runs; timeouts set by a callback fire in the same call if they fall due in time.
 * Nothing here reads real time, so a test is the same every run.
 *
 * {@linkcode FakeClock.block} moves time without firing anything, as a busy event loop would:
 * the overdue timeouts fire late, at the next `advance`. A callback may call it to act slow.
 *
 * If a callback throws, the error propagates out of `advance` (the runtime would report it as
 * uncaught); the clock stays consistent, with time at that callback's due time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock } from "./fake_clock.ts";
 *
 * const clock = new FakeClock();
 * const fired: number[] = [];
 * clock.setTimeout(() => fired.push(clock.now()), 10);
 * clock.advance(9);
 * assert.deepEqual(fired, []);
 * clock.advance(1);
 * assert.deepEqual(fired, [10]);
 * ```
 */
export class FakeClock implements Clock {
  #nowMs: number;
  #nextHandle = 1;
  /**
   * The timeouts by due time; ties in setting order, as the heap keeps ties in push order.
   * Cleared entries stay until they reach the top.
   */
  readonly #heap = new BinaryHeap<Pending>((a, b) => a.dueMs - b.dueMs);
  /** The timeouts not yet fired or cleared, by handle. */
  #pending = new Map<number, Pending>();
  #advancing = false;

  /** Creates a clock whose `now()` starts at `startMs` (default 0). */
  constructor(startMs = 0) {
    if (!Number.isFinite(startMs)) {
      throw new RangeError(`Cannot start a FakeClock at ${startMs}: expected a finite number`);
    }
    this.#nowMs = startMs;
  }

  /** Returns the clock's current time in milliseconds. */
  now(): number {
    return this.#nowMs;
  }

  /**
   * Sets a timeout due `ms` from now (a negative `ms` counts as 0, as in the runtime).
   *
   * @throws {RangeError} If `ms` is not finite or exceeds {@linkcode TIMEOUT_MS_MAX}: the runtime
   * would silently fire such a timeout after about 1 ms.
   */
  setTimeout(fn: () => void, ms: number): TimeoutHandle {
    if (!Number.isFinite(ms) || ms > TIMEOUT_MS_MAX) {
      throw new RangeError(
        `Cannot set a timeout of ${ms} ms: expected a finite delay up to ${TIMEOUT_MS_MAX} ms ` +
          `(TIMEOUT_MS_MAX)`,
      );
    }
    const handle = this.#nextHandle++;
    const entry: Pending = { handle, dueMs: this.#nowMs + Math.max(0, ms), fn };
    this.#pending.set(handle, entry);
    this.#heap.push(entry);
    return handle as unknown as TimeoutHandle;
  }

  /** Cancels a pending timeout; does nothing if it fired or was cleared already. */
  clearTimeout(handle: TimeoutHandle): void {
    this.#pending.delete(handle as unknown as number);
  }

  /** The number of timeouts set and not yet fired or cleared. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Returns the due time of the next pending timeout, or `undefined` if none is pending. */
  nextDueMs(): number | undefined {
    return this.#peek()?.dueMs;
  }

  /**
   * Moves time forward by `ms`, firing every timeout that falls due by then, in order.
   * Returns how many fired.
   *
   * @throws {RangeError} If `ms` is negative or not finite.
   * @throws {Error} If called from inside one of this clock's callbacks, or if more than
   * {@linkcode FAKE_CLOCK_FIRES_PER_ADVANCE_MAX} timeouts fire.
   */
  advance(ms: number): number {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`Cannot advance a FakeClock by ${ms} ms: expected a finite ms >= 0`);
    }
    return this.#fireUntil(this.#nowMs + ms);
  }

  /** Moves time forward to `timeMs` (if it is ahead), firing what falls due, as `advance`. */
  advanceTo(timeMs: number): number {
    return this.advance(Math.max(0, timeMs - this.#nowMs));
  }

  /**
   * Moves time to the next pending timeout's due time (if it is ahead) and fires every timeout
   * due by then. Returns how many fired: 0 when nothing is pending.
   */
  runNext(): number {
    const next = this.nextDueMs();
    return next === undefined ? 0 : this.advanceTo(next);
  }

  /**
   * Moves time forward by `ms` without firing anything, like an event loop busy for `ms`. Safe
   * to call from a callback. The overdue timeouts fire, late, at the next `advance`.
   *
   * @throws {RangeError} If `ms` is negative or not finite.
   */
  block(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`Cannot block a FakeClock for ${ms} ms: expected a finite ms >= 0`);
    }
    this.#nowMs += ms;
  }

  #fireUntil(targetMs: number): number {
    if (this.#advancing) {
      throw new Error("Cannot advance a FakeClock from inside one of its callbacks: use block()");
    }
    this.#advancing = true;
    let fired = 0;
    try {
      for (
        let next = this.#peek();
        next !== undefined && next.dueMs <= targetMs;
        next = this.#peek()
      ) {
        if (fired === FAKE_CLOCK_FIRES_PER_ADVANCE_MAX) {
          throw new Error(
            `Cannot advance a FakeClock: ${fired} timeouts fired in one call ` +
              `(FAKE_CLOCK_FIRES_PER_ADVANCE_MAX); a callback may be rescheduling itself forever`,
          );
        }
        const popped = this.#heap.pop();
        assert(popped === next, "FakeClock popped another timeout than the one it peeked");
        this.#pending.delete(next.handle);
        // Invariant: time never goes back. A timeout overdue after block() fires late.
        this.#nowMs = Math.max(this.#nowMs, next.dueMs);
        fired++;
        next.fn();
      }
      this.#nowMs = Math.max(this.#nowMs, targetMs);
    } finally {
      this.#advancing = false;
    }
    return fired;
  }

  /** Returns the earliest pending entry, dropping cleared entries from the top first. */
  #peek(): Pending | undefined {
    for (let top = this.#heap.peek(); top !== undefined; top = this.#heap.peek()) {
      if (this.#pending.has(top.handle)) return top;
      this.#heap.pop();
    }
    return undefined;
  }
}
