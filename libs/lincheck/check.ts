/**
 * The linearizability check: {@linkcode check} splits a history into partitions (keys) and
 * searches each for a linearization under a {@linkcode Model}.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { searchLinearization } from "./_search.ts";
import type { Model, Operation } from "./model.ts";

/**
 * The default {@linkcode CheckOptions.stepBudget}: a million search steps per partition, about
 * a second. A linearizable history of 2,000 operations by ten clients on one key, some with
 * unknown outcomes, takes 20,000 to 200,000.
 */
export const STEP_BUDGET_DEFAULT = 1_000_000;

/** Options for {@linkcode check}. */
export interface CheckOptions {
  /**
   * The most search steps spent on each partition, a positive safe integer (default
   * {@linkcode STEP_BUDGET_DEFAULT}). A step is one attempt to place an operation (one model
   * step over the current states) or one comparison with a memo cache entry, so steps bound
   * the time. The cache gains at most one entry per step, so they also bound the memory.
   * The search stops once the budget is spent (`stepsUsed` may overshoot it by one cache
   * scan).
   */
  readonly stepBudget?: number;
}

/**
 * Why a partition is not linearizable: the deepest point the search reached, and what it
 * could not do from there.
 */
export interface IllegalExplanation<Input, Output> {
  /** The longest linearizable prefix the search found, in linearization order. */
  readonly linearizedPrefix: readonly Operation<Input, Output>[];
  /** The possible states after that prefix, described by the model. */
  readonly statesAfterPrefix: readonly string[];
  /**
   * The operation with the earliest return among those not in the prefix: it, or something
   * invoked before it returned, had to come next.
   */
  readonly blockingOperation: Operation<Input, Output>;
  /**
   * Every operation that could have come next (not in the prefix and invoked no later than
   * `blockingOperation` returned): none of them leads to a complete linearization.
   */
  readonly couldNotPlace: readonly Operation<Input, Output>[];
  /** The above as multi-line text for a test failure message. */
  readonly summary: string;
}

/**
 * The verdict of {@linkcode check}. Callers must treat `"unknown"` as a failure: the history
 * was not shown to be linearizable.
 */
export type CheckResult<Input, Output> =
  | {
    kind: "ok";
    /** How many partitions were checked. */
    partitions: number;
    /** Search steps spent over all partitions. */
    stepsUsed: number;
  }
  | {
    kind: "illegal";
    /** The first partition found not linearizable. */
    key: string;
    explanation: IllegalExplanation<Input, Output>;
    /** Search steps spent over all partitions checked. */
    stepsUsed: number;
  }
  | {
    kind: "unknown";
    reason: "budget";
    /** The partitions whose search ran out of steps. */
    keys: readonly string[];
    /** Search steps spent over all partitions. */
    stepsUsed: number;
  };

function validateOperation<I, O>(op: Operation<I, O>, index: number): void {
  assert(
    Number.isFinite(op.invokeTime),
    `Cannot check operation ${index}: its invokeTime must be finite (was ${op.invokeTime})`,
  );
  if (op.output === undefined) {
    assert(
      op.returnTime === Infinity,
      `Cannot check operation ${index}: its outcome is unknown, so its returnTime must be Infinity (was ${op.returnTime})`,
    );
  } else {
    assert(
      Number.isFinite(op.returnTime) && op.returnTime >= op.invokeTime,
      `Cannot check operation ${index}: its returnTime must be finite and >= invokeTime (was ${op.returnTime} < ${op.invokeTime})`,
    );
  }
}

/**
 * Groups the operations by partition key, in order of first appearance, dropping read-only
 * operations whose outcome is unknown.
 */
function partitionHistory<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
): Map<string, Operation<I, O>[]> {
  const partitions = new Map<string, Operation<I, O>[]>();
  history.forEach((op, index) => {
    validateOperation(op, index);
    if (op.output === undefined && model.isReadOnly?.(op.input, undefined) === true) return;
    const key = model.partitionKey?.(op.input) ?? "";
    const operations = partitions.get(key);
    if (operations === undefined) partitions.set(key, [op]);
    else operations.push(op);
  });
  // The search numbers operations in this order; by invocation keeps its sets compact.
  for (const operations of partitions.values()) {
    operations.sort((a, b) => a.invokeTime - b.invokeTime);
  }
  return partitions;
}

