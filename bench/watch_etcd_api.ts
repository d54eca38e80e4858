/**
 * etcd's `etcdserverpb.Watch` `Watch` (a bidirectional stream), as a grpc-js client definition for
 * `deno task bench:watch`: create a watch of a key range, then take its events. It serves both a
 * real etcd and the etcd API of a TinyKV gateway.
 *
 * The messages are written here from etcd's documented API (`api/etcdserverpb/rpc.proto`,
 * `api/mvccpb/kv.proto`; same names and field numbers, unused fields left out, which a protobuf
 * decoder skips) and parsed with protobufjs at load time, as bench/compare_etcd_api.ts does for
 * `Put` and `Range`. The generated `@tinykv/proto/etcdserverpb` is not used for the responses: it
 * rejects 64-bit integers above 2^53, and a real etcd's `cluster_id` and `member_id` are random
 * 64-bit numbers. Leaving the header out of {@linkcode EtcdWatchResponse} skips them unread.
 *
 * @example
 * ```ts ignore
 * import * as grpc from "@grpc/grpc-js";
 * import { createGrpcClient } from "@tinykv/rpc";
 * import { EtcdWatchService } from "./watch_etcd_api.ts";
 *
 * const client = createGrpcClient(EtcdWatchService, "127.0.0.1:2379", { maxMessageBytes: 8 << 20 });
 * const call = client.Watch(new grpc.Metadata(), {});
 * call.on("data", (response) => console.log(response.created, response.events.length));
 * const key = new TextEncoder().encode("a/");
 * call.write({ createRequest: { key, rangeEnd: new TextEncoder().encode("a0") } });
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import protobuf from "protobufjs";

const WATCH_PROTO = `
syntax = "proto3";
package etcdserverpb;

message KeyValue {
  bytes key = 1;
  bytes value = 5;
}

message Event {
  enum EventType {
    PUT = 0;
    DELETE = 1;
  }
  EventType type = 1;
  KeyValue kv = 2;
}

message WatchCreateRequest {
  bytes key = 1;
  bytes range_end = 2;
}

message WatchRequest {
  oneof request_union {
    WatchCreateRequest create_request = 1;
  }
}

message WatchResponse {
  bool created = 3;
  bool canceled = 4;
  string cancel_reason = 6;
  repeated Event events = 11;
}
`;

const ROOT = protobuf.parse(WATCH_PROTO, { keepCase: true }).root;
const REQUEST = ROOT.lookupType("etcdserverpb.WatchRequest");
const RESPONSE = ROOT.lookupType("etcdserverpb.WatchResponse");

/** `mvccpb.Event.EventType` `PUT`. */
export const ETCD_EVENT_PUT = 0;

/** `etcdserverpb.WatchRequest` with a `create_request` of `[key, range_end)` from now on. */
export interface EtcdWatchRequest {
  /** What to watch (`create_request = 1`). */
  readonly createRequest: {
    /** The first key (`key = 1`). */
    readonly key: Uint8Array;
    /** The end of the range, excluded (`range_end = 2`); for a prefix, `prefixEnd` of it (watch_workload.ts). */
    readonly rangeEnd: Uint8Array;
  };
}

/** One `mvccpb.Event`: its type and the key and value it set. */
export interface EtcdWatchEvent {
  /** `PUT` (0) or `DELETE` (1). */
  readonly type: number;
  /** The key (`kv.key`); empty when the event has no `kv`. */
  readonly key: Uint8Array;
  /** The value (`kv.value`). */
  readonly value: Uint8Array;
}

/** `etcdserverpb.WatchResponse` without its header and ids. */
export interface EtcdWatchResponse {
  /** The answer to the create request: the watch is in place. */
  readonly created: boolean;
  /** The watch ended (or was refused, with `created`); `cancelReason` says why. */
  readonly canceled: boolean;
  /** Why it was canceled. */
  readonly cancelReason: string;
  /** The events of this response, in revision order. */
  readonly events: readonly EtcdWatchEvent[];
}

const EMPTY = new Uint8Array(0);

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

interface DecodedResponse {
  created: boolean;
  canceled: boolean;
  cancel_reason: string;
  events: Array<{ type: number; kv?: { key: Uint8Array; value: Uint8Array } | null }>;
}

function decodeResponse(bytes: Buffer): EtcdWatchResponse {
  const message = RESPONSE.decode(bytes) as unknown as DecodedResponse;
  return {
    created: message.created,
    canceled: message.canceled,
    cancelReason: message.cancel_reason,
    events: message.events.map((event) => ({
      type: event.type,
      key: event.kv?.key ?? EMPTY,
      value: event.kv?.value ?? EMPTY,
    })),
  };
}

function encodeRequest(request: EtcdWatchRequest): Buffer {
  const { key, rangeEnd } = request.createRequest;
  const message = { create_request: { key, range_end: rangeEnd } };
  return toBuffer(REQUEST.encode(message).finish());
}

/** `etcdserverpb.Watch`, client side (only `Watch`; a server would need the inverse codecs). */
export const EtcdWatchService = {
  Watch: {
    path: "/etcdserverpb.Watch/Watch",
    requestStream: true as const,
    responseStream: true as const,
    requestSerialize: encodeRequest,
    requestDeserialize: (): EtcdWatchRequest => {
      throw new Error("Cannot deserialize an etcd watch request: this is a client");
    },
    responseSerialize: (): Buffer => {
      throw new Error("Cannot serialize an etcd watch response: this is a client");
    },
    responseDeserialize: decodeResponse,
  },
};
