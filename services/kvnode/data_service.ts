/**
 * The kvnode's data path: the `KvNode.Batch` bidi stream (docs/design.md "Gateway → kvnode data
 * path"). Each incoming `BatchRequest` carries many items; each item is checked, handed to the
 * driver, and answered on its own as soon as it is done. Answers that finish in the same event-loop
 * turn (a driver turn answers many at once) leave together in one `BatchResponse`, written from a
 * `setImmediate` callback: it runs once the current macrotask and its microtasks are done, without
 * the ~2 ms a nested zero-delay `setTimeout` waits in Deno. A bad item gets its own failure; it
 * never ends the stream.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import {
  type BatchRequest,
  type BatchResponse,
  type Command,
  KvNodeService,
  type RequestItem,
  type ResponseItem,
} from "@tinykv/proto/tinykv/v1";
import { bindService, type ServiceBinding } from "@tinykv/rpc";
import { checkRequest, checkTraceId, shardId } from "@tinykv/shard";
import type { WallClock } from "./driver.ts";
import type { DataOp, KvDriver } from "./kv_app.ts";
import { type ItemOutcome, toResponseItem } from "./outcome.ts";
import type { WatchHub } from "./watch_hub.ts";
import { watchHandler, type WatchServiceOptions, WatchSweeper } from "./watch_service.ts";

/** Options of {@linkcode kvNodeService}. */
export interface DataServiceOptions {
  readonly driver: KvDriver;
  readonly clock: WallClock;
  /** The wait for an item that names none. */
  readonly requestTimeoutMsDefault: number;
  /** The longest wait an item may ask for. */
  readonly requestTimeoutMsMax: number;
  /** The largest value accepted. */
  readonly valueBytesMax: number;
  /** Items of one stream being served at once; beyond it items get RESOURCE_EXHAUSTED. */
  readonly streamItemsMax: number;
  /** Bytes of answers per `BatchResponse` (kept well below the gRPC message limit). */
  readonly responseBytesMax: number;
}

/** The `KvNode` service of a kvnode: the data stream, and watches on `watches`. */
export function kvNodeService(
  options: DataServiceOptions & {
    readonly watches: WatchHub;
    readonly log?: WatchServiceOptions["log"];
  },
): ServiceBinding {
  const watchOptions = { driver: options.driver, hub: options.watches, log: options.log };
  const sweeper = new WatchSweeper(watchOptions);
  return bindService(KvNodeService, {
    Batch: (call) => serveStream(call, options),
    Watch: watchHandler(watchOptions, sweeper),
  });
}

type BatchCall = grpc.ServerDuplexStream<BatchRequest, BatchResponse>;

function serveStream(call: BatchCall, options: DataServiceOptions): void {
  let inFlight = 0;
  let ended = false;
  let closed = false;
  let outgoing: ResponseItem[] = [];
  let flushScheduled = false;

  const flush = () => {
    flushScheduled = false;
    if (closed) return;
    for (const batch of splitBySize(outgoing, options.responseBytesMax)) call.write(batch);
    outgoing = [];
    if (ended && inFlight === 0) {
      closed = true;
      call.end();
    }
  };
  const answer = (item: ResponseItem) => {
    outgoing.push(item);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  };

  call.on("data", (request: BatchRequest) => {
    for (const item of request.items) {
      if (inFlight >= options.streamItemsMax) {
        answer(toResponseItem(item.id, {
          kind: "resourceExhausted",
          message:
            `Stream has ${inFlight} requests in flight: the limit is ${options.streamItemsMax}`,
        }));
        continue;
      }
      inFlight++;
      serveItem(item, options).then((outcome) => {
        inFlight--;
        answer(toResponseItem(item.id, outcome));
      });
    }
  });
  call.on("end", () => {
    ended = true;
    if (inFlight === 0 && !flushScheduled) flush();
  });
  call.on("error", () => {
    closed = true;
  });
  call.on("cancelled", () => {
    closed = true;
  });
}

/** Checks one item and serves it through the driver. Never rejects. */
export async function serveItem(
  item: RequestItem,
  options: DataServiceOptions,
): Promise<ItemOutcome> {
  const decoded = decodeItem(item, options);
  if (decoded.kind === "invalid") return decoded;
  const timeoutMs = item.timeoutMs === 0
    ? options.requestTimeoutMsDefault
    : Math.min(item.timeoutMs, options.requestTimeoutMsMax);
  try {
    return await options.driver.submit({
      shardId: shardId(item.shardId),
      confEpoch: item.confEpoch,
      op: decoded.op,
      deadlineMs: options.clock.now() + timeoutMs,
      traceId: item.traceId === "" ? undefined : item.traceId,
    });
  } catch (error) {
    return { kind: "internal", message: `Request ${item.id} failed: ${error}` };
  }
}

type Decoded = { kind: "ok"; op: DataOp } | { kind: "invalid"; message: string };

/** Checks `item` against every request limit and turns it into a driver operation. */
function decodeItem(item: RequestItem, options: DataServiceOptions): Decoded {
  const violation = checkRequest(item, { valueBytesMax: options.valueBytesMax });
  if (violation !== undefined) return { kind: "invalid", message: violation.message };
  const badTrace = item.traceId === "" ? undefined : checkTraceId(item.traceId);
  if (badTrace !== undefined) return { kind: "invalid", message: badTrace };
  if (item.scan !== undefined) return { kind: "ok", op: { kind: "scan", request: item.scan } };
  if (item.get !== undefined) {
    return {
      kind: "ok",
      op: { kind: "get", key: item.get.key, serializable: item.get.serializable },
    };
  }
  // The leader stamps the time, the value limit and the session TTL when it proposes.
  const command: Command = {
    stampMs: 0,
    valueBytesMax: 0,
    sessionTtlMs: 0,
    put: item.put,
    delete: item.delete,
    append: item.append,
    compareAndSwap: item.compareAndSwap,
    txn: item.txn,
  };
  return { kind: "ok", op: { kind: "mutation", command } };
}

/** Splits answers into responses of about `bytesMax` bytes each (at least one item each). */
function splitBySize(items: ResponseItem[], bytesMax: number): BatchResponse[] {
  const batches: BatchResponse[] = [];
  let current: ResponseItem[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = approximateBytes(item);
    if (current.length > 0 && bytes + size > bytesMax) {
      batches.push({ items: current });
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) batches.push({ items: current });
  return batches;
}

function approximateBytes(item: ResponseItem): number {
  let bytes = 32 + (item.failure?.message.length ?? 0);
  if (item.get !== undefined) bytes += item.get.value.length;
  if (item.compareAndSwap !== undefined) bytes += item.compareAndSwap.current.length;
  for (const kv of item.scan?.kvs ?? []) bytes += kv.key.length + kv.value.length + 8;
  if (item.scan !== undefined) bytes += item.scan.next.length;
  for (const result of item.txn?.results ?? []) bytes += result.value.length + 8;
  return bytes;
}
