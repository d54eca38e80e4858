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
import { WatchEvent_Kind } from "@tinykv/proto/tinykv/v1";
import { type RpcFailure, rpcFailure, SendGate, toServerError } from "@tinykv/rpc";
import { compareBytes, KEY_BYTES_MAX } from "@tinykv/shard";
import type { GatewayWatch, GatewayWatches, WatchRange } from "./watch.ts";

/** The revision every answer of the etcd API reports (TinyKV keeps no history). */
const REVISION = 1;
/** Watches one etcd stream may hold at once. */
export const ETCD_STREAM_WATCHES_MAX = 1024;

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
  const open = new Map<number, { watch: GatewayWatch | undefined; canceled: boolean }>();
  let nextId = 0;
  let closed = false;
  // Deno's HTTP/2 server takes every write: whether the client takes more is its send window
  // (libs/rpc send_window.ts). Until it does, each watch queues (and cuts a client too slow).
  const gate = new SendGate(call, () => {
    for (const entry of open.values()) entry.watch?.resume();
  });
  const write = (response: WatchResponse): boolean =>
    closed || call.destroyed ? true : gate.wrote(call.write(response));
  const answer = (watchId: number, fields: Partial<WatchResponse>) =>
    write({
      header: options.header(),
      watchId,
      created: false,
      canceled: false,
      compactRevision: 0,
      cancelReason: "",
      fragment: false,
      events: [],
      ...fields,
    });
  const refuse = (watchId: number, reason: string) =>
    answer(watchId, { created: true, canceled: true, cancelReason: reason });
  const closeAll = () => {
    if (closed) return;
    closed = true;
    for (const entry of open.values()) {
      entry.canceled = true;
      entry.watch?.cancel();
    }
    open.clear();
  };
  call.on("error", closeAll);
  call.on("cancelled", closeAll);
  call.on("close", closeAll);
  call.on("end", () => {
    closeAll();
    call.end();
  });
  call.on("data", (request: WatchRequest | Undecoded) => {
    if (closed) return;
    if (isUndecoded(request)) {
      closeAll();
      call.emit("error", toServerError(rpcFailure("invalidArgument", request.message)));
      return;
    }
    if (request.progressRequest !== undefined) {
      answer(-1, {});
      return;
    }
    const cancel = request.cancelRequest;
    if (cancel !== undefined) {
      const entry = open.get(cancel.watchId);
      if (entry === undefined) return;
      open.delete(cancel.watchId);
      entry.canceled = true;
      entry.watch?.cancel();
      answer(cancel.watchId, { canceled: true });
      return;
    }
    const create = request.createRequest;
    if (create === undefined) return;
    // A create that fails is answered with watch id -1, as etcd does (clients match a create's
    // answer by order); it uses up no id.
    if (create.watchId !== 0 && open.has(create.watchId)) {
      // The refusal is not about the watch that holds the id, which goes on.
      refuse(-1, `Watch id ${create.watchId} is already in use on this stream`);
      return;
    }
    const problem = checkCreate(create, options.describeKey);
    if (problem !== undefined) {
      refuse(-1, problem);
      return;
    }
    if (open.size >= ETCD_STREAM_WATCHES_MAX) {
      refuse(-1, `This stream holds ${ETCD_STREAM_WATCHES_MAX} watches: the limit`);
      return;
    }
    let id = create.watchId;
    if (id === 0) {
      while (open.has(nextId)) nextId++;
      id = nextId++;
    }
    const entry: { watch: GatewayWatch | undefined; canceled: boolean } = {
      watch: undefined,
      canceled: false,
    };
    open.set(id, entry);
    const dropPuts = create.filters.includes(WatchCreateRequest_FilterType.NOPUT);
    const dropDeletes = create.filters.includes(WatchCreateRequest_FilterType.NODELETE);
    let created = false;
    const end = (failure: RpcFailure) => {
      if (entry.canceled) return;
      entry.canceled = true;
      open.delete(id);
      if (created) answer(id, { canceled: true, cancelReason: failure.message });
      else refuse(id, failure.message);
    };
    void options.watches.start(rangeOf(create), new Map(), {
      send: (response) => {
        if (entry.canceled) return true;
        if (!created) {
          created = true;
          return answer(id, { created: true });
        }
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
        if (events.length === 0) return !gate.waiting;
        return answer(id, { events });
      },
      end,
    }).then((started) => {
      if ("kind" in started) {
        end(started);
        return;
      }
      entry.watch = started;
      if (entry.canceled) started.cancel();
      else if (!gate.waiting) started.resume();
    });
  });
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
