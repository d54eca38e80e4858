/**
 * fast-check generators of valid shard maps, shared by this folder's tests.
 *
 * @module
 */

import fc from "fast-check";
import { HASH_SPACE } from "./hash_range.ts";
import { type NodeId, nodeId, shardId } from "./ids.ts";
import type { ShardEntry, ShardMap } from "./shard_map.ts";

/** Node ids drawn from a small pool, so that members collide often enough to matter. */
const NODE_POOL: NodeId[] = Array.from({ length: 12 }, (_, i) => nodeId(`n${i + 1}`));

/** Options for {@linkcode arbitraryShardMap}. */
export interface ArbitraryShardMapOptions {
  /** The most shards in a generated map. */
  shardsMax?: number;
}

/** Generates a valid shard map: random cut points, ids, members, hints and epochs. */
export function arbitraryShardMap(options: ArbitraryShardMapOptions = {}): fc.Arbitrary<ShardMap> {
  const shardsMax = options.shardsMax ?? 64;
  const cuts = fc.uniqueArray(fc.integer({ min: 1, max: HASH_SPACE - 1 }), {
    maxLength: shardsMax - 1,
  });
  return cuts.chain((cutList) => {
    const bounds = [0, ...cutList.sort((a, b) => a - b), HASH_SPACE];
    const count = bounds.length - 1;
    return fc.record({
      version: fc.nat(),
      clusterId: fc.option(fc.string({ minLength: 1, maxLength: 20 }), { nil: undefined }),
      ids: fc.uniqueArray(fc.nat({ max: 100_000 }), { minLength: count, maxLength: count }),
      members: fc.array(arbitraryMembers(), { minLength: count, maxLength: count }),
    }).map(({ version, clusterId, ids, members }): ShardMap => {
      const shards = members.map((member, i): ShardEntry => ({
        id: shardId(ids[i]),
        range: { lo: bounds[i], hi: bounds[i + 1] },
        ...member,
      }));
      return clusterId === undefined ? { version, shards } : { version, clusterId, shards };
    });
  });
}

type Members = Omit<ShardEntry, "id" | "range">;

function arbitraryMembers(): fc.Arbitrary<Members> {
  return fc.record({
    nodes: fc.shuffledSubarray(NODE_POOL, { minLength: 1, maxLength: 8 }),
    replicaCount: fc.integer({ min: 1, max: 8 }),
    hintIndex: fc.option(fc.nat(), { nil: undefined }),
    confEpoch: fc.nat(),
  }).map(({ nodes, replicaCount, hintIndex, confEpoch }): Members => {
    const replicas = nodes.slice(0, Math.min(replicaCount, nodes.length));
    const learners = nodes.slice(replicas.length);
    const leaderHint = hintIndex === undefined ? undefined : replicas[hintIndex % replicas.length];
    return leaderHint === undefined
      ? { replicas, learners, confEpoch }
      : { replicas, learners, leaderHint, confEpoch };
  });
}
