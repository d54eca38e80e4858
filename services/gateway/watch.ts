/**
 * Watches on a gateway (docs/design.md "Watch"): one client watch is a `KvNode.Watch` stream to
 * the leader of every shard it covers (one shard for a key, or for a prefix holding a hash tag;
 * every shard for any other prefix or range), merged into one stream of events and positions.
 *
 * Each shard's part remembers the last index it reached; when its stream ends for a reason a
 * retry can cure (the replica stopped leading, moved, restarted, the gateway lost the node), the
 * gateway opens it again on the shard's leader from that index, so nothing is missed and nothing
 * is sent twice. Positions the shard no longer holds, bad requests and a watcher cut for being
 * slow end the client's watch with that status.
 *
 * Flow control: the kvnode streams are always read, so a kvnode's status (a watcher it had to
 * cut) is never stuck behind unread messages. When the client's stream takes no more, the watch
 * keeps what arrives in a queue of at most {@linkcode GatewayWatchesOptions.queueBytesMax} bytes
 * and sends it as the client drains; a client slower than that is cut with RESOURCE_EXHAUSTED.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import {
  KvNodeService,
  type ShardWatchRequest,
  type ShardWatchResponse,
  type WatchEvent,
  type WatchPosition,
  type WatchRequest,
  type WatchResponse,
} from "@tinykv/proto/tinykv/v1";
import type { KvRouter } from "@tinykv/client";
import {
  type ClientSecurity,
  createGrpcClient,
  failureFromError,
  type RpcFailure,
  rpcFailure,
  SendGate,
  type ServiceBinding,
  toServerError,
} from "@tinykv/rpc";
import {
  compareBytes,
  hashTag,
  KEY_BYTES_MAX,
  type ShardId,
  shardId as toShardId,
} from "@tinykv/shard";
import { assert } from "./_assert.ts";

/** The trailer a kvnode names the shard's leader in (kvnode watch_service.ts). */
const LEADER_ADDRESS_TRAILER = "tinykv-leader-address";
/** Watches one gateway serves at once. */
export const GATEWAY_WATCHES_MAX = 4096;
/** The wait for a shard map before a watch fails. */
const MAP_WAIT_MS = 5000;
/** The pause before opening a shard's stream again: from the first to the longest. */
const RETRY_MIN_MS = 25;
const RETRY_MAX_MS = 1000;
/** How long a watch may take to start in every shard it covers before it fails UNAVAILABLE. */
export const WATCH_START_MS = 10_000;

/** One open `KvNode.Watch` call, as the gateway uses it. */
export interface ShardStream {
  pause(): void;
  resume(): void;
  cancel(): void;
}

/** What a {@linkcode ShardStream} reports. */
export interface ShardStreamEvents {
  onMessage(response: ShardWatchResponse): void;
  /** The call ended: always with a failure (a watch never ends by itself). */
  onEnd(failure: RpcFailure, leaderAddress: string | undefined): void;
}

/** Opens `KvNode.Watch` calls (gRPC; a fake in tests). */
export type OpenShardStream = (
  address: string,
  request: ShardWatchRequest,
  events: ShardStreamEvents,
) => ShardStream;

/**
 * The receive window of the gateway's watch connection to each kvnode. Every watch of a shard led
 * there is a stream on it, and a kvnode's watch writers wait while the connection's send window
 * is closed (libs/rpc send_window.ts, polled every 20 ms). With HTTP/2's 64 KiB, 16 watches of one
 * shard under 16 puts in flight closed it often enough to put the p99 of events after their put's
 * answer at 31-89 ms; with this window, 5-10 ms (bench/RESULTS.md, issue 17).
 */
export const WATCH_RECEIVE_WINDOW_BYTES = 16 * 1024 * 1024;

