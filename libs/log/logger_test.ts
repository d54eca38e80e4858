// Checks the logger end to end: concurrent writers lose and tear no line, rotation by UTC date
// with an injected clock, flush/close guarantees, the batch and interval triggers (with a
// manual timer, and once with a real one waiting on a condition), the bounded-memory overflow
// policies with a held (slow) sink, and write errors that never reach callers.

import assert from "node:assert/strict";
import { type AppendResult, type Logger, openLogger } from "./logger.ts";
import { ManualClock, ManualTimer, MemorySink, turn, waitFor } from "./_testing.ts";

type Line = Record<string, unknown>;

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tinykv_log_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function readLines(path: string): Promise<Line[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text.endsWith("\n"), "a file ends with a whole line");
  return text.slice(0, -1).split("\n").map((line) => JSON.parse(line));
}

async function concurrentWriters(
  log: Logger,
  writers: number,
  linesEach: number,
  write: (writer: number, seq: number) => Promise<void>,
): Promise<void> {
  await Promise.all(
    Array.from({ length: writers }, async (_, writer) => {
      for (let seq = 0; seq < linesEach; seq++) await write(writer, seq);
    }),
  );
  assert.equal((await log.close()).kind, "flushed");
}

function checkEveryLineOnce(lines: Line[], writers: number, linesEach: number): void {
  assert.equal(lines.length, writers * linesEach);
  const next = new Array<number>(writers).fill(0);
  for (const line of lines) {
    const writer = line.writer as number;
    assert.equal(line.seq, next[writer], `writer ${writer} lines are whole and in order`);
    assert.equal(line.pad, "x".repeat(40));
    next[writer] += 1;
  }
  assert.deepEqual(next, new Array<number>(writers).fill(linesEach));
}

Deno.test("info() from 50 concurrent writers x 2000 lines loses and tears no line", async () => {
  await withTempDir(async (dir) => {
    const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
    // 32 MiB holds all 100,000 lines even if the disk stalls, so the test cannot drop.
    const log = openLogger({ dir, name: "many", clock, bufferBytesMax: 32 * 1024 * 1024 });
    const pad = "x".repeat(40);
    await concurrentWriters(log, 50, 2000, async (writer, seq) => {
      assert.equal(log.info("line", { writer, seq, pad }).kind, "appended");
      await Promise.resolve(); // Interleave the writers line by line.
      if (seq % 100 === 99) await turn(); // Let the background writer run.
    });
    const stats = log.stats();
    assert.equal(stats.droppedLines, 0);
    assert.equal(stats.writtenLines, 100_000);
    assert.ok(stats.batches > 1, `many batches: ${stats.batches}`);
    checkEveryLineOnce(await readLines(`${dir}/many-2026-11-25.log`), 50, 2000);
  });
});

Deno.test("logAsync() from 50 writers x 2000 lines with a 64 KiB buffer blocks, never drops", async () => {
  await withTempDir(async (dir) => {
    const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
    const log = openLogger({
      dir,
      name: "block",
      clock,
      overflow: "block",
      bufferBytesMax: 64 * 1024,
      waitingCallersMax: 50,
    });
    const pad = "x".repeat(40);
    let maxWaiting = 0;
    await concurrentWriters(log, 50, 2000, async (writer, seq) => {
      const result = await log.logAsync("info", "line", { writer, seq, pad });
      assert.equal(result.kind, "appended");
      maxWaiting = Math.max(maxWaiting, log.stats().waitingCallers);
      assert.ok(log.stats().bufferedBytes <= 64 * 1024);
    });
    assert.ok(maxWaiting > 0, "callers had to wait for room");
    assert.equal(log.stats().droppedLines, 0);
    checkEveryLineOnce(await readLines(`${dir}/block-2026-11-25.log`), 50, 2000);
  });
});

Deno.test("the logger rotates files at UTC midnight of the injected clock", async () => {
  await withTempDir(async (dir) => {
    const clock = new ManualClock(Date.parse("2026-11-25T23:59:59.000Z"));
    const log = openLogger({ dir, name: "node", clock, timer: new ManualTimer() });
    for (let i = 0; i < 3; i++) {
      log.info("before", { i });
      clock.ms += 100;
    }
    clock.ms = Date.parse("2026-11-26T00:00:00.500Z");
    log.info("after", { i: 3 }); // Same batch as the lines before midnight.
    assert.equal((await log.flush()).kind, "flushed");
    clock.ms += 1000;
    log.info("after", { i: 4 });
    log.info("after", { i: 5 });
    assert.equal((await log.close()).kind, "flushed");

    const first = await readLines(`${dir}/node-2026-11-25.log`);
    const second = await readLines(`${dir}/node-2026-11-26.log`);
    assert.deepEqual(first.map((line) => line.i), [0, 1, 2]);
    assert.deepEqual(second.map((line) => line.i), [3, 4, 5]);
    assert.equal(first[2].ts, "2026-11-25T23:59:59.200Z");
    assert.equal(second[0].ts, "2026-11-26T00:00:00.500Z");
    assert.ok(first.every((line) => line.msg === "before"));
  });
});

