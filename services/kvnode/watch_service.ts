/**
 * `KvNode.Watch` (docs/design.md "Watch"): one shard's changes in a key range, served by the
 * shard's leader from its {@linkcode WatchHub} window. The watcher registers inside a driver turn,
 * on the leader, at an exact index; every half second (while any watcher is open) a sweep checks
 * each watched replica still leads, and tells idle watchers how far the shard applied.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { ShardWatchRequest, ShardWatchResponse, WatchEvent } from "@tinykv/proto/tinykv/v1";
import { rpcFailure, SendGate, toServerError } from "@tinykv/rpc";
import { checkTraceId, KEY_BYTES_MAX, shardId } from "@tinykv/shard";
import type { KvDriver } from "./kv_app.ts";
import type { ShardWatcher, WatchFailure, WatchHub, WatchSink } from "./watch_hub.ts";

/** How often the sweep checks watched replicas and sends progress. */
export const WATCH_SWEEP_MS = 500;
/** The trailer naming the leader's address when a watch ends because this replica does not lead. */
export const LEADER_ADDRESS_TRAILER = "tinykv-leader-address";
/** Watches one kvnode serves at once. */
export const WATCHERS_MAX = 10_000;

/** Options of {@linkcode watchHandler}. */
export interface WatchServiceOptions {
  readonly driver: KvDriver;
  readonly hub: WatchHub;
  /** The log lines of traced watches. */
  readonly log?: { info(message: string, fields: Record<string, unknown>): void };
}

type WatchCall = grpc.ServerWritableStream<ShardWatchRequest, ShardWatchResponse>;

/** The sweep of a node's watched replicas; runs while watchers are open. */
export class WatchSweeper {
  readonly #options: WatchServiceOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  #running = false;

  constructor(options: WatchServiceOptions) {
    this.#options = options;
  }

  /** A watcher registered: sweep until none is left. */
  ensureRunning(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#sweep(), WATCH_SWEEP_MS);
  }

