// Checks check() on hand-made register histories: linearizable ones with overlapping
// operations must pass, and each classic anomaly (stale read, lost write, a compare-and-swap
// that lies, a write that vanishes) must be caught. Also covers unknown outcomes, the step
// budget, partitioning by key, the explanation of a failure, and a nondeterministic model.
// Times are small integers; `[a, b]` is an operation invoked at a and returned at b.

import assert from "node:assert/strict";
import { AssertionError } from "./_assert.ts";
import { check, type CheckResult } from "./check.ts";
import type { Model, Operation } from "./model.ts";
import { type RegisterInput, registerModel, type RegisterOutput } from "./register_model.ts";
import {
  cas,
  casUnknown,
  del,
  get,
  put,
  putUnknown,
  type RegisterOperation,
} from "./_test_helpers.ts";

function verdict(history: readonly RegisterOperation[]): string {
  return check(registerModel, history).kind;
}

function assertIllegal(
  result: CheckResult<RegisterInput, RegisterOutput>,
): Extract<CheckResult<RegisterInput, RegisterOutput>, { kind: "illegal" }> {
  assert.equal(result.kind, "illegal", JSON.stringify(result));
  return result as Extract<CheckResult<RegisterInput, RegisterOutput>, { kind: "illegal" }>;
}

Deno.test("check() accepts an empty history", () => {
  assert.deepEqual(check(registerModel, []), { kind: "ok", partitions: 0, stepsUsed: 0 });
});

Deno.test("check() accepts a sequential history", () => {
  const history = [
    get(1, null, [0, 1]),
    put(1, "a", [2, 3]),
    get(2, "a", [4, 5]),
    cas(2, "a", "b", true, [6, 7]),
    cas(1, "a", "c", false, [8, 9]),
    del(1, [10, 11]),
    cas(2, null, "d", true, [12, 13]),
    get(1, "d", [14, 15]),
  ];
  assert.equal(verdict(history), "ok");
});

Deno.test("check() accepts a read overlapping a write whichever value it returns", () => {
  assert.equal(verdict([put(1, "a", [0, 10]), get(2, null, [2, 4])]), "ok");
  assert.equal(verdict([put(1, "a", [0, 10]), get(2, "a", [2, 4])]), "ok");
  // Once the write has returned, the old value is gone.
  assert.equal(verdict([put(1, "a", [0, 10]), get(2, null, [11, 12])]), "illegal");
});

Deno.test("check() accepts overlapping writes seen in one order by overlapping readers", () => {
  const history = [
    put(1, "a", [0, 10]),
    put(2, "b", [1, 9]),
    get(3, "b", [2, 3]),
    get(4, "a", [4, 5]),
    get(3, "a", [6, 12]),
    get(5, "a", [11, 13]),
  ];
  assert.equal(verdict(history), "ok");
});

Deno.test("check() rejects readers that see overlapping writes flip back", () => {
  // b then a is possible, a then b is possible, but not a, b, a.
  const history = [
    put(1, "a", [0, 10]),
    put(2, "b", [0, 10]),
    get(3, "a", [1, 2]),
    get(4, "b", [3, 4]),
    get(5, "a", [5, 6]),
  ];
  assert.equal(verdict(history), "illegal");
});

Deno.test("check() rejects a stale read after a completed write and explains it", () => {
  const history = [
    put(1, "a", [0, 1]),
    put(2, "b", [2, 3]),
    get(3, "a", [4, 5]),
  ];
  const result = assertIllegal(check(registerModel, history));
  assert.equal(result.key, "x");
  const { explanation } = result;
  assert.deepEqual(explanation.linearizedPrefix, [history[0], history[1]]);
  assert.deepEqual(explanation.statesAfterPrefix, ['"b"']);
  assert.equal(explanation.blockingOperation, history[2]);
  assert.deepEqual(explanation.couldNotPlace, [history[2]]);
  assert.match(explanation.summary, /Partition "x" is not linearizable/);
  assert.match(explanation.summary, /client 3 \[4, 5\] get\("x"\) -> "a"/);
});

Deno.test("check() rejects a lost write", () => {
  assert.equal(verdict([put(1, "a", [0, 1]), get(2, null, [2, 3])]), "illegal");
  // Seen once, then gone.
  assert.equal(
    verdict([put(1, "a", [0, 1]), get(2, "a", [2, 3]), get(2, null, [4, 5])]),
    "illegal",
  );
  // Overwritten by a write that completed earlier.
  assert.equal(
    verdict([put(1, "a", [0, 1]), put(2, "b", [2, 3]), get(3, "a", [4, 5])]),
    "illegal",
  );
});

