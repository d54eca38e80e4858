/**
 * Assertions for the invariants the kvnode relies on, from `@tinykv/assert` (one definition for
 * the services). A failed assertion is a bug, never an expected outcome: it throws
 * {@linkcode AssertionError}, which nothing catches but the driver loop's failure path, and that
 * stops the node (a correctness bug becomes a liveness bug, as docs/style.md asks).
 *
 * @module
 */
export { assert, AssertionError, unreachable } from "@tinykv/assert";
