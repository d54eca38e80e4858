/**
 * `NodeAdmin.ExportShard`: a consistent copy of one shard's data, for `tinykv backup`.
 *
 * The replica first passes a linearizable read barrier: a one-key scan through the driver, which
 * the shard's leader serves only once it confirmed it leads (its lease or a ReadIndex round) and
 * has applied up to its commit index of then.
 * So the copy holds every write acknowledged before the call (a replica that is not the leader
 * answers UNAVAILABLE naming the leader). Then, between two turns of the driver's loop, it opens a
 * read view of the replica's data (an LMDB read transaction) together with the replica's applied
 * index, term, conf epoch and range: the view is exactly the state at that applied index, whatever
 * the loop does meanwhile. The pairs are read from the view outside the loop and streamed in
 * chunks of about {@linkcode EXPORT_CHUNK_BYTES}, waiting whenever the caller's stream is full,
 * with a SHA-256 over their framing (`@tinykv/shard` `framePair`) in the trailer.
 *
 * At most {@linkcode EXPORTS_MAX} exports run at once on a node: each holds a read transaction
 * open, and LMDB cannot reuse pages freed after a reader started until it ends.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import type { ExportShardChunk, ExportShardRequest, KeyValue } from "@tinykv/proto/tinykv/v1";
import { type RpcFailure, rpcFailure, type RpcFailureKind, toServerError } from "@tinykv/rpc";
import { FRAME_LENGTH_BYTES, shardId } from "@tinykv/shard";
import type { KvDriver } from "./kv_app.ts";
import type { Failure } from "./application.ts";

/**
 * Bytes per chunk of an export, framing of each pair included ({@linkcode PAIR_OVERHEAD_BYTES}),
 * and never more than half the server's largest message: a chunk ends before the pair that would
 * pass it (a pair larger than that goes alone; the config keeps it within one message).
 */
export const EXPORT_CHUNK_BYTES = 1024 * 1024;
/**
 * Pairs per chunk: each chunk is read from the view synchronously, on the event loop the driver
 * shares, so it stays short (a quarter of a slice of the Status data hash, `HASH_SLICE_PAIRS`).
 */
export const EXPORT_CHUNK_PAIRS = 1024;
/** Protobuf bytes around one pair in a chunk, at most (tags and length varints). */
const PAIR_OVERHEAD_BYTES = 16;
/** How long one message may wait for the caller to take it before the export gives up. */
export const EXPORT_STALL_MS_MAX = 60_000;
/** Exports running at once on one node. */
export const EXPORTS_MAX = 2;
/** The barrier's wait when the request gives none. */
export const EXPORT_BARRIER_TIMEOUT_MS_DEFAULT = 5000;
/** The longest barrier wait a request may ask for. */
export const EXPORT_BARRIER_TIMEOUT_MS_MAX = 60_000;

/** Options of {@linkcode exportShardHandler}. */
export interface ExportShardOptions {
  readonly driver: KvDriver;
  readonly nodeId: string;
  readonly clusterId: string;
  /** The driver's wall clock, in Unix milliseconds. */
  readonly now: () => number;
  /** The server's largest message (`rpc_server.max_message_bytes`). */
  readonly messageBytesMax: number;
}

type ExportCall = grpc.ServerWritableStream<ExportShardRequest, ExportShardChunk>;

/**
 * The status of a failed barrier: a replica that does not lead, or no answer in time (a read: it
 * changed nothing), sends the caller elsewhere (UNAVAILABLE, retried).
 */
const BARRIER_FAILURE: Record<Failure["kind"], RpcFailureKind> = {
  notLeader: "unavailable",
  staleEpoch: "unavailable",
  invalid: "invalidArgument",
  unavailable: "unavailable",
  unknown: "unavailable",
  sessionExpired: "unavailable",
  resourceExhausted: "resourceExhausted",
  dataLoss: "dataLoss",
  internal: "internal",
};

/** The handler of `NodeAdmin.ExportShard`. */
export function exportShardHandler(options: ExportShardOptions): (call: ExportCall) => void {
  const running = { count: 0 };
  return (call) => {
    if (running.count >= EXPORTS_MAX) {
      fail(
        call,
        rpcFailure(
          "resourceExhausted",
          `Node "${options.nodeId}" is already exporting ${EXPORTS_MAX} shards: retry later`,
        ),
      );
      return;
    }
    running.count++;
    exportShard(options, call).then(
      (failure) => {
        if (failure !== undefined) fail(call, failure);
      },
      (error) => fail(call, rpcFailure("internal", `Exporting failed: ${error}`)),
    ).finally(() => running.count--);
  };
}

function fail(call: ExportCall, failure: RpcFailure): void {
  if (call.cancelled || call.destroyed) return;
  call.emit("error", toServerError(failure));
}

