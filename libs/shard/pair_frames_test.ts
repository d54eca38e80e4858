import assert from "node:assert/strict";
import { FRAME_LENGTH_BYTES, framePair, FrameReader } from "./pair_frames.ts";

const enc = new TextEncoder();

/** The parts one after another. */
const concat = (parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((part) => [...part]));

Deno.test("framePair: big-endian lengths before the key and the value", () => {
  const framed = framePair(enc.encode("ab"), enc.encode("xyz"));
  assert.deepEqual([...framed], [0, 0, 0, 2, 97, 98, 0, 0, 0, 3, 120, 121, 122]);
  assert.equal(framePair(enc.encode("k"), new Uint8Array()).length, 2 * FRAME_LENGTH_BYTES + 1);
});

Deno.test("FrameReader reads pairs back from chunks of any size, an empty value included", () => {
  const pairs = [
    { key: enc.encode("a"), value: enc.encode("1") },
    { key: enc.encode("bb"), value: new Uint8Array() },
    { key: enc.encode("c"), value: new Uint8Array(300).fill(7) },
  ];
  const bytes = concat(pairs.map((p) => framePair(p.key, p.value)));
  for (const size of [1, 3, 5, 64, bytes.length]) {
    const reader = new FrameReader(1024);
    const got = [];
    for (let at = 0; at < bytes.length; at += size) {
      const out = reader.push(bytes.slice(at, at + size));
      assert.ok(Array.isArray(out), JSON.stringify(out));
      got.push(...out);
    }
    assert.equal(reader.finish(), undefined);
    assert.deepEqual(got, pairs, `chunks of ${size}`);
    assert.equal(reader.pairs, 3);
  }
});

Deno.test("FrameReader takes a piece of exactly its maximum and refuses one byte more", () => {
  const max = 16;
  const atLimit = new FrameReader(max);
  const ok = atLimit.push(framePair(new Uint8Array(max).fill(1), new Uint8Array(max).fill(2)));
  assert.ok(Array.isArray(ok) && ok.length === 1 && ok[0].value.length === max);
  const over = new FrameReader(max);
  const refused = over.push(framePair(enc.encode("k"), new Uint8Array(max + 1)));
  assert.ok(!Array.isArray(refused));
  assert.equal(refused.kind, "tooLong");
  assert.match(refused.message, /Pair 1 declares a value of 17 bytes: the most accepted is 16/);
  // A corrupt length is refused at once, before its bytes arrive.
  const corrupt = new FrameReader(max).push(Uint8Array.of(0xff, 0xff, 0xff, 0xff));
  assert.ok(!Array.isArray(corrupt) && /a key of 4294967295 bytes/.test(corrupt.message));
});

Deno.test("FrameReader reports bytes that end inside a pair", () => {
  const framed = framePair(enc.encode("key"), enc.encode("value"));
  for (const cut of [1, FRAME_LENGTH_BYTES, FRAME_LENGTH_BYTES + 3, framed.length - 1]) {
    const reader = new FrameReader(64);
    assert.deepEqual(reader.push(framed.slice(0, cut)), []);
    const end = reader.finish();
    assert.equal(end?.kind, "truncated", `cut at ${cut}`);
    assert.match(end!.message, /end inside pair 1/);
  }
  assert.equal(new FrameReader(64).finish(), undefined, "no bytes: no pair, no problem");
});
