/**
 * What the Raft transport's parts share: its options and their defaults, its counters, the state
 * its peer streams share, and two gRPC helpers. The parts: {@linkcode ./transport.ts} (the
 * sender the driver sees), {@linkcode ./peer_stream.ts} (one destination node's stream),
 * {@linkcode ./snapshot_sender.ts} (snapshots, on their own calls) and
 * {@linkcode ./transport_service.ts} (the receiving side).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { RaftTransportServiceDefinition } from "@tinykv/proto/tinykv/v1";
import type { ClientSecurity, GrpcClient } from "@tinykv/rpc";
import type { Clock } from "@tinykv/timer";
import type { ShardId } from "@tinykv/shard";
import type { DriverLog } from "./driver.ts";

/** The share of `maxMessageBytes` a `RaftBatch` may take by default: half (room for framing). */
export const BATCH_SHARE_OF_MESSAGE = 0.5;
/** A default for `queueBytesMax` (per destination node). */
export const QUEUE_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** A default for `snapshotChunkBytes`. */
export const SNAPSHOT_CHUNK_BYTES_DEFAULT = 512 * 1024;
/** A default for the receiver's `maxSnapshotBytes`. */
export const SNAPSHOT_BYTES_MAX_DEFAULT = 1024 * 1024 * 1024;
/** How many snapshot streams a transport sends at once, by default. */
export const SNAPSHOT_STREAMS_MAX_DEFAULT = 4;
/** How many snapshots may wait for a free stream, by default; more fail at once. */
export const SNAPSHOTS_QUEUED_MAX_DEFAULT = 64;
/** How long one snapshot stream may take, by default. */
export const SNAPSHOT_TIMEOUT_MS_DEFAULT = 60_000;
/** How many snapshots a receiver assembles at once, by default; more get RESOURCE_EXHAUSTED. */
export const SNAPSHOTS_RECEIVING_MAX_DEFAULT = 8;
/** The first reconnect delay, by default (it doubles up to the maximum, with full jitter). */
export const RECONNECT_MIN_MS_DEFAULT = 50;
/** The longest reconnect delay, by default. */
export const RECONNECT_MAX_MS_DEFAULT = 2_000;
/**
 * How many batches' worth of bytes a `Send` stream may have handed to grpc-js and not yet seen
 * written, on top of grpc-js's own backpressure (`write()` returning false until 'drain').
 */
export const STREAM_BATCHES_AHEAD_MAX = 4;
/**
 * How many chunks' worth of snapshot data may be sent beyond what the receiver acknowledged as
 * stored. grpc-js's write callbacks (under Deno) do not wait for HTTP/2 flow control, so only the
 * receiver's acknowledgements bound what the sender buffers; waiting for them also yields the
 * event loop between chunks, so a big snapshot never stalls the node.
 */
export const SNAPSHOT_CHUNKS_AHEAD_MAX = 4;
/** How long `close()` lets each stream finish cleanly before cancelling it. */
export const CLOSE_GRACE_MS = 1_000;
/** Bytes a `SnapshotChunk` takes besides its data and envelope (framing, ids, checksum). */
export const SNAPSHOT_CHUNK_OVERHEAD_BYTES = 1024;

/** Where a {@linkcode GrpcRaftTransport} reports. The driver's logger fits. */
export type TransportLog = DriverLog;

/** Reports the outcome of sending one snapshot (wire it to `Driver.reportSnapshot`). */
export type SnapshotStatusHook = (shardId: ShardId, toPeerId: number, ok: boolean) => void;

/** Options of a {@linkcode GrpcRaftTransport}. */
export interface GrpcRaftTransportOptions {
  /** This node's id, sent as `from_node`. */
  readonly nodeId: string;
  /** Where this node listens (`host:port`), sent as `from_address`. */
  readonly address: string;
  /** The cluster id; a receiver of another cluster refuses the stream. */
  readonly clusterId: string;
  /** grpc-js's message bound on the clients (as the servers', e.g. `MESSAGE_BYTES_MAX_DEFAULT`). */
  readonly maxMessageBytes: number;
  /** TLS and the node's token for its streams to other nodes (none: plaintext, no credential). */
  readonly security?: ClientSecurity;
  /**
   * The largest `RaftBatch`, in bytes: at most half of `maxMessageBytes`, which is the default.
   * The config makes sure the largest Raft message (an AppendEntries of `raft.message_bytes_max`,
   * or one entry of the largest command) fits in a batch of its own; one that does not is a
   * broken invariant: it is dropped, counted and logged as an error.
   */
  readonly batchBytesMax?: number;
  /**
   * Bytes queued per destination node, at least `batchBytesMax`; beyond it, the newest envelope
   * is dropped (default {@linkcode QUEUE_BYTES_MAX_DEFAULT}).
   */
  readonly queueBytesMax?: number;
  /**
   * Snapshot data bytes per `SnapshotChunk`, at most half of `maxMessageBytes` less 1 KiB
   * (default {@linkcode SNAPSHOT_CHUNK_BYTES_DEFAULT} or that, whichever is smaller).
   */
  readonly snapshotChunkBytes?: number;
  /** Where failures and drops are reported. */
  readonly log: TransportLog;
  /** Called once per snapshot sent, never from inside `send()` or `flush()`. */
  readonly onSnapshotStatus: SnapshotStatusHook;
  /** Snapshot streams at once (default {@linkcode SNAPSHOT_STREAMS_MAX_DEFAULT}). */
  readonly snapshotStreamsMax?: number;
  /** Snapshots waiting for a stream (default {@linkcode SNAPSHOTS_QUEUED_MAX_DEFAULT}). */
  readonly snapshotsQueuedMax?: number;
  /**
   * How long a snapshot stream may go without the receiver acknowledging progress before it is
   * given up (default {@linkcode SNAPSHOT_TIMEOUT_MS_DEFAULT}); a large snapshot that keeps
   * moving takes as long as it needs.
   */
  readonly snapshotTimeoutMs?: number;
  /** The first reconnect delay (default {@linkcode RECONNECT_MIN_MS_DEFAULT}). */
  readonly reconnectMinMs?: number;
  /** The longest reconnect delay (default {@linkcode RECONNECT_MAX_MS_DEFAULT}). */
  readonly reconnectMaxMs?: number;
  /** The clock of reconnect delays (default `systemClock`). */
  readonly clock?: Clock;
}

