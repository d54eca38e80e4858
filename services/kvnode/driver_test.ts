// Checks the kvnode driver loop with real LMDB stores and an in-memory transport (the in-process
// TestCluster): a shard group elects and serves writes and linearizable reads, followers redirect
// to the leader, data and sessions survive restarts without double application, a membership
// change moves a replica, a lagging node catches up by snapshot, and stale admin calls are fenced.
import assert from "node:assert/strict";
import type { Command } from "@tinykv/proto/tinykv/v1";
import type { ItemOutcome } from "./outcome.ts";
import { TEST_TUNING, TestCluster, type TestClusterOptions } from "./_test_cluster.ts";
import { pingEveryTicks } from "./driver.ts";
import { shardId as toShardId } from "@tinykv/shard";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
/** The shard every test here creates. */
const SHARD = toShardId(1);

function put(key: string, value: string, clientId = "", seq = 0, ackSeq = 0): Command {
  return {
    stampMs: 0,
    valueBytesMax: 0,
    sessionTtlMs: 0,
    put: { key: enc(key), value: enc(value), clientId, seq, ackSeq },
  };
}

function append(key: string, value: string, clientId = "", seq = 0): Command {
  return {
    stampMs: 0,
    valueBytesMax: 0,
    sessionTtlMs: 0,
    append: { key: enc(key), value: enc(value), clientId, seq, ackSeq: 0 },
  };
}

function getValue(outcome: ItemOutcome): string | undefined {
  assert.equal(outcome.kind, "ok", JSON.stringify(outcome));
  if (outcome.kind !== "ok" || outcome.result.kind !== "get") return assert.fail("not a get");
  return outcome.result.response.found ? dec(outcome.result.response.value) : undefined;
}

async function electedCluster(
  nodes = ["n1", "n2", "n3"],
  tuning = TEST_TUNING,
  options: TestClusterOptions = {},
) {
  const cluster = await TestCluster.create(nodes, tuning, options);
  await cluster.createShard(SHARD, nodes, 101);
  await cluster.until(() => cluster.leaderOf(SHARD) !== undefined, "a leader of shard 1");
  return cluster;
}

