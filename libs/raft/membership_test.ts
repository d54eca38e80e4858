/**
 * Single-server membership changes on the test cluster: learners, promotion,
 * removal (including of the leader), one change at a time, a change pending
 * across a leader change, and the conf epoch.
 */

import assert from "node:assert/strict";
import { bytes, Cluster } from "./testing.ts";
import { forceLeader, i, n, newRaft } from "./_test_helpers.ts";
import { createEntry, encodeConfChange, type PeerId, type Term } from "./types.ts";

function cluster(voters: number, seed: number, snapshotEveryEntries?: number): Cluster {
  return new Cluster({ voters, seed, node: { electionTicks: 10 }, snapshotEveryEntries });
}

Deno.test("a learner receives the log, does not vote, and can be promoted", () => {
  const c = cluster(3, 101);
  c.one("before", 3);
  c.addNode(4);
  const epoch = c.changeMembership({ type: "addLearner", nodeId: n(4) });
  assert.ok(c.one("after", 4) !== undefined, "the learner applies entries");
  const status = c.raw(c.leader()!).status();
  assert.deepEqual(status.confState, { voters: [1, 2, 3], learners: [4], epoch });
  assert.deepEqual(c.raw(4).status().confState, status.confState);
  // The learner is not part of the quorum: two voters down means no commit.
  const leader = c.leader()!;
  const down = c.ids.filter((id) => id !== leader && id !== 4);
  c.partition(down);
  const index = c.raw(leader).propose(bytes("no quorum"));
  assert.equal(index.kind, "ok");
  c.tick(5);
  assert.equal(c.nCommitted(index.kind === "ok" ? index.index : 0).count, 0);
  c.heal();
  // Isolated, a learner never campaigns.
  c.isolate(4);
  c.sent.clear();
  c.tick(50);
  assert.equal(c.raw(4).status().role, "follower");
  assert.equal(c.raw(4).status().term, c.raw(c.leader()!).status().term);
  c.heal();
  // Promotion is addNode of the learner; afterwards it counts for the quorum.
  const promoted = c.changeMembership({ type: "addNode", nodeId: n(4) });
  c.tick(2);
  assert.deepEqual(c.raw(4).status().confState, {
    voters: [1, 2, 3, 4],
    learners: [],
    epoch: promoted,
  });
  assert.ok(promoted > epoch);
  c.isolate(c.leader()!);
  const leader2 = c.waitForLeader();
  assert.ok(c.one("three of four", 3) !== undefined);
  assert.ok([1, 2, 3, 4].includes(leader2));
});

Deno.test("a new node far behind a compacted log catches up through a snapshot", () => {
  const c = cluster(3, 102, 5);
  for (let k = 0; k < 30; k++) c.one(`e${k}`, 3);
  c.addNode(4);
  c.changeMembership({ type: "addLearner", nodeId: n(4) });
  c.tick(5);
  assert.ok(c.sentCount("snapshot") > 0);
  c.changeMembership({ type: "addNode", nodeId: n(4) });
  const index = c.one("caught up", 4)!;
  assert.equal(c.node(4).applied, index);
  assert.equal(c.node(4).storage.initialState().confState.voters.length, 4);
});

Deno.test("removing a follower shrinks the quorum; the removed node stays quiet", () => {
  const c = cluster(3, 103);
  c.one("x", 3);
  const leader = c.leader()!;
  const victim = c.ids.find((id) => id !== leader)!;
  c.changeMembership({ type: "removeNode", nodeId: victim });
  c.tick(2);
  // One of the two remaining voters may now be down: a majority of 2 is 2, so
  // instead check commits with the victim gone, and that it never campaigns.
  c.isolate(victim);
  assert.ok(c.one("without victim", 2) !== undefined);
  const term = c.raw(leader).status().term;
  c.tick(60);
  assert.equal(c.raw(victim).status().role, "follower");
  c.heal();
  c.tick(5);
  assert.equal(c.raw(c.leader()!).status().term, term, "the removed node disturbed the group");
});

Deno.test("removing the leader: it steps down once the change commits, the rest elect", () => {
  const c = cluster(3, 104);
  c.one("x", 3);
  const leader = c.leader()!;
  const result = c.raw(leader).proposeConfChange({ type: "removeNode", nodeId: leader });
  assert.equal(result.kind, "ok");
  c.tickUntil(() => c.raw(leader).status().role !== "leader", 20);
  assert.equal(c.raw(leader).status().role, "follower");
  assert.ok(c.node(leader).applied >= (result.kind === "ok" ? result.index : 0));
  const next = c.waitForLeader();
  assert.notEqual(next, leader);
  assert.deepEqual(c.raw(next).status().confState.voters, c.ids.filter((id) => id !== leader));
  assert.ok(c.one("after removal", 2) !== undefined);
  c.tick(60);
  assert.notEqual(c.raw(leader).status().role, "leader");
});

