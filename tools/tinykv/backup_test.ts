import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { framePair, HASH_SPACE, KEY_BYTES_MAX, keyHash } from "@tinykv/shard";
import {
  BACKUP_FORMAT,
  checkManifest,
  type Manifest,
  type ManifestShard,
  readShardFile,
} from "./backup.ts";

const enc = new TextEncoder();

function shard(id: number, lo: number, hi: number, extra: Partial<ManifestShard> = {}) {
  return {
    shard_id: id,
    range_lo: lo,
    range_hi: hi,
    applied_index: 7,
    term: 2,
    conf_epoch: 0,
    node_id: "n-1",
    file: `shard-${id}.pairs`,
    keys: 0,
    bytes: 0,
    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ...extra,
  };
}

function manifest(shards: ManifestShard[]): Manifest {
  return {
    format: BACKUP_FORMAT,
    cluster_id: "c-1",
    started_at: "",
    finished_at: "",
    shard_map_version: 1,
    keys: 0,
    bytes: 0,
    shards,
  };
}

Deno.test("checkManifest takes ranges that cover the hash space once", () => {
  const half = HASH_SPACE / 2;
  assert.equal(checkManifest(manifest([shard(1, 0, half), shard(2, half, HASH_SPACE)])), undefined);
  assert.equal(checkManifest(manifest([shard(1, 0, HASH_SPACE)])), undefined);
});

Deno.test("checkManifest refuses gaps, overlaps, unsafe names and other formats", () => {
  const half = HASH_SPACE / 2;
  const cases: [unknown, RegExp][] = [
    [manifest([shard(1, 0, half)]), /end at 2147483648, not at 4294967296/],
    [manifest([shard(1, 0, half), shard(2, half + 1, HASH_SPACE)]), /gap or overlap/],
    [manifest([shard(1, 0, half + 1), shard(2, half, HASH_SPACE)]), /gap or overlap/],
    [manifest([shard(1, 0, HASH_SPACE + 1)]), /not a hash range/],
    [manifest([shard(1, 0, HASH_SPACE, { file: "../etc/passwd" })]), /not shard-N\.pairs/],
    [manifest([shard(1, 0, HASH_SPACE, { sha256: "xyz" })]), /64 hex digits/],
    [manifest([shard(1, 0, HASH_SPACE, { keys: -1 })]), /"keys" is not a count/],
    [manifest([]), /lists no shards/],
    [{ ...manifest([shard(1, 0, HASH_SPACE)]), format: "tinykv-backup/2" }, /the format is/],
    [
      manifest([shard(1, 0, half), shard(2, half, HASH_SPACE, { file: "shard-1.pairs" })]),
      /same file/,
    ],
    [null, /not an object/],
  ];
  for (const [input, expected] of cases) {
    assert.match(checkManifest(input) ?? "accepted", expected, JSON.stringify(input));
  }
});

/** Writes `pairs` as a shard file covering the whole hash space; returns its manifest entry. */
async function shardFile(dir: string, pairs: [Uint8Array, Uint8Array][]): Promise<ManifestShard> {
  const framed = pairs.map(([k, v]) => framePair(k, v));
  const bytes = new Uint8Array(framed.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of framed) {
    bytes.set(f, at);
    at += f.length;
  }
  await Deno.writeFile(`${dir}/shard-1.pairs`, bytes);
  return shard(1, 0, HASH_SPACE, {
    keys: pairs.length,
    bytes: pairs.reduce((n, [k, v]) => n + k.length + v.length, 0),
    sha256: createHash("sha256").update(bytes).digest("hex"),
  });
}

Deno.test("readShardFile reads every pair back, the largest key included, and checks the counts", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const big = new Uint8Array(KEY_BYTES_MAX).fill(120);
    const pairs: [Uint8Array, Uint8Array][] = [[enc.encode("a"), enc.encode("1")], [
      big,
      new Uint8Array(),
    ]];
    const entry = await shardFile(dir, pairs);
    const seen: [Uint8Array, Uint8Array][] = [];
    await readShardFile(dir, entry, (k, v) => {
      seen.push([k, v]);
      return Promise.resolve();
    });
    assert.deepEqual(seen, pairs);
    await assert.rejects(readShardFile(dir, { ...entry, keys: 3 }), /it holds 2 keys .* says 3/);
    await assert.rejects(
      readShardFile(dir, { ...entry, sha256: "0".repeat(64) }),
      /its SHA-256 is .* the file is damaged/,
    );
    await assert.rejects(readShardFile(dir, { ...entry, file: "shard-9.pairs" }), /cannot be read/);
    // A key twice, or out of order, is not an export's: refused even with matching checksums.
    for (const keys of [["a", "a"], ["b", "a"]]) {
      const twice = await shardFile(dir, keys.map((k) => [enc.encode(k), enc.encode("v")]));
      await assert.rejects(
        readShardFile(dir, twice),
        /pair 2: its key does not come after the one before/,
        keys.join(","),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readShardFile refuses a key one byte over the limit and a key of another shard", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tooLong = await shardFile(dir, [[new Uint8Array(KEY_BYTES_MAX + 1), enc.encode("v")]]);
    await assert.rejects(readShardFile(dir, tooLong), /pair 1: Field "key" has 4097 bytes/);
    const key = enc.encode("k");
    const entry = await shardFile(dir, [[key, enc.encode("v")]]);
    const h = keyHash(key);
    const elsewhere = h < HASH_SPACE / 2
      ? { range_lo: HASH_SPACE / 2, range_hi: HASH_SPACE }
      : { range_lo: 0, range_hi: HASH_SPACE / 2 };
    await assert.rejects(
      readShardFile(dir, { ...entry, ...elsewhere }),
      new RegExp(`pair 1: its key hashes to ${h}, outside shard 1's range`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
