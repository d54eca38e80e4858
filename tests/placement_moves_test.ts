// Placement moving replicas under load, with real kvnodes, real placement processes and a real
// ZooKeeper: a fourth kvnode receives replicas and leaderships while a client writes; a drained
// node is emptied and then stopped; a placement leader killed in the middle of a move is replaced
// by a second instance that resumes the move from ZooKeeper. Every acknowledged write is read back.
import assert from "node:assert/strict";
import { waitFor } from "@tinykv/zk/testing";
import {
  PlacementProcess,
  state,
  waitSettled,
  withPlacement,
  Writer,
} from "./_harness/placement.ts";

Deno.test("placement: a new kvnode gets replicas and leaders while a client writes", async () => {
  await withPlacement({ nodes: 3, shards: 4 }, async (cluster, placement, client) => {
    await placement.waitUntilLeader();
    await waitSettled(placement, { replicas: 3, timeoutMs: 30_000 });
    const writer = new Writer(client, "join");
    const added = await cluster.addNode();
    const settled = await waitSettled(placement, {
      replicas: 3,
      timeoutMs: 60_000,
      extra: (s) => {
        const node = s.nodes.find((n) => n.nodeId === added.nodeId);
        return node !== undefined && node.replicas === 3 && node.leaders >= 1;
      },
    });
    assert.ok(settled.nodes.every((n) => n.replicas === 3), JSON.stringify(settled.nodes));
    const written = await writer.stopAndVerify();
    assert.ok(written > 0);
  });
});

Deno.test("placement: a drained kvnode is emptied, then stopped, and nothing is lost", async () => {
  await withPlacement({ nodes: 4, shards: 3 }, async (cluster, placement, client) => {
    await placement.waitUntilLeader();
    const before = await waitSettled(placement, { replicas: 3, timeoutMs: 30_000 });
    const writer = new Writer(client, "drain");
    const drained = before.nodes.find((n) => n.replicas > 0 && n.leaders > 0) ??
      before.nodes.find((n) => n.replicas > 0)!;
    const answer = await placement.call("DrainNode", { nodeId: drained.nodeId });
    assert.equal(answer.kind, "ok", JSON.stringify(answer));
    await waitSettled(placement, { replicas: 3, excluded: [drained.nodeId], timeoutMs: 60_000 });
    // Draining a second node would leave fewer nodes than the replica count.
    const other = before.nodes.find((n) => n.nodeId !== drained.nodeId)!;
    const refused = await placement.call("DrainNode", { nodeId: other.nodeId });
    assert.equal(refused.kind, "failedPrecondition");
    await cluster.nodes.find((n) => n.nodeId === drained.nodeId)!.process.stop();
    const atStop = writer.acknowledged;
    await waitFor(() => writer.acknowledged > atStop + 20, {
      timeoutMs: 20_000,
      what: "writes after the drained node stopped",
    });
    assert.ok(await writer.stopAndVerify() > 0);
  });
});

Deno.test("placement: a second instance resumes a move when the leader is killed mid-move", async () => {
  await withPlacement({ nodes: 4, shards: 3 }, async (cluster, first, client) => {
    await first.waitUntilLeader();
    const before = await waitSettled(first, { replicas: 3, timeoutMs: 30_000 });
    const second = await PlacementProcess.start(cluster);
    try {
      const shard = before.shards[0];
      const to = before.nodes.find((n) => !shard.voters.includes(n.nodeId))!.nodeId;
      const from = shard.voters.find((v) => v !== shard.leader)!;
      const writer = new Writer(client, "failover");
      const moved = await first.call("MoveReplica", {
        shardId: shard.shardId,
        fromNode: from,
        toNode: to,
      });
      assert.equal(moved.kind, "ok", JSON.stringify(moved));
      // Kill the leader once the move has begun (best effort: at its first step or later).
      let midMove = false;
      await waitFor(async () => {
        const now = await state(first);
        midMove = now.tasks.some((t) => t.move?.shardId === shard.shardId);
        return !midMove ||
          now.shards.some((s) => s.shardId === shard.shardId && s.learners.includes(to));
      }, { timeoutMs: 10_000, what: "the move to add its learner" });
      await first.process.kill();
      await second.waitUntilLeader(20_000);
      const after = await waitSettled(second, {
        replicas: 3,
        timeoutMs: 45_000,
        extra: (s) => {
          const moved = s.shards.find((x) => x.shardId === shard.shardId)!;
          return moved.voters.includes(to) && !moved.voters.includes(from);
        },
      });
      assert.equal(after.isLeader, true);
      const decisions = await second.call("ListDecisions", { limit: 0 });
      assert.equal(decisions.kind, "ok");
      if (decisions.kind === "ok") {
        const took = decisions.response.decisions.filter((d) => d.event === "leader");
        assert.ok(took.length >= 2, "both instances recorded taking the lead");
        if (midMove) assert.match(took[took.length - 1].reason, /resuming 1 moves/);
      }
      assert.ok(await writer.stopAndVerify() > 0);
    } finally {
      await second.close();
    }
  });
});
