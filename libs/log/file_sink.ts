/**
 * The sink interface the logger's writer writes batches to, and its file implementation that
 * splits the log by UTC date into `<dir>/<name>-YYYY-MM-DD.log`.
 *
 * @module
 */

import { assert } from "./_assert.ts";

/**
 * Where the logger's background writer puts batches of lines.
 *
 * Contract:
 * - Calls never overlap: the single writer awaits each call before making the next.
 * - `write(day, data)`: `data` is whole lines (each ends in `\n`) of UTC day `day`
 *   (`YYYY-MM-DD`), in log order. The sink must be done with `data` when its promise settles:
 *   the logger reuses that memory for later lines. A rejection means the lines may not be
 *   stored; the logger counts them as failed and carries on with the next batch (no retry, since
 *   a retried partial write would duplicate lines).
 * - `sync()`: makes what was written durable (the logger calls it from `close()`).
 * - `close()`: releases resources; called once, last.
 */
export interface LogSink {
  /** Appends whole lines of UTC day `day` (`YYYY-MM-DD`). */
  write(day: string, data: Uint8Array): Promise<void>;
  /** Makes everything written so far durable. */
  sync(): Promise<void>;
  /** Releases the sink's resources. No call follows. */
  close(): Promise<void>;
}

/** Characters allowed in a log name: it becomes part of a file name. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NEWLINE = new Uint8Array([0x0a]);

/**
 * Returns the file name of log `name` for UTC day `day`: `<name>-YYYY-MM-DD.log`.
 *
 * @example
 * ```ts
 * import { logFileName } from "@tinykv/log";
 * console.log(logFileName("kvnode", "2026-11-25")); // kvnode-2026-11-25.log
 * ```
 */
export function logFileName(name: string, day: string): string {
  return `${name}-${day}.log`;
}

/** Throws a `TypeError` naming the problem when `name` cannot be part of a log file name. */
export function checkLogName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new TypeError(
      `Cannot use log name ${JSON.stringify(name)}: expected letters, digits, ".", "_" or "-"`,
    );
  }
}

/**
 * A {@linkcode LogSink} appending to one file per UTC day in a directory. The file of a day is
 * opened (created if missing, appended to if present) when the first line of that day arrives,
 * and the previous day's file is closed then.
 *
 * After a failed write the file is reopened on the next write, and that write starts with a
 * `\n`, so that a line torn by the failure does not swallow the next one: readers see at worst
 * one malformed line where the failure happened.
 *
 * Needs `--allow-write` for the directory.
 */
export class FileSink implements LogSink {
  readonly #dir: string;
  readonly #name: string;
  #day: string | undefined;
  #file: Deno.FsFile | undefined;
  #tornDay: string | undefined;

  /** Creates a sink for `<dir>/<name>-YYYY-MM-DD.log`. Opens no file yet. */
  constructor(dir: string, name: string) {
    checkLogName(name);
    this.#dir = dir;
    this.#name = name;
  }

  /** The path of the file of UTC day `day`. */
  pathOf(day: string): string {
    return `${this.#dir}/${logFileName(this.#name, day)}`;
  }

  /** Appends `data` to the file of `day`, opening it (and closing the previous day's) first. */
  async write(day: string, data: Uint8Array): Promise<void> {
    try {
      if (this.#file === undefined || this.#day !== day) await this.#open(day);
      const file = this.#file!;
      if (this.#tornDay === day) await writeAll(file, NEWLINE);
      this.#tornDay = undefined;
      await writeAll(file, data);
    } catch (error) {
      this.#tornDay = day;
      this.#discard();
      throw error;
    }
  }

  /** Flushes the current file's data to the disk (fdatasync). */
  async sync(): Promise<void> {
    if (this.#file !== undefined) await this.#file.syncData();
  }

  /** Closes the current file. */
  close(): Promise<void> {
    this.#discard();
    return Promise.resolve();
  }

  async #open(day: string): Promise<void> {
    this.#discard();
    this.#file = await Deno.open(this.pathOf(day), { append: true, create: true });
    this.#day = day;
  }

  #discard(): void {
    const file = this.#file;
    this.#file = undefined;
    this.#day = undefined;
    try {
      file?.close();
    } catch {
      // Closing a file whose write failed may fail again; the handle is gone either way.
    }
  }
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const written = await file.write(data.subarray(offset));
    assert(written > 0, "a file write makes progress or throws");
    offset += written;
  }
}
