// A local assertion helper, used for broken invariants (bugs) only.
// Expected outcomes are returned as discriminated unions, never thrown.

/** Thrown when an invariant of `libs/log` does not hold: a bug, never an expected outcome. */
export class AssertionError extends Error {
  /** Creates an assertion error with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Throws {@linkcode AssertionError} with `message` when `condition` is falsy. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
