/**
 * Tests of the cluster view built from kvnode statuses (compare_shard_view.ts): a healthy
 * three-node cluster is whole, and each way it can fall short — a node silent, a shard
 * leaderless, a voter missing or following someone else, a voter short — is not; also the choice
 * of the failover victim, the leader signature and keys of a given hash range.
 */
import assert from "node:assert/strict";
import { NodeStatusResponse, ReplicaStatus } from "@tinykv/proto/tinykv/v1";
import { keyHash, splitEvenly } from "@tinykv/shard";
import {
  FOLLOWER_ROLE,
  keyInRange,
  LEADER_ROLE,
  leaderSignature,
  pickVictimShard,
  viewOf,
} from "./compare_shard_view.ts";

const NODES = ["n-a", "n-b", "n-c"];
const EXPECTED = { shards: 2, replicaCount: 3 };

/** Shard s is led by node `leaders[s - 1]`; peer ids are `s * 10 + node index`. */
function cluster(leaders: number[], startedAtMs = [1000, 2000, 3000]): NodeStatusResponse[] {
  return NODES.map((nodeId, nodeIndex) =>
    NodeStatusResponse.create({
      nodeId,
      address: `127.0.0.1:${24331 + nodeIndex}`,
      startedAtMs: startedAtMs[nodeIndex],
      replicas: leaders.map((leader, i) => {
        const shardId = i + 1;
        return ReplicaStatus.create({
          shardId,
          peerId: shardId * 10 + nodeIndex,
          role: nodeIndex === leader ? LEADER_ROLE : FOLLOWER_ROLE,
          term: 2,
          leaderPeerId: shardId * 10 + leader,
          voters: NODES.map((n, j) => ({ peerId: shardId * 10 + j, nodeId: n, address: "" })),
          rangeLo: splitEvenly(leaders.length)[i].lo,
          rangeHi: splitEvenly(leaders.length)[i].hi,
        });
      }),
    })
  );
}

Deno.test("viewOf() finds each shard's leader and calls a healthy cluster whole", () => {
  const view = viewOf(cluster([0, 2]), EXPECTED);
  assert.equal(view.nodesAnswering, 3);
  assert.equal(view.shardsWithLeader, 2);
  assert.equal(view.leaders.get(1)?.nodeId, "n-a");
  assert.equal(view.leaders.get(2)?.nodeIndex, 2);
  assert.ok(view.whole);
});

Deno.test("viewOf() is not whole when any node, leader or voter is missing", () => {
  const silent = cluster([0, 2]);
  assert.equal(viewOf([silent[0], undefined, silent[2]], EXPECTED).whole, false);

  const leaderless = cluster([0, 2]);
  leaderless[2].replicas[1].role = FOLLOWER_ROLE;
  const view = viewOf(leaderless, EXPECTED);
  assert.equal(view.shardsWithLeader, 1);
  assert.equal(view.whole, false);

  const lagging = cluster([0, 2]);
  lagging[1].replicas[0].leaderPeerId = 0; // Restarted, has not heard from the leader yet.
  assert.equal(viewOf(lagging, EXPECTED).whole, false);

  const candidate = cluster([0, 2]);
  candidate[1].replicas[1].role = 3;
  assert.equal(viewOf(candidate, EXPECTED).whole, false);

  const missingReplica = cluster([0, 2]);
  missingReplica[1].replicas = missingReplica[1].replicas.slice(0, 1);
  assert.equal(viewOf(missingReplica, EXPECTED).whole, false);

  const twoVoters = cluster([0, 2]);
  twoVoters[0].replicas[0].voters = twoVoters[0].replicas[0].voters.slice(0, 2);
  assert.equal(viewOf(twoVoters, EXPECTED).whole, false);

  assert.equal(viewOf(cluster([0]), EXPECTED).whole, false, "shard 2 does not exist");
});

Deno.test("viewOf() believes the leader with the higher term when two claim a shard", () => {
  const statuses = cluster([0, 2]);
  statuses[1].replicas[0].role = LEADER_ROLE;
  statuses[1].replicas[0].term = 3;
  assert.equal(viewOf(statuses, EXPECTED).leaders.get(1)?.nodeId, "n-b");
});

Deno.test("pickVictimShard() picks a shard led by the node that has run longest", () => {
  const statuses = cluster([1, 2], [5000, 3000, 1000]);
  const victim = pickVictimShard(viewOf(statuses, EXPECTED), statuses);
  assert.equal(victim?.nodeId, "n-c");
  assert.equal(victim?.replica.shardId, 2);
  const tie = cluster([1, 1], [5000, 3000, 1000]);
  assert.equal(pickVictimShard(viewOf(tie, EXPECTED), tie)?.replica.shardId, 1);
  assert.equal(pickVictimShard(viewOf([undefined], EXPECTED), [undefined]), undefined);
});

Deno.test("keyInRange() returns a key whose hash lies in the range", () => {
  for (const range of splitEvenly(10)) {
    const hash = keyHash(keyInRange("failover/", range));
    assert.ok(hash >= range.lo && hash < range.hi, `${hash} in [${range.lo}, ${range.hi})`);
  }
  assert.throws(() => keyInRange("x", { lo: 5, hi: 5 }), /Cannot find a key/);
});

Deno.test("leaderSignature() changes when a leader moves, not when a poll repeats", () => {
  const before = leaderSignature(viewOf(cluster([0, 2]), EXPECTED));
  assert.equal(before, "1:n-a,2:n-c");
  assert.equal(leaderSignature(viewOf(cluster([0, 2]), EXPECTED)), before);
  assert.notEqual(leaderSignature(viewOf(cluster([1, 2]), EXPECTED)), before);
});
