/**
 * Assertions for the simulation's own code. A failed one is a bug in the
 * simulation (the harness), not in the Raft core: it throws
 * {@linkcode SimAssertionError} so a report can tell the two apart.
 *
 * @module
 */

/** A broken invariant of the simulation harness itself. */
export class SimAssertionError extends Error {
  /** Creates the error with `message`. */
  constructor(message: string) {
    super(message);
    this.name = "SimAssertionError";
  }
}

/** Throws {@linkcode SimAssertionError} with `message` unless `condition` holds. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new SimAssertionError(message);
}

/** Marks a branch that a `switch` over a union can never reach. */
export function unreachable(value: never): never {
  throw new SimAssertionError(`Unreachable value ${JSON.stringify(value)}`);
}