Deno.test("info() returns before any sink call, even past batchBytes", async () => {
  const sink = new MemorySink();
  const log = openLogger({ sink, timer: new ManualTimer() });
  for (let i = 0; i < 200; i++) log.info("burst", { i, pad: "b".repeat(50) });
  assert.ok(log.stats().bufferedBytes > 4096);
  assert.equal(sink.calls, 0, "the writer starts only after the caller's code returns");
  await log.flush();
  assert.ok(sink.calls >= 1);
  assert.equal(sink.records().length, 200);
  await log.close();
});

Deno.test("a clock stepping back over midnight sends each line to its own day's file", async () => {
  const sink = new MemorySink();
  const clock = new ManualClock(Date.parse("2026-03-01T23:59:59.990Z"));
  const log = openLogger({ sink, clock, timer: new ManualTimer() });
  log.info("a");
  clock.ms += 20;
  log.info("b");
  clock.ms -= 15; // NTP steps the clock back.
  log.info("c");
  await log.close();
  assert.deepEqual(
    sink.writes.map((write) => [write.day, JSON.parse(write.text).msg]),
    [["2026-03-01", "a"], ["2026-03-02", "b"], ["2026-03-01", "c"]],
  );
});

Deno.test("close() writes every buffered line, syncs, and later calls return closed", async () => {
  await withTempDir(async (dir) => {
    const timer = new ManualTimer();
    const clock = new ManualClock(Date.UTC(2026, 0, 2));
    const log = openLogger({ dir, name: "svc", clock, timer, flushIntervalMs: 60_000 });
    for (let i = 0; i < 10; i++) log.info("buffered", { i });
    await turn();
    const path = `${dir}/svc-2026-01-02.log`;
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound, "nothing written below 4 KiB");
    const closing = log.close();
    assert.equal(log.close(), closing, "close() twice returns the same promise");
    assert.equal((await closing).kind, "flushed");
    assert.deepEqual((await readLines(path)).map((line) => line.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(timer.pending, 0, "no timer left armed");
    assert.deepEqual(log.warn("late"), { kind: "closed" });
    assert.deepEqual(await log.logAsync("warn", "late"), { kind: "closed" });
    assert.equal(log.stats().linesAfterClose, 2);
    assert.equal((await log.flush()).kind, "flushed");
  });
});

Deno.test("close() syncs and closes a custom sink", async () => {
  const sink = new MemorySink();
  const log = openLogger({ sink, timer: new ManualTimer() });
  log.info("one");
  assert.equal((await log.close()).kind, "flushed");
  assert.equal(sink.records().length, 1);
  assert.equal(sink.synced, 1);
  assert.ok(sink.closed);
});

Deno.test("the flush interval writes a batch smaller than batchBytes", async () => {
  const sink = new MemorySink();
  const timer = new ManualTimer();
  const log = openLogger({ sink, timer, flushIntervalMs: 50 });
  log.info("lonely");
  await turn();
  assert.equal(sink.writes.length, 0, "the writer waits for the batch or the interval");
  assert.equal(timer.pending, 1);
  timer.fire();
  await waitFor(() => sink.writes.length === 1);
  assert.equal(sink.records()[0].msg, "lonely");
  assert.equal(timer.pending, 0);
  await log.close();
});

Deno.test("the flush interval writes with the real timer (bounded wait)", async () => {
  await withTempDir(async (dir) => {
    const clock = new ManualClock(Date.UTC(2026, 0, 3));
    const log = openLogger({ dir, name: "real", clock, flushIntervalMs: 5 });
    log.info("soon");
    const path = `${dir}/real-2026-01-03.log`;
    await waitFor(async () => {
      try {
        return (await Deno.readTextFile(path)).includes('"msg":"soon"');
      } catch {
        return false;
      }
    }, 2000);
    await log.close();
  });
});

Deno.test("reaching batchBytes starts a write without the interval", async () => {
  const sink = new MemorySink();
  const timer = new ManualTimer();
  const log = openLogger({ sink, timer, batchBytes: 4096 });
  const before = log.stats().writtenBytes;
  for (let i = 0; log.stats().bufferedBytes < 4096; i++) {
    log.info("filling", { i, pad: "y".repeat(60) });
  }
  await waitFor(() => sink.writes.length === 1);
  assert.ok(sink.writes[0].text.length >= 4096);
  assert.equal(before, 0);
  await log.close();
});

Deno.test("overflow drop: a slow sink keeps memory bounded, counts drops and marks the gap", async () => {
  const sink = new MemorySink();
  sink.hold();
  const bufferBytesMax = 16 * 1024;
  const log = openLogger({ sink, timer: new ManualTimer(), bufferBytesMax, lineBytesMax: 2048 });
  const appended: number[] = [];
  const dropped: number[] = [];
  const logMany = (from: number, to: number) => {
    for (let seq = from; seq < to; seq++) {
      const result: AppendResult = log.info("spam", { seq, pad: "z".repeat(60) });
      (result.kind === "appended" ? appended : dropped).push(seq);
      assert.ok(log.stats().bufferedBytes <= bufferBytesMax);
    }
  };
  logMany(0, 200); // Fills the front; the writer has not run yet.
  await turn(); // The writer swaps, writes the notice into the new front, stalls on the sink.
  assert.equal(log.stats().bufferedBytes > 8 * 1024, true, "the back buffer is in flight");
  logMany(200, 400);
  assert.ok(dropped.length > 0 && appended.length > 0);
  assert.equal(log.stats().droppedLines, dropped.length);
  sink.release();
  assert.equal((await log.flush()).kind, "flushed");

  const records = sink.records();
  const seqs = records.filter((r) => r.msg === "spam").map((r) => r.seq);
  assert.deepEqual(seqs, appended, "appended lines are written, in order");
  const notices = records.filter((r) => r.level === "warn");
  assert.ok(notices.length >= 1);
  await log.close();
  // Every drop is noticed: drops after the last swap by the final swap in close().
  assert.equal(
    sink.records().filter((r) => r.level === "warn").reduce(
      (sum, r) => sum + (r.droppedLines as number),
      0,
    ),
    dropped.length,
  );
});

Deno.test("overflow block: logAsync() waits first come, first served; sync calls drop", async () => {
  const sink = new MemorySink();
  sink.hold();
  const log = openLogger({
    sink,
    timer: new ManualTimer(),
    overflow: "block",
    bufferBytesMax: 16 * 1024,
    lineBytesMax: 2048,
    waitingCallersMax: 1000,
  });
  const pending: Promise<AppendResult>[] = [];
  for (let seq = 0; seq < 400; seq++) {
    pending.push(log.logAsync("info", "queued", { seq, pad: "q".repeat(60) }));
  }
  await turn();
  assert.ok(log.stats().waitingCallers > 0);
  assert.deepEqual(log.info("sync while full"), { kind: "dropped" });
  const flushed = log.flush(); // Covers the waiting lines too.
  sink.release();
  assert.equal((await flushed).kind, "flushed");
  assert.equal(sink.records().filter((r) => r.msg === "queued").length, 400);
  const results = await Promise.all(pending);
  assert.ok(results.every((result) => result.kind === "appended"));
  const seqs = sink.records().filter((r) => r.msg === "queued").map((r) => r.seq);
  assert.deepEqual(seqs, Array.from({ length: 400 }, (_, i) => i));
  assert.equal(log.stats().droppedLines, 1);
  await log.close();
});

Deno.test("overflow block: callers beyond waitingCallersMax are dropped", async () => {
  const sink = new MemorySink();
  sink.hold();
  const log = openLogger({
    sink,
    timer: new ManualTimer(),
    overflow: "block",
    bufferBytesMax: 16 * 1024,
    lineBytesMax: 2048,
    waitingCallersMax: 3,
  });
  const pad = "w".repeat(1000);
  const pending: Promise<AppendResult>[] = [];
  for (let seq = 0; seq < 40; seq++) pending.push(log.logAsync("info", "big", { seq, pad }));
  sink.release();
  const kinds = (await Promise.all(pending)).map((result) => result.kind);
  assert.ok(kinds.includes("dropped"));
  assert.equal(kinds.filter((kind) => kind === "dropped").length, log.stats().droppedLines);
  await log.close();
});

Deno.test("waitForRoom() waits while both buffers are full, until the sink catches up", async () => {
  const sink = new MemorySink();
  sink.hold();
  const log = openLogger({
    sink,
    timer: new ManualTimer(),
    bufferBytesMax: 16 * 1024,
    lineBytesMax: 2048,
  });
  await log.waitForRoom(); // Room now: resolves at once.
  let seq = 0;
  const fill = () => {
    while (log.info("fill", { seq: seq++, pad: "r".repeat(80) }).kind === "appended");
  };
  fill();
  await turn(); // The writer swaps and stalls on the held sink with the back buffer.
  fill(); // Now the front is full too.
  let resolved = false;
  const room = log.waitForRoom().then(() => resolved = true);
  await turn();
  await turn();
  assert.equal(resolved, false, "no room while the sink holds the back buffer");
  sink.release();
  await room;
  assert.equal(log.info("after room").kind, "appended");
  await log.close();
});

Deno.test("write errors are counted, never thrown, and reported by flush()", async () => {
  const sink = new MemorySink();
  sink.failWrites = true;
  const log = openLogger({ sink, timer: new ManualTimer() });
  for (let i = 0; i < 5; i++) assert.equal(log.error("lost", { i }).kind, "appended");
  const result = await log.flush();
  assert.deepEqual(result, { kind: "failed", failedLines: 5, error: "Cannot write: disk is full" });
  const stats = log.stats();
  assert.equal(stats.failedLines, 5);
  assert.equal(stats.writeErrors, 1);
  assert.equal(stats.lastWriteError, "Cannot write: disk is full");
  sink.failWrites = false;
  log.info("kept");
  assert.deepEqual(await log.close(), { kind: "flushed" });
  assert.deepEqual(sink.records().map((r) => r.msg), ["kept"]);
});

Deno.test("levels filter lines and child() binds fields", async () => {
  const sink = new MemorySink();
  const clock = new ManualClock(Date.parse("2026-11-25T10:00:00.007Z"));
  const log = openLogger({ sink, clock, timer: new ManualTimer(), level: "info" });
  const shard = log.child({ service: "kvnode", node: "n1" }).child({ shard: 7 });
  assert.deepEqual(shard.debug("hidden"), { kind: "filtered" });
  shard.info("elected", { term: 3n, id: new Uint8Array([0xca, 0xfe]), shard: 8 });
  shard.error("failed", { error: new Error("boom") });
  await log.close();
  const [elected, failed] = sink.records();
  assert.deepEqual(elected, {
    ts: "2026-11-25T10:00:00.007Z",
    level: "info",
    msg: "elected",
    service: "kvnode",
    node: "n1",
    shard: 7,
    term: "3",
    id: "cafe",
    shard_: 8,
  });
  assert.equal((failed.error as Line).message, "boom");
  assert.equal(log.stats().appendedLines, 2);
});

Deno.test("a line longer than lineBytesMax is written truncated", async () => {
  const sink = new MemorySink();
  const log = openLogger({ sink, timer: new ManualTimer(), lineBytesMax: 2048 });
  log.child({ node: "n1" }).info("m".repeat(5000), { blob: "€".repeat(3000) });
  await log.close();
  const [line] = sink.records();
  assert.equal(line.msg, "m".repeat(200));
  assert.equal(line.lineTruncated, true);
  assert.equal(line.node, "n1");
  assert.ok((line.lineBytes as number) > 5000 + 9000);
  assert.equal(log.stats().truncatedLines, 1);
});

Deno.test("openLogger() rejects bad options with messages naming them", async () => {
  const sink = new MemorySink();
  assert.throws(() => openLogger({ sink, batchBytes: 0 }), /"batchBytes" must be a positive/);
  assert.throws(() => openLogger({ sink, bufferBytesMax: 4096 }), /"batchBytes" must be at most/);
  assert.throws(() => openLogger({ sink, lineBytesMax: 100 }), /"lineBytesMax" must be from/);
  assert.throws(() => openLogger({ sink, flushIntervalMs: 1.5 }), /"flushIntervalMs"/);
  // @ts-expect-error: a level that does not exist, as from an untyped config.
  assert.throws(() => openLogger({ sink, level: "trace" }), /"level" must be one of/);
  // @ts-expect-error: a policy that does not exist.
  assert.throws(() => openLogger({ sink, overflow: "grow" }), /"overflow" must be/);
  // @ts-expect-error: both destinations.
  assert.throws(() => openLogger({ sink, dir: "/tmp", name: "x" }), TypeError);
  await withTempDir(async (dir) => {
    assert.throws(() => openLogger({ dir, name: "../up" }), TypeError);
    const log = openLogger({ dir: `${dir}/a/b`, name: "nested" });
    assert.ok((await Deno.stat(`${dir}/a/b`)).isDirectory);
    await log.close();
  });
});
