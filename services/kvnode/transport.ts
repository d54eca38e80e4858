/**
 * The Raft transport between kvnodes over gRPC (`RaftTransport` of kvnode.proto).
 *
 * Sending ({@linkcode GrpcRaftTransport}, the driver's {@linkcode RaftOutbound}): one long-lived
 * client-streaming `Send` call per destination node carries `RaftBatch`es holding the envelopes of
 * every group queued for that node since the last `flush()` — one grpc-js message for many Raft
 * messages (docs/design.md "Performance shape"). Each batch stays under `batchBytesMax`; each node's
 * queue under `queueBytesMax` (beyond it the newest envelope is dropped and counted: Raft
 * retries). A failed stream is reopened after an exponential backoff with jitter. Snapshots go on
 * their own `SendSnapshot` call in chunks, so a large snapshot never delays heartbeats.
 *
 * Receiving ({@linkcode raftTransportService}): decodes and checks every envelope, drops invalid
 * ones, and hands each batch's valid envelopes to the driver in one call. A snapshot is assembled
 * aside and handed over only once complete and its checksum matches.
 *
 * Backpressure: a stream takes batches while grpc-js's `write()` says it may (else until 'drain')
 * and while less than {@linkcode STREAM_BATCHES_AHEAD_MAX} batches' bytes await their write
 * callbacks; the rest waits in the bounded queue. Measured under Deno 2.9.3 + grpc-js 1.14: a
 * receiver whose handler stops reading does NOT push back (its `pause()` does not reach HTTP/2
 * flow control; ~150 MB went out in 5 s), so in practice the bound that holds is that receivers
 * read at once — `onEnvelopes` hands batches straight to the driver's inbox.
 *
 * Error handling: nothing here throws into the driver. gRPC failures (a peer down, a stream
 * reset, a refused batch) end the stream and lead to a reconnect; what was in flight is lost and
 * Raft sends it again. Bad options are bugs in the wiring and throw `RangeError` at construction.
 *
 * @module
 */
import { systemClock } from "@tinykv/timer";
import type { Envelope, RaftOutbound } from "./driver.ts";
import type { PeerAddress } from "./replica.ts";
import { SHARD_ID_MAX } from "./raft_codec.ts";
import { PeerStream } from "./peer_stream.ts";
import { type SnapshotEnvelope, SnapshotSender } from "./snapshot_sender.ts";
import {
  type GrpcRaftTransportOptions,
  type RaftTransportStats,
  type ResolvedOptions,
  resolveOptions,
  type Shared,
  SNAPSHOT_CHUNK_OVERHEAD_BYTES,
} from "./transport_shared.ts";

export {
  BATCH_SHARE_OF_MESSAGE,
  CLOSE_GRACE_MS,
  type GrpcRaftTransportOptions,
  QUEUE_BYTES_MAX_DEFAULT,
  type RaftTransportStats,
  RECONNECT_MAX_MS_DEFAULT,
  RECONNECT_MIN_MS_DEFAULT,
  SNAPSHOT_BYTES_MAX_DEFAULT,
  SNAPSHOT_CHUNK_BYTES_DEFAULT,
  SNAPSHOT_CHUNKS_AHEAD_MAX,
  SNAPSHOT_STREAMS_MAX_DEFAULT,
  SNAPSHOT_TIMEOUT_MS_DEFAULT,
  SNAPSHOTS_QUEUED_MAX_DEFAULT,
  SNAPSHOTS_RECEIVING_MAX_DEFAULT,
  type SnapshotStatusHook,
  STREAM_BATCHES_AHEAD_MAX,
  type TransportLog,
} from "./transport_shared.ts";
export { raftTransportService, type RaftTransportServiceOptions } from "./transport_service.ts";

/**
 * Sends Raft messages to other kvnodes over gRPC. See the module docs.
 *
 * @example Wiring with the driver
 * ```ts ignore
 * const transport = new GrpcRaftTransport({
 *   nodeId, clusterId, maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
 *   queueBytesMax: QUEUE_BYTES_MAX_DEFAULT,
 *   snapshotChunkBytes: SNAPSHOT_CHUNK_BYTES_DEFAULT, log,
 *   onSnapshotStatus: (shard, peer, ok) => driver.reportSnapshot(shard, peer, ok),
 * });
 * const driver = new Driver({ ...driverOptions, outbound: transport });
 * ```
 */
export class GrpcRaftTransport implements RaftOutbound {
  readonly #shared: Shared;
  readonly #peers = new Map<string, PeerStream>();
  /** Peers with envelopes queued since the last flush. */
  readonly #dirty = new Set<PeerStream>();
  readonly #snapshots: SnapshotSender;

