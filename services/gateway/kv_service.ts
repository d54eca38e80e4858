/**
 * The gateway's client API, `tinykv.v1.KV`: each call is checked, given an exactly-once identity
 * when it is a mutation without one, routed to its shard's leader by `libs/client`'s router
 * (retries keep the same `(client_id, seq)`), and answered with the product's status table before
 * the client's deadline. A scan asks every shard in parallel and merges the pages in key order.
 *
 * @module
 */
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
} from "@tinykv/proto/tinykv/v1";
import type { ClientSession, KvRouter, RouteOp, RouteResult } from "@tinykv/client";
import {
  bindService,
  type HandlerContext,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
} from "@tinykv/rpc";
import { compareBytes, validateKey, validateValue } from "@tinykv/shard";

/** The most keys one scan may ask for. */
export const SCAN_LIMIT_MAX = 10_000;
/** Keys and values in one scan answer before it is cut (DESIGN.md "Scan"). */
export const SCAN_BYTES_MAX = 1024 * 1024;
/** The longest client id, in UTF-8 bytes (as kvnodes check it). */
export const CLIENT_ID_BYTES_MAX = 128;

/** Options of {@linkcode kvService}. */
export interface KvServiceOptions {
  readonly router: KvRouter;
  /** The gateway's own session, for mutations that come without a `client_id`. */
  readonly session: ClientSession;
  /** The deadline of a call that sets none, and the longest deadline honoured. */
  readonly requestTimeoutMs: number;
  readonly requestTimeoutMsMax: number;
  readonly valueBytesMax: number;
  /** Counts calls in flight, so a graceful shutdown can wait for them. */
  readonly inFlight?: { count: number };
}

const encoder = new TextEncoder();

/** The `KV` service of a gateway. */
export function kvService(options: KvServiceOptions): ServiceBinding {
  const track = <T>(work: () => Promise<RpcResult<T>>): Promise<RpcResult<T>> => {
    if (options.inFlight !== undefined) options.inFlight.count++;
    return work().finally(() => {
      if (options.inFlight !== undefined) options.inFlight.count--;
    });
  };
  return bindService(KVService, {
    Get: (request, context) =>
      track(async () => {
        const bad = checkKey(request.key);
        if (bad !== undefined) return bad;
        const result = await options.router.route({ key: request.key }, {
          get: { key: request.key, serializable: request.serializable },
        }, deadlineOf(context, options));
        return answer(result, (item) => item.get as GetResponse);
      }),
    Put: (request, context) =>
      track(() =>
        mutate(options, context, request, { value: request.value }, (session) => ({
          put: { ...request, ...session },
        }), (item) => item.put as PutResponse)
      ),
    Delete: (request, context) =>
      track(() =>
        mutate(options, context, request, {}, (session) => ({
          delete: { ...request, ...session },
        }), (item) => item.delete as DeleteResponse)
      ),
    Append: (request, context) =>
      track(() =>
        mutate(options, context, request, { value: request.value }, (session) => ({
          append: { ...request, ...session },
        }), (item) => item.append as AppendResponse)
      ),
    CompareAndSwap: (request, context) =>
      track(() =>
        mutate(
          options,
          context,
          request,
          { value: request.value, expected: request.expected },
          (session) => ({ compareAndSwap: { ...request, ...session } }),
          (item) => item.compareAndSwap as CompareAndSwapResponse,
        )
      ),
    Scan: (request, context) => track(() => scan(options, request, deadlineOf(context, options))),
  });
}

type Session = { clientId: string; seq: number; ackSeq: number };

/** Checks, gives a session, routes and answers one mutation. */
async function mutate<T>(
  options: KvServiceOptions,
  context: HandlerContext,
  request: { key: Uint8Array; clientId: string; seq: number; ackSeq: number },
  values: Record<string, Uint8Array>,
  build: (session: Session) => RouteOp,
  pick: (item: NonNullable<Extract<RouteResult, { kind: "ok" }>["item"]>) => T,
): Promise<RpcResult<T>> {
  const bad = checkKey(request.key) ?? checkValues(values, options.valueBytesMax) ??
    checkSession(request);
  if (bad !== undefined) return bad;
  let session: Session;
  let own: number | undefined;
  if (request.clientId !== "") {
    session = { clientId: request.clientId, seq: request.seq, ackSeq: request.ackSeq };
  } else {
    const next = options.session.next();
    if (next === undefined) {
      return rpcFailure(
        "resourceExhausted",
        "Gateway has too many mutations in flight: retry later",
      );
    }
    session = { clientId: options.session.clientId, ...next };
    own = next.seq;
  }
  try {
    const result = await options.router.route(
      { key: request.key },
      build(session),
      deadlineOf(context, options),
    );
    return answer(result, pick);
  } finally {
    // Past its deadline nobody retries this seq, so the gateway's session may acknowledge it: a
    // late copy is then refused by the shard (seq <= ack_seq), never applied twice.
    if (own !== undefined) options.session.answered(own);
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

/** The absolute deadline to route with: the client's, else the default, capped at the maximum. */
function deadlineOf(context: HandlerContext, options: KvServiceOptions): number {
  const now = Date.now();
  const client = Number.isFinite(context.deadlineMs)
    ? context.deadlineMs
    : now + options.requestTimeoutMs;
  return Math.min(client, now + options.requestTimeoutMsMax);
}

function checkKey(key: Uint8Array): RpcResult<never> | undefined {
  const size = validateKey(key);
  return size.kind === "ok"
    ? undefined
    : rpcFailure("invalidArgument", `Field "key": ${size.message}`);
}

function checkValues(
  values: Record<string, Uint8Array>,
  valueBytesMax: number,
): RpcResult<never> | undefined {
  for (const [field, value] of Object.entries(values)) {
    const size = validateValue(value, { valueBytesMax });
    if (size.kind !== "ok") {
      return rpcFailure("invalidArgument", `Field "${field}": ${size.message}`);
    }
  }
  return undefined;
}

function checkSession(
  request: { clientId: string; seq: number; ackSeq: number },
): RpcResult<never> | undefined {
  if (request.clientId === "") {
    if (request.seq !== 0 || request.ackSeq !== 0) {
      return rpcFailure("invalidArgument", 'Fields "seq" and "ack_seq" need a "client_id"');
    }
    return undefined;
  }
  const bytes = encoder.encode(request.clientId).length;
  if (bytes > CLIENT_ID_BYTES_MAX) {
    return rpcFailure(
      "invalidArgument",
      `Field "client_id" has ${bytes} bytes: the limit is ${CLIENT_ID_BYTES_MAX}`,
    );
  }
  if (request.seq === 0 || request.ackSeq >= request.seq) {
    return rpcFailure(
      "invalidArgument",
      `Field "seq" is ${request.seq} and "ack_seq" is ${request.ackSeq}: seq must be positive ` +
        "and greater than ack_seq",
    );
  }
  return undefined;
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
): Promise<RpcResult<ScanResponse>> {
  if (request.limit < 1 || request.limit > SCAN_LIMIT_MAX) {
    return rpcFailure(
      "invalidArgument",
      `Field "limit" is ${request.limit}: expected 1 to ${SCAN_LIMIT_MAX}`,
    );
  }
  if (request.end.length > 0 && compareBytes(request.start, request.end) > 0) {
    return rpcFailure("invalidArgument", 'Field "start" is after "end": expected start <= end');
  }
  const shards = options.router.shards();
  if (shards === undefined) return rpcFailure("unavailable", "No shard map is known yet");
  const pages = await Promise.all(
    shards.map((shardId) => options.router.route({ shardId }, { scan: request }, deadlineMs)),
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