/**
 * Checks whether `history` is linearizable with respect to `model`: whether each operation can
 * be given one instant between its invocation and its return such that, in the order of those
 * instants, the model accepts every answer. Operations whose outcome is unknown may take effect
 * at any instant after their invocation, or never.
 *
 * Partitions are checked one after another; the first illegal one ends the check. Otherwise,
 * if any partition ran out of its step budget, the verdict is `"unknown"`. Ruling out every
 * order takes far more steps than finding one, most of all with many unknown outcomes, so a
 * long history that is not linearizable may get `"unknown"` rather than `"illegal"`: callers
 * must treat both as failures.
 *
 * @example Checking a register history
 * ```ts
 * import assert from "node:assert/strict";
 * import { check, registerModel } from "./mod.ts";
 *
 * const result = check(registerModel, [
 *   { clientId: 1, input: { kind: "put", key: "k", value: "a" }, output: { kind: "put" }, invokeTime: 0, returnTime: 2 },
 *   { clientId: 2, input: { kind: "get", key: "k" }, output: { kind: "get", value: null }, invokeTime: 1, returnTime: 3 },
 * ]);
 * assert.equal(result.kind, "ok");
 * ```
 *
 * @param model The sequential specification of one partition.
 * @param history The operations, in any order. Must be well formed (see {@linkcode Operation});
 * a malformed operation is a bug in the caller and throws `AssertionError`.
 * @param options The step budget.
 */
export function check<State, Input, Output>(
  model: Model<State, Input, Output>,
  history: readonly Operation<Input, Output>[],
  options: CheckOptions = {},
): CheckResult<Input, Output> {
  const stepBudget = options.stepBudget ?? STEP_BUDGET_DEFAULT;
  assert(
    Number.isSafeInteger(stepBudget) && stepBudget > 0,
    `Cannot check a history with stepBudget ${stepBudget}: it must be a positive safe integer`,
  );
  const partitions = partitionHistory(model, history);
  const exhausted: string[] = [];
  let stepsUsed = 0;
  for (const [key, operations] of partitions) {
    const result = searchLinearization(model, operations, stepBudget);
    stepsUsed += result.stepsUsed;
    switch (result.kind) {
      case "ok":
        break;
      case "unknown":
        exhausted.push(key);
        break;
      case "illegal": {
        const prefix = result.longestPrefix.map((index) => operations[index]);
        const states = result.statesAfterPrefix.map((state) => describeState(model, state));
        const explanation = explain(model, key, operations, prefix, states);
        return { kind: "illegal", key, explanation, stepsUsed };
      }
      default: {
        const unreachable: never = result;
        throw new Error(`Unexpected search result ${JSON.stringify(unreachable)}`);
      }
    }
  }
  if (exhausted.length > 0) {
    return { kind: "unknown", reason: "budget", keys: exhausted, stepsUsed };
  }
  return { kind: "ok", partitions: partitions.size, stepsUsed };
}

function explain<S, I, O>(
  model: Model<S, I, O>,
  key: string,
  operations: readonly Operation<I, O>[],
  prefix: readonly Operation<I, O>[],
  states: readonly string[],
): IllegalExplanation<I, O> {
  const placed = new Set(prefix);
  const rest = operations.filter((op) => !placed.has(op));
  let blocking: Operation<I, O> | undefined;
  for (const op of rest) {
    if (
      op.output !== undefined && (blocking === undefined || op.returnTime < blocking.returnTime)
    ) {
      blocking = op;
    }
  }
  assert(blocking !== undefined, `Cannot explain partition "${key}": every operation was placed`);
  const deadline = blocking.returnTime;
  const couldNotPlace = rest.filter((op) => op.invokeTime <= deadline);
  const lines = [
    `Partition "${key}" is not linearizable.`,
    `Longest linearizable prefix (${prefix.length} of ${operations.length} operations):`,
    ...prefix.map((op) => `  ${describeOperation(model, op)}`),
    `State after it: ${states.join(" or ")}`,
    `No next operation leads to a linearization; candidates (must place by time ${deadline}):`,
    ...couldNotPlace.map((op) => `  ${describeOperation(model, op)}`),
  ];
  return {
    linearizedPrefix: prefix,
    statesAfterPrefix: states,
    blockingOperation: blocking,
    couldNotPlace,
    summary: lines.join("\n"),
  };
}

/** Describes an operation on one line: client, interval and what the model says about it. */
export function describeOperation<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  const what = model.describeOperation?.(op.input, op.output) ??
    `${JSON.stringify(op.input)} -> ${
      op.output === undefined ? "unknown" : JSON.stringify(op.output)
    }`;
  const end = op.output === undefined ? "..." : String(op.returnTime);
  return `client ${op.clientId} [${op.invokeTime}, ${end}] ${what}`;
}

function describeState<S, I, O>(model: Model<S, I, O>, state: S): string {
  return model.describeState?.(state) ?? JSON.stringify(state) ?? String(state);
}
