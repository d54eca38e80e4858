// History generators shared by the tests and the benchmark. Each builds a history from a real
// sequential execution: every operation gets a linearization point, the operations are applied
// in that order to a plain in-memory store, and each operation's invoke and return times are
// spread around its point. Such a history is linearizable by construction. Randomness comes from
// the caller, seeded: `mulberry32` from `@tinykv/raft`, so benchmarks and tests replay exactly.

import type { AppendListInput, AppendListOutput } from "./list_model.ts";
import type { Operation } from "./model.ts";
import type { RegisterInput, RegisterOutput } from "./register_model.ts";

/** What happened to a generated operation. */
export type Fate = "ok" | "unknownApplied" | "unknownDropped";

/** One planned operation: its input, its fate and its times around its point. */
export interface Plan<Input> {
  readonly clientId: number;
  readonly input: Input;
  readonly fate: Fate;
  readonly invokeTime: number;
  /** When it takes effect; plans are executed in order of this. */
  readonly point: number;
  readonly returnTime: number;
}

/** Executes plans in order of their points and records what each client would have seen. */
export function execute<Input, Output, Store>(
  plans: readonly Plan<Input>[],
  store: Store,
  apply: (store: Store, input: Input) => Output,
): Operation<Input, Output>[] {
  const order = plans.map((_, i) => i).sort((a, b) => plans[a].point - plans[b].point || a - b);
  const outputs = new Map<number, Output>();
  for (const i of order) {
    if (plans[i].fate !== "unknownDropped") outputs.set(i, apply(store, plans[i].input));
  }
  return plans.map((plan, i) => {
    const { clientId, input, invokeTime } = plan;
    return plan.fate === "ok"
      ? { clientId, input, output: outputs.get(i), invokeTime, returnTime: plan.returnTime }
      : { clientId, input, output: undefined, invokeTime, returnTime: Infinity };
  });
}

/** Applies a register operation to a map of keys to values. */
export function applyRegister(store: Map<string, string>, input: RegisterInput): RegisterOutput {
  const current = store.get(input.key) ?? null;
  const set = (value: string | null) => {
    if (value === null) store.delete(input.key);
    else store.set(input.key, value);
  };
  switch (input.kind) {
    case "get":
      return { kind: "get", value: current };
    case "put":
      set(input.value);
      return { kind: "put" };
    case "delete":
      set(null);
      return { kind: "delete" };
    case "cas": {
      const succeeded = current === input.expected;
      if (succeeded) set(input.next);
      return { kind: "cas", succeeded };
    }
  }
}

/** Applies an append-list operation to a map of keys to token lists. */
export function applyAppendList(
  store: Map<string, string[]>,
  input: AppendListInput,
): AppendListOutput {
  const list = store.get(input.key) ?? [];
  store.set(input.key, list);
  if (input.kind === "read") return { kind: "read", tokens: [...list] };
  list.push(input.token);
  return { kind: "append" };
}

/** Options for {@linkcode planClients}. */
export interface ClientPlanOptions {
  readonly clients: number;
  readonly operations: number;
  /** The most time units between an operation's invocation and its point, and its point and its return. */
  readonly latencyMax: number;
  /** The probability that an operation's outcome is unknown (half of those take effect). */
  readonly unknownProbability: number;
}

/**
 * Plans operations for closed-loop clients: each client invokes its next operation right
 * after the previous one returns (or it gave up on it), like the fault test's workers.
 */
export function planClients<Input>(
  random: () => number,
  options: ClientPlanOptions,
  nextInput: (random: () => number, index: number) => Input,
  isReadOnly: (input: Input) => boolean,
): Plan<Input>[] {
  const free = Array.from({ length: options.clients }, () => 0);
  const plans: Plan<Input>[] = [];
  const delay = () => Math.floor(random() * (options.latencyMax + 1));
  for (let index = 0; index < options.operations; index++) {
    const clientId = free.indexOf(Math.min(...free));
    const input = nextInput(random, index);
    const invokeTime = free[clientId] + 1;
    const point = invokeTime + delay();
    const returnTime = point + delay();
    let fate: Fate = "ok";
    if (!isReadOnly(input) && random() < options.unknownProbability) {
      fate = random() < 0.5 ? "unknownApplied" : "unknownDropped";
    }
    plans.push({ clientId, input, fate, invokeTime, point, returnTime });
    free[clientId] = returnTime;
  }
  return plans;
}

/** A random register input on one of `keys` keys, with values unique per operation. */
export function randomRegisterInput(
  keys: number,
): (random: () => number, index: number) => RegisterInput {
  return (random, index) => {
    const key = `k${Math.floor(random() * keys)}`;
    const roll = random();
    if (roll < 0.45) return { kind: "get", key };
    if (roll < 0.8) return { kind: "put", key, value: `v${index}` };
    if (roll < 0.85) return { kind: "delete", key };
    // Expect a recent value so that some swaps succeed.
    const recent = index - 1 - Math.floor(random() * 6);
    const expected = recent < 0 || random() < 0.15 ? null : `v${recent}`;
    return { kind: "cas", key, expected, next: `v${index}` };
  };
}

/** A random append-list input on one of `keys` keys, with tokens unique per operation. */
export function randomAppendListInput(
  keys: number,
): (random: () => number, index: number) => AppendListInput {
  return (random, index) => {
    const key = `k${Math.floor(random() * keys)}`;
    return random() < 0.5 ? { kind: "read", key } : { kind: "append", key, token: `t${index}` };
  };
}
