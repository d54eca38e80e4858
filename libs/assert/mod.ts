/**
 * Assertions for the invariants the services rely on, shared by `services/kvnode` and
 * `services/placement` (each re-exports them from its own `_assert.ts`). A failed assertion is a
 * bug, never an expected outcome: it throws {@linkcode AssertionError}, which a service lets stop
 * the process, so that a correctness bug becomes a liveness bug (docs/style.md, "Errors").
 * Expected outcomes are returned as discriminated unions instead.
 *
 * The libraries under `libs/` import no other TinyKV package, so each keeps its own private
 * `_assert.ts`; their `AssertionError` classes are distinct from this one.
 *
 * @example An invariant and an exhaustive switch
 * ```ts
 * import nodeAssert from "node:assert/strict";
 * import { assert, AssertionError, unreachable } from "@tinykv/assert";
 *
 * type Step = { kind: "add"; node: string } | { kind: "remove"; node: string };
 *
 * function describe(step: Step, queued: number, queuedMax: number): string {
 *   assert(queued <= queuedMax, () => `Queue holds ${queued} steps: the limit is ${queuedMax}`);
 *   switch (step.kind) {
 *     case "add":
 *       return `add ${step.node}`;
 *     case "remove":
 *       return `remove ${step.node}`;
 *     default:
 *       return unreachable(step, "step");
 *   }
 * }
 *
 * nodeAssert.equal(describe({ kind: "add", node: "n1" }, 1, 8), "add n1");
 * nodeAssert.throws(() => describe({ kind: "add", node: "n1" }, 9, 8), AssertionError);
 * ```
 *
 * @module
 */

/** Thrown when an invariant does not hold: a bug, never an expected outcome. */
export class AssertionError extends Error {
  /** Creates an assertion error with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/**
 * Throws {@linkcode AssertionError} with `message` unless `condition` holds. Pass a function to
 * build the message only when the assertion fails (on hot paths).
 */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === "string" ? message : message());
}

/** Marks a branch as unreachable; used at the end of exhaustive `switch` statements. */
export function unreachable(value: never, what = "value"): never {
  throw new AssertionError(`Unknown ${what}: ${JSON.stringify(value)}`);
}
