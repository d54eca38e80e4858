// Tests of the chaos-test checkers. Hand-made histories show that a clean concurrent history
// passes and that each rule catches one crafted violation (and names it); randomized
// histories of a correct store, each operation applied at a random point of its interval,
// show that the checkers report nothing for any legal interleaving.

import assert from "node:assert/strict";
import { AssertionError } from "@tinykv/lincheck";
import { mulberry32, type Prng } from "@tinykv/raft";
import {
  type AppendOp,
  checkAppends,
  checkScans,
  type ListRead,
  type Outcome,
  parseTokens,
  PROBLEMS_LISTED_MAX,
  type ScanRead,
  type ScanWrite,
} from "./checks.ts";

function append(
  client: string,
  token: string,
  [invoke, complete]: [number, number],
  outcome: Outcome = "ok",
  key = "k",
): AppendOp {
  return { client, key, token, invoke, complete, outcome };
}

function read(
  client: string,
  [invoke, complete]: [number, number],
  tokens: string[],
  key = "k",
): ListRead {
  return { client, key, invoke, complete, tokens };
}

function finals(tokens: string[], key = "k"): Map<string, string[]> {
  return new Map([[key, tokens]]);
}

// Asserts exactly `count` problems and that each pattern matches one of them.
function assertProblems(
  report: { problems: readonly string[]; problemCount: number },
  count: number,
  ...patterns: RegExp[]
): void {
  assert.equal(report.problemCount, count, report.problems.join("\n"));
  for (const pattern of patterns) {
    assert.ok(
      report.problems.some((problem) => pattern.test(problem)),
      `No problem matches ${pattern}:\n${report.problems.join("\n")}`,
    );
  }
}

// ---------------------------------------------------------------------------------------
// parseTokens.

Deno.test("parseTokens() splits well-formed values and rejects the others", () => {
  const cases: [string, string[] | RegExp][] = [
    ["", []],
    ["a;", ["a"]],
    ["a;b;", ["a", "b"]],
    ["a;b", /does not end in ";": "a;b"/],
    ["a;;b;", /empty token at position 1/],
    [";", /empty token at position 0/],
  ];
  for (const [value, expected] of cases) {
    const result = parseTokens(value);
    if (Array.isArray(expected)) {
      assert.deepEqual(result, { kind: "ok", tokens: expected }, value);
    } else {
      assert.equal(result.kind, "malformed", value);
      if (result.kind === "malformed") assert.match(result.problem, expected);
    }
  }
});

// ---------------------------------------------------------------------------------------
// checkAppends.

Deno.test("checkAppends() accepts a clean concurrent history", () => {
  const report = checkAppends({
    appends: [
      append("c1", "t1", [0, 10]),
      append("c2", "t2", [5, 15]), // Concurrent with t1: either order.
      append("c3", "t3", [20, 30], "unknown"), // Never applied.
      append("c1", "t4", [20, 25], "failed"),
      append("c2", "t5", [31, 40]),
      append("c3", "t6", [32, 33], "unknown"), // Applied.
      append("c1", "u1", [0, 1], "ok", "j"),
    ],
    reads: [
      read("c3", [8, 12], []), // t1 and t2 had not completed.
      read("c3", [16, 18], ["t2", "t1"]),
      read("c2", [15, 15], ["t2", "t1"]), // Ties count as concurrent.
      read("c1", [41, 45], ["t2", "t1", "t6", "t5"]),
      read("c2", [2, 3], ["u1"], "j"),
    ],
    finals: new Map([["k", ["t2", "t1", "t6", "t5"]], ["j", ["u1"]]]),
  });
  assert.deepEqual(report, {
    keys: 2,
    appends: { ok: 4, failed: 1, unknown: 2 },
    reads: 5,
    problems: [],
    problemCount: 0,
  });
});

Deno.test("checkAppends() reports a lost acknowledged token", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10]), append("c2", "t2", [0, 10], "unknown")],
    reads: [],
    finals: finals([]), // The unknown t2 may be absent; the ok t1 may not.
  });
  assertProblems(
    report,
    1,
    /^Key "k": the final list \(0 tokens\) misses token "t1" of the append of "t1" by client "c1" \[invoked 0 ms, completed 10 ms, ok\]$/,
  );
});

