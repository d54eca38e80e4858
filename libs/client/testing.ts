/**
 * In-memory fakes for testing code that reaches kvnodes through `libs/client`, on a `FakeClock`,
 * without processes or sockets:
 *
 * - {@linkcode FakeKvNodes}: kvnodes by address behind {@linkcode BatchChannel}s. Pass its
 *   `connect` to a `KvRouter` or `KvNodeStream`; a handler decides each request's answer (at once,
 *   after a delay on the clock, or never), and the test can break calls or take a node down.
 * - {@linkcode runOnClock}: drives a fake clock until a promise settles, firing timeouts in order.
 * - {@linkcode failure} and {@linkcode answerOf}: answers to return from a handler.
 *
 * @example
 * ```ts ignore
 * import { KvRouter, StaticClusterView } from "@tinykv/client";
 * import { FakeKvNodes, runOnClock } from "@tinykv/client/testing";
 * import { FakeClock } from "@tinykv/timer";
 *
 * const clock = new FakeClock(1_000_000);
 * const nodes = new FakeKvNodes({ clock, handle: () => ({ answer: { put: {} } }) });
 * const router = new KvRouter({ view, maxMessageBytes: 1 << 20, clock, connect: nodes.connect });
 * const result = await runOnClock(clock, router.route({ key }, op, clock.now() + 1000));
 * ```
 *
 * @module
 */
import type {
  BatchRequest,
  ItemFailure,
  ItemFailure_Kind,
  RequestItem,
  ResponseItem,
} from "@tinykv/proto/tinykv/v1";
import type { Clock, FakeClock } from "@tinykv/timer";
import type { BatchCall, BatchCallEvents, BatchChannel } from "./kvnode_stream.ts";

/** What a fake kvnode does with one request. */
export type FakeReply =
  /** Answers with `answer` after `afterMs` on the clock (default: at the end of the turn). */
  | { readonly answer: Omit<ResponseItem, "id">; readonly afterMs?: number }
  /** Never answers; the request waits until its stream breaks. */
  | { readonly hold: true };

/** Decides a fake kvnode's reply to `request`, received at `address`. */
export type FakeKvNodeHandler = (request: RequestItem, address: string) => FakeReply;

/** One request a fake kvnode received. */
export interface FakeReceived {
  readonly address: string;
  readonly item: RequestItem;
}

/** A `ResponseItem` failure of `kind` with `message` and, for NOT_LEADER, the leader's address. */
export function failure(
  kind: ItemFailure_Kind,
  message: string,
  options: { readonly leaderAddress?: string; readonly confEpoch?: number } = {},
): { readonly answer: { failure: ItemFailure } } {
  return {
    answer: {
      failure: {
        kind,
        message,
        leaderNode: "",
        leaderAddress: options.leaderAddress ?? "",
        confEpoch: options.confEpoch ?? 0,
      },
    },
  };
}

/** A successful answer to `request`, of the same operation, with empty results. */
export function answerOf(request: RequestItem): Omit<ResponseItem, "id"> {
  if (request.get !== undefined) return { get: { found: false, value: new Uint8Array() } };
  if (request.put !== undefined) return { put: {} };
  if (request.delete !== undefined) return { delete: { deleted: false } };
  if (request.append !== undefined) return { append: { length: request.append.value.length } };
  if (request.compareAndSwap !== undefined) {
    return { compareAndSwap: { succeeded: false, found: false, current: new Uint8Array() } };
  }
  if (request.txn !== undefined) return { txn: { succeeded: true, results: [] } };
  return { scan: { kvs: [], more: false, next: new Uint8Array() } };
}

interface OpenCall {
  readonly address: string;
  /** The channel the call was opened on (one per `connect`). */
  readonly channel: object;
  readonly events: BatchCallEvents;
  open: boolean;
}

/** Options of {@linkcode FakeKvNodes}. */
export interface FakeKvNodesOptions {
  /** The clock delayed answers wait on. */
  readonly clock: Clock;
  /** Decides every reply; the test may replace it with {@linkcode FakeKvNodes.handle}. */
  readonly handle: FakeKvNodeHandler;
}

