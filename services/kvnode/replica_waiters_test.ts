// Checks the bookkeeping of a replica's waiting requests: reads confirmed by a ReadIndex round are
// served in index order once applied, dropped rounds and refusals answer at once, failAll answers
// every read; admin calls waiting for a conf change are answered applied, lost (another term's
// entry at their index), timed out at their deadline, or timed out when the replica goes.
import assert from "node:assert/strict";
import type { LogIndex, ReadState, Term } from "@tinykv/raft";
import type { Outcome } from "./application.ts";
import { AppliedWaiters, ReadRounds, RoundIds } from "./replica_waiters.ts";

type Answer = Outcome<string>;

function waiter(name: string, answers: string[]) {
  return {
    serve: (): Answer => ({ kind: "ok", result: name }),
    resolve: (o: Answer) => answers.push(o.kind === "ok" ? o.result : `${name}:${o.kind}`),
  };
}

/** A stand-in for the core's readIndex(): answers `kind` and records the round ids. */
function node(kind: "ok" | "notLeader" | "overloaded", ids: number[]) {
  return {
    readIndex: (id: number) => {
      ids.push(id);
      return kind === "overloaded" ? { kind, pendingReads: 8 } : { kind };
    },
    // deno-lint-ignore no-explicit-any
  } as any;
}

const NOT_LEADER: Answer = {
  kind: "notLeader",
  message: "not the leader",
  leaderNode: "",
  leaderAddress: "",
  confEpoch: 0,
};
const confirmed = (requestId: number, index: number): ReadState => ({
  kind: "ready",
  requestId,
  index: index as LogIndex,
});

Deno.test("ReadRounds serves confirmed reads in index order once their index is applied", () => {
  const reads = new ReadRounds<string>();
  const answers: string[] = [];
  const ids: number[] = [];
  reads.queue(waiter("a", answers));
  reads.queue(waiter("b", answers));
  assert.equal(reads.queued, true);
  reads.sendRound(node("ok", ids), 1, () => NOT_LEADER, 1);
  assert.equal(reads.queued, false);
  reads.queue(waiter("c", answers));
  reads.sendRound(node("ok", ids), 2, () => NOT_LEADER, 1);
  assert.deepEqual(ids, [1, 2]);
  reads.take([confirmed(1, 5), confirmed(2, 7), confirmed(99, 1)], () => NOT_LEADER);
  const serve = (w: { serve: () => Answer; resolve: (o: Answer) => void }) => w.resolve(w.serve());
  reads.serveApplied(4, serve);
  assert.deepEqual(answers, []);
  reads.serveApplied(6, serve);
  assert.deepEqual(answers, ["a", "b"]);
  reads.serveApplied(7, serve);
  assert.deepEqual(answers, ["a", "b", "c"]);
});

Deno.test("ReadRounds answers refused and dropped rounds at once, and failAll() every read", () => {
  const reads = new ReadRounds<string>();
  const answers: string[] = [];
  reads.queue(waiter("a", answers));
  reads.sendRound(node("notLeader", []), 1, () => NOT_LEADER, 3);
  reads.queue(waiter("b", answers));
  reads.sendRound(node("overloaded", []), 2, () => NOT_LEADER, 3);
  reads.queue(waiter("c", answers));
  reads.sendRound(node("ok", []), 3, () => NOT_LEADER, 3);
  reads.take([{ kind: "dropped", requestId: 3 }], () => NOT_LEADER);
  assert.deepEqual(answers, ["a:notLeader", "b:resourceExhausted", "c:notLeader"]);
  reads.queue(waiter("d", answers));
  reads.queue(waiter("e", answers));
  reads.sendRound(node("ok", []), 4, () => NOT_LEADER, 3);
  reads.take([confirmed(4, 10)], () => NOT_LEADER);
  reads.queue(waiter("f", answers));
  reads.failAll({ kind: "unavailable", message: "gone" });
  assert.deepEqual(answers.slice(3), ["d:unavailable", "e:unavailable", "f:unavailable"]);
});

Deno.test("RoundIds counts from 1 and never hands out 0", () => {
  const ids = new RoundIds();
  assert.deepEqual([ids.next(), ids.next(), ids.next()], [1, 2, 3]);
});

Deno.test("AppliedWaiters answers applied, lost, timeout at the deadline, and timeout on failAll", async () => {
  const waiters = new AppliedWaiters();
  const applied = waiters.add(5 as LogIndex, 2 as Term, 1_000);
  const lost = waiters.add(6 as LogIndex, 2 as Term, 1_000);
  const expires = waiters.add(20 as LogIndex, 2 as Term, 500);
  const failed = waiters.add(21 as LogIndex, 2 as Term, 1_000);
  const terms: Record<number, Term> = { 5: 2 as Term, 6: 3 as Term };
  waiters.wake(10, (i) => terms[i], 4);
  assert.deepEqual(await applied, { kind: "applied", confEpoch: 4 });
  assert.deepEqual(await lost, { kind: "lost" });
  assert.equal(waiters.size, 2);
  waiters.expire(499);
  assert.equal(waiters.size, 2);
  waiters.expire(500);
  assert.deepEqual(await expires, { kind: "timeout" });
  waiters.failAll();
  assert.deepEqual(await failed, { kind: "timeout" });
  assert.equal(waiters.size, 0);
});

Deno.test("AppliedWaiters answers timeout when the entry's term is gone (a snapshot passed it)", async () => {
  const waiters = new AppliedWaiters();
  const wait = waiters.add(3 as LogIndex, 1 as Term, 1_000);
  waiters.wake(9, () => undefined, 2);
  assert.deepEqual(await wait, { kind: "timeout" });
});