/** `KvNode.Watch` over gRPC, one channel per kvnode address. */
export function grpcShardStreams(
  options: { readonly maxMessageBytes: number; readonly security?: ClientSecurity },
): { open: OpenShardStream; close(): void } {
  const clients = new Map<string, ReturnType<typeof createGrpcClient<typeof KvNodeService>>>();
  const clientOf = (address: string) => {
    let client = clients.get(address);
    if (client === undefined) {
      client = createGrpcClient(KvNodeService, address, {
        maxMessageBytes: options.maxMessageBytes,
        receiveWindowBytes: WATCH_RECEIVE_WINDOW_BYTES,
        ...options.security,
      });
      clients.set(address, client);
    }
    return client;
  };
  return {
    open(address, request, events) {
      const call = clientOf(address).Watch(request, new grpc.Metadata(), {});
      let ended = false;
      call.on("data", (response: ShardWatchResponse) => {
        if (!ended) events.onMessage(response);
      });
      call.on("error", (error: grpc.ServiceError) => {
        if (ended) return;
        ended = true;
        const leader = error.metadata?.get(LEADER_ADDRESS_TRAILER)[0];
        events.onEnd(failureFromError(error), typeof leader === "string" ? leader : undefined);
      });
      call.on("end", () => {
        // A clean end without a status error: the kvnode went away in an orderly way.
        setImmediate(() => {
          if (ended) return;
          ended = true;
          events.onEnd(rpcFailure("unavailable", `Watch stream from ${address} ended`), undefined);
        });
      });
      return {
        pause: () => call.pause(),
        resume: () => call.resume(),
        cancel: () => {
          ended = true;
          call.cancel();
        },
      };
    },
    close() {
      for (const client of clients.values()) client.close();
      clients.clear();
    },
  };
}

/** A watch's keys: `[start, end)`, `end` undefined meaning to the last key. */
export interface WatchRange {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
}

/** Where a merged watch's messages go. */
export interface WatchOutput {
  /** Sends a response; false asks for no more until {@linkcode GatewayWatch.resume}. */
  send(response: WatchResponse): boolean;
  /** The watch ended with `failure` (once; not after {@linkcode GatewayWatch.cancel}). */
  end(failure: RpcFailure): void;
}

/** Options of {@linkcode GatewayWatches}. */
export interface GatewayWatchesOptions {
  readonly router: Pick<
    KvRouter,
    "candidates" | "noteLeader" | "mapChanged" | "shards" | "shardOf"
  >;
  readonly open: OpenShardStream;
  readonly log?: { warn(message: string, fields: Record<string, unknown>): void };
  readonly watchesMax?: number;
  /**
   * Bytes of events one watch may hold for a client that reads too slowly (default
   * {@linkcode WATCH_QUEUE_BYTES_MAX_DEFAULT}); past it, the watch is cut.
   */
  readonly queueBytesMax?: number;
  /**
   * Bytes all watches of the gateway may hold for slow clients together (default
   * {@linkcode WATCH_QUEUE_BYTES_TOTAL_MAX_DEFAULT}); a watch whose queue would pass it is cut.
   */
  readonly queueBytesTotalMax?: number;
  /** How long a watch may take to start in every shard (default {@linkcode WATCH_START_MS}). */
  readonly startMs?: number;
}

/** The default of {@linkcode GatewayWatchesOptions.queueBytesTotalMax}. */
export const WATCH_QUEUE_BYTES_TOTAL_MAX_DEFAULT = 256 * 1024 * 1024;

/** The default of {@linkcode GatewayWatchesOptions.queueBytesMax}. */
export const WATCH_QUEUE_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;

/** Options of one {@linkcode GatewayWatches.start}. */
export interface WatchStartOptions {
  /** Follows the watch to the kvnodes in their logs. */
  readonly traceId?: string;
  /**
   * The caller gave the watch up: once aborted, a watch that has not opened its shard streams yet
   * never opens them, and the start returns a `cancelled` failure.
   */
  readonly signal?: AbortSignal;
}

/** The watches of one gateway. */
export class GatewayWatches {
  readonly #options: GatewayWatchesOptions;
  readonly #open = new Set<GatewayWatch>();
  /** Starts waiting for the shard map: they count against the limit as open watches do. */
  #starting = 0;
  /** Bytes every watch holds for its slow client, together. */
  readonly #queued = { bytes: 0 };
  #closed = false;

  constructor(options: GatewayWatchesOptions) {
    this.#options = options;
  }

  /** Watches open now. */
  get count(): number {
    return this.#open.size;
  }

  /** Watches starting now (waiting for the shard map), not yet open. */
  get startingCount(): number {
    return this.#starting;
  }