/** Streams the export; returns the failure to end the call with, if any. */
async function exportShard(
  options: ExportShardOptions,
  call: ExportCall,
): Promise<RpcFailure | undefined> {
  const request = call.request;
  if (request.clusterId !== options.clusterId) {
    return rpcFailure(
      "failedPrecondition",
      `Node "${options.nodeId}" belongs to cluster "${options.clusterId}", not "${request.clusterId}"`,
    );
  }
  const shard = shardId(request.shardId);
  const timeoutMs = request.timeoutMs === 0
    ? EXPORT_BARRIER_TIMEOUT_MS_DEFAULT
    : Math.min(request.timeoutMs, EXPORT_BARRIER_TIMEOUT_MS_MAX);
  // The incarnation of the replica the barrier runs on: a view of another (the replica removed and
  // created again meanwhile, e.g. a new learner with none of the data) must not be exported.
  const before = await options.driver.inspect((all) =>
    all.find((r) => r.shardId === shard)?.peerId
  );
  const barrier = await options.driver.submit({
    shardId: shard,
    confEpoch: 0,
    op: { kind: "scan", request: { start: new Uint8Array(), end: new Uint8Array(), limit: 1 } },
    deadlineMs: options.now() + timeoutMs,
  });
  if (barrier.kind !== "ok") {
    const leader = barrier.kind === "notLeader" && barrier.leaderAddress !== ""
      ? `: the leader is at ${barrier.leaderAddress}`
      : "";
    return rpcFailure(
      BARRIER_FAILURE[barrier.kind],
      `Node "${options.nodeId}" cannot export shard ${shard}: ${barrier.message}${leader}`,
    );
  }
  if (call.cancelled) return undefined;
  const taken = await options.driver.inspect((all) => {
    const replica = all.find((r) => r.shardId === shard);
    if (replica === undefined || replica.peerId !== before) return undefined;
    const { applied, confState } = replica.log.appliedState;
    return {
      header: {
        shardId: shard,
        rangeLo: replica.record.range.lo,
        rangeHi: replica.record.range.hi,
        appliedIndex: applied,
        term: replica.node.status().term,
        confEpoch: confState.epoch,
        nodeId: options.nodeId,
      },
      view: replica.openDataView(),
    };
  });
  if (taken === undefined) {
    return rpcFailure(
      "unavailable",
      `Node "${options.nodeId}" no longer holds shard ${shard} (it moved): ask its new leader`,
    );
  }
  try {
    if (!await write(call, { header: taken.header, pairs: [] })) return undefined;
    const hash = createHash("sha256");
    let keys = 0;
    let bytes = 0;
    const budget = Math.min(EXPORT_CHUNK_BYTES, Math.floor(options.messageBytesMax / 2));
    let chunk: KeyValue[] = [];
    let chunkBytes = 0;
    for (const { key, value } of taken.view.spaces.data.scan(new Uint8Array(), undefined)) {
      const size = key.length + value.length + PAIR_OVERHEAD_BYTES;
      if (chunk.length > 0 && (chunkBytes + size > budget || chunk.length >= EXPORT_CHUNK_PAIRS)) {
        if (!await write(call, { pairs: chunk })) return undefined;
        chunk = [];
        chunkBytes = 0;
      }
      // The view's buffers may be reused by the next read: keep copies.
      const pair = { key: key.slice(), value: value.slice() };
      hashFramed(hash, pair.key, pair.value);
      keys++;
      bytes += key.length + value.length;
      chunk.push(pair);
      chunkBytes += size;
    }
    if (chunk.length > 0 && !await write(call, { pairs: chunk })) return undefined;
    const trailer = { keys, bytes, sha256: new Uint8Array(hash.digest()) };
    if (!await write(call, { pairs: [], trailer })) return undefined;
    call.end();
    return undefined;
  } finally {
    taken.view.close();
  }
}

/** Feeds one pair's framing (`@tinykv/shard` `framePair`) to `hash` without copying it. */
function hashFramed(hash: ReturnType<typeof createHash>, key: Uint8Array, value: Uint8Array): void {
  const length = new Uint8Array(FRAME_LENGTH_BYTES);
  const view = new DataView(length.buffer);
  view.setUint32(0, key.length);
  hash.update(length);
  hash.update(key);
  view.setUint32(0, value.length);
  hash.update(length);
  hash.update(value);
}

/**
 * Writes one message and waits until grpc-js has handed it to HTTP/2 (so at most one message is
 * queued in the kvnode per export, whatever its size). False once the caller has gone, or has not
 * taken a message for {@linkcode EXPORT_STALL_MS_MAX} (the export stops there).
 */
async function write(call: ExportCall, chunk: ExportShardChunk): Promise<boolean> {
  if (call.cancelled || call.destroyed) return false;
  return await new Promise<boolean>((resolve) => {
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(stalled);
      call.off("cancelled", onGone);
      call.off("close", onGone);
      resolve(ok && !call.cancelled);
    };
    const onGone = () => done(false);
    const stalled = setTimeout(() => {
      done(false);
      // The slot and the read view are released by the caller of `write` either way.
      fail(
        call,
        rpcFailure("deadlineExceeded", `The caller took no message for ${EXPORT_STALL_MS_MAX} ms`),
      );
    }, EXPORT_STALL_MS_MAX);
    call.on("cancelled", onGone);
    call.on("close", onGone);
    call.write(chunk, (error: unknown) => done(error === undefined || error === null));
  });
}
