/**
 * etcd's `Watch.Watch` on the gateway (docs/design.md "The etcd API"), mapped onto TinyKV's
 * watches ({@linkcode GatewayWatches}): one bidi stream carries any number of watches, each
 * created, canceled and reported as etcd does.
 *
 * - A create request names a key, a prefix or any `[key, range_end)` (`range_end` `\0`: every key
 *   from `key` on). The watch starts now: `start_revision` 0. TinyKV has no cluster-wide revision,
 *   so a watch from an earlier revision cannot be honoured; it is created and canceled at once with
 *   the reason, as etcd refuses a watch. So is one asking for `prev_kv` (TinyKV's events carry no
 *   previous value), and one whose `watch_id` is in use on the stream.
 * - The `created` answer comes once the watch has started in every shard it covers, so every
 *   change after it is reported. Events carry the key and value; their revisions are 1, as in every
 *   other answer of the etcd API. The `NOPUT` and `NODELETE` filters drop events here.
 * - A cancel request ends the watch (`canceled`); a progress request is answered with one
 *   response of watch id -1, as etcd 3.4 does. A watch TinyKV has to end (its client too slow, the
 *   gateway stopping) is canceled with the reason.
 * - Bounds on what one stream's requests cost: at most {@linkcode ETCD_STREAM_WATCHES_MAX} watches
 *   started or starting; a create starts in the event-loop turn after it arrives, so one canceled
 *   by a request of the same read opens nothing; and while the client takes no more, at most
 *   {@linkcode ETCD_STREAM_ANSWERS_UNREAD_BYTES_MAX} of answers, then the stream ends.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import {
  type Event,
  Event_EventType,
  type ResponseHeader,
  type WatchCreateRequest,
  WatchCreateRequest_FilterType,
  type WatchRequest,
  type WatchResponse,
} from "@tinykv/proto/etcdserverpb";
import {
  WatchEvent_Kind,
  type WatchResponse as GatewayWatchResponse,
} from "@tinykv/proto/tinykv/v1";
import { type RpcFailure, rpcFailure, SendGate, toServerError } from "@tinykv/rpc";
import { compareBytes, KEY_BYTES_MAX } from "@tinykv/shard";
import { assert } from "./_assert.ts";
import type { GatewayWatch, GatewayWatches, WatchRange } from "./watch.ts";

/** The revision every answer of the etcd API reports (TinyKV keeps no history). */
const REVISION = 1;
/** Watches one etcd stream may hold at once, started or starting. */
export const ETCD_STREAM_WATCHES_MAX = 1024;
/**
 * Bytes of answers to its requests (created, canceled, refused, progress; about 32 bytes each
 * and the reason) one etcd stream may write while its client takes no more (its send window is
 * closed, as last seen): past it, the client sends requests faster than it reads their answers,
 * and the stream ends RESOURCE_EXHAUSTED rather than have the gateway buffer answers without
 * bound. Events are not counted here: a watch stops at its first message the client does not
 * take, and queues within its own bound.
 */
export const ETCD_STREAM_ANSWERS_UNREAD_BYTES_MAX = 1024 * 1024;
/** What an answer without events counts against {@linkcode ETCD_STREAM_ANSWERS_UNREAD_BYTES_MAX}. */
const ANSWER_BYTES = 32;

/** What {@linkcode serveEtcdWatch} needs besides the stream. */
export interface EtcdWatchOptions {
  readonly watches: GatewayWatches;
  readonly header: () => ResponseHeader;
  /** How a key is named in messages (printable, or its first bytes in hex). */
  readonly describeKey: (key: Uint8Array) => string;
}

/** A request the stream could not decode (see etcd_service.ts `watchBinding`). */
export interface Undecoded {
  readonly message: string;
}

type EtcdWatchCall = grpc.ServerDuplexStream<WatchRequest, WatchResponse>;

/** Serves one etcd `Watch` stream. */
export function serveEtcdWatch(
  call: EtcdWatchCall,
  options: EtcdWatchOptions,
  isUndecoded: (request: unknown) => request is Undecoded,
): void {
  // A call can be canceled before its handler runs (behind the credential check): its
  // "cancelled" event has passed, so it is looked at here, before anything starts.
  if (call.cancelled || call.destroyed) return;
  const stream = new EtcdWatchStream(call, options);
  call.on("error", () => stream.close());
  call.on("cancelled", () => stream.close());
  call.on("close", () => stream.close());
  call.on("end", () => {
    stream.close();
    call.end();
  });
  call.on("data", (request: WatchRequest | Undecoded) => {
    if (isUndecoded(request)) stream.fail(rpcFailure("invalidArgument", request.message));
    else stream.handle(request);
  });
}

/** One watch of a stream, from its create request on. */
interface EtcdWatchEntry {
  /** Set once its start returned the watch. */
  watch: GatewayWatch | undefined;
  /** Waits for the stream's next start (`#startPending`): nothing is opened for it yet. */
  pending: boolean;
  /** Its start has not returned: it may be opening its shard streams. */
  starting: boolean;
  /** Canceled by the client, ended, or its stream closed: nothing more is sent for it. */
  canceled: boolean;
  /** No longer counted against {@linkcode ETCD_STREAM_WATCHES_MAX}. */
  released: boolean;
  /** Aborted on cancel: a start that has not opened its shard streams never opens them. */
  readonly abort: AbortController;
}

