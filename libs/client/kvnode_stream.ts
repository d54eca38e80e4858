/**
 * {@linkcode KvNodeStream}: one long-lived `KvNode.Batch` bidi stream to one kvnode. Requests
 * made in the same event-loop turn travel together in one `BatchRequest`; answers are matched back
 * by request id. This is how gateways and the client library reach kvnodes (docs/design.md "Gateway →
 * kvnode data path"): never a unary call per request.
 *
 * {@linkcode KvNodeStream.send} resolves with a typed {@linkcode StreamOutcome}. When the stream
 * breaks (it fails, ends, or is closed), every request waiting on it resolves at once as
 * `{ kind: "streamBroken", sent }`: `sent` is false for a request that never left (definitely not
 * applied) and true for one that did (outcome unknown). The next request opens a new call on the
 * same channel. Callers test the kind, never the message.
 *
 * The stream reads no time: it flushes at the end of the turn (a microtask), and the kvnode bounds
 * each request by the item's `timeoutMs`.
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
import { type ClientSecurity, createGrpcClient } from "@tinykv/rpc";

/** Requests one stream may have waiting for answers; beyond it requests fail at once. */
export const STREAM_REQUESTS_MAX_DEFAULT = 16_384;
/** Items per `BatchRequest`. */
export const BATCH_ITEMS_MAX_DEFAULT = 256;

/** One open `KvNode.Batch` call: what the stream writes to it. */
export interface BatchCall {
  /** Sends one batch of requests. */
  write(request: BatchRequest): void;
  /** Half-closes the call: no more writes. */
  end(): void;
}

/**
 * What a {@linkcode BatchChannel} reports about one call it opened. Never called from inside
 * {@linkcode BatchChannel.open}; after `onBroken`, nothing more is reported for that call.
 */
export interface BatchCallEvents {
  /** A batch of answers arrived. */
  onResponse(response: BatchResponse): void;
  /** The call failed or the kvnode ended it: `why` says which, e.g. `ended`. */
  onBroken(why: string): void;
}

/**
 * Where a {@linkcode KvNodeStream} opens its calls: a gRPC channel to the kvnode
 * ({@linkcode grpcBatchChannel}), or an in-memory fake in tests (`@tinykv/client/testing`).
 */
export interface BatchChannel {
  /** Opens a new `Batch` call whose answers and end go to `events`. */
  open(events: BatchCallEvents): BatchCall;
  /** Closes the channel; calls still open on it break. */
  close(): void;
}

/** Opens a gRPC channel to the kvnode at `address` (connected lazily, on the first call). */
export function grpcBatchChannel(
  address: string,
  options: { readonly maxMessageBytes: number; readonly security?: ClientSecurity },
): BatchChannel {
  const client = createGrpcClient(KvNodeService, address, {
    maxMessageBytes: options.maxMessageBytes,
    ...options.security,
  });
  return {
    open(events: BatchCallEvents): BatchCall {
      const call = client.Batch(new grpc.Metadata(), {});
      call.on("data", (response: BatchResponse) => events.onResponse(response));
      call.on("error", (error: Error) => events.onBroken(`failed: ${error.message}`));
      call.on("end", () => events.onBroken("ended"));
      return call;
    },
    close: () => client.close(),
  };
}

/** Options of a {@linkcode KvNodeStream}. */
export interface KvNodeStreamOptions {
  /** grpc-js's message bound, as the kvnode's. */
  readonly maxMessageBytes: number;
  /** TLS and the caller's token (none: plaintext, no credential). */
  readonly security?: ClientSecurity;
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
  /**
   * Opens the channel to the kvnode, once, on the first request (default: a gRPC channel,
   * {@linkcode grpcBatchChannel}).
   */
  readonly connect?: (
    address: string,
    options: { maxMessageBytes: number; security?: ClientSecurity },
  ) => BatchChannel;
}

/**
 * What became of one request sent on a {@linkcode KvNodeStream}. A kvnode's refusal (not leader,
 * invalid, …) is an `answered` item with a `failure`; the other kinds never reached an answer.
 */
export type StreamOutcome =
  /** The kvnode answered (its answer may carry an `ItemFailure`). */
  | { readonly kind: "answered"; readonly item: ResponseItem }
  /**
   * The stream failed, ended or was closed before the answer came. `sent`: whether the request
   * had been written (then it may have been applied; if not, it definitely was not).
   */
  | { readonly kind: "streamBroken"; readonly sent: boolean; readonly message: string }
  /** `requestsMax` requests wait already; this one was not sent. */
  | { readonly kind: "overloaded"; readonly message: string };

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
  if (item.txn !== undefined) {
    bytes += 3 * item.txn.clientId.length;
    for (const entry of [...item.txn.compares, ...item.txn.success, ...item.txn.failure]) {
      bytes += entry.key.length + entry.value.length + 16;
    }
  }
  return bytes;
}

