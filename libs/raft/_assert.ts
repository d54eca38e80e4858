/**
 * Assertions for invariants inside `libs/raft`. A failed assertion is a bug in
 * this library or in its host, never an expected outcome, so it throws and is
 * not meant to be caught except by the process's crash handler.
 *
 * @module
 */

/** Thrown when an internal invariant of the Raft core does not hold. */
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
export function unreachable(value: never): never {
  throw new AssertionError(`Unreachable value: ${JSON.stringify(value)}`);
}
