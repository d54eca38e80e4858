/**
 * A replica's snapshot as a stream of records, so that no side ever holds a whole shard in memory
 * (docs/design.md "Storage on a kvnode": "a snapshot is a consistent read transaction over the shard's
 * data, streamed in chunks").
 *
 * - **Format.** The data is a sequence of records `[space u8][key length u32][value length u32]
 *   [key][value]` — the state machine's data, sessions and meta spaces in that order, each in key
 *   order. {@linkcode snapshotRecords} reads them from spaces, {@linkcode RecordParser} reads them
 *   back from pieces cut anywhere.
 * - **Sending.** A {@linkcode SnapshotSource} reads the records from a storage read view opened
 *   when the Raft core asked for the snapshot (so the view is exactly the state at the snapshot's
 *   index, however far the replica has applied since) and yields them in pieces of a bounded size.
 * - **Receiving.** The receiver writes the records into a fresh *generation* of the replica's
 *   spaces in bounded transactions (`snapshot_staging.ts`), and hands the driver a small token
 *   naming that generation ({@linkcode stagedToken}); installing the snapshot then only switches
 *   the replica to the new generation.
 *
 * @module
 */
import type { Envelope } from "./driver.ts";
import type { KvPair } from "./kv_space.ts";
import { readU64, writeU64 } from "./node_storage.ts";
import { assert } from "./_assert.ts";

/** The order in which spaces travel, by their tag. */
export const SNAPSHOT_SPACES = ["data", "sessions", "meta"] as const;
/** Bytes of a record's header: the space tag and the two lengths. */
export const RECORD_HEADER_BYTES = 9;
/** Records counted between two pauses when a snapshot's size is measured. */
export const SIZE_SLICE_RECORDS = 4096;
/** Bytes read between two pauses (large values make few records a long slice). */
export const SLICE_BYTES_MAX = 16 * 1024 * 1024;

/** Something whose pairs can be listed in key order (a space, or one seen through a read view). */
export interface PairSource {
  scan(start: Uint8Array, end: Uint8Array | undefined): Iterable<KvPair>;
}

/** One record of a snapshot. */
export interface SnapshotRecord {
  readonly space: number;
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

const EMPTY = new Uint8Array(0);

/** Every record of `spaces`, space by space in {@linkcode SNAPSHOT_SPACES} order, keys ascending. */
export function* snapshotRecords(
  spaces: Readonly<Record<(typeof SNAPSHOT_SPACES)[number], PairSource>>,
): Iterable<SnapshotRecord> {
  for (const [space, name] of SNAPSHOT_SPACES.entries()) {
    for (const { key, value } of spaces[name].scan(EMPTY, undefined)) yield { space, key, value };
  }
}

/** Encodes one record. */
export function encodeRecord(record: SnapshotRecord): Uint8Array {
  const { key, value } = record;
  const out = new Uint8Array(RECORD_HEADER_BYTES + key.length + value.length);
  const view = new DataView(out.buffer);
  out[0] = record.space;
  view.setUint32(1, key.length);
  view.setUint32(5, value.length);
  out.set(key, RECORD_HEADER_BYTES);
  out.set(value, RECORD_HEADER_BYTES + key.length);
  return out;
}

/**
 * The records as pieces of at most `bytesMax` bytes (a record may be cut across pieces). Memory
 * stays at one piece plus one record.
 */
export function* pieces(records: Iterable<SnapshotRecord>, bytesMax: number): Iterable<Uint8Array> {
  if (!(Number.isSafeInteger(bytesMax) && bytesMax > 0)) {
    throw new RangeError(`Cannot cut a snapshot into pieces of ${bytesMax} bytes`);
  }
  let piece = new Uint8Array(bytesMax);
  let filled = 0;
  const header = new Uint8Array(RECORD_HEADER_BYTES);
  const headerView = new DataView(header.buffer);
  // Copies each part of a record straight into the piece (no buffer per record).
  function* copy(bytes: Uint8Array): Iterable<Uint8Array> {
    let rest = bytes;
    while (rest.length > 0) {
      const take = Math.min(rest.length, bytesMax - filled);
      piece.set(rest.subarray(0, take), filled);
      filled += take;
      rest = rest.subarray(take);
      if (filled === bytesMax) {
        yield piece;
        piece = new Uint8Array(bytesMax);
        filled = 0;
      }
    }
  }
  for (const { space, key, value } of records) {
    header[0] = space;
    headerView.setUint32(1, key.length);
    headerView.setUint32(5, value.length);
    yield* copy(header);
    yield* copy(key);
    yield* copy(value);
  }
  if (filled > 0) yield piece.subarray(0, filled);
}

/**
 * Parses records from pieces cut anywhere. Keeps at most one partial record; a record longer
 * than `recordBytesMax` is refused (a corrupt length would otherwise ask for any amount).
 */
export class RecordParser {
  readonly #recordBytesMax: number;
  #pending: Uint8Array = EMPTY;
  #offset = 0;

  constructor(recordBytesMax: number) {
    this.#recordBytesMax = recordBytesMax;
  }

