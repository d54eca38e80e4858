/**
 * Builders of kvnode statuses and shard views for the placement unit tests.
 *
 * @module
 */
import type { NodeStatusResponse, ReplicaStatus } from "@tinykv/proto/tinykv/v1";
import type { Member, ShardView } from "./cluster_model.ts";
import { shardId as toShardId } from "@tinykv/shard";

/** A member `n<i>` with peer id `peerId`. */
export function peer(node: string, peerId: number): Member {
  return { peerId, nodeId: node, address: `addr-${node}` };
}

/** A replica status with sensible defaults. */
export function replica(fields: Partial<ReplicaStatus> & { shardId: number }): ReplicaStatus {
  return {
    peerId: 0,
    role: 1,
    term: 1,
    commitIndex: 10,
    appliedIndex: 10,
    confEpoch: 0,
    voters: [],
    learners: [],
    leaderPeerId: 0,
    rangeLo: 0,
    rangeHi: 2 ** 32,
    logEntries: 0,
    logBytes: 0,
    dataKeys: 0,
    dataBytes: 0,
    dataHash: "",
    progress: [],
    proposals: 0,
    reads: 0,
    ...fields,
  };
}

/** A node status. */
export function nodeStatus(node: string, replicas: ReplicaStatus[]): NodeStatusResponse {
  return {
    nodeId: node,
    clusterId: "c",
    address: `addr-${node}`,
    startedAtMs: 0,
    replicas,
    turnMsMax: 0,
    slowTurns: 0,
    turnWriteMs: 0,
    diskBytes: 0,
    statusVersion: 0,
    delta: false,
    removed: [],
  };
}

/** A shard view with defaults: shard 1 over the whole space, voters n1–n3 led by n1. */
export function view(fields: Partial<ShardView> = {}): ShardView {
  const voters = [peer("n1", 1), peer("n2", 2), peer("n3", 3)];
  return {
    id: toShardId(1),
    range: { lo: 0, hi: 2 ** 32 },
    voters,
    learners: [],
    leader: voters[0],
    confEpoch: 4,
    commitIndex: 100,
    progress: new Map([[1, 100], [2, 100], [3, 100]]),
    sizeBytes: 0,
    hosted: new Map(
      voters.map((m) => [m.nodeId, { peerId: m.peerId, role: 1, appliedIndex: 100, confEpoch: 4 }]),
    ),
    ...fields,
  };
}
