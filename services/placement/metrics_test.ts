// Checks placement's metrics: the leader's counters come out with HELP and TYPE lines and moves
// labelled by cause and event; the gauges read the last round's view at scrape time (nodes alive,
// draining, down; shards without a leader or with too few voters on live nodes) and are 0, with
// is_leader 0, on an instance that does not lead.
import assert from "node:assert/strict";
import { newRegistry } from "@tinykv/metrics";
import { shardId } from "@tinykv/shard";
import type { ShardView } from "./cluster_model.ts";
import type { ClusterSnapshot } from "./leader.ts";
import { nodeCounts, placementGauges, PlacementMetrics, underReplicated } from "./metrics.ts";

const member = (node: string, peerId: number) => ({ peerId, nodeId: node, address: `${node}:1` });

function view(id: number, voters: string[], leader?: string): ShardView {
  return {
    id: shardId(id),
    range: { lo: 0, hi: 1 },
    voters: voters.map((node, i) => member(node, id * 10 + i)),
    learners: [],
    leader: leader === undefined ? undefined : member(leader, 0),
    confEpoch: 1,
    commitIndex: 1,
    progress: new Map(),
    sizeBytes: 0,
    hosted: new Map(),
  };
}

const SNAPSHOT: ClusterSnapshot = {
  atMs: 0,
  bootstrapped: true,
  mapVersion: 3,
  registered: ["n1", "n2", "n3"].map((id) => ({ id, address: `${id}:1`, startedAtMs: 0 })),
  downSinceMs: new Map([["n4", 5]]),
  draining: new Set(["n3"]),
  views: new Map([
    [1, view(1, ["n1", "n2", "n3"], "n1")],
    [2, view(2, ["n1", "n2", "n4"])],
  ]),
  tasks: [],
  notes: [],
};

Deno.test("nodeCounts() and underReplicated() read a round's view", () => {
  assert.deepEqual(nodeCounts(SNAPSHOT), { alive: 2, draining: 1, down: 1 });
  assert.deepEqual(nodeCounts(undefined), { alive: 0, draining: 0, down: 0 });
  assert.equal(underReplicated(SNAPSHOT, 3), 1, "shard 2 has a voter on the down n4");
  assert.equal(underReplicated(SNAPSHOT, 2), 0);
});

Deno.test("PlacementMetrics and placementGauges() give Prometheus text with HELP and TYPE", async () => {
  const registry = newRegistry();
  const metrics = new PlacementMetrics(registry);
  let snapshot: ClusterSnapshot | undefined = SNAPSHOT;
  placementGauges(registry, { snapshot: () => snapshot, replicaCount: 3 });
  metrics.round();
  metrics.moveStarted("rebalance");
  metrics.moveEnded("rebalance", "done");
  metrics.moveStarted("operator");
  metrics.planned(0.002);
  let text = await registry.metrics();
  assert.match(text, /# HELP tinykv_placement_rounds_total Rounds of the leader loop\./);
  assert.match(text, /# TYPE tinykv_placement_moves_total counter/);
  assert.match(text, /tinykv_placement_moves_total\{cause="rebalance",event="started"\} 1/);
  assert.match(text, /tinykv_placement_moves_total\{cause="rebalance",event="done"\} 1/);
  assert.match(text, /tinykv_placement_moves_total\{cause="operator",event="started"\} 1/);
  assert.match(text, /tinykv_placement_planning_duration_seconds_count 1/);
  assert.match(text, /tinykv_placement_is_leader 1/);
  assert.match(text, /tinykv_placement_nodes\{state="alive"\} 2/);
  assert.match(text, /tinykv_placement_nodes\{state="down"\} 1/);
  assert.match(text, /tinykv_placement_shards_without_leader 1/);
  assert.match(text, /tinykv_placement_shards_under_replicated 1/);
  snapshot = undefined;
  text = await registry.metrics();
  assert.match(text, /tinykv_placement_is_leader 0/);
  assert.match(text, /tinykv_placement_shards_without_leader 0/);
});
