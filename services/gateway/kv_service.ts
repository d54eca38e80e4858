/**
 * The gateway's client API, `tinykv.v1.KV`: each call is checked, given an exactly-once identity
 * when it is a mutation without one, routed to its shard's leader by `libs/client`'s router
 * (retries keep the same `(client_id, seq)`), and answered with the product's status table before
 * the client's deadline. A scan asks every shard in parallel and merges the pages in key order.
 * Time is the router's clock, so the handlers run on a `FakeClock` in tests
 * ({@linkcode kvHandlers} gives them without a gRPC server).
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import {
  type AppendResponse,
  type CompareAndSwapResponse,
  type DeleteResponse,
  type GetResponse,
  type KeyValue,
  KVService,
  type PutResponse,
  type ScanRequest,
  type ScanResponse,
  type TxnResponse,
  type WatchRequest,
  type WatchResponse,
} from "@tinykv/proto/tinykv/v1";
import { ClientSession, type KvRouter, type RouteOp, type RouteResult } from "@tinykv/client";
import {
  bindService,
  checkRequestsOf,
  type HandlerContext,
  repeatedPast,
  type RpcFailure,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
  type ServiceHandlers,
  statusName,
  toServerError,
  TRACE_METADATA,
} from "@tinykv/rpc";
import {
  checkRequest,
  checkTraceId,
  compareBytes,
  type RequestFields,
  SCAN_BYTES_MAX,
  TXN_OPS_MAX,
  type TxnFields,
} from "@tinykv/shard";
import { assert } from "./_assert.ts";
import { decodingWatchRequests, type GatewayWatches, watchHandler } from "./watch.ts";

/** Options of {@linkcode kvService}. */
export interface KvServiceOptions {
  readonly router: KvRouter;
  /** The gateway's own session, for mutations that come without a `client_id`. */
  readonly session: GatewaySession;
  /** The deadline of a call that sets none, and the longest deadline honoured. */
  readonly requestTimeoutMs: number;
  readonly requestTimeoutMsMax: number;
  readonly valueBytesMax: number;
  /** Counts calls in flight, so a graceful shutdown can wait for them. */
  readonly inFlight?: { count: number };
  /** Sees each call as it ends: its method, its status (`OK`, `NOT_FOUND`, …), how long it took. */
  readonly observe?: (method: string, status: string, seconds: number) => void;
  /** The monotonic clock calls are timed with, in milliseconds (default `performance.now`). */
  readonly monotonicMs?: () => number;
  /** Where the gateway reports renewing its session. */
  readonly log?: { info(msg: string, fields?: Record<string, unknown>): void };
  /** The gateway's watches (none: `Watch` is UNIMPLEMENTED, in tests of the other calls). */
  readonly watches?: GatewayWatches;
}

/**
 * The gateway's own exactly-once session, for mutations sent without a `client_id`. A shard that
 * saw none of its writes for a session TTL expires it; the gateway then starts a new one
 * ({@linkcode renew}), so no client is stranded with FAILED_PRECONDITION it cannot act on.
 */
export class GatewaySession {
  #current: ClientSession;
  #renewals = 0;

  constructor(first: ClientSession = new ClientSession()) {
    this.#current = first;
  }

  /** The session new mutations use. */
  get current(): ClientSession {
    return this.#current;
  }

  /** How many times the session was renewed. */
  get renewals(): number {
    return this.#renewals;
  }

