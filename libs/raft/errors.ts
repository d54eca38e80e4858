/**
 * Typed errors the Raft core throws for environment failures it cannot handle.
 *
 * @module
 */

import type { LogIndex } from "./types.ts";

/**
 * A stored log entry failed its checksum. The node must stop rather than serve
 * wrong data; the host maps this to the `DATA_LOSS` status.
 */
export class DataLossError extends Error {
  /** The status code this error maps to. */
  readonly code = "DATA_LOSS";
  /** The index of the corrupt entry. */
  readonly index: LogIndex;

  /** Creates the error for the entry at `index`; `detail` says what was wrong. */
  constructor(index: LogIndex, detail: string) {
    super(`Cannot read log entry ${index}: ${detail}`);
    this.name = "DataLossError";
    this.index = index;
  }
}
