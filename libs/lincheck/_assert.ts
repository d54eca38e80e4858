/**
 * The error thrown when an invariant of this library, or a precondition that a caller must
 * uphold (a well-formed history, a deterministic clock), is broken. It signals a bug, not an
 * expected outcome, so nothing in this library catches it.
 */
export class AssertionError extends Error {
  /** Creates an assertion error with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Throws {@linkcode AssertionError} with `message` unless `condition` holds. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