  /**
   * Replaces `expired` by a new session, unless another call replaced it already. Mutations in
   * flight on the old one finish on it.
   */
  renew(expired: ClientSession): boolean {
    if (this.#current !== expired) return false;
    this.#current = new ClientSession();
    this.#renewals++;
    return true;
  }
}

/** The `KV` service of a gateway. */
export function kvService(options: KvServiceOptions): ServiceBinding {
  return kvBinding(kvHandlers(options));
}

/** A Txn's lists of compares and operations, by field number. */
const TXN_LISTS = new Map([[1, "compares"], [2, "success"], [3, "failure"]]);

/**
 * The `KV` service of `handlers`, its Txn requests read before they are decoded: more than 128
 * compares or operations in a list is INVALID_ARGUMENT without decoding it (a message of a million
 * empty operations takes seconds to decode).
 */
export function kvBinding(handlers: ServiceHandlers<typeof KVService>): ServiceBinding {
  return checkRequestsOf(
    // Watch requests too, so that one that cannot be decoded is INVALID_ARGUMENT (watch.ts).
    decodingWatchRequests(bindService(KVService, handlers)),
    "Txn",
    (bytes) => repeatedPast(bytes, TXN_LISTS, TXN_OPS_MAX, "TXN_OPS_MAX"),
  );
}

/** The typed handlers of {@linkcode kvService}, callable without a gRPC server. */
export function kvHandlers(options: KvServiceOptions): ServiceHandlers<typeof KVService> {
  const now = options.monotonicMs ?? (() => performance.now());
  const track = <T>(
    method: string,
    context: HandlerContext,
    work: (traceId: string) => Promise<RpcResult<T>>,
  ): Promise<RpcResult<T>> => {
    if (options.inFlight !== undefined) options.inFlight.count++;
    const started = now();
    const trace = traceOf(context);
    const traceId = typeof trace === "string" ? trace : "";
    if (traceId !== "") options.log?.info("Traced request received", { trace: traceId, method });
    const answered = typeof trace === "string" ? work(traceId) : Promise.resolve(trace);
    return answered.then((result) => {
      const seconds = (now() - started) / 1000;
      const status = statusName(result);
      options.observe?.(method, status, seconds);
      if (traceId !== "") {
        options.log?.info("Traced request answered", {
          trace: traceId,
          method,
          status,
          ms: Math.round(seconds * 1000 * 100) / 100,
        });
      }
      return result;
    }).finally(() => {
      if (options.inFlight === undefined) return;
      options.inFlight.count--;
      assert(options.inFlight.count >= 0, "More calls ended than started");
    });
  };
  const watches = options.watches;
  const watch = watches === undefined
    ? (call: grpc.ServerWritableStream<WatchRequest, WatchResponse>) =>
      void call.emit(
        "error",
        toServerError(rpcFailure("unimplemented", "This gateway serves no watches")),
      )
    : watchHandler(watches, (call) => traceOf({ metadata: call.metadata } as HandlerContext));
  return {
    Watch: watch,
    Get: (request, context) =>
      track("Get", context, async (traceId) => {
        const bad = check({ get: request }, options);
        if (bad !== undefined) return bad;
        const result = await options.router.route({ key: request.key }, {
          get: { key: request.key, serializable: request.serializable },
          traceId,
        }, deadlineOf(context, options));
        return answer(result, (item) => item.get as GetResponse);
      }),
    Put: (request, context) =>
      track("Put", context, (traceId) =>
        mutate(options, context, { put: request }, (session) => ({
          put: { ...request, ...session },
        }), (item) =>
          item.put as PutResponse, traceId)),
    Delete: (request, context) =>
      track(
        "Delete",
        context,
        (traceId) =>
          mutate(
            options,
            context,
            { delete: request },
            (session) => ({
              delete: { ...request, ...session },
            }),
            (item) => item.delete as DeleteResponse,
            traceId,
          ),
      ),
    Append: (request, context) =>
      track(
        "Append",
        context,
        (traceId) =>
          mutate(
            options,
            context,
            { append: request },
            (session) => ({
              append: { ...request, ...session },
            }),
            (item) => item.append as AppendResponse,
            traceId,
          ),
      ),
    CompareAndSwap: (request, context) =>
      track("CompareAndSwap", context, (traceId) =>
        mutate(
          options,
          context,
          { compareAndSwap: request },
          (session) => ({ compareAndSwap: { ...request, ...session } }),
          (item) => item.compareAndSwap as CompareAndSwapResponse,
          traceId,
        )),
    Txn: (request, context) =>
      track("Txn", context, async (traceId) => {
        const bad = check({ txn: request }, options);
        if (bad !== undefined) return bad;
        const keys = [...request.compares, ...request.success, ...request.failure].map((e) =>
          e.key
        );
        const spread = spreadOverShards((key) => options.router.shardOf(key)?.id, keys);
        if (spread !== undefined) return rpcFailure("invalidArgument", spread);
        return await mutate(
          options,
          context,
          { txn: request },
          (session) => ({ txn: { ...request, ...session } }),
          (item) => item.txn as TxnResponse,
          traceId,
        );
      }),
    Scan: (request, context) =>
      track("Scan", context, async (traceId) => {
        const bad = check({ scan: request }, options);
        if (bad !== undefined) return bad;
        return await scan(options, request, deadlineOf(context, options), traceId);
      }),
  };
}

type Session = { clientId: string; seq: number; ackSeq: number };

/**
 * The trace id the client asked for (metadata `tinykv-trace`): "" when none, or INVALID_ARGUMENT
 * when it is not 1 to TRACE_ID_CHARS_MAX characters of A-Z a-z 0-9 . _ -.
 */
function traceOf(context: HandlerContext): string | RpcFailure {
  const values = context.metadata.get(TRACE_METADATA);
  if (values.length === 0) return "";
  const id = String(values[0]);
  const problem = values.length > 1
    ? "Metadata tinykv-trace is given more than once"
    : checkTraceId(id);
  return problem === undefined ? id : rpcFailure("invalidArgument", problem);
}

/** Checks, gives a session, routes and answers one mutation. */
async function mutate<T>(
  options: KvServiceOptions,
  context: HandlerContext,
  fields: RequestFields,
  build: (session: Session) => RouteOp,
  pick: (item: NonNullable<Extract<RouteResult, { kind: "ok" }>["item"]>) => T,
  traceId: string,
): Promise<RpcResult<T>> {
  const bad = check(fields, options);
  if (bad !== undefined) return bad;
  const request = (fields.put ?? fields.delete ?? fields.append ?? fields.compareAndSwap ??
    fields.txn)!;
  const deadlineMs = deadlineOf(context, options);
  const target = { key: "key" in request ? request.key : txnKey(request) };
  if (request.clientId !== "") {
    const session = { clientId: request.clientId, seq: request.seq, ackSeq: request.ackSeq };
    const op = { ...build(session), traceId };
    return answer(await options.router.route(target, op, deadlineMs), pick);
  }
  for (let renewed = false;; renewed = true) {
    const session = options.session.current;
    const next = session.next();
    if (next === undefined) {
      return rpcFailure(
        "resourceExhausted",
        "Gateway has too many mutations in flight: retry later",
      );
    }
    let result: RouteResult;
    try {
      result = await options.router.route(
        target,
        { ...build({ clientId: session.clientId, ...next }), traceId },
        deadlineMs,
      );
    } finally {
      // Past its deadline nobody retries this seq, so the gateway's session may acknowledge it:
      // a late copy is then refused by the shard (seq <= ack_seq), never applied twice.
      session.answered(next.seq);
    }
    if (result.kind !== "failedPrecondition") return answer(result, pick);
    // A shard expired the gateway's own session: start a new one, which the caller cannot do.
    if (options.session.renew(session)) {
      options.log?.info("Renewed the gateway's session after a shard expired it", {
        expired: session.clientId,
        renewed: options.session.current.clientId,
      });
    }
    if (result.maybeApplied) {
      return rpcFailure(
        "deadlineExceeded",
        `Outcome unknown: an attempt may have applied the request before the gateway's ` +
          `session expired (${result.message})`,
      );
    }
    // Refused outright, so not applied: send it once more on the new session.
    if (renewed) {
      return rpcFailure("unavailable", `The gateway's new session was refused: ${result.message}`);
    }
  }
}

function answer<T>(
  result: RouteResult,
  pick: (item: NonNullable<Extract<RouteResult, { kind: "ok" }>["item"]>) => T,
): RpcResult<T> {
  if (result.kind === "ok") {
    const response = pick(result.item);
    if (response === undefined) {
      return rpcFailure("internal", "A kvnode answered with another operation's response");
    }
    return rpcOk(response);
  }
  return rpcFailure(result.kind, result.message);
}

/**
 * The absolute deadline to route with, on the router's clock (epoch milliseconds unless a test
 * injected another, as gRPC deadlines are): the client's, else the default, capped at the maximum.
 */
function deadlineOf(context: HandlerContext, options: KvServiceOptions): number {
  const now = options.router.clock.now();
  const client = Number.isFinite(context.deadlineMs)
    ? context.deadlineMs
    : now + options.requestTimeoutMs;
  return Math.min(client, now + options.requestTimeoutMsMax);
}

/** The key a Txn is routed by (checkTxn made sure it names one). */
function txnKey(txn: TxnFields): Uint8Array {
  return (txn.compares[0] ?? txn.success[0] ?? txn.failure[0]).key;
}

/**
 * INVALID_ARGUMENT when `keys` fall in more than one shard of the gateway's map (a Txn runs in one
 * shard, and TinyKV's shards are fixed, so no retry helps); undefined when they share one, or no
 * map is known yet (the router then waits for one, and the shard checks the keys again when it
 * applies). The etcd API answers the same case FAILED_PRECONDITION (etcd_service.ts).
 */
export function spreadOverShards(
  shardOf: (key: Uint8Array) => number | undefined,
  keys: readonly Uint8Array[],
): string | undefined {
  if (keys.length === 0) return undefined;
  const first = shardOf(keys[0]);
  if (first === undefined) return undefined;
  for (const key of keys) {
    const shard = shardOf(key);
    if (shard === undefined) return undefined;
    if (shard === first) continue;
    return `A Txn's keys must be in one shard: key ${describeKey(keys[0])} is in shard ${first} ` +
      `and key ${describeKey(key)} in shard ${shard} (give related keys one hash tag, {tag}, so ` +
      "that they share a shard)";
  }
  return undefined;
}

/**
 * A key for a message: its text when printable and at most 64 bytes, else its length and its first
 * bytes in hex (so that two keys of one length are told apart).
 */
export function describeKey(key: Uint8Array): string {
  if (key.length <= 64) {
    const text = new TextDecoder().decode(key);
    if (/^[\x20-\x7e]*$/.test(text)) return JSON.stringify(text);
  }
  const head = [...key.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `of ${key.length} bytes starting 0x${head}`;
}

/** Checks a request against every limit (libs/shard `checkRequest`). */
function check(fields: RequestFields, options: KvServiceOptions): RpcResult<never> | undefined {
  const violation = checkRequest(fields, { valueBytesMax: options.valueBytesMax });
  return violation === undefined ? undefined : rpcFailure("invalidArgument", violation.message);
}

/**
 * Scans every shard in parallel and merges. Each shard returns its smallest keys in the range; a
 * key smaller than every shard's resume key is therefore in some shard's page, so the merged pages
 * are complete below the smallest resume key, and `next` never skips a key.
 */
async function scan(
  options: KvServiceOptions,
  request: ScanRequest,
  deadlineMs: number,
  traceId: string,
): Promise<RpcResult<ScanResponse>> {
  const shards = options.router.shards();
  if (shards === undefined) return rpcFailure("unavailable", "No shard map is known yet");
  const pages = await Promise.all(
    shards.map((shardId) =>
      options.router.route({ shardId }, { scan: request, traceId }, deadlineMs)
    ),
  );
  const kvs: KeyValue[] = [];
  let resume: Uint8Array | undefined;
  for (const page of pages) {
    if (page.kind !== "ok") return rpcFailure(page.kind, page.message);
    const part = page.item.scan;
    if (part === undefined) {
      return rpcFailure("internal", "A kvnode answered a scan without a page");
    }
    kvs.push(...part.kvs);
    if (part.more && (resume === undefined || compareBytes(part.next, resume) < 0)) {
      resume = part.next;
    }
  }
  kvs.sort((a, b) => compareBytes(a.key, b.key));
  // Shards own disjoint ranges: one key in two shards' pages is a routing or placement bug, which
  // must not reach the client as a duplicate.
  for (let i = 1; i < kvs.length; i++) {
    assert(
      compareBytes(kvs[i - 1].key, kvs[i].key) < 0,
      () => `Two shards answered a scan with the same key (${kvs[i].key.length} bytes)`,
    );
  }
  const out: KeyValue[] = [];
  let bytes = 0;
  for (const kv of kvs) {
    if (resume !== undefined && compareBytes(kv.key, resume) >= 0) break;
    if (out.length >= request.limit || (out.length > 0 && bytes >= SCAN_BYTES_MAX)) {
      return rpcOk({ kvs: out, more: true, next: kv.key });
    }
    out.push(kv);
    bytes += kv.key.length + kv.value.length;
  }
  return rpcOk(
    resume === undefined
      ? { kvs: out, more: false, next: new Uint8Array() }
      : { kvs: out, more: true, next: resume },
  );
}
