/**
 * Branded identifiers used in the shard map: {@linkcode ShardId} and {@linkcode NodeId}.
 *
 * @module
 */

/** A shard's id: a non-negative safe integer. Create one with {@linkcode shardId}. */
export type ShardId = number & { readonly __brand: "ShardId" };

/**
 * A kvnode's id: a short string chosen once per data dir (docs/design.md, "Ids"). It names a
 * ZooKeeper znode (`nodes/<node-id>`), so it is 1 to {@linkcode NODE_ID_LENGTH_MAX} characters
 * from `A-Z a-z 0-9 _ . : -`, and neither `.` nor `..`. Create one with {@linkcode nodeId}.
 */
export type NodeId = string & { readonly __brand: "NodeId" };

/** The largest number of characters in a {@linkcode NodeId}. */
export const NODE_ID_LENGTH_MAX = 64;

const NODE_ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;

/** Reports whether `value` is a valid shard id: a non-negative safe integer. */
export function isShardId(value: unknown): value is ShardId {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Reports whether `value` is a valid node id (see {@linkcode NodeId}). */
export function isNodeId(value: unknown): value is NodeId {
  return typeof value === "string" &&
    value.length >= 1 && value.length <= NODE_ID_LENGTH_MAX &&
    NODE_ID_PATTERN.test(value) && value !== "." && value !== "..";
}

/**
 * Brands `value` as a {@linkcode ShardId}.
 *
 * @throws {RangeError} If `value` is not a non-negative safe integer.
 */
export function shardId(value: number): ShardId {
  if (!isShardId(value)) {
    throw new RangeError(`Cannot use ${value} as a shard id: expected a non-negative safe integer`);
  }
  return value;
}

/**
 * Brands `value` as a {@linkcode NodeId}.
 *
 * @throws {RangeError} If `value` is not a valid node id.
 */
export function nodeId(value: string): NodeId {
  if (!isNodeId(value)) {
    throw new RangeError(
      `Cannot use ${
        JSON.stringify(value)
      } as a node id: expected 1 to ${NODE_ID_LENGTH_MAX} characters ` +
        `from A-Z a-z 0-9 _ . : - (and not "." or "..")`,
    );
  }
  return value;
}