  /** Stops the timer (the node is stopping). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #sweep(): Promise<void> {
    if (this.#running) return;
    const { hub, driver } = this.#options;
    if (!hub.hasWatchers()) {
      this.stop();
      return;
    }
    this.#running = true;
    try {
      await driver.inspect((replicas) => {
        const byShard = new Map(replicas.map((replica) => [replica.shardId as number, replica]));
        hub.sweep((id) => {
          const replica = byShard.get(id);
          if (replica === undefined) return undefined;
          const leader = replica.leader();
          const self = leader?.peerId === replica.peerId;
          return {
            peerId: replica.peerId,
            leading: replica.isLeader(),
            applied: replica.log.appliedState.applied,
            leaderNode: leader === undefined || self ? "" : leader.nodeId,
            leaderAddress: leader === undefined || self ? "" : leader.address,
          };
        }, driver.nodeId);
      });
    } catch {
      // The driver stopped: the node is going down, and the streams with it.
    } finally {
      this.#running = false;
    }
  }
}

/** The `KvNode.Watch` handler of a kvnode. */
export function watchHandler(
  options: WatchServiceOptions,
  sweeper: WatchSweeper,
): (call: WatchCall) => void {
  return (call) => void serveWatch(call, options, sweeper);
}

async function serveWatch(
  call: WatchCall,
  options: WatchServiceOptions,
  sweeper: WatchSweeper,
): Promise<void> {
  // A call can be canceled before its handler runs, its "cancelled" event past: looked at here,
  // again after every wait, and by the sweep (the sink's `gone`) for as long as the watcher lives.
  if (callGone(call)) return;
  const request = call.request;
  const invalid = checkWatchRequest(request);
  if (invalid !== undefined) {
    end(call, { kind: "invalidArgument", message: invalid });
    return;
  }
  const { hub, driver } = options;
  const trace = request.traceId === "" ? undefined : { trace: request.traceId };
  if (trace !== undefined) {
    options.log?.info("Traced watch arrived", { ...trace, shard: request.shardId });
  }
  if (hub.stats.watchers >= WATCHERS_MAX) {
    end(call, {
      kind: "resourceExhausted",
      message: `Node "${driver.nodeId}" serves ${WATCHERS_MAX} watches: the limit`,
    });
    return;
  }
  const held: { watcher?: ShardWatcher } = {};
  let gone = false;
  const onGone = () => {
    gone = true;
    held.watcher?.cancel();
  };
  call.on("cancelled", onGone);
  call.on("close", onGone);
  call.on("error", onGone);
  call.on("finish", onGone);
  // Deno's HTTP/2 server takes every write: whether the caller takes more is its send window
  // (libs/rpc send_window.ts). The watcher waits for it, and is cut if the window evicts its changes.
  const gate = new SendGate(call, () => held.watcher?.resume());
  const sink: WatchSink = {
    send(events: WatchEvent[], index: number): boolean {
      if (gone || call.destroyed) return true;
      return gate.wrote(call.write({ events, index }));
    },
    gone: () => gone || callGone(call),
    close(failure: WatchFailure): void {
      if (trace !== undefined) {
        options.log?.info("Traced watch ended", { ...trace, status: failure.kind });
      }
      end(call, failure);
    },
  };
  let registered: Awaited<ReturnType<typeof register>>;
  try {
    registered = await register(options, request, sink);
  } catch (error) {
    registered = { kind: "unavailable", message: `Node "${driver.nodeId}" is stopping: ${error}` };
  }
  if (registered.kind !== "ok") {
    end(call, registered);
    return;
  }
  const watcher = registered.watcher;
  held.watcher = watcher;
  if (gone || callGone(call)) {
    watcher.cancel();
    return;
  }
  // The window may have opened before the watcher was known here.
  if (!gate.waiting) watcher.resume();
  // The first message, the position the watch starts from, went out when it registered.
  hub.pump(watcher);
  sweeper.ensureRunning();
}

function register(options: WatchServiceOptions, request: ShardWatchRequest, sink: WatchSink) {
  const { driver, hub } = options;
  const id = shardId(request.shardId);
  return driver.inspect((replicas) => {
    const replica = replicas.find((candidate) => candidate.shardId === id);
    if (replica === undefined) {
      return unavailable(`Shard ${id} has no replica on node "${driver.nodeId}"`);
    }
    if (request.confEpoch !== 0 && request.confEpoch > replica.confEpoch) {
      return unavailable(
        `Shard ${id}: the caller's conf epoch ${request.confEpoch} is newer than this ` +
          `replica's ${replica.confEpoch}`,
      );
    }
    if (!replica.isLeader()) {
      const leader = replica.leader();
      const self = leader?.peerId === replica.peerId;
      const known = leader !== undefined && !self;
      return {
        kind: "unavailable" as const,
        message: `Shard ${id}: node "${driver.nodeId}" is not the leader` +
          (known ? ` (leader is "${leader.nodeId}")` : " (no leader known)"),
        leaderAddress: known ? leader.address : "",
      };
    }
    const window = hub.windowOf(id);
    if (window === undefined || window.peerId !== replica.peerId) {
      return unavailable(`Shard ${id}: node "${driver.nodeId}" keeps no changes for it`);
    }
    return hub.register(
      window,
      {
        start: request.start,
        end: request.end.length === 0 ? undefined : request.end,
        afterIndex: request.resume ? request.afterIndex : undefined,
      },
      { applied: replica.log.appliedState.applied, lastIndex: replica.log.lastIndex() },
      sink,
    );
  });
}

function unavailable(message: string): WatchFailure {
  return { kind: "unavailable", message };
}

/** Why `request` cannot be served, or undefined. */
export function checkWatchRequest(request: ShardWatchRequest): string | undefined {
  if (request.start.length > KEY_BYTES_MAX) {
    return `Watch start key has ${request.start.length} bytes: the maximum is ${KEY_BYTES_MAX}`;
  }
  if (request.end.length > KEY_BYTES_MAX + 1) {
    return `Watch end key has ${request.end.length} bytes: the maximum is ${KEY_BYTES_MAX + 1}`;
  }
  if (!Number.isSafeInteger(request.afterIndex)) {
    return `Watch position ${request.afterIndex} is not an index`;
  }
  if (request.traceId !== "") return checkTraceId(request.traceId);
  return undefined;
}

/**
 * Whether `call` has no caller any more: canceled, destroyed, or its HTTP/2 stream closed. The
 * last covers a call whose stream closed before grpc-js made the call object: grpc-js then never
 * emits "cancelled" on it (1.14 `handleServerStreaming`: `onCancel` finds no stream yet), and the
 * watcher would otherwise live until its replica stops leading. The stream is found as libs/rpc
 * `sessionOf` finds the session (the call's `call`, then `nextCall` of interceptors, holds it).
 */
export function callGone(call: WatchCall): boolean {
  if (call.cancelled || call.destroyed) return true;
  // deno-lint-ignore no-explicit-any
  let inner: any = (call as any).call;
  for (let depth = 0; depth < 6 && inner !== undefined && inner !== null; depth++) {
    const stream = inner.stream;
    if (stream !== undefined && stream !== null) {
      return stream.closed === true || stream.destroyed === true;
    }
    inner = inner.nextCall;
  }
  return false;
}

function end(call: WatchCall, failure: WatchFailure): void {
  if (call.cancelled || call.destroyed) return;
  const error = toServerError(rpcFailure(failure.kind, failure.message));
  if (failure.leaderAddress !== undefined && failure.leaderAddress !== "") {
    error.metadata?.set(LEADER_ADDRESS_TRAILER, failure.leaderAddress);
  }
  call.emit("error", error);
}
