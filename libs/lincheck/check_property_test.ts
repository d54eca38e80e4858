// Property tests: check() against a brute-force oracle (_brute_force.ts) that tries every
// order of every admissible subset of operations, on small random histories (at most 7
// operations, 2 keys, few values so that reads often match). Two generators per model:
// - from a real sequential execution with random windows around each linearization point
//   (and some unknown outcomes, applied or not): always linearizable, both must say so;
// - with fully random answers and times: mostly not linearizable; both must agree.
// A failure prints fast-check's seed and the shrunk history.

import assert from "node:assert/strict";
import fc from "fast-check";
import { bruteForceLinearizable } from "./_brute_force.ts";
import { applyAppendList, applyRegister, execute, type Fate, type Plan } from "./_generate.ts";
import { check } from "./check.ts";
import { type AppendListInput, appendListModel, type AppendListOutput } from "./list_model.ts";
import type { Model, Operation } from "./model.ts";
import { type RegisterInput, registerModel, type RegisterOutput } from "./register_model.ts";

const RUNS = 1000;
const OPERATIONS_MAX = 7;

const keyArb = fc.constantFrom("x", "y");
const valueArb = fc.constantFrom("a", "b", "c");
const tokenArb = fc.constantFrom("t1", "t2", "t3");

const registerInputArb: fc.Arbitrary<RegisterInput> = fc.oneof(
  keyArb.map((key): RegisterInput => ({ kind: "get", key })),
  fc.tuple(keyArb, valueArb).map(([key, value]): RegisterInput => ({ kind: "put", key, value })),
  keyArb.map((key): RegisterInput => ({ kind: "delete", key })),
  fc.tuple(keyArb, fc.option(valueArb, { nil: null }), fc.option(valueArb, { nil: null })).map(
    ([key, expected, next]): RegisterInput => ({ kind: "cas", key, expected, next }),
  ),
);

function registerOutputArb(input: RegisterInput): fc.Arbitrary<RegisterOutput> {
  switch (input.kind) {
    case "get":
      return fc.option(valueArb, { nil: null }).map((value) => ({ kind: "get", value }));
    case "put":
      return fc.constant({ kind: "put" });
    case "delete":
      return fc.constant({ kind: "delete" });
    case "cas":
      return fc.boolean().map((succeeded) => ({ kind: "cas", succeeded }));
  }
}

const appendListInputArb: fc.Arbitrary<AppendListInput> = fc.oneof(
  keyArb.map((key): AppendListInput => ({ kind: "read", key })),
  fc.tuple(keyArb, tokenArb).map(([key, token]): AppendListInput => ({
    kind: "append",
    key,
    token,
  })),
);

function appendListOutputArb(input: AppendListInput): fc.Arbitrary<AppendListOutput> {
  if (input.kind === "append") return fc.constant({ kind: "append" });
  return fc.array(tokenArb, { maxLength: 3 }).map((tokens) => ({ kind: "read", tokens }));
}

const fateArb: fc.Arbitrary<Fate> = fc.constantFrom(
  "ok",
  "ok",
  "ok",
  "unknownApplied",
  "unknownDropped",
);

/** Plans around points 0, 2, 4, ...: windows up to 4 wide make neighbours overlap. */
function plansArb<Input>(inputArb: fc.Arbitrary<Input>): fc.Arbitrary<Plan<Input>[]> {
  const planArb = fc.record({
    input: inputArb,
    before: fc.nat(4),
    after: fc.nat(4),
    fate: fateArb,
    clientId: fc.nat(2),
  });
  return fc.array(planArb, { minLength: 2, maxLength: OPERATIONS_MAX, size: "max" }).map((parts) =>
    parts.map(({ input, before, after, fate, clientId }, i) => ({
      clientId,
      input,
      fate,
      invokeTime: 2 * i - before,
      point: 2 * i,
      returnTime: 2 * i + after,
    }))
  );
}

/** Operations with random answers; about one in five has an unknown outcome. */
function randomHistoryArb<Input, Output>(
  inputArb: fc.Arbitrary<Input>,
  outputArb: (input: Input) => fc.Arbitrary<Output>,
): fc.Arbitrary<Operation<Input, Output>[]> {
  const operationArb = fc.tuple(inputArb, fc.nat(8), fc.nat(4), fc.nat(4), fc.nat(2)).chain(
    ([input, invokeTime, duration, unknownRoll, clientId]) =>
      outputArb(input).map((output): Operation<Input, Output> =>
        unknownRoll === 0
          ? { clientId, input, output: undefined, invokeTime, returnTime: Infinity }
          : { clientId, input, output, invokeTime, returnTime: invokeTime + duration }
      ),
  );
  return fc.array(operationArb, { minLength: 3, maxLength: OPERATIONS_MAX, size: "max" });
}

/** The explanation's prefix must itself replay legally, partition by partition. */
function assertPrefixReplays<S, I, O>(model: Model<S, I, O>, prefix: readonly Operation<I, O>[]) {
  let states = [model.init()];
  for (const op of prefix) {
    states = states.flatMap((state) => model.step(state, op.input, op.output));
    assert.ok(states.length > 0, "The explanation's prefix does not replay");
  }
}