Deno.test("checkAppends() reports a token duplicated in a read and in the final list", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10]), append("c2", "t2", [0, 10])],
    reads: [read("c3", [20, 21], ["t1", "t2", "t1"])],
    finals: finals(["t1", "t2", "t1"]),
  });
  assertProblems(
    report,
    2,
    /read by client "c3" .* holds token "t1" twice, at positions 0 and 2$/,
    /the final list \(3 tokens\) holds token "t1" twice, at positions 0 and 2/,
  );
});

Deno.test("checkAppends() reports an unknown token that appears twice", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10], "unknown")],
    reads: [],
    finals: finals(["t1", "t1"]),
  });
  assertProblems(report, 1, /holds token "t1" twice.*client "c1" .*unknown\]$/);
});

Deno.test("checkAppends() reports phantom tokens in reads and in the final list", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10])],
    reads: [read("c2", [20, 21], ["t1", "ghost"])],
    finals: finals(["t1", "ghost"]),
  });
  assertProblems(
    report,
    2,
    /read by client "c2" .* holds phantom token "ghost": nothing appended it/,
    /the final list \(2 tokens\) holds phantom token "ghost"/,
  );
});

Deno.test("checkAppends() reports a token read before its append was invoked", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [30, 40])],
    reads: [read("c2", [10, 20], ["t1"])],
    finals: finals(["t1"]),
  });
  assertProblems(report, 1, /holds token "t1" before it was appended: .*invoked 30 ms/);
});

Deno.test("checkAppends() reports the token of a failed append wherever it shows", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10], "failed")],
    reads: [read("c2", [20, 21], ["t1"])],
    finals: finals(["t1"]),
  });
  assertProblems(
    report,
    2,
    /read by client "c2" .* holds token "t1" of the append .* failed\]$/,
    /the final list \(1 tokens\) holds token "t1" of the append .* failed\]$/,
  );
});

Deno.test("checkAppends() reports a stale read missing a completed append", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10]), append("c1", "t2", [11, 20])],
    reads: [read("c2", [21, 22], ["t1"])],
    finals: finals(["t1", "t2"]),
  });
  assertProblems(
    report,
    1,
    /^Key "k": read by client "c2" \[invoked 21 ms, completed 22 ms, 1 tokens\] misses token "t2": the append of "t2" by client "c1" \[invoked 11 ms, completed 20 ms, ok\] completed before the read was invoked$/,
  );
});

Deno.test("checkAppends() reports a read that is not a prefix of the final list", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10]), append("c2", "t2", [0, 10])],
    reads: [read("c3", [20, 21], ["t2", "t1"]), read("c3", [22, 23], ["t1", "t2", "t1"])],
    finals: finals(["t1", "t2"]),
  });
  assertProblems(
    report,
    3, // The second read also holds "t1" twice.
    /is not a prefix of the final list: position 0 holds "t2" where the final list holds "t1"/,
    /is not a prefix of the final list: it holds 3 tokens, the final list 2/,
  );
});

Deno.test("checkAppends() reports a read shorter than one that completed before it", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 10], "unknown"), append("c1", "t2", [11, 12], "unknown")],
    reads: [read("c2", [20, 21], ["t1", "t2"]), read("c3", [22, 23], ["t1"])],
    finals: finals(["t1", "t2"]),
  });
  assertProblems(
    report,
    1,
    /read by client "c3" .*1 tokens\] is shorter than the earlier read by client "c2" .*2 tokens\]/,
  );
});

Deno.test("checkAppends() reports appends reordered against real time", () => {
  const appends = [
    append("c1", "a", [0, 1]),
    append("c2", "x", [5, 6]),
    append("c3", "b", [2, 3]),
  ];
  // a and b completed before x was invoked, so x placed first puts both out of order.
  const report = checkAppends({ appends, reads: [], finals: finals(["x", "a", "b"]) });
  assertProblems(
    report,
    2,
    /places token "x" before "a", but the append of "a" .* completed before the append of "x" .* was invoked$/,
    /places token "x" before "b"/,
  );
  // The real-time order, and a change of order among concurrent appends, are both fine.
  assertProblems(checkAppends({ appends, reads: [], finals: finals(["a", "b", "x"]) }), 0);
  const concurrent = [append("c1", "a", [0, 5]), append("c2", "b", [1, 6])];
  assertProblems(checkAppends({ appends: concurrent, reads: [], finals: finals(["b", "a"]) }), 0);
  // An unknown append may apply after its client gave up, so after a later append.
  const late = [append("c1", "u", [0, 1], "unknown"), append("c2", "y", [5, 6])];
  assertProblems(checkAppends({ appends: late, reads: [], finals: finals(["y", "u"]) }), 0);
});

