/**
 * The Raft transport between kvnodes over gRPC (`RaftTransport` of kvnode.proto).
 *
 * Sending ({@linkcode GrpcRaftTransport}, the driver's {@linkcode RaftOutbound}): one long-lived
 * client-streaming `Send` call per destination node carries `RaftBatch`es holding the envelopes of
 * every group queued for that node since the last `flush()` — one grpc-js message for many Raft
 * messages (DESIGN.md "Performance shape"). Each batch stays under `batchBytesMax`; each node's
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
import * as grpc from "@grpc/grpc-js";
import { CRC32_INIT, crc32Finish, crc32Update, type SnapshotMessage } from "@tinykv/raft";
import {
  type RaftBatch,
  type RaftEnvelope,
  type RaftSendSummary,
  RaftTransportService,
  type RaftTransportServiceDefinition,
  type SnapshotAck,
  type SnapshotChunk,
} from "@tinykv/proto/tinykv/v1";
import {
  bindService,
  createGrpcClient,
  type GrpcClient,
  type RpcFailure,
  rpcFailure,
  type ServiceBinding,
  toServerError,
} from "@tinykv/rpc";
import { Backoff, type Clock, systemClock, type TimeoutHandle } from "@tinykv/timer";
import type { DriverLog, Envelope, RaftOutbound, SnapshotStagingHandle } from "./driver.ts";
import type { PeerAddress } from "./replica.ts";
import {
  envelopeBytesBound,
  messageFromProto,
  messageToProto,
  SHARD_ID_MAX,
} from "./raft_codec.ts";
import { assert, unreachable } from "./_assert.ts";

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
const SNAPSHOT_CHUNK_OVERHEAD_BYTES = 1024;

/** Where a {@linkcode GrpcRaftTransport} reports. The driver's logger fits. */
export type TransportLog = DriverLog;

/** Reports the outcome of sending one snapshot (wire it to `Driver.reportSnapshot`). */
export type SnapshotStatusHook = (shardId: number, toPeerId: number, ok: boolean) => void;

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

type TransportClient = GrpcClient<RaftTransportServiceDefinition>;

/** The options with every default filled in. */
type ResolvedOptions =
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

