/**
 * The receiving side of the Raft transport ({@linkcode raftTransportService}): decodes and checks
 * every envelope, drops invalid ones, and hands each batch's valid envelopes to the driver in one
 * call; a snapshot is staged aside as it arrives and handed over only once complete and its
 * checksum matches (see {@linkcode ./transport.ts} for the whole).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { CRC32_INIT, crc32Finish, crc32Update } from "@tinykv/raft";
import {
  type RaftBatch,
  type RaftEnvelope,
  type RaftSendSummary,
  RaftTransportService,
  type SnapshotAck,
  type SnapshotChunk,
} from "@tinykv/proto/tinykv/v1";
import {
  bindService,
  callerOf,
  type RpcFailure,
  rpcFailure,
  type ServiceBinding,
  toServerError,
} from "@tinykv/rpc";
import type { Envelope, SnapshotStagingHandle } from "./driver.ts";
import { messageFromProto } from "./raft_codec.ts";
import { SNAPSHOTS_RECEIVING_MAX_DEFAULT, type TransportLog } from "./transport_shared.ts";

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
  const receiving = { count: 0, bytes: 0 };
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
    const impostor = impersonation(call, batch.fromNode);
    if (impostor !== undefined) {
      done = true;
      options.log.warn(impostor);
      callback(toServerError(rpcFailure("permissionDenied", impostor)));
      return;
    }
    received += batch.messages.length;
    const valid: Envelope[] = [];
    let invalid = 0;
    let firstReason = "";
    for (const proto of batch.messages) {
      const decoded = messageFromProto(proto);
      if (decoded.kind === "ok") valid.push(withSender(decoded.envelope, batch, call));
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
/**
 * The envelope with the node it came from. With credentials on, that is always the authenticated
 * node (its address may be empty: nothing to learn then), so the driver can check every message;
 * without, only a sender naming both its node and address is taken.
 */
function withSender(
  envelope: Envelope,
  from: { fromNode: string; fromAddress: string },
  call: object,
): Envelope {
  const caller = callerOf(call);
  if (caller !== undefined) {
    return { ...envelope, sender: { nodeId: caller.sub, address: from.fromAddress } };
  }
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
  receiving: { count: number; bytes: number },
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
  receiving: { count: number; bytes: number },
  call: SnapshotCall,
): void {
  receiving.count++;
  let done = false;
  let first: RaftEnvelope | undefined;
  let staging: SnapshotStagingHandle | undefined;
  let bytes = 0;
  let declared = 0;
  let reserved = 0;
  const release = () => {
    receiving.bytes -= reserved;
    reserved = 0;
  };
  let crc = CRC32_INIT;
  let chain = Promise.resolve();
  const finish = (failure: RpcFailure | undefined, envelope?: Envelope) => {
    if (done) return;
    done = true;
    receiving.count--;
    release();
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
    const header = checkChunkHeader(options, first, chunk, impersonation(call, chunk.fromNode));
    if (header.kind === "failed") return header;
    if (first === undefined) {
      // The first chunk declares the size (0 from a sender that does not: then only the
      // maximum bounds it); a snapshot above the maximum is refused before anything is staged.
      declared = chunk.totalBytes;
      if (declared > options.maxSnapshotBytes) {
        return failed(
          "resourceExhausted",
          `Snapshot of shard ${chunk.shardId} declares ${declared} bytes: the maximum is ` +
            `${options.maxSnapshotBytes} (storage.snapshot_bytes_max)`,
        );
      }
      // All snapshots being received at once stay within the maximum too (they are staged in
      // the node's LMDB map): an undeclared one counts as the maximum.
      const reserve = declared > 0 ? declared : options.maxSnapshotBytes;
      if (receiving.bytes + reserve > options.maxSnapshotBytes) {
        return failed(
          "resourceExhausted",
          `Snapshot of shard ${chunk.shardId} needs ${reserve} bytes: ${receiving.bytes} of the ` +
            `${options.maxSnapshotBytes} (storage.snapshot_bytes_max) are being received`,
        );
      }
      receiving.bytes += reserve;
      reserved = reserve;
      first = chunk.envelope!;
      const decoded = messageFromProto(first, { snapshotData: new Uint8Array(0) });
      if (decoded.kind === "invalid") return failed("invalidArgument", decoded.reason);
      const opened = options.stageSnapshot(withSender(decoded.envelope, chunk, call));
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
    if (declared > 0 && bytes > declared) {
      return failed(
        "invalidArgument",
        `Snapshot of shard ${chunk.shardId} sent ${bytes} bytes: it declared ${declared}`,
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
    return { kind: "complete", envelope: withSender(decoded.envelope, chunk, call) };
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
    release();
    staging?.abort();
  };
  call.on("error", abandon);
  call.on("cancelled", abandon);
  call.on("close", () => {
    chain = chain.then(abandon);
  });
}

/**
 * Why a stream's sender is not the node it says it is: with credentials on, the node named in a
 * batch or chunk must be the one whose token opened the stream (a kvnode can speak only for
 * itself: its votes, its data, where it lives). Undefined when it is, or when no credentials are
 * checked.
 */
function impersonation(call: object, claimed: string): string | undefined {
  const caller = callerOf(call);
  if (caller === undefined || caller.sub === claimed) return undefined;
  return `Node "${caller.sub}" may not send Raft messages as node "${claimed}"`;
}

/** Checks a chunk's cluster, envelope placement and shard against the snapshot's first chunk. */
function checkChunkHeader(
  options: RaftTransportServiceOptions,
  first: RaftEnvelope | undefined,
  chunk: SnapshotChunk,
  impostor: string | undefined,
): { kind: "ok" } | { kind: "failed"; failure: RpcFailure } {
  const failed = (kind: Parameters<typeof rpcFailure>[0], message: string) => ({
    kind: "failed" as const,
    failure: rpcFailure(kind, message),
  });
  if (impostor !== undefined) return failed("permissionDenied", impostor);
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