Deno.test("checkAppends() reports a key appended to without a final read", () => {
  const report = checkAppends({
    appends: [append("c1", "t1", [0, 1], "ok", "lonely")],
    reads: [],
    finals: new Map(),
  });
  assertProblems(report, 1, /^Key "lonely" has no final read: 1 appends were made to it$/);
});

Deno.test("checkAppends() lists a bounded number of problems, taking each rule in turn", () => {
  const appends = Array.from({ length: 200 }, (_, i) => append("c1", `t${i}`, [i, i]));
  const report = checkAppends({ appends, reads: [], finals: finals(["ghost"]) });
  assert.equal(report.problemCount, 201);
  assert.equal(report.problems.length, PROBLEMS_LISTED_MAX);
  assert.ok(report.problems.some((problem) => problem.includes("phantom")));
});

Deno.test("checkAppends() throws on a token appended twice, a broken history", () => {
  assert.throws(
    () =>
      checkAppends({
        appends: [append("c1", "t1", [0, 1]), append("c2", "t1", [2, 3])],
        reads: [],
        finals: finals(["t1"]),
      }),
    AssertionError,
  );
});

// ---------------------------------------------------------------------------------------
// checkScans.

function write(
  client: string,
  key: string,
  [invoke, complete]: [number, number],
  outcome: Outcome = "ok",
  value = `v-${key}`,
): ScanWrite {
  return { client, key, value, invoke, complete, outcome };
}

function scan(
  client: string,
  [invoke, complete]: [number, number],
  keys: string[],
  prefix = "p/",
): ScanRead {
  return { client, prefix, invoke, complete, entries: keys.map((key) => [key, `v-${key}`]) };
}

function scanFinals(keys: string[], prefix = "p/"): Map<string, [string, string][]> {
  return new Map([[prefix, keys.map((key) => [key, `v-${key}`])]]);
}

const scanWrites = [
  write("w1", "p/a", [0, 10]),
  write("w2", "p/b", [5, 15]),
  write("w3", "p/c", [20, 30], "unknown"), // Applied.
  write("w1", "p/d", [20, 25], "failed"),
  write("w2", "p/e", [31, 40], "unknown"), // Never applied.
];

Deno.test("checkScans() accepts a clean concurrent history", () => {
  const report = checkScans({
    writes: scanWrites,
    scans: [
      scan("s1", [8, 12], ["p/b"]), // p/a had not completed.
      scan("s1", [16, 18], ["p/a", "p/b"]),
      scan("s2", [21, 35], ["p/a", "p/b", "p/c"]),
      scan("s1", [41, 45], ["p/a", "p/b", "p/c"]),
      scan("s2", [41, 45], ["p/b"], "p/b"),
    ],
    finals: scanFinals(["p/a", "p/b", "p/c"]),
  });
  assert.deepEqual(report, {
    prefixes: 2,
    writes: { ok: 2, failed: 1, unknown: 2 },
    scans: 5,
    problems: [],
    problemCount: 0,
  });
});

Deno.test("checkScans() reports a scan and a final scan missing an acknowledged key", () => {
  const report = checkScans({
    writes: scanWrites,
    scans: [scan("s1", [16, 18], ["p/a"])],
    finals: scanFinals(["p/a", "p/c"]),
  });
  assertProblems(
    report,
    2,
    /^Prefix "p\/": scan of prefix "p\/" by client "s1" \[invoked 16 ms, completed 18 ms, 1 entries\] misses key "p\/b": the write of "p\/b" = "v-p\/b" by client "w2" \[invoked 5 ms, completed 15 ms, ok\] completed before this scan was invoked$/,
    /^Prefix "p\/": the final scan misses key "p\/b": the write of "p\/b" .* completed$/,
  );
});

