// Checks validateShardMap() on one broken map per error kind, and shardForHash()/shardForKey()
// (binary search) against a linear-scan oracle on random valid maps.

import assert from "node:assert/strict";
import fc from "fast-check";
import { arbitraryShardMap } from "./_arbitrary.ts";
import { AssertionError } from "./_assert.ts";
import { HASH_SPACE, rangeContains, SHARDS_MAX, splitEvenly } from "./hash_range.ts";
import { type NodeId, nodeId, type ShardId, shardId } from "./ids.ts";
import { keyHash } from "./key_hash.ts";
import {
  SHARD_REPLICAS_MAX,
  shardById,
  type ShardEntry,
  shardForHash,
  shardForKey,
  type ShardMap,
  type ShardMapError,
  validateShardMap,
} from "./shard_map.ts";

const [n1, n2, n3, n4] = ["n1", "n2", "n3", "n4"].map(nodeId);

function entry(id: number, lo: number, hi: number, extra: Partial<ShardEntry> = {}): ShardEntry {
  return {
    id: shardId(id),
    range: { lo, hi },
    replicas: [n1, n2, n3],
    learners: [],
    confEpoch: 1,
    ...extra,
  };
}

/** A valid three-shard map to break one field at a time. */
const HALF = 2 ** 31;
const QUARTER = 2 ** 30;
const GOOD: ShardMap = {
  version: 7,
  clusterId: "c1",
  shards: [
    entry(0, 0, QUARTER),
    entry(1, QUARTER, HALF),
    entry(2, HALF, HASH_SPACE, { leaderHint: n2 }),
  ],
};

function withShard(index: number, change: Partial<ShardEntry>): ShardMap {
  return { ...GOOD, shards: GOOD.shards.map((s, i) => (i === index ? { ...s, ...change } : s)) };
}

function errorOf(map: ShardMap): ShardMapError {
  const result = validateShardMap(map);
  assert.equal(result.kind, "invalid", "expected the map to be rejected");
  if (result.kind !== "invalid") throw new Error("unreachable");
  return result.error;
}

function linearScan(map: ShardMap, hash: number): ShardEntry {
  const found = map.shards.filter((shard) => rangeContains(shard.range, hash));
  assert.equal(found.length, 1, `hash ${hash} has ${found.length} shards`);
  return found[0];
}

Deno.test("validateShardMap() accepts a valid map", () => {
  assert.deepEqual(validateShardMap(GOOD), { kind: "ok" });
});

