/**
 * The product's one status table (docs/design.md "Status codes") as types and functions: service code
 * returns an {@linkcode RpcResult}; {@linkcode failureToStatus} turns a failure into a grpc-js
 * status for the wire, and {@linkcode failureFromError} turns what a grpc-js client receives back
 * into a typed failure that says whether the request may have been applied and how to retry.
 *
 * The rule that matters most: `unavailable` means definitely not applied, `deadlineExceeded`
 * means the outcome is unknown. Both may be retried with the same `(client_id, seq)`, which the
 * state machine deduplicates. A compare-and-swap that does not match is not a failure at all.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { assert } from "./_assert.ts";

/** Every kind of failure an RPC may end with, one per row of the status table. */
export type RpcFailureKind =
  | "invalidArgument"
  | "unavailable"
  | "deadlineExceeded"
  | "failedPrecondition"
  | "resourceExhausted"
  | "dataLoss"
  | "internal"
  | "cancelled"
  | "unauthenticated"
  | "permissionDenied"
  | "unimplemented"
  | "outOfRange";

/**
 * A failed RPC. `message` follows the product's error style (sentence case, no trailing period,
 * the quoted value and then the current state), e.g.
 * `Key has 5000 bytes: the maximum is 4096 (KEY_BYTES_MAX)`.
 */
export type RpcFailure =
  & (
    /** Rejected before anything was proposed; the message names the field and the limit. */
    | { kind: "invalidArgument"; message: string }
    /** Definitely not applied (no leader found, never proposed). */
    | { kind: "unavailable"; message: string }
    /** Outcome unknown: proposed, but no answer in time. */
    | { kind: "deadlineExceeded"; message: string }
    /** The client's session expired: its old seqs can no longer be deduplicated. */
    | { kind: "failedPrecondition"; message: string }
    /** A bound was hit (too many pending proposals, message too large). */
    | { kind: "resourceExhausted"; message: string }
    /** A checksum failed. */
    | { kind: "dataLoss"; message: string }
    /** A broken invariant: a bug. */
    | { kind: "internal"; message: string }
    /** The caller cancelled the call; the outcome is unknown. */
    | { kind: "cancelled"; message: string }
    /** The call carried no credential the server accepts; nothing was done. */
    | { kind: "unauthenticated"; message: string }
    /** The caller's role may not make this call; nothing was done. */
    | { kind: "permissionDenied"; message: string }
    /** TinyKV does not have what was asked (an etcd lease, say); nothing was done. */
    | { kind: "unimplemented"; message: string }
    /**
     * A position outside what the server holds: a watch position compacted away (the message
     * names the oldest one still held), or an etcd revision in the future; nothing was done.
     */
    | { kind: "outOfRange"; message: string }
  )
  & {
    /**
     * Overrides the table's outcome when grpc-js, not a TinyKV server, produced the status and
     * knows better: an UNAVAILABLE after the request may have left (a connection broke) is
     * `unknown`; a message too large to send is `notApplied`.
     */
    outcome?: RpcOutcome;
  };

/** The outcome of an RPC handler or call: the response, or a typed failure. */
export type RpcResult<T> = { kind: "ok"; response: T } | RpcFailure;

/** Whether a failed request may have taken effect. */
export type RpcOutcome = "notApplied" | "unknown";

/**
 * What a caller should do after a failure. A retry always reuses the same `(client_id, seq)`, so
 * the server answers a duplicate with the original result instead of applying it twice.
 *
 * - `now`: retry at once (another gateway, a refreshed shard map), within the caller's deadline.
 * - `later`: retry after a back-off.
 * - `newSession`: the session is gone; start a new `client_id` and decide again.
 * - `never`: retrying cannot help.
 */
export type RpcRetry = "now" | "later" | "newSession" | "never";

/** One row of the status table. */
export interface StatusRow {
  /** The gRPC status code on the wire. */
  readonly code: grpc.status;
  /** Whether the request may have taken effect. */
  readonly outcome: RpcOutcome;
  /** What the caller should do. */
  readonly retry: RpcRetry;
}

/**
 * The status table of docs/design.md, one row per failure kind. Published codes are never renumbered.
 *
 * `resourceExhausted` and `internal` report an unknown outcome because grpc-js itself reports
 * them when a *response* is too large or unparsable, after the request was applied.
 *
 * `unavailable` is "not applied" as TinyKV servers use it (never proposed). grpc-js also reports
 * UNAVAILABLE when a connection breaks after the request left: {@linkcode failureFromError} gives
 * that one the outcome `unknown` (a TinyKV server's status carries
 * {@linkcode STATUS_ORIGIN_TRAILER}), which {@linkcode outcomeOf} reports. The advice (retry with
 * the same `(client_id, seq)`) is safe in both cases.
 */
