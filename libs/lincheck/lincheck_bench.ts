// Benchmarks check() on histories shaped like the fault test's: ten closed-loop clients,
// thousands of operations on one key, generated from a real sequential execution with
// overlapping windows (so all are linearizable), with and without unknown outcomes.
// Run with `deno bench libs/lincheck/`.

import { mulberry32 } from "@tinykv/raft";
import {
  applyAppendList,
  applyRegister,
  type ClientPlanOptions,
  execute,
  planClients,
  randomAppendListInput,
  randomRegisterInput,
} from "./_generate.ts";
import { check } from "./check.ts";
import { appendListModel } from "./list_model.ts";
import type { Model, Operation } from "./model.ts";
import { registerModel } from "./register_model.ts";

const SEED = 42;

function options(operations: number, unknownProbability: number): ClientPlanOptions {
  return { clients: 10, operations, latencyMax: 5, unknownProbability };
}

function registerHistory(operations: number, keys: number, unknownProbability: number) {
  const plans = planClients(
    mulberry32(SEED),
    options(operations, unknownProbability),
    randomRegisterInput(keys),
    (input) => input.kind === "get",
  );
  return execute(plans, new Map<string, string>(), applyRegister);
}

function appendListHistory(operations: number, unknownProbability: number) {
  const plans = planClients(
    mulberry32(SEED),
    options(operations, unknownProbability),
    randomAppendListInput(1),
    (input) => input.kind === "read",
  );
  return execute(plans, new Map<string, string[]>(), applyAppendList);
}

function bench<S, I, O>(name: string, model: Model<S, I, O>, history: Operation<I, O>[]) {
  Deno.bench(name, () => {
    const result = check(model, history);
    if (result.kind !== "ok") throw new Error(`Expected "ok", got ${JSON.stringify(result)}`);
  });
}

bench("register: 10 clients, 2,000 ops, 1 key", registerModel, registerHistory(2_000, 1, 0));
bench(
  "register: 10 clients, 2,000 ops, 1 key, 5% of writes unknown",
  registerModel,
  registerHistory(2_000, 1, 0.05),
);
bench(
  "register: 10 clients, 20,000 ops, 10 keys, 5% of writes unknown",
  registerModel,
  registerHistory(20_000, 10, 0.05),
);
bench("append list: 10 clients, 2,000 ops, 1 key", appendListModel, appendListHistory(2_000, 0));
bench(
  "append list: 10 clients, 2,000 ops, 1 key, 5% of appends unknown",
  appendListModel,
  appendListHistory(2_000, 0.05),
);
