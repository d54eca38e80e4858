// Real kvnode processes (real LMDB, real gRPC, real ZooKeeper) on 127.0.0.1, bootstrapped through
// the node-admin API: writes survive kill -9 of a minority and of every node; a lagging node
// catches up by snapshot; a membership change under writes loses nothing; duplicates apply once
// with 200 requests in flight on one client id; replicas agree on their data hash; stale epochs
// and foreign clusters are refused; many client channels opening and closing do not kill a node.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { KvNodeService, type NodeStatusResponse, type ResponseItem } from "@tinykv/proto/tinykv/v1";
import { rpcOk } from "@tinykv/rpc";
import { assertSurvivesChannelChurn } from "@tinykv/rpc/testing";
import { connectZooKeeper } from "@tinykv/zk";
import { startZooKeeper } from "@tinykv/zk/server";
import { waitFor } from "@tinykv/zk/testing";
import { shardId } from "@tinykv/shard";
import { NodeStore, PREFIX, prefixEnd, readU64 } from "../services/kvnode/node_store.ts";
import { type ClusterNode, KvNodeCluster } from "./_harness/kvnode_cluster.ts";
import { ServiceProcess } from "./_harness/processes.ts";

/** The shard the single-shard tests use. */
const SHARD = shardId(1);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function put(key: string, value: string, clientId = "", seq = 0, ackSeq = 0) {
  return { put: { key: enc(key), value: enc(value), clientId, seq, ackSeq } };
}

function assertOk(item: ResponseItem): ResponseItem {
  assert.equal(item.failure, undefined, `request failed: ${JSON.stringify(item.failure)}`);
  return item;
}

async function writeAll(cluster: KvNodeCluster, prefix: string, count: number) {
  const writes = [];
  for (let i = 0; i < count; i++) {
    const key = `${prefix}-${i}`;
    writes.push(cluster.send(cluster.shardOf(enc(key)), put(key, `v${i}`)).then(assertOk));
  }
  await Promise.all(writes);
}

async function readAll(cluster: KvNodeCluster, prefix: string, count: number) {
  for (let i = 0; i < count; i++) {
    const key = `${prefix}-${i}`;
    const answer = assertOk(
      await cluster.send(cluster.shardOf(enc(key)), {
        get: { key: enc(key), serializable: false },
      }),
    );
    assert.equal(answer.get?.found, true, `key "${key}" is missing`);
    assert.equal(dec(answer.get!.value), `v${i}`);
  }
}

async function assertHashesAgree(cluster: KvNodeCluster): Promise<void> {
  let detail = "";
  await waitFor(async () => {
    const byShard = new Map<number, Set<string>>();
    const applied = new Map<number, Set<number>>();
    for (const status of await cluster.statuses(true)) {
      for (const replica of status.replicas) {
        if (!byShard.has(replica.shardId)) byShard.set(replica.shardId, new Set());
        if (!applied.has(replica.shardId)) applied.set(replica.shardId, new Set());
        byShard.get(replica.shardId)!.add(replica.dataHash);
        applied.get(replica.shardId)!.add(replica.appliedIndex);
      }
    }
    detail = JSON.stringify([...byShard].map(([s, h]) => [s, h.size, [...applied.get(s)!]]));
    return [...byShard.values()].every((hashes) => hashes.size === 1);
  }, { timeoutMs: 20_000, what: `equal data hashes per shard: ${detail}` });
}

async function withCluster(
  options: { nodes: number; shards: number; flags?: string[] },
  test: (cluster: KvNodeCluster) => Promise<void>,
): Promise<void> {
  const cluster = await KvNodeCluster.start(options);
  try {
    await cluster.bootstrap();
    await test(cluster);
  } catch (error) {
    for (const node of cluster.nodes) {
      console.error(`--- ${node.process.name} (${node.nodeId}) output:\n${node.process.output}`);
    }
    throw error;
  } finally {
    await cluster.close();
  }
}