  /** Creates a transport; streams open on the first flush to each node. */
  constructor(transportOptions: GrpcRaftTransportOptions) {
    const options = resolveOptions(transportOptions);
    checkOptions(options);
    const encoder = new TextEncoder();
    this.#shared = {
      options,
      clock: options.clock ?? systemClock,
      stats: {
        envelopesSent: 0,
        batchesSent: 0,
        bytesSent: 0,
        droppedQueueFull: 0,
        droppedOversized: 0,
        droppedInvalid: 0,
        queuedBytes: 0,
        streamFailures: 0,
        snapshotsSent: 0,
        snapshotsFailed: 0,
        snapshotsDropped: 0,
      },
      // Two strings of at most 5 bytes of length prefix and 1 of tag each, with headroom.
      batchBaseBytes: 16 + encoder.encode(options.nodeId).length +
        encoder.encode(options.clusterId).length,
      closed: false,
    };
    this.#snapshots = new SnapshotSender(this.#shared);
  }

  /**
   * Queues `envelope` for the node hosting `to`. Never throws and never blocks: an envelope over
   * the node's queue bound is dropped and counted. A snapshot message goes on its own stream at
   * once (its outcome reaches `onSnapshotStatus`).
   */
  send(to: PeerAddress, envelope: Envelope): void {
    const shared = this.#shared;
    if (shared.closed) return;
    if (!fitsWire(envelope)) {
      shared.stats.droppedInvalid++;
      shared.options.log.error("Dropped a Raft message that cannot go on the wire", {
        shard: envelope.shardId,
        confEpoch: envelope.confEpoch,
      });
      return;
    }
    if (envelope.message.type === "snapshot") {
      this.#snapshots.enqueue(to, envelope as SnapshotEnvelope);
      return;
    }
    const peer = this.#peer(to);
    if (peer.enqueue(envelope)) this.#dirty.add(peer);
  }

  /** The stream to `to`'s node, created on first use. */
  #peer(to: PeerAddress): PeerStream {
    const key = `${to.nodeId}@${to.address}`;
    let peer = this.#peers.get(key);
    if (peer === undefined) {
      peer = new PeerStream(this.#shared, to.nodeId, to.address);
      this.#peers.set(key, peer);
    }
    return peer;
  }

  /** Queues a ping (an empty batch) to `to`'s node, unless something else goes there anyway. */
  ping(to: PeerAddress): void {
    if (this.#shared.closed) return;
    const peer = this.#peer(to);
    peer.requestPing();
    this.#dirty.add(peer);
  }

  /** Writes out what was queued since the last flush: one run of batches per node. */
  flush(): void {
    if (this.#shared.closed) return;
    for (const peer of this.#dirty) peer.flush();
    this.#dirty.clear();
  }

  /** A copy of the counters. */
  stats(): RaftTransportStats {
    let queuedBytes = 0;
    for (const peer of this.#peers.values()) queuedBytes += peer.queuedBytes;
    return { ...this.#shared.stats, queuedBytes };
  }

  /**
   * Ends every stream (letting each finish for up to {@linkcode CLOSE_GRACE_MS}) and closes every
   * client. Snapshots in flight are cancelled; no `onSnapshotStatus` call follows. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#shared.closed) return;
    this.#shared.closed = true;
    await Promise.all([
      this.#snapshots.cancelAll(),
      ...[...this.#peers.values()].map((peer) => peer.close()),
    ]);
    this.#peers.clear();
    this.#dirty.clear();
  }
}

function checkOptions(options: ResolvedOptions): void {
  const { maxMessageBytes, batchBytesMax } = options;
  const half = Math.floor(maxMessageBytes / 2);
  const chunkMax = half - SNAPSHOT_CHUNK_OVERHEAD_BYTES;
  const rules: Array<[name: keyof ResolvedOptions, min: number, max: number]> = [
    ["maxMessageBytes", 1, Number.MAX_SAFE_INTEGER],
    ["batchBytesMax", 1, half],
    ["queueBytesMax", batchBytesMax, Number.MAX_SAFE_INTEGER],
    ["snapshotChunkBytes", 1, chunkMax],
    ["snapshotStreamsMax", 1, Number.MAX_SAFE_INTEGER],
    ["snapshotsQueuedMax", 1, Number.MAX_SAFE_INTEGER],
    ["snapshotTimeoutMs", 1, Number.MAX_SAFE_INTEGER],
    ["reconnectMinMs", 1, options.reconnectMaxMs],
  ];
  for (const [name, min, max] of rules) {
    const value = options[name];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new RangeError(
        `Cannot create a Raft transport: ${name} is ${String(value)}: expected an integer in ` +
          `[${min}, ${max}]`,
      );
    }
  }
}

/** Whether the envelope's own numbers fit their wire types (the message's are branded). */
function fitsWire(envelope: Envelope): boolean {
  const { shardId, confEpoch } = envelope;
  return Number.isSafeInteger(shardId) && shardId >= 0 && shardId <= SHARD_ID_MAX &&
    Number.isSafeInteger(confEpoch) && confEpoch >= 0;
}
