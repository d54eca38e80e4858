// Checks the shard map codec: a round-trip property on random valid maps, deterministic output,
// a table of corrupt inputs each rejected with the right typed error, and a fuzz property that
// decoding mangled bytes never throws and never yields an invalid map.

import assert from "node:assert/strict";
import fc from "fast-check";
import { arbitraryShardMap } from "./_arbitrary.ts";
import { SHARDS_MAX, splitEvenly } from "./hash_range.ts";
import { nodeId, shardId } from "./ids.ts";
import { type ShardMap, validateShardMap } from "./shard_map.ts";
import {
  decodeShardMap,
  encodeShardMap,
  SHARD_MAP_BYTES_MAX,
  SHARD_MAP_FORMAT,
  type ShardMapDecodeError,
} from "./shard_map_codec.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const n1 = nodeId("n1");
const MAP: ShardMap = {
  version: 5,
  clusterId: "c1",
  shards: [{
    id: shardId(3),
    range: { lo: 0, hi: 2 ** 32 },
    replicas: [n1],
    learners: [nodeId("n2")],
    leaderHint: n1,
    confEpoch: 2,
  }],
};

function encode(map: ShardMap): Uint8Array {
  const result = encodeShardMap(map);
  if (result.kind !== "ok") throw new Error(`Cannot encode: ${JSON.stringify(result)}`);
  return result.bytes;
}

function decodeError(bytes: Uint8Array): ShardMapDecodeError {
  const result = decodeShardMap(bytes);
  if (result.kind !== "invalid") throw new Error("Expected decodeShardMap() to reject the input");
  return result.error;
}

/** The JSON document of MAP, for tests that corrupt one part of it. */
function document(): Record<string, unknown> & { shards: Record<string, unknown>[] } {
  return JSON.parse(decoder.decode(encode(MAP)));
}

Deno.test("encodeShardMap() writes JSON with a format version and a fixed field order", () => {
  assert.equal(
    decoder.decode(encode(MAP)),
    '{"format":1,"version":5,"clusterId":"c1","shards":[{"id":3,"range":{"lo":0,"hi":4294967296},' +
      '"replicas":["n1"],"learners":["n2"],"leaderHint":"n1","confEpoch":2}]}',
  );
});

Deno.test("encodeShardMap() output does not depend on the input's key order", () => {
  const shard = MAP.shards[0];
  const shuffled: ShardMap = {
    shards: [{
      confEpoch: shard.confEpoch,
      leaderHint: shard.leaderHint,
      learners: shard.learners,
      replicas: shard.replicas,
      range: { hi: shard.range.hi, lo: shard.range.lo },
      id: shard.id,
    }],
    clusterId: MAP.clusterId,
    version: MAP.version,
  };
  assert.deepEqual(encode(shuffled), encode(MAP));
});

Deno.test("decodeShardMap() round-trips random valid maps", () => {
  fc.assert(
    fc.property(arbitraryShardMap(), (map) => {
      const bytes = encode(map);
      const decoded = decodeShardMap(bytes);
      assert.deepEqual(decoded, { kind: "ok", map });
      if (decoded.kind === "ok") assert.deepEqual(encode(decoded.map), bytes);
    }),
    { numRuns: 200 },
  );
});

Deno.test("encodeShardMap() refuses an invalid map", () => {
  const result = encodeShardMap({ ...MAP, shards: [] });
  assert.equal(result.kind, "invalid");
  if (result.kind === "invalid") assert.equal(result.error.kind, "noShards");
});

Deno.test("encodeShardMap() reports a map over SHARD_MAP_BYTES_MAX as tooLarge", () => {
  const replicas = Array.from(
    { length: 9 },
    (_, i) => nodeId(`node-with-a-long-name-${i}`.padEnd(60, "x")),
  );
  const map: ShardMap = {
    version: 1,
    shards: splitEvenly(SHARDS_MAX).map((range, i) => ({
      id: shardId(i),
      range,
      replicas,
      learners: [],
      confEpoch: 1,
    })),
  };
  const result = encodeShardMap(map);
  assert.equal(result.kind, "tooLarge");
  if (result.kind === "tooLarge") {
    assert.equal(result.limit, SHARD_MAP_BYTES_MAX);
    assert.ok(result.byteLength > SHARD_MAP_BYTES_MAX);
    assert.match(result.message, /SHARD_MAP_BYTES_MAX/);
  }
});

