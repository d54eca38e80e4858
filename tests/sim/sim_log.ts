/**
 * {@linkcode SimLog}: the Raft log, hard state, membership and snapshot of one
 * simulated node, as a {@linkcode LogReader} the core reads. One instance is
 * the node's view of its disk (everything written, synced or not); another,
 * inside {@linkcode SimDisk}, is what survives a crash. `clone()` lets a
 * restart rebuild the first from the second.
 *
 * @module
 */

import {
  type ConfState,
  EMPTY_HARD_STATE,
  type EntriesResult,
  type Entry,
  type HardState,
  type InitialState,
  type LogIndex,
  type LogReader,
  type Snapshot,
  type SnapshotResult,
  type Term,
  verifyEntry,
} from "@tinykv/raft";
import { assert } from "./_assert.ts";

/** The log and its metadata, in memory; the host writes it, the core reads it. */
export class SimLog implements LogReader {
  /** The term, vote and commit index. */
  hardState: HardState = EMPTY_HARD_STATE;
  /** The membership as of the applied index. */
  confState: ConfState;
  /** The latest snapshot. */
  snapshotValue: Snapshot;
  // Invariant: entries[i].index === compactIndex + 1 + i.
  // Invariant: compactIndex <= snapshotValue.metadata.index.
  /** The index of the last entry compacted away (the log starts after it). */
  compactIndex = 0 as LogIndex;
  /** The term of that entry. */
  compactTerm = 0 as Term;
  /** The entries after `compactIndex`. */
  entriesValue: Entry[] = [];

  /** Creates the log of a new replica whose membership is `confState`. */
  constructor(confState: ConfState) {
    this.confState = confState;
    this.snapshotValue = {
      metadata: { index: 0 as LogIndex, term: 0 as Term, confState },
      data: new Uint8Array(0),
    };
  }

  /** A copy that shares the (immutable) entries but none of the mutable state. */
  clone(): SimLog {
    const copy = new SimLog(this.confState);
    copy.hardState = this.hardState;
    copy.snapshotValue = this.snapshotValue;
    copy.compactIndex = this.compactIndex;
    copy.compactTerm = this.compactTerm;
    copy.entriesValue = [...this.entriesValue];
    return copy;
  }

  /** See {@linkcode LogReader.initialState}. */
  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.confState };
  }

  /** See {@linkcode LogReader.entries}: verifies every entry's checksum. */
  entries(low: LogIndex, high: LogIndex, options: { bytesMax: number }): EntriesResult {
    if (low < this.firstIndex()) return { kind: "compacted" };
    assert(high <= this.lastIndex() + 1, `Entries [${low}, ${high}) beyond ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = low; i < high; i++) {
      const entry = this.entriesValue[i - this.compactIndex - 1];
      if (!verifyEntry(entry)) {
        return { kind: "dataLoss", index: entry.index, detail: "checksum mismatch" };
      }
      bytes += entry.data.length;
      if (out.length > 0 && bytes > options.bytesMax) break;
      out.push(entry);
    }
    return { kind: "ok", entries: out };
  }

  /** See {@linkcode LogReader.term}. */
  term(index: LogIndex): Term | undefined {
    if (index === this.compactIndex) return this.compactTerm;
    if (index < this.compactIndex || index > this.lastIndex()) return undefined;
    return this.entriesValue[index - this.compactIndex - 1].term;
  }

  /** The stored entry at `index`, if any. */
  entryAt(index: number): Entry | undefined {
    if (index <= this.compactIndex) return undefined;
    return this.entriesValue[index - this.compactIndex - 1];
  }

  /** See {@linkcode LogReader.firstIndex}. */
  firstIndex(): LogIndex {
    return (this.compactIndex + 1) as LogIndex;
  }

  /** See {@linkcode LogReader.lastIndex}. */
  lastIndex(): LogIndex {
    return (this.compactIndex + this.entriesValue.length) as LogIndex;
  }

  /** See {@linkcode LogReader.snapshot}. */
  snapshot(): SnapshotResult {
    return { kind: "ok", snapshot: this.snapshotValue };
  }

  /** Appends a Ready's entries, replacing stored entries from the first one's index on. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const start = entries.findIndex((e) => e.index >= first);
    if (start < 0) return;
    const firstNew = entries[start].index;
    assert(firstNew <= this.lastIndex() + 1, `Append at ${firstNew} leaves a gap`);
    this.entriesValue.length = firstNew - first;
    for (let i = start; i < entries.length; i++) this.entriesValue.push(entries[i]);
  }

  /** Replaces the whole log with a leader's snapshot. */
  installSnapshot(snapshot: Snapshot): void {
    this.snapshotValue = snapshot;
    this.compactIndex = snapshot.metadata.index;
    this.compactTerm = snapshot.metadata.term;
    this.entriesValue = [];
    this.confState = snapshot.metadata.confState;
  }

  /**
   * Records a snapshot of the host's state machine (at an index in the log)
   * and discards the entries up to `compactTo` (at most the snapshot index).
   */
  compact(snapshot: Snapshot, compactTo: LogIndex): void {
    const index = snapshot.metadata.index;
    assert(compactTo <= index, `Compact to ${compactTo} beyond snapshot ${index}`);
    assert(this.term(index) === snapshot.metadata.term, `Snapshot ${index} does not match log`);
    if (index > this.snapshotValue.metadata.index) this.snapshotValue = snapshot;
    if (compactTo <= this.compactIndex) return;
    const termAt = this.term(compactTo);
    assert(termAt !== undefined, `Compact index ${compactTo} outside the log`);
    this.entriesValue = this.entriesValue.slice(compactTo - this.compactIndex);
    this.compactIndex = compactTo;
    this.compactTerm = termAt;
  }
}