export const STATUS_TABLE: Readonly<Record<RpcFailureKind, StatusRow>> = {
  invalidArgument: { code: grpc.status.INVALID_ARGUMENT, outcome: "notApplied", retry: "never" },
  unavailable: { code: grpc.status.UNAVAILABLE, outcome: "notApplied", retry: "now" },
  deadlineExceeded: { code: grpc.status.DEADLINE_EXCEEDED, outcome: "unknown", retry: "now" },
  failedPrecondition: {
    code: grpc.status.FAILED_PRECONDITION,
    outcome: "notApplied",
    retry: "newSession",
  },
  resourceExhausted: { code: grpc.status.RESOURCE_EXHAUSTED, outcome: "unknown", retry: "later" },
  dataLoss: { code: grpc.status.DATA_LOSS, outcome: "unknown", retry: "never" },
  internal: { code: grpc.status.INTERNAL, outcome: "unknown", retry: "never" },
  cancelled: { code: grpc.status.CANCELLED, outcome: "unknown", retry: "now" },
  unauthenticated: { code: grpc.status.UNAUTHENTICATED, outcome: "notApplied", retry: "never" },
  permissionDenied: {
    code: grpc.status.PERMISSION_DENIED,
    outcome: "notApplied",
    retry: "never",
  },
  unimplemented: { code: grpc.status.UNIMPLEMENTED, outcome: "notApplied", retry: "never" },
  outOfRange: { code: grpc.status.OUT_OF_RANGE, outcome: "notApplied", retry: "never" },
};

const KIND_BY_CODE: ReadonlyMap<grpc.status, RpcFailureKind> = new Map(
  Object.entries(STATUS_TABLE).map(([kind, row]) => [row.code, kind as RpcFailureKind]),
);

/** Returns a successful result. */
export function rpcOk<T>(response: T): RpcResult<T> {
  return { kind: "ok", response };
}

/** Returns a failure of `kind` with `message`. */
export function rpcFailure(kind: RpcFailureKind, message: string): RpcFailure {
  return { kind, message } as RpcFailure;
}

/** A gRPC status as grpc-js sends and receives it. */
export interface GrpcStatus {
  /** The status code. */
  code: grpc.status;
  /** The status message. */
  details: string;
}

/**
 * Maps a failure to the gRPC status that carries it on the wire.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as grpc from "@grpc/grpc-js";
 * import { failureToStatus } from "./status.ts";
 *
 * const status = failureToStatus({ kind: "unavailable", message: "No leader for shard 3" });
 * assert.equal(status.code, grpc.status.UNAVAILABLE);
 * ```
 */
export function failureToStatus(failure: RpcFailure): GrpcStatus {
  return { code: STATUS_TABLE[failure.kind].code, details: failure.message };
}

/**
 * The gRPC status name a result is answered with: `OK`, or the failure's (`NOT_FOUND`,
 * `UNAVAILABLE`, …), as metrics label requests.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rpcFailure, rpcOk, statusName } from "./status.ts";
 *
 * assert.equal(statusName(rpcOk({})), "OK");
 * assert.equal(statusName(rpcFailure("invalidArgument", "Key is empty")), "INVALID_ARGUMENT");
 * ```
 */
export function statusName(result: RpcResult<unknown>): string {
  if (result.kind === "ok") return "OK";
  return grpc.status[STATUS_TABLE[result.kind].code] ?? "UNKNOWN";
}

/**
 * Maps a received gRPC status back to a failure. Codes outside the table (UNKNOWN, NOT_FOUND,
 * UNIMPLEMENTED, …) never come from TinyKV handlers; they become `internal` with the code's name
 * in front of the message, so they are not retried blindly.
 */
export function failureFromStatus(status: GrpcStatus): RpcFailure {
  assert(status.code !== grpc.status.OK, "failureFromStatus() was given status OK");
  const kind = KIND_BY_CODE.get(status.code);
  if (kind !== undefined) return rpcFailure(kind, status.details);
  const name = grpc.status[status.code] ?? `code ${status.code}`;
  return rpcFailure("internal", `${name}: ${status.details}`);
}

/**
 * Maps anything a grpc-js call rejected with (normally a `ServiceError`) to a failure. A value
 * without a numeric `code` becomes `internal`.
 */
