// Tests of the leader completeness check: an entry committed in term t is promised to the leaders
// of terms after t (paper §5.4), not to a leader of an older term that wins its election late.
import assert from "node:assert/strict";
import { createEntry, type LogIndex, MemoryStorage, type PeerId, type Term } from "@tinykv/raft";
import { InvariantViolation, SafetyChecker } from "./safety_checker.ts";

const CONF = { voters: [1, 2, 3] as PeerId[], learners: [], epoch: 0 as LogIndex };

/** A log holding one entry per term in `terms`, from index 1. */
function logOf(terms: readonly number[]): MemoryStorage {
  const log = new MemoryStorage(CONF);
  log.append(terms.map((term, i) =>
    createEntry({
      term: term as Term,
      index: (i + 1) as LogIndex,
      data: new TextEncoder().encode(`t${term}`),
    })
  ));
  return log;
}

function leaderCompletenessFails(run: () => void): boolean {
  try {
    run();
    return false;
  } catch (error) {
    if (error instanceof InvariantViolation && error.check === "leaderCompleteness") return true;
    throw error;
  }
}

Deno.test("SafetyChecker: a leader of term 1 elected after term 2 committed need not hold it", () => {
  // Seed 778041: n3 and n1 voted in term 1 for n1, which paused before counting the votes; n3 then
  // led term 2 and committed its entry 1 with n2. n1 resumed, counted its term-1 votes and led
  // term 1 with its own entry 1 of term 1.
  const checker = new SafetyChecker();
  checker.onCommit(3 as PeerId, logOf([2]), 1, 1, 2 as Term);
  checker.onCommit(2 as PeerId, logOf([2]), 1, 1, 2 as Term);
  checker.onLeader(1 as PeerId, 1 as Term);
  checker.checkLeaderLog(1 as PeerId, 1 as Term, logOf([1]), checker.committedMax);
});

Deno.test("SafetyChecker: a leader of a later term must hold what an earlier term committed", () => {
  const checker = new SafetyChecker();
  // Entry 2 of term 2, committed by the leader of term 2 (a follower saw it first in term 3).
  checker.onCommit(2 as PeerId, logOf([1, 2]), 1, 2, 3 as Term);
  checker.onCommit(1 as PeerId, logOf([1, 2]), 1, 2, 2 as Term);
  // A leader of term 3 with another entry 2, or without one, breaks leader completeness.
  assert.ok(leaderCompletenessFails(() => {
    checker.checkLeaderLog(3 as PeerId, 3 as Term, logOf([1, 1, 3]), checker.committedMax);
  }));
  assert.ok(leaderCompletenessFails(() => {
    checker.checkLeaderLog(3 as PeerId, 3 as Term, logOf([1]), checker.committedMax);
  }));
  // A leader of term 3 that holds it passes.
  checker.checkLeaderLog(3 as PeerId, 3 as Term, logOf([1, 2, 3]), checker.committedMax);
});
