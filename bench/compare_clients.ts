/**
 * One client shape over both systems' own gRPC APIs, so the load driver and the failover writer
 * treat TinyKV and etcd alike: `put` and a linearizable `get` of one key, with a deadline, on one
 * grpc-js channel (its own HTTP/2 connection: `createGrpcClient` sets
 * `grpc.use_local_subchannel_pool`).
 *
 * - TinyKV: `tinykv.v1.KV` `Put` (no session: an empty `client_id`) and `Get` with
 *   `serializable = false` (ReadIndex), through a gateway.
 * - etcd: `etcdserverpb.KV` `Put` and `Range` of one key without `serializable` (linearizable,
 *   etcd's default), to one member.
 *
 * @module
 */
import { KVService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, unaryCaller } from "@tinykv/rpc";
import { EtcdKVService } from "./compare_etcd_api.ts";
import type { System } from "./compare_report.ts";

/** The gRPC message bound of the driver's channels (TinyKV's default `max_message_bytes`). */
export const MESSAGE_BYTES_MAX = 8 * 1024 * 1024;

/** The outcome of one request: done (for a get, whether the key was found) or failed. */
export type Outcome =
  | { readonly kind: "ok"; readonly found: boolean }
  | { readonly kind: "failed"; readonly failure: string; readonly message: string };

/** A connection to one server (a TinyKV gateway or an etcd member). */
export interface KvConnection {
  /** Sets `key` to `value`. */
  put(key: Uint8Array, value: Uint8Array, deadlineMs: number): Promise<Outcome>;
  /** A linearizable read of `key`. */
  get(key: Uint8Array, deadlineMs: number): Promise<Outcome>;
  /** Closes the channel and its connection. */
  close(): void;
}

/** Opens a channel of `system`'s client API to `address` (`host:port`). */
export function connect(system: System, address: string): KvConnection {
  return system === "tinykv" ? connectTinyKv(address) : connectEtcd(address);
}

function connectTinyKv(address: string): KvConnection {
  const client = createGrpcClient(KVService, address, { maxMessageBytes: MESSAGE_BYTES_MAX });
  const put = unaryCaller(client, "Put");
  const get = unaryCaller(client, "Get");
  return {
    async put(key, value, deadlineMs) {
      const result = await put({ key, value, clientId: "", seq: 0, ackSeq: 0 }, { deadlineMs });
      return result.kind === "ok" ? DONE : failed(result.kind, result.message);
    },
    async get(key, deadlineMs) {
      const result = await get({ key, serializable: false }, { deadlineMs });
      return result.kind === "ok"
        ? (result.response.found ? FOUND : NOT_FOUND)
        : failed(result.kind, result.message);
    },
    close: () => client.close(),
  };
}

function connectEtcd(address: string): KvConnection {
  const client = createGrpcClient(EtcdKVService, address, { maxMessageBytes: MESSAGE_BYTES_MAX });
  const put = unaryCaller(client, "Put");
  const range = unaryCaller(client, "Range");
  return {
    async put(key, value, deadlineMs) {
      const result = await put({ key, value }, { deadlineMs });
      return result.kind === "ok" ? DONE : failed(result.kind, result.message);
    },
    async get(key, deadlineMs) {
      const result = await range({ key }, { deadlineMs });
      return result.kind === "ok"
        ? (result.response.values.length > 0 ? FOUND : NOT_FOUND)
        : failed(result.kind, result.message);
    },
    close: () => client.close(),
  };
}

const DONE: Outcome = { kind: "ok", found: true };
const FOUND: Outcome = DONE;
const NOT_FOUND: Outcome = { kind: "ok", found: false };

function failed(failure: string, message: string): Outcome {
  return { kind: "failed", failure, message };
}