  /** Bytes the watches hold for clients that read too slowly, together. */
  get queuedBytes(): number {
    return this.#queued.bytes;
  }

  /**
   * Starts a watch of `range` from `start` (shard → index; shards not named start now), or
   * returns why it cannot start. From the call on, the watch counts against
   * {@linkcode GatewayWatchesOptions.watchesMax}, also while it waits for the shard map.
   */
  async start(
    range: WatchRange,
    start: ReadonlyMap<number, number>,
    output: WatchOutput,
    options: WatchStartOptions = {},
  ): Promise<GatewayWatch | RpcFailure> {
    const refused = this.#refusal(options.signal);
    if (refused !== undefined) return refused;
    this.#starting++;
    let shards: ShardId[] | undefined;
    try {
      shards = await this.#shardsOf(range, options.signal);
    } finally {
      this.#starting--;
      assert(this.#starting >= 0, "More watch starts ended than began");
    }
    // Checked again: the gateway may have stopped, or the caller given up, while this one waited
    // for the map (other starts counted with this one meanwhile, so the limit still holds).
    const late = this.#refusal(options.signal);
    if (late !== undefined) return late;
    if (shards === undefined) {
      return rpcFailure("unavailable", `No shard map is known yet after ${MAP_WAIT_MS} ms`);
    }
    for (const id of start.keys()) {
      if (!shards.includes(toShardId(id))) {
        return rpcFailure(
          "invalidArgument",
          `Watch start position names shard ${id}, which the watch does not cover ` +
            `(it covers ${describeShards(shards)})`,
        );
      }
    }
    const watch = new GatewayWatch(
      this.#options,
      range,
      shards,
      start,
      output,
      options.traceId ?? "",
      () => this.#open.delete(watch),
      this.#queued,
    );
    this.#open.add(watch);
    watch.begin();
    return watch;
  }

  /** Why no watch can start now, if none can. */
  #refusal(signal: AbortSignal | undefined): RpcFailure | undefined {
    if (signal?.aborted === true) {
      return rpcFailure("cancelled", "The watch was canceled before it started");
    }
    if (this.#closed) return rpcFailure("unavailable", "The gateway is stopping");
    const max = this.#options.watchesMax ?? GATEWAY_WATCHES_MAX;
    if (this.#open.size + this.#starting >= max) {
      return rpcFailure(
        "resourceExhausted",
        `The gateway serves ${max} watches (open or starting): the limit`,
      );
    }
    return undefined;
  }

  /** Ends every watch (the gateway is stopping). */
  close(): void {
    this.#closed = true;
    for (const watch of [...this.#open]) {
      watch.fail(rpcFailure("unavailable", "The gateway is stopping: resume on another one"));
    }
  }

  async #shardsOf(range: WatchRange, signal?: AbortSignal): Promise<ShardId[] | undefined> {
    const until = Date.now() + MAP_WAIT_MS;
    while (signal?.aborted !== true) {
      const shards = this.#options.router.shards();
      if (shards !== undefined) {
        const single = singleShardKey(range);
        if (single === undefined) return shards;
        const entry = this.#options.router.shardOf(single);
        if (entry !== undefined) return [entry.id];
      }
      const left = until - Date.now();
      if (left <= 0) return undefined;
      await this.#options.router.mapChanged(Math.min(left, 200));
    }
    return undefined;
  }
}

/**
 * A key every key of `range` shares a shard with, when there is one: a single key, or a prefix
 * holding a whole hash tag (every key under it has the same tag).
 */
export function singleShardKey(range: WatchRange): Uint8Array | undefined {
  const { start, end } = range;
  if (end === undefined) return undefined;
  if (end.length === start.length + 1 && end[start.length] === 0 && startsWith(end, start)) {
    return start;
  }
  const prefixEnd = prefixEndOf(start);
  if (
    prefixEnd !== undefined && compareBytes(prefixEnd, end) === 0 && hashTag(start) !== undefined
  ) {
    return start;
  }
  return undefined;
}

/** The first key after every key starting with `prefix`; undefined when there is none. */
export function prefixEndOf(prefix: Uint8Array): Uint8Array | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const end = prefix.slice(0, i + 1);
      end[i]++;
      return end;
    }
  }
  return undefined;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function describeShards(shards: readonly ShardId[]): string {
  return shards.length === 1 ? `shard ${shards[0]}` : `shards ${shards.join(", ")}`;
}