Deno.test("kvnodes: writes survive kill -9 of a minority and of every node, replicas agree", async () => {
  await withCluster({ nodes: 3, shards: 3 }, async (cluster) => {
    await writeAll(cluster, "before", 60);
    const victim = cluster.nodes[1];
    await victim.process.kill();
    await cluster.waitForLeaders();
    await writeAll(cluster, "minority-down", 60);
    await cluster.restart(victim);
    for (const node of cluster.nodes) await node.process.kill();
    for (const node of cluster.nodes) await cluster.restart(node);
    await cluster.waitForLeaders();
    await readAll(cluster, "before", 60);
    await readAll(cluster, "minority-down", 60);
    await assertHashesAgree(cluster);
    // Each status counts the reads its replicas served since the restart, and its data file.
    const statuses = await cluster.statuses();
    const reads = statuses.flatMap((s) => s.replicas).reduce((sum, r) => sum + r.reads, 0);
    assert.ok(reads >= 120, `the replicas counted ${reads} reads of the 120 made`);
    for (const status of statuses) assert.ok(status.diskBytes > 0, `${status.nodeId}: no disk`);
    await writeAll(cluster, "after", 30);
    const proposals = (await cluster.statuses()).flatMap((s) => s.replicas)
      .reduce((sum, r) => sum + r.proposals, 0);
    assert.ok(proposals >= 30, `the leaders counted ${proposals} proposals of the 30 writes`);
    // A status since an earlier one holds only the replicas that changed: after writes to every
    // shard, all three; never one that did not.
    const node = cluster.nodes[0];
    const ask = async (sinceVersion: number, sinceStartedAtMs: number) => {
      const answer = await cluster.call(node, "Status", {
        withDataHash: false,
        resetTurnStats: false,
        sinceVersion,
        sinceStartedAtMs,
      });
      assert.equal(answer.kind, "ok", `Status: ${JSON.stringify(answer)}`);
      return answer.kind === "ok" ? answer.response as NodeStatusResponse : assert.fail();
    };
    const whole = await ask(0, 0);
    assert.equal(whole.delta, false);
    assert.equal(whole.replicas.length, 3);
    assert.ok(whole.statusVersion > 0, "a status version");
    await writeAll(cluster, "delta", 30);
    const applied = (status: NodeStatusResponse, shard: number) =>
      status.replicas.find((r) => r.shardId === shard)?.appliedIndex ?? 0;
    let delta = whole;
    // A follower applies the writes with the leader's next message: wait for all three.
    await waitFor(async () => {
      delta = await ask(whole.statusVersion, whole.startedAtMs);
      assert.equal(delta.delta, true);
      return [1, 2, 3].every((shard) => applied(delta, shard) > applied(whole, shard));
    }, { timeoutMs: 10_000, what: "a delta with every shard's writes applied" });
    assert.ok(delta.statusVersion > whole.statusVersion, "the version moved with the writes");
    assert.equal(delta.replicas.length, 3);
    // Once the shards are quiet, a delta is empty and the version stays.
    let since = delta.statusVersion;
    await waitFor(async () => {
      const quiet = await ask(since, whole.startedAtMs);
      const empty = quiet.delta && quiet.replicas.length === 0 && quiet.statusVersion === since;
      since = quiet.statusVersion;
      return empty;
    }, { timeoutMs: 10_000, what: "an empty delta once the shards are quiet" });
    // Another process's start time: every replica.
    const other = await ask(delta.statusVersion, whole.startedAtMs + 1);
    assert.equal(other.delta, false);
    assert.equal(other.replicas.length, 3);
  });
});

Deno.test("kvnodes: a follower that fell far behind catches up by snapshot", async () => {
  await withCluster(
    { nodes: 3, shards: 1, flags: ["--raft.snapshot_entries=32"] },
    async (cluster) => {
      const lagging = cluster.nodes[2];
      await writeAll(cluster, "before", 20);
      await assertHashesAgree(cluster);
      await lagging.process.stop();
      await writeAll(cluster, "while-down", 200);
      // A follower applies (and so compacts) once the commit index reaches it, with the next
      // append or heartbeat.
      let entries: number[] = [];
      await waitFor(async () => {
        entries = (await cluster.statuses()).flatMap((s) => s.replicas.map((r) => r.logEntries));
        return entries.every((count) => count < 200);
      }, { timeoutMs: 10_000, what: "the running replicas to compact their logs" }).catch((e) => {
        throw new Error(`${e}: log entries ${JSON.stringify(entries)}`);
      });
      await cluster.restart(lagging);
      await waitFor(async () => {
        const status = await cluster.call(lagging, "Status", {
          withDataHash: false,
          resetTurnStats: false,
          sinceVersion: 0,
          sinceStartedAtMs: 0,
        });
        return status.kind === "ok" && status.response.replicas[0].dataKeys === 220;
      }, { timeoutMs: 20_000, what: "the lagging node to hold all 220 keys" });
      await assertHashesAgree(cluster);
      // The snapshot was staged into a new generation of the replica's data as it arrived, then
      // installed; the old generation is deleted in the background. After a restart the replica
      // serves the installed generation.
      await waitFor(
        async () => (await cluster.logOf(lagging)).includes("Deleted an unused generation"),
        { timeoutMs: 20_000, what: "the replaced generation to be deleted" },
      );
      await lagging.process.kill();
      await cluster.restart(lagging);
      await cluster.waitForLeaders();
      await readAll(cluster, "before", 20);
      await readAll(cluster, "while-down", 200);
      await assertHashesAgree(cluster);
    },
  );
});

