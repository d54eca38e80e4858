/**
 * The byte encoding of a {@linkcode ShardMap}, as stored in ZooKeeper's `shardmap` znode.
 *
 * The encoding is UTF-8 JSON with a `format` field, written with a fixed field order, so the
 * same map always encodes to the same bytes. Decoding checks everything: size, UTF-8, JSON
 * syntax, the format version, the shape and type of every field (unknown fields are rejected),
 * then every invariant of {@linkcode validateShardMap}. Bad input gets a typed error, never an
 * exception.
 *
 * @module
 */

import type { HashRange } from "./hash_range.ts";
import type { NodeId, ShardId } from "./ids.ts";
import {
  type ShardEntry,
  type ShardMap,
  type ShardMapError,
  validateShardMap,
} from "./shard_map.ts";

/** The format version written by {@linkcode encodeShardMap}, the only one decoded. */
export const SHARD_MAP_FORMAT = 1;

/**
 * The most bytes an encoded shard map may have. It stays under ZooKeeper's default znode data
 * limit (`jute.maxbuffer`, 1 MiB less a little framing).
 */
export const SHARD_MAP_BYTES_MAX = 1_000_000;

/** The outcome of {@linkcode encodeShardMap}. */
export type ShardMapEncodeResult =
  | { kind: "ok"; bytes: Uint8Array }
  | { kind: "invalid"; error: ShardMapError }
  | { kind: "tooLarge"; byteLength: number; limit: number; message: string };

/** Why {@linkcode decodeShardMap} rejected its input. Every variant carries a precise message. */
export type ShardMapDecodeError =
  | { kind: "tooLarge"; byteLength: number; limit: number; message: string }
  | { kind: "notUtf8"; message: string }
  | { kind: "malformedJson"; message: string }
  | { kind: "unsupportedFormat"; format: unknown; message: string }
  | { kind: "badShape"; path: string; message: string }
  | { kind: "invalidMap"; error: ShardMapError; message: string };

/** The outcome of {@linkcode decodeShardMap}. */
export type ShardMapDecodeResult =
  | { kind: "ok"; map: ShardMap }
  | { kind: "invalid"; error: ShardMapDecodeError };

const ROOT_FIELDS = ["format", "version", "clusterId", "shards"];
const SHARD_FIELDS = ["id", "range", "replicas", "learners", "leaderHint", "confEpoch"];
const RANGE_FIELDS = ["lo", "hi"];

/**
 * Encodes `map` to bytes. The map must be valid and its encoding at most
 * {@linkcode SHARD_MAP_BYTES_MAX} bytes; otherwise the result says which rule it broke.
 * Equal maps (same fields, same order of shards and members) encode to equal bytes.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeShardMap, encodeShardMap } from "./shard_map_codec.ts";
 * import { nodeId, shardId } from "./ids.ts";
 *
 * const encoded = encodeShardMap({
 *   version: 3,
 *   shards: [{
 *     id: shardId(0),
 *     range: { lo: 0, hi: 2 ** 32 },
 *     replicas: [nodeId("n1")],
 *     learners: [],
 *     confEpoch: 1,
 *   }],
 * });
 * if (encoded.kind !== "ok") throw new Error("unreachable");
 * const decoded = decodeShardMap(encoded.bytes);
 * assert(decoded.kind === "ok" && decoded.map.version === 3);
 * ```
 */
export function encodeShardMap(map: ShardMap): ShardMapEncodeResult {
  const validation = validateShardMap(map);
  if (validation.kind === "invalid") return { kind: "invalid", error: validation.error };
  const document = {
    format: SHARD_MAP_FORMAT,
    version: map.version,
    ...(map.clusterId === undefined ? {} : { clusterId: map.clusterId }),
    shards: map.shards.map((shard) => ({
      id: shard.id,
      range: { lo: shard.range.lo, hi: shard.range.hi },
      replicas: [...shard.replicas],
      learners: [...shard.learners],
      ...(shard.leaderHint === undefined ? {} : { leaderHint: shard.leaderHint }),
      confEpoch: shard.confEpoch,
    })),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(document));
  if (bytes.byteLength > SHARD_MAP_BYTES_MAX) {
    return {
      kind: "tooLarge",
      byteLength: bytes.byteLength,
      limit: SHARD_MAP_BYTES_MAX,
      message: `Shard map version ${map.version} encodes to ${bytes.byteLength} bytes: ` +
        `the maximum is ${SHARD_MAP_BYTES_MAX} (SHARD_MAP_BYTES_MAX)`,
    };
  }
  return { kind: "ok", bytes };
}

/**
 * Decodes bytes written by {@linkcode encodeShardMap}, checking everything (see the module
 * doc). Never throws on bad input.
 */