/** One shard's part of a watch. */
interface ShardPart {
  readonly id: ShardId;
  /** The last index reached; undefined until the first stream started (a watch from now). */
  position: number | undefined;
  stream: ShardStream | undefined;
  started: boolean;
  attempts: number;
  retry: ReturnType<typeof setTimeout> | undefined;
  lastProblem: string;
  /** Messages that arrived before every shard started, sent once they have. */
  held: ShardWatchResponse[];
  /** The last index received (held or forwarded): a reopened stream resumes after it. */
  reached: number | undefined;
  /** Why an attempt was refused INVALID_ARGUMENT (a position past a replica's log end). */
  refused: string | undefined;
  /** Leaders named in a row without a message from any: past 2, the backoff applies. */
  hops: number;
}

/** One client watch, merged over its shards. */
export class GatewayWatch {
  readonly #options: GatewayWatchesOptions;
  readonly #range: WatchRange;
  readonly #parts: ShardPart[];
  readonly #output: WatchOutput;
  readonly #traceId: string;
  readonly #onClosed: () => void;
  #announced = false;
  /** The client's stream takes no more: responses wait in `#queue`. */
  #paused = false;
  readonly #queue: WatchResponse[] = [];
  #queuedBytes = 0;
  /** Of `#queuedBytes`, what is held before every shard started. */
  #heldBytes = 0;
  #startTimer: ReturnType<typeof setTimeout> | undefined;
  /** What every watch of the gateway holds (this one's `#queuedBytes` included). */
  readonly #shared: { bytes: number };
  #closed = false;

