/**
 * Leader transfer (thesis §3.10): the leader catches the target up, sends
 * TimeoutNow, and refuses proposals meanwhile; an unfinished transfer is
 * abandoned after an election timeout.
 */

import assert from "node:assert/strict";
import { bytes, Cluster } from "./testing.ts";
import { n } from "./_test_helpers.ts";

function cluster(seed: number): Cluster {
  return new Cluster({ voters: 3, seed, node: { electionTicks: 10 } });
}

Deno.test("transferLeader() to an up-to-date follower hands over in one round", () => {
  const c = cluster(301);
  c.one("x", 3);
  const leader = c.leader()!;
  const term = c.raw(leader).status().term;
  const target = c.ids.find((id) => id !== leader)!;
  assert.deepEqual(c.raw(leader).transferLeader(target), { kind: "ok" });
  c.stabilize();
  assert.equal(c.leader(), target);
  assert.equal(c.raw(target).status().term, term + 1);
  assert.equal(c.raw(leader).status().role, "follower");
  assert.ok(c.one("after", 3) !== undefined);
});

Deno.test("transferLeader() to a lagging follower catches it up first", () => {
  const c = cluster(302);
  c.one("x", 3);
  const leader = c.leader()!;
  const target = c.ids.find((id) => id !== leader)!;
  c.isolate(target);
  for (let k = 0; k < 20; k++) c.one(`y${k}`, 2);
  c.heal();
  c.sent.clear();
  c.raw(leader).transferLeader(target);
  c.stabilize();
  assert.equal(c.sentCount("timeoutNow"), 1);
  assert.equal(c.leader(), target);
  assert.equal(c.raw(target).status().lastIndex, c.raw(leader).status().lastIndex);
});

Deno.test("proposals are refused during a transfer, which is abandoned after a timeout", () => {
  const c = cluster(303);
  c.one("x", 3);
  const leader = c.leader()!;
  const target = c.ids.find((id) => id !== leader)!;
  c.isolate(target);
  c.raw(leader).transferLeader(target);
  assert.deepEqual(c.raw(leader).propose(bytes("p")), { kind: "transferring", transferee: target });
  c.tick(10);
  assert.equal(c.raw(leader).status().transferee, undefined);
  assert.equal(c.raw(leader).propose(bytes("p")).kind, "ok");
  assert.equal(c.leader(), leader);
});

Deno.test("transferLeader() refuses non-voters and answers notLeader on followers", () => {
  const c = cluster(304);
  c.one("x", 3);
  const leader = c.leader()!;
  const follower = c.ids.find((id) => id !== leader)!;
  assert.equal(c.raw(leader).transferLeader(n(9)).kind, "invalid");
  assert.deepEqual(c.raw(leader).transferLeader(leader), { kind: "ok" });
  assert.deepEqual(c.raw(follower).transferLeader(follower), { kind: "notLeader", leader });
});
