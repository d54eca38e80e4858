// Checks the deployment test's verdicts (table tests): judgeWrites() accepts a key's latest
// acknowledged value or a value of unknown outcome and reports anything else as lost or
// unexplained; availability() counts outcomes and finds the longest time without an
// acknowledgement.
import assert from "node:assert/strict";
import { availability, judgeWrites, type WriteRecord } from "./load.ts";

function w(
  key: string,
  value: string,
  startMs: number,
  outcome: WriteRecord["outcome"] = "ok",
  endMs = startMs + 5,
): WriteRecord {
  return outcome === "ok" ? { key, value, startMs, endMs, outcome } : {
    key,
    value,
    startMs,
    endMs,
    outcome,
    code: outcome === "unknown" ? "deadlineExceeded" : "unavailable",
  };
}

const HISTORY: WriteRecord[] = [
  w("a", "a1", 0),
  w("a", "a2", 10),
  w("a", "a3", 20, "failed"),
  w("b", "b1", 0),
  w("b", "b2", 10, "unknown"),
  w("b", "b3", 20),
  w("c", "c1", 0, "unknown"),
  w("d", "d1", 0, "failed"),
];

const v = (...tokens: string[]) => tokens.map((t) => `|${t}`).join("");

Deno.test("judgeWrites() takes every acknowledged append in order, and unknown ones or not", () => {
  const verdict = judgeWrites(
    HISTORY,
    new Map([["a", v("a1", "a2")], ["b", v("b1", "b2", "b3")], ["c", undefined], ["d", undefined]]),
  );
  assert.deepEqual(verdict, {
    keys: 4,
    acknowledged: 4,
    latest: 4,
    unknownApplied: 1,
    problems: [],
  });
  // An unknown append may be missing, or land after later ones.
  assert.deepEqual(
    judgeWrites(
      HISTORY,
      new Map([["a", v("a1", "a2")], ["b", v("b1", "b3", "b2")], ["c", v("c1")], [
        "d",
        undefined,
      ]]),
    ).problems,
    [],
  );
  assert.deepEqual(
    judgeWrites(
      HISTORY,
      new Map([["a", v("a1", "a2")], ["b", v("b1", "b3")], ["c", v()], ["d", v()]]),
    )
      .problems,
    [],
  );
});

Deno.test("judgeWrites() reports an early lost write even when later ones survived", () => {
  // The old check (final value = latest acknowledged) passes this: a1 is gone, a2 is last.
  const verdict = judgeWrites(
    HISTORY,
    new Map([["a", v("a2")], ["b", v("b1", "b3")], ["c", undefined], ["d", undefined]]),
  );
  assert.deepEqual(verdict.problems, ['key a: acknowledged write "a1" is lost']);
});

Deno.test("judgeWrites() reports a lost, repeated, reordered, failed or unknown value and a key not read", () => {
  const verdict = judgeWrites(
    HISTORY,
    new Map([["a", v("a2", "a1", "a3")], ["b", v("b1", "b1", "b3", "zz")], ["c", v("c1")]]),
  );
  assert.deepEqual(verdict.problems, [
    'key a: acknowledged "a1" is out of order',
    'key a: holds "a3", a write that definitely failed',
    'key b: holds "b1" twice',
    'key b: holds "zz", which nobody wrote',
    "key d: not read back",
  ]);
});

Deno.test("availability() counts outcomes and the longest time without an acknowledgement", () => {
  const history = [
    w("a", "1", 0, "ok", 100),
    w("a", "2", 100, "ok", 200),
    w("a", "3", 200, "unknown", 5200),
    w("a", "4", 5200, "ok", 5300),
    w("b", "1", 300, "failed", 400),
    w("b", "2", 9000, "ok", 9050), // after the window: not counted
  ];
  const result = availability(history, 0, 6000);
  assert.equal(result.attempts, 5);
  assert.equal(result.acknowledged, 3);
  assert.equal(result.failed, 1);
  assert.equal(result.unknown, 1);
  assert.deepEqual(result.codes, { deadlineExceeded: 1, unavailable: 1 });
  assert.equal(result.ratio, 3 / 5);
  assert.equal(result.longestGapMs, 5100);
  assert.equal(result.longestGapAtMs, 200);
  assert.equal(result.slowestAckMs, 100);
  // With nothing acknowledged, the whole window is one gap.
  assert.equal(availability([w("a", "1", 10, "failed")], 0, 1000).longestGapMs, 1000);
});
