// A deliberately dumb linearizability oracle for the property tests, written straight from
// the definition: a history is linearizable if some subset of its unknown-outcome operations,
// together with every operation with a known outcome, has a total order that respects real
// time (A before B whenever A returned strictly before B was invoked) and that the model
// accepts when the whole history is replayed as one object (a map from partition key to
// state). No partitioning, no lifting, no memo cache: it tries every order, so it is only for
// histories of up to about 8 operations.

import { assert } from "./_assert.ts";
import type { Model, Operation } from "./model.ts";

const OPERATIONS_MAX = 8;

type World<State> = ReadonlyMap<string, State>;

function replay<S, I, O>(
  model: Model<S, I, O>,
  order: readonly Operation<I, O>[],
): boolean {
  let worlds: World<S>[] = [new Map()];
  for (const op of order) {
    const key = model.partitionKey?.(op.input) ?? "";
    const next: World<S>[] = [];
    for (const world of worlds) {
      const before = world.has(key) ? world.get(key) as S : model.init();
      for (const after of model.step(before, op.input, op.output)) {
        next.push(new Map(world).set(key, after));
      }
    }
    if (next.length === 0) return false;
    worlds = next;
  }
  return true;
}

function respectsRealTime<I, O>(order: readonly Operation<I, O>[]): boolean {
  for (let i = 0; i < order.length; i++) {
    for (let j = i + 1; j < order.length; j++) {
      if (order[j].returnTime < order[i].invokeTime) return false;
    }
  }
  return true;
}

function somePermutation<T>(
  items: readonly T[],
  accept: (order: readonly T[]) => boolean,
): boolean {
  const order: T[] = [];
  const used = items.map(() => false);
  const extend = (): boolean => {
    if (order.length === items.length) return accept(order);
    for (let i = 0; i < items.length; i++) {
      if (used[i]) continue;
      used[i] = true;
      order.push(items[i]);
      const found = extend();
      order.pop();
      used[i] = false;
      if (found) return true;
    }
    return false;
  };
  return extend();
}

/** Whether `history` is linearizable under `model`, by exhaustive enumeration. */
export function bruteForceLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
): boolean {
  assert(history.length <= OPERATIONS_MAX, `Cannot brute-force ${history.length} operations`);
  const known = history.filter((op) => op.output !== undefined);
  const unknown = history.filter((op) => op.output === undefined);
  for (let mask = 0; mask < 1 << unknown.length; mask++) {
    const chosen = [...known, ...unknown.filter((_, i) => (mask & (1 << i)) !== 0)];
    const found = somePermutation(
      chosen,
      (order) => respectsRealTime(order) && replay(model, order),
    );
    if (found) return true;
  }
  return false;
}
