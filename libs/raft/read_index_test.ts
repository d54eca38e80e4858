/**
 * Linearizable reads: ReadIndex rounds (thesis §6.4) shared by concurrent
 * reads, confirmation by a heartbeat quorum, waiting for a commit in the
 * leader's term, dropping reads on leadership loss, and opt-in lease reads.
 */

import assert from "node:assert/strict";
import { Cluster } from "./testing.ts";
import { MemoryStorage } from "./storage.ts";
import { RawNode } from "./raw_node.ts";
import { mulberry32 } from "./prng.ts";
import { AssertionError } from "./_assert.ts";
import type { LogIndex, PeerId, Term } from "./types.ts";

function cluster(seed: number, readMode: "safe" | "leaseBased" = "safe"): Cluster {
  return new Cluster({ voters: 3, seed, node: { electionTicks: 10, readMode } });
}

Deno.test("readIndex(): concurrent reads share one heartbeat round", () => {
  const c = cluster(201);
  const write = c.one("w", 3)!;
  const leader = c.leader()!;
  c.sent.clear();
  for (let k = 0; k < 100; k++) {
    assert.deepEqual(c.raw(leader).readIndex(k), { kind: "ok", leased: false });
  }
  c.stabilize();
  assert.equal(c.sentCount("heartbeat"), 2, "one round for all reads");
  const states = c.node(leader).readStates;
  assert.equal(states.length, 100);
  for (const [k, s] of states.entries()) {
    assert.deepEqual(s, { kind: "ready", requestId: k, index: write });
  }
});

Deno.test("readIndex(): a leader cut off from the quorum never serves, then drops the reads", () => {
  const c = cluster(202);
  c.one("w", 3);
  const leader = c.leader()!;
  c.isolate(leader);
  c.raw(leader).readIndex(1);
  c.tick(5);
  assert.deepEqual(c.node(leader).readStates, []);
  // Meanwhile the majority elects a leader and commits a write the old one cannot see.
  const others = c.ids.filter((id) => id !== leader);
  c.tickUntil(() => others.some((id) => c.raw(id).status().role === "leader"), 100);
  c.tick(20); // check-quorum deposes the old leader
  assert.deepEqual(c.node(leader).readStates, [{ kind: "dropped", requestId: 1 }]);
});

Deno.test("readIndex(): a new leader answers only after committing an entry of its term", () => {
  const c = cluster(203);
  c.one("w", 3);
  const leader1 = c.leader()!;
  c.filter = (m) => m.type !== "appendResponse";
  c.isolate(leader1);
  const others = c.ids.filter((id) => id !== leader1);
  const newLeader = () => others.find((id) => c.raw(id).status().role === "leader");
  assert.ok(c.tickUntil(() => newLeader() !== undefined, 100));
  const leader2 = newLeader()!;
  c.raw(leader2).readIndex(7);
  c.tick(2);
  assert.deepEqual(c.node(leader2).readStates, []);
  c.filter = undefined;
  c.tick(2);
  const [state] = c.node(leader2).readStates;
  assert.equal(state.kind, "ready");
  const status = c.raw(leader2).status();
  assert.ok(state.kind === "ready" && state.index >= status.lastIndex - 1);
});

Deno.test("readIndex(): followers answer notLeader with the leader they know", () => {
  const c = cluster(204);
  c.one("w", 3);
  const leader = c.leader()!;
  const follower = c.ids.find((id) => id !== leader)!;
  assert.deepEqual(c.raw(follower).readIndex(1), { kind: "notLeader", leader });
});

Deno.test("readIndex(): a read issued after a write sees an index at or past the write", () => {
  const c = cluster(205);
  for (let k = 0; k < 20; k++) {
    const index = c.one(`w${k}`, 2)!;
    const leader = c.leader()!;
    c.raw(leader).readIndex(k);
    c.stabilize();
    const state = c.node(leader).readStates.at(-1)!;
    assert.ok(state.kind === "ready" && state.index >= index);
  }
});

Deno.test("lease-based reads answer without a heartbeat round and require check-quorum", () => {
  const c = cluster(206, "leaseBased");
  const index = c.one("w", 3)!;
  const leader = c.leader()!;
  c.sent.clear();
  assert.deepEqual(c.raw(leader).readIndex(1), { kind: "ok", leased: true });
  c.stabilize();
  assert.equal(c.sentCount("heartbeat"), 0);
  assert.deepEqual(c.node(leader).readStates, [{ kind: "ready", requestId: 1, index }]);
  const id = 1 as PeerId;
  assert.throws(
    () =>
      new RawNode({
        id,
        storage: new MemoryStorage({ voters: [id] }),
        prng: mulberry32(1),
        readMode: "leaseBased",
        checkQuorum: false,
      }),
    AssertionError,
  );
});

Deno.test("a lease ends electionTicks - 2 ticks after its round was sent: one tick for rounding, one for drift", () => {
  const c = cluster(211, "leaseBased");
  c.one("w", 3);
  const leader = c.leader()!;
  c.tick(1); // a round, acknowledged by both followers
  c.isolate(leader);
  c.tick(7);
  assert.deepEqual(c.raw(leader).readIndex(1), { kind: "ok", leased: true });
  c.tick(1);
  assert.deepEqual(c.raw(leader).readIndex(2), { kind: "ok", leased: false });
});