Deno.test("checkScans() reports a key that vanished after an earlier scan returned it", () => {
  const report = checkScans({
    writes: scanWrites,
    scans: [scan("s1", [21, 35], ["p/a", "p/b", "p/c"]), scan("s2", [36, 37], ["p/a", "p/b"])],
    finals: scanFinals(["p/a", "p/b"]),
  });
  assertProblems(
    report,
    2,
    /client "s2" .* misses key "p\/c": the scan of prefix "p\/" by client "s1" .* returned it before this scan was invoked$/,
    /the final scan misses key "p\/c": the scan .* returned it$/,
  );
});

Deno.test("checkScans() reports keys out of order and duplicated", () => {
  const report = checkScans({
    writes: scanWrites,
    scans: [
      scan("s1", [41, 42], ["p/b", "p/a", "p/c"]),
      scan("s1", [43, 44], ["p/a", "p/b", "p/c", "p/a"]),
    ],
    finals: scanFinals(["p/a", "p/b", "p/c"]),
  });
  assertProblems(
    report,
    2,
    /client "s1" \[invoked 41 ms.* returns key "p\/a" at position 1 after "p\/b": keys are not strictly ascending$/,
    /client "s1" \[invoked 43 ms.* returns key "p\/a" twice, at positions 0 and 3$/,
  );
});

Deno.test("checkScans() reports a wrong value, a key outside the prefix and a phantom key", () => {
  const entries: [string, string][] = [["p/a", "v-p/a"], ["p/b", "stale"], ["q/z", "v"]];
  const report = checkScans({
    writes: scanWrites,
    scans: [{ client: "s1", prefix: "p/", invoke: 41, complete: 42, entries }],
    finals: scanFinals(["p/a", "p/b"]),
  });
  assertProblems(
    report,
    3,
    /returns key "p\/b" with value "stale", but the write of "p\/b" = "v-p\/b"/,
    /returns key "q\/z", which lacks the prefix$/,
    /returns key "q\/z", which nothing wrote$/,
  );
});

Deno.test("checkScans() reports a failed write and a key read before its write", () => {
  const report = checkScans({
    writes: scanWrites,
    scans: [scan("s1", [16, 18], ["p/a", "p/b", "p/c", "p/d"])],
    finals: scanFinals(["p/a", "p/b", "p/c", "p/d"]),
  });
  assertProblems(
    report,
    3,
    /client "s1" .* returns key "p\/c" before it was written: the write of "p\/c" .*\[invoked 20 ms/,
    /scan of prefix "p\/" by client "s1" .* returns key "p\/d" of the write .* failed\]$/,
    /the final scan returns key "p\/d" of the write .* failed\]$/,
  );
});

Deno.test("checkScans() reports a written key that no final scan covers", () => {
  const report = checkScans({
    writes: [write("w1", "q/a", [0, 1])],
    scans: [],
    finals: scanFinals([]),
  });
  assertProblems(report, 1, /^Key "q\/a": no final scan covers it, yet the write of "q\/a"/);
});

// ---------------------------------------------------------------------------------------
// Randomized histories of a correct store.

// An operation of a random history: its interval, and the moment inside it where the
// simulated store applies it (or `null` if it never does).
interface Timed {
  readonly invoke: number;
  readonly complete: number;
  readonly at: number | null;
}

// Small integer times, so that ties between intervals are common.
function drawTimed(prng: Prng, applied: boolean): Timed {
  const invoke = Math.floor(prng() * 60);
  const complete = invoke + Math.floor(prng() * 12);
  const at = invoke + Math.floor(prng() * (complete - invoke + 1));
  return { invoke, complete, at: applied ? at : null };
}

function drawOutcome(prng: Prng): { outcome: Outcome; applied: boolean } {
  const roll = prng();
  if (roll < 0.6) return { outcome: "ok", applied: true };
  if (roll < 0.75) return { outcome: "failed", applied: false };
  return { outcome: "unknown", applied: prng() < 0.5 };
}

// Events in the order the store applies them; ties broken by creation order, which is one
// legal linearization of operations that take effect at the same moment.
function byMoment<T extends { timed: Timed }>(events: T[]): T[] {
  return events.map((event, order) => ({ event, order }))
    .filter(({ event }) => event.timed.at !== null)
    .sort((a, b) => a.event.timed.at! - b.event.timed.at! || a.order - b.order)
    .map(({ event }) => event);
}

function randomAppendHistory(seed: number): Parameters<typeof checkAppends>[0] {
  const prng = mulberry32(seed);
  const keys = ["k0", "k1", "k2"].slice(0, 1 + Math.floor(prng() * 3));
  type Event =
    | { kind: "append"; timed: Timed; op: Omit<AppendOp, "invoke" | "complete"> }
    | { kind: "read"; timed: Timed; client: string; key: string };
  const events: Event[] = [];
  const count = 5 + Math.floor(prng() * 40);
  for (let i = 0; i < count; i++) {
    const client = `c${Math.floor(prng() * 4)}`;
    const key = keys[Math.floor(prng() * keys.length)];
    if (prng() < 0.6) {
      const { outcome, applied } = drawOutcome(prng);
      events.push({
        kind: "append",
        timed: drawTimed(prng, applied),
        op: { client, key, token: `t${i}`, outcome },
      });
    } else {
      events.push({ kind: "read", timed: drawTimed(prng, true), client, key });
    }
  }
  const lists = new Map<string, string[]>(keys.map((key) => [key, []]));
  const reads: ListRead[] = [];
  for (const event of byMoment(events)) {
    const list = lists.get(event.kind === "append" ? event.op.key : event.key)!;
    if (event.kind === "append") list.push(event.op.token);
    else reads.push({ ...event.timed, client: event.client, key: event.key, tokens: [...list] });
  }
  const appends = events.flatMap((e) => e.kind === "append" ? [{ ...e.op, ...e.timed }] : []);
  return { appends, reads, finals: lists };
}

Deno.test("checkAppends() finds no problem in random histories of a correct store", () => {
  for (let seed = 1; seed <= 400; seed++) {
    const report = checkAppends(randomAppendHistory(seed));
    assert.equal(report.problemCount, 0, `seed ${seed}:\n${report.problems.join("\n")}`);
  }
});

Deno.test("checkAppends() catches an acknowledged token dropped from random histories", () => {
  let caught = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const history = randomAppendHistory(seed);
    const victim = history.appends.find((a) => a.outcome === "ok");
    if (victim === undefined) continue;
    const finals = new Map(history.finals);
    finals.set(victim.key, finals.get(victim.key)!.filter((token) => token !== victim.token));
    const report = checkAppends({ ...history, finals });
    assert.ok(report.problemCount > 0, `seed ${seed}: dropping "${victim.token}" went unseen`);
    caught++;
  }
  assert.ok(caught > 300, `only ${caught} seeds had an acknowledged append`);
});