Deno.test("only one conf change may be pending; invalid changes are refused", () => {
  const c = cluster(3, 105);
  c.one("x", 3);
  c.addNode(4);
  c.addNode(5);
  const leader = c.leader()!;
  const raw = c.raw(leader);
  assert.equal(raw.proposeConfChange({ type: "addLearner", nodeId: n(4) }).kind, "ok");
  const second = raw.proposeConfChange({ type: "addLearner", nodeId: n(5) });
  assert.equal(second.kind, "confChangePending");
  c.tick(3);
  assert.equal(raw.proposeConfChange({ type: "addLearner", nodeId: n(5) }).kind, "ok");
  c.tick(3);
  const invalid = [
    { type: "addNode", nodeId: n(1) },
    { type: "addLearner", nodeId: n(2) },
    { type: "addLearner", nodeId: n(4) },
    { type: "removeNode", nodeId: n(9) },
  ] as const;
  for (const change of invalid) {
    assert.equal(raw.proposeConfChange(change).kind, "invalid", JSON.stringify(change));
  }
  const follower = c.ids.find((id) => id !== leader)!;
  assert.equal(
    c.raw(follower).proposeConfChange({ type: "addNode", nodeId: n(4) }).kind,
    "notLeader",
  );
});

Deno.test("a conf change pending during a leader change blocks the new leader's changes", () => {
  const c = cluster(3, 106);
  c.one("x", 3);
  c.addNode(4);
  const leader1 = c.leader()!;
  // Replicate the change but keep the leader from learning that it is committed.
  c.filter = (m) => !(m.type === "appendResponse" && m.to === leader1);
  const change = c.raw(leader1).proposeConfChange({ type: "addLearner", nodeId: n(4) });
  assert.equal(change.kind, "ok");
  c.stabilize();
  // Until told otherwise, no leader hears that its entries are replicated.
  c.filter = (m) => m.type !== "appendResponse";
  c.isolate(leader1);
  const others = c.ids.filter((id) => id !== leader1 && id !== 4);
  const newLeader = () => others.find((id) => c.raw(id).status().role === "leader");
  assert.ok(c.tickUntil(() => newLeader() !== undefined, 100));
  const leader2 = newLeader()!;
  // Before it applied everything up to its election, the new leader refuses changes.
  const pending = c.raw(leader2).proposeConfChange({ type: "addNode", nodeId: n(4) });
  assert.equal(pending.kind, "confChangePending");
  c.filter = undefined;
  c.tick(3);
  // The old leader's change committed under the new leader, then a new change works.
  assert.deepEqual(c.raw(leader2).status().confState.learners, [4]);
  assert.equal(c.raw(leader2).proposeConfChange({ type: "addNode", nodeId: n(4) }).kind, "ok");
  c.heal();
  c.tick(5);
  for (const id of c.ids) assert.deepEqual(c.raw(id).status().confState.voters, [1, 2, 3, 4]);
});

Deno.test("applyConfChange() takes effect at once and sets the conf epoch to the entry index", () => {
  const leader = newRaft(1, [1, 2, 3]);
  forceLeader(leader);
  const add = createEntry({
    term: 1 as Term,
    index: i(2),
    type: "confChange",
    data: encodeConfChange({ type: "addLearner", nodeId: 4 as PeerId }),
  });
  assert.deepEqual(leader.applyConfChange(add), { voters: [1, 2, 3], learners: [4], epoch: 2 });
  assert.equal(leader.progress.get(n(4))?.state, "probe");
  const promote = createEntry({
    term: 1 as Term,
    index: i(3),
    type: "confChange",
    data: encodeConfChange({ type: "addNode", nodeId: 4 as PeerId }),
  });
  assert.deepEqual(leader.applyConfChange(promote), {
    voters: [1, 2, 3, 4],
    learners: [],
    epoch: 3,
  });
  const removeSelf = createEntry({
    term: 1 as Term,
    index: i(4),
    type: "confChange",
    data: encodeConfChange({ type: "removeNode", nodeId: 1 as PeerId }),
  });
  leader.applyConfChange(removeSelf);
  assert.equal(leader.role, "follower");
  assert.equal(leader.promotable(), false);
});