Deno.test("in lease mode a follower keeps its promise through a term it learnt without a leader", () => {
  // A rejected pre-vote answer carries the responder's higher term: the follower takes the term
  // and forgets its leader, but the leader's lease still counts on it not to vote.
  const c = cluster(212, "leaseBased");
  c.one("w", 3);
  const leader = c.leader()!;
  c.tick(1);
  const [follower, other] = c.ids.filter((id) => id !== leader);
  const node = c.raw(follower);
  const { term, lastIndex } = node.status();
  node.step({
    type: "requestPreVoteResponse",
    from: other,
    to: follower,
    term: (term + 1) as Term,
    reject: true,
  });
  assert.equal(node.status().term, term + 1);
  assert.equal(node.status().leader, undefined);
  assert.ok(node.status().promiseTicks > 0, "the promise went with the leader");
  const ask = (voteTerm: number) =>
    node.step({
      type: "requestVote",
      from: other,
      to: follower,
      term: voteTerm as Term,
      lastLogIndex: (lastIndex + 10) as LogIndex,
      lastLogTerm: (term + 1) as Term,
      transfer: false,
    });
  ask(term + 1); // this term: no leader, no vote cast
  ask(term + 2);
  const answers = node.ready().messages.filter((m) => m.type === "requestVoteResponse");
  assert.ok(
    answers.length > 0 && answers.every((m) => m.type === "requestVoteResponse" && m.reject),
  );
  // Campaigning would count its own vote: refused too, until the promise runs out.
  node.campaign();
  assert.notEqual(node.status().role, "candidate");
});

Deno.test("a lease does not survive quiescence, not even through late answers to its last round", () => {
  // With a heartbeat every tick, the tick that quiesces first sends a round, then the quiet
  // heartbeat; the followers' answers to that round arrive after the leader dropped its lease.
  // The leader's ticks stop while it is quiet, so a lease those answers restored would look
  // fresh however long the quiet spell lasted.
  const c = new Cluster({
    voters: 3,
    seed: 210,
    node: { electionTicks: 10, heartbeatTicks: 1, quiesceTicks: 3, readMode: "leaseBased" },
  });
  c.one("w", 3);
  const leader = c.leader()!;
  assert.ok(c.tickUntil(() => c.raw(leader).quiesced, 20), "the group quiesced");
  c.tick(50);
  assert.deepEqual(c.raw(leader).readIndex(1), { kind: "ok", leased: false });
  c.stabilize();
  assert.equal(c.node(leader).readStates.length, 1, "served after a heartbeat round");
  // Awake again, the answers to that round make a new lease.
  assert.deepEqual(c.raw(leader).readIndex(2), { kind: "ok", leased: true });
});

Deno.test("a single-voter group serves reads at once", () => {
  const id = 1 as PeerId;
  const storage = new MemoryStorage({ voters: [id] });
  const node = new RawNode({ id, storage, prng: mulberry32(3) });
  node.campaign();
  node.readIndex(9);
  const ready = node.ready();
  assert.deepEqual(ready.readStates, [{ kind: "ready", requestId: 9, index: 1 }]);
});

Deno.test("readIndex() refuses reads beyond pendingReadsMax until a round completes", () => {
  const c = new Cluster({ voters: 3, seed: 207, node: { electionTicks: 10, pendingReadsMax: 2 } });
  c.one("w", 3);
  const leader = c.raw(c.leader()!);
  assert.deepEqual(leader.readIndex(1), { kind: "ok", leased: false });
  assert.deepEqual(leader.readIndex(2), { kind: "ok", leased: false });
  assert.deepEqual(leader.readIndex(3), { kind: "overloaded", pendingReads: 2 });
  c.stabilize();
  assert.deepEqual(leader.readIndex(3), { kind: "ok", leased: false });
});

Deno.test("lease reads fall back to a heartbeat round once the lease lapses or a transfer began", () => {
  const c = cluster(208, "leaseBased");
  c.one("w", 3);
  const leader = c.leader()!;
  c.isolate(leader);
  c.tick(9); // acknowledgements are now 9 ticks old: no lease with electionTicks 10
  if (c.raw(leader).status().role === "leader") {
    c.raw(leader).readIndex(1);
    c.stabilize();
    assert.deepEqual(c.node(leader).readStates, [], "a stale lease served a read");
  }
  const d = cluster(209, "leaseBased");
  d.one("w", 3);
  const leader2 = d.leader()!;
  const target = d.ids.find((id) => id !== leader2)!;
  d.filter = (m) => m.type !== "timeoutNow" && m.type !== "append";
  d.raw(leader2).transferLeader(target);
  d.stabilize();
  assert.deepEqual(d.raw(leader2).readIndex(2), { kind: "ok", leased: false });
  assert.deepEqual(d.node(leader2).readStates, []);
  d.stabilize();
  assert.equal(d.node(leader2).readStates.length, 1, "served after a heartbeat round");
});