  constructor(
    options: GatewayWatchesOptions,
    range: WatchRange,
    shards: readonly ShardId[],
    start: ReadonlyMap<number, number>,
    output: WatchOutput,
    traceId: string,
    onClosed: () => void,
    queued: { bytes: number } = { bytes: 0 },
  ) {
    this.#shared = queued;
    this.#options = options;
    this.#range = range;
    this.#output = output;
    this.#traceId = traceId;
    this.#onClosed = onClosed;
    this.#parts = shards.map((id) => ({
      id,
      position: start.get(id),
      stream: undefined,
      started: false,
      attempts: 0,
      retry: undefined,
      lastProblem: "",
      held: [],
      reached: start.get(id),
      refused: undefined,
      hops: 0,
    }));
  }

  /** Where the watch stands in each shard it has started in. */
  positions(): WatchPosition[] {
    return this.#parts.filter((part) => part.position !== undefined)
      .map((part) => ({ shard: part.id, index: part.position! }));
  }

  begin(): void {
    const startMs = this.#options.startMs ?? WATCH_START_MS;
    this.#startTimer = setTimeout(() => {
      const waiting = this.#parts.filter((part) => !part.started);
      // A position a leader refused as past its log end, and no replica took, was not one a shard
      // reported.
      const refused = waiting.length > 0 && waiting.every((part) => part.refused !== undefined);
      this.fail(rpcFailure(
        refused ? "invalidArgument" : "unavailable",
        `The watch could not start in ${startMs} ms: ` +
          waiting.map((part) =>
            part.refused ?? (part.lastProblem || `shard ${part.id} did not answer`)
          ).join("; "),
      ));
    }, startMs);
    for (const part of this.#parts) this.#connect(part);
  }

  /** The client's stream takes messages again. */
  resume(): void {
    if (this.#closed || !this.#paused) return;
    this.#paused = false;
    while (!this.#paused && !this.#closed && this.#queue.length > 0) {
      const response = this.#queue.shift()!;
      const bytes = responseBytes(response);
      this.#queuedBytes -= bytes;
      this.#shared.bytes -= bytes;
      if (!this.#output.send(response)) this.#paused = true;
    }
  }

  /** The client went away: stop everything, report nothing. */
  cancel(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const part of this.#parts) {
      clearTimeout(part.retry);
      part.stream?.cancel();
    }
    clearTimeout(this.#startTimer);
    this.#shared.bytes -= this.#queuedBytes;
    this.#queuedBytes = 0;
    this.#heldBytes = 0;
    this.#queue.length = 0;
    this.#onClosed();
  }

  /** Ends the watch with `failure`. */
  fail(failure: RpcFailure): void {
    if (this.#closed) return;
    this.cancel();
    this.#output.end(failure);
  }

  #connect(part: ShardPart): void {
    if (this.#closed) return;
    part.retry = undefined;
    const target = this.#options.router.candidates(part.id);
    const address = target?.addresses[part.attempts % Math.max(1, target.addresses.length)];
    if (target === undefined || address === undefined) {
      part.lastProblem = target === undefined
        ? `shard ${part.id} is not in the shard map`
        : `shard ${part.id} has no replica with a known address`;
      this.#retryLater(part);
      return;
    }
    const request: ShardWatchRequest = {
      shardId: part.id,
      confEpoch: target.confEpoch,
      start: this.#range.start,
      end: this.#range.end ?? new Uint8Array(0),
      resume: part.reached !== undefined,
      afterIndex: part.reached ?? 0,
      traceId: this.#traceId,
    };
    let fresh = true;
    part.stream = this.#options.open(address, request, {
      onMessage: (response) => {
        if (this.#closed) return;
        if (fresh) {
          fresh = false;
          part.attempts = 0;
          part.hops = 0;
          part.refused = undefined;
          this.#options.router.noteLeader(part.id, address);
        }
        this.#receive(part, response);
      },
      onEnd: (failure, leaderAddress) => {
        if (this.#closed) return;
        part.stream = undefined;
        part.lastProblem = `shard ${part.id} at ${address}: ${failure.message}`;
        // A position past a replica's log end is final for one the client gave, but one a
        // kvnode reported may meet a deposed leader that has not heard of it: retry elsewhere.
        // Until the watch starts, or for good once it has: a client's position may also have come
        // from a kvnode, through another gateway (the start deadline bounds the retries).
        const stale = failure.kind === "invalidArgument";
        // Sticky until the shard answers: the other replicas say "not leader" in between.
        if (stale) part.refused = part.lastProblem;
        if (!retryable(failure) && !stale) {
          this.fail(rpcFailure(failure.kind, namingShard(part.id, failure.message)));
          return;
        }
        if (leaderAddress !== undefined && leaderAddress !== "" && leaderAddress !== address) {
          this.#options.router.noteLeader(part.id, leaderAddress);
          // Straight to the named leader, unless names keep bouncing (a leader that just died):
          // then with the growing backoff, over the replicas.
          part.hops++;
          if (part.hops <= 2) {
            part.attempts = 0;
            this.#connect(part);
          } else {
            this.#retryLater(part);
          }
          return;
        }
        this.#options.router.noteLeader(part.id, undefined);
        this.#retryLater(part);
      },
    });
  }

  #retryLater(part: ShardPart): void {
    part.attempts++;
    if (part.attempts === 20) {
      this.#options.log?.warn("Watch cannot reach a shard's leader", {
        shard: part.id,
        problem: part.lastProblem,
      });
    }
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(part.attempts, 10));
    part.retry = setTimeout(() => this.#connect(part), delay * (0.5 + Math.random() / 2));
  }

  #receive(part: ShardPart, response: ShardWatchResponse): void {
    part.reached = Math.max(part.reached ?? 0, response.index);
    if (!part.started) {
      part.started = true;
      part.position = response.index;
      if (!this.#announced && this.#parts.every((p) => p.started)) this.#announce();
      return;
    }
    if (!this.#announced) {
      // Held until every shard has started, so the first message lists them all; the stream is
      // still read (a kvnode's status is never stuck behind unread messages), and what is held
      // counts against the watch's queue.
      part.held.push(response);
      this.#hold(responseBytes({ events: response.events, positions: [] }));
      return;
    }
    this.#forward(part, response);
  }

  #forward(part: ShardPart, response: ShardWatchResponse): void {
    if (response.index <= (part.position ?? 0) && response.events.length === 0) return;
    const events: WatchEvent[] = response.events.filter((event) =>
      event.index > (part.position ?? 0)
    );
    part.position = Math.max(part.position ?? 0, response.index);
    this.#send({ events, positions: [{ shard: part.id, index: part.position }] });
  }

  #announce(): void {
    this.#announced = true;
    clearTimeout(this.#startTimer);
    this.#release(this.#heldBytes);
    this.#send({ events: [], positions: this.positions() });
    for (const part of this.#parts) {
      for (const response of part.held.splice(0)) this.#forward(part, response);
    }
  }

  /** Counts `bytes` held before the start against the watch's queue bounds. */
  #hold(bytes: number): void {
    this.#heldBytes += bytes;
    this.#queuedBytes += bytes;
    this.#shared.bytes += bytes;
    this.#checkQueue(bytes);
  }

  #release(bytes: number): void {
    this.#heldBytes -= bytes;
    this.#queuedBytes -= bytes;
    this.#shared.bytes -= bytes;
  }

  #send(response: WatchResponse): void {
    if (this.#closed) return;
    if (!this.#paused) {
      if (!this.#output.send(response)) this.#paused = true;
      return;
    }
    const bytes = responseBytes(response);
    this.#queue.push(response);
    this.#queuedBytes += bytes;
    this.#shared.bytes += bytes;
    this.#checkQueue(bytes);
  }

  /** Cuts the watch when what it holds unsent passes its bound or the gateway's. */
  #checkQueue(added: number): void {
    // One message alone, however large (an index is never split), always gets through.
    if (this.#queuedBytes === added) return;
    const max = this.#options.queueBytesMax ?? WATCH_QUEUE_BYTES_MAX_DEFAULT;
    const totalMax = this.#options.queueBytesTotalMax ?? WATCH_QUEUE_BYTES_TOTAL_MAX_DEFAULT;
    if (!this.#announced && (this.#queuedBytes > max || this.#shared.bytes > totalMax)) {
      // Nothing was sent yet: the client may try again from where it asked.
      this.fail(rpcFailure(
        "unavailable",
        `The watch held ${this.#queuedBytes} bytes of changes while some of its shards had not ` +
          `started, at most ${max}: ` +
          this.#parts.filter((part) => !part.started)
            .map((part) => part.lastProblem || `shard ${part.id} did not answer`).join("; "),
      ));
    } else if (this.#queuedBytes > max) {
      this.fail(rpcFailure(
        "resourceExhausted",
        `The client reads its watch too slowly: ${this.#queuedBytes} bytes of changes wait ` +
          `for it, and a watch holds at most ${max}; resume from the last positions received`,
      ));
    } else if (this.#shared.bytes > totalMax) {
      this.fail(rpcFailure(
        "resourceExhausted",
        `The client reads its watch too slowly: the gateway holds ${this.#shared.bytes} bytes ` +
          `of changes for slow watchers, at most ${totalMax} in all; resume from the last ` +
          "positions received",
      ));
    }
  }
}

