/**
 * The Raft log as the core sees it: durable entries behind a {@linkcode LogReader}
 * plus the unstable tail (entries and possibly a snapshot) that the host has
 * not persisted yet.
 *
 * @module
 */

import { assert, unreachable } from "./_assert.ts";
import { DataLossError } from "./errors.ts";
import type { LogReader } from "./storage.ts";
import type { Entry, LogIndex, Snapshot, Term } from "./types.ts";

/** The result of reading entries through the log. */
export type SliceResult =
  | { readonly kind: "ok"; readonly entries: readonly Entry[] }
  | { readonly kind: "compacted" }
  | { readonly kind: "unavailable" };

/** Entries (and a snapshot) received but not yet persisted by the host. */
class Unstable {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  // Invariant: entries[i].index === offset + i.
  offset: LogIndex;

  constructor(offset: LogIndex) {
    this.offset = offset;
  }

  maybeFirstIndex(): LogIndex | undefined {
    return this.snapshot === undefined ? undefined : idx(this.snapshot.metadata.index + 1);
  }

  maybeLastIndex(): LogIndex | undefined {
    if (this.entries.length > 0) return idx(this.offset + this.entries.length - 1);
    return this.snapshot?.metadata.index;
  }

  maybeTerm(index: LogIndex): Term | undefined {
    if (index < this.offset) {
      const meta = this.snapshot?.metadata;
      return meta !== undefined && meta.index === index ? meta.term : undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || index > last) return undefined;
    return this.entries[index - this.offset].term;
  }

  stableTo(index: LogIndex, termAt: Term): void {
    if (index < this.offset || this.maybeTerm(index) !== termAt) return;
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = idx(index + 1);
  }

  stableSnapshotTo(index: LogIndex): void {
    if (this.snapshot?.metadata.index === index) this.snapshot = undefined;
  }

  restore(snapshot: Snapshot): void {
    this.offset = idx(snapshot.metadata.index + 1);
    this.entries = [];
    this.snapshot = snapshot;
  }

  truncateAndAppend(entries: readonly Entry[]): void {
    const after = entries[0].index;
    if (after === this.offset + this.entries.length) {
      for (const e of entries) this.entries.push(e);
    } else if (after <= this.offset) {
      // Replace the whole unstable tail; the host overwrites storage from `after`.
      this.offset = after;
      this.entries = [...entries];
    } else {
      this.entries = this.entries.slice(0, after - this.offset);
      for (const e of entries) this.entries.push(e);
    }
  }

  slice(low: LogIndex, high: LogIndex): Entry[] {
    assert(low >= this.offset && high <= this.offset + this.entries.length, "Unstable slice");
    return this.entries.slice(low - this.offset, high - this.offset);
  }
}

/** The core's view of the log (etcd's raftLog). */
export class RaftLog {
  readonly storage: LogReader;
  readonly unstable: Unstable;
  // Invariant: applied <= committed <= lastIndex().
  committed: LogIndex;
  applied: LogIndex;
  /** Bytes each entry counts besides its data when slices are bounded in bytes. */
  readonly entryOverheadBytes: number;

  constructor(storage: LogReader, applied: LogIndex, entryOverheadBytes = 0) {
    this.storage = storage;
    this.entryOverheadBytes = entryOverheadBytes;
    this.unstable = new Unstable(idx(storage.lastIndex() + 1));
    const first = storage.firstIndex();
    this.committed = idx(Math.max(storage.initialState().hardState.commit, first - 1));
    assert(
      this.committed <= this.lastIndex(),
      `Stored commit index ${this.committed} is beyond the last stored entry ${this.lastIndex()}`,
    );
    this.applied = idx(Math.max(applied, first - 1));
    assert(
      this.applied <= this.committed,
      `Applied index ${applied} is beyond the commit index ${this.committed}`,
    );
  }

