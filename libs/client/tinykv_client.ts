/**
 * {@linkcode TinyKvClient}: the TypeScript client of TinyKV's public API (`tinykv.v1.KV`, served
 * by every gateway).
 *
 * - **Errors are thrown** as {@linkcode TinyKvError}, whose `code` is the status-table kind
 *   (`invalidArgument`, `unavailable`, `deadlineExceeded`, …) and whose `outcomeUnknown` says
 *   whether a mutation may have been applied. Expected outcomes are not errors: an absent key is
 *   `{found: false}`, a compare-and-swap that does not match is `{succeeded: false}`.
 * - **Exactly-once.** The client owns a {@linkcode ClientSession}: every mutation gets its own
 *   `seq` (and the current `ack_seq`), and every retry of it reuses the same `(client_id, seq)`, so
 *   the shard answers a duplicate with the original result instead of applying it twice.
 * - **Retries.** UNAVAILABLE and DEADLINE_EXCEEDED are retried within the call's deadline, with
 *   jittered exponential backoff, on the next endpoint each time (failover between gateways).
 *   Nothing else is retried. When the deadline runs out the call throws `deadlineExceeded` if any
 *   attempt may have applied the request, else the last failure.
 * - Keys and values are `Uint8Array` or `string` (encoded as UTF-8); results are `Uint8Array`;
 *   {@linkcode text} decodes them.
 * - Time comes from an injected `Clock` and calls go through an injected
 *   {@linkcode GatewayConnection} (gRPC by default), so the retry rules run on a `FakeClock` in
 *   tests.
 *
 * @module
 */
import {
  type KeyValue,
  KVService,
  type WatchEvent,
  type WatchPosition,
  type WatchRequest,
  type WatchResponse,
} from "@tinykv/proto/tinykv/v1";
import * as grpc from "@grpc/grpc-js";
import {
  type ClientSecurity,
  createGrpcClient,
  failureFromError,
  MESSAGE_BYTES_MAX_DEFAULT,
  outcomeOf,
  type RequestOf,
  type ResponseOf,
  type RpcFailure,
  type RpcFailureKind,
  type RpcResult,
  traceMetadata,
  unaryCaller,
  type UnaryCallOptions,
} from "@tinykv/rpc";
import { backoffDelayMs, type Clock, systemClock } from "@tinykv/timer";
import { ClientSession } from "./session.ts";

/** Bytes as the client accepts them: raw bytes, or a string sent as its UTF-8 encoding. */
export type Bytes = Uint8Array | string;

/** The deadline of a call that sets none, in milliseconds. */
export const CLIENT_DEADLINE_MS_DEFAULT = 5000;
/** The page size of a scan that sets no limit. */
export const SCAN_PAGE_SIZE_DEFAULT = 1000;
const BACKOFF_MIN_MS = 10;
const BACKOFF_MAX_MS = 250;
/** How long a watch tries the endpoints again after its stream failed, before it fails. */
export const WATCH_RECONNECT_MS = 30_000;
/** Bytes of changes a watch holds for a caller that has not taken them, before it fails. */
export const WATCH_QUEUE_BYTES_MAX = 16 * 1024 * 1024;

function watchResponseBytes(response: WatchResponse): number {
  let bytes = 16 + 16 * response.positions.length;
  for (const event of response.events) bytes += 32 + event.key.length + event.value.length;
  return bytes;
}

/** Options of {@linkcode TinyKvClient.connect}. */
export interface TinyKvClientOptions {
  /** One or more gateways, as `host:port`; calls start at the first and rotate on failure. */
  readonly endpoints: readonly string[];
  /** How long a call may take, retries included, unless the call sets its own; default 5000. */
  readonly deadlineMs?: number;
  /** The largest message sent or received, in bytes; default 4 MiB. */
  readonly maxMessageBytes?: number;
  /** The session's client id; default a random `c-<uuid>`. */
  readonly clientId?: string;
  /** Randomness for backoff jitter; default `Math.random`. */
  readonly prng?: () => number;
  /** The clock deadlines and backoff pauses are measured on; default the real one. */
  readonly clock?: Clock;
  /** TLS (trusting the cluster's CA) and the caller's token; default plaintext, no credential. */
  readonly security?: ClientSecurity;
  /** Opens the connection to one gateway; default {@linkcode grpcGatewayConnection}. */
  readonly connect?: (
    endpoint: string,
    options: { readonly maxMessageBytes: number; readonly security?: ClientSecurity },
  ) => GatewayConnection;
}