function randomScanHistory(seed: number): Parameters<typeof checkScans>[0] {
  const prng = mulberry32(seed);
  type Event =
    | { kind: "write"; timed: Timed; op: Omit<ScanWrite, "invoke" | "complete"> }
    | { kind: "scan"; timed: Timed; client: string; prefix: string };
  const events: Event[] = [];
  const count = 5 + Math.floor(prng() * 40);
  for (let i = 0; i < count; i++) {
    const client = `c${Math.floor(prng() * 4)}`;
    if (prng() < 0.6) {
      const { outcome, applied } = drawOutcome(prng);
      const key = `p/${Math.floor(prng() * 3)}/${String(i).padStart(3, "0")}`;
      events.push({
        kind: "write",
        timed: drawTimed(prng, applied),
        op: { client, key, value: `v${i}`, outcome },
      });
    } else {
      const prefix = prng() < 0.7 ? "p/" : `p/${Math.floor(prng() * 3)}/`;
      events.push({ kind: "scan", timed: drawTimed(prng, true), client, prefix });
    }
  }
  const store = new Map<string, string>();
  const snapshot = (prefix: string): [string, string][] =>
    [...store].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1));
  const scans: ScanRead[] = [];
  for (const event of byMoment(events)) {
    if (event.kind === "write") store.set(event.op.key, event.op.value);
    else {scans.push({
        ...event.timed,
        client: event.client,
        prefix: event.prefix,
        entries: snapshot(event.prefix),
      });}
  }
  const writes = events.flatMap((e) => e.kind === "write" ? [{ ...e.op, ...e.timed }] : []);
  return { writes, scans, finals: new Map([["p/", snapshot("p/")]]) };
}

Deno.test("checkScans() finds no problem in random histories of a correct store", () => {
  for (let seed = 1; seed <= 400; seed++) {
    const report = checkScans(randomScanHistory(seed));
    assert.equal(report.problemCount, 0, `seed ${seed}:\n${report.problems.join("\n")}`);
  }
});
