/**
 * Starting a grpc-js server with explicit limits, and writing its unary handlers as
 * `async (request, context) => RpcResult` functions whose failures go through the status table.
 *
 * Safety nets every served method gets from {@linkcode startGrpcServer}:
 * - a unary request that cannot be decoded is answered with INVALID_ARGUMENT (grpc-js alone would
 *   say INTERNAL); streaming methods keep grpc-js's INTERNAL for a malformed message;
 * - a unary handler that throws synchronously is answered with INTERNAL instead of crashing the
 *   process;
 * - a compressed request that cannot be decompressed is answered INTERNAL instead of crashing the
 *   process (decompress_guard.ts).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { assert } from "./_assert.ts";
import { coalesceServerWrites } from "./coalesce.ts";
import { guardDecompression } from "./decompress_guard.ts";
import type { Buffer } from "node:buffer";
import type { Claims } from "@tinykv/auth";
import {
  authenticateCall,
  callerOf,
  type ServerAuth,
  serverCredentials,
  type ServerTls,
} from "./security.ts";
import { RpcError, type RpcFailure, rpcFailure, type RpcResult, toServerError } from "./status.ts";

/** A sensible `maxMessageBytes`: a 1 MiB value plus its key and framing, with headroom. */
export const MESSAGE_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;
/** How often an idle connection is pinged to detect a dead peer. */
export const KEEPALIVE_TIME_MS = 30_000;
/** How long a keepalive ping may stay unanswered before the connection is dropped. */
export const KEEPALIVE_TIMEOUT_MS = 10_000;

/** A service to serve: its definition and grpc-js implementation (see {@linkcode bindService}). */
export interface ServiceBinding {
  /** The grpc-js service definition, e.g. the generated `KVService`. */
  readonly definition: grpc.ServiceDefinition;
  /** The handlers, keyed like the definition. */
  readonly implementation: grpc.UntypedServiceImplementation;
}

/** Called with an exception a handler threw that was not an {@linkcode RpcError} (a bug). */
export type UnexpectedErrorHook = (error: unknown, method: string) => void;

/** Options of {@linkcode startGrpcServer}. */
export interface GrpcServerOptions {
  /** The address to listen on, e.g. `127.0.0.1`. */
  host: string;
  /** The port to listen on; 0 picks a free one (see {@linkcode GrpcServer.port}). */
  port: number;
  /** The largest message received or sent, in bytes; larger ones get RESOURCE_EXHAUSTED. */
  maxMessageBytes: number;
  /** The services to serve. */
  services: readonly ServiceBinding[];
  /** Reports a handler's unexpected exception; defaults to `console.error`. */
  onUnexpectedError?: UnexpectedErrorHook;
  /** Serve TLS with this certificate and key (security.ts); plaintext without. */
  tls?: ServerTls;
  /** Require a credential on every call and stream (security.ts); none checked without. */
  auth?: ServerAuth;
  /**
   * Hold each connection's writes until unary answers' trailers are written too, so that answers
   * leave with their trailers (coalesce.ts, `untilTrailers`): for a server whose calls are unary.
   */
  answersWhole?: boolean;
}

/** How {@linkcode GrpcServer.shutdown} ended. */
export type ShutdownResult = "graceful" | "forced";

/** A running server. */
export interface GrpcServer {
  /** The port actually bound (the chosen one when 0 was asked). */
  readonly port: number;
  /**
   * Stops accepting calls, lets calls in flight finish for up to `graceMs`, then cancels the rest.
   * Idempotent: later calls return the first call's promise.
   */
  shutdown(graceMs: number): Promise<ShutdownResult>;
}

/** The grpc-js channel options of a server or client with `maxMessageBytes`. */
export function channelOptions(maxMessageBytes: number): grpc.ChannelOptions {
  assert(
    Number.isSafeInteger(maxMessageBytes) && maxMessageBytes > 0,
    `maxMessageBytes must be a positive integer: got ${maxMessageBytes}`,
  );
  return {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
    "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
    "grpc.keepalive_permit_without_calls": 1,
    // Channelz bookkeeping costs CPU on every call and nothing here reads it.
    "grpc.enable_channelz": 0,
  };
}