export function decodeShardMap(bytes: Uint8Array): ShardMapDecodeResult {
  if (bytes.byteLength > SHARD_MAP_BYTES_MAX) {
    return fail({
      kind: "tooLarge",
      byteLength: bytes.byteLength,
      limit: SHARD_MAP_BYTES_MAX,
      message: `Shard map data has ${bytes.byteLength} bytes: the maximum is ` +
        `${SHARD_MAP_BYTES_MAX} (SHARD_MAP_BYTES_MAX)`,
    });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return fail({ kind: "notUtf8", message: "Shard map data is not valid UTF-8" });
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return fail({ kind: "malformedJson", message: `Shard map data is not valid JSON: ${reason}` });
  }
  const shaped = readMap(document);
  if (shaped.kind === "invalid") return shaped;
  const validation = validateShardMap(shaped.map);
  if (validation.kind === "invalid") {
    const error = validation.error;
    return fail({ kind: "invalidMap", error, message: error.message });
  }
  return shaped;
}

function fail(error: ShardMapDecodeError): ShardMapDecodeResult {
  return { kind: "invalid", error };
}

/** Thrown inside the shape reader only, and always caught by {@linkcode readMap}. */
class ShapeError extends Error {
  constructor(readonly path: string, message: string) {
    super(message);
  }

  static expected(path: string, expected: string, value: unknown): ShapeError {
    return new ShapeError(
      path,
      `Shard map field "${path}" has the wrong type: expected ${expected}, got ${describe(value)}`,
    );
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return JSON.stringify(value.slice(0, 80));
  return String(value);
}

function readMap(document: unknown): ShardMapDecodeResult {
  try {
    const root = readObject(document, "(root)", ROOT_FIELDS);
    if (!Object.hasOwn(root, "format")) {
      throw new ShapeError(
        "format",
        `Shard map has no "format" field: expected format ${SHARD_MAP_FORMAT}`,
      );
    }
    if (root.format !== SHARD_MAP_FORMAT) {
      return fail({
        kind: "unsupportedFormat",
        format: root.format,
        message: `Shard map has format ${describe(root.format)}: this build reads only format ` +
          `${SHARD_MAP_FORMAT}`,
      });
    }
    const clusterId = root.clusterId === undefined
      ? {}
      : { clusterId: readString(root.clusterId, "clusterId") };
    const shards = readArray(root.shards, "shards").map((shard, i) =>
      readShard(shard, `shards[${i}]`)
    );
    return {
      kind: "ok",
      map: { version: readNumber(root.version, "version"), ...clusterId, shards },
    };
  } catch (error) {
    if (!(error instanceof ShapeError)) throw error;
    return fail({ kind: "badShape", path: error.path, message: error.message });
  }
}

function readShard(value: unknown, path: string): ShardEntry {
  const shard = readObject(value, path, SHARD_FIELDS);
  const rangeObject = readObject(shard.range, `${path}.range`, RANGE_FIELDS);
  const range: HashRange = {
    lo: readNumber(rangeObject.lo, `${path}.range.lo`),
    hi: readNumber(rangeObject.hi, `${path}.range.hi`),
  };
  const nodes = (name: string) =>
    readArray(shard[name], `${path}.${name}`).map((node, i) =>
      readString(node, `${path}.${name}[${i}]`) as NodeId
    );
  // The brands are checked by validateShardMap, which every decoded map passes through.
  return {
    id: readNumber(shard.id, `${path}.id`) as ShardId,
    range,
    replicas: nodes("replicas"),
    learners: nodes("learners"),
    ...(shard.leaderHint === undefined
      ? {}
      : { leaderHint: readString(shard.leaderHint, `${path}.leaderHint`) as NodeId }),
    confEpoch: readNumber(shard.confEpoch, `${path}.confEpoch`),
  };
}

function readObject(value: unknown, path: string, fields: string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw ShapeError.expected(path, "an object", value);
  }
  for (const key of Object.keys(value)) {
    if (!fields.includes(key)) {
      const prefix = path === "(root)" ? "" : `${path}.`;
      const field = `${prefix}${key}`;
      throw new ShapeError(
        field,
        `Shard map has unknown field "${field}": expected only ${fields.join(", ")}`,
      );
    }
  }
  return value as Record<string, unknown>;
}

function readArray(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) throw ShapeError.expected(path, "an array", value);
  return value;
}

function readNumber(value: unknown, path: string): number {
  if (typeof value !== "number") throw ShapeError.expected(path, "a number", value);
  return value;
}

function readString(value: unknown, path: string): string {
  if (typeof value !== "string") throw ShapeError.expected(path, "a string", value);
  return value;
}
