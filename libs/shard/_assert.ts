/**
 * Assertions for broken invariants (bugs), private to this library.
 *
 * A failed assertion throws {@linkcode AssertionError}; only a process's crash handler should
 * catch it. Expected outcomes are returned as discriminated unions instead.
 *
 * @module
 */

/** The error a failed {@linkcode assert} throws: it signals a bug, not an expected outcome. */
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

/** Marks a branch as unreachable; used at the end of exhaustive `switch` statements. */
export function unreachable(value: never, what = "value"): never {
  throw new AssertionError(`Unknown ${what}: ${JSON.stringify(value)}`);
}
