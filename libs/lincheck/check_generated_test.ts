// Checks check() on larger histories like the simulation's and the fault test's: closed-loop
// clients, one key or a few, some unknown outcomes, built from a real sequential execution
// (_generate.ts) with fixed seeds. Each must be found linearizable within the default budget;
// with one answer corrupted it must be found illegal. No timing: the step counts are
// deterministic, and lincheck_bench.ts measures time. Proving a long history with unknown
// outcomes illegal can exhaust a budget (the verdict is then "unknown", which callers treat as
// a failure), so with unknown outcomes the corrupted check only requires "not ok".

import assert from "node:assert/strict";
import { mulberry32 } from "@tinykv/raft";
import {
  applyAppendList,
  applyRegister,
  execute,
  planClients,
  randomAppendListInput,
  randomRegisterInput,
} from "./_generate.ts";
import { check } from "./check.ts";
import { appendListModel } from "./list_model.ts";
import { registerModel, type RegisterOutput } from "./register_model.ts";

const CASES = [
  { seed: 1, clients: 10, operations: 1000, keys: 1, unknownProbability: 0 },
  { seed: 2, clients: 10, operations: 1000, keys: 1, unknownProbability: 0.05 },
  { seed: 3, clients: 5, operations: 1000, keys: 3, unknownProbability: 0.1 },
];

/** The budget for the corrupted histories, to keep the tests fast. */
const CORRUPTED_STEP_BUDGET = 200_000;

function assertCaught(kind: string, unknownProbability: number) {
  if (unknownProbability === 0) assert.equal(kind, "illegal");
  else assert.notEqual(kind, "ok");
}

for (const { seed, keys, ...options } of CASES) {
  const name = `seed ${seed}, ${options.clients} clients, ${keys} keys, ` +
    `${options.unknownProbability * 100}% unknown`;

  Deno.test(`check() accepts a generated register history (${name})`, () => {
    const plans = planClients(
      mulberry32(seed),
      { ...options, latencyMax: 5 },
      randomRegisterInput(keys),
      (input) => input.kind === "get",
    );
    const history = execute(plans, new Map<string, string>(), applyRegister);
    const result = check(registerModel, history);
    assert.equal(result.kind, "ok", JSON.stringify(result));

    // A read that returns a value nobody wrote can never be placed.
    const index = history.findIndex((op, i) => i > history.length / 2 && op.output?.kind === "get");
    const corrupted = history.map((op, i) =>
      i === index ? { ...op, output: { kind: "get", value: "bogus" } as RegisterOutput } : op
    );
    const verdict = check(registerModel, corrupted, { stepBudget: CORRUPTED_STEP_BUDGET }).kind;
    assertCaught(verdict, options.unknownProbability);
  });

  Deno.test(`check() accepts a generated append-list history (${name})`, () => {
    const plans = planClients(
      mulberry32(seed),
      { ...options, latencyMax: 5 },
      randomAppendListInput(keys),
      (input) => input.kind === "read",
    );
    const history = execute(plans, new Map<string, string[]>(), applyAppendList);
    const result = check(appendListModel, history);
    assert.equal(result.kind, "ok", JSON.stringify(result));

    // Duplicate the last token of a late read that saw at least one.
    const index = history.findIndex((op, i) =>
      i > history.length / 2 && op.output?.kind === "read" && op.output.tokens.length > 0
    );
    const corrupted = history.map((op, i) => {
      if (i !== index || op.output?.kind !== "read") return op;
      const tokens = op.output.tokens;
      return {
        ...op,
        output: { kind: "read" as const, tokens: [...tokens, tokens[tokens.length - 1]] },
      };
    });
    const verdict = check(appendListModel, corrupted, { stepBudget: CORRUPTED_STEP_BUDGET }).kind;
    assertCaught(verdict, options.unknownProbability);
  });
}