/** The unary methods of `tinykv.v1.KV`. */
export type KvMethod = "Get" | "Put" | "Delete" | "Append" | "CompareAndSwap" | "Scan";

/** One gateway as the client reaches it: over gRPC, or an in-memory fake in tests. */
export interface GatewayConnection {
  /** Calls `method` with a deadline; never rejects: a failure resolves to a typed result. */
  call<K extends KvMethod>(
    method: K,
    request: RequestOf<(typeof KVService)[K]>,
    options: UnaryCallOptions,
  ): Promise<RpcResult<ResponseOf<(typeof KVService)[K]>>>;
  /** Opens a `Watch` stream; what arrives goes to `events` (absent: this gateway has no watches). */
  watch?(
    request: WatchRequest,
    options: { readonly metadata?: grpc.Metadata },
    events: {
      onResponse(response: WatchResponse): void;
      onEnd(failure: RpcFailure): void;
    },
  ): { pause(): void; resume(): void; cancel(): void };
  /** Closes the connection. */
  close(): void;
}

/** Opens a gRPC channel to the gateway at `endpoint` (connected lazily, on the first call). */
export function grpcGatewayConnection(
  endpoint: string,
  options: { readonly maxMessageBytes: number; readonly security?: ClientSecurity },
): GatewayConnection {
  const client = createGrpcClient(KVService, endpoint, {
    maxMessageBytes: options.maxMessageBytes,
    ...options.security,
  });
  return {
    call: <K extends KvMethod>(
      method: K,
      request: RequestOf<(typeof KVService)[K]>,
      callOptions: UnaryCallOptions,
    ) => unaryCaller<typeof KVService, K>(client, method)(request, callOptions),
    watch: (request, watchOptions, events) => {
      const call = client.Watch(request, watchOptions.metadata ?? new grpc.Metadata(), {});
      let ended = false;
      const end = (failure: RpcFailure) => {
        if (ended) return;
        ended = true;
        events.onEnd(failure);
      };
      call.on("data", (response: WatchResponse) => {
        if (!ended) events.onResponse(response);
      });
      call.on("error", (error: unknown) => end(failureFromError(error)));
      call.on(
        "end",
        () =>
          setImmediate(() => end({ kind: "unavailable", message: "The gateway ended the watch" })),
      );
      return {
        pause: () => call.pause(),
        resume: () => call.resume(),
        cancel: () => {
          ended = true;
          call.cancel();
        },
      };
    },
    close: () => client.close(),
  };
}

/** What {@linkcode TinyKvClient.watch} watches and from where. */
export interface WatchOptions {
  /** Watch every key starting with the key (an empty key: every key). */
  readonly prefix?: boolean;
  /** Resume after these positions (as a watch reported them); shards not named start now. */
  readonly start?: readonly WatchPosition[];
  /** Ends the watch: the iteration then finishes without an error. */
  readonly signal?: AbortSignal;
  /** Follow the watch in the services' logs (see {@linkcode CallOptions.traceId}). */
  readonly traceId?: string;
}

/** One message of a watch: events (possibly none) and the positions reached. */
export interface WatchUpdate {
  readonly events: readonly WatchEvent[];
  /** Where the watch stands in each shard that moved (every shard, in the first update). */
  readonly positions: readonly WatchPosition[];
}

/** Options every call takes. */
export interface CallOptions {
  /** How long this call may take, retries included; default the client's `deadlineMs`. */
  readonly deadlineMs?: number;
  /** Cancels the call: it then throws `cancelled` (outcome unknown for a mutation). */
  readonly signal?: AbortSignal;
  /**
   * Asks the services to follow this call under this id (1 to 64 characters of A-Z a-z 0-9 . _
   * -): each logs its steps with field `trace`; `tinykv trace ID` reads them back.
   */
  readonly traceId?: string;
}

/** The result of {@linkcode TinyKvClient.get}. */
export interface GetResult {
  /** Whether the key exists. */
  readonly found: boolean;
  /** The value; empty when not found (an existing key may also hold an empty value). */
  readonly value: Uint8Array;
}

/** The comparison of {@linkcode TinyKvClient.compareAndSwap}. */
export type CasCondition = { readonly expected: Bytes } | { readonly expectAbsent: true };

/** What {@linkcode TinyKvClient.compareAndSwap} does on a match, plus call options. */
export type CasAction =
  & ({ readonly value: Bytes } | { readonly delete: true })
  & CallOptions;

