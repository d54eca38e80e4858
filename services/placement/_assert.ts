/**
 * Assertions for the invariants placement relies on, from `@tinykv/assert` (one definition for
 * the services). A failed assertion is a bug, never an expected outcome: the leader loop, the
 * background calls of a move and the admin handlers let it through (see
 * {@linkcode isBrokenInvariant}), and `main.ts` then stops the process (exit code 2), as a broken
 * invariant stops a kvnode. Another placement instance takes over the leadership.
 *
 * @module
 */
import { AssertionError } from "@tinykv/assert";
import { AssertionError as ShardAssertionError } from "@tinykv/shard";

export { assert, AssertionError, unreachable } from "@tinykv/assert";

/**
 * Reports whether `error` is a broken invariant: a failed assertion of placement, or of
 * `libs/shard`, whose planner and shard map assert the input placement builds for them.
 */
export function isBrokenInvariant(error: unknown): error is Error {
  return error instanceof AssertionError || error instanceof ShardAssertionError;
}
