/**
 * The versioned shard map (docs/design.md, "Keys, shards, routing"), its validation, and the lookup
 * of the shard that owns a key.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import {
  HASH_SPACE,
  type HashRange,
  isHashRange,
  rangeContains,
  SHARDS_MAX,
} from "./hash_range.ts";
import { isNodeId, isShardId, type NodeId, type ShardId } from "./ids.ts";
import { keyHash } from "./key_hash.ts";

/** The largest number of voting replicas one shard may list. */
export const SHARD_REPLICAS_MAX = 9;
/** The largest number of learners one shard may list. */
export const SHARD_LEARNERS_MAX = 9;
/** The largest number of characters in a shard map's `clusterId`. */
export const CLUSTER_ID_LENGTH_MAX = 128;

/**
 * One shard in a {@linkcode ShardMap}: the hash range it owns and placement's published view of
 * its Raft group. The truth about members is the group's Raft configuration; this is a routing
 * hint that may lag it.
 */
export interface ShardEntry {
  /** The shard's id, unique in the map. */
  readonly id: ShardId;
  /** The hashes the shard owns. */
  readonly range: HashRange;
  /** The voting members, distinct, 1 to {@linkcode SHARD_REPLICAS_MAX} of them. */
  readonly replicas: readonly NodeId[];
  /** The non-voting members, distinct and disjoint from `replicas`. */
  readonly learners: readonly NodeId[];
  /** The node placement last saw leading the shard; one of `replicas`. */
  readonly leaderHint?: NodeId;
  /** The shard's configuration epoch, carried by requests and admin calls for fencing. */
  readonly confEpoch: number;
}

/**
 * The versioned shard map, written only by the placement leader.
 *
 * Invariant (checked by {@linkcode validateShardMap}): the shards are sorted by `range.lo` and
 * their ranges cover `[0, 2^32)` exactly, so every hash has exactly one shard.
 */
export interface ShardMap {
  /** Grows with every published change. */
  readonly version: number;
  /** The id of the cluster the map belongs to, when known. */
  readonly clusterId?: string;
  /** The shards, ordered by `range.lo`. */
  readonly shards: readonly ShardEntry[];
}

/** Why {@linkcode validateShardMap} rejected a map. Every variant carries a precise message. */
export type ShardMapError =
  | { kind: "badField"; path: string; message: string }
  | { kind: "noShards"; message: string }
  | { kind: "tooManyShards"; count: number; limit: number; message: string }
  | { kind: "duplicateShardId"; shardId: ShardId; message: string }
  | { kind: "notSorted"; index: number; message: string }
  | { kind: "gap"; lo: number; hi: number; message: string }
  | { kind: "overlap"; shardIds: [ShardId, ShardId]; lo: number; hi: number; message: string }
  | { kind: "noReplicas"; shardId: ShardId; message: string }
  | { kind: "tooManyReplicas"; shardId: ShardId; count: number; limit: number; message: string }
  | { kind: "tooManyLearners"; shardId: ShardId; count: number; limit: number; message: string }
  | { kind: "duplicateMember"; shardId: ShardId; nodeId: NodeId; message: string }
  | { kind: "leaderHintNotReplica"; shardId: ShardId; nodeId: NodeId; message: string };

/** The outcome of {@linkcode validateShardMap}. */
export type ShardMapValidation = { kind: "ok" } | { kind: "invalid"; error: ShardMapError };

/**
 * Checks every invariant of a shard map: well-formed numbers and ids, 1 to
 * {@linkcode SHARDS_MAX} shards with unique ids, ranges sorted and covering `[0, 2^32)` with no
 * gap or overlap, replicas distinct (1 to {@linkcode SHARD_REPLICAS_MAX}), learners distinct and
 * disjoint from replicas, and the leader hint one of the replicas. Returns the first problem
 * found.
 *
 * @example A one-shard map
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeId, shardId } from "./ids.ts";
 * import { validateShardMap } from "./shard_map.ts";
 *
 * const result = validateShardMap({
 *   version: 1,
 *   shards: [{
 *     id: shardId(0),
 *     range: { lo: 0, hi: 2 ** 32 },
 *     replicas: [nodeId("n1")],
 *     learners: [],
 *     confEpoch: 1,
 *   }],
 * });
 * assert(result.kind === "ok");
 * ```
 */
