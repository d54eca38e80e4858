/**
 * {@linkcode LoopDelaySampler}: how late a timer on the event loop fires, sampled once a second,
 * over the last minute — the `nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds`
 * gauges of every TinyKV service.
 *
 * Why not prom-client's: it samples with `perf_hooks.monitorEventLoopDelay` every 10 ms, which
 * wakes an idle process a hundred times a second (0.9 % of a core per process on the dev machine,
 * more than everything else an idle cluster does); and in Deno that histogram times a task on its
 * own runtime thread, not the JavaScript loop, so it reads a few microseconds through a stall of
 * seconds. This sampler times its own timer, the way a stall delays a Raft tick.
 *
 * @module
 */

/** How often the loop is sampled, in milliseconds. */
export const LOOP_DELAY_SAMPLE_MS = 1000;
/** How many recent samples the statistics cover (a minute at one a second). */
export const LOOP_DELAY_SAMPLES = 60;

/** Statistics of the recent samples, in seconds. */
export interface LoopDelayStats {
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly stddev: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
}

/**
 * Samples the event loop's delay: a timer due every `intervalMs` records how late it fired. The
 * timer does not keep the process alive. A stall longer than the interval always delays a
 * sample; a shorter one with the odds of its length over the interval.
 */
export class LoopDelaySampler {
  readonly #intervalMs: number;
  readonly #capacity: number;
  /** The last samples in milliseconds, a ring once full. */
  readonly #samples: number[] = [];
  #next = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: { intervalMs?: number; samples?: number } = {}) {
    this.#intervalMs = options.intervalMs ?? LOOP_DELAY_SAMPLE_MS;
    this.#capacity = options.samples ?? LOOP_DELAY_SAMPLES;
    if (!(this.#intervalMs > 0) || !Number.isInteger(this.#capacity) || this.#capacity < 1) {
      throw new RangeError("LoopDelaySampler needs a positive interval and at least one sample");
    }
  }

  /** Starts sampling (again, after {@linkcode stop}); does nothing while running. */
  start(): void {
    if (this.#timer === undefined) this.#schedule();
  }

  /** Stops sampling; the samples taken are kept. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    const dueAt = performance.now() + this.#intervalMs;
    const timer = setTimeout(() => {
      this.record(Math.max(0, performance.now() - dueAt));
      this.#schedule();
    }, this.#intervalMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Records one sample, in milliseconds (the timer does; tests call it directly). */
  record(delayMs: number): void {
    if (this.#samples.length < this.#capacity) this.#samples.push(delayMs);
    else this.#samples[this.#next] = delayMs;
    this.#next = (this.#next + 1) % this.#capacity;
  }

  /** Statistics of the last samples, in seconds; undefined before the first. */
  stats(): LoopDelayStats | undefined {
    const count = this.#samples.length;
    if (count === 0) return undefined;
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const mean = sorted.reduce((sum, value) => sum + value, 0) / count;
    const variance = sorted.reduce((sum, value) => sum + (value - mean) ** 2, 0) / count;
    // Nearest rank: the smallest sample with at least p % of the samples at or below it.
    const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * count) - 1)];
    return {
      min: sorted[0] / 1000,
      max: sorted[count - 1] / 1000,
      mean: mean / 1000,
      stddev: Math.sqrt(variance) / 1000,
      p50: rank(50) / 1000,
      p90: rank(90) / 1000,
      p99: rank(99) / 1000,
    };
  }
}