/** The result of {@linkcode TinyKvClient.compareAndSwap}; a mismatch is not an error. */
export interface CasResult {
  /** Whether the comparison matched and the set or delete was applied. */
  readonly succeeded: boolean;
  /** Whether the key existed before this request. */
  readonly found: boolean;
  /** The key's value before this request; empty when not found. */
  readonly current: Uint8Array;
}

/** A key range of a scan: `start` inclusive, `end` exclusive; absent means unbounded. */
export interface ScanRange extends CallOptions {
  /** The first key (inclusive); default the start of the key space. */
  readonly start?: Bytes;
  /** The key to stop before (exclusive); default the end of the key space. */
  readonly end?: Bytes;
}

/** Options of {@linkcode TinyKvClient.scan}. */
export interface ScanOptions extends ScanRange {
  /** The most keys in the page: 1 to 10,000; default 1000. */
  readonly limit?: number;
}

/** Options of {@linkcode TinyKvClient.scanAll} and {@linkcode TinyKvClient.scanPages}. */
export interface ScanAllOptions extends ScanRange {
  /** The most keys per page: 1 to 10,000; default 1000. Each page has its own deadline. */
  readonly pageSize?: number;
}

/** One page of a scan, keys in byte order. */
export interface ScanPage {
  /** The keys and values, in byte order of the keys. */
  readonly entries: readonly KeyValue[];
  /** Whether keys may remain: scan again from `next`. */
  readonly more: boolean;
  /** The first key not returned (pass it as `start`); undefined when `more` is false. */
  readonly next: Uint8Array | undefined;
}

export type { KeyValue };

/**
 * The kind of a {@linkcode TinyKvError}: a row of docs/design.md "Status codes" (`invalidArgument`,
 * `unavailable`, `deadlineExceeded`, `failedPrecondition`, `resourceExhausted`, `dataLoss`,
 * `internal`, `unauthenticated`, `permissionDenied`), or `cancelled` (the caller's signal, or a
 * closed client).
 */
export type TinyKvErrorCode =
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

// Invariant: the codes are exactly the status table's failure kinds.
const _SAME_KINDS: [TinyKvErrorCode, RpcFailureKind] extends [RpcFailureKind, TinyKvErrorCode]
  ? true
  : never = true;

/**
 * A failed call. `code` is the status-table kind of the final failure; `outcomeUnknown` is true
 * when the request may have been applied (a mutation that timed out or was cancelled after being
 * sent). A caller that must know can read the key again, or retry: the client already retried
 * with the same `(client_id, seq)` until the deadline.
 */
export class TinyKvError extends Error {
  /** The kind of failure, one per row of docs/design.md "Status codes", plus `cancelled`. */
  readonly code: TinyKvErrorCode;
  /** Whether the request may have taken effect. Always false for reads. */
  readonly outcomeUnknown: boolean;
  /** How many requests were sent (0 when the call failed before sending any). */
  readonly attempts: number;

