/**
 * Sharding for TinyKV: where a key lives.
 *
 * - {@linkcode keyHash}: FNV-1a 32-bit over the key's bytes, or only over its hash tag
 *   (`{user42}:cart` hashes `user42`, the Redis Cluster convention), so related keys share a
 *   shard.
 * - {@linkcode HashRange} and {@linkcode splitEvenly}: each shard owns a range `[lo, hi)` of the
 *   2^32 hash space; a new cluster starts with equal ranges.
 * - {@linkcode ShardMap}: the versioned map placement publishes in ZooKeeper, with
 *   {@linkcode validateShardMap}, {@linkcode shardForKey} (binary search over the ranges) and a
 *   byte codec ({@linkcode encodeShardMap}, {@linkcode decodeShardMap}) that rejects bad data
 *   with a typed error.
 * - Key and value limits ({@linkcode KEY_BYTES_MAX}, {@linkcode validateKey}, ...).
 * - The rebalancing planner {@linkcode planMoves}: a pure function from live nodes, shards and
 *   moves in flight to the moves to start now (replace dead replicas, drain, balance replicas
 *   and leaders), each with its reason, within a movement budget; {@linkcode moveSteps} spells a
 *   move out as the Raft conf changes an executor runs.
 *
 * @example Route a key with a two-shard map
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   decodeShardMap,
 *   encodeShardMap,
 *   nodeId,
 *   shardForKey,
 *   shardId,
 *   type ShardMap,
 *   splitEvenly,
 *   validateKey,
 * } from "@tinykv/shard";
 *
 * const replicas = [nodeId("n1"), nodeId("n2"), nodeId("n3")];
 * const map: ShardMap = {
 *   version: 1,
 *   shards: splitEvenly(2).map((range, i) => ({
 *     id: shardId(i),
 *     range,
 *     replicas,
 *     learners: [],
 *     leaderHint: replicas[0],
 *     confEpoch: 1,
 *   })),
 * };
 *
 * const key = new TextEncoder().encode("{user42}:cart");
 * if (validateKey(key).kind !== "ok") throw new Error("bad key");
 * const shard = shardForKey(map, key);
 * assert.equal(shard.leaderHint, "n1");
 *
 * const encoded = encodeShardMap(map);
 * if (encoded.kind !== "ok") throw new Error("unreachable: the map is valid");
 * const decoded = decodeShardMap(encoded.bytes);
 * assert.deepEqual(decoded, { kind: "ok", map });
 * ```
 *
 * @module
 */

export { fnv1a32, hashTag, keyHash } from "./key_hash.ts";
export {
  HASH_SPACE,
  type HashRange,
  isHashRange,
  rangeContains,
  SHARDS_MAX,
  splitEvenly,
} from "./hash_range.ts";
export {
  isNodeId,
  isShardId,
  NODE_ID_LENGTH_MAX,
  type NodeId,
  nodeId,
  type ShardId,
  shardId,
} from "./ids.ts";
export {
  checkLength,
  checkRequest,
  checkScan,
  checkSession,
  checkTraceId,
  checkTxn,
  CLIENT_ID_BYTES_MAX,
  COMMAND_OVERHEAD_BYTES,
  commandBytesMax,
  KEY_BYTES_MAX,
  KEY_BYTES_MIN,
  type LimitViolation,
  type MutationFields,
  type RequestFields,
  SCAN_BYTES_MAX,
  SCAN_LIMIT_MAX,
  type ScanFields,
  type SessionFields,
  type SizeCheck,
  TRACE_ID_CHARS_MAX,
  TXN_ENTRY_OVERHEAD_BYTES,
  TXN_OPS_MAX,
  txnBytesMax,
  type TxnFields,
  type TxnOpFields,
  validateKey,
  validateValue,
  type ValidateValueOptions,
  VALUE_BYTES_MAX,
} from "./key_limits.ts";
export {
  CLUSTER_ID_LENGTH_MAX,
  SHARD_LEARNERS_MAX,
  SHARD_REPLICAS_MAX,
  shardById,
  type ShardEntry,
  shardForHash,
  shardForKey,
  type ShardMap,
  type ShardMapError,
  type ShardMapValidation,
  validateShardMap,
} from "./shard_map.ts";
export {
  decodeShardMap,
  encodeShardMap,
  SHARD_MAP_BYTES_MAX,
  SHARD_MAP_FORMAT,
  type ShardMapDecodeError,
  type ShardMapDecodeResult,
  type ShardMapEncodeResult,
} from "./shard_map_codec.ts";
export { AssertionError } from "./_assert.ts";
export { planMoves } from "./planner.ts";
export {
  hasLiveMajority,
  type Move,
  type MoveCause,
  type MoveStep,
  moveSteps,
  type Plan,
  PLAN_NOTES_MAX,
  type PlannedMove,
  PLANNER_LIMITS_DEFAULT,
  PLANNER_REPLICA_COUNT_MAX,
  type PlannerInput,
  type PlannerLimits,
  type PlannerNode,
  type PlannerShard,
} from "./planner_types.ts";
export { compareBytes } from "./bytes.ts";
export {
  FRAME_LENGTH_BYTES,
  type FramedPair,
  framePair,
  type FrameProblem,
  FrameReader,
} from "./pair_frames.ts";
