/**
 * The storage the Raft core reads its log from ({@linkcode LogReader}) and the
 * in-memory implementation used by tests ({@linkcode MemoryStorage}).
 *
 * @module
 */

import { assert } from "./_assert.ts";
import {
  type ConfState,
  EMPTY_BYTES,
  EMPTY_HARD_STATE,
  type Entry,
  entryChecksum,
  type HardState,
  type LogIndex,
  logIndex,
  type PeerId,
  type Snapshot,
  type Term,
} from "./types.ts";

/** The durable state a node restarts from. */
export interface InitialState {
  /** The term, vote and commit index last persisted. */
  readonly hardState: HardState;
  /** The membership as of the host's applied index (or the snapshot, if nothing later). */
  readonly confState: ConfState;
}

/** The result of reading a range of entries. */
export type EntriesResult =
  | { readonly kind: "ok"; readonly entries: readonly Entry[] }
  /** Part of the range lies below the first available index (compacted into a snapshot). */
  | { readonly kind: "compacted" }
  /** The entries are not in memory; the host fetches them and calls `onEntriesFetched()`. */
  | { readonly kind: "unavailable" }
  /** A stored entry failed its checksum. */
  | { readonly kind: "dataLoss"; readonly index: LogIndex; readonly detail: string };

/** How many entries {@linkcode LogReader.entries} returns at most. */
export interface EntriesOptions {
  /** The most bytes of entries (at least one entry is returned). */
  readonly bytesMax: number;
  /** Bytes each entry counts besides its data (the host's framing per entry); default 0. */
  readonly entryOverheadBytes?: number;
}

/** The result of reading the latest snapshot. */
export type SnapshotResult =
  | { readonly kind: "ok"; readonly snapshot: Snapshot }
  /** The snapshot is being prepared; the core tries again later. */
  | { readonly kind: "unavailable" };

/**
 * The synchronous, read-only view of durable Raft state that the core uses.
 *
 * Contract: all methods are synchronous and return state as of the last
 * persisted Ready. `term`, `firstIndex` and `lastIndex` must be answered from
 * memory. `entries` may answer `unavailable` when the entries must come from
 * disk; the host then fetches them and calls `RawNode.onEntriesFetched()`.
 * The core never writes through this interface: the host persists what a
 * Ready asks for, then calls `advance()`.
 */
export interface LogReader {
  /** The hard state and membership to restart from. */
  initialState(): InitialState;
  /**
   * Entries in `[low, high)`, verified against their checksums. Returns at
   * least one entry if the range is not empty, and stops before the entry that
   * would push the total size over `bytesMax`, each entry counting its data and
   * `entryOverheadBytes` (0 when absent).
   */
  entries(low: LogIndex, high: LogIndex, options: EntriesOptions): EntriesResult;
  /**
   * The term of the entry at `index`, for `firstIndex() - 1 <= index <= lastIndex()`
   * (the entry just before the first is the snapshot's last entry); otherwise undefined.
   */
  term(index: LogIndex): Term | undefined;
  /** The index of the first entry still available (snapshot index + 1). */
  firstIndex(): LogIndex;
  /** The index of the last entry (the snapshot index when the log is empty). */
  lastIndex(): LogIndex;
  /** The most recent snapshot. */
  snapshot(): SnapshotResult;
}

/** The result of a {@linkcode MemoryStorage} mutation. */
export type StorageWriteResult =
  | { readonly kind: "ok" }
  | { readonly kind: "compacted" }
  | { readonly kind: "outOfDate" };

/**
 * A {@linkcode LogReader} that keeps everything in memory and also accepts the
 * writes a host performs for each Ready. Used by tests and the test cluster;
 * "durable" here means "survives a simulated crash of the RawNode".
 */
export class MemoryStorage implements LogReader {
  #hardState: HardState = EMPTY_HARD_STATE;
  #confState: ConfState;
  #snapshot: Snapshot;
  // The log starts after #compactIndex, whose term is #compactTerm.
  // Invariant: #entries[i].index === #compactIndex + 1 + i.
  // Invariant: #compactIndex <= #snapshot.metadata.index (the snapshot covers what was compacted).
  #compactIndex = 0 as LogIndex;
  #compactTerm = 0 as Term;
  #entries: Entry[] = [];

