// Checks the kvnode's metrics on a real driver leading one shard over a MemoryNodeStore: after a
// write and a linearizable read, the replica's role, term, indexes, log and data sizes, proposals
// and ReadIndex rounds read right at scrape time, and the turn histograms counted the turns.
import assert from "node:assert/strict";
import type { Command } from "@tinykv/proto/tinykv/v1";
import { newRegistry } from "@tinykv/metrics";
import type { LogIndex, PeerId } from "@tinykv/raft";
import { HASH_SPACE, shardId } from "@tinykv/shard";
import { Driver } from "./driver.ts";
import { KvApplication } from "./kv_app.ts";
import { MemoryNodeStore } from "./memory_node_store.ts";
import { kvnodeMetrics } from "./metrics.ts";
import { TEST_TUNING } from "./_test_cluster.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const SHARD = shardId(3);

function put(key: string, value: string): Command {
  const request = { key: enc(key), value: enc(value), clientId: "", seq: 0, ackSeq: 0 };
  return { stampMs: 0, valueBytesMax: 0, sessionTtlMs: 0, put: request };
}

Deno.test("kvnodeMetrics() reads the replicas at scrape time and times the driver's turns", async () => {
  const registry = newRegistry();
  const metrics = kvnodeMetrics(registry);
  const driver = new Driver({
    store: new MemoryNodeStore(),
    nodeId: "n1",
    tuning: TEST_TUNING,
    outbound: { send() {}, flush() {}, ping() {} },
    clock: { now: () => 1_700_000_000_000 },
    log: { info() {}, warn() {}, error() {} },
    seed: 1,
    app: new KvApplication(),
    observer: metrics.observer,
  });
  assert.equal(driver.load().kind, "ok");
  driver.start();
  metrics.attach(driver, () => ({
    envelopesSent: 4,
    batchesSent: 2,
    bytesSent: 300,
    droppedQueueFull: 1,
    droppedOversized: 0,
    droppedInvalid: 0,
    queuedBytes: 0,
    streamFailures: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsDropped: 0,
  }));
  try {
    const created = await driver.createReplica({
      shardId: SHARD,
      peerId: 11,
      range: { lo: 0, hi: HASH_SPACE },
      peers: [{ peerId: 11, nodeId: "n1", address: "mem:n1" }],
      initialConfState: { voters: [11 as PeerId], learners: [], epoch: 0 as LogIndex },
    });
    assert.equal(created.kind, "ok");
    assert.equal(await driver.campaign(SHARD), true);
    await driver.whenIdle();
    const deadlineMs = 1_700_000_060_000;
    const submit = (op: Parameters<typeof driver.submit>[0]["op"]) =>
      driver.submit({ shardId: SHARD, confEpoch: 0, op, deadlineMs });
    assert.equal((await submit({ kind: "mutation", command: put("k", "value") })).kind, "ok");
    const read = await submit({ kind: "get", key: enc("k"), serializable: false });
    assert.equal(read.kind, "ok");
    const text = await registry.metrics();
    const line = (name: string) => new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1];
    assert.equal(line(`tinykv_kvnode_replica_role\\{shard="3",role="leader"\\}`), "1");
    assert.equal(line(`tinykv_kvnode_replica_role\\{shard="3",role="follower"\\}`), "0");
    assert.equal(line(`tinykv_kvnode_replica_term\\{shard="3"\\}`), "1");
    const applied = Number(line(`tinykv_kvnode_replica_applied_index\\{shard="3"\\}`));
    assert.ok(applied >= 2, `applied ${applied}: the leader's entry and the put`);
    assert.equal(line(`tinykv_kvnode_replica_commit_index\\{shard="3"\\}`), String(applied));
    assert.equal(line(`tinykv_kvnode_replica_data_keys\\{shard="3"\\}`), "1");
    assert.equal(line(`tinykv_kvnode_replica_data_bytes\\{shard="3"\\}`), String(1 + 5));
    assert.equal(line(`tinykv_kvnode_replica_proposals_total\\{shard="3"\\}`), "1");
    assert.equal(line(`tinykv_kvnode_replica_read_index_rounds_total\\{shard="3"\\}`), "1");
    assert.equal(line(`tinykv_kvnode_replica_lease_reads_total\\{shard="3"\\}`), "0");
    assert.ok(Number(line(`tinykv_kvnode_replica_log_entries\\{shard="3"\\}`)) >= 2);
    assert.ok(Number(line("tinykv_kvnode_turn_duration_seconds_count")) >= 2);
    assert.equal(
      line("tinykv_kvnode_lmdb_commit_duration_seconds_count"),
      line("tinykv_kvnode_turn_duration_seconds_count"),
    );
    assert.ok(Number(line("tinykv_kvnode_turn_entries_sum")) >= 2);
    const unsynced = Number(line("tinykv_kvnode_turns_unsynced_total"));
    assert.ok(
      unsynced >= 0 && unsynced < Number(line("tinykv_kvnode_turn_duration_seconds_count")),
      `turns_unsynced_total ${unsynced}`,
    );
    assert.equal(line("tinykv_kvnode_transport_sent_bytes_total"), "300");
    assert.equal(line("tinykv_kvnode_transport_dropped_messages_total"), "1");
    assert.equal(line("tinykv_kvnode_inbox_depth"), "0");
    assert.match(text, /# HELP tinykv_kvnode_replica_term The current term\. Per hosted replica\./);
  } finally {
    await driver.stop();
  }
});
