/**
 * The slice of etcd's v3 gRPC API the comparison uses, as grpc-js service definitions:
 * `etcdserverpb.KV` `Put` and `Range`, and `etcdserverpb.Maintenance` `Status` (to find the
 * leader). The messages are written here from etcd's documented API (`api/etcdserverpb/rpc.proto`
 * and `api/mvccpb/kv.proto`, same names and field numbers; unused fields left out, which protobuf
 * allows: a decoder skips fields it does not know) and parsed with protobufjs at load time, so no
 * `.proto` file is read at run time and no etcd client package is needed.
 *
 * A `Range` without `serializable` is linearizable: the member asks the leader for a read index
 * first (etcd's ReadIndex), as TinyKV's gets do.
 *
 * @example
 * ```ts ignore
 * import { createGrpcClient, unaryCaller } from "@tinykv/rpc";
 * import { EtcdKVService } from "./compare_etcd_api.ts";
 *
 * const kv = createGrpcClient(EtcdKVService, "127.0.0.1:23791", { maxMessageBytes: 8 << 20 });
 * const key = new TextEncoder().encode("hello");
 * await unaryCaller(kv, "Put")({ key, value: key }, { deadlineMs: 5000 });
 * console.log(await unaryCaller(kv, "Range")({ key }, { deadlineMs: 5000 }));
 * kv.close();
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import protobuf from "protobufjs";

const ETCD_PROTO = `
syntax = "proto3";
package etcdserverpb;

message ResponseHeader {
  uint64 cluster_id = 1;
  uint64 member_id = 2;
  int64 revision = 3;
  uint64 raft_term = 4;
}

message KeyValue {
  bytes key = 1;
  int64 create_revision = 2;
  int64 mod_revision = 3;
  int64 version = 4;
  bytes value = 5;
  int64 lease = 6;
}

message RangeRequest {
  bytes key = 1;
  bytes range_end = 2;
  int64 limit = 3;
  int64 revision = 4;
  bool serializable = 7;
}

message RangeResponse {
  ResponseHeader header = 1;
  repeated KeyValue kvs = 2;
  bool more = 3;
  int64 count = 4;
}

message PutRequest {
  bytes key = 1;
  bytes value = 2;
  int64 lease = 3;
  bool prev_kv = 4;
}

message PutResponse {
  ResponseHeader header = 1;
}

message StatusRequest {}

message StatusResponse {
  ResponseHeader header = 1;
  string version = 2;
  int64 dbSize = 3;
  uint64 leader = 4;
  uint64 raftIndex = 5;
  uint64 raftTerm = 6;
  uint64 raftAppliedIndex = 7;
  repeated string errors = 8;
}
`;

const ROOT = protobuf.parse(ETCD_PROTO, { keepCase: true }).root;

/** `etcdserverpb.PutRequest` (without a lease or the previous value). */
export interface EtcdPutRequest {
  /** The key (`key = 1`). */
  key: Uint8Array;
  /** The value (`value = 2`). */
  value: Uint8Array;
}

/** `etcdserverpb.PutResponse`, only its header's revision kept. */
export interface EtcdPutResponse {
  /** The store's revision after the put, as decimal text. */
  revision: string;
}

/** `etcdserverpb.RangeRequest` of one key; linearizable unless `serializable`. */
export interface EtcdRangeRequest {
  /** The key (`key = 1`); without `range_end`, only this key. */
  key: Uint8Array;
  /** A member-local, possibly stale read (`serializable = 7`); unset: linearizable. */
  serializable?: boolean;
}

/** `etcdserverpb.RangeResponse`: the values found (at most one for a one-key range). */
export interface EtcdRangeResponse {
  /** The values of the keys found (`kvs[].value`). */
  values: Uint8Array[];
}

/** `etcdserverpb.StatusResponse`: who the member is and whom it follows (ids as decimal text). */
export interface EtcdStatusResponse {
  /** The answering member (`header.member_id`). */
  memberId: string;
  /** The leader this member knows; "0" when none. */
  leader: string;
  /** The member's etcd version. */
  version: string;
  /** Its Raft committed index. */
  raftIndex: string;
  /** Its Raft term. */
  raftTerm: string;
  /** Alarms and health problems it reports. */
  errors: string[];
}

/** A unary grpc-js method definition with its stream flags fixed (as the generated ones are). */
interface UnaryDefinition<Req, Res> {
  readonly path: string;
  readonly requestStream: false;
  readonly responseStream: false;
  readonly requestSerialize: (value: Req) => Buffer;
  readonly requestDeserialize: (bytes: Buffer) => Req;
  readonly responseSerialize: (value: Res) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => Res;
  readonly originalName?: string;
}

function unary<Req, Res>(
  path: string,
  types: { request: string; response: string },
  decodeResponse: (message: Record<string, unknown>) => Res,
): UnaryDefinition<Req, Res> {
  const request = ROOT.lookupType(`etcdserverpb.${types.request}`);
  const response = ROOT.lookupType(`etcdserverpb.${types.response}`);
  const toBuffer = (bytes: Uint8Array) =>
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value) =>
      toBuffer(request.encode(value as Record<string, unknown>).finish()),
    requestDeserialize: (bytes) => request.decode(bytes) as unknown as Req,
    // Only the client side runs here; a server would need the inverse of `decodeResponse`.
    responseSerialize: () => {
      throw new Error("Cannot serialize an etcd response: this is a client");
    },
    responseDeserialize: (bytes) =>
      decodeResponse(response.toObject(response.decode(bytes), TO_OBJECT)),
  };
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, defaults: true, arrays: true };

function revisionOf(message: Record<string, unknown>): string {
  const header = message.header as Record<string, unknown> | undefined;
  return String(header?.revision ?? "0");
}

/** The methods of `etcdserverpb.KV` the comparison calls. */
export const EtcdKVService = {
  Put: unary<EtcdPutRequest, EtcdPutResponse>(
    "/etcdserverpb.KV/Put",
    { request: "PutRequest", response: "PutResponse" },
    (m) => ({ revision: revisionOf(m) }),
  ),
  Range: unary<EtcdRangeRequest, EtcdRangeResponse>(
    "/etcdserverpb.KV/Range",
    { request: "RangeRequest", response: "RangeResponse" },
    (m) => ({
      values: (m.kvs as Array<Record<string, unknown>>).map((kv) => kv.value as Uint8Array),
    }),
  ),
};

/** `etcdserverpb.Maintenance` `Status`, to find the leader and check health. */
export const EtcdMaintenanceService = {
  Status: unary<Record<string, never>, EtcdStatusResponse>(
    "/etcdserverpb.Maintenance/Status",
    { request: "StatusRequest", response: "StatusResponse" },
    (m) => ({
      memberId: String((m.header as Record<string, unknown> | undefined)?.member_id ?? "0"),
      leader: String(m.leader),
      version: String(m.version),
      raftIndex: String(m.raftIndex),
      raftTerm: String(m.raftTerm),
      errors: m.errors as string[],
    }),
  ),
};