Deno.test("decodeShardMap() rejects corrupt input with a typed error", () => {
  const json = (value: unknown) => encoder.encode(JSON.stringify(value));
  const withRoot = (change: Record<string, unknown>) => json({ ...document(), ...change });
  const withShard = (change: Record<string, unknown>) => {
    const doc = document();
    doc.shards[0] = { ...doc.shards[0], ...change };
    return json(doc);
  };
  const without = (field: string) => {
    const doc = document();
    delete doc[field];
    return json(doc);
  };
  const cases: [string, Uint8Array, Record<string, unknown>, RegExp][] = [
    [
      "too large",
      new Uint8Array(SHARD_MAP_BYTES_MAX + 1),
      { kind: "tooLarge" },
      /SHARD_MAP_BYTES_MAX/,
    ],
    ["not UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), { kind: "notUtf8" }, /UTF-8/],
    ["empty", new Uint8Array(0), { kind: "malformedJson" }, /not valid JSON/],
    ["truncated", encode(MAP).subarray(0, 20), { kind: "malformedJson" }, /not valid JSON/],
    ["not JSON", encoder.encode("shardmap v1"), { kind: "malformedJson" }, /not valid JSON/],
    ["null", json(null), { kind: "badShape", path: "(root)" }, /expected an object, got null/],
    ["array", json([]), { kind: "badShape", path: "(root)" }, /got an array/],
    ["number", json(42), { kind: "badShape", path: "(root)" }, /got 42/],
    ["no format", without("format"), { kind: "badShape", path: "format" }, /no "format" field/],
    [
      "future format",
      withRoot({ format: 2 }),
      { kind: "unsupportedFormat", format: 2 },
      /format 2: this build reads only format 1/,
    ],
    [
      "string format",
      withRoot({ format: "1" }),
      { kind: "unsupportedFormat", format: "1" },
      /format "1"/,
    ],
    [
      "unknown field",
      withRoot({ extra: true }),
      { kind: "badShape", path: "extra" },
      /unknown field "extra"/,
    ],
    [
      "version is a string",
      withRoot({ version: "5" }),
      { kind: "badShape", path: "version" },
      /expected a number, got "5"/,
    ],
    ["no version", without("version"), { kind: "badShape", path: "version" }, /got undefined/],
    ["no shards", without("shards"), { kind: "badShape", path: "shards" }, /expected an array/],
    [
      "shards is an object",
      withRoot({ shards: {} }),
      { kind: "badShape", path: "shards" },
      /an object/,
    ],
    [
      "shard is null",
      withRoot({ shards: [null] }),
      { kind: "badShape", path: "shards[0]" },
      /got null/,
    ],
    ["unknown shard field", withShard({ weight: 1 }), {
      kind: "badShape",
      path: "shards[0].weight",
    }, /unknown field/],
    ["range is an array", withShard({ range: [0, 1] }), {
      kind: "badShape",
      path: "shards[0].range",
    }, /an array/],
    ["hi is a string", withShard({ range: { lo: 0, hi: "4294967296" } }), {
      kind: "badShape",
      path: "shards[0].range.hi",
    }, /a number/],
    ["extra range field", withShard({ range: { lo: 0, hi: 1, mid: 0 } }), {
      kind: "badShape",
      path: "shards[0].range.mid",
    }, /unknown/],
    ["replica is a number", withShard({ replicas: [1] }), {
      kind: "badShape",
      path: "shards[0].replicas[0]",
    }, /a string/],
    ["leader hint is null", withShard({ leaderHint: null }), {
      kind: "badShape",
      path: "shards[0].leaderHint",
    }, /got null/],
    [
      "cluster id is a number",
      withRoot({ clusterId: 7 }),
      { kind: "badShape", path: "clusterId" },
      /a string/,
    ],
    [
      "fractional id",
      withShard({ id: 1.5 }),
      { kind: "invalidMap" },
      /"shards\[0\].id" is invalid/,
    ],
    ["negative version", withRoot({ version: -1 }), { kind: "invalidMap" }, /"version" is invalid/],
    [
      "gap",
      withShard({ range: { lo: 0, hi: 100 } }),
      { kind: "invalidMap" },
      /does not cover hashes \[100, 4294967296\)/,
    ],
    [
      "learner is a replica",
      withShard({ learners: ["n1"] }),
      { kind: "invalidMap" },
      /both replicas and learners/,
    ],
    [
      "bad node id",
      withShard({ replicas: [""], leaderHint: undefined }),
      { kind: "invalidMap" },
      /replicas\[0\]/,
    ],
    [
      "__proto__ field",
      encoder.encode('{"__proto__":{},"format":1}'),
      { kind: "badShape" },
      /unknown field "__proto__"/,
    ],
  ];
  for (const [name, bytes, expected, message] of cases) {
    const error = decodeError(bytes);
    for (const [key, value] of Object.entries(expected)) {
      assert.deepEqual((error as Record<string, unknown>)[key], value, `${name}: ${key}`);
    }
    assert.match(error.message, message, name);
  }
});

Deno.test("decodeShardMap() never throws on mangled bytes and never yields an invalid map", () => {
  const mangled = fc.tuple(
    arbitraryShardMap({ shardsMax: 4 }),
    fc.nat(),
    fc.nat({ max: 255 }),
    fc.nat(),
  )
    .map(([map, position, byte, cut]) => {
      const bytes = encode(map).slice();
      bytes[position % bytes.length] = byte;
      return bytes.subarray(0, bytes.length - (cut % 3));
    });
  const anything = fc.oneof(
    mangled,
    fc.uint8Array({ maxLength: 64 }),
    fc.json().map((s) => encoder.encode(s)),
  );
  fc.assert(
    fc.property(anything, (bytes) => {
      const result = decodeShardMap(bytes);
      if (result.kind === "ok") assert.deepEqual(validateShardMap(result.map), { kind: "ok" });
      else assert.ok(result.error.message.length > 0);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("SHARD_MAP_FORMAT is the format written", () => {
  assert.equal(document().format, SHARD_MAP_FORMAT);
});