export function validateShardMap(map: ShardMap): ShardMapValidation {
  const error = checkHeader(map) ?? checkShards(map.shards) ?? checkCoverage(map.shards);
  return error === undefined ? { kind: "ok" } : { kind: "invalid", error };
}

function badField(path: string, expected: string, value: unknown): ShardMapError {
  return {
    kind: "badField",
    path,
    message: `Shard map field "${path}" is invalid: expected ${expected}, got ${show(value)}`,
  };
}

function show(value: unknown): string {
  if (typeof value === "number") return String(value); // JSON would print NaN as null.
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function checkHeader(map: ShardMap): ShardMapError | undefined {
  if (!isCount(map.version)) {
    return badField("version", "a non-negative safe integer", map.version);
  }
  const clusterId = map.clusterId;
  if (
    clusterId !== undefined &&
    (typeof clusterId !== "string" || clusterId.length < 1 ||
      clusterId.length > CLUSTER_ID_LENGTH_MAX || !clusterId.isWellFormed())
  ) {
    return badField(
      "clusterId",
      `a well-formed string of 1 to ${CLUSTER_ID_LENGTH_MAX} characters`,
      clusterId,
    );
  }
  const count = map.shards.length;
  if (count === 0) {
    return { kind: "noShards", message: "Shard map has no shards: expected 1 or more" };
  }
  if (count > SHARDS_MAX) {
    return {
      kind: "tooManyShards",
      count,
      limit: SHARDS_MAX,
      message: `Shard map has ${count} shards: the limit is ${SHARDS_MAX} (SHARDS_MAX)`,
    };
  }
  return undefined;
}

function checkShards(shards: readonly ShardEntry[]): ShardMapError | undefined {
  const seen = new Set<number>();
  for (let i = 0; i < shards.length; i++) {
    const shard = shards[i];
    const error = checkShardFields(shard, `shards[${i}]`) ?? checkMembers(shard, `shards[${i}]`);
    if (error !== undefined) return error;
    if (seen.has(shard.id)) {
      return {
        kind: "duplicateShardId",
        shardId: shard.id,
        message: `Shard map lists shard ${shard.id} twice: shard ids must be unique`,
      };
    }
    seen.add(shard.id);
  }
  return undefined;
}

function checkShardFields(shard: ShardEntry, path: string): ShardMapError | undefined {
  if (!isShardId(shard.id)) return badField(`${path}.id`, "a non-negative safe integer", shard.id);
  if (!isHashRange(shard.range)) {
    return badField(`${path}.range`, "integers with 0 <= lo < hi <= 2^32", shard.range);
  }
  if (!isCount(shard.confEpoch)) {
    return badField(`${path}.confEpoch`, "a non-negative safe integer", shard.confEpoch);
  }
  return undefined;
}

function checkMembers(shard: ShardEntry, path: string): ShardMapError | undefined {
  const { id: shardId, replicas, learners, leaderHint } = shard;
  if (replicas.length === 0) {
    return {
      kind: "noReplicas",
      shardId,
      message: `Shard ${shardId} has no replicas: expected 1 or more`,
    };
  }
  if (replicas.length > SHARD_REPLICAS_MAX) {
    return {
      kind: "tooManyReplicas",
      shardId,
      count: replicas.length,
      limit: SHARD_REPLICAS_MAX,
      message: `Shard ${shardId} has ${replicas.length} replicas: the limit is ` +
        `${SHARD_REPLICAS_MAX} (SHARD_REPLICAS_MAX)`,
    };
  }
  if (learners.length > SHARD_LEARNERS_MAX) {
    return {
      kind: "tooManyLearners",
      shardId,
      count: learners.length,
      limit: SHARD_LEARNERS_MAX,
      message: `Shard ${shardId} has ${learners.length} learners: the limit is ` +
        `${SHARD_LEARNERS_MAX} (SHARD_LEARNERS_MAX)`,
    };
  }
  const members = new Map<string, string>();
  for (const [list, name] of [[replicas, "replicas"], [learners, "learners"]] as const) {
    for (let j = 0; j < list.length; j++) {
      const node = list[j];
      if (!isNodeId(node)) return badField(`${path}.${name}[${j}]`, "a node id", node);
      const earlier = members.get(node);
      if (earlier !== undefined) {
        const where = earlier === name ? `twice in ${name}` : "in both replicas and learners";
        return {
          kind: "duplicateMember",
          shardId,
          nodeId: node,
          message: `Shard ${shardId} lists node "${node}" ${where}: members must be distinct`,
        };
      }
      members.set(node, name);
    }
  }
  if (leaderHint !== undefined && !replicas.includes(leaderHint)) {
    if (!isNodeId(leaderHint)) return badField(`${path}.leaderHint`, "a node id", leaderHint);
    return {
      kind: "leaderHintNotReplica",
      shardId,
      nodeId: leaderHint,
      message: `Shard ${shardId} has leader hint "${leaderHint}": it is not one of its replicas ` +
        `(${replicas.map((r) => `"${r}"`).join(", ")})`,
    };
  }
  return undefined;
}

function checkCoverage(shards: readonly ShardEntry[]): ShardMapError | undefined {
  let end = 0; // Invariant: shards[0..i) cover exactly [0, end).
  for (let i = 0; i < shards.length; i++) {
    const { lo, hi } = shards[i].range;
    if (lo > end) return gap(end, lo);
    if (lo < end) {
      const prev = shards[i - 1];
      if (lo < prev.range.lo) {
        return {
          kind: "notSorted",
          index: i,
          message: `Shard map is not sorted by range: shard ${shards[i].id} at index ${i} starts ` +
            `at ${lo}, before shard ${prev.id} at index ${i - 1} (${prev.range.lo})`,
        };
      }
      return {
        kind: "overlap",
        shardIds: [prev.id, shards[i].id],
        lo,
        hi: Math.min(end, hi),
        message: `Shard map ranges overlap: shards ${prev.id} and ${shards[i].id} both own ` +
          `hashes [${lo}, ${Math.min(end, hi)})`,
      };
    }
    end = hi;
  }
  return end < HASH_SPACE ? gap(end, HASH_SPACE) : undefined;
}

function gap(lo: number, hi: number): ShardMapError {
  return {
    kind: "gap",
    lo,
    hi,
    message: `Shard map does not cover hashes [${lo}, ${hi}): no shard owns them`,
  };
}

/**
 * Returns the shard that owns `hash`, by binary search over the map's sorted ranges.
 *
 * The map must be valid (see {@linkcode validateShardMap}; a decoded map always is): that every
 * hash has a shard is an invariant, asserted here, not an outcome.
 */
export function shardForHash(map: ShardMap, hash: number): ShardEntry {
  assert(
    Number.isSafeInteger(hash) && hash >= 0 && hash < HASH_SPACE,
    `Hash ${hash} is outside [0, 2^32)`,
  );
  const shards = map.shards;
  assert(shards.length > 0, "Shard map has no shards");
  // Find the last shard whose range starts at or before the hash.
  let low = 0;
  let high = shards.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >>> 1;
    if (shards[mid].range.lo <= hash) low = mid;
    else high = mid - 1;
  }
  const shard = shards[low];
  assert(
    rangeContains(shard.range, hash),
    `Shard map version ${map.version} has no shard for hash ${hash}: the map is invalid`,
  );
  return shard;
}

