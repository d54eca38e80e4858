/**
 * {@linkcode SnapshotSender}: sends snapshots on their own `SendSnapshot` calls, in chunks, a
 * bounded number at once, so a large snapshot never delays heartbeats (see
 * {@linkcode ./transport.ts} for the whole).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { CRC32_INIT, crc32Finish, crc32Update, type SnapshotMessage } from "@tinykv/raft";
import {
  RaftTransportService,
  type SnapshotAck,
  type SnapshotChunk,
} from "@tinykv/proto/tinykv/v1";
import { createGrpcClient } from "@tinykv/rpc";
import type { Envelope } from "./driver.ts";
import type { PeerAddress } from "./replica.ts";
import { messageToProto } from "./raft_codec.ts";
import {
  describe,
  type Shared,
  SNAPSHOT_CHUNKS_AHEAD_MAX,
  type TransportClient,
  watchConnection,
} from "./transport_shared.ts";

/** An envelope of a snapshot message. */
export type SnapshotEnvelope = Envelope & { readonly message: SnapshotMessage };

interface SnapshotJob {
  readonly key: string;
  readonly to: PeerAddress;
  readonly envelope: SnapshotEnvelope;
}

/** The outcome of one snapshot stream. */
type SnapshotOutcome =
  | { readonly kind: "installed" }
  | { readonly kind: "failed"; readonly reason: string };

/**
 * Sends snapshots, each on its own `SendSnapshot` call over its own client: at most one per
 * (shard, peer), at most `snapshotStreamsMax` at once, at most `snapshotsQueuedMax` waiting.
 */
export class SnapshotSender {
  readonly #shared: Shared;
  /** Keys `shard/peer` of snapshots waiting or streaming. */
  readonly #inFlight = new Set<string>();
  readonly #waiting: SnapshotJob[] = [];
  readonly #active = new Set<{ cancel(): void }>();
  /** The streams in flight, settled once their client is closed. */
  readonly #streams = new Set<Promise<void>>();

  constructor(shared: Shared) {
    this.#shared = shared;
  }

  enqueue(to: PeerAddress, envelope: SnapshotEnvelope): void {
    const { options, stats } = this.#shared;
    const key = `${envelope.shardId}/${envelope.message.to}`;
    if (this.#inFlight.has(key)) {
      // The one in flight reports its own outcome, which the Raft core awaits.
      stats.snapshotsDropped++;
      envelope.snapshotSource?.close();
      return;
    }
    if (this.#waiting.length >= options.snapshotsQueuedMax) {
      options.log.warn("Refused a snapshot: too many are waiting to be sent", {
        shard: envelope.shardId,
        peer: envelope.message.to,
      });
      envelope.snapshotSource?.close();
      queueMicrotask(() => this.#report({ key: "", to, envelope }, false));
      return;
    }
    this.#inFlight.add(key);
    this.#waiting.push({ key, to, envelope });
    this.#startWaiting();
  }

  /** Cancels every snapshot and resolves once every client is closed. */
  async cancelAll(): Promise<void> {
    for (const job of this.#waiting) job.envelope.snapshotSource?.close();
    this.#waiting.length = 0;
    for (const active of this.#active) active.cancel();
    this.#active.clear();
    await Promise.all(this.#streams);
  }

  #startWaiting(): void {
    const streamsMax = this.#shared.options.snapshotStreamsMax;
    while (this.#active.size < streamsMax && this.#waiting.length > 0) {
      const job = this.#waiting.shift()!;
      const handle = { cancel: () => {} };
      this.#active.add(handle);
      const streamed = this.#stream(job, handle).then((outcome) => {
        this.#streams.delete(streamed);
        this.#active.delete(handle);
        this.#inFlight.delete(job.key);
        if (outcome.kind === "failed") {
          this.#shared.options.log.warn("Sending a snapshot failed", {
            shard: job.envelope.shardId,
            peer: job.to.peerId,
            node: job.to.nodeId,
            reason: outcome.reason,
          });
        }
        this.#report(job, outcome.kind === "installed");
        if (!this.#shared.closed) this.#startWaiting();
      });
      this.#streams.add(streamed);
    }
  }

  #report(job: SnapshotJob, ok: boolean): void {
    if (this.#shared.closed) return;
    if (ok) this.#shared.stats.snapshotsSent++;
    else this.#shared.stats.snapshotsFailed++;
    this.#shared.options.onSnapshotStatus(job.envelope.shardId, job.envelope.message.to, ok);
  }

