/**
 * {@linkcode PeerStream}: the `Send` stream of the Raft transport to one destination node and its
 * bounded queue (see {@linkcode ./transport.ts} for the whole).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { type RaftBatch, type RaftEnvelope, RaftTransportService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient } from "@tinykv/rpc";
import { Backoff, type TimeoutHandle } from "@tinykv/timer";
import type { Envelope } from "./driver.ts";
import { envelopeBytesBound, messageToProto } from "./raft_codec.ts";
import { assert, unreachable } from "./_assert.ts";
import {
  CLOSE_GRACE_MS,
  describe,
  type Shared,
  STREAM_BATCHES_AHEAD_MAX,
  type TransportClient,
  watchConnection,
} from "./transport_shared.ts";

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
export class PeerStream {
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
        ...options.security,
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
      stats.bytesSent += queued.bytes;
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