/**
 * Fake kvnodes, one per address, reached through {@linkcode FakeKvNodes.connect}. Every call to an
 * address in {@linkcode FakeKvNodes.down} fails at the end of the turn it was opened in, after the
 * stream wrote to it, as a grpc-js call to a refused port does.
 */
export class FakeKvNodes {
  /** Every request received, in order. */
  readonly received: FakeReceived[] = [];
  /** Addresses where nothing listens. */
  readonly down: Set<string> = new Set();
  /** Decides every reply. */
  handle: FakeKvNodeHandler;
  readonly #clock: Clock;
  readonly #calls: OpenCall[] = [];
  readonly #opened = new Map<string, number>();
  readonly #channelsClosed = new Map<string, number>();

  constructor(options: FakeKvNodesOptions) {
    this.#clock = options.clock;
    this.handle = options.handle;
  }

  /** Opens a channel to the fake kvnode at `address`; the `connect` option of a stream or router. */
  readonly connect = (address: string): BatchChannel => {
    const channel = {};
    return {
      open: (events) => this.#open(address, channel, events),
      close: () => {
        this.#channelsClosed.set(address, this.channelsClosed(address) + 1);
        this.#breakWhere((call) => call.channel === channel, "failed: the channel was closed");
      },
    };
  };

  /** How many `Batch` calls were opened to `address`. */
  callsOpened(address: string): number {
    return this.#opened.get(address) ?? 0;
  }

  /** How many channels to `address` were closed. */
  channelsClosed(address: string): number {
    return this.#channelsClosed.get(address) ?? 0;
  }

  /** The requests `address` received. */
  receivedAt(address: string): RequestItem[] {
    return this.received.filter((r) => r.address === address).map((r) => r.item);
  }

  /** Breaks every open call to `address` now, as a reset connection does. */
  breakCalls(address: string, why = "failed: connection reset"): void {
    this.#breakWhere((call) => call.address === address, why);
  }

  #open(address: string, channel: object, events: BatchCallEvents): BatchCall {
    this.#opened.set(address, this.callsOpened(address) + 1);
    const call: OpenCall = { address, channel, events, open: true };
    this.#calls.push(call);
    if (this.down.has(address)) {
      queueMicrotask(() => this.#break(call, "failed: 14 UNAVAILABLE: No connection established"));
    }
    return {
      write: (request) => this.#receive(call, request),
      end: () => {
        call.open = false;
      },
    };
  }

  #receive(call: OpenCall, request: BatchRequest): void {
    if (!call.open || this.down.has(call.address)) return;
    for (const item of request.items) {
      this.received.push({ address: call.address, item });
      const reply = this.handle(item, call.address);
      if ("hold" in reply) continue;
      const deliver = () => {
        if (call.open) call.events.onResponse({ items: [{ ...reply.answer, id: item.id }] });
      };
      if (reply.afterMs === undefined) queueMicrotask(deliver);
      else this.#clock.setTimeout(deliver, reply.afterMs);
    }
  }

  #breakWhere(match: (call: OpenCall) => boolean, why: string): void {
    for (const call of this.#calls.filter(match)) this.#break(call, why);
  }

  #break(call: OpenCall, why: string): void {
    if (!call.open) return;
    call.open = false;
    this.#calls.splice(this.#calls.indexOf(call), 1);
    call.events.onBroken(why);
  }
}

/** The most timeouts {@linkcode runOnClock} fires before it gives up. */
const RUN_STEPS_MAX = 100_000;

/**
 * Resolves with what `promise` settles to, firing `clock`'s timeouts one due time at a time while
 * it waits. Between steps it lets the event loop turn once (a zero-delay real timeout), so every
 * microtask the fakes queued runs first; no real time is waited on.
 *
 * @throws {Error} If `promise` is still pending when no timeout is left to fire.
 */
export async function runOnClock<T>(clock: FakeClock, promise: Promise<T>): Promise<T> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  // Awaited below once settled; until then, a rejection is not unhandled.
  watched.catch(() => {});
  for (let step = 0; step < RUN_STEPS_MAX; step++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (settled) return await watched;
    if (clock.runNext() === 0) {
      throw new Error(`Cannot settle the promise: nothing is due on the clock at ${clock.now()}`);
    }
  }
  throw new Error(`Cannot settle the promise: ${RUN_STEPS_MAX} steps of the clock did not`);
}
