/**
 * The async double-buffered logger: callers append encoded lines to a front buffer and return
 * at once; one background writer swaps front and back and writes the back buffer to a
 * {@linkcode LogSink}.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { LineBuffer, utf8Length } from "./_line_buffer.ts";
import { checkLogName, FileSink, type LogSink } from "./file_sink.ts";
import {
  buildHumanLine,
  buildLine,
  encodeFields,
  type Fields,
  type Level,
  LEVEL_RANK,
  RESERVED_KEYS,
  TimestampFormatter,
} from "./format.ts";

/** A source of wall-clock time, injectable for tests. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** A one-shot timer, injectable for tests. The logger arms at most one at a time. */
export interface LogTimer {
  /** Calls `callback` once after `delayMs`; returns a handle for `clearTimeout`. */
  setTimeout(callback: () => void, delayMs: number): unknown;
  /** Cancels a timer that has not fired yet, given the handle `setTimeout` returned. */
  clearTimeout(handle: unknown): void;
}

/**
 * What to do with a line when the buffer is full (the disk cannot keep up):
 * - `"drop"`: every call that finds no room drops its line and counts it.
 * - `"block"`: {@linkcode Logger.logAsync} waits (first come, first served) until there is room;
 *   synchronous calls still drop, because JavaScript cannot block them.
 */
export type OverflowPolicy = "drop" | "block";

/** Default `batchBytes`: the writer starts a write once this much is buffered. */
export const BATCH_BYTES_DEFAULT = 4096;
/** Default `flushIntervalMs`: the longest a line waits in an idle writer's front buffer. */
export const FLUSH_INTERVAL_MS_DEFAULT = 100;
/** Default `bufferBytesMax`: the memory of both buffers together. */
export const BUFFER_BYTES_MAX_DEFAULT = 1024 * 1024;
/** Default `lineBytesMax`: a longer line is replaced by a truncated one. */
export const LINE_BYTES_MAX_DEFAULT = 16 * 1024;
/** Smallest allowed `lineBytesMax`: room for a truncated line. */
export const LINE_BYTES_MIN = 2048;
/** Default `waitingCallersMax`: `logAsync` callers beyond this many waiting are dropped. */
export const WAITING_CALLERS_MAX_DEFAULT = 1024;
/** Characters of the message kept in a line replaced for being longer than `lineBytesMax`. */
export const TRUNCATED_MSG_CHARS_MAX = 200;

/** Options shared by file and custom-sink loggers. */
export interface CommonLoggerOptions {
  /** Lowest level written; lower ones cost almost nothing. Default `"info"`. */
  level?: Level;
  /** Wall clock for timestamps and the date of each line. Default `Date`. */
  clock?: Clock;
  /** Timer for the flush interval. Default the global `setTimeout`. */
  timer?: LogTimer;
  /** Buffered bytes that start a write. Default {@linkcode BATCH_BYTES_DEFAULT}. */
  batchBytes?: number;
  /** Longest wait of a buffered line before a write starts. Default 100 ms. */
  flushIntervalMs?: number;
  /** Memory of the two buffers together; each gets half. Default 1 MiB. */
  bufferBytesMax?: number;
  /** Longest line in UTF-8 bytes; at most a quarter of `bufferBytesMax`. Default 16 KiB. */
  lineBytesMax?: number;
  /** What happens when the buffer is full. Default `"drop"`. */
  overflow?: OverflowPolicy;
  /** Most `logAsync` callers waiting for room at once (`"block"` only). Default 1024. */
  waitingCallersMax?: number;
  /**
   * Also write each line, human-readable, to stderr (dev mode). That write is synchronous and
   * is paid by the caller. Default false.
   */
  alsoStderr?: boolean;
}

/** Options of a logger writing `<dir>/<name>-YYYY-MM-DD.log`. */
export interface FileLoggerOptions extends CommonLoggerOptions {
  /** Log directory; created (recursively) by `openLogger` if missing. */
  dir: string;
  /** Log name: letters, digits, `.`, `_`, `-`. */
  name: string;
  /** Not allowed together with `dir`. */
  sink?: undefined;
}