Deno.test("Driver: a shard group elects, writes, reads linearizably and redirects", async () => {
  const cluster = await electedCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const wrote = await cluster.request(leader.nodeId, SHARD, {
      kind: "mutation",
      command: put("k", "v"),
    });
    assert.equal(wrote.kind, "ok");
    assert.equal(
      getValue(await cluster.request(leader.nodeId, SHARD, { kind: "get", key: enc("k") })),
      "v",
    );
    const follower = [...cluster.nodes.keys()].find((n) => n !== leader.nodeId)!;
    const redirected = await cluster.request(follower, SHARD, { kind: "get", key: enc("k") });
    assert.equal(redirected.kind, "notLeader");
    assert.equal(redirected.kind === "notLeader" && redirected.leaderNode, leader.nodeId);
    // A serializable read is served by any replica once it has applied the write.
    await cluster.until(
      () => cluster.node(follower).driver.replicas()[0].machine.kv.get(enc("k")).found,
      "the follower to apply",
    );
    const local = await cluster.request(follower, SHARD, {
      kind: "get",
      key: enc("k"),
      serializable: true,
    });
    assert.equal(getValue(local), "v");
    const missing = await cluster.request(leader.nodeId, toShardId(2), {
      kind: "get",
      key: enc("k"),
    });
    assert.equal(missing.kind, "unavailable");
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: many concurrent writes are group-committed in few turns", async () => {
  const cluster = await electedCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const turnsBefore = leader.driver.turns;
    const writes = Array.from(
      { length: 200 },
      (_, i) =>
        cluster.submit(leader.nodeId, SHARD, { kind: "mutation", command: put(`k${i}`, `${i}`) }),
    );
    const outcomes = await cluster.settle(writes);
    assert.deepEqual(outcomes.filter((o) => o.kind !== "ok"), []);
    const turns = leader.driver.turns - turnsBefore;
    assert.ok(turns < 100, `200 writes took ${turns} turns`);
    const scan = await cluster.request(leader.nodeId, SHARD, {
      kind: "scan",
      request: { start: new Uint8Array(), end: new Uint8Array(), limit: 1000 },
    });
    assert.equal(
      scan.kind === "ok" && scan.result.kind === "scan" && scan.result.response.kvs.length,
      200,
    );
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: turns that persist wait for their sync; turns that only apply do not", async () => {
  const cluster = await electedCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const node = cluster.node(leader.nodeId);
    node.turns.splice(0);
    for (let i = 0; i < 5; i++) {
      const wrote = await cluster.request(leader.nodeId, SHARD, {
        kind: "mutation",
        command: put(`k${i}`, `${i}`),
      });
      assert.equal(wrote.kind, "ok");
    }
    // One write at a time: the leader persists each entry in one turn and applies it in a later
    // one, when the followers' acknowledgements commit it.
    const persisting = node.turns.filter((turn) => turn.entries > 0);
    const applying = node.turns.filter((turn) => turn.entries === 0);
    assert.ok(persisting.length >= 5, JSON.stringify(node.turns));
    assert.ok(persisting.every((turn) => turn.durable), JSON.stringify(persisting));
    assert.ok(applying.some((turn) => !turn.durable), JSON.stringify(applying));
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a turn that only applies answers before it commits", async () => {
  // Once gated, a turn that applies and answers stays open until the test lets it commit.
  let gated = false;
  const gates: Array<() => void> = [];
  const cluster = await electedCluster(undefined, undefined, {
    answersLeft: () => {
      if (!gated) return Promise.resolve();
      return new Promise((resolve) => gates.push(resolve));
    },
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const node = cluster.node(leader.nodeId);
    // Settled first: nothing left to apply from the election.
    await cluster.tick();
    gated = true;
    node.turns.splice(0);
    const answered = cluster.submit(leader.nodeId, SHARD, {
      kind: "mutation",
      command: put("k", "v"),
    });
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), 5_000);
    });
    const outcome = await Promise.race([answered, timeout]);
    assert.notEqual(outcome, "timeout", "the answer waited for the commit");
    assert.equal(outcome !== "timeout" && outcome.kind, "ok");
    assert.equal(gates.length, 1, "the applying turn is held open");
    const applying = node.turns.filter((turn) => turn.entries === 0 && !turn.durable);
    assert.deepEqual(applying, [], "the applying turn has not finished");
    gated = false;
    for (const open of gates.splice(0)) open();
    await cluster.until(
      () => node.turns.some((turn) => turn.entries === 0 && !turn.durable),
      "the applying turn's commit",
    );
    assert.equal(
      getValue(await cluster.request(leader.nodeId, SHARD, { kind: "get", key: enc("k") })),
      "v",
    );
  } finally {
    clearTimeout(timer);
    gated = false;
    for (const open of gates.splice(0)) open();
    await cluster.close();
  }
});

