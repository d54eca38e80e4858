/**
 * {@linkcode SnapshotStaging}: writes a snapshot that is being received into a fresh generation
 * of the replica's spaces, a bounded transaction at a time, as its pieces arrive. Nothing the
 * replica serves changes until the driver installs the snapshot, which then only makes that
 * generation current; an abandoned staging leaves a generation no replica refers to, which the
 * node's garbage collection deletes.
 *
 * Memory stays at one transaction's records plus one partial record, whatever the snapshot's size.
 *
 * @module
 */
import type { KvSpace } from "./kv_space.ts";
import { type NodeStorage, SPACE } from "./node_storage.ts";
import { RecordParser, type SnapshotRecord } from "./snapshot_stream.ts";
import { KEY_BYTES_MAX } from "@tinykv/shard";

/** Bytes of records written per transaction while staging. */
export const STAGE_TRANSACTION_BYTES = 1024 * 1024;

/** Options of a {@linkcode SnapshotStaging}. */
export interface SnapshotStagingOptions {
  readonly peerId: number;
  /** The generation to write, new and unused. */
  readonly generation: number;
  /** The largest record accepted (a key, a value and the header); larger ones are corrupt. */
  readonly recordBytesMax: number;
  /** Bytes of records per transaction (default {@linkcode STAGE_TRANSACTION_BYTES}). */
  readonly transactionBytes?: number;
}

/** The outcome of a staging step: done, or why the data cannot be a snapshot. */
export type StagingResult = { readonly kind: "ok" } | {
  readonly kind: "invalid";
  readonly message: string;
};

/** See the module docs. */
export class SnapshotStaging {
  readonly #store: NodeStorage;
  readonly #options: SnapshotStagingOptions;
  readonly #parser: RecordParser;
  readonly #spaces: KvSpace[];
  #batch: SnapshotRecord[] = [];
  #batchBytes = 0;
  /** Records written so far (for reports and tests). */
  records = 0;

  constructor(store: NodeStorage, options: SnapshotStagingOptions) {
    this.#store = store;
    this.#options = options;
    this.#parser = new RecordParser(options.recordBytesMax);
    const space = (tag: number) => store.space(options.peerId, tag, options.generation);
    this.#spaces = [space(SPACE.data), space(SPACE.sessions), space(SPACE.meta)];
  }

  /** The generation being written. */
  get generation(): number {
    return this.#options.generation;
  }

  /** Takes the next piece; resolves once what it completed is written, when a batch filled. */
  async write(piece: Uint8Array): Promise<StagingResult> {
    const parsed = this.#parser.push(piece);
    if (parsed.kind === "invalid") return parsed;
    const limit = this.#options.transactionBytes ?? STAGE_TRANSACTION_BYTES;
    for (const record of parsed.records) {
      // No space of a replica holds a longer key (client keys, session and meta records).
      if (record.key.length > KEY_BYTES_MAX) {
        return {
          kind: "invalid",
          message: `Snapshot record has a key of ${record.key.length} bytes: the maximum is ` +
            `${KEY_BYTES_MAX}`,
        };
      }
      this.#batch.push(record);
      this.#batchBytes += record.key.length + record.value.length;
      if (this.#batchBytes >= limit) await this.#flush();
    }
    return { kind: "ok" };
  }

  /** Writes what is left; the data must end on a record boundary. */
  async finish(): Promise<StagingResult> {
    if (!this.#parser.complete) {
      return { kind: "invalid", message: "Snapshot data ends in the middle of a record" };
    }
    await this.#flush();
    return { kind: "ok" };
  }

  async #flush(): Promise<void> {
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    await this.#store.write(() => {
      for (const { space, key, value } of batch) this.#spaces[space].put(key, value);
    });
    this.records += batch.length;
  }
}
