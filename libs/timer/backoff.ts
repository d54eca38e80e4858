/**
 * Exponential backoff with full jitter, bounded below and above, for retries and reconnects.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { TIMEOUT_MS_MAX } from "./clock.ts";

/**
 * The attempt number beyond which {@linkcode Backoff} stops counting. At 2^64 times any
 * `minMs`, the ceiling is long past any `maxMs`, so counting further changes nothing.
 */
export const BACKOFF_ATTEMPT_MAX = 64;

/** Options for {@linkcode backoffDelayMs} and {@linkcode Backoff}. */
export interface BackoffOptions {
  /** The shortest delay, and the base that doubles with each attempt; `> 0`. */
  minMs: number;
  /** The longest delay; `minMs <= maxMs <= TIMEOUT_MS_MAX`. */
  maxMs: number;
  /** Uniform random numbers in `[0, 1)`; defaults to `Math.random`. Inject a seeded one in tests. */
  prng?: () => number;
}

/**
 * Returns the delay before retry number `attempt` (0 for the first retry): uniform in
 * `[minMs, ceiling)` where `ceiling = min(maxMs, minMs * 2^(attempt + 1))`, or exactly `minMs`
 * when `minMs === maxMs`. The ceiling grows exponentially; the full jitter below it spreads
 * retrying clients apart so they do not retry in lockstep.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { backoffDelayMs } from "./backoff.ts";
 *
 * const delay = backoffDelayMs(3, { minMs: 10, maxMs: 1000 });
 * assert.ok(delay >= 10 && delay < 160);
 * ```
 *
 * @throws {RangeError} If the options break their bounds or `attempt` is not a non-negative
 * safe integer.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions): number {
  checkOptions(options);
  if (!Number.isSafeInteger(attempt) || attempt < 0) {
    throw new RangeError(
      `Cannot compute a backoff for attempt ${attempt}: expected an integer >= 0`,
    );
  }
  const { minMs, maxMs } = options;
  const exponent = Math.min(attempt, BACKOFF_ATTEMPT_MAX) + 1;
  const ceilingMs = Math.min(maxMs, minMs * 2 ** exponent);
  if (ceilingMs <= minMs) return minMs;
  const sample = (options.prng ?? Math.random)();
  assert(sample >= 0 && sample < 1, `Backoff prng returned ${sample}: expected [0, 1)`);
  const delayMs = minMs + sample * (ceilingMs - minMs);
  // Rounding can land a sample just below 1 on the ceiling itself, which the range excludes.
  return delayMs < ceilingMs ? delayMs : minMs;
}

function checkOptions(options: BackoffOptions): void {
  const { minMs, maxMs } = options;
  if (!(minMs > 0 && minMs <= maxMs && maxMs <= TIMEOUT_MS_MAX)) {
    throw new RangeError(
      `Cannot back off with minMs ${minMs} and maxMs ${maxMs}: expected 0 < minMs <= maxMs <= ` +
        `${TIMEOUT_MS_MAX} (TIMEOUT_MS_MAX)`,
    );
  }
}

/**
 * The state of one retry loop: each {@linkcode Backoff.nextDelayMs} returns the delay for the
 * next attempt and counts it; {@linkcode Backoff.reset} starts over after a success.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Backoff } from "./backoff.ts";
 *
 * const backoff = new Backoff({ minMs: 50, maxMs: 5000 });
 * const first = backoff.nextDelayMs(); // In [50, 100).
 * assert.ok(first >= 50 && first < 100);
 * assert.equal(backoff.attempt, 1);
 * backoff.reset();
 * assert.equal(backoff.attempt, 0);
 * ```
 */
export class Backoff {
  readonly #options: BackoffOptions;
  #attempt = 0;

  /**
   * Creates a backoff at attempt 0.
   *
   * @throws {RangeError} Unless `0 < minMs <= maxMs <= TIMEOUT_MS_MAX`.
   */
  constructor(options: BackoffOptions) {
    checkOptions(options);
    this.#options = { ...options };
  }

  /** The number of delays handed out since creation or the last reset, at most {@linkcode BACKOFF_ATTEMPT_MAX}. */
  get attempt(): number {
    return this.#attempt;
  }

  /** Returns the delay before the next attempt (see {@linkcode backoffDelayMs}) and counts it. */
  nextDelayMs(): number {
    const delayMs = backoffDelayMs(this.#attempt, this.#options);
    this.#attempt = Math.min(this.#attempt + 1, BACKOFF_ATTEMPT_MAX);
    return delayMs;
  }

  /** Starts over at attempt 0, as after a success. */
  reset(): void {
    this.#attempt = 0;
  }
}