/**
 * Starts a grpc-js server on `host:port` serving `services`.
 *
 * @example
 * ```ts ignore
 * const server = await startGrpcServer({
 *   host: "127.0.0.1",
 *   port: 0,
 *   maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
 *   services: [bindService(KVService, handlers)],
 * });
 * console.log(server.port);
 * await server.shutdown(1000);
 * ```
 */
export function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  guardDecompression();
  const server = new grpc.Server(channelOptions(options.maxMessageBytes));
  const onUnexpectedError = options.onUnexpectedError ?? defaultUnexpectedError;
  for (const service of options.services) {
    const [definition, implementation] = guardService(service, onUnexpectedError, options.auth);
    server.addService(definition, implementation);
  }
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  return new Promise((resolve, reject) => {
    server.bindAsync(
      `${host}:${options.port}`,
      serverCredentials(options.tls),
      (error, port) => {
        if (error !== null) {
          server.forceShutdown();
          reject(error);
          return;
        }
        // Without it the server is correct, only slower; coalesce_test.ts fails then.
        coalesceServerWrites(server, { untilTrailers: options.answersWhole === true });
        resolve(new RunningServer(server, port));
      },
    );
  });
}

class RunningServer implements GrpcServer {
  readonly port: number;
  #server: grpc.Server;
  #stopped: Promise<ShutdownResult> | undefined;

  constructor(server: grpc.Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  shutdown(graceMs: number): Promise<ShutdownResult> {
    this.#stopped ??= new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve("forced");
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve("graceful");
      });
    });
    return this.#stopped;
  }
}

function defaultUnexpectedError(error: unknown, method: string): void {
  console.error(`Handler of "${method}" threw unexpectedly:`, error);
}

/** A request that failed to decode; the guarded handler answers it with INVALID_ARGUMENT. */
class MalformedRequest {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

function guardService(
  service: ServiceBinding,
  onUnexpectedError: UnexpectedErrorHook,
  auth: ServerAuth | undefined,
): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation] {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(service.definition)) {
    const handler = service.implementation[name];
    assert(handler !== undefined, `Service has no handler for "${method.path}"`);
    if (method.requestStream || method.responseStream) {
      definition[name] = method;
      implementation[name] = auth === undefined
        ? handler
        : guardStream(handler, method, auth, onUnexpectedError);
      continue;
    }
    definition[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          return new MalformedRequest(`Cannot decode the request of "${method.path}": ${reason}`);
        }
      },
    };
    implementation[name] = guardUnary(
      handler as grpc.handleUnaryCall<unknown, unknown>,
      method.path,
      onUnexpectedError,
      auth,
    );
  }
  return [definition, implementation];
}

function guardUnary(
  handler: grpc.handleUnaryCall<unknown, unknown>,
  path: string,
  onUnexpectedError: UnexpectedErrorHook,
  auth: ServerAuth | undefined,
): grpc.handleUnaryCall<unknown, unknown> {
  const run: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
    if (call.request instanceof MalformedRequest) {
      callback(toServerError(rpcFailure("invalidArgument", call.request.message)));
      return;
    }
    try {
      handler(call, callback);
    } catch (error) {
      callback(toServerError(unexpectedFailure(error, path, onUnexpectedError)));
    }
  };
  if (auth === undefined) return run;
  // The credential is checked first: a refused caller learns nothing of its request's fate.
  return (call, callback) => {
    authenticateCall(auth, call, path).then((checked) => {
      if (checked.kind === "ok") run(call, callback);
      else callback(toServerError(checked));
    }, (error) => callback(toServerError(unexpectedFailure(error, path, onUnexpectedError))));
  };
}

