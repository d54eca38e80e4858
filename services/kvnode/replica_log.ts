/**
 * {@linkcode ReplicaLog}: one replica's Raft log and Raft state in the {@linkcode NodeStorage}, as
 * the core's synchronous {@linkcode LogReader}, plus the writes a Ready asks for.
 *
 * The first and last index, the log's starting point, the hard state and the applied state are
 * kept in memory and answered from there. So are the entries this process appended and has not
 * applied yet (at most {@linkcode UNAPPLIED_BYTES_KEPT}): applying them, and most appends to
 * followers, read no LMDB. Every other entry is read from LMDB (memory-mapped) and verified
 * against its checksum on every read. Writes are made inside the node's turn transaction
 * ({@linkcode NodeStorage.write}); the in-memory view moves with them, so a failed commit must end
 * the process (the driver does).
 *
 * @module
 */
import {
  type ConfState,
  type EntriesOptions,
  type EntriesResult,
  type Entry,
  type HardState,
  type InitialState,
  type LogIndex,
  type LogReader,
  type PeerId,
  type SnapshotMetadata,
  type SnapshotResult,
  type Term,
  verifyEntry,
} from "@tinykv/raft";
import { makeKey, type NodeStorage, PREFIX, prefixEnd, readU64, writeU64 } from "./node_storage.ts";
import { assert } from "./_assert.ts";

const STATE_HARD = 0;
const STATE_APPLIED = 1;
const STATE_LOG_START = 2;
const STATE_GENERATION = 3;
const ENTRY_HEADER_BYTES = 13;
const NO_DATA = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Bytes of entry data one replica keeps in memory beyond its applied index (the newest entries it
 * appended); older or further entries are read from LMDB. Replicas that apply what they append
 * keep little: an idle one keeps none.
 */
export const UNAPPLIED_BYTES_KEPT = 1024 * 1024;

/** Where the state machine stands: what the applied index and membership are. */
export interface AppliedState {
  readonly applied: LogIndex;
  readonly confState: ConfState;
}

/** The outcome of checking every stored entry at startup. */
export type VerifyResult =
  | { readonly kind: "ok"; readonly entries: number }
  | { readonly kind: "dataLoss"; readonly index: LogIndex; readonly detail: string };

/** Encodes an entry's value: term (8), type (1), checksum (4), data. The index is in the key. */
export function encodeEntry(entry: Entry): Uint8Array {
  const bytes = new Uint8Array(ENTRY_HEADER_BYTES + entry.data.length);
  writeU64(bytes, 0, entry.term);
  bytes[8] = entry.type === "normal" ? 0 : 1;
  new DataView(bytes.buffer).setUint32(9, entry.checksum);
  bytes.set(entry.data, ENTRY_HEADER_BYTES);
  return bytes;
}

/** Decodes an entry stored at `index`; undefined when the bytes cannot be an entry. */
export function decodeEntry(index: LogIndex, bytes: Uint8Array): Entry | undefined {
  if (bytes.length < ENTRY_HEADER_BYTES || bytes[8] > 1) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    term: readU64(bytes, 0) as Term,
    index,
    type: bytes[8] === 0 ? "normal" : "confChange",
    checksum: view.getUint32(9),
    data: bytes.subarray(ENTRY_HEADER_BYTES),
  };
}

/** One replica's Raft log and state on LMDB. */
export class ReplicaLog implements LogReader {
  readonly #store: NodeStorage;
  readonly #peerId: number;
  readonly #snapshotTaken: (index: LogIndex) => void;
  #hardState: HardState;
  #generation: number;
  #applied: AppliedState;
  /** Whether `#applied` was taken with `deferWrite` and is not written yet. */
  #appliedUnwritten = false;
  // The log holds (#startIndex, #lastIndex]; #startTerm is the term at #startIndex.
  // Invariant: #startIndex <= #applied.applied <= #hardState.commit <= #lastIndex
  // (`assertConsistent`, after each persisted Ready).
  #startIndex: LogIndex;
  #startTerm: Term;
  #lastIndex: LogIndex;
  #entryBytes = 0;
  /**
   * The newest entries appended by this process and not applied yet, in a row ending at
   * `#lastIndex` (or none), with their data bytes: `#kept[0]` is entry `#keptFrom`.
   */
  #kept: Entry[] = [];
  #keptFrom = 0;
  #keptBytes = 0;

