/**
 * {@linkcode Timer}: a repeating, event-driven timer with a fixed period or a fresh random delay
 * each round.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { type Clock, TIMEOUT_MS_MAX, type TimeoutHandle } from "./clock.ts";

/**
 * How a {@linkcode Timer} spaces its rounds.
 * - `fixed`: every `periodMs`, against a fixed schedule (no drift). This drives each kvnode's
 *   Raft tick.
 * - `random`: a fresh delay drawn uniformly from `[minMs, maxMs)` each round, counted from the
 *   previous fire. This serves jittered delays (reconnects, retries).
 */
export type TimerMode =
  | { kind: "fixed"; periodMs: number }
  | { kind: "random"; minMs: number; maxMs: number };

/** What a {@linkcode Timer} tells its callback about one fire. */
export interface TimerFire {
  /** The clock's time when the callback was called. */
  readonly nowMs: number;
  /** The time this round was due; `nowMs - intendedAtMs` is how late it fired. */
  readonly intendedAtMs: number;
  /**
   * The rounds skipped just before this one because the timer ran a period or more late
   * (fixed mode only; always 0 in random mode).
   */
  readonly missedRounds: number;
}

/** Options for {@linkcode Timer}. */
export interface TimerOptions {
  /** The source of time: {@linkcode systemClock} in production, a `FakeClock` in tests. */
  clock: Clock;
  /** Fixed period or random delay. */
  mode: TimerMode;
  /**
   * Uniform random numbers in `[0, 1)` (the shape of `Math.random`, which is the default), for
   * random mode. Inject a seeded one to make delays reproducible.
   */
  prng?: () => number;
  /**
   * Called once per round, from the clock's event loop. It may call `stop()` or `reset()` on its
   * timer. The next round is scheduled before it runs, so a slow or throwing callback does not
   * stop the timer.
   */
  onFire: (fire: TimerFire) => void;
  /**
   * Receives what `onFire` throws; the timer keeps going. Without it the error is rethrown from
   * the clock's callback, where the runtime treats it as uncaught (Deno exits), but the next
   * round is scheduled all the same.
   */
  onError?: (error: unknown) => void;
}

/**
 * A repeating timer driven by a {@linkcode Clock}'s one-shot timeouts; it never blocks or sleeps.
 *
 * In fixed mode round `k` is due at `start + k * periodMs`, however late earlier rounds fired,
 * so the timer does not drift. When a round fires `periodMs` or more late, the rounds whose
 * time has passed are skipped, not fired in a burst: the timer fires once for the latest of
 * them, tells the callback how many it skipped, and adds them to {@linkcode Timer.missedRounds}.
 *
 * @example A Raft tick every 10 ms, on a fake clock
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock } from "./fake_clock.ts";
 * import { Timer } from "./timer.ts";
 *
 * const clock = new FakeClock();
 * let ticks = 0;
 * const timer = new Timer({ clock, mode: { kind: "fixed", periodMs: 10 }, onFire: () => ticks++ });
 * timer.start();
 * clock.advance(35);
 * assert.equal(ticks, 3);
 * timer.stop();
 * ```
 */
export class Timer {
  readonly #clock: Clock;
  readonly #mode: TimerMode;
  readonly #prng: () => number;
  readonly #onFire: (fire: TimerFire) => void;
  readonly #onError: ((error: unknown) => void) | undefined;
  #handle: TimeoutHandle | undefined = undefined;
  /** When the pending round is due. Meaningful only while running. */
  #intendedAtMs = 0;
  /** Bumped by every start, reset and stop, so a superseded timeout cannot act. */
  #generation = 0;
  #firedRounds = 0;
  #missedRounds = 0;

  /**
   * Creates a stopped timer.
   *
   * @throws {RangeError} If `periodMs` is not in `(0, TIMEOUT_MS_MAX]`, or unless
   * `0 <= minMs < maxMs <= TIMEOUT_MS_MAX`.
   */
  constructor(options: TimerOptions) {
    checkMode(options.mode);
    this.#clock = options.clock;
    this.#mode = { ...options.mode };
    this.#prng = options.prng ?? Math.random;
    this.#onFire = options.onFire;
    this.#onError = options.onError;
  }

  /** Whether the timer is started and not stopped. */
  get running(): boolean {
    return this.#handle !== undefined;
  }

  /** How many rounds have fired since the timer was created. */
  get firedRounds(): number {
    return this.#firedRounds;
  }