Deno.test("validateShardMap() names each broken rule", () => {
  const cases: [string, ShardMap, Record<string, unknown>, RegExp][] = [
    [
      "negative version",
      { ...GOOD, version: -1 },
      { kind: "badField", path: "version" },
      /"version" is invalid/,
    ],
    [
      "fractional version",
      { ...GOOD, version: 1.5 },
      { kind: "badField", path: "version" },
      /got 1\.5/,
    ],
    [
      "empty cluster id",
      { ...GOOD, clusterId: "" },
      { kind: "badField", path: "clusterId" },
      /clusterId/,
    ],
    ["lone surrogate in cluster id", { ...GOOD, clusterId: "c\ud800" }, {
      kind: "badField",
      path: "clusterId",
    }, /well-formed/],
    ["no shards", { ...GOOD, shards: [] }, { kind: "noShards" }, /no shards/],
    [
      "too many shards",
      {
        ...GOOD,
        shards: splitEvenly(SHARDS_MAX).concat(splitEvenly(1)).map((r, i) => entry(i, r.lo, r.hi)),
      },
      { kind: "tooManyShards", count: SHARDS_MAX + 1, limit: SHARDS_MAX },
      /SHARDS_MAX/,
    ],
    ["bad shard id", withShard(1, { id: -3 as ShardId }), {
      kind: "badField",
      path: "shards[1].id",
    }, /got -3/],
    ["NaN shard id", withShard(1, { id: NaN as ShardId }), {
      kind: "badField",
      path: "shards[1].id",
    }, /got NaN/],
    [
      "empty range",
      withShard(1, { range: { lo: 5, hi: 5 } }),
      { kind: "badField", path: "shards[1].range" },
      /0 <= lo < hi <= 2\^32/,
    ],
    ["bad epoch", withShard(0, { confEpoch: -1 }), {
      kind: "badField",
      path: "shards[0].confEpoch",
    }, /confEpoch/],
    [
      "duplicate id",
      withShard(2, { id: shardId(0) }),
      { kind: "duplicateShardId", shardId: 0 },
      /shard 0 twice/,
    ],
    [
      "gap at the start",
      withShard(0, { range: { lo: 1, hi: QUARTER } }),
      { kind: "gap", lo: 0, hi: 1 },
      /does not cover hashes \[0, 1\)/,
    ],
    [
      "gap in the middle",
      withShard(1, { range: { lo: QUARTER + 1, hi: HALF } }),
      { kind: "gap", lo: QUARTER, hi: QUARTER + 1 },
      /does not cover/,
    ],
    [
      "gap at the end",
      withShard(2, { range: { lo: HALF, hi: HASH_SPACE - 1 } }),
      { kind: "gap", lo: HASH_SPACE - 1, hi: HASH_SPACE },
      /\[4294967295, 4294967296\)/,
    ],
    [
      "overlap",
      withShard(1, { range: { lo: QUARTER - 10, hi: HALF } }),
      { kind: "overlap", shardIds: [shardId(0), shardId(1)], lo: QUARTER - 10, hi: QUARTER },
      /shards 0 and 1 both own/,
    ],
    [
      "not sorted",
      { ...GOOD, shards: [GOOD.shards[1], GOOD.shards[0], GOOD.shards[2]] },
      { kind: "gap", lo: 0, hi: QUARTER },
      /does not cover/,
    ],
    [
      "out of order after a full prefix",
      { ...GOOD, shards: [GOOD.shards[0], GOOD.shards[1], GOOD.shards[2], entry(3, 10, 20)] },
      { kind: "notSorted", index: 3 },
      /not sorted by range/,
    ],
    [
      "no replicas",
      withShard(0, { replicas: [] }),
      { kind: "noReplicas", shardId: 0 },
      /no replicas/,
    ],
    [
      "too many replicas",
      withShard(0, {
        replicas: Array.from({ length: SHARD_REPLICAS_MAX + 1 }, (_, i) => nodeId(`m${i}`)),
      }),
      { kind: "tooManyReplicas", limit: SHARD_REPLICAS_MAX },
      /SHARD_REPLICAS_MAX/,
    ],
    [
      "duplicate replica",
      withShard(0, { replicas: [n1, n2, n1] }),
      { kind: "duplicateMember", nodeId: n1 },
      /"n1" twice in replicas/,
    ],
    [
      "duplicate learner",
      withShard(0, { learners: [n4, n4] }),
      { kind: "duplicateMember", nodeId: n4 },
      /"n4" twice in learners/,
    ],
    [
      "learner is a replica",
      withShard(0, { learners: [n4, n3] }),
      { kind: "duplicateMember", nodeId: n3 },
      /"n3" in both replicas and learners/,
    ],
    [
      "bad node id",
      withShard(0, { replicas: [n1, "a/b" as NodeId] }),
      { kind: "badField", path: "shards[0].replicas[1]" },
      /"a\/b"/,
    ],
    [
      "leader hint not a replica",
      withShard(2, { leaderHint: n4 }),
      { kind: "leaderHintNotReplica", nodeId: n4 },
      /leader hint "n4": it is not one of its replicas \("n1", "n2", "n3"\)/,
    ],
  ];
  for (const [name, map, expected, message] of cases) {
    const error = errorOf(map);
    for (const [key, value] of Object.entries(expected)) {
      assert.deepEqual((error as Record<string, unknown>)[key], value, `${name}: ${key}`);
    }
    assert.match(error.message, message, name);
  }
});

Deno.test("shardForHash() finds the owner at every range boundary", () => {
  for (const shard of GOOD.shards) {
    assert.equal(shardForHash(GOOD, shard.range.lo), shard);
    assert.equal(shardForHash(GOOD, shard.range.hi - 1), shard);
  }
});

Deno.test("shardForHash() asserts that the hash is in [0, 2^32)", () => {
  for (const hash of [-1, HASH_SPACE, 1.5, NaN]) {
    assert.throws(() => shardForHash(GOOD, hash), AssertionError, `hash ${hash}`);
  }
});

Deno.test("shardForHash() agrees with a linear scan on random maps", () => {
  const hashes = fc.array(fc.integer({ min: 0, max: HASH_SPACE - 1 }), { maxLength: 20 });
  fc.assert(
    fc.property(arbitraryShardMap(), hashes, (map, randomHashes) => {
      assert.deepEqual(validateShardMap(map), { kind: "ok" });
      const edges = map.shards.flatMap((shard) => [shard.range.lo, shard.range.hi - 1]);
      for (const hash of [...edges, ...randomHashes]) {
        assert.equal(shardForHash(map, hash), linearScan(map, hash));
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("shardForKey() agrees with a linear scan on random maps and keys", () => {
  const keys = fc.array(fc.uint8Array({ minLength: 1, maxLength: 32 }), {
    minLength: 1,
    maxLength: 10,
  });
  fc.assert(
    fc.property(arbitraryShardMap(), keys, (map, keyList) => {
      for (const key of keyList) {
        assert.equal(shardForKey(map, key), linearScan(map, keyHash(key)));
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("shardForKey() puts keys with the same hash tag on the same shard", () => {
  const encoder = new TextEncoder();
  const map: ShardMap = { version: 1, shards: splitEvenly(16).map((r, i) => entry(i, r.lo, r.hi)) };
  const name = shardForKey(map, encoder.encode("{user42}:name"));
  assert.equal(shardForKey(map, encoder.encode("{user42}:cart")), name);
  assert.equal(shardForKey(map, encoder.encode("x{user42}")), name);
});

Deno.test("shardById() finds a shard by id or returns undefined", () => {
  assert.equal(shardById(GOOD, shardId(1)), GOOD.shards[1]);
  assert.equal(shardById(GOOD, shardId(99)), undefined);
});