function assertAgrees<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[]) {
  const expected = bruteForceLinearizable(model, history);
  const result = check(model, history);
  assert.equal(result.kind, expected ? "ok" : "illegal");
  if (result.kind === "illegal") assertPrefixReplays(model, result.explanation.linearizedPrefix);
}

Deno.test("bruteForceLinearizable() agrees with hand-made verdicts", () => {
  const put = (value: string, invokeTime: number, returnTime: number) => ({
    clientId: 1,
    input: { kind: "put", key: "x", value } as RegisterInput,
    output: { kind: "put" } as RegisterOutput,
    invokeTime,
    returnTime,
  });
  const get = (value: string | null, invokeTime: number, returnTime: number) => ({
    clientId: 2,
    input: { kind: "get", key: "x" } as RegisterInput,
    output: { kind: "get", value } as RegisterOutput,
    invokeTime,
    returnTime,
  });
  assert.equal(bruteForceLinearizable(registerModel, [put("a", 0, 1), get("a", 2, 3)]), true);
  assert.equal(bruteForceLinearizable(registerModel, [put("a", 0, 1), get(null, 2, 3)]), false);
  assert.equal(bruteForceLinearizable(registerModel, [put("a", 0, 2), get(null, 2, 3)]), true);
  const unknownPut = { ...put("a", 0, 0), output: undefined, returnTime: Infinity };
  assert.equal(bruteForceLinearizable(registerModel, [unknownPut, get(null, 2, 3)]), true);
  assert.equal(bruteForceLinearizable(registerModel, [unknownPut, get("a", 2, 3)]), true);
});

Deno.test("check() accepts register histories from a sequential execution", () => {
  fc.assert(
    fc.property(plansArb(registerInputArb), (plans) => {
      const history = execute(plans, new Map<string, string>(), applyRegister);
      assert.equal(bruteForceLinearizable(registerModel, history), true);
      assert.equal(check(registerModel, history).kind, "ok");
    }),
    { numRuns: RUNS },
  );
});

Deno.test("check() agrees with brute force on register histories with random answers", () => {
  fc.assert(
    fc.property(randomHistoryArb(registerInputArb, registerOutputArb), (history) => {
      assertAgrees(registerModel, history);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("check() accepts append-list histories from a sequential execution", () => {
  fc.assert(
    fc.property(plansArb(appendListInputArb), (plans) => {
      const history = execute(plans, new Map<string, string[]>(), applyAppendList);
      assert.equal(bruteForceLinearizable(appendListModel, history), true);
      assert.equal(check(appendListModel, history).kind, "ok");
    }),
    { numRuns: RUNS },
  );
});

Deno.test("check() agrees with brute force on append-list histories with random answers", () => {
  fc.assert(
    fc.property(randomHistoryArb(appendListInputArb, appendListOutputArb), (history) => {
      assertAgrees(appendListModel, history);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("check() agrees with brute force on mutated sequential register histories", () => {
  // One answer of a linearizable history is replaced: often, but not always, illegal.
  const mutatedArb = plansArb(registerInputArb).chain((plans) => {
    const history = execute(plans, new Map<string, string>(), applyRegister);
    return fc.nat(history.length - 1).chain((index) =>
      registerOutputArb(history[index].input).map((output) =>
        history.map((op, i) => i === index && op.output !== undefined ? { ...op, output } : op)
      )
    );
  });
  fc.assert(
    fc.property(mutatedArb, (history) => assertAgrees(registerModel, history)),
    { numRuns: RUNS },
  );
});

// A nondeterministic model: "flip" leaves the coin on either face, "set" on a given one, and
// "look" reports the face. It exercises the search over sets of states.
type CoinInput = { kind: "flip" } | { kind: "set"; face: number } | { kind: "look" };
type CoinOutput = { face: number } | { done: true };
const coinModel: Model<number, CoinInput, CoinOutput> = {
  init: () => 0,
  step: (state, input, output) => {
    if (input.kind === "flip") return [0, 1];
    if (input.kind === "set") return [input.face];
    return output === undefined || ("face" in output && output.face === state) ? [state] : [];
  },
  hashState: (state) => state,
  equalStates: (a, b) => a === b,
  isReadOnly: (input) => input.kind === "look",
};

const coinInputArb: fc.Arbitrary<CoinInput> = fc.oneof(
  fc.constant<CoinInput>({ kind: "flip" }),
  fc.constantFrom(0, 1).map((face): CoinInput => ({ kind: "set", face })),
  fc.constant<CoinInput>({ kind: "look" }),
  fc.constant<CoinInput>({ kind: "look" }),
);

function coinOutputArb(input: CoinInput): fc.Arbitrary<CoinOutput> {
  if (input.kind !== "look") return fc.constant({ done: true });
  return fc.constantFrom(0, 1).map((face) => ({ face }));
}

Deno.test("check() agrees with brute force on a nondeterministic model", () => {
  fc.assert(
    fc.property(randomHistoryArb(coinInputArb, coinOutputArb), (history) => {
      assertAgrees(coinModel, history);
    }),
    { numRuns: RUNS },
  );
});