  /** How many rounds were skipped because the timer ran late (fixed mode). */
  get missedRounds(): number {
    return this.#missedRounds;
  }

  /** Starts the timer: the first round is due one period (or random delay) from now. Does nothing if running. */
  start(): void {
    if (this.running) return;
    this.#scheduleFromNow();
  }

  /**
   * Restarts the current round from now: in fixed mode the schedule moves so the next round is
   * due one period from now; in random mode a fresh delay is drawn. Returns `false`, and does
   * nothing, if the timer is stopped: a late reset must not revive a stopped timer.
   */
  reset(): boolean {
    if (!this.running) return false;
    this.#cancel();
    this.#scheduleFromNow();
    return true;
  }

  /** Stops the timer; no round fires after this returns. Does nothing if already stopped. */
  stop(): void {
    if (this.running) this.#cancel();
  }

  #cancel(): void {
    assert(this.#handle !== undefined, "Timer cancels a round while stopped");
    this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
    this.#generation++;
  }

  #scheduleFromNow(): void {
    const nowMs = this.#clock.now();
    const delayMs = this.#mode.kind === "fixed" ? this.#mode.periodMs : this.#randomDelayMs();
    this.#schedule(nowMs + delayMs, nowMs);
  }

  #schedule(intendedAtMs: number, nowMs: number): void {
    const generation = ++this.#generation;
    this.#intendedAtMs = intendedAtMs;
    const delayMs = Math.min(Math.max(0, intendedAtMs - nowMs), TIMEOUT_MS_MAX);
    this.#handle = this.#clock.setTimeout(() => this.#fire(generation), delayMs);
  }

  #fire(generation: number): void {
    // A cleared timeout should never fire; the generation guards against a clock that races.
    if (generation !== this.#generation) return;
    const nowMs = this.#clock.now();
    let intendedAtMs = this.#intendedAtMs;
    let missedRounds = 0;
    if (this.#mode.kind === "fixed") {
      const periodMs = this.#mode.periodMs;
      const lateMs = nowMs - intendedAtMs;
      if (lateMs >= periodMs) {
        missedRounds = Math.floor(lateMs / periodMs);
        intendedAtMs += missedRounds * periodMs;
      }
      // Invariant: the round fired is due at or before now, less than a period ago.
      this.#missedRounds += missedRounds;
      this.#schedule(intendedAtMs + periodMs, nowMs);
    } else {
      this.#schedule(nowMs + this.#randomDelayMs(), nowMs);
    }
    this.#firedRounds++;
    this.#call({ nowMs, intendedAtMs, missedRounds });
  }

  #call(fire: TimerFire): void {
    try {
      this.#onFire(fire);
    } catch (error) {
      if (this.#onError === undefined) throw error;
      this.#onError(error);
    }
  }

  #randomDelayMs(): number {
    assert(this.#mode.kind === "random", "Timer draws a random delay in fixed mode");
    const { minMs, maxMs } = this.#mode;
    const sample = this.#prng();
    assert(sample >= 0 && sample < 1, `Timer prng returned ${sample}: expected [0, 1)`);
    const delayMs = minMs + sample * (maxMs - minMs);
    // Rounding can land a sample just below 1 on maxMs itself, which the range excludes.
    return delayMs < maxMs ? delayMs : minMs;
  }
}

function checkMode(mode: TimerMode): void {
  switch (mode.kind) {
    case "fixed": {
      const { periodMs } = mode;
      if (!(periodMs > 0 && periodMs <= TIMEOUT_MS_MAX)) {
        throw new RangeError(
          `Cannot create a fixed timer with periodMs ${periodMs}: expected 0 < periodMs <= ` +
            `${TIMEOUT_MS_MAX} (TIMEOUT_MS_MAX)`,
        );
      }
      return;
    }
    case "random": {
      const { minMs, maxMs } = mode;
      if (!(minMs >= 0 && minMs < maxMs && maxMs <= TIMEOUT_MS_MAX)) {
        throw new RangeError(
          `Cannot create a random timer with minMs ${minMs} and maxMs ${maxMs}: expected ` +
            `0 <= minMs < maxMs <= ${TIMEOUT_MS_MAX} (TIMEOUT_MS_MAX)`,
        );
      }
      return;
    }
    default: {
      const unknown: never = mode;
      throw new RangeError(`Cannot create a timer with mode ${JSON.stringify(unknown)}`);
    }
  }
}