function resolveOptions(options: GrpcRaftTransportOptions): ResolvedOptions {
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
interface Shared {
  readonly options: ResolvedOptions;
  readonly clock: Clock;
  readonly stats: RaftTransportStats;
  /** Bytes every batch takes besides its envelopes. */
  readonly batchBaseBytes: number;
  closed: boolean;
}

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

/**
 * Calls `onLost` once when the channel's connection goes away (the channel leaves READY or
 * CONNECTING, including when the client is closed).
 *
 * A stream should fail by itself then, but under Deno 2.9 a connection the receiver closed (e.g. a
 * server shut down) leaves the grpc-js call open with no status, silently swallowing writes; the
 * channel does notice, and leaves READY. A dead peer that sends nothing is found by keepalive,
 * which closes the connection.
 */
function watchConnection(
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

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

// --- One destination node ---------------------------------------------------------------------

interface QueuedBatch {
  readonly batch: RaftBatch;
  readonly bytes: number;
  readonly envelopes: number;
}

type StreamState =
  | { readonly kind: "idle" }
  | {
    readonly kind: "open";
    readonly client: TransportClient;
    readonly call: grpc.ClientWritableStream<RaftBatch>;
    readonly ended: Promise<void>;
  }
  | { readonly kind: "backoff"; readonly timer: TimeoutHandle }
  | { readonly kind: "closed" };

/**
 * The `Send` stream to one node and its queue. Envelopes wait in `#pending` until the flush, then
 * as batches in `#batches` until the stream takes them.
 *
 * Invariant: `#pendingBytes + #batchesBytes <= queueBytesMax`.
 */
class PeerStream {
  readonly #shared: Shared;
  readonly #nodeId: string;
  readonly #address: string;
  readonly #backoff: Backoff;
  #pending: Envelope[] = [];
  /** A ping was asked for since the last pack. */
  #ping = false;
  #pendingBytes = 0;
  #batches: QueuedBatch[] = [];
  #batchesBytes = 0;
  #state: StreamState = { kind: "idle" };
  /** Counts streams, so that events of a stream that failed are told apart. */
  #generation = 0;
  /** Set when `write()` returned false, until 'drain'. */
  #blocked = false;
  /** Bytes handed to the current stream whose write callback has not come yet. */
  #aheadBytes = 0;
  /** When the receiver accepted the current stream, if it did. */
  #acceptedAtMs: number | undefined;

  constructor(shared: Shared, nodeId: string, address: string) {
    this.#shared = shared;
    this.#nodeId = nodeId;
    this.#address = address;
    this.#backoff = new Backoff({
      minMs: shared.options.reconnectMinMs,
      maxMs: shared.options.reconnectMaxMs,
    });
  }

  get queuedBytes(): number {
    return this.#pendingBytes + this.#batchesBytes;
  }

  /** Asks for an empty batch at the next flush if nothing else is queued by then. */
  requestPing(): void {
    this.#ping = true;
  }

  /** Queues an envelope; returns false when it was dropped. */
  enqueue(envelope: Envelope): boolean {
    const { options, stats, batchBaseBytes } = this.#shared;
    const bytes = envelopeBytesBound(envelope);
    if (batchBaseBytes + bytes > options.batchBytesMax) {
      // The config keeps every Raft message under the batch bound: this is a bug, and the
      // message's group cannot make progress past it.
      stats.droppedOversized++;
      options.log.error("Dropped a Raft message too big for a batch (a broken invariant)", {
        node: this.#nodeId,
        shard: envelope.shardId,
        bytes,
        batchBytesMax: options.batchBytesMax,
      });
      return false;
    }
    if (this.queuedBytes + bytes > options.queueBytesMax) {
      stats.droppedQueueFull++;
      return false;
    }
    this.#pending.push(envelope);
    this.#pendingBytes += bytes;
    assert(this.queuedBytes <= options.queueBytesMax, "Raft queue past its byte bound");
    return true;
  }

  /** Packs what is pending into batches and writes what the stream takes. */
  flush(): void {
    this.#pack();
    switch (this.#state.kind) {
      case "idle":
        return this.#open();
      case "open":
        return this.#pump();
      case "backoff":
      case "closed":
        return;
      default: {
        const never: never = this.#state;
        return unreachable(never, "stream state");
      }
    }
  }

  #pack(): void {
    const { options, batchBaseBytes } = this.#shared;
    let messages: RaftEnvelope[] = [];
    let bytes = batchBaseBytes;
    const push = () => {
      this.#batches.push({
        batch: {
          fromNode: options.nodeId,
          fromAddress: options.address,
          clusterId: options.clusterId,
          messages,
        },
        bytes,
        envelopes: messages.length,
      });
      this.#batchesBytes += bytes - batchBaseBytes;
    };
    for (const envelope of this.#pending) {
      const size = envelopeBytesBound(envelope);
      if (messages.length > 0 && bytes + size > options.batchBytesMax) {
        push();
        messages = [];
        bytes = batchBaseBytes;
      }
      messages.push(messageToProto(envelope));
      bytes += size;
    }
    // A ping only when nothing waits to go: a stalled stream keeps at most one.
    if (messages.length > 0 || (this.#ping && this.#batches.length === 0)) push();
    this.#ping = false;
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  #open(): void {
    const generation = ++this.#generation;
    const { options } = this.#shared;
    let client: TransportClient | undefined;
    try {
      client = createGrpcClient(RaftTransportService, this.#address, {
        maxMessageBytes: options.maxMessageBytes,
      });
      const opened = client;
      let settle = () => {};
      const ended = new Promise<void>((resolve) => (settle = resolve));
      const call = client.Send(new grpc.Metadata(), {}, (error) => {
        settle();
        if (generation === this.#generation) this.#fail(error ?? "the receiver ended the stream");
      });
      // Errors also reach the callback; without a listener an 'error' event would throw.
      call.on("error", () => {});
      // The receiver sends its metadata as soon as it accepts the stream.
      call.on("metadata", () => {
        if (generation === this.#generation) this.#acceptedAtMs = this.#shared.clock.now();
      });
      call.on("drain", () => {
        if (generation !== this.#generation) return;
        this.#blocked = false;
        this.#pump();
      });
      this.#state = { kind: "open", client: opened, call, ended };
      this.#blocked = false;
      this.#aheadBytes = 0;
      watchConnection(opened.getChannel(), (reason) => {
        if (generation === this.#generation) this.#fail(reason);
      });
      this.#pump();
    } catch (error) {
      client?.close();
      this.#fail(error);
    }
  }

  #pump(): void {
    const state = this.#state;
    if (state.kind !== "open") return;
    const { options, stats } = this.#shared;
    const aheadBytesMax = options.batchBytesMax * STREAM_BATCHES_AHEAD_MAX;
    const generation = this.#generation;
    while (this.#batches.length > 0 && !this.#blocked && this.#aheadBytes < aheadBytesMax) {
      const queued = this.#batches.shift()!;
      const bytes = queued.bytes - this.#shared.batchBaseBytes;
      this.#batchesBytes -= bytes;
      this.#aheadBytes += bytes;
      stats.batchesSent++;
      stats.envelopesSent += queued.envelopes;
      try {
        const more = state.call.write(queued.batch, () => {
          if (generation !== this.#generation) return;
          this.#aheadBytes -= bytes;
          this.#pump();
        });
        if (!more) this.#blocked = true;
      } catch (error) {
        return this.#fail(error);
      }
    }
  }

  /** Ends the current stream after a failure and schedules a reconnect. */
  #fail(error: unknown): void {
    if (this.#state.kind === "closed") return;
    const { options, stats, clock } = this.#shared;
    // Events of the failed stream (its callback, late write callbacks) are ignored from here on.
    this.#generation++;
    if (this.#state.kind === "open") {
      this.#state.call.cancel();
      this.#state.client.close();
    }
    stats.streamFailures++;
    // A stream that worked for a while starts the backoff over. One refused soon after it was
    // accepted (another cluster) keeps backing off, so it neither spins nor floods the log.
    const accepted = this.#acceptedAtMs;
    this.#acceptedAtMs = undefined;
    if (accepted !== undefined && clock.now() - accepted >= options.reconnectMaxMs) {
      this.#backoff.reset();
    }
    const delayMs = this.#backoff.nextDelayMs();
    if (this.#backoff.attempt === 1) {
      options.log.warn("Raft stream to a node failed: reconnecting with backoff", {
        node: this.#nodeId,
        address: this.#address,
        error: describe(error),
      });
    }
    const timer = clock.setTimeout(() => {
      if (this.#state.kind !== "backoff") return;
      this.#state = { kind: "idle" };
      // Reconnect only when something waits; otherwise the next flush opens the stream.
      if (this.#batches.length > 0) this.#open();
    }, delayMs);
    this.#state = { kind: "backoff", timer };
  }

  /** Ends the stream cleanly (cancelling it after the grace period) and closes the client. */
  async close(): Promise<void> {
    const state = this.#state;
    this.#state = { kind: "closed" };
    this.#generation++;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#batches = [];
    this.#batchesBytes = 0;
    if (state.kind === "backoff") this.#shared.clock.clearTimeout(state.timer);
    if (state.kind !== "open") return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      state.call.end();
      await Promise.race([
        state.ended,
        new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
      ]);
    } catch {
      // Ending a stream that already failed: nothing left to end.
    } finally {
      clearTimeout(timer);
      state.call.cancel();
      state.client.close();
    }
  }
}

// --- Snapshots --------------------------------------------------------------------------------

/** An envelope of a snapshot message. */
type SnapshotEnvelope = Envelope & { readonly message: SnapshotMessage };

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
class SnapshotSender {
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
      client = createGrpcClient(RaftTransportService, job.to.address, {
        maxMessageBytes: options.maxMessageBytes,
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
      for (const chunk of snapshotChunks(this.#shared, job.envelope)) {
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
 * The chunks of one snapshot: the envelope (metadata only), then the data in pieces of
 * `snapshotChunkBytes`; the last one carries `last`, the CRC-32 of the whole data and its length.
 */
function* snapshotChunks(shared: Shared, envelope: SnapshotEnvelope): Generator<SnapshotChunk> {
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
    ...(next.done === true ? tail() : open),
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

// --- Receiving --------------------------------------------------------------------------------

/** Options of {@linkcode raftTransportService}. */
export interface RaftTransportServiceOptions {
  /** This node's cluster id: streams of another cluster are refused (FAILED_PRECONDITION). */
  readonly clusterId: string;
  /** The largest snapshot assembled, in bytes; a larger one gets RESOURCE_EXHAUSTED. */
  readonly maxSnapshotBytes: number;
  /**
   * Takes the valid envelopes of one `RaftBatch`, or one complete snapshot message carrying what
   * its staging's `finish` returned (wire it to `Driver.receive`). Called synchronously from
   * grpc-js events; must not block.
   */
  /** Each batch's valid envelopes (none for a ping) and the node that sent it. */
  readonly onEnvelopes: (envelopes: Envelope[], fromNode: string) => void;
  /** Where refused streams and dropped envelopes are reported. */
  readonly log: TransportLog;
  /** Snapshots received at once (default {@linkcode SNAPSHOTS_RECEIVING_MAX_DEFAULT}). */
  readonly snapshotsReceivingMax?: number;
  /**
   * Where a snapshot's data goes as it arrives (wire it to `Driver.stageSnapshot`): written to
   * storage piece by piece, so the node never holds a whole snapshot in memory.
   */
  readonly stageSnapshot: (envelope: Envelope) => SnapshotStagingHandle | { refused: string };
}

/**
 * The receiving side: handlers of `RaftTransport` for {@linkcode startGrpcServer} of libs/rpc.
 *
 * `Send` reads batches until the sender ends the stream, then answers with the count of envelopes
 * received; a batch of another cluster ends the call with FAILED_PRECONDITION. Envelopes that fail
 * {@linkcode messageFromProto} (including snapshot messages, whose data never rides on `Send`) are
 * dropped and logged.
 *
 * `SendSnapshot` hands each chunk's data to a staging opened by `stageSnapshot` (acknowledging
 * each once stored), and only when the last one arrived and the length and checksum match, hands
 * the snapshot message to `onEnvelopes` and acks `installed: true` ("delivered to the driver").
 * Otherwise nothing reaches the driver, the staging is abandoned and the call ends with
 * RESOURCE_EXHAUSTED (too big, too many at once), DATA_LOSS (checksum, length or records),
 * FAILED_PRECONDITION (cluster, no such replica) or INVALID_ARGUMENT (malformed).
 *
 * @example
 * ```ts ignore
 * const server = await startGrpcServer({
 *   host: "127.0.0.1", port: 7901, maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
 *   services: [raftTransportService({
 *     clusterId, maxSnapshotBytes: SNAPSHOT_BYTES_MAX_DEFAULT, log,
 *     onEnvelopes: (envelopes, fromNode) => driver.receive(envelopes, fromNode),
 *     stageSnapshot: (envelope) => driver.stageSnapshot(envelope),
 *   })],
 * });
 * ```
 */
export function raftTransportService(options: RaftTransportServiceOptions): ServiceBinding {
  if (!(Number.isSafeInteger(options.maxSnapshotBytes) && options.maxSnapshotBytes > 0)) {
    throw new RangeError(
      `Cannot serve the Raft transport: maxSnapshotBytes is ${options.maxSnapshotBytes}: ` +
        `expected a positive integer`,
    );
  }
  const receiving = { count: 0 };
  return bindService(RaftTransportService, {
    Send: (call, callback) => receiveBatches(options, call, callback),
    SendSnapshot: (call) => receiveSnapshot(options, receiving, call),
  });
}

function receiveBatches(
  options: RaftTransportServiceOptions,
  call: grpc.ServerReadableStream<RaftBatch, RaftSendSummary>,
  callback: grpc.sendUnaryData<RaftSendSummary>,
): void {
  let received = 0;
  let done = false;
  // Tells the sender at once that the stream is accepted (it resets its reconnect backoff).
  call.sendMetadata(new grpc.Metadata());
  call.on("data", (batch: RaftBatch) => {
    if (done) return;
    if (batch.clusterId !== options.clusterId) {
      done = true;
      const message = `Cannot take Raft messages of cluster "${batch.clusterId}" from node ` +
        `"${batch.fromNode}": this node belongs to cluster "${options.clusterId}"`;
      options.log.warn(message);
      callback(toServerError(rpcFailure("failedPrecondition", message)));
      return;
    }
    received += batch.messages.length;
    const valid: Envelope[] = [];
    let invalid = 0;
    let firstReason = "";
    for (const proto of batch.messages) {
      const decoded = messageFromProto(proto);
      if (decoded.kind === "ok") valid.push(withSender(decoded.envelope, batch));
      else if (invalid++ === 0) firstReason = decoded.reason;
    }
    if (invalid > 0) {
      options.log.warn("Dropped invalid Raft messages", {
        node: batch.fromNode,
        count: invalid,
        first: firstReason,
      });
    }
    // An empty batch is a ping: the node is alive (see `Driver.receive`).
    options.onEnvelopes(valid, batch.fromNode);
  });
  call.on("end", () => {
    if (done) return;
    done = true;
    callback(null, { messagesReceived: received });
  });
  call.on("error", () => {
    done = true;
  });
}

/** Attaches who sent an envelope, so the driver can learn a peer's address from its messages. */
function withSender(envelope: Envelope, from: { fromNode: string; fromAddress: string }): Envelope {
  if (from.fromNode === "" || from.fromAddress === "") return envelope;
  return { ...envelope, sender: { nodeId: from.fromNode, address: from.fromAddress } };
}

type SnapshotCall = grpc.ServerDuplexStream<SnapshotChunk, SnapshotAck>;

/** Ends a snapshot call with `failure` (its status) or, with none, the `installed` ack. */
function endSnapshotCall(call: SnapshotCall, failure: RpcFailure | undefined, bytes: number): void {
  if (failure !== undefined) {
    call.emit("error", toServerError(failure));
    return;
  }
  call.write({ installed: true, message: "", receivedBytes: bytes });
  call.end();
}

/** Acknowledges the snapshot data stored so far. */
function acknowledge(call: SnapshotCall, bytes: number): void {
  call.write({ installed: false, message: "", receivedBytes: bytes });
}

function receiveSnapshot(
  options: RaftTransportServiceOptions,
  receiving: { count: number },
  call: SnapshotCall,
): void {
  const receivingMax = options.snapshotsReceivingMax ?? SNAPSHOTS_RECEIVING_MAX_DEFAULT;
  if (receiving.count >= receivingMax) {
    endSnapshotCall(
      call,
      rpcFailure(
        "resourceExhausted",
        `Cannot receive a snapshot: ${receivingMax} are being received, the limit`,
      ),
      0,
    );
    return;
  }
  receiveStaged(options, receiving, call);
}

/**
 * Receives a snapshot into storage as it arrives: the first chunk's envelope opens a staging on
 * the driver, each chunk is written before the next is read (the stream is paused meanwhile, so
 * memory holds one chunk), and once the last chunk's length and checksum match, the message is
 * handed to the driver with the token naming the staged data. Any failure abandons the staging.
 */
function receiveStaged(
  options: RaftTransportServiceOptions,
  receiving: { count: number },
  call: SnapshotCall,
): void {
  receiving.count++;
  let done = false;
  let first: RaftEnvelope | undefined;
  let staging: SnapshotStagingHandle | undefined;
  let bytes = 0;
  let crc = CRC32_INIT;
  let chain = Promise.resolve();
  const finish = (failure: RpcFailure | undefined, envelope?: Envelope) => {
    if (done) return;
    done = true;
    receiving.count--;
    if (failure !== undefined) {
      staging?.abort();
      options.log.warn("Refused a snapshot", { reason: failure.message });
      endSnapshotCall(call, failure, bytes);
      return;
    }
    options.onEnvelopes([envelope!], envelope!.sender?.nodeId ?? "");
    endSnapshotCall(call, undefined, bytes);
  };
  const take = async (chunk: SnapshotChunk): Promise<ChunkStep> => {
    const failed = (kind: Parameters<typeof rpcFailure>[0], message: string): ChunkStep => ({
      kind: "failed",
      failure: rpcFailure(kind, message),
    });
    const header = checkChunkHeader(options, first, chunk);
    if (header.kind === "failed") return header;
    if (first === undefined) {
      first = chunk.envelope!;
      const decoded = messageFromProto(first, { snapshotData: new Uint8Array(0) });
      if (decoded.kind === "invalid") return failed("invalidArgument", decoded.reason);
      const opened = options.stageSnapshot(decoded.envelope);
      if ("refused" in opened) return failed("failedPrecondition", opened.refused);
      staging = opened;
    }
    bytes += chunk.data.length;
    if (bytes > options.maxSnapshotBytes) {
      return failed(
        "resourceExhausted",
        `Snapshot of shard ${chunk.shardId} exceeds ${options.maxSnapshotBytes} bytes, the limit`,
      );
    }
    crc = crc32Update(crc, chunk.data);
    const problem = await staging!.write(chunk.data);
    if (problem !== undefined) return failed("dataLoss", problem);
    if (!chunk.last) return { kind: "more" };
    if (bytes !== chunk.totalBytes || crc32Finish(crc) !== chunk.checksum) {
      return failed(
        "dataLoss",
        `Snapshot of shard ${chunk.shardId} has ${bytes} bytes and checksum ${crc32Finish(crc)}: ` +
          `the sender sent ${chunk.totalBytes} and ${chunk.checksum}`,
      );
    }
    const staged = await staging!.finish();
    if (staged.kind === "invalid") return failed("dataLoss", staged.message);
    const decoded = messageFromProto(first, { snapshotData: staged.data });
    if (decoded.kind === "invalid") return failed("invalidArgument", decoded.reason);
    return { kind: "complete", envelope: withSender(decoded.envelope, chunk) };
  };
  call.on("data", (chunk: SnapshotChunk) => {
    if (done) return;
    call.pause();
    chain = chain.then(async () => {
      if (done) return;
      let step: ChunkStep;
      try {
        step = await take(chunk);
      } catch (error) {
        step = {
          kind: "failed",
          failure: rpcFailure("internal", `Staging the snapshot failed: ${error}`),
        };
      }
      if (step.kind === "more") {
        acknowledge(call, bytes);
        call.resume();
      } else if (step.kind === "failed") finish(step.failure);
      else finish(undefined, step.envelope);
    });
  });
  call.on("end", () => {
    chain = chain.then(() =>
      finish(rpcFailure("invalidArgument", "Snapshot stream ended before its last chunk"))
    );
  });
  const abandon = () => {
    if (done) return;
    done = true;
    receiving.count--;
    staging?.abort();
  };
  call.on("error", abandon);
  call.on("cancelled", abandon);
  call.on("close", () => {
    chain = chain.then(abandon);
  });
}

/** Checks a chunk's cluster, envelope placement and shard against the snapshot's first chunk. */
function checkChunkHeader(
  options: RaftTransportServiceOptions,
  first: RaftEnvelope | undefined,
  chunk: SnapshotChunk,
): { kind: "ok" } | { kind: "failed"; failure: RpcFailure } {
  const failed = (kind: Parameters<typeof rpcFailure>[0], message: string) => ({
    kind: "failed" as const,
    failure: rpcFailure(kind, message),
  });
  if (chunk.clusterId !== options.clusterId) {
    return failed(
      "failedPrecondition",
      `Cannot take a snapshot of cluster "${chunk.clusterId}" from node "${chunk.fromNode}": ` +
        `this node belongs to cluster "${options.clusterId}"`,
    );
  }
  if (first === undefined && chunk.envelope === undefined) {
    return failed("invalidArgument", "Snapshot's first chunk has no envelope");
  }
  if (first !== undefined && chunk.envelope !== undefined) {
    return failed("invalidArgument", "Snapshot chunk after the first carries an envelope");
  }
  const shard = (first ?? chunk.envelope!).shardId;
  if (chunk.shardId !== shard) {
    return failed(
      "invalidArgument",
      `Snapshot chunk is for shard ${chunk.shardId}: the snapshot is for shard ${shard}`,
    );
  }
  return { kind: "ok" };
}

type ChunkStep =
  | { readonly kind: "more" }
  | { readonly kind: "complete"; readonly envelope: Envelope }
  | { readonly kind: "failed"; readonly failure: RpcFailure };