/** Counters of a {@linkcode GrpcRaftTransport} since it was created. */
export interface RaftTransportStats {
  /** Envelopes handed to a `Send` stream. */
  envelopesSent: number;
  /** `RaftBatch`es handed to a `Send` stream. */
  batchesSent: number;
  /** Bytes of those batches (estimated from each envelope's bound, so a little more). */
  bytesSent: number;
  /** Envelopes dropped because their node's queue held `queueBytesMax`. */
  droppedQueueFull: number;
  /** Envelopes dropped because they would not fit in a batch of `batchBytesMax` alone. */
  droppedOversized: number;
  /** Envelopes dropped because their shard id or conf epoch cannot go on the wire. */
  droppedInvalid: number;
  /** Envelopes and batches queued now, in bytes (estimated by `envelopeBytesBound`). */
  queuedBytes: number;
  /** `Send` streams that failed or ended (each leads to a reconnect). */
  streamFailures: number;
  /** Snapshots the receiver acknowledged as delivered. */
  snapshotsSent: number;
  /** Snapshots that failed (including those refused because too many were queued). */
  snapshotsFailed: number;
  /** Snapshots dropped because one to the same peer of the same shard was in flight. */
  snapshotsDropped: number;
}

export type TransportClient = GrpcClient<RaftTransportServiceDefinition>;

/** The options with every default filled in. */
export type ResolvedOptions =
  & GrpcRaftTransportOptions
  & Required<
    Pick<
      GrpcRaftTransportOptions,
      | "batchBytesMax"
      | "queueBytesMax"
      | "snapshotChunkBytes"
      | "snapshotStreamsMax"
      | "snapshotsQueuedMax"
      | "snapshotTimeoutMs"
      | "reconnectMinMs"
      | "reconnectMaxMs"
    >
  >;

export function resolveOptions(options: GrpcRaftTransportOptions): ResolvedOptions {
  const half = Math.floor(options.maxMessageBytes / 2);
  const batchBytesMax = options.batchBytesMax ??
    Math.floor(options.maxMessageBytes * BATCH_SHARE_OF_MESSAGE);
  return {
    ...options,
    batchBytesMax,
    queueBytesMax: options.queueBytesMax ?? Math.max(QUEUE_BYTES_MAX_DEFAULT, batchBytesMax),
    snapshotChunkBytes: options.snapshotChunkBytes ??
      Math.min(SNAPSHOT_CHUNK_BYTES_DEFAULT, half - SNAPSHOT_CHUNK_OVERHEAD_BYTES),
    snapshotStreamsMax: options.snapshotStreamsMax ?? SNAPSHOT_STREAMS_MAX_DEFAULT,
    snapshotsQueuedMax: options.snapshotsQueuedMax ?? SNAPSHOTS_QUEUED_MAX_DEFAULT,
    snapshotTimeoutMs: options.snapshotTimeoutMs ?? SNAPSHOT_TIMEOUT_MS_DEFAULT,
    reconnectMinMs: options.reconnectMinMs ?? RECONNECT_MIN_MS_DEFAULT,
    reconnectMaxMs: options.reconnectMaxMs ?? RECONNECT_MAX_MS_DEFAULT,
  };
}

/** Shared state of one transport's peer streams. */
export interface Shared {
  readonly options: ResolvedOptions;
  readonly clock: Clock;
  readonly stats: RaftTransportStats;
  /** Bytes every batch takes besides its envelopes. */
  readonly batchBaseBytes: number;
  closed: boolean;
}

/**
 * Calls `onLost` once when the channel's connection goes away (the channel leaves READY or
 * CONNECTING, including when the client is closed).
 *
 * A stream should fail by itself then, but under Deno 2.9 a connection the receiver closed (e.g. a
 * server shut down) leaves the grpc-js call open with no status, silently swallowing writes; the
 * channel does notice, and leaves READY. A dead peer that sends nothing is found by keepalive,
 * which closes the connection.
 */
export function watchConnection(
  channel: ReturnType<grpc.Client["getChannel"]>,
  onLost: (reason: string) => void,
): void {
  const { READY, CONNECTING, SHUTDOWN } = grpc.connectivityState;
  const watch = (seen: grpc.connectivityState) => {
    if (seen === SHUTDOWN) return;
    channel.watchConnectivityState(seen, Infinity, () => {
      const now = channel.getConnectivityState(false);
      if (now === READY || now === CONNECTING) return watch(now);
      onLost(`the connection went ${grpc.connectivityState[now]}`);
    });
  };
  watch(channel.getConnectivityState(false));
}

export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