  /**
   * Creates storage for a new replica whose membership is `confState`: the
   * bootstrap membership of a new group (epoch 0), or for a replica added to a
   * running group, the group's membership and epoch when it was created.
   */
  constructor(
    confState: { voters: readonly PeerId[]; learners?: readonly PeerId[]; epoch?: LogIndex },
  ) {
    this.#confState = {
      voters: [...confState.voters],
      learners: [...(confState.learners ?? [])],
      epoch: confState.epoch ?? (0 as LogIndex),
    };
    this.#snapshot = {
      metadata: { index: 0 as LogIndex, term: 0 as Term, confState: this.#confState },
      data: EMPTY_BYTES,
    };
  }

  /** See {@linkcode LogReader.initialState}. */
  initialState(): InitialState {
    return { hardState: this.#hardState, confState: this.#confState };
  }

  /** See {@linkcode LogReader.entries}. */
  entries(low: LogIndex, high: LogIndex, options: EntriesOptions): EntriesResult {
    if (low < this.firstIndex()) return { kind: "compacted" };
    assert(high <= this.lastIndex() + 1, `Entries [${low}, ${high}) beyond ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = low; i < high; i++) {
      const entry = this.#entries[i - this.#compactIndex - 1];
      const checksum = entryChecksum(entry);
      if (checksum !== entry.checksum) {
        const detail = `checksum mismatch (stored ${hex(entry.checksum)}, computed ${
          hex(checksum)
        })`;
        return { kind: "dataLoss", index: entry.index, detail };
      }
      bytes += entry.data.length + (options.entryOverheadBytes ?? 0);
      if (out.length > 0 && bytes > options.bytesMax) break;
      out.push(entry);
    }
    return { kind: "ok", entries: out };
  }

  /** See {@linkcode LogReader.term}. */
  term(index: LogIndex): Term | undefined {
    if (index === this.#compactIndex) return this.#compactTerm;
    if (index < this.#compactIndex || index > this.lastIndex()) return undefined;
    return this.#entries[index - this.#compactIndex - 1].term;
  }

  /** See {@linkcode LogReader.firstIndex}. */
  firstIndex(): LogIndex {
    return logIndex(this.#compactIndex + 1);
  }

  /** See {@linkcode LogReader.lastIndex}. */
  lastIndex(): LogIndex {
    return logIndex(this.#compactIndex + this.#entries.length);
  }

  /** See {@linkcode LogReader.snapshot}. */
  snapshot(): SnapshotResult {
    return { kind: "ok", snapshot: this.#snapshot };
  }

  /** The hard state last persisted. */
  hardState(): HardState {
    return this.#hardState;
  }

  /** Persists the hard state of a Ready. */
  setHardState(hardState: HardState): void {
    this.#hardState = hardState;
  }

  /** Persists the membership after the host applied a configuration change. */
  setConfState(confState: ConfState): void {
    this.#confState = confState;
  }

  /**
   * Persists the entries of a Ready: entries at or after the first new index
   * are replaced. Entries below the first available index are skipped.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const start = entries.findIndex((e) => e.index >= first);
    if (start < 0) return;
    const firstNew = entries[start].index;
    assert(firstNew <= this.lastIndex() + 1, `Append at ${firstNew} leaves a gap`);
    this.#entries.length = firstNew - first;
    for (let i = start; i < entries.length; i++) {
      const entry = entries[i];
      // Paired with the check in entries(): corrupt data must not reach storage.
      assert(entryChecksum(entry) === entry.checksum, `Appending corrupt entry ${entry.index}`);
      this.#entries.push(entry);
    }
  }

  /** Replaces the whole log with `snapshot` (a follower installing a leader's snapshot). */
  applySnapshot(snapshot: Snapshot): StorageWriteResult {
    if (snapshot.metadata.index <= this.#snapshot.metadata.index) return { kind: "outOfDate" };
    this.#snapshot = snapshot;
    this.#compactIndex = snapshot.metadata.index;
    this.#compactTerm = snapshot.metadata.term;
    this.#entries = [];
    this.#confState = snapshot.metadata.confState;
    return { kind: "ok" };
  }

  /**
   * Records a snapshot of the host's state machine as of `index`, which must be
   * in the log. Keeps the entries; {@linkcode compact} discards them.
   */
  createSnapshot(
    index: LogIndex,
    options: { confState: ConfState; data: Uint8Array },
  ): StorageWriteResult {
    if (index <= this.#snapshot.metadata.index) return { kind: "outOfDate" };
    const termAt = this.term(index);
    assert(termAt !== undefined, `Snapshot index ${index} outside the log`);
    this.#snapshot = {
      metadata: { index, term: termAt, confState: options.confState },
      data: options.data,
    };
    return { kind: "ok" };
  }

  /** Discards the entries up to and including `index`, which the snapshot must cover. */
  compact(index: LogIndex): StorageWriteResult {
    if (index <= this.#compactIndex) return { kind: "compacted" };
    assert(
      index <= this.#snapshot.metadata.index,
      `Cannot compact to ${index}: the snapshot only covers ${this.#snapshot.metadata.index}`,
    );
    const termAt = this.term(index);
    assert(termAt !== undefined, `Compact index ${index} outside the log`);
    this.#entries = this.#entries.slice(index - this.#compactIndex);
    this.#compactIndex = index;
    this.#compactTerm = termAt;
    return { kind: "ok" };
  }
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}
