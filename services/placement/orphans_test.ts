// Checks which replicas placement deletes as orphans: only those outside the configuration of a
// shard that has a leader and no move in flight, and only once seen so for the grace period.
import assert from "node:assert/strict";
import type { HostedReplica, Member, ShardView } from "./cluster_model.ts";
import { findOrphans, ORPHAN_GRACE_MS, orphansDue } from "./orphans.ts";
import { shardId as toShardId } from "@tinykv/shard";

const member = (peerId: number, nodeId: string): Member => ({ peerId, nodeId, address: nodeId });
const hosted = (peerId: number): HostedReplica => ({
  peerId,
  role: 1,
  appliedIndex: 5,
  confEpoch: 3,
});

function view(
  id: number,
  options: { leader?: boolean; hosted: Array<[string, number]> },
): ShardView {
  const voters = [member(11, "n1"), member(12, "n2"), member(13, "n3")];
  return {
    id: toShardId(id),
    range: { lo: 0, hi: 2 ** 32 },
    voters,
    learners: [member(14, "n4")],
    leader: options.leader === false ? undefined : voters[0],
    confEpoch: 7,
    commitIndex: 10,
    progress: new Map(),
    sizeBytes: 0,
    hosted: new Map(options.hosted.map(([node, peer]) => [node, hosted(peer)])),
  };
}

Deno.test("findOrphans() lists replicas outside a led shard's configuration, not busy shards", () => {
  const views = new Map([
    [1, view(1, { hosted: [["n1", 11], ["n4", 14], ["n5", 15]] })],
    [2, view(2, { hosted: [["n5", 25]] })],
    [3, view(3, { leader: false, hosted: [["n5", 35]] })],
  ]);
  assert.deepEqual(findOrphans(views, new Set([2])), [
    { shardId: toShardId(1), nodeId: "n5", peerId: 15, confEpoch: 7 },
  ]);
});

Deno.test("orphansDue() waits for the grace period and forgets a replica that joined", () => {
  const seen = new Map<string, number>();
  const orphan = { shardId: toShardId(1), nodeId: "n5", peerId: 15, confEpoch: 7 };
  assert.deepEqual(orphansDue(seen, [orphan], 1000), []);
  assert.deepEqual(orphansDue(seen, [orphan], 1000 + ORPHAN_GRACE_MS - 1), []);
  assert.deepEqual(orphansDue(seen, [orphan], 1000 + ORPHAN_GRACE_MS), [orphan]);
  // Not orphaned in one round: the clock starts again.
  assert.deepEqual(orphansDue(seen, [], 2000 + ORPHAN_GRACE_MS), []);
  assert.deepEqual(orphansDue(seen, [orphan], 3000 + ORPHAN_GRACE_MS), []);
});