/** Options of a logger writing to a custom {@linkcode LogSink} (tests, other destinations). */
export interface SinkLoggerOptions extends CommonLoggerOptions {
  /** Where batches go. */
  sink: LogSink;
  /** Not allowed together with `sink`. */
  dir?: undefined;
  /** Not allowed together with `sink`. */
  name?: undefined;
}

/** Options of {@linkcode openLogger}. */
export type LoggerOptions = FileLoggerOptions | SinkLoggerOptions;

/** The outcome of one log call. */
export type AppendResult =
  /** The line is in the buffer; `flush()` and `close()` will write it. */
  | { readonly kind: "appended" }
  /** The line's level is below the logger's level; nothing was done. */
  | { readonly kind: "filtered" }
  /** The buffer was full (or too many callers were waiting); the line is counted as dropped. */
  | { readonly kind: "dropped" }
  /** The logger is closed; the line is counted in `linesAfterClose`. */
  | { readonly kind: "closed" };

/** The outcome of `flush()` or `close()`. */
export type FlushResult =
  /** Every line logged before the call was handed to the sink, and the sink accepted it. */
  | { readonly kind: "flushed" }
  /**
   * A sink call failed while waiting. `failedLines` counts the lines of the failed batches; at
   * least one of them was logged before the call. `error` is the last failure's message.
   */
  | { readonly kind: "failed"; readonly failedLines: number; readonly error: string };

/** Counters of a logger (shared by a logger and all its children). */
export interface LogStats {
  /** Lines put in the buffer, including drop notices and truncated lines. */
  appendedLines: number;
  /** Lines the sink accepted. */
  writtenLines: number;
  /** Bytes the sink accepted. */
  writtenBytes: number;
  /** Lines dropped because the buffer was full or too many callers were waiting. */
  droppedLines: number;
  /** Lines of batches the sink failed to write. */
  failedLines: number;
  /** Failed sink calls (`write`, `sync`, `close`). */
  writeErrors: number;
  /** The last sink failure's message, if any. */
  lastWriteError: string | undefined;
  /** Lines longer than `lineBytesMax`, written truncated. */
  truncatedLines: number;
  /** Log calls made after `close()`. */
  linesAfterClose: number;
  /** Sink `write` calls. */
  batches: number;
  /** Bytes in both buffers now (never above `bufferBytesMax`). */
  bufferedBytes: number;
  /** The memory bound of the buffers. */
  bufferBytesMax: number;
  /** `logAsync` callers waiting for room now. */
  waitingCallers: number;
}

/**
 * A logger. Children made by {@linkcode Logger.child} share the buffers, the writer, the
 * stats, `flush()` and `close()` of the logger they came from.
 *
 * Lines are JSON: `{"ts":ISO-8601 UTC,"level","msg",...bound fields,...call fields}`.
 */
export interface Logger {
  /** Logs at `debug`. Returns at once; never throws, never awaits I/O. */
  debug(msg: string, fields?: Fields): AppendResult;
  /** Logs at `info`. Returns at once; never throws, never awaits I/O. */
  info(msg: string, fields?: Fields): AppendResult;
  /** Logs at `warn`. Returns at once; never throws, never awaits I/O. */
  warn(msg: string, fields?: Fields): AppendResult;
  /** Logs at `error`. Returns at once; never throws, never awaits I/O. */
  error(msg: string, fields?: Fields): AppendResult;
  /** Logs at `level`. Returns at once; never throws, never awaits I/O. */
  log(level: Level, msg: string, fields?: Fields): AppendResult;
  /**
   * Logs at `level`, waiting for room when the buffer is full and the policy is `"block"`
   * (otherwise it behaves like `log`). The timestamp is taken at the call. Never rejects.
   */
  logAsync(level: Level, msg: string, fields?: Fields): Promise<AppendResult>;
  /**
   * Resolves when the front buffer has room for a line of `lineBytesMax` and no caller is
   * waiting ahead (or the logger is closed): a producer's cheap way to pace itself.
   */
  waitForRoom(): Promise<void>;
  /** Returns a logger that adds `fields` to every line (e.g. service, node id, shard). */
  child(fields: Fields): Logger;
  /**
   * Resolves once every line logged before the call (including `logAsync` lines waiting for
   * room) has been handed to the sink: on disk, for the file sink, as far as the OS is
   * concerned (it survives the process, not a power cut; `close()` also syncs).
   */
  flush(): Promise<FlushResult>;
  /**
   * Stops accepting lines, writes everything logged before, syncs and closes the sink. Calling
   * it again returns the same promise.
   */
  close(): Promise<FlushResult>;
  /** A snapshot of the counters. */
  stats(): LogStats;
}

