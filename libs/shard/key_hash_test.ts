// Checks FNV-1a 32 against published vectors and an independent BigInt reference, and the hash
// tag rule (Redis Cluster's) on a table of edge cases.

import assert from "node:assert/strict";
import fc from "fast-check";
import { fnv1a32, hashTag, keyHash } from "./key_hash.ts";

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

/** FNV-1a 32 written from the definition with BigInt, sharing no code with fnv1a32. */
function referenceFnv1a32(data: Uint8Array): number {
  let hash = 2166136261n;
  for (const byte of data) hash = ((hash ^ BigInt(byte)) * 16777619n) % 2n ** 32n;
  return Number(hash);
}

Deno.test("fnv1a32() matches the published test vectors", () => {
  const vectors: [string, number][] = [
    ["", 0x811c9dc5],
    ["a", 0xe40c292c],
    ["b", 0xe70c2de5],
    ["foobar", 0xbf9cf968],
  ];
  for (const [text, expected] of vectors) {
    assert.equal(fnv1a32(bytes(text)), expected, `fnv1a32(${JSON.stringify(text)})`);
    assert.equal(referenceFnv1a32(bytes(text)), expected, `reference(${JSON.stringify(text)})`);
  }
});

Deno.test("fnv1a32() agrees with a BigInt reference on random bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (data) => {
      const hash = fnv1a32(data);
      assert.ok(Number.isInteger(hash) && hash >= 0 && hash < 2 ** 32);
      assert.equal(hash, referenceFnv1a32(data));
    }),
    { numRuns: 500 },
  );
});

Deno.test("fnv1a32() hashes a subarray by its own bytes only", () => {
  const buffer = bytes("xxfoobaryy");
  assert.equal(fnv1a32(buffer.subarray(2, 8)), 0xbf9cf968);
});

Deno.test("hashTag() follows the Redis Cluster rule", () => {
  // [key, expected tag or undefined for "hash the whole key"]
  const table: [string, string | undefined][] = [
    ["{a}b", "a"],
    ["a{b}c", "b"],
    ["{user42}:name", "user42"],
    ["{}a", undefined], // Empty tag: the whole key is hashed.
    ["a{", undefined], // No "}" after the "{".
    ["a}b", undefined], // No "{".
    ["a}b{c}", "c"], // A "}" before the first "{" does not count.
    ["{a}{b}", "a"], // Only the first "{" counts.
    ["{{a}}", "{a"], // From the first "{" to the next "}".
    ["{}{a}", undefined], // The first "{" meets "}" at once: no tag, even with a later one.
    ["plain", undefined],
    ["{ключ}:x", "ключ"], // Multi-byte UTF-8 inside the tag.
    ["ключ{🔑}", "🔑"], // Multi-byte UTF-8 around and inside.
    ["{", undefined],
    ["}", undefined],
    ["{}", undefined],
    ["{x}", "x"],
  ];
  for (const [key, expected] of table) {
    const tag = hashTag(bytes(key));
    const actual = tag === undefined ? undefined : new TextDecoder().decode(tag);
    assert.equal(actual, expected, `hashTag(${JSON.stringify(key)})`);
  }
});

Deno.test("keyHash() hashes the tag when there is one, else the whole key", () => {
  assert.equal(keyHash(bytes("{user42}:name")), fnv1a32(bytes("user42")));
  assert.equal(keyHash(bytes("{user42}:name")), keyHash(bytes("{user42}:cart")));
  assert.equal(keyHash(bytes("{}a")), fnv1a32(bytes("{}a")));
  assert.equal(keyHash(bytes("a{")), fnv1a32(bytes("a{")));
  assert.equal(keyHash(bytes("foobar")), 0xbf9cf968);
});

Deno.test("keyHash() gives keys with the same tag the same hash", () => {
  const text = fc.string({ unit: "grapheme", maxLength: 12 });
  fc.assert(
    fc.property(text, text, text, (tag, before, after) => {
      fc.pre(tag.length > 0 && !tag.includes("}") && !before.includes("{"));
      const key = bytes(`${before}{${tag}}${after}`);
      assert.equal(keyHash(key), fnv1a32(bytes(tag)));
    }),
    { numRuns: 300 },
  );
});