/**
 * A streaming handler behind the credential check: a refused stream is ended with the refusal's
 * status before the handler sees it (its messages wait unread meanwhile).
 */
function guardStream(
  handler: grpc.UntypedHandleCall,
  method: grpc.MethodDefinition<unknown, unknown>,
  auth: ServerAuth,
  onUnexpectedError: UnexpectedErrorHook,
): grpc.UntypedHandleCall {
  const path = method.path;
  const clientStream = method.requestStream && !method.responseStream;
  return ((
    call: grpc.ServerReadableStream<unknown, unknown>,
    callback?: grpc.sendUnaryData<unknown>,
  ) => {
    const refuse = (failure: RpcFailure) => {
      const error = toServerError(failure);
      if (clientStream && callback !== undefined) callback(error);
      else (call as unknown as { emit(event: string, error: unknown): void }).emit("error", error);
    };
    authenticateCall(auth, call, path).then((checked) => {
      if (checked.kind !== "ok") return refuse(checked);
      try {
        (handler as (call: unknown, callback?: unknown) => void)(call, callback);
      } catch (error) {
        refuse(unexpectedFailure(error, path, onUnexpectedError));
      }
    }, (error) => refuse(unexpectedFailure(error, path, onUnexpectedError)));
  }) as unknown as grpc.UntypedHandleCall;
}

function unexpectedFailure(
  error: unknown,
  path: string,
  onUnexpectedError: UnexpectedErrorHook,
): RpcFailure {
  if (error instanceof RpcError) return error.failure;
  onUnexpectedError(error, path);
  const reason = error instanceof Error ? error.message : String(error);
  return rpcFailure("internal", `Handler of "${path}" failed unexpectedly: ${reason}`);
}

/** What a unary handler knows about its call besides the request. */
export interface HandlerContext {
  /** The method's path, e.g. `/tinykv.v1.KV/Get`. */
  readonly method: string;
  /** The request metadata. */
  readonly metadata: grpc.Metadata;
  /** The client's deadline as epoch milliseconds; `Infinity` when it set none. */
  readonly deadlineMs: number;
  /** Aborted when the client cancels or its deadline passes. */
  readonly signal: AbortSignal;
  /** Who called, when the server checks credentials (security.ts). */
  readonly caller?: Claims;
}

/**
 * A typed unary handler: resolves to the response or a failure from the status table. It may
 * also throw {@linkcode RpcError}; any other exception becomes INTERNAL.
 */
export type UnaryHandler<Req, Res> = (
  request: Req,
  context: HandlerContext,
) => Promise<RpcResult<Res>> | RpcResult<Res>;

/**
 * `K` unless it is the `string` index signature that generated definitions inherit from
 * `grpc.ServiceDefinition`: mapped types use it to keep only the declared methods.
 */
export type MethodKey<K> = string extends K ? never : K;

/** The request type of a grpc-js method definition. */
export type RequestOf<M> = M extends grpc.MethodDefinition<infer Req, infer _Res> ? Req : never;
/** The response type of a grpc-js method definition. */
export type ResponseOf<M> = M extends grpc.MethodDefinition<infer _Req, infer Res> ? Res : never;

/** Marks a unary method definition (the generated definitions fix both flags as literals). */
export interface UnaryFlags {
  /** Always false for a unary method. */
  readonly requestStream: false;
  /** Always false for a unary method. */
  readonly responseStream: false;
}

/** The raw grpc-js handler type of a streaming method definition. */
export type StreamingHandlerOf<M> = M extends { requestStream: true; responseStream: true }
  ? grpc.handleBidiStreamingCall<RequestOf<M>, ResponseOf<M>>
  : M extends { requestStream: true } ? grpc.handleClientStreamingCall<RequestOf<M>, ResponseOf<M>>
  : grpc.handleServerStreamingCall<RequestOf<M>, ResponseOf<M>>;

/**
 * The handlers {@linkcode bindService} takes for definition `D`: a typed {@linkcode UnaryHandler}
 * per unary method, a raw grpc-js handler per streaming method.
 */
