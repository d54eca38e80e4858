/**
 * The exit codes of `tinykv`, shared by the data and admin commands (documented in its usage
 * text), and the one mapping from a status-table failure kind to an exit code.
 *
 * @module
 */

/** Exit codes, as documented in the usage text. */
export const EXIT = {
  ok: 0,
  /** `get` found no key; `cas` did not match. */
  negative: 1,
  usage: 2,
  invalidArgument: 3,
  retryable: 4,
  server: 5,
  refused: 6,
} as const;

/** A failure kind of the product's status table (docs/design.md "Status codes"). */
export type FailureCode =
  | "invalidArgument"
  | "unavailable"
  | "deadlineExceeded"
  | "resourceExhausted"
  | "failedPrecondition"
  | "dataLoss"
  | "internal"
  | "cancelled"
  | "unauthenticated"
  | "permissionDenied"
  | "unimplemented"
  | "outOfRange";

/** The exit code of a failure of kind `code`. */
export function exitCodeOf(code: FailureCode): number {
  switch (code) {
    case "invalidArgument":
    case "outOfRange":
      return EXIT.invalidArgument;
    case "unavailable":
    case "deadlineExceeded":
    case "resourceExhausted":
      return EXIT.retryable;
    case "failedPrecondition":
    case "unimplemented":
    case "dataLoss":
    case "internal":
    case "cancelled":
      return EXIT.server;
    case "unauthenticated":
    case "permissionDenied":
      return EXIT.refused;
    default:
      return code satisfies never;
  }
}