  /**
   * Loads a replica's log state. `snapshotTaken` is told when the core asks for a snapshot at the
   * current applied index, so the replica can open a read view of its state machine right then
   * (that view is the snapshot's data; the message itself carries none).
   */
  constructor(
    store: NodeStorage,
    options: {
      peerId: number;
      initialConfState: ConfState;
      snapshotTaken: (index: LogIndex) => void;
    },
  ) {
    this.#store = store;
    this.#peerId = options.peerId;
    this.#snapshotTaken = options.snapshotTaken;
    this.#generation = this.#readJson<number>(STATE_GENERATION) ?? 0;
    this.#hardState = this.#readJson<HardState>(STATE_HARD) ??
      { term: 0 as Term, vote: undefined, commit: 0 as LogIndex };
    this.#applied = this.#readJson<AppliedState>(STATE_APPLIED) ??
      { applied: 0 as LogIndex, confState: options.initialConfState };
    const start = this.#readJson<{ index: LogIndex; term: Term }>(STATE_LOG_START) ??
      { index: 0 as LogIndex, term: 0 as Term };
    this.#startIndex = start.index;
    this.#startTerm = start.term;
    const found = this.#scanLog();
    this.#lastIndex = found.lastIndex;
    this.#entryBytes = found.bytes;
  }

  #stateKey(kind: number): Uint8Array {
    return makeKey(PREFIX.raftState, [this.#peerId, kind]);
  }

  #entryKey(index: number): Uint8Array {
    return makeKey(PREFIX.log, [this.#peerId, index]);
  }

  #readJson<T>(kind: number): T | undefined {
    const bytes = this.#store.get(this.#stateKey(kind));
    return bytes === undefined ? undefined : JSON.parse(decoder.decode(bytes)) as T;
  }

  #writeJson(kind: number, value: unknown): void {
    this.#store.put(this.#stateKey(kind), encoder.encode(JSON.stringify(value)));
  }