Deno.test("kvnodes: a replica moves under concurrent writes and nothing is lost", async () => {
  await withCluster({ nodes: 4, shards: 1 }, async (cluster) => {
    const [n1, n2, n3, n4] = cluster.nodes;
    const members = [n1, n2, n3].map((n, i) => cluster.peer(n, 100 + i));
    const newPeer = cluster.peer(n4, 900);
    const created = await cluster.call(n4, "CreateReplica", {
      clusterId: cluster.clusterId,
      shardId: 1,
      rangeLo: 0,
      rangeHi: 2 ** 32,
      peerId: 900,
      voters: members,
      learners: [newPeer],
      confEpoch: 0,
      join: true,
    });
    assert.equal(created.kind, "ok");
    let stop = false;
    let written = 0;
    const writer = (async () => {
      while (!stop) {
        assertOk(await cluster.send(SHARD, put(`moving-${written}`, `v${written}`)));
        written++;
      }
    })();
    try {
      assert.equal((await cluster.changeMembership(SHARD, "addLearner", newPeer)).kind, "ok");
      assert.equal((await cluster.changeMembership(SHARD, "promote", newPeer)).kind, "ok");
      const leader = await cluster.leaderOf(SHARD);
      const leaving = [n1, n2, n3].find((n) => n !== leader.node)!;
      const leavingPeer = members[[n1, n2, n3].indexOf(leaving)];
      assert.equal((await cluster.changeMembership(SHARD, "remove", leavingPeer)).kind, "ok");
      await waitFor(async () => {
        const status = await cluster.call(leaving, "Status", {
          withDataHash: false,
          resetTurnStats: false,
          sinceVersion: 0,
          sinceStartedAtMs: 0,
        });
        return status.kind === "ok" && status.response.replicas.length === 0;
      }, { timeoutMs: 20_000, what: "the removed replica to delete itself" });
    } finally {
      stop = true;
      await writer;
    }
    assert.ok(written > 0);
    await readAll(cluster, "moving", written);
    await assertHashesAgree(cluster);
  });
});

Deno.test("kvnodes: 200 in-flight mutations on one client id, retried out of order, apply once", async () => {
  await withCluster({ nodes: 3, shards: 1 }, async (cluster) => {
    const append = (seq: number) =>
      cluster.send(SHARD, {
        append: { key: enc("tokens"), value: enc(`${seq},`), clientId: "c-200", seq, ackSeq: 0 },
      });
    const first = await Promise.all(Array.from({ length: 200 }, (_, i) => append(i + 1)));
    first.forEach(assertOk);
    const retries = Array.from({ length: 200 }, (_, i) => 200 - i).filter((s) => s % 3 === 0);
    (await Promise.all(retries.map(append))).forEach(assertOk);
    const read = assertOk(
      await cluster.send(SHARD, { get: { key: enc("tokens"), serializable: false } }),
    );
    const tokens = dec(read.get!.value).split(",").filter((t) => t !== "");
    assert.equal(tokens.length, 200);
    assert.equal(new Set(tokens).size, 200);
  });
});

Deno.test("kvnodes: stale epochs, foreign clusters and bad input are refused precisely", async () => {
  await withCluster({ nodes: 3, shards: 1 }, async (cluster) => {
    const leader = await cluster.leaderOf(SHARD);
    const stale = await cluster.call(leader.node, "ChangeMembership", {
      clusterId: cluster.clusterId,
      shardId: 1,
      expectedConfEpoch: leader.confEpoch + 7,
      change: 1,
      peer: cluster.peer(leader.node, 999),
      timeoutMs: 1000,
    });
    assert.equal(stale.kind, "failedPrecondition");
    const foreign = await cluster.call(leader.node, "TransferLeader", {
      clusterId: "c-someone-else",
      shardId: 1,
      expectedConfEpoch: leader.confEpoch,
      targetPeerId: 101,
      timeoutMs: 1000,
    });
    assert.equal(foreign.kind, "failedPrecondition");
    assert.match("message" in foreign ? foreign.message : "", /belongs to cluster/);
    const empty = await cluster.send(SHARD, put("", "v"));
    assert.equal(empty.failure?.kind, 3, "an empty key is INVALID");
    assert.match(empty.failure!.message, /minimum is 1/);
    const huge = await cluster.send(SHARD, put("k", "x".repeat(1024 * 1024 + 1)));
    assert.equal(huge.failure?.kind, 3, "an oversized value is INVALID");
    const unknownShard = await cluster.send(
      shardId(77),
      { get: { key: enc("k"), serializable: false } },
      1000,
    );
    assert.equal(unknownShard.failure?.kind, 4, "an unknown shard is UNAVAILABLE");
    // The node still serves.
    assertOk(await cluster.send(SHARD, put("after", "bad input")));
  });
});