const APPENDED: AppendResult = Object.freeze({ kind: "appended" });
const FILTERED: AppendResult = Object.freeze({ kind: "filtered" });
const DROPPED: AppendResult = Object.freeze({ kind: "dropped" });
const CLOSED: AppendResult = Object.freeze({ kind: "closed" });
const FLUSHED: FlushResult = Object.freeze({ kind: "flushed" });
const SYSTEM_CLOCK: Clock = { now: () => Date.now() };
const GLOBAL_TIMER: LogTimer = {
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

interface LineWaiter {
  kind: "line";
  day: string;
  line: string;
  resolve: (result: AppendResult) => void;
  /** Settles when the line is in the buffer (what `flush()` waits for first). */
  appended: Promise<AppendResult>;
}

type Waiter = LineWaiter | { kind: "room"; resolve: () => void };

interface FlushWaiter {
  targetLines: number;
  failedLinesAtStart: number;
  resolve: (result: FlushResult) => void;
}

interface Limits {
  batchBytes: number;
  flushIntervalMs: number;
  bufferBytesMax: number;
  lineBytesMax: number;
  waitingCallersMax: number;
}

/**
 * Opens a logger. With `dir` and `name`, creates the directory if needed (synchronously, so
 * that a bad log directory fails at startup) and writes `<dir>/<name>-YYYY-MM-DD.log` (UTC
 * date of each line); with `sink`, writes to that sink.
 *
 * Permissions: `--allow-write` for `dir` (none with a custom sink).
 *
 * @throws {TypeError} A bad `name`, or neither/both of `dir` and `sink`.
 * @throws {RangeError} A limit out of range; the message names it.
 * @throws {Deno.errors.PermissionDenied} The directory cannot be created.
 */
export function openLogger(options: LoggerOptions): Logger {
  const limits = checkLimits(options);
  let sink: LogSink;
  if (options.sink !== undefined) {
    if (options.dir !== undefined) {
      throw new TypeError('Cannot open logger: "dir" and "sink" are exclusive');
    }
    sink = options.sink;
  } else {
    if (typeof options.dir !== "string" || options.dir === "") {
      throw new TypeError('Cannot open logger: expected "dir" (a directory) or "sink"');
    }
    checkLogName(options.name);
    Deno.mkdirSync(options.dir, { recursive: true });
    sink = new FileSink(options.dir, options.name);
  }
  const core = new LogCore(sink, options, limits);
  return new ChildLogger(core, "", new Set());
}

function checkLimits(options: CommonLoggerOptions): Limits {
  const limits: Limits = {
    batchBytes: options.batchBytes ?? BATCH_BYTES_DEFAULT,
    flushIntervalMs: options.flushIntervalMs ?? FLUSH_INTERVAL_MS_DEFAULT,
    bufferBytesMax: options.bufferBytesMax ?? BUFFER_BYTES_MAX_DEFAULT,
    lineBytesMax: options.lineBytesMax ?? LINE_BYTES_MAX_DEFAULT,
    waitingCallersMax: options.waitingCallersMax ?? WAITING_CALLERS_MAX_DEFAULT,
  };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`Cannot open logger: "${key}" must be a positive integer: got ${value}`);
    }
  }
  if (options.level !== undefined && !Object.hasOwn(LEVEL_RANK, options.level)) {
    throw new RangeError(
      `Cannot open logger: "level" must be one of ${Object.keys(LEVEL_RANK).join(", ")}: ` +
        `got ${JSON.stringify(options.level)}`,
    );
  }
  if (options.overflow !== undefined && !["drop", "block"].includes(options.overflow)) {
    throw new RangeError(
      `Cannot open logger: "overflow" must be "drop" or "block": ` +
        `got ${JSON.stringify(options.overflow)}`,
    );
  }
  const half = Math.floor(limits.bufferBytesMax / 2);
  if (limits.batchBytes > half) {
    throw new RangeError(
      `Cannot open logger: "batchBytes" must be at most half of "bufferBytesMax": ` +
        `batchBytes is ${limits.batchBytes}, bufferBytesMax is ${limits.bufferBytesMax}`,
    );
  }
  if (limits.lineBytesMax < LINE_BYTES_MIN || limits.lineBytesMax > Math.floor(half / 2)) {
    throw new RangeError(
      `Cannot open logger: "lineBytesMax" must be from ${LINE_BYTES_MIN} to a quarter of ` +
        `"bufferBytesMax": lineBytesMax is ${limits.lineBytesMax}, ` +
        `bufferBytesMax is ${limits.bufferBytesMax}`,
    );
  }
  return limits;
}