/**
 * `message` from a shard's stream, naming the shard: a kvnode's own messages mostly do already
 * ("Shard 4: the watcher fell behind…", "Watch position 9 of shard 4…"); others (a node's limit,
 * a status from the transport) get it in front.
 */
function namingShard(shard: ShardId, message: string): string {
  return new RegExp(`\\bshard ${shard}\\b`, "i").test(message)
    ? message
    : `Shard ${shard}: ${message}`;
}

/** About the bytes `response` takes on the wire. */
function responseBytes(response: WatchResponse): number {
  let bytes = 16 + response.positions.length * 16;
  for (const event of response.events) bytes += 32 + event.key.length + event.value.length;
  return bytes;
}

/** Whether a shard stream that ended with `failure` should be opened again. */
function retryable(failure: RpcFailure): boolean {
  switch (failure.kind) {
    case "unavailable":
    case "deadlineExceeded":
    case "cancelled":
    case "internal":
      return true;
    default:
      return false;
  }
}

/** Checks a `tinykv.v1.KV/Watch` request; returns its range and start, or why it is invalid. */
export function parseWatchRequest(
  request: WatchRequest,
): { range: WatchRange; start: Map<number, number> } | { message: string } {
  const { key, prefix } = request;
  if (key.length > KEY_BYTES_MAX) {
    return { message: `Key has ${key.length} bytes: the maximum is ${KEY_BYTES_MAX}` };
  }
  if (!prefix && key.length === 0) {
    return { message: "Key has 0 bytes: the minimum is 1 (set prefix to watch every key)" };
  }
  const start = new Map<number, number>();
  for (const position of request.start) {
    if (start.has(position.shard)) {
      return { message: `Watch start names shard ${position.shard} twice` };
    }
    if (!Number.isSafeInteger(position.index)) {
      return {
        message: `Watch start index ${position.index} of shard ${position.shard} is too large`,
      };
    }
    start.set(position.shard, position.index);
  }
  const end = prefix ? prefixEndOf(key) : concatZero(key);
  return { range: { start: key, end }, start };
}