export function failureFromError(error: unknown): RpcFailure {
  if (typeof error === "object" && error !== null && "code" in error) {
    const { code } = error;
    if (typeof code === "number" && code !== grpc.status.OK) {
      const details = "details" in error && typeof error.details === "string"
        ? error.details
        : error instanceof Error
        ? error.message
        : "";
      const failure = failureFromStatus({ code, details });
      if (fromServer(error)) return failure;
      // The client's TLS refused the server's certificate (another CA, another name, expired):
      // nothing was sent, and no retry mends a trust setting.
      if (failure.kind === "unavailable" && CERTIFICATE_REFUSED.test(details)) {
        return rpcFailure(
          "unauthenticated",
          "TLS did not accept the server's certificate (check the CA and the server name): " +
            details.replace(/\s*Resolution note:\s*$/, ""),
        );
      }
      if (failure.kind === "unavailable" && !NEVER_CONNECTED.test(details)) {
        return { ...failure, outcome: "unknown" };
      }
      if (failure.kind === "resourceExhausted" && TOO_LARGE_TO_SEND.test(details)) {
        return { ...failure, outcome: "notApplied" };
      }
      // The deadline passed while grpc-js still waited for a connection: nothing was sent.
      if (failure.kind === "deadlineExceeded" && WAITING_FOR_CONNECTION.test(details)) {
        return rpcFailure("unavailable", `No connection in time: ${details}`);
      }
      return failure;
    }
  }
  const message = error instanceof Error ? error.message : String(error);
  return rpcFailure("internal", `Unexpected error: ${message}`);
}

/** Whether a rejected call carries the trailer of a TinyKV server's status. */
function fromServer(error: object): boolean {
  if (!("metadata" in error) || !(error.metadata instanceof grpc.Metadata)) return false;
  return error.metadata.get(STATUS_ORIGIN_TRAILER).length > 0;
}

/** Whether a request that ended with `failure` may have taken effect. */
export function outcomeOf(failure: RpcFailure): RpcOutcome {
  return failure.outcome ?? STATUS_TABLE[failure.kind].outcome;
}

/** What a caller should do after `failure`. */
export function retryOf(failure: RpcFailure): RpcRetry {
  return STATUS_TABLE[failure.kind].retry;
}

/**
 * An exception carrying a failure, for code deep inside a handler where returning a result is
 * awkward. A handler wrapped by `unaryHandler` maps it like a returned failure; any other thrown
 * value becomes `internal`.
 */
export class RpcError extends Error {
  /** The failure this error carries. */
  readonly failure: RpcFailure;

  /** Creates an error carrying `failure`. */
  constructor(failure: RpcFailure) {
    super(failure.message);
    this.name = "RpcError";
    this.failure = failure;
  }
}

/**
 * The trailer every status a TinyKV server sends carries (its failure kind), so that a client can
 * tell a server's UNAVAILABLE (never applied) from one grpc-js makes up when a connection breaks
 * (the request may have been applied).
 */
export const STATUS_ORIGIN_TRAILER = "tinykv-status";

/** A grpc-js server error (an `Error` with `code`, `details` and the origin trailer) for `failure`. */
export function toServerError(failure: RpcFailure): grpc.ServerErrorResponse {
  const { code, details } = failureToStatus(failure);
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_ORIGIN_TRAILER, failure.kind);
  return Object.assign(new Error(details), { code, details, metadata });
}

/** grpc-js's words for an UNAVAILABLE before any request left: no connection was ever made. */
const NEVER_CONNECTED = /^No connection established/;
/** Node's TLS words for a server certificate it does not accept. */
const CERTIFICATE_REFUSED =
  /unable to verify the first certificate|unable to get (local )?issuer certificate|self[- ]signed certificate|certificate has expired|certificate is not yet valid|ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames|certificate signature failure/i;
/** grpc-js's words for a deadline that passed before the call had a connection to go on. */
const WAITING_FOR_CONNECTION = /Waiting for LB pick/;
/** grpc-js's words for a request it refused to send: too large for the channel's bound. */
const TOO_LARGE_TO_SEND = /^Attempted to send message with a size larger than/;

/**
 * The request metadata key that asks the services to follow one client request: its value is the
 * trace id (`checkTraceId` in `@tinykv/shard`), which every log line about the request carries as
 * field `trace`; `tinykv trace ID` reads them back.
 */
export const TRACE_METADATA = "tinykv-trace";

/** Request metadata asking to follow the request as `traceId`; undefined when none is given. */
export function traceMetadata(traceId: string | undefined): grpc.Metadata | undefined {
  if (traceId === undefined) return undefined;
  const metadata = new grpc.Metadata();
  metadata.set(TRACE_METADATA, traceId);
  return metadata;
}
