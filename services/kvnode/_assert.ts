/**
 * Assertions for the invariants the kvnode relies on. A failed assertion is a bug, never an
 * expected outcome: it throws {@linkcode AssertionError}, which nothing catches but the driver
 * loop's failure path, and that stops the node (a correctness bug becomes a liveness bug, as
 * docs/style.md asks).
 *
 * @module
 */

/** Thrown when an invariant of the kvnode does not hold. */
export class AssertionError extends Error {
  /** Creates an assertion error with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Throws {@linkcode AssertionError} with `message` unless `condition` holds. */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === "string" ? message : message());
}

/** Marks a branch as unreachable; used at the end of exhaustive `switch` statements. */
export function unreachable(value: never, what = "value"): never {
  throw new AssertionError(`Unknown ${what}: ${JSON.stringify(value)}`);
}