function concatZero(key: Uint8Array): Uint8Array {
  const end = new Uint8Array(key.length + 1);
  end.set(key);
  return end;
}

/** A `tinykv.v1.KV/Watch` request that could not be decoded, and why. */
export class UndecodedWatchRequest {
  constructor(readonly message: string) {}
}

/**
 * `binding` (the `tinykv.v1.KV` service) with its `Watch` requests decoded in the handler's care:
 * one that cannot be decoded (an int64 past 2^53, malformed bytes) reaches
 * {@linkcode watchHandler} as an {@linkcode UndecodedWatchRequest}, answered INVALID_ARGUMENT as
 * libs/rpc answers a unary call (grpc-js alone would end the stream INTERNAL). The etcd Watch does
 * the same (etcd_service.ts `watchBinding`).
 */
export function decodingWatchRequests(binding: ServiceBinding): ServiceBinding {
  const method = binding.definition.Watch as
    | grpc.MethodDefinition<WatchRequest, WatchResponse>
    | undefined;
  assert(method !== undefined, "The service has no Watch method");
  const requestDeserialize = (bytes: Buffer): WatchRequest | UndecodedWatchRequest => {
    try {
      return method.requestDeserialize(bytes);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return new UndecodedWatchRequest(`Cannot decode the request of "${method.path}": ${reason}`);
    }
  };
  return {
    definition: { ...binding.definition, Watch: { ...method, requestDeserialize } },
    implementation: binding.implementation,
  };
}

type WatchCall = grpc.ServerWritableStream<WatchRequest | UndecodedWatchRequest, WatchResponse>;

/** The `tinykv.v1.KV/Watch` handler over `watches`. */
export function watchHandler(
  watches: GatewayWatches,
  traceOf: (call: WatchCall) => string | RpcFailure,
): (call: WatchCall) => void {
  return (call) => {
    const fail = (failure: RpcFailure) => {
      if (!call.cancelled && !call.destroyed) call.emit("error", toServerError(failure));
    };
    // A call can be canceled before its handler runs (behind the credential check): its
    // "cancelled" event has passed, so it is looked at here, before anything starts.
    if (call.cancelled || call.destroyed) return;
    const trace = traceOf(call);
    if (typeof trace !== "string") return fail(trace);
    const request = call.request;
    if (request instanceof UndecodedWatchRequest) {
      return fail(rpcFailure("invalidArgument", request.message));
    }
    const parsed = parseWatchRequest(request);
    if ("message" in parsed) return fail(rpcFailure("invalidArgument", parsed.message));
    let watch: GatewayWatch | undefined;
    const gone = new AbortController();
    const onGone = () => {
      gone.abort();
      watch?.cancel();
    };
    call.on("cancelled", onGone);
    call.on("close", onGone);
    call.on("error", onGone);
    // Deno's HTTP/2 server takes every write: whether the client takes more is its send window
    // (libs/rpc send_window.ts). Until it does, the watch queues (and cuts a client too slow).
    const gate = new SendGate(call, () => watch?.resume());
    void watches.start(parsed.range, parsed.start, {
      send: (response) =>
        gone.signal.aborted || call.destroyed ? true : gate.wrote(call.write(response)),
      end: fail,
    }, { traceId: trace, signal: gone.signal }).then((started) => {
      if ("kind" in started) return fail(started);
      watch = started;
      if (gone.signal.aborted) watch.cancel();
      else if (!gate.waiting) watch.resume();
    });
  };
}