/** The logger handed to callers: the shared core plus its bound fields. */
class ChildLogger implements Logger {
  readonly #core: LogCore;
  readonly #bound: string;
  readonly #boundKeys: ReadonlySet<string>;

  constructor(core: LogCore, bound: string, boundKeys: ReadonlySet<string>) {
    this.#core = core;
    this.#bound = bound;
    this.#boundKeys = boundKeys;
  }

  debug(msg: string, fields?: Fields): AppendResult {
    return this.#core.append("debug", msg, fields, this.#bound, this.#boundKeys);
  }

  info(msg: string, fields?: Fields): AppendResult {
    return this.#core.append("info", msg, fields, this.#bound, this.#boundKeys);
  }

  warn(msg: string, fields?: Fields): AppendResult {
    return this.#core.append("warn", msg, fields, this.#bound, this.#boundKeys);
  }

  error(msg: string, fields?: Fields): AppendResult {
    return this.#core.append("error", msg, fields, this.#bound, this.#boundKeys);
  }

  log(level: Level, msg: string, fields?: Fields): AppendResult {
    return this.#core.append(level, msg, fields, this.#bound, this.#boundKeys);
  }

  logAsync(level: Level, msg: string, fields?: Fields): Promise<AppendResult> {
    return this.#core.appendAsync(level, msg, fields, this.#bound, this.#boundKeys);
  }

  waitForRoom(): Promise<void> {
    return this.#core.waitForRoom();
  }