  /** Creates an error for `failure`. */
  constructor(failure: RpcFailure, options: { outcomeUnknown: boolean; attempts: number }) {
    super(failure.message);
    this.name = "TinyKvError";
    this.code = failure.kind;
    this.outcomeUnknown = options.outcomeUnknown;
    this.attempts = options.attempts;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a string as UTF-8; returns bytes as they are. */
export function bytes(value: Bytes): Uint8Array {
  return typeof value === "string" ? encoder.encode(value) : value;
}

/** Decodes bytes as UTF-8 (invalid sequences become U+FFFD). */
export function text(value: Uint8Array): string {
  return decoder.decode(value);
}

type Session = { clientId: string; seq: number; ackSeq: number };
const NO_SESSION: Session = { clientId: "", seq: 0, ackSeq: 0 };

/**
 * A client of one TinyKV cluster through one or more gateways. Calls may run concurrently; each
 * is independent (its own deadline, its own retries). Close it with {@linkcode close}.
 *
 * @example
 * ```ts ignore
 * import { text, TinyKvClient } from "@tinykv/client";
 *
 * const client = TinyKvClient.connect({ endpoints: ["127.0.0.1:7700"] });
 * await client.put("greeting", "hello");
 * const { found, value } = await client.get("greeting");
 * console.log(found, text(value));
 * for await (const { key, value } of client.scanAll({ start: "g" })) console.log(text(key), text(value));
 * client.close();
 * ```
 */
export class TinyKvClient {
  readonly #endpoints: readonly string[];
  readonly #deadlineMs: number;
  readonly #maxMessageBytes: number;
  readonly #prng: (() => number) | undefined;
  readonly #clock: Clock;
  readonly #connect: NonNullable<TinyKvClientOptions["connect"]>;
  readonly #security: ClientSecurity | undefined;
  readonly #connections = new Map<string, GatewayConnection>();
  #session: ClientSession;
  #preferred = 0;
  #closed = false;

  private constructor(options: TinyKvClientOptions) {
    if (options.endpoints.length === 0) {
      throw new TypeError("Cannot connect without endpoints: expected at least one host:port");
    }
    for (const endpoint of options.endpoints) {
      if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$/.test(endpoint)) {
        throw new TypeError(`Cannot connect to endpoint "${endpoint}": expected host:port`);
      }
    }
    const deadlineMs = options.deadlineMs ?? CLIENT_DEADLINE_MS_DEFAULT;
    if (!(Number.isFinite(deadlineMs) && deadlineMs > 0)) {
      throw new RangeError(`Cannot use deadlineMs ${deadlineMs}: expected a positive number`);
    }
    this.#endpoints = [...options.endpoints];
    this.#deadlineMs = deadlineMs;
    this.#maxMessageBytes = options.maxMessageBytes ?? MESSAGE_BYTES_MAX_DEFAULT;
    this.#prng = options.prng;
    this.#clock = options.clock ?? systemClock;
    this.#connect = options.connect ?? grpcGatewayConnection;
    this.#security = options.security;
    this.#session = new ClientSession({ clientId: options.clientId });
  }

  /** Creates a client of the gateways in `options.endpoints`; connections open on first use. */
  static connect(options: TinyKvClientOptions): TinyKvClient {
    return new TinyKvClient(options);
  }

  /** The session's client id (a new one after the server reports the session expired). */
  get clientId(): string {
    return this.#session.clientId;
  }

  /** Reads `key`: linearizable, or possibly stale but cheaper with `serializable`. */
  async get(
    key: Bytes,
    options: CallOptions & { serializable?: boolean } = {},
  ): Promise<GetResult> {
    const response = await this.#call("Get", () => ({
      key: bytes(key),
      serializable: options.serializable ?? false,
    }), { mutation: false, ...options });
    return { found: response.found, value: response.value };
  }

  /** Sets `key` to `value`, creating or replacing it. */
  async put(key: Bytes, value: Bytes, options: CallOptions = {}): Promise<void> {
    await this.#call("Put", (session) => ({ key: bytes(key), value: bytes(value), ...session }), {
      mutation: true,
      ...options,
    });
  }

  /** Removes `key`; returns whether it existed. */
  async delete(key: Bytes, options: CallOptions = {}): Promise<boolean> {
    const response = await this.#call("Delete", (session) => ({ key: bytes(key), ...session }), {
      mutation: true,
      ...options,
    });
    return response.deleted;
  }

  /** Appends `value` to `key`'s value (creating the key); returns the new length in bytes. */
  async append(key: Bytes, value: Bytes, options: CallOptions = {}): Promise<number> {
    const response = await this.#call(
      "Append",
      (session) => ({ key: bytes(key), value: bytes(value), ...session }),
      { mutation: true, ...options },
    );
    return response.length;
  }

  /**
   * Sets `key` to `action.value` (or deletes it, with `action.delete`) only when it currently holds
   * `condition.expected` (or is absent, with `condition.expectAbsent`).
   */
  async compareAndSwap(key: Bytes, condition: CasCondition, action: CasAction): Promise<CasResult> {
    const expectAbsent = "expectAbsent" in condition && condition.expectAbsent === true;
    const expected = "expected" in condition ? bytes(condition.expected) : new Uint8Array();
    const remove = "delete" in action && action.delete === true;
    const value = "value" in action ? bytes(action.value) : new Uint8Array();
    const response = await this.#call("CompareAndSwap", (session) => ({
      key: bytes(key),
      expected,
      expectAbsent,
      value,
      delete: remove,
      ...session,
    }), {
      mutation: true,
      deadlineMs: action.deadlineMs,
      signal: action.signal,
      traceId: action.traceId,
    });
    return { succeeded: response.succeeded, found: response.found, current: response.current };
  }

  /**
   * Reads one page of keys in `[start, end)`. Each shard's part is linearizable; a scan across
   * shards is not a snapshot of the whole cluster.
   */
  async scan(options: ScanOptions = {}): Promise<ScanPage> {
    const response = await this.#call("Scan", () => ({
      start: bytes(options.start ?? ""),
      end: bytes(options.end ?? ""),
      limit: options.limit ?? SCAN_PAGE_SIZE_DEFAULT,
    }), { mutation: false, ...options });
    return {
      entries: response.kvs,
      more: response.more,
      next: response.more ? response.next : undefined,
    };
  }

  /** Every page of `[start, end)` in key order, each read with its own deadline. */
  async *scanPages(options: ScanAllOptions = {}): AsyncGenerator<ScanPage, void, undefined> {
    let start: Bytes | undefined = options.start;
    for (;;) {
      const page = await this.scan({ ...options, start, limit: options.pageSize });
      yield page;
      if (!page.more || page.next === undefined) return;
      start = page.next;
    }
  }

  /** Every key and value of `[start, end)` in key order, once each, fetched page by page. */
  async *scanAll(options: ScanAllOptions = {}): AsyncGenerator<KeyValue, void, undefined> {
    for await (const page of this.scanPages(options)) yield* page.entries;
  }

  /**
   * Watches `key` (with `prefix`, every key under it): the first update lists where the watch
   * starts in each shard; later ones carry every put and delete after that, once, in each key's
   * order. When a gateway fails or stops, the watch resumes on the next endpoint from the last
   * positions, so nothing is missed or repeated. It throws {@linkcode TinyKvError} when it
   * cannot go on (`outOfRange`: a position no longer held; `resourceExhausted`: too slow;
   * `invalidArgument`), and ends quietly when `signal` aborts.
   */
  async *watch(
    key: Bytes,
    options: WatchOptions = {},
  ): AsyncGenerator<WatchUpdate, void, undefined> {
    const positions = new Map<number, number>();
    for (const position of options.start ?? []) {
      if (positions.has(position.shard)) {
        throw new TinyKvError({
          kind: "invalidArgument",
          message: `Watch start names shard ${position.shard} twice`,
        }, { outcomeUnknown: false, attempts: 0 });
      }
      positions.set(position.shard, position.index);
    }
    let attempts = 0;
    let lastHeard = this.#clock.now();
    let last: RpcFailure = { kind: "unavailable", message: "No gateway answered" };
    while (!this.#closed && !aborted(options.signal)) {
      const endpoint = this.#endpoints[this.#preferred];
      const connection = this.#connection(endpoint);
      if (connection.watch === undefined) {
        throw new TinyKvError(
          { kind: "unimplemented", message: "This connection has no watches" },
          {
            outcomeUnknown: false,
            attempts,
          },
        );
      }
      attempts++;
      // What arrived and the caller has not taken yet. The stream is never paused: a paused
      // stream makes a Deno gateway buffer without bound (its HTTP/2 server takes every write),
      // so a caller that falls behind by WATCH_QUEUE_BYTES_MAX is told instead.
      const queue: Array<WatchResponse | RpcFailure> = [];
      let queued = 0;
      let wake: (() => void) | undefined;
      let healthy = false;
      const push = (item: WatchResponse | RpcFailure) => {
        if (!("kind" in item)) {
          const bytes = watchResponseBytes(item);
          queued += bytes;
          // One response alone, however large (an index is never split), always gets through.
          if (queued > WATCH_QUEUE_BYTES_MAX && queued > bytes) {
            stream.cancel();
            item = {
              kind: "resourceExhausted",
              message: `The watch's caller takes its changes too slowly: ${queued} bytes wait, ` +
                `at most ${WATCH_QUEUE_BYTES_MAX}; resume from the last positions it took`,
            };
          }
        }
        queue.push(item);
        wake?.();
      };
      const request: WatchRequest = {
        key: bytes(key),
        prefix: options.prefix ?? false,
        start: [...positions].map(([shard, index]) => ({ shard, index })),
      };
      const stream = connection.watch(request, { metadata: traceMetadata(options.traceId) }, {
        onResponse: (response) => push(response),
        onEnd: (failure) => push(failure),
      });
      const onAbort = () => {
        stream.cancel();
        wake?.();
      };
      options.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        for (;;) {
          if (aborted(options.signal) || this.#closed) return;
          const item = queue.shift();
          if (item === undefined) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
            continue;
          }
          if ("kind" in item) {
            last = item;
            break;
          }
          queued -= watchResponseBytes(item);
          healthy = true;
          attempts = 0;
          lastHeard = this.#clock.now();
          for (const position of item.positions) positions.set(position.shard, position.index);
          yield { events: item.events, positions: item.positions };
        }
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
        stream.cancel();
      }
      if (last.kind !== "unavailable" && last.kind !== "cancelled") {
        throw new TinyKvError(last, { outcomeUnknown: false, attempts });
      }
      // A quiet watch may go long without a message: the bound runs from its first failure.
      if (healthy) lastHeard = this.#clock.now();
      if (this.#clock.now() - lastHeard > WATCH_RECONNECT_MS) {
        throw new TinyKvError({
          kind: last.kind,
          message: `${last.message} (no gateway served the watch for ${WATCH_RECONNECT_MS} ms)`,
        }, { outcomeUnknown: false, attempts });
      }
      this.#preferred = (this.#preferred + 1) % this.#endpoints.length;
      await this.#pause(Math.max(0, attempts - 1), this.#clock.now() + BACKOFF_MAX_MS);
    }
  }

  /** Closes every connection; later calls throw `cancelled`. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const connection of this.#connections.values()) connection.close();
    this.#connections.clear();
  }

  /**
   * Sends one request, retrying UNAVAILABLE and DEADLINE_EXCEEDED on the next endpoint until the
   * deadline. A mutation's every attempt carries the same `(client_id, seq, ack_seq)`.
   */
  async #call<K extends KvMethod>(
    method: K,
    build: (session: Session) => RequestOf<(typeof KVService)[K]>,
    options: CallOptions & { mutation: boolean },
  ): Promise<ResponseOf<(typeof KVService)[K]>> {
    const deadline = this.#clock.now() + (options.deadlineMs ?? this.#deadlineMs);
    if (this.#closed) throw closedError(false);
    const session = this.#session;
    let pair: Session = NO_SESSION;
    if (options.mutation) {
      const next = session.next();
      if (next === undefined) {
        throw new TinyKvError({
          kind: "resourceExhausted",
          message: `Client has ${session.outstanding} mutations in flight: retry later`,
        }, { outcomeUnknown: false, attempts: 0 });
      }
      pair = { clientId: session.clientId, ...next };
    }
    const request = build(pair);
    let attempts = 0;
    let unknown = false;
    let last: RpcFailure = { kind: "deadlineExceeded", message: "Call deadline passed" };
    try {
      for (;;) {
        if (this.#closed) throw closedError(unknown || (options.mutation && attempts > 0));
        const remaining = deadline - this.#clock.now();
        if (remaining <= 0) break;
        const endpoint = this.#endpoints[this.#preferred];
        attempts++;
        const result = await this.#connection(endpoint).call(method, request, {
          deadlineMs: remaining,
          signal: options.signal,
          metadata: traceMetadata(options.traceId),
        });
        if (result.kind === "ok") return result.response;
        last = result;
        if (options.mutation && outcomeOf(result) === "unknown") unknown = true;
        if (result.kind === "failedPrecondition" && this.#session === session) {
          // The session expired: its seqs can no longer be deduplicated, so later calls use a
          // new one. This call is not retried, since an earlier attempt may have applied it.
          this.#session = new ClientSession();
        }
        if (result.kind !== "unavailable" && result.kind !== "deadlineExceeded") break;
        this.#preferred = (this.#preferred + 1) % this.#endpoints.length;
        await this.#pause(attempts - 1, deadline);
      }
    } finally {
      if (options.mutation) session.answered(pair.seq);
    }
    if (this.#clock.now() >= deadline && last.kind === "unavailable" && unknown) {
      last = {
        kind: "deadlineExceeded",
        message: `${last.message} (an earlier attempt timed out)`,
      };
    }
    throw new TinyKvError(last, { outcomeUnknown: unknown, attempts });
  }

  #connection(endpoint: string): GatewayConnection {
    let connection = this.#connections.get(endpoint);
    if (connection === undefined) {
      connection = this.#connect(endpoint, {
        maxMessageBytes: this.#maxMessageBytes,
        security: this.#security,
      });
      this.#connections.set(endpoint, connection);
    }
    return connection;
  }

  async #pause(attempt: number, deadline: number): Promise<void> {
    const delay = backoffDelayMs(Math.min(attempt, 16), {
      minMs: BACKOFF_MIN_MS,
      maxMs: BACKOFF_MAX_MS,
      prng: this.#prng,
    });
    const wait = Math.min(delay, deadline - this.#clock.now());
    if (wait > 0) {
      await new Promise<void>((resolve) => this.#clock.setTimeout(() => resolve(), wait));
    }
  }
}

function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted ?? false;
}

function closedError(outcomeUnknown: boolean): TinyKvError {
  return new TinyKvError({ kind: "cancelled", message: "Client is closed" }, {
    outcomeUnknown,
    attempts: 0,
  });
}
