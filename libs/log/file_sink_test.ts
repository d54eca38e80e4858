// Checks FileSink against a real temporary directory: one file per UTC day, appends to an
// existing file, and rejects names that would escape the directory.

import assert from "node:assert/strict";
import { FileSink, logFileName } from "./file_sink.ts";

const encoder = new TextEncoder();

Deno.test("FileSink.write() appends to <name>-<day>.log, one file per day", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/${logFileName("node", "2026-01-01")}`, "old\n");
    const sink = new FileSink(dir, "node");
    await sink.write("2026-01-01", encoder.encode("a\n"));
    await sink.write("2026-01-02", encoder.encode("b\n"));
    await sink.write("2026-01-02", encoder.encode("c\n"));
    await sink.sync();
    await sink.close();
    assert.equal(await Deno.readTextFile(`${dir}/node-2026-01-01.log`), "old\na\n");
    assert.equal(await Deno.readTextFile(`${dir}/node-2026-01-02.log`), "b\nc\n");
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names.sort(), ["node-2026-01-01.log", "node-2026-01-02.log"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink.write() rejects when the directory is gone, then recovers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sink = new FileSink(`${dir}/missing`, "node");
    await assert.rejects(sink.write("2026-01-01", encoder.encode("a\n")), Deno.errors.NotFound);
    await Deno.mkdir(`${dir}/missing`);
    await sink.write("2026-01-01", encoder.encode("b\n"));
    await sink.close();
    // The line after a failure starts on a fresh line, so a torn line cannot swallow it.
    assert.equal(await Deno.readTextFile(`${dir}/missing/node-2026-01-01.log`), "\nb\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileSink rejects names that are not plain file name parts", () => {
  for (const name of ["", "../x", "a/b", ".hidden", "a b"]) {
    assert.throws(() => new FileSink("/tmp", name), TypeError, name);
  }
});
