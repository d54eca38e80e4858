/**
 * Typed grpc-js clients for generated service definitions, and unary calls that always carry a
 * deadline and resolve to an {@linkcode RpcResult} instead of rejecting.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { assert } from "./_assert.ts";
import {
  channelOptions,
  type MethodKey,
  type RequestOf,
  type ResponseOf,
  type UnaryFlags,
} from "./server.ts";
import { failureFromError, type RpcResult } from "./status.ts";
import {
  channelCredentials,
  type ClientTls,
  tlsChannelOptions,
  tokenInterceptor,
} from "./security.ts";

/** The grpc-js client method of a method definition, in its full-argument form. */
export type ClientMethodOf<M> = M extends UnaryFlags ? (
    request: RequestOf<M>,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<ResponseOf<M>>,
  ) => grpc.ClientUnaryCall
  : M extends { requestStream: true; responseStream: true } ? (
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
    ) => grpc.ClientDuplexStream<RequestOf<M>, ResponseOf<M>>
  : M extends { requestStream: true } ? (
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      callback: grpc.requestCallback<ResponseOf<M>>,
    ) => grpc.ClientWritableStream<RequestOf<M>>
  : (
    request: RequestOf<M>,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ) => grpc.ClientReadableStream<ResponseOf<M>>;

/** A grpc-js client of service definition `D`: one method per RPC, plus `close()` etc. */
export type GrpcClient<D extends grpc.ServiceDefinition> =
  & grpc.Client
  & { [K in keyof D as MethodKey<K>]: ClientMethodOf<D[K]> };

/** The names of the unary methods of service definition `D`. */
export type UnaryMethodName<D extends grpc.ServiceDefinition> = keyof {
  [K in keyof D as MethodKey<K> extends never ? never : D[K] extends UnaryFlags ? K : never]: K;
};

/** One generated client class per service definition, built on first use. */
const CLIENT_CLASSES = new WeakMap<grpc.ServiceDefinition, grpc.ServiceClientConstructor>();

/** Options of {@linkcode createGrpcClient}. */
export interface GrpcClientOptions {
  /** The largest message sent or received, in bytes; larger ones fail with RESOURCE_EXHAUSTED. */
  maxMessageBytes: number;
  /** Connect with TLS, trusting this CA (security.ts); plaintext without. */
  tls?: ClientTls;
  /** Send this credential (a libs/auth token) with every call and stream; needs `tls`. */
  token?: string;
  /**
   * The HTTP/2 receive window of the connection and of each stream on it, in bytes (default
   * HTTP/2's 65,535): what the server may send before this client's grants. Raise it for many
   * busy streams on one connection.
   */
  receiveWindowBytes?: number;
}

/**
 * Opens a client (one channel with its own connection, connected lazily) to `address`
 * (`host:port`) for `definition`. Close it with `client.close()`, which closes the connection.
 *
 * @example
 * ```ts ignore
 * const client = createGrpcClient(KVService, "127.0.0.1:7700", {
 *   maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
 * });
 * const get = unaryCaller(client, "Get");
 * const result = await get({ key, serializable: false }, { deadlineMs: 1000 });
 * client.close();
 * ```
 */
export function createGrpcClient<D extends grpc.ServiceDefinition>(
  definition: D,
  address: string,
  options: GrpcClientOptions,
): GrpcClient<D> {
  if (options.token !== undefined && options.tls === undefined) {
    // A token in plaintext is a credential given away to anyone on the path.
    throw new Error(`A token is sent only over TLS: the client of "${address}" has no CA`);
  }
  let Client = CLIENT_CLASSES.get(definition);
  if (Client === undefined) {
    const first = Object.values(definition)[0];
    assert(first !== undefined, "createGrpcClient() was given a service without methods");
    Client = grpc.makeGenericClientConstructor(definition, first.path.split("/")[1]);
    CLIENT_CLASSES.set(definition, Client);
  }
  return new Client(address, channelCredentials(options.tls), {
    ...channelOptions(options.maxMessageBytes),
    ...tlsChannelOptions(options.tls),
    ...(options.token === undefined ? {} : { interceptors: [tokenInterceptor(options.token)] }),
    ...(options.receiveWindowBytes === undefined
      ? {}
      : { "grpc-node.flow_control_window": options.receiveWindowBytes }),
    // Each client owns its connection, so close() really closes it. grpc-js's default global pool
    // shares connections between clients of one address and keeps them after close().
    "grpc.use_local_subchannel_pool": 1,
  }) as unknown as GrpcClient<D>;
}

/** Per-call options of a {@linkcode UnaryCaller}. */
export interface UnaryCallOptions {
  /** How long the call may take, in milliseconds from now; required (no call waits forever). */
  deadlineMs: number;
  /** Request metadata. */
  metadata?: grpc.Metadata;
  /** Cancels the call; it then resolves to `cancelled`. */
  signal?: AbortSignal;
}

/** Calls one unary method; never rejects: a failure resolves to a typed {@linkcode RpcResult}. */
export type UnaryCaller<Req, Res> = (
  request: Req,
  options: UnaryCallOptions,
) => Promise<RpcResult<Res>>;

/**
 * Returns a function that calls unary method `method` of `client` with a deadline.
 *
 * @example
 * ```ts ignore
 * const put = unaryCaller(client, "Put");
 * const result = await put(request, { deadlineMs: 500 });
 * if (result.kind !== "ok" && retryOf(result) === "now") {
 *   // retry with the same (client_id, seq)
 * }
 * ```
 */
export function unaryCaller<D extends grpc.ServiceDefinition, K extends UnaryMethodName<D>>(
  client: GrpcClient<D>,
  method: K,
): UnaryCaller<RequestOf<D[K]>, ResponseOf<D[K]>> {
  const fn = (client as unknown as Record<string, unknown>)[method as string] as ClientMethodOf<
    grpc.MethodDefinition<RequestOf<D[K]>, ResponseOf<D[K]>> & UnaryFlags
  >;
  return (request, options) =>
    new Promise((resolve) => {
      assert(options.deadlineMs >= 0, `deadlineMs must not be negative: got ${options.deadlineMs}`);
      if (options.signal?.aborted) {
        resolve({ kind: "cancelled", message: "Call cancelled before it started" });
        return;
      }
      const call = fn.call(
        client,
        request,
        options.metadata ?? new grpc.Metadata(),
        { deadline: Date.now() + options.deadlineMs },
        (error, response) => {
          options.signal?.removeEventListener("abort", onAbort);
          if (error !== null) resolve(failureFromError(error));
          else if (response === undefined) resolve(failureFromError(new Error("No response")));
          else resolve({ kind: "ok", response });
        },
      );
      const onAbort = () => call.cancel();
      options.signal?.addEventListener("abort", onAbort, { once: true });
    });
}
