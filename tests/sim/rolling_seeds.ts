/**
 * The rolling seed range: besides their fixed seeds, the CI tests of both
 * simulations (`tests/sim` and `tests/sim_kvnode`) run a range of seeds that
 * moves on every UTC day, so that CI keeps covering seeds nobody ran before.
 *
 * The range is derived from the date, not from the commit: `start` is the
 * number of whole days since 1970-01-01 UTC times `count`, so consecutive days
 * run adjacent, disjoint ranges, far above the fixed seeds (1..200) and the
 * ranges people run by hand. The date needs neither `.git` (CI may test a copy
 * without it) nor permission to run `git`; a commit tested again on another
 * day still covers new seeds; and every run on one day runs the same range, so
 * a red run can be rerun to the same result the same day. Every run prints
 * its range and the commands that replay it; an environment variable (for
 * example `TINYKV_SIM_START`) sets the start instead, to replay a range on
 * another day.
 *
 * @module
 */

/** Milliseconds per day. */
const DAY_MS = 86_400_000;

/** A range of seeds and where its start came from. */
export interface RollingRange {
  /** The first seed. */
  readonly start: number;
  /** How many seeds, from `start` on. */
  readonly count: number;
  /** How `start` was chosen, for the printed line. */
  readonly source: string;
}

/** Where {@linkcode rollingRange} takes its start from. */
export interface RollingRangeOptions {
  /** The environment variable that overrides the start. */
  readonly variable: string;
  /** How many seeds a run covers (also the stride from one day to the next). */
  readonly count: number;
  /** The time the run starts (default: now). */
  readonly now?: Date;
  /** Reads an environment variable (default: `Deno.env`, when the permission is granted). */
  readonly env?: (name: string) => string | undefined;
}

function readEnv(name: string): string | undefined {
  const permission = Deno.permissions.querySync({ name: "env", variable: name });
  return permission.state === "granted" ? Deno.env.get(name) : undefined;
}

/**
 * The seeds to run: from `options.variable` when it is set, else the UTC day
 * number of `options.now` times `options.count`. Throws on a set variable that
 * is not a non-negative integer, rather than run another range than asked.
 */
export function rollingRange(options: RollingRangeOptions): RollingRange {
  const { variable, count } = options;
  const text = (options.env ?? readEnv)(variable);
  if (text !== undefined && text !== "") {
    const start = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(start)) {
      throw new Error(`Cannot parse ${variable}="${text}": expected a non-negative integer seed`);
    }
    return { start, count, source: `${variable}=${start}` };
  }
  const now = options.now ?? new Date();
  const day = Math.floor(now.getTime() / DAY_MS);
  return {
    start: day * count,
    count,
    source: `UTC day ${day} (${now.toISOString().slice(0, 10)}) x ${count}`,
  };
}

/** The last seed of `range`. */
export function rollingEnd(range: RollingRange): number {
  return range.start + range.count - 1;
}