interface Waiter {
  readonly resolve: (outcome: StreamOutcome) => void;
  sent: boolean;
}

/** A batched data stream to one kvnode. */
export class KvNodeStream {
  readonly address: string;
  readonly #options: KvNodeStreamOptions;
  #channel: BatchChannel | undefined;
  #call: BatchCall | undefined;
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

  /** Whether {@linkcode close} was called: every later request is `streamBroken`, unsent. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one request (its `id` is assigned here) and resolves with what became of it. Never
   * rejects.
   */
  send(item: Omit<RequestItem, "id">): Promise<StreamOutcome> {
    return this.#enqueue(item, this.#nextId++);
  }

  /**
   * As {@linkcode send}, with the outcome folded into a `ResponseItem` for callers that only read
   * `failure`: a broken stream answers `UNKNOWN` if the request was sent, else `UNAVAILABLE`; an
   * overloaded stream answers `RESOURCE_EXHAUSTED`.
   */
  async request(item: Omit<RequestItem, "id">): Promise<ResponseItem> {
    const id = this.#nextId++;
    return responseItem(id, await this.#enqueue(item, id));
  }

  #enqueue(item: Omit<RequestItem, "id">, id: number): Promise<StreamOutcome> {
    if (this.#closed) {
      return Promise.resolve({
        kind: "streamBroken",
        sent: false,
        message: `Cannot send to kvnode "${this.address}": the batch stream is closed`,
      });
    }
    const max = this.#options.requestsMax ?? STREAM_REQUESTS_MAX_DEFAULT;
    if (this.#waiting.size >= max) {
      return Promise.resolve({
        kind: "overloaded",
        message: `Cannot send to kvnode "${this.address}": ${max} requests wait for answers ` +
          "(requestsMax)",
      });
    }
    const { promise, resolve } = Promise.withResolvers<StreamOutcome>();
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
    const call = this.#open();
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

  /** The open call, or a new one on the channel (opened on first use). */
  #open(): BatchCall {
    if (this.#call !== undefined) return this.#call;
    const maxMessageBytes = this.#options.maxMessageBytes;
    this.#channel ??= (this.#options.connect ?? grpcBatchChannel)(this.address, {
      maxMessageBytes,
      security: this.#options.security,
    });
    const call: BatchCall = this.#channel.open({
      onResponse: (response) => this.#answer(response),
      onBroken: (why) => {
        // Only the current call's end matters: an older one broke (and failed its requests) before.
        if (this.#call !== call) return;
        this.#call = undefined;
        this.#failAll(`Batch stream to kvnode "${this.address}" ${why}`);
      },
    });
    this.#call = call;
    return call;
  }

  #answer(response: BatchResponse): void {
    for (const item of response.items) {
      const waiter = this.#waiting.get(item.id);
      if (waiter === undefined) continue;
      this.#waiting.delete(item.id);
      waiter.resolve({ kind: "answered", item });
    }
  }

  #failAll(message: string): void {
    // Requests queued for the next flush are answered here as never sent, so they must never be:
    // a caller told "not applied" may give up, and a late copy would apply anyway.
    this.#queued = [];
    for (const waiter of this.#waiting.values()) {
      waiter.resolve({ kind: "streamBroken", sent: waiter.sent, message });
    }
    this.#waiting.clear();
  }

  /** Ends the stream and closes the channel; waiting requests resolve as `streamBroken`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const call = this.#call;
    this.#call = undefined;
    this.#failAll(`Batch stream to kvnode "${this.address}" was closed`);
    call?.end();
    this.#channel?.close();
  }
}

/** Folds `outcome` into a `ResponseItem` with id `id` (see {@linkcode KvNodeStream.request}). */
function responseItem(id: number, outcome: StreamOutcome): ResponseItem {
  switch (outcome.kind) {
    case "answered":
      return outcome.item;
    case "streamBroken": {
      // A request that was written may have been applied: its outcome is unknown.
      const kind = outcome.sent ? ItemFailure_Kind.UNKNOWN : ItemFailure_Kind.UNAVAILABLE;
      return failureItem(id, kind, outcome.message);
    }
    case "overloaded":
      return failureItem(id, ItemFailure_Kind.RESOURCE_EXHAUSTED, outcome.message);
    default: {
      const unreachable: never = outcome;
      return unreachable;
    }
  }
}

function failureItem(id: number, kind: ItemFailure_Kind, message: string): ResponseItem {
  return { id, failure: { kind, message, leaderNode: "", leaderAddress: "", confEpoch: 0 } };
}