/** The watches of one etcd `Watch` stream. */
class EtcdWatchStream {
  readonly #call: EtcdWatchCall;
  readonly #options: EtcdWatchOptions;
  /** The watches by id, from create to cancel or end. */
  readonly #open = new Map<number, EtcdWatchEntry>();
  /**
   * Watches started or starting: those of `#open`, and canceled ones whose start has not returned
   * yet. Invariant: `#live <= ETCD_STREAM_WATCHES_MAX`.
   */
  #live = 0;
  /** Creates that start in the next event-loop turn, in order (see `#create`). */
  #pending: Array<{ id: number; entry: EtcdWatchEntry; create: WatchCreateRequest }> = [];
  #nextId = 0;
  #closed = false;
  /** Bytes of answers without events written since the client's send window closed. */
  #unreadBytes = 0;
  readonly #gate: SendGate;

  constructor(call: EtcdWatchCall, options: EtcdWatchOptions) {
    this.#call = call;
    this.#options = options;
    // Deno's HTTP/2 server takes every write: whether the client takes more is its send window
    // (libs/rpc send_window.ts). Until it does, each watch queues (and cuts a client too slow).
    this.#gate = new SendGate(call, () => {
      this.#unreadBytes = 0;
      for (const entry of this.#open.values()) entry.watch?.resume();
    });
  }

  handle(request: WatchRequest): void {
    if (this.#closed) return;
    if (request.progressRequest !== undefined) {
      this.#answer(-1, {});
    } else if (request.cancelRequest !== undefined) {
      this.#cancel(request.cancelRequest.watchId);
    } else if (request.createRequest !== undefined) {
      this.#create(request.createRequest);
    }
  }

  /** Ends every watch; nothing more is written (the stream ended or failed). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of this.#open.values()) this.#stop(entry);
    this.#open.clear();
  }

  /** Ends the stream with `failure`. */
  fail(failure: RpcFailure): void {
    if (this.#closed) return;
    this.close();
    this.#call.emit("error", toServerError(failure));
  }

  #cancel(watchId: number): void {
    const entry = this.#open.get(watchId);
    if (entry === undefined) return;
    this.#open.delete(watchId);
    this.#stop(entry);
    this.#answer(watchId, { canceled: true });
  }

  #create(create: WatchCreateRequest): void {
    // A create that fails is answered with watch id -1, as etcd does (clients match a create's
    // answer by order); it uses up no id.
    if (create.watchId !== 0 && this.#open.has(create.watchId)) {
      // The refusal is not about the watch that holds the id, which goes on.
      this.#refuse(-1, `Watch id ${create.watchId} is already in use on this stream`);
      return;
    }
    const problem = checkCreate(create, this.#options.describeKey);
    if (problem !== undefined) {
      this.#refuse(-1, problem);
      return;
    }
    if (this.#live >= ETCD_STREAM_WATCHES_MAX) {
      this.#refuse(
        -1,
        `This stream holds ${ETCD_STREAM_WATCHES_MAX} watches (started or starting): the limit`,
      );
      return;
    }
    let id = create.watchId;
    if (id === 0) {
      while (this.#open.has(this.#nextId)) this.#nextId++;
      id = this.#nextId++;
    }
    const entry: EtcdWatchEntry = {
      watch: undefined,
      pending: true,
      starting: true,
      canceled: false,
      released: false,
      abort: new AbortController(),
    };
    this.#open.set(id, entry);
    this.#live++;
    assert(this.#live <= ETCD_STREAM_WATCHES_MAX, "An etcd stream holds too many watches");
    // Started in the next event-loop turn, once every request that came with this one (one read
    // from the socket) is handled: a create canceled by a request of the same read opens nothing,
    // and frees its place at once. Without it, a client sending create and cancel pairs has the
    // gateway open and cancel a kvnode stream per shard for each (grpc-js hands the requests over
    // one task apart, and a start opens the streams in the next microtask).
    this.#pending.push({ id, entry, create });
    if (this.#pending.length === 1) setImmediate(() => this.#startPending());
  }

  #startPending(): void {
    for (const { id, entry, create } of this.#pending.splice(0)) {
      if (!entry.pending) continue;
      entry.pending = false;
      this.#start(id, entry, create);
    }
  }

  #start(id: number, entry: EtcdWatchEntry, create: WatchCreateRequest): void {
    let created = false;
    const end = (failure: RpcFailure) => {
      if (entry.canceled) return;
      this.#open.delete(id);
      this.#stop(entry);
      if (created) this.#answer(id, { canceled: true, cancelReason: failure.message });
      else this.#refuse(id, failure.message);
    };
    const send = (response: GatewayWatchResponse) => {
      if (entry.canceled) return true;
      if (!created) {
        created = true;
        return this.#answer(id, { created: true });
      }
      const events = etcdEvents(response, create.filters);
      if (events.length === 0) return !this.#gate.waiting;
      return this.#answer(id, { events });
    };
    void this.#options.watches.start(rangeOf(create), new Map(), { send, end }, {
      signal: entry.abort.signal,
    }).then((started) => {
      entry.starting = false;
      if ("kind" in started) {
        // A create canceled before it started was answered by its cancel.
        end(started);
        this.#release(entry);
        return;
      }
      entry.watch = started;
      if (entry.canceled) this.#stop(entry);
      else if (!this.#gate.waiting) started.resume();
    });
  }

  /** Stops `entry`'s watch, or its start; it is released once it holds no shard stream. */
  #stop(entry: EtcdWatchEntry): void {
    if (entry.pending) {
      // Never started, and never will.
      entry.pending = false;
      entry.starting = false;
    }
    entry.canceled = true;
    entry.abort.abort();
    entry.watch?.cancel();
    this.#release(entry);
  }

  #release(entry: EtcdWatchEntry): void {
    if (entry.released || entry.starting || !entry.canceled) return;
    entry.released = true;
    this.#live--;
    assert(this.#live >= 0, "An etcd stream released more watches than it started");
  }

  #refuse(watchId: number, reason: string): void {
    this.#answer(watchId, { created: true, canceled: true, cancelReason: reason });
  }

  /** Writes an answer; returns whether the client takes more now. */
  #answer(watchId: number, fields: Partial<WatchResponse>): boolean {
    if (this.#closed || this.#call.destroyed) return true;
    if (this.#gate.waiting && fields.events === undefined) {
      this.#unreadBytes += ANSWER_BYTES + (fields.cancelReason?.length ?? 0);
      if (this.#unreadBytes > ETCD_STREAM_ANSWERS_UNREAD_BYTES_MAX) {
        this.fail(rpcFailure(
          "resourceExhausted",
          "The client sends requests faster than it reads their answers: more than " +
            `${ETCD_STREAM_ANSWERS_UNREAD_BYTES_MAX} bytes of answers wait for it (the limit of ` +
            "a stream)",
        ));
        return true;
      }
    }
    return this.#gate.wrote(this.#call.write({
      header: this.#options.header(),
      watchId,
      created: false,
      canceled: false,
      compactRevision: 0,
      cancelReason: "",
      fragment: false,
      events: [],
      ...fields,
    }));
  }
}

