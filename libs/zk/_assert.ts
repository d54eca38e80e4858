/**
 * The local assertion for broken invariants (bugs). A failed assertion throws
 * {@linkcode AssertionError}; only the process's crash handler should catch it.
 *
 * @module
 */

/** Thrown by {@linkcode assert} when an invariant does not hold. */
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
