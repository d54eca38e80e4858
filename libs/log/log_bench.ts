// Benchmarks of the logger against a synchronous append per line (FsFile.writeSync on a file
// opened with O_APPEND; Deno 2 has no Deno.writeSync). Two groups:
// - "caller": what a caller pays for 1000 lines. For the logger only the calls are timed
//   (b.start/b.end); the flush after each iteration is not. The baselines format each line with
//   JSON.stringify and write it synchronously, so their time is all caller time.
// - "end-to-end": 10,000 lines until they are handed to the OS (logger: log them, then flush).
//   lines/s = 10,000 / time per iteration.
// Run: deno bench --allow-read --allow-write libs/log/

import { openLogger } from "./mod.ts";

const dir = await Deno.makeTempDir({ prefix: "tinykv_log_bench_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const CALLER_LINES = 1000;
const END_TO_END_LINES = 10_000;
const ITERATIONS = 200;
const WARMUP = 20;
const encoder = new TextEncoder();

function openAppend(name: string): Deno.FsFile {
  return Deno.openSync(`${dir}/${name}.log`, { append: true, create: true });
}

function syncLine(file: Deno.FsFile, i: number): void {
  const line = JSON.stringify({
    ts: new Date().toISOString(),
    level: "info",
    msg: "request served",
    service: "kvnode",
    shard: i & 63,
    node: "n1",
    term: 7,
    latencyMs: 0.25,
  }) + "\n";
  const bytes = encoder.encode(line);
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

const callerRoot = openLogger({ dir, name: "caller", bufferBytesMax: 4 * 1024 * 1024 });
const callerLog = callerRoot.child({ service: "kvnode" });
const fields = (i: number) => ({ shard: i & 63, node: "n1", term: 7, latencyMs: 0.25 });

Deno.bench({
  name: "logger.info() x1000, caller side",
  group: "caller",
  baseline: true,
  n: ITERATIONS,
  warmup: WARMUP,
  async fn(b) {
    b.start();
    for (let i = 0; i < CALLER_LINES; i++) callerLog.info("request served", fields(i));
    b.end();
    await callerRoot.flush();
    if (callerRoot.stats().droppedLines > 0) throw new Error("Benchmark dropped lines");
  },
});

Deno.bench({
  name: "logger.debug() x1000 below level, caller side",
  group: "caller",
  n: ITERATIONS,
  warmup: WARMUP,
  fn() {
    for (let i = 0; i < CALLER_LINES; i++) callerLog.debug("request served", fields(i));
  },
});

const syncFile = openAppend("sync");
Deno.bench({
  name: "JSON.stringify + writeSync x1000 (sync append)",
  group: "caller",
  n: ITERATIONS,
  warmup: WARMUP,
  fn() {
    for (let i = 0; i < CALLER_LINES; i++) syncLine(syncFile, i);
  },
});

const rawFile = openAppend("raw");
const rawLine = encoder.encode(
  '{"ts":"2026-11-25T20:17:51.123Z","level":"info","msg":"request served","shard":1}\n',
);
Deno.bench({
  name: "writeSync of a preformatted line x1000 (I/O only)",
  group: "caller",
  n: ITERATIONS,
  warmup: WARMUP,
  fn() {
    for (let i = 0; i < CALLER_LINES; i++) rawFile.writeSync(rawLine);
  },
});

const e2eRoot = openLogger({ dir, name: "e2e", bufferBytesMax: 8 * 1024 * 1024 });
const e2eLog = e2eRoot.child({ service: "kvnode" });
Deno.bench({
  name: "logger: 10k lines + flush()",
  group: "end-to-end",
  baseline: true,
  n: ITERATIONS / 4,
  warmup: WARMUP / 4,
  async fn() {
    for (let i = 0; i < END_TO_END_LINES; i++) e2eLog.info("request served", fields(i));
    const result = await e2eRoot.flush();
    if (result.kind !== "flushed" || e2eRoot.stats().droppedLines > 0) {
      throw new Error("Benchmark lost lines");
    }
  },
});

const blockRoot = openLogger({ dir, name: "block", overflow: "block", bufferBytesMax: 256 * 1024 });
const blockLog = blockRoot.child({ service: "kvnode" });
Deno.bench({
  name: "logger: 10k lines via await logAsync(), 256 KiB buffer, + flush()",
  group: "end-to-end",
  n: ITERATIONS / 4,
  warmup: WARMUP / 4,
  async fn() {
    for (let i = 0; i < END_TO_END_LINES; i++) {
      await blockLog.logAsync("info", "request served", fields(i));
    }
    await blockRoot.flush();
  },
});

const e2eSyncFile = openAppend("e2e_sync");
Deno.bench({
  name: "JSON.stringify + writeSync: 10k lines (sync append)",
  group: "end-to-end",
  n: ITERATIONS / 4,
  warmup: WARMUP / 4,
  fn() {
    for (let i = 0; i < END_TO_END_LINES; i++) syncLine(e2eSyncFile, i);
  },
});
