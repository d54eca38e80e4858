// Checks the election recipe against a real ZooKeeper: the first candidate leads, the others
// follow and name it; when the leader leaves (stop, or its session closes) exactly its successor
// takes over.
import assert from "node:assert/strict";
import { connectZooKeeper, type ZooKeeperClient } from "@tinykv/zk";
import { randomTestRoot, removeTestRoot, testZooKeeper, waitFor } from "@tinykv/zk/testing";
import { type ElectionState, LeaderElection, sortCandidates } from "./election.ts";

Deno.test("sortCandidates() orders by sequence number and skips foreign children", () => {
  assert.deepEqual(
    sortCandidates(["n-0000000010", "x", "n-0000000002", "n-0000000100"]),
    ["n-0000000002", "n-0000000010", "n-0000000100"],
  );
});

Deno.test("LeaderElection: one leader at a time, its successor takes over", async () => {
  const { connectString } = await testZooKeeper();
  const root = randomTestRoot();
  const clients: ZooKeeperClient[] = [];
  const candidates: { election: LeaderElection; states: ElectionState["kind"][] }[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const zk = await connectZooKeeper({ connectString, root, sessionTimeoutMs: 4000 });
      clients.push(zk);
      const states: ElectionState["kind"][] = [];
      const election = new LeaderElection(zk, {
        address: `addr-${i}`,
        onChange: (state) => states.push(state.kind),
        warn: () => {},
        sessionTimeoutMs: 4000,
      });
      await election.start();
      candidates.push({ election, states });
    }
    const leaders = () => candidates.filter((c) => c.election.state.kind === "leader").length;
    await waitFor(() => candidates[0].election.state.kind === "leader", {
      what: "the first to lead",
    });
    assert.equal(leaders(), 1);
    assert.equal(await candidates[2].election.leaderAddress(), "addr-0");
    await candidates[0].election.stop();
    await waitFor(() => candidates[1].election.state.kind === "leader", {
      what: "the second to lead",
    });
    assert.equal(candidates[2].election.state.kind, "follower");
    assert.equal(await candidates[2].election.leaderAddress(), "addr-1");
    // A leader whose session ends (as when its process dies) is replaced too.
    await clients[1].close();
    await waitFor(() => candidates[2].election.state.kind === "leader", {
      what: "the third to lead",
    });
  } finally {
    for (const c of candidates) await c.election.stop().catch(() => {});
    for (const zk of clients) await zk.close().catch(() => {});
    await removeTestRoot(connectString, root).catch(() => {});
  }
});