Deno.test("Driver: a restart of every node keeps data and applies nothing twice", async () => {
  const cluster = await electedCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    for (let seq = 1; seq <= 5; seq++) {
      const outcome = await cluster.request(leader.nodeId, SHARD, {
        kind: "mutation",
        command: append("log", `${seq};`, "client-a", seq),
      });
      assert.equal(outcome.kind, "ok", JSON.stringify(outcome));
    }
    for (const nodeId of ["n1", "n2", "n3"]) await cluster.stop(nodeId);
    for (const nodeId of ["n1", "n2", "n3"]) cluster.restart(nodeId);
    await cluster.until(() => cluster.leaderOf(SHARD) !== undefined, "a leader after restart");
    const newLeader = cluster.leaderOf(SHARD)!;
    // A retry of an applied seq after the restart is answered from the session, not re-applied.
    const retry = await cluster.request(newLeader.nodeId, SHARD, {
      kind: "mutation",
      command: append("log", "3;", "client-a", 3),
    });
    assert.equal(retry.kind, "ok");
    const value = getValue(
      await cluster.request(newLeader.nodeId, SHARD, { kind: "get", key: enc("log") }),
    );
    assert.equal(value, "1;2;3;4;5;");
    // Every replica converges to the same data.
    await cluster.until(() => {
      const hashes = [...cluster.nodes.values()].map((n) =>
        n.driver.replicas()[0].machine.dataHash()
      );
      return new Set(hashes).size === 1;
    }, "equal data hashes");
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a replica moves to a new node (learner, promote, remove), fenced by epoch", async () => {
  const cluster = await TestCluster.create(["n1", "n2", "n3", "n4"]);
  try {
    await cluster.createShard(SHARD, ["n1", "n2", "n3"], 101);
    await cluster.until(() => cluster.leaderOf(SHARD) !== undefined, "a leader");
    for (let i = 0; i < 20; i++) {
      const leader = cluster.leaderOf(SHARD)!;
      const outcome = await cluster.request(leader.nodeId, SHARD, {
        kind: "mutation",
        command: put(`k${i}`, `v${i}`),
      });
      assert.equal(outcome.kind, "ok");
    }
    const leader = cluster.leaderOf(SHARD)!;
    const newPeer = cluster.peer("n4", 104);
    const members = ["n1", "n2", "n3"].map((n, i) => cluster.peer(n, 101 + i));
    const created = await cluster.node("n4").driver.createReplica({
      shardId: toShardId(1),
      peerId: 104,
      range: { lo: 0, hi: 2 ** 32 },
      peers: [...members, newPeer],
      initialConfState: {
        voters: members.map((m) => m.peerId),
        learners: [],
        epoch: 0,
      } as never,
    });
    assert.equal(created.kind, "ok");
    const stale = await leader.driver.changeMembership({
      shardId: toShardId(1),
      expectedConfEpoch: 99,
      change: "addLearner",
      peer: newPeer,
      timeoutMs: 5000,
    });
    assert.equal(stale.kind, "staleEpoch");

    const step = (change: "addLearner" | "promote" | "remove", peer = newPeer) => {
      const current = cluster.leaderOf(SHARD)!;
      const epoch = current.driver.replicas()[0].confEpoch;
      const result = current.driver.changeMembership({
        shardId: toShardId(1),
        expectedConfEpoch: epoch,
        change,
        peer,
        timeoutMs: 10_000,
      });
      return ticking(cluster, result);
    };
    assert.equal((await step("addLearner")).kind, "ok");
    assert.equal((await step("promote")).kind, "ok");
    const removed = members.find((m) => m.nodeId !== cluster.leaderOf(SHARD)!.nodeId)!;
    assert.equal((await step("remove", removed)).kind, "ok");
    await cluster.until(
      () => cluster.node(removed.nodeId).driver.replicas().length === 0,
      "the removed replica to delete itself",
    );
    await cluster.until(() => {
      const live = ["n1", "n2", "n3", "n4"].filter((n) => n !== removed.nodeId);
      const hashes = live.map((n) => cluster.node(n).driver.replicas()[0]?.machine.dataHash());
      return hashes.every((h) => h !== undefined) && new Set(hashes).size === 1;
    }, "the new replica to hold the same data");
    const value = await cluster.request(cluster.leaderOf(SHARD)!.nodeId, SHARD, {
      kind: "get",
      key: enc("k19"),
    });
    assert.equal(getValue(value), "v19");
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a node that fell far behind catches up by snapshot", async () => {
  const cluster = await electedCluster(["n1", "n2", "n3"], { ...TEST_TUNING, snapshotEntries: 16 });
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const lagging = [...cluster.nodes.keys()].find((n) => n !== leader.nodeId)!;
    cluster.isolated.add(lagging);
    for (let i = 0; i < 60; i++) {
      const current = cluster.leaderOf(SHARD)!;
      const outcome = await cluster.request(current.nodeId, SHARD, {
        kind: "mutation",
        command: put(`k${i}`, `v${i}`),
      });
      assert.equal(outcome.kind, "ok");
    }
    const first = cluster.leaderOf(SHARD)!.driver.replicas()[0].log.firstIndex();
    assert.ok(first > 16, `the leader compacted its log (first index ${first})`);
    cluster.isolated.delete(lagging);
    await cluster.until(() => {
      const replica = cluster.node(lagging).driver.replicas()[0];
      return replica.machine.kv.get(enc("k59")).found;
    }, "the lagging node to catch up");
    const hashes = [...cluster.nodes.values()].map((n) =>
      n.driver.replicas()[0].machine.dataHash()
    );
    await cluster.until(
      () =>
        new Set([...cluster.nodes.values()].map((n) => n.driver.replicas()[0].machine.dataHash()))
          .size === 1,
      `equal hashes (${hashes.join(", ")})`,
    );
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a compaction spread over turns goes on in turns of its own once writes stop", async () => {
  // One entry a step, beyond those applied since the last.
  const tuning = { ...TEST_TUNING, snapshotEntries: 150, compactStepEntries: 1 };
  const cluster = await electedCluster(["n1"], tuning);
  try {
    const node = cluster.node("n1");
    const replica = node.driver.replicas()[0];
    const writes = (from: number, count: number) =>
      Array.from(
        { length: count },
        (_, i) =>
          cluster.submit("n1", SHARD, { kind: "mutation", command: put(`k${from + i}`, "v") }),
      );
    const outcomes = await cluster.settle(writes(0, 150 - replica.log.appliedState.applied - 1));
    assert.deepEqual(outcomes.filter((o) => o.kind !== "ok"), []);
    assert.equal(replica.log.appliedState.applied, 149);
    assert.equal(replica.log.firstIndex(), 1);
    // The 150th entry makes a compaction due (to 150 - 37 kept), and its turn takes one step.
    // No tick from here: only the turns the driver gives itself. Meanwhile the event loop runs
    // between the steps: a callback scheduled each round sees the compaction under way.
    const seen = new Set<number>();
    let watching = true;
    const watch = () => {
      seen.add(replica.log.firstIndex());
      if (watching) setImmediate(watch);
    };
    setImmediate(watch);
    const [last] = writes(1000, 1);
    await node.driver.whenIdle();
    watching = false;
    assert.equal((await last).kind, "ok");
    assert.equal(replica.log.appliedState.applied, 150);
    assert.equal(replica.compacting, false);
    assert.equal(replica.log.firstIndex(), 114);
    const between = [...seen].filter((first) => first > 3 && first < 114);
    assert.ok(between.length >= 10, `the event loop ran during the compaction: ${[...seen]}`);
  } finally {
    await cluster.close();
  }
});

async function ticking<T>(cluster: TestCluster, promise: Promise<T>): Promise<T> {
  let done = false;
  let value: T | undefined;
  promise.then((v) => {
    done = true;
    value = v;
  });
  await cluster.until(() => done, "an admin call to finish", 600);
  return value as T;
}

Deno.test("Driver: a membership change whose entry another leader replaced is answered not applied", async () => {
  const cluster = await electedCluster();
  try {
    const old = cluster.leaderOf(SHARD)!;
    cluster.isolated.add(old.nodeId);
    const epoch = old.driver.replicas()[0].confEpoch;
    // Proposed on the cut-off leader: its entry can reach no one.
    const change = old.driver.changeMembership({
      shardId: toShardId(1),
      expectedConfEpoch: epoch,
      change: "addLearner",
      peer: cluster.peer("n9", 999),
      timeoutMs: 60_000,
    });
    const others = [...cluster.nodes.keys()].filter((id) => id !== old.nodeId);
    const newLeader = () =>
      others.find((id) => cluster.node(id).driver.replicas()[0]?.isLeader() ?? false);
    await cluster.until(() => newLeader() !== undefined, "a new leader without the old one");
    // The new leader's entries take the index of the old leader's change.
    const wrote = await cluster.request(newLeader()!, SHARD, {
      kind: "mutation",
      command: put("after", "1"),
    });
    assert.equal(wrote.kind, "ok");
    cluster.isolated.delete(old.nodeId);
    const result = await ticking(cluster, change);
    assert.equal(result.kind, "unavailable", JSON.stringify(result));
    assert.match(result.kind === "unavailable" ? result.message : "", /another leader's entry/);
    // The learner was never added anywhere.
    for (const node of cluster.nodes.values()) {
      assert.ok(!node.driver.replicas()[0].peers.has(999), node.nodeId);
    }
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a replica removed while cut off learns it from a member and deletes itself", async () => {
  const cluster = await TestCluster.create(["n1", "n2", "n3", "n4"]);
  try {
    await cluster.createShard(SHARD, ["n1", "n2", "n3"], 101);
    await cluster.until(() => cluster.leaderOf(SHARD) !== undefined, "a leader");
    const leader = cluster.leaderOf(SHARD)!;
    const members = ["n1", "n2", "n3"].map((n, i) => cluster.peer(n, 101 + i));
    const newPeer = cluster.peer("n4", 104);
    await cluster.node("n4").driver.createReplica({
      shardId: toShardId(1),
      peerId: 104,
      range: { lo: 0, hi: 2 ** 32 },
      peers: [...members, newPeer],
      initialConfState: { voters: members.map((m) => m.peerId), learners: [], epoch: 0 } as never,
    });
    const change = async (kind: "addLearner" | "promote" | "remove", peer: typeof newPeer) => {
      const current = cluster.leaderOf(SHARD)!;
      const epoch = current.driver.replicas()[0].confEpoch;
      return await ticking(
        cluster,
        current.driver.changeMembership({
          shardId: toShardId(1),
          expectedConfEpoch: epoch,
          change: kind,
          peer,
          timeoutMs: 20_000,
        }),
      );
    };
    assert.equal((await change("addLearner", newPeer)).kind, "ok");
    assert.equal((await change("promote", newPeer)).kind, "ok");
    const victim = members.find((m) => m.nodeId !== leader.nodeId)!;
    cluster.isolated.add(victim.nodeId);
    assert.equal((await change("remove", victim)).kind, "ok");
    assert.equal(cluster.node(victim.nodeId).driver.replicas().length, 1, "it did not hear");
    cluster.isolated.delete(victim.nodeId);
    await cluster.until(
      () => cluster.node(victim.nodeId).driver.replicas().length === 0,
      "the cut-off replica to learn of its removal",
    );
    const stillServing = await cluster.request(cluster.leaderOf(SHARD)!.nodeId, SHARD, {
      kind: "mutation",
      command: put("after", "removal"),
    });
    assert.equal(stillServing.kind, "ok");
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a membership change that cannot commit times out on the driver's clock", async () => {
  const cluster = await electedCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    for (const nodeId of cluster.nodes.keys()) {
      if (nodeId !== leader.nodeId) cluster.isolated.add(nodeId);
    }
    const epoch = leader.driver.replicas()[0].confEpoch;
    const result = await ticking(
      cluster,
      leader.driver.changeMembership({
        shardId: toShardId(1),
        expectedConfEpoch: epoch,
        change: "addLearner",
        peer: cluster.peer("n9", 999),
        timeoutMs: 1000,
      }),
    );
    assert.equal(result.kind, "timeout");
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a leader applying its own removal serves no read from the data it deleted", async () => {
  const cluster = await electedCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    assert.equal(
      (await cluster.request(leader.nodeId, SHARD, { kind: "mutation", command: put("k", "v") }))
        .kind,
      "ok",
    );
    const self = leader.driver.replicas()[0];
    // Reads that arrive with the removal are confirmed in the same turn as it applies, when the
    // replica deletes its data.
    const removal = leader.driver.changeMembership({
      shardId: toShardId(1),
      expectedConfEpoch: self.confEpoch,
      change: "remove",
      peer: self.peers.get(self.peerId)!,
      timeoutMs: 10_000,
    });
    const reads = Array.from(
      { length: 20 },
      () => cluster.submit(leader.nodeId, SHARD, { kind: "get", key: enc("k") }),
    );
    const outcomes = await cluster.settle(reads);
    assert.equal((await ticking(cluster, removal)).kind, "ok");
    for (const outcome of outcomes) {
      if (outcome.kind === "ok") assert.equal(getValue(outcome), "v");
      else assert.ok(["unavailable", "notLeader"].includes(outcome.kind), JSON.stringify(outcome));
    }
    assert.equal(leader.driver.replicas().length, 0, "the removed replica is gone");
    // The remaining members elect a leader that still holds the key.
    await cluster.until(() => cluster.leaderOf(SHARD) !== undefined, "a new leader");
    const next = cluster.leaderOf(SHARD)!;
    assert.equal(
      getValue(await cluster.request(next.nodeId, SHARD, { kind: "get", key: enc("k") })),
      "v",
    );
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: two CreateReplica calls at once for one shard create one replica", async () => {
  const cluster = await TestCluster.create(["n1"]);
  try {
    const driver = cluster.node("n1").driver;
    const record = (peerId: number) => ({
      shardId: toShardId(7),
      peerId,
      range: { lo: 0, hi: 2 ** 32 },
      peers: [cluster.peer("n1", peerId)],
      initialConfState: { voters: [peerId], learners: [], epoch: 0 },
    } as never);
    const [a, b, again] = await Promise.all([
      driver.createReplica(record(701)),
      driver.createReplica(record(702)),
      driver.createReplica(record(701)),
    ]);
    assert.deepEqual(a, { kind: "ok", value: { created: true } });
    assert.equal(b.kind, "invalid", JSON.stringify(b));
    assert.match(JSON.stringify(b), /already has replica peer 701/);
    assert.equal(again.kind, "unavailable", JSON.stringify(again));
    assert.deepEqual(await driver.createReplica(record(701)), {
      kind: "ok",
      value: { created: false },
    });
    // One record on disk: a restart loads exactly one replica of the shard, peer 701.
    await cluster.stop("n1");
    const restarted = cluster.restart("n1");
    assert.deepEqual(restarted.driver.replicas().map((r) => r.peerId), [701]);
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: DeleteReplica removes an orphan replica and never a possible member", async () => {
  const cluster = await electedCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    assert.equal(
      (await cluster.request(leader.nodeId, SHARD, { kind: "mutation", command: put("k", "v") }))
        .kind,
      "ok",
    );
    const epoch = leader.driver.replicas()[0].confEpoch;
    // A member at the group's epoch with entries applied may be a member: refused, kept.
    const member = cluster.node("n2").driver;
    const memberPeer = member.replicas()[0].peerId;
    const refused = await ticking(
      cluster,
      member.deleteReplica({ shardId: toShardId(1), peerId: memberPeer, confEpoch: epoch }),
    );
    assert.equal(refused.kind, "staleEpoch", JSON.stringify(refused));
    assert.equal(member.replicas().length, 1);
    // Another peer id of the shard: nothing to delete.
    const other = await ticking(
      cluster,
      member.deleteReplica({ shardId: toShardId(1), peerId: 999, confEpoch: epoch + 1 }),
    );
    assert.deepEqual(other, { kind: "ok", value: { deleted: false } });
    // A replica created for a move that was abandoned before its learner was added: it never
    // received anything, so the leader's epoch (the same as its own) is enough to delete it.
    await cluster.stop("n3");
    const orphanNode = cluster.restart("n3");
    const replicas = leader.driver.replicas()[0];
    const peers = [...replicas.peers.values()];
    const orphan = await orphanNode.driver.createReplica({
      shardId: toShardId(2),
      peerId: 301,
      range: { lo: 0, hi: 2 ** 32 },
      peers: [...peers, cluster.peer("n3", 301)],
      initialConfState: { voters: peers.map((p) => p.peerId), learners: [301], epoch },
    } as never);
    assert.equal(orphan.kind, "ok");
    const deleted = await ticking(
      cluster,
      orphanNode.driver.deleteReplica({ shardId: toShardId(2), peerId: 301, confEpoch: epoch }),
    );
    assert.deepEqual(deleted, { kind: "ok", value: { deleted: true } });
    assert.deepEqual(orphanNode.driver.replicas().map((r) => r.shardId), [1]);
    await cluster.stop("n3");
    assert.deepEqual(cluster.restart("n3").driver.replicas().map((r) => r.shardId), [1]);
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a replica that knows no leader holds a request until one is elected", async () => {
  const cluster = await electedCluster();
  try {
    // Only one node of three runs: its elections cannot succeed, so it knows no leader.
    const lone = [...cluster.nodes.keys()].find((n) => n !== cluster.leaderOf(SHARD)!.nodeId)!;
    const others = [...cluster.nodes.keys()].filter((n) => n !== lone);
    for (const node of others) await cluster.stop(node);
    const replica = () => cluster.node(lone).driver.replicas()[0];
    await cluster.until(() => !replica().knowsLeader(), "the lone node to start an election");
    let answered = 0;
    const first = cluster.submit(lone, SHARD, { kind: "mutation", command: put("k", "first") });
    first.finally(() => answered++);
    for (let i = 0; i < 10; i++) await cluster.tick();
    assert.equal(answered, 0, "held while no leader is known, not answered NOT_LEADER at once");
    // Held at most LEADERLESS_WAIT_MS (1.5 s: 15 ticks), then NOT_LEADER without a leader.
    const [refused] = await cluster.settle([first]);
    assert.equal(refused.kind, "notLeader", JSON.stringify(refused));
    assert.equal(refused.kind === "notLeader" && refused.leaderNode, "");
    // Once a leader is elected, a held request is served by it or redirected to it.
    const second = cluster.submit(lone, SHARD, { kind: "mutation", command: put("k", "second") });
    cluster.restart(others[0]);
    const [outcome] = await cluster.settle([second]);
    const leader = cluster.leaderOf(SHARD)!;
    if (leader.nodeId === lone) assert.equal(outcome.kind, "ok", JSON.stringify(outcome));
    else {
      assert.equal(outcome.kind, "notLeader", JSON.stringify(outcome));
      assert.equal(outcome.kind === "notLeader" && outcome.leaderNode, leader.nodeId);
    }
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: an idle group quiesces, wakes for a write, and re-elects when its leader's node dies", async () => {
  const cluster = await electedCluster(["n1", "n2", "n3"], { ...TEST_TUNING, quiesceTicks: 3 });
  const quiesced = () =>
    [...cluster.nodes.values()].filter((n) => n.up).map((n) => n.driver.replicas()[0])
      .every((r) => r.node.quiesced);
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const wrote = await cluster.request(leader.nodeId, SHARD, {
      kind: "mutation",
      command: put("k", "1"),
    });
    assert.equal(wrote.kind, "ok");
    await cluster.until(quiesced, "every replica to quiesce", 30);
    // Quiet for many election timeouts: no election, the same leader (node pings keep it so).
    for (let i = 0; i < 50; i++) await cluster.tick();
    assert.ok(quiesced(), "still quiesced");
    assert.equal(cluster.leaderOf(SHARD)?.nodeId, leader.nodeId);
    // A write wakes the group.
    const again = await cluster.request(leader.nodeId, SHARD, {
      kind: "mutation",
      command: put("k", "2"),
    });
    assert.equal(again.kind, "ok");
    assert.ok(!quiesced());
    await cluster.until(quiesced, "the group to quiesce again", 30);
    // The leader's node dies while the group is quiet: its followers stop hearing from the node,
    // wake, and elect a new leader, which serves the latest value.
    await cluster.stop(leader.nodeId);
    await cluster.until(
      () => cluster.leaderOf(SHARD) !== undefined,
      "a new leader after the quiet leader's node died",
      40,
    );
    const next = cluster.leaderOf(SHARD)!;
    assert.notEqual(next.nodeId, leader.nodeId);
    assert.equal(
      getValue(await cluster.request(next.nodeId, SHARD, { kind: "get", key: enc("k") })),
      "2",
    );
  } finally {
    await cluster.close();
  }
});

/** Lease reads, with ticks counted by the cluster's clock (as a kvnode counts them). */
const LEASE_TUNING = { ...TEST_TUNING, readMode: "leaseBased" as const };

/** Three nodes reading under the lease, their ticks counted by the cluster's clock; elected. */
function leaseCluster(): Promise<TestCluster> {
  return electedCluster(["n1", "n2", "n3"], LEASE_TUNING, { tickClock: true });
}

Deno.test("Driver: lease reads are served by the leader alone, while a majority answers it", async () => {
  const cluster = await leaseCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const wrote = await cluster.request(leader.nodeId, SHARD, {
      kind: "mutation",
      command: put("k", "v1"),
    });
    assert.equal(wrote.kind, "ok");
    await cluster.tick();
    // Within the lease a read needs no round: it is answered with the other nodes cut off and
    // no tick to carry a heartbeat.
    for (const nodeId of cluster.nodes.keys()) {
      if (nodeId !== leader.nodeId) cluster.isolated.add(nodeId);
    }
    let leased: ItemOutcome | undefined;
    void cluster.submit(leader.nodeId, SHARD, { kind: "get", key: enc("k") })
      .then((o) => (leased = o));
    for (let i = 0; i < 3 && leased === undefined; i++) {
      await leader.driver.whenIdle();
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    assert.ok(leased !== undefined, "a read within the lease waited for a round");
    assert.equal(getValue(leased), "v1");
    const reads = leader.driver.replicas()[0].reads;
    assert.ok(reads.leased >= 1, `${reads.leased} turns of lease reads`);
    // Cut off for longer than the lease, the leader serves no read on its own: it waits for a
    // heartbeat round that cannot complete, until check-quorum makes it step down.
    for (let i = 0; i < LEASE_TUNING.electionTicks - 1; i++) await cluster.tick();
    let outcome: ItemOutcome | undefined;
    void cluster.submit(leader.nodeId, SHARD, { kind: "get", key: enc("k") })
      .then((o) => (outcome = o));
    for (let i = 0; i < 3; i++) await cluster.tick();
    assert.notEqual(outcome?.kind, "ok", "a read answered on an expired lease");
    cluster.isolated.clear();
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a leader paused past its lease takes the missed ticks before it serves a read", async () => {
  // SIGSTOP of the leader for longer than an election timeout: the others elect a new leader and
  // commit a write. On SIGCONT the old leader's timer has not fired, yet the read that reaches it
  // first must not be served from the lease it held before the pause.
  const cluster = await leaseCluster();
  try {
    const old = cluster.leaderOf(SHARD)!;
    const first = await cluster.request(old.nodeId, SHARD, {
      kind: "mutation",
      command: put("k", "v1"),
    });
    assert.equal(first.kind, "ok");
    await cluster.tick();
    cluster.pause(old.nodeId);
    const others = [...cluster.nodes.keys()].filter((n) => n !== old.nodeId);
    const newLeader = () => others.find((n) => cluster.node(n).driver.replicas()[0].isLeader());
    await cluster.until(() => newLeader() !== undefined, "a new leader while the old one sleeps");
    const second = await cluster.request(newLeader()!, SHARD, {
      kind: "mutation",
      command: put("k", "v2"),
    });
    assert.equal(second.kind, "ok");
    assert.ok(old.driver.replicas()[0].isLeader(), "the paused leader still believes it leads");
    cluster.resume(old.nodeId);
    const [stale] = await cluster.settle([
      cluster.submit(old.nodeId, SHARD, { kind: "get", key: enc("k") }),
    ]);
    if (stale.kind === "ok") assert.equal(getValue(stale), "v2");
    else assert.equal(stale.kind, "notLeader", JSON.stringify(stale));
  } finally {
    await cluster.close();
  }
});

Deno.test("Driver: a follower back from a pause counts only the ticks after it hears its leader", async () => {
  // The follower's pause ends with its leader's heartbeat and its missed ticks taken in one turn.
  // Were the ticks counted after the heartbeat, its promise not to vote (which the leader's lease
  // rests on) would run out within a tick instead of an election timeout after it heard the leader.
  const cluster = await leaseCluster();
  try {
    const leader = cluster.leaderOf(SHARD)!;
    const paused = [...cluster.nodes.keys()].find((n) => n !== leader.nodeId)!;
    cluster.pause(paused);
    for (let i = 0; i < 3 * LEASE_TUNING.electionTicks; i++) await cluster.tick();
    cluster.resume(paused);
    // The leader's next heartbeat reaches the follower before its own timer fires.
    await cluster.tickExcept([paused]);
    const status = cluster.node(paused).driver.replicas()[0].node.status();
    assert.equal(status.leader, leader.driver.replicas()[0].peerId);
    assert.ok(
      status.promiseTicks >= LEASE_TUNING.electionTicks - 1,
      `${status.promiseTicks} ticks of promise left right after hearing the leader`,
    );
  } finally {
    await cluster.close();
  }
});

Deno.test("pingEveryTicks: three pings per election timeout, at least one each tick", () => {
  assert.equal(pingEveryTicks(10), 3);
  assert.equal(pingEveryTicks(30), 10);
  assert.equal(pingEveryTicks(5), 1);
  assert.equal(pingEveryTicks(2), 1);
});