Deno.test("check() rejects a read of a value nobody wrote", () => {
  assert.equal(verdict([put(1, "a", [0, 3]), get(2, "z", [1, 2])]), "illegal");
});

Deno.test("check() rejects two compare-and-swaps that both succeed from one value", () => {
  const history = [
    cas(1, null, "a", true, [0, 5]),
    cas(2, null, "b", true, [1, 4]),
  ];
  assert.equal(verdict(history), "illegal");
  assert.equal(verdict([history[0], cas(2, null, "b", false, [1, 4])]), "ok");
});

Deno.test("check() rejects a compare-and-swap that failed although the value matched", () => {
  assert.equal(verdict([put(1, "a", [0, 1]), cas(2, "a", "b", false, [2, 3])]), "illegal");
  // An overlapping write explains the failure.
  assert.equal(
    verdict([put(1, "a", [0, 1]), put(3, "c", [2, 4]), cas(2, "a", "b", false, [2, 3])]),
    "ok",
  );
});

Deno.test("check() rejects a compare-and-swap that succeeded although the value differed", () => {
  assert.equal(verdict([put(1, "a", [0, 1]), cas(2, "z", "b", true, [2, 3])]), "illegal");
  assert.equal(
    verdict([put(1, "a", [0, 1]), cas(2, "a", "b", true, [2, 3]), get(1, "a", [4, 5])]),
    "illegal",
  );
});

Deno.test("check() handles delete and compare-and-swap on an absent key", () => {
  const history = [
    put(1, "a", [0, 1]),
    del(2, [2, 3]),
    cas(1, null, "b", true, [4, 5]),
    cas(2, "b", null, true, [6, 7]),
    get(3, null, [8, 9]),
  ];
  assert.equal(verdict(history), "ok");
  assert.equal(verdict([...history.slice(0, 2), get(3, "a", [4, 5])]), "illegal");
});

Deno.test("check() treats operations that touch at one instant as overlapping", () => {
  assert.equal(verdict([put(1, "a", [0, 5]), get(2, null, [5, 6])]), "ok");
  assert.equal(verdict([put(1, "a", [0, 5]), get(2, null, [6, 7])]), "illegal");
});

Deno.test("check() accepts an unknown write that took effect or never did", () => {
  assert.equal(verdict([putUnknown(1, "a", 0), get(2, "a", [5, 6])]), "ok");
  assert.equal(verdict([putUnknown(1, "a", 0), get(2, null, [5, 6])]), "ok");
  // It may take effect long after its client gave up.
  assert.equal(
    verdict([putUnknown(1, "a", 0), get(2, null, [5, 6]), get(2, "a", [10, 11])]),
    "ok",
  );
  // Unknown writes that did not happen stay out of the way of later ones.
  assert.equal(
    verdict([
      putUnknown(1, "a", 0),
      putUnknown(2, "b", 1),
      put(3, "c", [2, 3]),
      get(3, "c", [4, 5]),
    ]),
    "ok",
  );
});

Deno.test("check() rejects an unknown write seen before its invocation or after it vanished", () => {
  assert.equal(verdict([get(2, "a", [0, 1]), putUnknown(1, "a", 2)]), "illegal");
  assert.equal(
    verdict([putUnknown(1, "a", 0), get(2, "a", [1, 2]), get(2, null, [3, 4])]),
    "illegal",
  );
});

Deno.test("check() lets an unknown compare-and-swap apply only when it matches", () => {
  const unknownCas = casUnknown(1, null, "a", 0);
  // Applied first, then overwritten: fine.
  assert.equal(verdict([unknownCas, put(2, "b", [1, 2]), get(3, "b", [3, 4])]), "ok");
  // Applied first: "a" seen, then "b".
  assert.equal(
    verdict([unknownCas, get(3, "a", [1, 2]), put(2, "b", [3, 4]), get(3, "b", [5, 6])]),
    "ok",
  );
  // After "b" was written it can no longer apply, so "a" cannot reappear.
  assert.equal(verdict([unknownCas, put(2, "b", [1, 2]), get(3, "a", [3, 4])]), "illegal");
});

Deno.test("check() drops reads whose outcome is unknown", () => {
  const unknownGet: RegisterOperation = {
    clientId: 9,
    input: { kind: "get", key: "x" },
    output: undefined,
    invokeTime: 0,
    returnTime: Infinity,
  };
  const result = check(registerModel, [unknownGet, put(1, "a", [0, 1])]);
  assert.equal(result.kind, "ok");
  assert.equal(result.stepsUsed, 1);
});

