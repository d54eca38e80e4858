/**
 * The {@linkcode Clock} interface through which timers reach time, and the real
 * {@linkcode systemClock}.
 *
 * @module
 */

/**
 * Identifies a pending timeout, for {@linkcode Clock.clearTimeout}. Opaque: the runtime's handle
 * is an object in Deno 2 and a number elsewhere, and a fake clock has its own.
 */
export type TimeoutHandle = { readonly __brand: "TimeoutHandle" };

/**
 * The longest delay a timeout may have: 2^31 - 1 ms (about 24.8 days). Runtimes store the delay
 * in a signed 32-bit integer and fire a longer one after about 1 ms, so longer delays are bugs.
 */
export const TIMEOUT_MS_MAX = 2 ** 31 - 1;

/**
 * A source of time and one-shot timeouts. Code that needs time takes a `Clock`, so tests and the
 * simulation can drive it with a {@linkcode FakeClock} instead of real time.
 *
 * Contract:
 * - `now()` is in milliseconds on a monotonic scale: it never goes back, but its origin is
 *   arbitrary, so it is not wall-clock time and means nothing to another process.
 * - `setTimeout(fn, ms)` calls `fn` once, no earlier than `ms` after the call, from the event
 *   loop (never synchronously inside `setTimeout`). Timeouts due at the same time fire in the
 *   order they were set.
 * - After `clearTimeout(handle)`, the timeout's `fn` is not called. Clearing a handle that has
 *   fired or was cleared already does nothing.
 */
export interface Clock {
  /** Returns the current time in milliseconds (monotonic, arbitrary origin). */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds (`0 <= ms <= TIMEOUT_MS_MAX`). */
  setTimeout(fn: () => void, ms: number): TimeoutHandle;
  /** Cancels a timeout set by {@linkcode Clock.setTimeout}, if it has not fired yet. */
  clearTimeout(handle: TimeoutHandle): void;
}

/**
 * The real clock: `performance.now()` and the runtime's `setTimeout`. A pending timeout keeps
 * the process alive, as the runtime's own does.
 */
export const systemClock: Clock = Object.freeze({
  now: (): number => performance.now(),
  setTimeout: (fn: () => void, ms: number): TimeoutHandle =>
    setTimeout(fn, ms) as unknown as TimeoutHandle,
  clearTimeout: (handle: TimeoutHandle): void =>
    clearTimeout(handle as unknown as ReturnType<typeof setTimeout>),
});

/**
 * The real clock on the scale of `Date.now()` (epoch milliseconds), with the runtime's timeouts:
 * for code that compares the time with absolute deadlines it is handed, such as gRPC deadlines
 * (the router of libs/client). Unlike {@linkcode systemClock} it follows steps of the wall clock.
 */
export const dateClock: Clock = Object.freeze({
  now: (): number => Date.now(),
  setTimeout: systemClock.setTimeout,
  clearTimeout: systemClock.clearTimeout,
});