  firstIndex(): LogIndex {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): LogIndex {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): Term {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, "The last entry has no term");
    return t;
  }

  /** The term at `index`, or undefined if compacted or beyond the end. */
  term(index: LogIndex): Term | undefined {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    return this.unstable.maybeTerm(index) ?? this.storage.term(index);
  }

  matchTerm(index: LogIndex, termAt: Term): boolean {
    return this.term(index) === termAt;
  }

  /** Paper §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Appends entries at the end, possibly truncating a conflicting unstable suffix. */
  append(entries: readonly Entry[]): LogIndex {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0].index - 1;
    assert(after >= this.committed, `Truncating committed entries: ${after} < ${this.committed}`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /**
   * The follower side of AppendEntries (paper figure 2, receiver steps 2–5).
   * Returns the index of the last new entry, or undefined if the log does not
   * contain an entry at `prevIndex` with `prevTerm`.
   */
  maybeAppend(
    prev: { index: LogIndex; term: Term },
    commit: LogIndex,
    entries: readonly Entry[],
  ): LogIndex | undefined {
    if (!this.matchTerm(prev.index, prev.term)) return undefined;
    const lastNew = idx(prev.index + entries.length);
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `Entry ${conflict} conflicts with a committed entry`);
      this.append(entries.slice(conflict - (prev.index + 1)));
    }
    this.commitTo(idx(Math.min(commit, lastNew)));
    return lastNew;
  }

  /** The index of the first entry that is new or conflicts with the log, or 0. */
  findConflict(entries: readonly Entry[]): LogIndex | 0 {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `termAt` (or the first
   * available index - 1). Used for fast backtracking of a diverged follower.
   */
  findConflictByTerm(index: LogIndex, termAt: Term): LogIndex {
    let i = Math.min(index, this.lastIndex());
    for (; i >= 0; i--) {
      const t = this.term(idx(i));
      if (t === undefined || t <= termAt) break;
    }
    return idx(Math.max(i, 0));
  }

  commitTo(index: LogIndex): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `Commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  appliedTo(index: LogIndex): void {
    if (index === 0) return;
    assert(
      index <= this.committed && index >= this.applied,
      `Applied ${index} outside [${this.applied}, ${this.committed}]`,
    );
    this.applied = index;
  }

  maybeCommit(index: LogIndex, termAt: Term): boolean {
    if (index > this.committed && this.term(index) === termAt) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  hasNextCommittedEntries(): boolean {
    return !this.hasPendingSnapshot() && this.committed > this.applied;
  }

  /** Committed entries not yet applied, up to `bytesMax` of payload (at least one). */
  nextCommittedEntries(bytesMax: number): SliceResult {
    if (!this.hasNextCommittedEntries()) return { kind: "ok", entries: [] };
    const low = idx(Math.max(this.applied + 1, this.firstIndex()));
    return this.slice(low, idx(this.committed + 1), bytesMax);
  }

  /** Entries in `[low, high)` from storage and the unstable tail, up to `bytesMax`. */
  slice(low: LogIndex, high: LogIndex, bytesMax: number): SliceResult {
    if (low >= high) return { kind: "ok", entries: [] };
    if (low < this.firstIndex()) return { kind: "compacted" };
    assert(high <= this.lastIndex() + 1, `Slice [${low}, ${high}) beyond ${this.lastIndex()}`);
    const offset = this.unstable.offset;
    let stored: readonly Entry[] = [];
    if (low < offset) {
      const result = this.storage.entries(low, idx(Math.min(high, offset)), {
        bytesMax,
        entryOverheadBytes: this.entryOverheadBytes,
      });
      switch (result.kind) {
        case "ok":
          break;
        case "compacted":
        case "unavailable":
          return result;
        case "dataLoss":
          throw new DataLossError(result.index, result.detail);
        default:
          return unreachable(result);
      }
      stored = result.entries;
      if (stored.length < Math.min(high, offset) - low) return { kind: "ok", entries: stored };
    }
    if (high <= offset) return { kind: "ok", entries: stored };
    const tail = this.unstable.slice(idx(Math.max(low, offset)), high);
    return { kind: "ok", entries: limitBytes(stored, tail, bytesMax, this.entryOverheadBytes) };
  }

  /** Entries not yet persisted. */
  unstableEntries(): readonly Entry[] {
    return this.unstable.entries;
  }

  stableTo(index: LogIndex, termAt: Term): void {
    this.unstable.stableTo(index, termAt);
  }

  stableSnapshotTo(index: LogIndex): void {
    this.unstable.stableSnapshotTo(index);
  }

  /** Replaces the log with a snapshot received from the leader. */
  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }

  /** The snapshot to send to a follower that needs compacted entries. */
  snapshot(): Snapshot | undefined {
    if (this.unstable.snapshot !== undefined) return this.unstable.snapshot;
    const result = this.storage.snapshot();
    return result.kind === "ok" ? result.snapshot : undefined;
  }
}

function limitBytes(
  head: readonly Entry[],
  tail: Entry[],
  bytesMax: number,
  overhead: number,
): Entry[] {
  let bytes = 0;
  for (const e of head) bytes += e.data.length + overhead;
  const out = [...head];
  for (const e of tail) {
    bytes += e.data.length + overhead;
    if (out.length > 0 && bytes > bytesMax) break;
    out.push(e);
  }
  return out;
}

/** Brands an arithmetic result as a log index (hot path: no assertion). */
export function idx(value: number): LogIndex {
  return value as LogIndex;
}