Deno.test("check() checks each key on its own and names the failing one", () => {
  // Across keys, nothing is stale.
  assert.equal(verdict([put(1, "a", [0, 1], "x"), get(2, null, [2, 3], "y")]), "ok");
  const result = check(registerModel, [
    put(1, "a", [0, 1], "x"),
    get(2, "a", [2, 3], "x"),
    put(1, "b", [0, 1], "y"),
    get(2, null, [2, 3], "y"),
  ]);
  assert.equal(assertIllegal(result).key, "y");
  const ok = check(registerModel, [put(1, "a", [0, 1], "x"), put(1, "a", [0, 1], "y")]);
  assert.equal(ok.kind === "ok" && ok.partitions, 2);
});

/**
 * Many overlapping writes followed by a read of a value none of them wrote: proving that no
 * order works means visiting every subset of the writes.
 */
function hardHistory(writes: number, key = "x"): RegisterOperation[] {
  const history = Array.from({ length: writes }, (_, i) => put(i, `v${i}`, [0, 100], key));
  history.push(get(writes, "never written", [101, 102], key));
  return history;
}

Deno.test("check() answers unknown when the step budget runs out", () => {
  const history = hardHistory(10);
  const full = check(registerModel, history);
  assert.equal(full.kind, "illegal");
  assert.ok(full.stepsUsed > 100);
  const result = check(registerModel, history, { stepBudget: 100 });
  assert.deepEqual(result, { kind: "unknown", reason: "budget", keys: ["x"], stepsUsed: 100 });
});

Deno.test("check() spends the budget per key, and an illegal key beats an exhausted one", () => {
  const both = [...hardHistory(10, "a"), ...hardHistory(10, "b")];
  assert.deepEqual(check(registerModel, both, { stepBudget: 50 }), {
    kind: "unknown",
    reason: "budget",
    keys: ["a", "b"],
    stepsUsed: 100,
  });
  const withIllegal = [
    ...hardHistory(10, "a"),
    put(1, "v", [0, 1], "c"),
    get(1, null, [2, 3], "c"),
  ];
  assert.equal(check(registerModel, withIllegal, { stepBudget: 50 }).kind, "illegal");
});

Deno.test("check() rejects malformed histories and options as bugs", () => {
  assert.throws(() => check(registerModel, [put(1, "a", [5, 4])]), AssertionError);
  assert.throws(
    () => check(registerModel, [{ ...putUnknown(1, "a", 0), returnTime: 3 }]),
    AssertionError,
  );
  assert.throws(() => check(registerModel, [put(1, "a", [NaN, 4])]), AssertionError);
  assert.throws(() => check(registerModel, [], { stepBudget: 0 }), AssertionError);
  const mismatched: RegisterOperation = {
    ...put(1, "a", [0, 1]),
    output: { kind: "get", value: "a" },
  };
  assert.throws(() => check(registerModel, [mismatched]), AssertionError);
});

// A coin: "flip" lands on 0 or 1, nondeterministically; "look" reports the face.
type Coin = { kind: "flip" } | { kind: "look" };
const coinModel: Model<number, Coin, number | "flipped"> = {
  init: () => 0,
  step: (state, input, output) => {
    if (input.kind === "flip") return [0, 1];
    return output === undefined || output === state ? [state] : [];
  },
  hashState: (state) => state,
  equalStates: (a, b) => a === b,
  isReadOnly: (input) => input.kind === "look",
};

function coin(input: Coin, output: number | "flipped", [invokeTime, returnTime]: [number, number]) {
  return { clientId: 1, input, output, invokeTime, returnTime } as Operation<
    Coin,
    number | "flipped"
  >;
}

Deno.test("check() follows every state of a nondeterministic model", () => {
  const flip = coin({ kind: "flip" }, "flipped", [0, 1]);
  assert.equal(check(coinModel, [flip, coin({ kind: "look" }, 1, [2, 3])]).kind, "ok");
  assert.equal(check(coinModel, [flip, coin({ kind: "look" }, 0, [2, 3])]).kind, "ok");
  const changed = [flip, coin({ kind: "look" }, 1, [2, 3]), coin({ kind: "look" }, 0, [4, 5])];
  assert.equal(check(coinModel, changed).kind, "illegal");
  const reflipped = [...changed, coin({ kind: "flip" }, "flipped", [3, 4])];
  assert.equal(check(coinModel, reflipped).kind, "ok");
});