  child(fields: Fields): Logger {
    const extra = encodeFields(fields, this.#boundKeys);
    const keys = new Set(this.#boundKeys);
    for (const key of Object.keys(fields)) {
      keys.add(RESERVED_KEYS.has(key) || this.#boundKeys.has(key) ? key + "_" : key);
    }
    return new ChildLogger(this.#core, this.#bound + extra, keys);
  }

  flush(): Promise<FlushResult> {
    return this.#core.flush();
  }

  close(): Promise<FlushResult> {
    return this.#core.close();
  }

  stats(): LogStats {
    return this.#core.stats();
  }
}

/**
 * The shared state: the two buffers, the writer loop, the waiters and the counters.
 *
 * Invariant: lines are handed to the sink in the order they entered the front buffer; the back
 * buffer is empty whenever no write is in flight.
 */
class LogCore {
  readonly #sink: LogSink;
  readonly #clock: Clock;
  readonly #timer: LogTimer;
  readonly #levelRank: number;
  readonly #overflow: OverflowPolicy;
  readonly #alsoStderr: boolean;
  readonly #limits: Limits;
  readonly #timestamps = new TimestampFormatter();

  #front: LineBuffer;
  #back: LineBuffer;
  #writing = false;
  #writeScheduled = false;
  #intervalDue = false;
  #timerId: unknown;
  #closing = false;
  #closePromise: Promise<FlushResult> | undefined;
  // Lines dropped since the last drop notice. While above 0 the front counts as full, so that
  // the notice written at the next swap sits exactly where the lines went missing.
  #dropsSinceNotice = 0;
  readonly #waiters: Waiter[] = [];
  #waitingLines = 0;
  readonly #flushWaiters: FlushWaiter[] = [];

  // Invariant: handledLines <= appendedLines.
  #appendedLines = 0;
  #handledLines = 0;
  #writtenLines = 0;
  #writtenBytes = 0;
  #droppedLines = 0;
  #failedLines = 0;
  #writeErrors = 0;
  #lastWriteError: string | undefined;
  #truncatedLines = 0;
  #linesAfterClose = 0;
  #batches = 0;

  constructor(sink: LogSink, options: CommonLoggerOptions, limits: Limits) {
    this.#sink = sink;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#timer = options.timer ?? GLOBAL_TIMER;
    this.#levelRank = LEVEL_RANK[options.level ?? "info"];
    assert(this.#levelRank !== undefined, "level is one of the known levels");
    this.#overflow = options.overflow ?? "drop";
    this.#alsoStderr = options.alsoStderr ?? false;
    this.#limits = limits;
    const half = Math.floor(limits.bufferBytesMax / 2);
    this.#front = new LineBuffer(half);
    this.#back = new LineBuffer(half);
  }

  append(
    level: Level,
    msg: string,
    fields: Fields | undefined,
    bound: string,
    boundKeys: ReadonlySet<string>,
  ): AppendResult {
    if (LEVEL_RANK[level] < this.#levelRank) return FILTERED;
    if (this.#closing) {
      this.#linesAfterClose += 1;
      return CLOSED;
    }
    const line = this.#format(level, msg, fields, bound, boundKeys);
    const day = this.#timestamps.day;
    if (this.#isFull() || !this.#front.tryAppend(day, line)) return this.#drop();
    this.#appended();
    return APPENDED;
  }

  appendAsync(
    level: Level,
    msg: string,
    fields: Fields | undefined,
    bound: string,
    boundKeys: ReadonlySet<string>,
  ): Promise<AppendResult> {
    if (LEVEL_RANK[level] < this.#levelRank) return Promise.resolve(FILTERED);
    if (this.#closing) {
      this.#linesAfterClose += 1;
      return Promise.resolve(CLOSED);
    }
    const line = this.#format(level, msg, fields, bound, boundKeys);
    const day = this.#timestamps.day;
    if (!this.#isFull() && this.#front.tryAppend(day, line)) {
      this.#appended();
      return Promise.resolve(APPENDED);
    }
    if (this.#overflow === "drop" || this.#waiters.length >= this.#limits.waitingCallersMax) {
      return Promise.resolve(this.#drop());
    }
    const { promise, resolve } = Promise.withResolvers<AppendResult>();
    this.#waiters.push({ kind: "line", day, line, resolve, appended: promise });
    this.#waitingLines += 1;
    this.#kick();
    return promise;
  }

  waitForRoom(): Promise<void> {
    if (this.#closing || (!this.#isFull() && this.#hasRoomForLine())) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push({ kind: "room", resolve });
      this.#kick();
    });
  }

  flush(): Promise<FlushResult> {
    const failedLinesAtStart = this.#failedLines;
    const lastWaiting = this.#waiters.findLast((waiter) => waiter.kind === "line");
    if (lastWaiting === undefined) return this.#flushAppended(failedLinesAtStart);
    // Lines waiting for room were logged before this call: once the last of them is in the
    // buffer (behind any drop notice), every line logged before is, and the target is known.
    return lastWaiting.appended.then(() => this.#flushAppended(failedLinesAtStart));
  }

  #flushAppended(failedLinesAtStart: number): Promise<FlushResult> {
    this.#assertLineAccounting();
    const targetLines = this.#appendedLines;
    if (targetLines <= this.#handledLines) {
      return Promise.resolve(this.#flushResult(failedLinesAtStart));
    }
    const { promise, resolve } = Promise.withResolvers<FlushResult>();
    this.#flushWaiters.push({ targetLines, failedLinesAtStart, resolve });
    this.#kick();
    return promise;
  }

  close(): Promise<FlushResult> {
    this.#closePromise ??= this.#closeOnce();
    return this.#closePromise;
  }

  stats(): LogStats {
    return {
      appendedLines: this.#appendedLines,
      writtenLines: this.#writtenLines,
      writtenBytes: this.#writtenBytes,
      droppedLines: this.#droppedLines,
      failedLines: this.#failedLines,
      writeErrors: this.#writeErrors,
      lastWriteError: this.#lastWriteError,
      truncatedLines: this.#truncatedLines,
      linesAfterClose: this.#linesAfterClose,
      batches: this.#batches,
      bufferedBytes: this.#front.usedBytes + this.#back.usedBytes,
      bufferBytesMax: this.#limits.bufferBytesMax,
      waitingCallers: this.#waiters.length,
    };
  }

  async #closeOnce(): Promise<FlushResult> {
    this.#closing = true;
    // Lines already waiting for room were logged before close: flush() counts them.
    let result = await this.flush();
    this.#clearTimer();
    this.#resolveRoomWaiters();
    for (const step of ["sync", "close"] as const) {
      try {
        await this.#sink[step]();
      } catch (error) {
        this.#recordError(error);
        if (result.kind === "flushed") {
          result = { kind: "failed", failedLines: 0, error: this.#lastWriteError! };
        }
      }
    }
    return result;
  }

  #format(
    level: Level,
    msg: string,
    fields: Fields | undefined,
    bound: string,
    boundKeys: ReadonlySet<string>,
  ): string {
    const now = this.#clock.now();
    assert(Number.isFinite(now), "clock.now() returns a finite number of milliseconds");
    const ts = this.#timestamps.format(now);
    const fieldText = encodeFields(fields, boundKeys);
    let line = buildLine(ts, level, msg, bound, fieldText);
    if (line.length * 3 > this.#limits.lineBytesMax) {
      const bytes = utf8Length(line);
      if (bytes > this.#limits.lineBytesMax) line = this.#truncated(ts, level, msg, bound, bytes);
    }
    if (this.#alsoStderr) writeStderr(buildHumanLine(ts, level, msg, bound, fieldText));
    return line;
  }

  #truncated(ts: string, level: Level, msg: string, bound: string, bytes: number): string {
    this.#truncatedLines += 1;
    const short = String(msg).slice(0, TRUNCATED_MSG_CHARS_MAX);
    // Bound fields (service, node, shard) are kept when they fit beside the longest possible
    // rest of the line: each message character takes at most 6 bytes escaped.
    const restBytesMax = TRUNCATED_MSG_CHARS_MAX * 6 + 200;
    const keepBound = utf8Length(bound) + restBytesMax <= this.#limits.lineBytesMax;
    const extra = `,"lineTruncated":true,"lineBytes":${bytes}`;
    const line = buildLine(ts, level, short, keepBound ? bound : "", extra);
    assert(utf8Length(line) <= this.#limits.lineBytesMax, "a truncated line fits lineBytesMax");
    return line;
  }

  #isFull(): boolean {
    return this.#dropsSinceNotice > 0 || this.#waitingLines > 0;
  }

  #hasRoomForLine(): boolean {
    return this.#front.freeBytes >= this.#limits.lineBytesMax;
  }

  #drop(): AppendResult {
    this.#droppedLines += 1;
    this.#dropsSinceNotice += 1;
    this.#kick();
    return DROPPED;
  }

  #appended(): void {
    this.#appendedLines += 1;
    if (this.#front.usedBytes >= this.#limits.batchBytes) this.#kick();
    else this.#armTimer();
  }

  #armTimer(): void {
    if (this.#timerId !== undefined) return;
    this.#timerId = this.#timer.setTimeout(() => {
      this.#timerId = undefined;
      this.#intervalDue = true;
      this.#kick();
    }, this.#limits.flushIntervalMs);
  }

  #clearTimer(): void {
    if (this.#timerId === undefined) return;
    this.#timer.clearTimeout(this.#timerId);
    this.#timerId = undefined;
  }

  /** Starts the writer in a microtask, so that the caller returns before any I/O starts. */
  #kick(): void {
    if (this.#writing || this.#writeScheduled) return;
    this.#writeScheduled = true;
    queueMicrotask(() => {
      this.#writeScheduled = false;
      // A failed assertion inside is a bug: let it surface as an unhandled rejection (crash).
      void this.#runWriter();
    });
  }

  #shouldWrite(): boolean {
    if (this.#front.lines === 0) return false;
    const flushWanted = this.#flushWaiters.length > 0 &&
      this.#flushWaiters[0].targetLines > this.#handledLines;
    return this.#front.usedBytes >= this.#limits.batchBytes || this.#intervalDue || flushWanted ||
      this.#closing || this.#dropsSinceNotice > 0 || this.#waiters.length > 0;
  }

  async #runWriter(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    while (this.#shouldWrite()) {
      const batch = this.#swap();
      await this.#writeBatch(batch);
      this.#handledLines += batch.lines;
      assert(this.#handledLines <= this.#appendedLines, "handled lines were appended");
      batch.clear();
      this.#assertLineAccounting();
      this.#resolveFlushWaiters();
    }
    this.#writing = false;
    this.#intervalDue = false;
    if (this.#front.lines > 0) this.#armTimer();
  }

  /** Swaps the buffers; then writes the drop notice and serves waiters into the new front. */
  #swap(): LineBuffer {
    assert(this.#back.lines === 0, "the back buffer is empty when no write is in flight");
    const batch = this.#front;
    this.#front = this.#back;
    this.#back = batch;
    this.#intervalDue = false;
    this.#clearTimer();
    if (this.#dropsSinceNotice > 0) {
      const line = buildLine(
        this.#timestamps.format(this.#clock.now()),
        "warn",
        "Dropped log lines: the buffer was full",
        "",
        `,"droppedLines":${this.#dropsSinceNotice}`,
      );
      assert(this.#front.tryAppend(this.#timestamps.day, line), "a notice fits an empty buffer");
      this.#appendedLines += 1;
      this.#dropsSinceNotice = 0;
    }
    this.#serveWaiters();
    return batch;
  }

  #serveWaiters(): void {
    // Invariant (checkLimits): notice + one line of lineBytesMax fit an empty buffer, so the
    // first waiter is always served after a swap and waiting callers make progress.
    while (this.#waiters.length > 0) {
      const waiter = this.#waiters[0];
      if (waiter.kind === "line") {
        if (!this.#front.tryAppend(waiter.day, waiter.line)) break;
        this.#waitingLines -= 1;
        this.#appendedLines += 1;
        waiter.resolve(APPENDED);
      } else {
        if (!this.#hasRoomForLine()) break;
        waiter.resolve();
      }
      this.#waiters.shift();
    }
    if (this.#front.lines > 0) this.#armTimer();
  }

  #resolveRoomWaiters(): void {
    for (const waiter of this.#waiters) {
      assert(waiter.kind === "room", "line waiters are served before close finishes");
      waiter.resolve();
    }
    this.#waiters.length = 0;
  }

  async #writeBatch(batch: LineBuffer): Promise<void> {
    for (const segment of batch.segments()) {
      this.#batches += 1;
      try {
        await this.#sink.write(segment.day, segment.bytes);
        this.#writtenLines += segment.lines;
        this.#writtenBytes += segment.bytes.length;
      } catch (error) {
        // Decision: a failed write loses its lines (counted), never reaches the caller and is
        // not retried (a partial write retried would duplicate lines). The next batch goes on.
        this.#failedLines += segment.lines;
        this.#recordError(error);
      }
    }
  }

  #recordError(error: unknown): void {
    this.#writeErrors += 1;
    try {
      this.#lastWriteError = error instanceof Error ? error.message : String(error);
    } catch {
      this.#lastWriteError = "unknown error";
    }
  }

  #assertLineAccounting(): void {
    // Invariant: every appended line not yet handled is in one of the two buffers.
    assert(
      this.#appendedLines - this.#handledLines === this.#front.lines + this.#back.lines,
      "appended lines are handled or buffered",
    );
  }

  #resolveFlushWaiters(): void {
    while (
      this.#flushWaiters.length > 0 && this.#flushWaiters[0].targetLines <= this.#handledLines
    ) {
      const waiter = this.#flushWaiters.shift()!;
      waiter.resolve(this.#flushResult(waiter.failedLinesAtStart));
    }
  }

  #flushResult(failedLinesAtStart: number): FlushResult {
    const failedLines = this.#failedLines - failedLinesAtStart;
    if (failedLines === 0) return FLUSHED;
    return { kind: "failed", failedLines, error: this.#lastWriteError ?? "unknown error" };
  }
}

const stderrEncoder = new TextEncoder();

function writeStderr(text: string): void {
  try {
    const bytes = stderrEncoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += Deno.stderr.writeSync(bytes.subarray(offset));
  } catch {
    // Dev output only: a closed stderr must not break logging to the file.
  }
}
