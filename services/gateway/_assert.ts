/**
 * Assertions for the invariants the gateway relies on, from `@tinykv/assert` (one definition for
 * the services). A failed assertion is a bug, never an expected outcome: the handler that trips it
 * does not answer it as an error of the request; `main.ts` stops the process (exit code 2), as a
 * broken invariant stops a kvnode or placement. Clients go to another gateway meanwhile.
 *
 * @module
 */
import { AssertionError } from "@tinykv/assert";

export { assert, AssertionError, unreachable } from "@tinykv/assert";

/** Whether `error` is a broken invariant of the gateway. */
export function isBrokenInvariant(error: unknown): error is AssertionError {
  return error instanceof AssertionError;
}
