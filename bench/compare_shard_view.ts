/**
 * What the kvnodes' `NodeAdmin.Status` answers say about a TinyKV cluster as a whole: which
 * shards have a leader, where, and whether the cluster is whole again after a kill (every shard
 * led, with all of its voters present and following that leader). Pure: the caller asks the
 * kvnodes and passes the answers (undefined for a node that did not answer).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { viewOf } from "./compare_shard_view.ts";
 *
 * const view = viewOf([undefined], { shards: 1, replicaCount: 3 });
 * assert.equal(view.shardsWithLeader, 0);
 * assert.equal(view.whole, false);
 * ```
 *
 * @module
 */
import type { NodeStatusResponse, ReplicaStatus } from "@tinykv/proto/tinykv/v1";
import { keyHash } from "@tinykv/shard";

/** `ReplicaStatus.Role.LEADER`. */
export const LEADER_ROLE = 4;
/** `ReplicaStatus.Role.FOLLOWER`. */
export const FOLLOWER_ROLE = 1;

/** A shard's leader: which node (index into the statuses) and its replica. */
export interface ShardLeader {
  /** Index of the leader's node in the statuses (kvnodes in port order). */
  readonly nodeIndex: number;
  /** The leader's node id. */
  readonly nodeId: string;
  /** The leader's own replica status. */
  readonly replica: ReplicaStatus;
}

/** The cluster as the kvnodes see it. */
export interface ClusterView {
  /** Kvnodes that answered. */
  readonly nodesAnswering: number;
  /** Each shard with a leader, by shard id (the leader with the highest term if several claim). */
  readonly leaders: ReadonlyMap<number, ShardLeader>;
  /** How many shards have a leader. */
  readonly shardsWithLeader: number;
  /**
   * Every node answered, every shard 1..shards has a leader with `replicaCount` voters, and each
   * voter's node reports that shard as a follower (or the leader) of that leader.
   */
  readonly whole: boolean;
}

/** Summarizes the status answers of every kvnode (undefined: the node did not answer). */
export function viewOf(
  statuses: readonly (NodeStatusResponse | undefined)[],
  expected: { shards: number; replicaCount: number },
): ClusterView {
  const leaders = leadersOf(statuses);
  const answering = statuses.filter((s) => s !== undefined) as NodeStatusResponse[];
  let whole = answering.length === statuses.length;
  for (let shard = 1; whole && shard <= expected.shards; shard++) {
    const leader = leaders.get(shard);
    whole = leader !== undefined && leader.replica.voters.length === expected.replicaCount &&
      votersFollow(leader.replica, answering);
  }
  return { nodesAnswering: answering.length, leaders, shardsWithLeader: leaders.size, whole };
}

function leadersOf(
  statuses: readonly (NodeStatusResponse | undefined)[],
): Map<number, ShardLeader> {
  const leaders = new Map<number, ShardLeader>();
  statuses.forEach((status, nodeIndex) => {
    for (const replica of status?.replicas ?? []) {
      if (replica.role !== LEADER_ROLE) continue;
      const known = leaders.get(replica.shardId);
      if (known === undefined || known.replica.term < replica.term) {
        leaders.set(replica.shardId, { nodeIndex, nodeId: status!.nodeId, replica });
      }
    }
  });
  return leaders;
}

/** Whether every voter of `leader`'s shard runs on an answering node and follows `leader`. */
function votersFollow(leader: ReplicaStatus, statuses: readonly NodeStatusResponse[]): boolean {
  return leader.voters.every((voter) => {
    if (voter.peerId === leader.peerId) return true;
    const node = statuses.find((s) => s.nodeId === voter.nodeId);
    const replica = node?.replicas.find((r) => r.shardId === leader.shardId);
    return replica !== undefined && replica.peerId === voter.peerId &&
      replica.role === FOLLOWER_ROLE && replica.leaderPeerId === leader.peerId;
  });
}

/**
 * Which node leads each shard, as one string (shard:node pairs in shard order): two views with
 * the same signature have the same leaders where they were.
 */
export function leaderSignature(view: ClusterView): string {
  return [...view.leaders.entries()]
    .sort(([a], [b]) => a - b)
    .map(([shard, leader]) => `${shard}:${leader.nodeId}`)
    .join(",");
}

/**
 * Picks the shard whose leader's node has run the longest (`startedAtMs`, earliest first; lowest
 * shard id on ties), so that repeated kills spread over the nodes. Undefined when no shard has a
 * leader.
 */
export function pickVictimShard(
  view: ClusterView,
  statuses: readonly (NodeStatusResponse | undefined)[],
): ShardLeader | undefined {
  let best: ShardLeader | undefined;
  const startedAt = (l: ShardLeader) => statuses[l.nodeIndex]?.startedAtMs ?? Infinity;
  for (
    const leader of [...view.leaders.values()].sort((a, b) => a.replica.shardId - b.replica.shardId)
  ) {
    if (best === undefined || startedAt(leader) < startedAt(best)) best = leader;
  }
  return best;
}

/** Keys tried by {@linkcode keyInRange} before it gives up. */
const KEY_SEARCH_MAX = 200_000;

/**
 * The first key `<prefix><n>` (n = 0, 1, …) whose FNV-1a hash falls in `[lo, hi)`: a key of the
 * shard owning that hash range.
 */
export function keyInRange(prefix: string, range: { lo: number; hi: number }): Uint8Array {
  const encoder = new TextEncoder();
  for (let n = 0; n < KEY_SEARCH_MAX; n++) {
    const key = encoder.encode(`${prefix}${n}`);
    const hash = keyHash(key);
    if (hash >= range.lo && hash < range.hi) return key;
  }
  throw new Error(
    `Cannot find a key for hash range [${range.lo}, ${range.hi}) in ${KEY_SEARCH_MAX} tries`,
  );
}