Deno.test("kvnodes: a data dir of another cluster is refused at start", async () => {
  const cluster = await KvNodeCluster.start({ nodes: 1, shards: 1 });
  try {
    const node: ClusterNode = cluster.nodes[0];
    await node.process.stop();
    const other = new ServiceProcess("kvnode (other cluster)", node.process.script, [
      ...node.process.args.filter((a) => !a.startsWith("--zookeeper.cluster=")),
      "--zookeeper.cluster=another",
    ]);
    await assert.rejects(other.start(/serving on/), /belongs to cluster/);
  } finally {
    await cluster.close();
  }
});

Deno.test("kvnodes: a kvnode survives many client channels opening and closing", async () => {
  await withCluster({ nodes: 3, shards: 1 }, async (cluster) => {
    const leader = await cluster.leaderOf(SHARD);
    await assertSurvivesChannelChurn({
      definition: KvNodeService,
      address: leader.node.address,
      process: undefined,
      channels: 100,
      callsPerChannel: 2,
      makeCall: (client) =>
        new Promise((resolve) => {
          const call = client.Batch(new grpc.Metadata(), {});
          call.on("data", () => {
            call.end();
            resolve(rpcOk(undefined));
          });
          call.on("error", (error: Error) =>
            resolve({ kind: "unavailable", message: error.message }));
          call.write({
            items: [{
              id: 1,
              shardId: 1,
              confEpoch: 0,
              timeoutMs: 2000,
              traceId: "",
              get: { key: enc("k"), serializable: true },
            }],
          });
        }),
    });
    assert.ok(leader.node.process.running, "the kvnode is still running");
    assertOk(await cluster.send(SHARD, put("after-churn", "ok")));
  });
});

Deno.test("kvnodes: the data plane keeps serving while ZooKeeper is down", async () => {
  const zkDir = await Deno.makeTempDir({ prefix: "tinykv-private-zk-" });
  let zk = await startZooKeeper({ dataDir: zkDir });
  const cluster = await KvNodeCluster.start({ nodes: 3, shards: 2, zkConnect: zk.connectString });
  try {
    await cluster.bootstrap();
    await writeAll(cluster, "zk-up", 20);
    await zk.stop();
    await writeAll(cluster, "zk-down", 20);
    // A node restarted while ZooKeeper is down knows its cluster and serves at once.
    const restarted = cluster.nodes[0];
    await restarted.process.stop();
    await cluster.restart(restarted);
    await cluster.waitForLeaders();
    await readAll(cluster, "zk-up", 20);
    await readAll(cluster, "zk-down", 20);
    // Once ZooKeeper is back, every node registers again.
    zk = await startZooKeeper({ dataDir: zkDir, port: zk.port });
    const client = await connectZooKeeper({
      connectString: zk.connectString,
      root: `${cluster.zkRoot}/${cluster.clusterName}`,
    });
    try {
      await waitFor(async () => ((await client.children("/nodes")) ?? []).length === 3, {
        timeoutMs: 30_000,
        what: "three registered kvnodes",
      });
    } finally {
      await client.close();
    }
  } finally {
    await cluster.close();
    await zk.stop();
    await Deno.remove(zkDir, { recursive: true });
  }
});

Deno.test("kvnodes: a corrupt log entry stops the node at start, naming shard and index", async () => {
  await withCluster({ nodes: 3, shards: 1 }, async (cluster) => {
    await writeAll(cluster, "before-corruption", 10);
    const node = cluster.nodes[2];
    await node.process.stop();
    const store = NodeStore.open({
      dir: `${cluster.dataDir}/kvnode-${node.port}`,
      mapBytes: 16 * 1024 * 1024 * 1024,
    });
    let corrupted = 0;
    try {
      const logPrefix = new Uint8Array([PREFIX.log]);
      const [first] = [...store.range(logPrefix, prefixEnd(logPrefix))];
      corrupted = readU64(first.key, 9);
      const value = first.value.slice();
      value[value.length - 1] ^= 0xff;
      await store.write(() => store.put(first.key, value));
    } finally {
      await store.close();
    }
    const restart = cluster.restart(node);
    await assert.rejects(
      restart,
      new RegExp(
        `Replica of shard 1 \\(peer \\d+\\) has a corrupt log entry at index ${corrupted}`,
      ),
    );
  });
});
