// Real placement processes over real kvnodes and a real ZooKeeper: placement bootstraps the shards
// on three kvnodes and every shard serves writes routed by the published map; the admin API
// answers state, refuses bad requests precisely, and a non-leader names the leader; a killed
// kvnode's replicas are re-created elsewhere.
import assert from "node:assert/strict";
import { decodeShardMap, splitEvenly } from "@tinykv/shard";
import { waitFor } from "@tinykv/zk/testing";
import {
  keyPerShard,
  PlacementProcess,
  state,
  waitSettled,
  withPlacement,
} from "./_harness/placement.ts";

Deno.test("placement: bootstraps shards on 3 kvnodes and every shard serves writes", async () => {
  await withPlacement({ nodes: 3, shards: 4 }, async (cluster, placement, client) => {
    await placement.waitUntilLeader();
    const settled = await waitSettled(placement, { replicas: 3, timeoutMs: 30_000 });
    assert.equal(settled.shards.length, 4);
    assert.deepEqual(
      settled.shards.map((s) => [s.rangeLo, s.rangeHi]),
      splitEvenly(4).map((r) => [r.lo, r.hi]),
    );
    for (const key of keyPerShard(cluster)) await client.put(key, `v-${key}`);
    for (const key of keyPerShard(cluster)) assert.equal(await client.get(key), `v-${key}`);
    // The published map carries the members and a leader hint for every shard.
    await waitFor(async () => {
      const node = await client.zk.get("/shardmap");
      const decoded = node === undefined ? undefined : decodeShardMap(node.data);
      return decoded?.kind === "ok" && decoded.map.version >= 2 &&
        decoded.map.shards.every((s) => s.leaderHint !== undefined);
    }, { timeoutMs: 10_000, what: "leader hints in the published map" });
    // HTTP: JSON status, metrics, page.
    const status = await (await fetch(`http://127.0.0.1:${placement.httpPort}/status`)).json();
    assert.equal(status.shards.length, 4);
    assert.equal(status.isLeader, true);
    const metrics = await (await fetch(`http://127.0.0.1:${placement.httpPort}/metrics`)).text();
    assert.match(metrics, /# TYPE tinykv_placement_rounds_total counter/);
    assert.match(metrics, /tinykv_placement_rounds_total \d+/);
    assert.match(metrics, /tinykv_placement_is_leader 1/);
    const page = await (await fetch(`http://127.0.0.1:${placement.httpPort}/`)).text();
    assert.match(page, /<title>TinyKV dashboard<\/title>/);
    // The dashboard's view, with replica details once asked for, and its guarded actions.
    const http = `http://127.0.0.1:${placement.httpPort}`;
    await fetch(`${http}/api/view`).then((r) => r.body?.cancel());
    await waitFor(async () => {
      const { view } = await (await fetch(`${http}/api/view`)).json();
      return view?.detail === true && view.shards.length === 4 &&
        view.shards.every((s: { applied: number | null }) => s.applied !== null && s.applied > 0);
    }, { timeoutMs: 10_000, what: "the dashboard's view with replica details" });
    const act = (path: string, body: unknown, headers: Record<string, string>) =>
      fetch(`${http}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, body: await r.json() }));
    const confirm = { "x-tinykv-confirm": "yes" };
    const drainOne = { nodeId: cluster.nodes[0].nodeId };
    assert.equal((await act("/api/drain", drainOne, {})).status, 403, "no confirmation header");
    assert.equal(
      (await act("/api/drain", drainOne, { ...confirm, origin: "http://elsewhere.example" }))
        .status,
      403,
      "another site's page",
    );
    const unknown = await act("/api/drain", { nodeId: "nope" }, confirm);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.code, "INVALID_ARGUMENT");
    assert.match(unknown.body.message, /nope/);
    const badField = await act("/api/transfer-leader", { shardId: "1", toNode: "x" }, confirm);
    assert.deepEqual(badField, {
      status: 400,
      body: {
        ok: false,
        code: "INVALID_ARGUMENT",
        message: 'Field "shardId" must be a number: got "1"',
      },
    });
    const plan = await act("/api/rebalance", { dryRun: true }, confirm);
    assert.equal(plan.status, 200);
    assert.deepEqual(plan.body.result.moves, []);
    const after = await (await fetch(`${http}/status`)).json();
    assert.ok(after.nodes.every((n: { draining: boolean }) => !n.draining), "nothing drained");
    assert.deepEqual(after.tasks, []);
    const decisions = await placement.call("ListDecisions", { limit: 10 });
    assert.equal(decisions.kind, "ok");
    assert.ok(
      decisions.kind === "ok" && decisions.response.decisions.some((d) => d.event === "bootstrap"),
    );
  });
});

Deno.test("placement: the admin API refuses bad requests and a non-leader names the leader", async () => {
  await withPlacement({ nodes: 3, shards: 2 }, async (cluster, placement) => {
    await placement.waitUntilLeader();
    const settled = await waitSettled(placement, { replicas: 3, timeoutMs: 30_000 });
    const [n1, n2] = cluster.nodes.map((n) => n.nodeId);
    const unknownShard = await placement.call("MoveReplica", {
      shardId: 99,
      fromNode: n1,
      toNode: n2,
    });
    assert.equal(unknownShard.kind, "invalidArgument");
    assert.match((unknownShard as { message: string }).message, /Shard 99 does not exist/);
    const onto = await placement.call("MoveReplica", { shardId: 1, fromNode: n1, toNode: n2 });
    assert.equal(onto.kind, "invalidArgument");
    assert.match((onto as { message: string }).message, /already holds shard 1/);
    const unknownNode = await placement.call("MoveReplica", {
      shardId: 1,
      fromNode: n1,
      toNode: "n-nowhere",
    });
    assert.equal(unknownNode.kind, "invalidArgument");
    const drain = await placement.call("DrainNode", { nodeId: n1 });
    assert.equal(drain.kind, "failedPrecondition", "draining one of 3 nodes leaves too few");
    assert.match((drain as { message: string }).message, /fewer than the replica count 3/);
    const follower = settled.shards[0].voters.find((v) => v !== settled.shards[0].leader)!;
    const transfer = await placement.call("TransferLeader", { shardId: 1, toNode: follower });
    assert.equal(transfer.kind, "ok", JSON.stringify(transfer));
    await waitFor(async () => (await state(placement)).shards[0].leader === follower, {
      timeoutMs: 15_000,
      what: `shard 1 led by ${follower}`,
    });
    const dryRun = await placement.call("Rebalance", { dryRun: true });
    assert.equal(dryRun.kind, "ok");
    // A second instance does not lead and names the leader.
    const second = await PlacementProcess.start(cluster);
    try {
      const answer = await second.call("ClusterState", {});
      assert.equal(answer.kind, "unavailable");
      assert.match((answer as { message: string }).message, new RegExp(placement.adminAddress));
      const decisions = await second.call("ListDecisions", { limit: 50 });
      assert.ok(
        decisions.kind === "ok" &&
          decisions.response.decisions.some((d) => d.event === "bootstrap"),
        "a non-leader lists the stored decisions",
      );
      const tooMany = await second.call("ListDecisions", { limit: 201 });
      assert.equal(tooMany.kind, "invalidArgument");
    } finally {
      await second.close();
    }
  });
});

Deno.test("placement: a killed kvnode's replicas are re-created on the other nodes", async () => {
  await withPlacement(
    { nodes: 4, shards: 3, placementFlags: ["--placement.down_after_ms=3000"] },
    async (cluster, placement, client) => {
      await placement.waitUntilLeader();
      await waitSettled(placement, { replicas: 3, timeoutMs: 30_000 });
      const keys = keyPerShard(cluster);
      for (const key of keys) await client.put(key, `before-${key}`);
      const before = await state(placement);
      const victimId = before.nodes.find((n) => n.replicas > 0)!.nodeId;
      const victim = cluster.nodes.find((n) => n.nodeId === victimId)!;
      await victim.process.kill();
      const after = await waitSettled(placement, {
        replicas: 3,
        excluded: [victimId],
        timeoutMs: 45_000,
      });
      assert.ok(after.shards.every((s) => !s.voters.includes(victimId)));
      for (const key of keys) assert.equal(await client.get(key), `before-${key}`);
      for (const key of keys) await client.put(key, `after-${key}`);
    },
  );
});

Deno.test("placement: deletes an orphan replica left by an abandoned move", async () => {
  await withPlacement({ nodes: 4, shards: 2 }, async (cluster, placement) => {
    await placement.waitUntilLeader();
    await waitSettled(placement, { replicas: 3, timeoutMs: 30_000 });
    // A learner created for a move that was abandoned before the leader added it: its node hosts
    // it, but no member of the group lists it, and nothing would ever tell it.
    const statuses = await cluster.statuses();
    const member = statuses.find((s) => s.replicas.some((r) => r.shardId === 1))!;
    const shard = member.replicas.find((r) => r.shardId === 1)!;
    const outsider = cluster.nodes.find((node) =>
      !statuses.find((s) => s.nodeId === node.nodeId)!.replicas.some((r) => r.shardId === 1)
    )!;
    const orphanPeer = {
      peerId: 1_000_000_007,
      nodeId: outsider.nodeId,
      address: outsider.address,
    };
    const created = await cluster.call(outsider, "CreateReplica", {
      clusterId: cluster.clusterId,
      shardId: 1,
      rangeLo: shard.rangeLo,
      rangeHi: shard.rangeHi,
      peerId: orphanPeer.peerId,
      voters: shard.voters,
      learners: [...shard.learners, orphanPeer],
      confEpoch: shard.confEpoch,
      join: true,
    });
    assert.equal(created.kind, "ok", JSON.stringify(created));
    await waitFor(async () => {
      const status = await cluster.call(outsider, "Status", {
        withDataHash: false,
        resetTurnStats: false,
        sinceVersion: 0,
        sinceStartedAtMs: 0,
      });
      return status.kind === "ok" && !status.response.replicas.some((r) => r.shardId === 1);
    }, { timeoutMs: 40_000, what: "placement to delete the orphan replica" });
    // Placement records the decision when DeleteReplica returns, which may be just after the
    // kvnode's status stops listing the replica.
    const reason = `deleted replica peer ${orphanPeer.peerId} of shard 1`;
    let reasons: string[] = [];
    await waitFor(async () => {
      const decisions = await placement.call("ListDecisions", { limit: 50 });
      reasons = decisions.kind === "ok" ? decisions.response.decisions.map((d) => d.reason) : [];
      return reasons.some((r) => r.includes(reason));
    }, { timeoutMs: 10_000, what: "the orphan decision" }).catch((error) => {
      throw new Error(`${error}: ${JSON.stringify(reasons)}`);
    });
    // The group kept its members.
    const after = await state(placement);
    assert.equal(after.shards.find((s) => s.shardId === 1)?.voters.length, 3);
  });
});