  #scanLog(): { lastIndex: LogIndex; bytes: number } {
    const start = this.#entryKey(this.#startIndex + 1);
    const end = prefixEnd(makeKey(PREFIX.log, [this.#peerId]));
    let lastIndex = this.#startIndex;
    let bytes = 0;
    for (const { key, value } of this.#store.range(start, end)) {
      lastIndex = readU64(key, 9) as LogIndex;
      bytes += value.length;
    }
    return { lastIndex, bytes };
  }

  /** Removes the stored entries in `[low, high)`, keeping the byte count right. */
  #removeEntries(low: number, high: number): void {
    for (const { value } of this.#store.range(this.#entryKey(low), this.#entryKey(high))) {
      this.#entryBytes -= value.length;
    }
    this.#store.removeRange(this.#entryKey(low), this.#entryKey(high));
  }

  /** Bytes of entry data kept in memory (at most {@linkcode UNAPPLIED_BYTES_KEPT}). */
  get keptBytes(): number {
    return this.#keptBytes;
  }

  /** The applied index and membership, as last persisted. */
  get appliedState(): AppliedState {
    return this.#applied;
  }

  /** The generation of the replica's state-machine spaces that is current. */
  get generation(): number {
    return this.#generation;
  }

  /** Inside the turn's transaction: makes `generation` current (an installed snapshot's). */
  setGeneration(generation: number): void {
    this.#generation = generation;
    this.#writeJson(STATE_GENERATION, generation);
  }

  /** The hard state last persisted. */
  get hardState(): HardState {
    return this.#hardState;
  }

  /** Entries kept since the log's start, and their payload bytes (approximate, from headers). */
  get entryCount(): number {
    return this.#lastIndex - this.#startIndex;
  }

  /** Bytes of the stored entries since the log's start (as stored, headers included). */
  get entryBytes(): number {
    return this.#entryBytes;
  }

  /** Verifies the checksum of every stored entry (at startup: corrupt data must stop the node). */
  verifyAll(): VerifyResult {
    const end = prefixEnd(makeKey(PREFIX.log, [this.#peerId]));
    let count = 0;
    let expected = this.#startIndex + 1;
    for (const { key, value } of this.#store.range(this.#entryKey(this.#startIndex + 1), end)) {
      const index = readU64(key, 9) as LogIndex;
      if (index !== expected) {
        return { kind: "dataLoss", index: expected as LogIndex, detail: "the entry is missing" };
      }
      const entry = decodeEntry(index, value);
      if (entry === undefined) return { kind: "dataLoss", index, detail: "the entry is malformed" };
      if (!verifyEntry(entry)) return { kind: "dataLoss", index, detail: mismatch(entry) };
      count++;
      expected++;
    }
    return { kind: "ok", entries: count };
  }

  // --- LogReader -------------------------------------------------------------------------

  initialState(): InitialState {
    return { hardState: this.#hardState, confState: this.#applied.confState };
  }

  entries(low: LogIndex, high: LogIndex, options: EntriesOptions): EntriesResult {
    if (low <= this.#startIndex) return { kind: "compacted" };
    const out: Entry[] = [];
    let bytes = 0;
    if (this.#kept.length > 0 && low >= this.#keptFrom) {
      const end = Math.min(high, this.#lastIndex + 1);
      for (let index = low; index < end; index++) {
        const entry = this.#kept[index - this.#keptFrom];
        bytes += entry.data.length + (options.entryOverheadBytes ?? 0);
        if (out.length > 0 && bytes > options.bytesMax) break;
        out.push(entry);
      }
      return { kind: "ok", entries: out };
    }
    for (const { key, value } of this.#store.range(this.#entryKey(low), this.#entryKey(high))) {
      const index = readU64(key, 9) as LogIndex;
      const entry = decodeEntry(index, value);
      if (entry === undefined) return { kind: "dataLoss", index, detail: "the entry is malformed" };
      if (!verifyEntry(entry)) return { kind: "dataLoss", index, detail: mismatch(entry) };
      bytes += entry.data.length + (options.entryOverheadBytes ?? 0);
      if (out.length > 0 && bytes > options.bytesMax) break;
      out.push({ ...entry, data: entry.data.slice() });
    }
    return { kind: "ok", entries: out };
  }

  term(index: LogIndex): Term | undefined {
    if (index === this.#startIndex) return this.#startTerm;
    if (index < this.#startIndex || index > this.#lastIndex) return undefined;
    if (this.#kept.length > 0 && index >= this.#keptFrom) {
      return this.#kept[index - this.#keptFrom].term;
    }
    const bytes = this.#store.get(this.#entryKey(index));
    return bytes === undefined ? undefined : readU64(bytes, 0) as Term;
  }

  firstIndex(): LogIndex {
    return (this.#startIndex + 1) as LogIndex;
  }

  lastIndex(): LogIndex {
    return this.#lastIndex;
  }

  snapshot(): SnapshotResult {
    const { applied, confState } = this.#applied;
    const term = this.term(applied);
    if (term === undefined) return { kind: "unavailable" };
    const metadata: SnapshotMetadata = { index: applied, term, confState };
    // The data travels beside the message, read from a view opened now (see the constructor).
    this.#snapshotTaken(applied);
    return { kind: "ok", snapshot: { metadata, data: NO_DATA } };
  }

  // --- Writes, inside the turn's transaction -----------------------------------------------

  /** Appends a Ready's entries, replacing any stored from the first one's index on. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    assert(
      first <= this.#lastIndex + 1,
      () => `Replica ${this.#peerId}: entries from ${first} leave a gap after ${this.#lastIndex}`,
    );
    // Raft never replaces a committed entry (Log Matching, Leader Completeness: §5.3, §5.4).
    assert(
      first > this.#hardState.commit || first > this.#lastIndex,
      () =>
        `Replica ${this.#peerId}: entries from ${first} would replace committed ones ` +
        `(commit ${this.#hardState.commit})`,
    );
    const last = entries[entries.length - 1].index;
    // Ready entries are consecutive (checked cheaply: per Ready, not per entry).
    assert(
      last === first + entries.length - 1,
      () => `Replica ${this.#peerId}: entries ${first}..${last} are not ${entries.length} in a row`,
    );
    if (first <= this.#lastIndex) this.#removeEntries(first, this.#lastIndex + 1);
    this.#keepFrom(first);
    for (const entry of entries) {
      if (entry.index <= this.#startIndex) continue;
      const encoded = encodeEntry(entry);
      this.#store.put(this.#entryKey(entry.index), encoded);
      this.#entryBytes += encoded.length;
      this.#keep(entry);
    }
    this.#lastIndex = last;
    this.#trimKept();
  }

  /** Forgets the kept entries from `index` on (they are being replaced). */
  #keepFrom(index: number): void {
    if (this.#kept.length === 0 || index >= this.#keptFrom + this.#kept.length) return;
    const dropped = this.#kept.splice(Math.max(0, index - this.#keptFrom));
    for (const entry of dropped) this.#keptBytes -= entry.data.length;
  }

  /** Keeps `entry`, the next in a row (its data copied when it is a view of a larger buffer). */
  #keep(entry: Entry): void {
    // Only a row is kept: an entry out of it (never seen) starts the row afresh.
    if (this.#kept.length > 0 && entry.index !== this.#keptFrom + this.#kept.length) {
      this.#keepFrom(this.#keptFrom);
    }
    if (this.#kept.length === 0) this.#keptFrom = entry.index;
    const data = entry.data;
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    this.#kept.push(own ? entry : { ...entry, data: data.slice() });
    this.#keptBytes += data.length;
  }

  /** Drops kept entries that are applied or past the bytes bound, oldest first. */
  #trimKept(): void {
    let drop = 0;
    let bytes = this.#keptBytes;
    while (
      drop < this.#kept.length &&
      (this.#keptFrom + drop <= this.#applied.applied || bytes > UNAPPLIED_BYTES_KEPT)
    ) {
      bytes -= this.#kept[drop].data.length;
      drop++;
    }
    if (drop === 0) return;
    this.#kept.splice(0, drop);
    this.#keptFrom += drop;
    this.#keptBytes = bytes;
  }

  /** Persists a Ready's hard state. */
  setHardState(hardState: HardState): void {
    this.#hardState = hardState;
    this.#writeJson(STATE_HARD, hardState);
  }

  /**
   * Persists the applied index and membership (with the state machine's writes). With
   * `deferWrite` it only takes them: {@linkcode writeApplied} writes them later in the same
   * transaction (after a run of applies, so the record is written once).
   */
  setApplied(applied: AppliedState, options?: { deferWrite?: boolean }): void {
    assert(
      applied.applied >= this.#applied.applied,
      () =>
        `Replica ${this.#peerId}: applied index ${applied.applied} after ${this.#applied.applied}`,
    );
    this.#applied = applied;
    this.#appliedUnwritten = options?.deferWrite === true;
    if (this.#appliedUnwritten) return;
    this.#writeJson(STATE_APPLIED, applied);
    this.#trimKept();
  }

  /** Writes the applied state taken with `deferWrite`, if it is not written yet. */
  writeApplied(): void {
    if (!this.#appliedUnwritten) return;
    this.#writeJson(STATE_APPLIED, this.#applied);
    this.#appliedUnwritten = false;
    this.#trimKept();
  }

  /**
   * Replaces the log with a snapshot's starting point (the state machine installs the data in
   * the same transaction).
   */
  installSnapshot(metadata: SnapshotMetadata): void {
    const prefix = makeKey(PREFIX.log, [this.#peerId]);
    this.#store.removeRange(prefix, prefixEnd(prefix));
    this.#entryBytes = 0;
    this.#keepFrom(0);
    this.#startIndex = metadata.index;
    this.#startTerm = metadata.term;
    this.#lastIndex = metadata.index;
    this.#writeJson(STATE_LOG_START, { index: metadata.index, term: metadata.term });
    this.setApplied({ applied: metadata.index, confState: metadata.confState });
  }

  /** Discards entries up to and including `index` (at most the applied index). */
  compact(index: LogIndex): void {
    if (index <= this.#startIndex) return;
    const term = this.term(index);
    assert(
      term !== undefined && index <= this.#applied.applied,
      () => `Cannot compact to ${index}: applied is ${this.#applied.applied}`,
    );
    this.#removeEntries(this.#startIndex + 1, index + 1);
    this.#startIndex = index;
    this.#startTerm = term;
    this.#writeJson(STATE_LOG_START, { index, term });
  }

  /**
   * Asserts the log's invariant (at the end of each persisted Ready):
   * start <= applied <= commit <= last.
   */
  assertConsistent(): void {
    assert(!this.#appliedUnwritten, () => `Replica ${this.#peerId}: applied state not written`);
    const start = this.#startIndex;
    const applied = this.#applied.applied;
    const commit = this.#hardState.commit;
    const last = this.#lastIndex;
    assert(
      start <= applied && applied <= commit && commit <= last,
      () =>
        `Replica ${this.#peerId}: log start ${start}, applied ${applied}, commit ${commit}, ` +
        `last ${last} are out of order`,
    );
  }

  /** Removes every record of this replica's log and Raft state. */
  destroy(): void {
    for (const prefix of [PREFIX.log, PREFIX.raftState]) {
      const start = makeKey(prefix, [this.#peerId]);
      this.#store.removeRange(start, prefixEnd(start));
    }
  }
}

/** The peer ids of a membership, voters then learners. */
export function members(confState: ConfState): PeerId[] {
  return [...confState.voters, ...confState.learners];
}

function mismatch(entry: Entry): string {
  return `checksum mismatch (stored 0x${entry.checksum.toString(16).padStart(8, "0")})`;
}