/**
 * Returns the shard that owns `key` (its bytes): the shard whose range holds
 * {@linkcode keyHash}`(key)`. The map must be valid, as for {@linkcode shardForHash}.
 *
 * @example Route a key
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeId, shardId } from "./ids.ts";
 * import { shardForKey, type ShardMap } from "./shard_map.ts";
 *
 * const n1 = nodeId("n1");
 * const map: ShardMap = {
 *   version: 1,
 *   shards: [
 *     { id: shardId(0), range: { lo: 0, hi: 2 ** 31 }, replicas: [n1], learners: [], confEpoch: 1 },
 *     { id: shardId(1), range: { lo: 2 ** 31, hi: 2 ** 32 }, replicas: [n1], learners: [], confEpoch: 1 },
 *   ],
 * };
 * // FNV-1a("foobar") is 0xbf9cf968, in the upper half.
 * assert(shardForKey(map, new TextEncoder().encode("foobar")).id === 1);
 * ```
 */
export function shardForKey(map: ShardMap, key: Uint8Array): ShardEntry {
  return shardForHash(map, keyHash(key));
}

/** Returns the shard with id `id`, or `undefined` if the map has none. Takes linear time. */
export function shardById(map: ShardMap, id: ShardId): ShardEntry | undefined {
  return map.shards.find((shard) => shard.id === id);
}