/** The events of `response` as etcd reports them, less those `filters` drop. */
function etcdEvents(
  response: GatewayWatchResponse,
  filters: readonly WatchCreateRequest_FilterType[],
): Event[] {
  const dropPuts = filters.includes(WatchCreateRequest_FilterType.NOPUT);
  const dropDeletes = filters.includes(WatchCreateRequest_FilterType.NODELETE);
  const events: Event[] = [];
  for (const event of response.events) {
    const put = event.kind === WatchEvent_Kind.PUT;
    if (put ? dropPuts : dropDeletes) continue;
    events.push({
      type: put ? Event_EventType.PUT : Event_EventType.DELETE,
      kv: {
        key: event.key,
        createRevision: put ? REVISION : 0,
        modRevision: REVISION,
        version: put ? REVISION : 0,
        value: event.value,
        lease: 0,
      },
      prevKv: undefined,
    });
  }
  return events;
}

/** Why a create request cannot be served, or undefined. */
function checkCreate(
  create: WatchCreateRequest,
  describeKey: (key: Uint8Array) => string,
): string | undefined {
  const what = `Watch on key ${describeKey(create.key)}`;
  if (create.startRevision !== 0) {
    return `${what} refused: it asks to start at revision ${create.startRevision}, and TinyKV ` +
      "keeps no cluster-wide revision to start from (each shard has its own log); watch from " +
      "now (start_revision 0), or use tinykv.v1.KV/Watch, which resumes from per-shard positions";
  }
  if (create.prevKv) {
    return `${what} refused: TinyKV's watch events carry no previous value (prev_kv)`;
  }
  if (create.key.length > KEY_BYTES_MAX) {
    return `${what} refused: the key has ${create.key.length} bytes: the maximum is ${KEY_BYTES_MAX}`;
  }
  if (create.rangeEnd.length > KEY_BYTES_MAX + 1) {
    return `${what} refused: range_end has ${create.rangeEnd.length} bytes: the maximum is ` +
      `${KEY_BYTES_MAX + 1}`;
  }
  const toEnd = create.rangeEnd.length === 1 && create.rangeEnd[0] === 0;
  if (create.rangeEnd.length > 0 && !toEnd && compareBytes(create.rangeEnd, create.key) <= 0) {
    return `${what} refused: range_end must come after the key (an empty range)`;
  }
  if (create.rangeEnd.length === 0 && create.key.length === 0) {
    return `${what} refused: the key is empty (give range_end "\\0" to watch every key)`;
  }
  return undefined;
}

/** The keys a create request names. */
export function rangeOf(create: WatchCreateRequest): WatchRange {
  const { key, rangeEnd } = create;
  if (rangeEnd.length === 0) {
    const end = new Uint8Array(key.length + 1);
    end.set(key);
    return { start: key, end };
  }
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: undefined };
  return { start: key, end: rangeEnd };
}