  /** The records completed by `piece`, or why the data cannot be a snapshot. */
  push(
    piece: Uint8Array,
  ): { kind: "ok"; records: SnapshotRecord[] } | { kind: "invalid"; message: string } {
    const data = this.#pending.length === 0 ? piece : concat(this.#pending, piece);
    const records: SnapshotRecord[] = [];
    let at = 0;
    while (data.length - at >= RECORD_HEADER_BYTES) {
      const view = new DataView(data.buffer, data.byteOffset + at, RECORD_HEADER_BYTES);
      const space = data[at];
      const keyLength = view.getUint32(1);
      const valueLength = view.getUint32(5);
      const size = RECORD_HEADER_BYTES + keyLength + valueLength;
      if (space >= SNAPSHOT_SPACES.length) {
        return invalid(`Snapshot record at byte ${this.#offset + at} has space tag ${space}`);
      }
      if (size > this.#recordBytesMax) {
        return invalid(
          `Snapshot record at byte ${this.#offset + at} has ${size} bytes: the limit is ` +
            `${this.#recordBytesMax}`,
        );
      }
      if (data.length - at < size) break;
      const key = data.slice(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + keyLength);
      const value = data.slice(at + RECORD_HEADER_BYTES + keyLength, at + size);
      records.push({ space, key, value });
      at += size;
    }
    this.#pending = data.slice(at);
    this.#offset += at;
    return { kind: "ok", records };
  }

  /** Whether the data ended on a record boundary (nothing partial is left). */
  get complete(): boolean {
    return this.#pending.length === 0;
  }
}

function invalid(message: string): { kind: "invalid"; message: string } {
  return { kind: "invalid", message };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * Where an outgoing snapshot's data is read from: a read view of the replica's spaces at the
 * snapshot's index. Each {@linkcode chunks} call reads it afresh; {@linkcode close} releases the
 * view (every holder closes its own handle).
 */
export interface SnapshotSource {
  /** The data in pieces of at most `bytesMax` bytes. */
  chunks(bytesMax: number): Iterable<Uint8Array>;
  /**
   * The data's size in bytes, exactly what {@linkcode chunks} yields: counted over the view,
   * pausing every {@linkcode SIZE_SLICE_RECORDS} records or {@linkcode SLICE_BYTES_MAX} bytes so
   * the driver's turns go on meanwhile. Throws once `stopped()` turns true.
   */
  sizeBytes(stopped?: () => boolean): Promise<number>;
  /** Releases this handle (idempotent); the view closes with its last handle. */
  close(): void;
}

/**
 * A read view shared by every message that sends the same snapshot: handles count their users,
 * and the view closes when the last handle does (or when nobody took one, at {@linkcode release}).
 */
export class SharedSnapshotSource {
  readonly #records: () => Iterable<SnapshotRecord>;
  readonly #closeView: () => void;
  #users = 0;
  #closed = false;

  constructor(records: () => Iterable<SnapshotRecord>, closeView: () => void) {
    this.#records = records;
    this.#closeView = closeView;
  }

  /** A handle on the view; the view stays open until every handle is closed. */
  acquire(): SnapshotSource {
    assert(!this.#closed, "Snapshot source is closed");
    this.#users++;
    let open = true;
    return {
      chunks: (bytesMax) => {
        assert(open, "Snapshot source handle is closed");
        return pieces(this.#records(), bytesMax);
      },
      sizeBytes: async (stopped = () => false) => {
        assert(open, "Snapshot source handle is closed");
        let bytes = 0;
        let records = 0;
        let sliceBytes = 0;
        for (const record of this.#records()) {
          const size = RECORD_HEADER_BYTES + record.key.length + record.value.length;
          bytes += size;
          sliceBytes += size;
          if (++records === SIZE_SLICE_RECORDS || sliceBytes >= SLICE_BYTES_MAX) {
            records = 0;
            sliceBytes = 0;
            await new Promise((resolve) => setTimeout(resolve, 0));
            if (stopped()) throw new Error("Measuring the snapshot was stopped");
            assert(open, "Snapshot source handle is closed");
          }
        }
        return bytes;
      },
      close: () => {
        if (!open) return;
        open = false;
        this.#users--;
        if (this.#users === 0) this.#close();
      },
    };
  }

  /** Closes the view if no handle uses it (the snapshot was asked for but never sent). */
  release(): void {
    if (this.#users === 0) this.#close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeView();
  }
}

const TOKEN_MAGIC = new TextEncoder().encode("TKVSTAGED");

/**
 * The `data` of a received snapshot message whose records were staged into `generation` of the
 * replica's spaces. Its first byte can never start a record (space tags are 0–2), so a token and
 * inline snapshot data are told apart.
 */
export function stagedToken(generation: number): Uint8Array {
  const token = new Uint8Array(TOKEN_MAGIC.length + 8);
  token.set(TOKEN_MAGIC, 0);
  writeU64(token, TOKEN_MAGIC.length, generation);
  return token;
}

/** The generation a staged token names, or undefined for inline snapshot data. */
export function stagedGeneration(data: Uint8Array): number | undefined {
  if (data.length !== TOKEN_MAGIC.length + 8) return undefined;
  for (let i = 0; i < TOKEN_MAGIC.length; i++) if (data[i] !== TOKEN_MAGIC[i]) return undefined;
  return readU64(data, TOKEN_MAGIC.length);
}

/**
 * For in-process transports (tests, the simulation): reads a sent snapshot's source into inline
 * data and closes it, so the receiving driver restores it directly.
 */
export function inlineSnapshot(envelope: Envelope): Envelope {
  const source = envelope.snapshotSource;
  if (source === undefined || envelope.message.type !== "snapshot") return envelope;
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    for (const piece of source.chunks(1024 * 1024)) {
      parts.push(piece);
      total += piece.length;
    }
  } finally {
    source.close();
  }
  const data = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    data.set(part, at);
    at += part.length;
  }
  const { snapshotSource: _, ...rest } = envelope;
  const message = { ...envelope.message, snapshot: { ...envelope.message.snapshot, data } };
  return { ...rest, message };
}