export type ServiceHandlers<D extends grpc.ServiceDefinition> = {
  [K in keyof D as MethodKey<K>]: D[K] extends UnaryFlags
    ? UnaryHandler<RequestOf<D[K]>, ResponseOf<D[K]>>
    : StreamingHandlerOf<D[K]>;
};

/**
 * Adapts a typed unary handler to grpc-js: a returned or thrown failure goes through the status
 * table; an unexpected exception or rejection becomes INTERNAL and is reported to
 * `onUnexpectedError` (default `console.error`).
 */
export function unaryHandler<Req, Res>(
  handler: UnaryHandler<Req, Res>,
  options: { onUnexpectedError?: UnexpectedErrorHook } = {},
): grpc.handleUnaryCall<Req, Res> {
  const onUnexpectedError = options.onUnexpectedError ?? defaultUnexpectedError;
  return (call, callback) => {
    const path = call.getPath();
    const abort = new AbortController();
    const onCancelled = () => abort.abort();
    call.once("cancelled", onCancelled);
    const deadline = call.getDeadline();
    const context: HandlerContext = {
      method: path,
      metadata: call.metadata,
      deadlineMs: deadline instanceof Date ? deadline.getTime() : deadline,
      signal: abort.signal,
      caller: callerOf(call),
    };
    const respond = (result: RpcResult<Res>) => {
      call.off("cancelled", onCancelled);
      if (result.kind === "ok") callback(null, result.response);
      else callback(toServerError(result));
    };
    const fail = (error: unknown) => {
      call.off("cancelled", onCancelled);
      callback(toServerError(unexpectedFailure(error, path, onUnexpectedError)));
    };
    try {
      Promise.resolve(handler(call.request, context)).then(respond, fail);
    } catch (error) {
      fail(error);
    }
  };
}

/**
 * Binds typed handlers to a generated service definition, ready for
 * {@linkcode startGrpcServer}.
 *
 * @example
 * ```ts ignore
 * const binding = bindService(KVService, {
 *   Get: async (request) => rpcOk({ found: false, value: new Uint8Array(0) }),
 *   // ... one handler per method
 * });
 * ```
 */
export function bindService<D extends grpc.ServiceDefinition>(
  definition: D,
  handlers: ServiceHandlers<D>,
  options: { onUnexpectedError?: UnexpectedErrorHook } = {},
): ServiceBinding {
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler: unknown = handlers[name as keyof D];
    assert(typeof handler === "function", `No handler for "${method.path}"`);
    implementation[name] = method.requestStream || method.responseStream
      ? handler as grpc.UntypedHandleCall
      : unaryHandler(handler as UnaryHandler<unknown, unknown>, options);
  }
  return { definition, implementation };
}

/**
 * `binding` with `check` run on the wire bytes of `method`'s requests before they are decoded: a
 * request it returns a reason for is not decoded at all, and is answered INVALID_ARGUMENT with that
 * reason, as a request that cannot be decoded ({@linkcode startGrpcServer}). For bounds whose
 * breach would cost more to decode than to refuse (libs/rpc wire_scan.ts).
 */
export function checkRequestsOf(
  binding: ServiceBinding,
  method: string,
  check: (bytes: Uint8Array) => string | undefined,
): ServiceBinding {
  const definition = binding.definition[method];
  assert(definition !== undefined, `The service has no method "${method}"`);
  assert(
    !definition.requestStream && !definition.responseStream,
    `"${definition.path}" is not unary: its requests cannot be checked before decoding`,
  );
  const requestDeserialize = (bytes: Buffer) => {
    const refused = check(bytes);
    if (refused !== undefined) throw new RangeError(refused);
    return definition.requestDeserialize(bytes);
  };
  return {
    definition: { ...binding.definition, [method]: { ...definition, requestDeserialize } },
    implementation: binding.implementation,
  };
}
