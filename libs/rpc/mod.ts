/**
 * gRPC helpers shared by every TinyKV service: a server with explicit message bounds and
 * keepalive, typed clients for the generated service definitions, unary handlers written as
 * `async (request, context) => RpcResult`, and the product's one status table (docs/design.md
 * "Status codes") mapping typed failures to gRPC statuses and back.
 *
 * Test harnesses (channel-churn regression test, child-process servers) live in
 * `@tinykv/rpc/testing`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as grpc from "@grpc/grpc-js";
 * import { failureFromStatus, failureToStatus, retryOf, rpcFailure } from "./mod.ts";
 *
 * const failure = rpcFailure("deadlineExceeded", "No answer from shard 3 in time");
 * const status = failureToStatus(failure);
 * assert.equal(status.code, grpc.status.DEADLINE_EXCEEDED);
 * // The client side gets the same failure back, and knows it may retry with the same seq.
 * assert.deepStrictEqual(failureFromStatus(status), failure);
 * assert.equal(retryOf(failure), "now");
 * ```
 *
 * @module
 */

export {
  bindService,
  channelOptions,
  checkRequestsOf,
  type GrpcServer,
  type GrpcServerOptions,
  type HandlerContext,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  MESSAGE_BYTES_MAX_DEFAULT,
  type MethodKey,
  type RequestOf,
  type ResponseOf,
  type ServiceBinding,
  type ServiceHandlers,
  type ShutdownResult,
  startGrpcServer,
  type StreamingHandlerOf,
  type UnaryFlags,
  type UnaryHandler,
  unaryHandler,
  type UnexpectedErrorHook,
} from "./server.ts";
export {
  authenticateCall,
  AUTHORIZATION_METADATA,
  callerOf,
  channelCredentials,
  type ClientSecurity,
  type ClientTls,
  type ServerAuth,
  serverCredentials,
  type ServerTls,
  tlsChannelOptions,
  tokenInterceptor,
} from "./security.ts";
export {
  claimsOf,
  exposureRefusal,
  isLoopback,
  loadServiceSecurity,
  type Policy,
  prepareServiceSecurity,
  type SecuritySection,
  servicePolicy,
  type ServiceSecurity,
} from "./service_security.ts";
export {
  type ClientMethodOf,
  createGrpcClient,
  type GrpcClient,
  type GrpcClientOptions,
  type UnaryCaller,
  unaryCaller,
  type UnaryCallOptions,
  type UnaryMethodName,
} from "./client.ts";
export {
  failureFromError,
  failureFromStatus,
  failureToStatus,
  type GrpcStatus,
  outcomeOf,
  retryOf,
  RpcError,
  type RpcFailure,
  rpcFailure,
  type RpcFailureKind,
  rpcOk,
  type RpcOutcome,
  type RpcResult,
  type RpcRetry,
  STATUS_ORIGIN_TRAILER,
  STATUS_TABLE,
  statusName,
  type StatusRow,
  toServerError,
  TRACE_METADATA,
  traceMetadata,
} from "./status.ts";
export {
  canSend,
  SEND_WINDOW_POLL_MS,
  SendGate,
  type SendStream,
  sessionOf,
  whenCanSend,
} from "./send_window.ts";
export { eachWireField, MALFORMED, repeatedPast, type WireField } from "./wire_scan.ts";
