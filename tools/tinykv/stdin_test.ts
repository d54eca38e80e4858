// Checks the reads behind a VALUE of "-": readAllBounded() at, under and past its bound with
// inputs arriving in small chunks (and that it stops reading one byte past the bound), and
// readStdinValue() for raw bytes, hex text with whitespace, text that is not hex, and a reader
// that fails. Fake readers stand in for stdin.

import assert from "node:assert/strict";
import { type ByteReader, readAllBounded, readStdinValue } from "./stdin.ts";

/** A reader over `data` that hands out at most `chunk` bytes a read, and counts what it gave. */
function chunkedReader(data: Uint8Array, chunk: number): ByteReader & { given: number } {
  const reader = {
    given: 0,
    read(p: Uint8Array): Promise<number | null> {
      if (reader.given === data.length) return Promise.resolve(null);
      const count = Math.min(chunk, p.length, data.length - reader.given);
      p.set(data.subarray(reader.given, reader.given + count));
      reader.given += count;
      return Promise.resolve(count);
    },
  };
  return reader;
}

const pattern = (length: number) => Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff);

Deno.test("readAllBounded() reads all of an input of at most bytesMax bytes", async () => {
  for (const [length, bytesMax, chunk] of [[0, 0, 1], [0, 10, 4], [9, 10, 4], [10, 10, 3]]) {
    const data = pattern(length);
    assert.deepEqual(
      await readAllBounded(chunkedReader(data, chunk), bytesMax),
      { kind: "ok", bytes: data },
      `${length} bytes, bytesMax ${bytesMax}`,
    );
  }
  // Past the first buffer (64 KiB), which then grows.
  const large = pattern(200_000);
  assert.deepEqual(await readAllBounded(chunkedReader(large, 50_000), 200_000), {
    kind: "ok",
    bytes: large,
  });
});

Deno.test("readAllBounded() stops one byte past bytesMax", async () => {
  for (const [length, bytesMax] of [[1, 0], [11, 10], [1000, 10], [300_000, 200_000]]) {
    const reader = chunkedReader(pattern(length), 7);
    assert.deepEqual(await readAllBounded(reader, bytesMax), { kind: "tooLong", bytesMax });
    assert.equal(reader.given, bytesMax + 1, `${length} bytes, bytesMax ${bytesMax}`);
  }
  await assert.rejects(readAllBounded(chunkedReader(pattern(1), 1), -1), RangeError);
});

Deno.test("readStdinValue() takes raw bytes as they are, newlines included", async () => {
  const data = Uint8Array.from([0, 10, 255, 13, 10]);
  assert.deepEqual(await readStdinValue(chunkedReader(data, 2), { hex: false }), {
    kind: "ok",
    value: data,
  });
  const over = await readStdinValue(chunkedReader(pattern(9), 4), {
    hex: false,
    valueBytesMax: 8,
  });
  assert.equal(over.kind, "tooLong");
  assert.match(
    (over as { message: string }).message,
    /^Cannot read stdin for "-": it has more than 8 bytes \(.* at most 8 bytes/,
  );
});

Deno.test("readStdinValue() decodes hex text, ignoring whitespace and case", async () => {
  const text = new TextEncoder().encode(" 00fF\n7a\r\n\t10 \n");
  assert.deepEqual(await readStdinValue(chunkedReader(text, 3), { hex: true }), {
    kind: "ok",
    value: Uint8Array.from([0x00, 0xff, 0x7a, 0x10]),
  });
  const encode = (s: string) => new TextEncoder().encode(s);
  for (
    const [input, found] of [
      ["abc", /an odd count of digits \(3\)/],
      ["ab zz", /found "z" after 2 digits/],
      // UTF-8 "é" is the bytes C3 A9; the first of them is the character found.
      ["0\u00e9", /found "Ã" after 1 digits/],
    ] as const
  ) {
    const read = await readStdinValue(chunkedReader(encode(input), 64), { hex: true });
    assert.equal(read.kind, "notHex", input);
    assert.match((read as { message: string }).message, found, input);
  }
  // Two digits and a separator per byte: 3 x 2 bytes of text at most, and 4 digits.
  const digits = await readStdinValue(chunkedReader(encode("001122"), 64), {
    hex: true,
    valueBytesMax: 2,
  });
  assert.equal(digits.kind, "tooLong");
  assert.match((digits as { message: string }).message, /more than 4 hex digits/);
  const text7 = await readStdinValue(chunkedReader(encode("00     1"), 64), {
    hex: true,
    valueBytesMax: 2,
  });
  assert.equal(text7.kind, "tooLong");
  assert.match((text7 as { message: string }).message, /more than 6 bytes of hex text/);
});

Deno.test("readStdinValue() reports a reader that fails as unreadable", async () => {
  const failing: ByteReader = {
    read: () => Promise.reject(new Deno.errors.IsADirectory("Is a directory (os error 21)")),
  };
  assert.deepEqual(await readStdinValue(failing, { hex: false }), {
    kind: "unreadable",
    message: 'Cannot read stdin for "-": Is a directory (os error 21)',
  });
  await assert.rejects(readStdinValue(failing, { hex: false, valueBytesMax: -1 }), RangeError);
});
