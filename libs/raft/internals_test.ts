/**
 * Table and property tests of the small internal pieces: quorum arithmetic
 * (checked against a naive definition with fast-check), the inflight window,
 * progress transitions, the log's conflict search, and the PRNG.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { committedIndex, majority, voteResult } from "./_quorum.ts";
import { Inflights, Progress } from "./_progress.ts";
import { RaftLog } from "./_raft_log.ts";
import { MemoryStorage } from "./storage.ts";
import { entriesWithTerms, i, n, t } from "./_test_helpers.ts";
import { mulberry32 } from "./prng.ts";
import type { LogIndex, PeerId } from "./types.ts";

Deno.test("committedIndex() is the largest index a majority has reached (property)", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(1000), { minLength: 1, maxLength: 9 }), (matches) => {
      const voters = new Set(matches.map((_, k) => (k + 1) as PeerId));
      const got = committedIndex(voters, (id) => matches[id - 1] as LogIndex);
      // Naive: the largest candidate value that at least a majority matches or exceeds.
      let want = 0;
      for (const candidate of matches) {
        const count = matches.filter((m) => m >= candidate).length;
        if (count >= majority(matches.length) && candidate > want) want = candidate;
      }
      assert.equal(got, want);
    }),
  );
});

Deno.test("voteResult() decides once a majority is certain", () => {
  const voters = new Set([1, 2, 3, 4, 5].map(n));
  const cases: [Record<number, boolean>, string][] = [
    [{}, "pending"],
    [{ 1: true, 2: true }, "pending"],
    [{ 1: true, 2: true, 3: true }, "won"],
    [{ 1: false, 2: false }, "pending"],
    [{ 1: false, 2: false, 3: false }, "lost"],
    [{ 1: true, 2: true, 3: false, 4: false }, "pending"],
    [{ 1: true, 2: true, 3: false, 4: false, 5: true }, "won"],
    [{ 9: true, 8: true, 7: true }, "pending"],
  ];
  for (const [votes, want] of cases) {
    const map = new Map(Object.entries(votes).map(([k, v]) => [n(Number(k)), v]));
    assert.equal(voteResult(voters, map), want, JSON.stringify(votes));
  }
});

Deno.test("Inflights bounds the window and frees acknowledged messages", () => {
  const inflights = new Inflights(3);
  inflights.add(i(2));
  inflights.add(i(5));
  inflights.add(i(9));
  assert.ok(inflights.full());
  inflights.freeLE(i(5));
  assert.equal(inflights.count, 1);
  inflights.freeFirst();
  assert.equal(inflights.count, 0);
});

Deno.test("Progress.maybeDecrTo() ignores stale rejections and uses the hint", () => {
  const cases = [
    // state, match, next, rejected, hint → accepted, next
    { state: "replicate", match: 5, next: 10, rejected: 5, hint: 0, ok: false, next2: 10 },
    { state: "replicate", match: 5, next: 10, rejected: 8, hint: 0, ok: true, next2: 6 },
    { state: "probe", match: 0, next: 10, rejected: 5, hint: 0, ok: false, next2: 10 },
    { state: "probe", match: 0, next: 10, rejected: 9, hint: 4, ok: true, next2: 5 },
    { state: "probe", match: 3, next: 10, rejected: 9, hint: 1, ok: true, next2: 4 },
  ] as const;
  for (const c of cases) {
    const pr = new Progress(i(c.next), 10);
    pr.match = i(c.match);
    if (c.state === "replicate") {
      pr.becomeReplicate();
      pr.next = i(c.next);
    }
    assert.equal(pr.maybeDecrTo(i(c.rejected), i(c.hint)), c.ok, JSON.stringify(c));
    assert.equal(pr.next, c.next2, JSON.stringify(c));
  }
});

Deno.test("RaftLog.findConflictByTerm() returns the last index with a term at most the given", () => {
  const storage = new MemoryStorage({ voters: [n(1)] });
  storage.append(entriesWithTerms([1, 1, 3, 3, 5, 5]));
  const log = new RaftLog(storage, i(0));
  const cases: [number, number, number][] = [
    [6, 5, 6],
    [6, 4, 4],
    [6, 2, 2],
    [6, 0, 0],
    [10, 3, 4],
    [3, 3, 3],
  ];
  for (const [index, term, want] of cases) {
    assert.equal(log.findConflictByTerm(i(index), t(term)), want, `${index}/${term}`);
  }
  assert.ok(log.isUpToDate(i(6), t(5)));
  assert.ok(log.isUpToDate(i(1), t(6)));
  assert.ok(!log.isUpToDate(i(5), t(5)));
  assert.ok(!log.isUpToDate(i(9), t(4)));
});

Deno.test("mulberry32() is deterministic and roughly uniform", () => {
  const a = mulberry32(5);
  const b = mulberry32(5);
  const buckets = new Array(10).fill(0);
  for (let k = 0; k < 10_000; k++) {
    const x = a();
    assert.equal(x, b());
    assert.ok(x >= 0 && x < 1);
    buckets[Math.floor(x * 10)]++;
  }
  for (const count of buckets) assert.ok(count > 850 && count < 1150, `${buckets}`);
});
