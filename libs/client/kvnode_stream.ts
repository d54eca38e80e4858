/**
 * {@linkcode KvNodeStream}: one long-lived `KvNode.Batch` bidi stream to one kvnode. Requests
 * made in the same event-loop turn travel together in one `BatchRequest`; answers are matched back
 * by request id. This is how gateways and the client library reach kvnodes (DESIGN.md "Gateway →
 * kvnode data path"): never a unary call per request.
 *
 * When the stream breaks, every request on it is answered at once — `unavailable` if it was never
 * sent, `unknown` if it was — and the next request opens a new stream.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import {
  type BatchRequest,
  type BatchResponse,
  ItemFailure_Kind,
  KvNodeService,
  type RequestItem,
  type ResponseItem,
} from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient } from "@tinykv/rpc";

/** Requests one stream may have waiting for answers; beyond it requests fail at once. */
export const STREAM_REQUESTS_MAX_DEFAULT = 16_384;
/** Items per `BatchRequest`. */
export const BATCH_ITEMS_MAX_DEFAULT = 256;

/** Options of a {@linkcode KvNodeStream}. */
export interface KvNodeStreamOptions {
  /** grpc-js's message bound, as the kvnode's. */
  readonly maxMessageBytes: number;
  /** Requests waiting for answers (default {@linkcode STREAM_REQUESTS_MAX_DEFAULT}). */
  readonly requestsMax?: number;
  /** Items per `BatchRequest` (default {@linkcode BATCH_ITEMS_MAX_DEFAULT}). */
  readonly batchItemsMax?: number;
  /**
   * Bytes per `BatchRequest`, estimated from the items' keys and values (default: half of
   * `maxMessageBytes`). A batch holds at least one item; the config keeps every legal item well
   * under this bound, so a batch never exceeds the gRPC message limit.
   */
  readonly batchBytesMax?: number;
}

/** Bytes an item takes besides its keys, values and client id (ids, framing), with room to spare. */
const ITEM_OVERHEAD_BYTES = 64;

/** An upper estimate of the bytes `item` takes in a `BatchRequest`. */
export function requestItemBytes(item: RequestItem): number {
  let bytes = ITEM_OVERHEAD_BYTES;
  const mutation = item.put ?? item.delete ?? item.append ?? item.compareAndSwap;
  if (mutation !== undefined) bytes += mutation.key.length + 3 * mutation.clientId.length;
  if (item.put !== undefined) bytes += item.put.value.length;
  if (item.append !== undefined) bytes += item.append.value.length;
  if (item.compareAndSwap !== undefined) {
    bytes += item.compareAndSwap.expected.length + item.compareAndSwap.value.length;
  }
  if (item.get !== undefined) bytes += item.get.key.length;
  if (item.scan !== undefined) bytes += item.scan.start.length + item.scan.end.length;
  return bytes;
}

interface Waiter {
  readonly resolve: (item: ResponseItem) => void;
  sent: boolean;
}

/** A batched data stream to one kvnode. */
export class KvNodeStream {
  readonly address: string;
  readonly #options: KvNodeStreamOptions;
  #client: GrpcClient<typeof KvNodeService> | undefined;
  #call: grpc.ClientDuplexStream<BatchRequest, BatchResponse> | undefined;
  readonly #waiting = new Map<number, Waiter>();
  #queued: RequestItem[] = [];
  #flushScheduled = false;
  #nextId = 1;
  #closed = false;

  constructor(address: string, options: KvNodeStreamOptions) {
    this.address = address;
    this.#options = options;
  }

  /** Requests waiting for answers. */
  get pending(): number {
    return this.#waiting.size;
  }

  /**
   * Sends one request (its `id` is assigned here) and resolves with its answer. Never rejects: a
   * broken stream answers with an `ItemFailure`.
   */
  request(item: Omit<RequestItem, "id">): Promise<ResponseItem> {
    const id = this.#nextId++;
    if (this.#closed) {
      return Promise.resolve(failure(id, ItemFailure_Kind.UNAVAILABLE, "Stream closed"));
    }
    const max = this.#options.requestsMax ?? STREAM_REQUESTS_MAX_DEFAULT;
    if (this.#waiting.size >= max) {
      return Promise.resolve(
        failure(id, ItemFailure_Kind.RESOURCE_EXHAUSTED, `${max} requests wait on ${this.address}`),
      );
    }
    const { promise, resolve } = Promise.withResolvers<ResponseItem>();
    this.#waiting.set(id, { resolve, sent: false });
    this.#queued.push({ ...item, id });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
    return promise;
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#queued.length === 0 || this.#closed) return;
    const call = this.#stream();
    const itemsMax = this.#options.batchItemsMax ?? BATCH_ITEMS_MAX_DEFAULT;
    const bytesMax = this.#options.batchBytesMax ?? Math.floor(this.#options.maxMessageBytes / 2);
    const queued = this.#queued;
    this.#queued = [];
    let items: RequestItem[] = [];
    let bytes = 0;
    const write = () => {
      for (const item of items) {
        const waiter = this.#waiting.get(item.id);
        if (waiter !== undefined) waiter.sent = true;
      }
      call.write({ items });
      items = [];
      bytes = 0;
    };
    for (const item of queued) {
      const size = requestItemBytes(item);
      if (items.length > 0 && (items.length >= itemsMax || bytes + size > bytesMax)) write();
      items.push(item);
      bytes += size;
    }
    if (items.length > 0) write();
  }

  #stream(): grpc.ClientDuplexStream<BatchRequest, BatchResponse> {
    if (this.#call !== undefined) return this.#call;
    this.#client ??= createGrpcClient(KvNodeService, this.address, {
      maxMessageBytes: this.#options.maxMessageBytes,
    });
    const call = this.#client.Batch(new grpc.Metadata(), {});
    this.#call = call;
    call.on("data", (response: BatchResponse) => {
      for (const item of response.items) {
        const waiter = this.#waiting.get(item.id);
        if (waiter === undefined) continue;
        this.#waiting.delete(item.id);
        waiter.resolve(item);
      }
    });
    const broken = (why: string) => {
      if (this.#call !== call) return;
      this.#call = undefined;
      this.#failAll(why);
    };
    call.on(
      "error",
      (error: Error) => broken(`Stream to ${this.address} failed: ${error.message}`),
    );
    call.on("end", () => broken(`Stream to ${this.address} ended`));
    return call;
  }

  #failAll(why: string): void {
    for (const [id, waiter] of this.#waiting) {
      // A request that was written may have been applied: its outcome is unknown.
      const kind = waiter.sent ? ItemFailure_Kind.UNKNOWN : ItemFailure_Kind.UNAVAILABLE;
      waiter.resolve(failure(id, kind, why));
    }
    this.#waiting.clear();
  }

  /** Ends the stream and closes the channel; waiting requests are answered as failed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const call = this.#call;
    this.#call = undefined;
    this.#failAll(`Stream to ${this.address} was closed`);
    call?.end();
    this.#client?.close();
  }
}

function failure(id: number, kind: ItemFailure_Kind, message: string): ResponseItem {
  return { id, failure: { kind, message, leaderNode: "", leaderAddress: "", confEpoch: 0 } };
}
