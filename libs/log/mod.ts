/**
 * `@tinykv/log`: the async double-buffered logger of TinyKV.
 *
 * Callers append JSON lines to a front buffer and return at once: a log call never awaits I/O
 * and never throws. One background writer swaps the front and back buffers when 4 KiB
 * (`batchBytes`) are buffered or `flushIntervalMs` has passed, and writes the whole batch to
 * `<dir>/<name>-YYYY-MM-DD.log` (the UTC date of each line; a batch that spans midnight is split
 * across the two files). `flush()` and `close()` resolve once everything logged before them is
 * written; `close()` also syncs the file.
 *
 * Memory is bounded: the two buffers are allocated once, `bufferBytesMax / 2` each. When the disk
 * cannot keep up and the front buffer fills while the back one is being written:
 * - with `overflow: "drop"` (default), every call that finds no room drops its line, counts it
 *   in `stats().droppedLines` and returns `{ kind: "dropped" }`; until the writer frees the
 *   buffer all further lines are dropped too, and then a `warn` line
 *   `{"msg":"Dropped log lines: the buffer was full","droppedLines":N}` marks the gap;
 * - with `overflow: "block"`, `await log.logAsync(level, msg, fields)` waits in a first-come,
 *   first-served queue (at most `waitingCallersMax` callers; beyond that it drops) until the
 *   writer frees the buffer. Synchronous calls cannot wait in JavaScript: they drop as above.
 * `await log.waitForRoom()` lets a producer pace itself under either policy.
 *
 * Write errors (disk full, file removed...) never reach callers: the failed batch's lines are
 * counted in `stats().failedLines`, the message kept in `stats().lastWriteError`, `flush()` and
 * `close()` return `{ kind: "failed" }`, and the next batch is written as usual (no retry: a
 * partial write retried would duplicate lines).
 *
 * Shutdown: a process that ends because it ran out of work still writes every line (the
 * pending interval timer keeps it alive until the last batch is written); one that ends by
 * `Deno.exit()` or a signal loses what is buffered unless it awaits `close()` first. `flush()`
 * and `close()` wait for the sink: a write that never settles (a hung disk) stalls them.
 *
 * Permissions: `--allow-write` for the log directory (none with a custom `sink`).
 *
 * @example
 * ```ts
 * import { openLogger } from "@tinykv/log";
 *
 * const dir = await Deno.makeTempDir();
 * const log = openLogger({ dir, name: "kvnode", level: "info" });
 * const shardLog = log.child({ node: "n1", shard: 7 });
 * shardLog.info("became leader", { term: 3n, peer: new Uint8Array([1, 2]) });
 * shardLog.debug("filtered out below the logger's level");
 * const result = await log.close(); // Everything logged above is on disk now.
 * console.log(result.kind, log.stats().writtenLines); // flushed 1
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */

export {
  type AppendResult,
  BATCH_BYTES_DEFAULT,
  BUFFER_BYTES_MAX_DEFAULT,
  type Clock,
  type CommonLoggerOptions,
  type FileLoggerOptions,
  FLUSH_INTERVAL_MS_DEFAULT,
  type FlushResult,
  LINE_BYTES_MAX_DEFAULT,
  LINE_BYTES_MIN,
  type Logger,
  type LoggerOptions,
  type LogStats,
  type LogTimer,
  openLogger,
  type OverflowPolicy,
  type SinkLoggerOptions,
  TRUNCATED_MSG_CHARS_MAX,
  WAITING_CALLERS_MAX_DEFAULT,
} from "./logger.ts";
export { FileSink, logFileName, type LogSink } from "./file_sink.ts";
export {
  BYTES_HEX_MAX,
  encodeValue,
  FIELD_DEPTH_MAX,
  FIELD_ITEMS_MAX,
  type Fields,
  type Level,
  LEVEL_RANK,
} from "./format.ts";