  /** Streams one snapshot: the envelope, the data in chunks, then waits for the ack. */
  async #stream(job: SnapshotJob, handle: { cancel(): void }): Promise<SnapshotOutcome> {
    const { options } = this.#shared;
    const timeoutMs = options.snapshotTimeoutMs;
    let client: TransportClient | undefined;
    try {
      // The size is declared up front (a receiver refuses one above its maximum before any data),
      // measured before the call opens: no receiver slot or progress watchdog waits on it.
      let stopped = false;
      handle.cancel = () => (stopped = true);
      const source = job.envelope.snapshotSource;
      const declared = source === undefined
        ? job.envelope.message.snapshot.data.length
        : await source.sizeBytes(() => stopped || this.#shared.closed);
      client = createGrpcClient(RaftTransportService, job.to.address, {
        maxMessageBytes: options.maxMessageBytes,
        ...options.security,
      });
      let settled = false;
      const { promise: done, resolve } = Promise.withResolvers<SnapshotOutcome>();
      const settle = (outcome: SnapshotOutcome) => {
        if (settled) return;
        settled = true;
        resolve(outcome);
      };
      const call = client.SendSnapshot(new grpc.Metadata(), {});
      const { clock } = this.#shared;
      // Given up when the receiver acknowledges nothing for `timeoutMs`.
      const stalled = () => {
        settle({ kind: "failed", reason: `no progress acknowledged for ${timeoutMs} ms` });
        call.cancel();
      };
      let watchdog = clock.setTimeout(stalled, timeoutMs);
      done.finally(() => clock.clearTimeout(watchdog));
      // The receiver acknowledges what it stored; at most a window of chunks is beyond that.
      let acked = 0;
      let sent = 0;
      let onAck = () => {};
      call.on("data", (ack: SnapshotAck) => {
        acked = Math.max(acked, ack.receivedBytes);
        if (ack.installed) settle({ kind: "installed" });
        clock.clearTimeout(watchdog);
        if (!settled) watchdog = clock.setTimeout(stalled, timeoutMs);
        onAck();
      });
      call.on("error", (error: Error) => settle({ kind: "failed", reason: describe(error) }));
      call.on("end", () => settle({ kind: "failed", reason: "the receiver did not install it" }));
      handle.cancel = () => call.cancel();
      watchConnection(client.getChannel(), (reason) => {
        settle({ kind: "failed", reason });
        call.cancel();
      });
      const windowBytes = SNAPSHOT_CHUNKS_AHEAD_MAX * options.snapshotChunkBytes;
      for (const chunk of snapshotChunks(this.#shared, job.envelope, declared)) {
        while (sent - acked >= windowBytes && !settled) {
          await Promise.race([new Promise<void>((wake) => (onAck = wake)), done]);
        }
        if (settled) break;
        call.write(chunk);
        sent += chunk.data.length;
      }
      call.end();
      return await done;
    } catch (error) {
      return { kind: "failed", reason: describe(error) };
    } finally {
      job.envelope.snapshotSource?.close();
      client?.close();
    }
  }
}

/**
 * The chunks of one snapshot: the envelope (metadata only) with the data's `declared` size, then
 * the data in pieces of `snapshotChunkBytes`; the last one carries `last`, the CRC-32 of the whole
 * data and its length.
 */
function* snapshotChunks(
  shared: Shared,
  envelope: SnapshotEnvelope,
  declared: number,
): Generator<SnapshotChunk> {
  const { nodeId, address, clusterId, snapshotChunkBytes } = shared.options;
  const base = { fromNode: nodeId, fromAddress: address, clusterId, shardId: envelope.shardId };
  const open = { checksum: 0, totalBytes: 0 };
  // Read lazily from the sender's view (or the message's own data, sent inline by tests), one
  // piece ahead, so the last chunk can carry the length and checksum of the whole.
  const source = envelope.snapshotSource;
  const data = envelope.message.snapshot.data;
  const pieces: Iterator<Uint8Array> = source === undefined
    ? slices(data, snapshotChunkBytes)[Symbol.iterator]()
    : source.chunks(snapshotChunkBytes)[Symbol.iterator]();
  let crc = CRC32_INIT;
  let total = 0;
  let next = pieces.next();
  const tail = () => ({ checksum: crc32Finish(crc), totalBytes: total });
  yield {
    ...base,
    envelope: messageToProto(envelope),
    data: new Uint8Array(0),
    last: next.done === true,
    ...(next.done === true ? tail() : { ...open, totalBytes: declared }),
  };
  while (next.done !== true) {
    const piece = next.value;
    crc = crc32Update(crc, piece);
    total += piece.length;
    next = pieces.next();
    const last = next.done === true;
    yield { ...base, data: piece, last, ...(last ? tail() : open) };
  }
}

function* slices(data: Uint8Array, bytes: number): Iterable<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += bytes) {
    yield data.subarray(offset, Math.min(offset + bytes, data.length));
  }
}
