/**
 * {@linkcode KvRouter}: sends one request to the kvnode leading its shard and retries until it has
 * a final answer or its deadline comes. The one leader-following retry loop of the product, shared
 * by the gateway, the client library, the test harness and the benchmarks:
 *
 * - key → shard by FNV-1a over the published shard map (hash tags included, `libs/shard`), or a
 *   caller's own `locate` where shards were created by hand and no map is published;
 * - shard → leader from a cache, else the map's leader hint, else each replica in turn;
 * - `not_leader` with a hint → straight to that leader; `unavailable`/`unknown` or a broken
 *   stream → another replica after a jittered backoff; `stale_epoch` → wait briefly for a newer
 *   map;
 * - every retry carries the same `(client_id, seq, ack_seq)`, so a mutation applies once however
 *   often it is sent;
 * - the answer comes before the deadline: `deadlineExceeded` when some attempt may have applied
 *   the request (outcome unknown), `unavailable` when none can have.
 *
 * Time comes from an injected {@linkcode Clock}, so the loop runs on a `FakeClock` in tests.
 *
 * @module
 */
import { ItemFailure_Kind, type RequestItem, type ResponseItem } from "@tinykv/proto/tinykv/v1";
import {
  shardById,
  type ShardEntry,
  shardForKey,
  type ShardId,
  shardId as toShardId,
} from "@tinykv/shard";
import type { ClientSecurity } from "@tinykv/rpc";
import { backoffDelayMs, type Clock, dateClock } from "@tinykv/timer";
import type { ClusterView } from "./cluster_view.ts";
import {
  BATCH_ITEMS_MAX_DEFAULT,
  KvNodeStream,
  type KvNodeStreamOptions,
  type StreamOutcome,
} from "./kvnode_stream.ts";

/** An operation as the router sends it: one of the `RequestItem` operation fields. */
export type RouteOp =
  & Omit<RequestItem, "id" | "shardId" | "confEpoch" | "timeoutMs" | "traceId">
  & {
    /** Follow the request under this id in every service's log (empty or absent: not traced). */
    readonly traceId?: string;
  };

/** What a request is for: the shard owning a key, or a shard by id (a scan's part). */
export type RouteTarget = { readonly key: Uint8Array } | { readonly shardId: ShardId };

/**
 * What the router needs to know of a shard to reach it: its id, conf epoch (sent with each request
 * for fencing; 0 is never stale), replicas (node ids, resolved by the view's `nodeAddress`) and the
 * node believed to lead it.
 */
export type RouteShard = Pick<ShardEntry, "id" | "confEpoch" | "replicas" | "leaderHint">;

/** The final answer to a routed request. */
export type RouteResult =
  | { readonly kind: "ok"; readonly item: ResponseItem; readonly attempts: number }
  | {
    readonly kind:
      | "invalidArgument"
      | "unavailable"
      | "deadlineExceeded"
      | "failedPrecondition"
      | "resourceExhausted"
      | "dataLoss"
      | "internal";
    readonly message: string;
    readonly attempts: number;
    /** Whether some attempt may have applied the request (one ended with an unknown outcome). */
    readonly maybeApplied: boolean;
  };

/** Options of a {@linkcode KvRouter}. */
export interface KvRouterOptions {
  readonly view: ClusterView;
  /**
   * Finds the shard a target names, or undefined while none is known (the router then waits for
   * the view to change). Default: the target's entry in the view's shard map. Callers that create
   * shards by hand and publish no map (test harnesses, benchmarks) say here where a shard lives.
   */
  readonly locate?: (target: RouteTarget) => RouteShard | undefined;
  readonly maxMessageBytes: number;
  /** TLS and the token for the streams to kvnodes (none: plaintext, no credential). */
  readonly security?: ClientSecurity;
  /** The shortest and longest wait between attempts. */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** The longest one attempt may wait for its kvnode. */
  readonly attemptTimeoutMsMax?: number;
  /** Randomness for backoff jitter. */
  readonly prng?: () => number;
  /** Requests per `BatchRequest` to one kvnode (default {@linkcode BATCH_ITEMS_MAX_DEFAULT}). */
  readonly batchItemsMax?: number;
  /**
   * The clock deadlines are read on (default: the real clock on `Date.now()`'s scale, epoch
   * milliseconds, as gRPC deadlines are). Every `deadlineMs` passed to
   * {@linkcode KvRouter.route} must be on this clock's scale.
   */
  readonly clock?: Clock;
  /** Opens the channel to a kvnode (default: gRPC; an in-memory fake in tests). */
  readonly connect?: KvNodeStreamOptions["connect"];
}

const BACKOFF_MIN_MS_DEFAULT = 10;
/**
 * The longest pause between attempts. Short, because the pauses come in a failover: the old
 * leader's node is gone and the others name it or no one until the election ends (a replica that
 * knows no leader holds the request until one is elected); a long pause would add itself to the
 * failover time. Attempts stay bounded by the request's deadline.
 */
export const BACKOFF_MAX_MS_DEFAULT = 100;
const ATTEMPT_TIMEOUT_MS_MAX_DEFAULT = 2000;
/** Answer this long before the caller's deadline, so the answer arrives in time. */
export const DEADLINE_MARGIN_MS = 20;
/** The longest wait for a newer shard map before trying again. */
const MAP_WAIT_MS_MAX = 200;

/** What one call of {@linkcode KvRouter.route} has seen so far. */
interface RouteState {
  attempts: number;
  maybeApplied: boolean;
  lastProblem: string;
  /** The caller's deadline less {@linkcode DEADLINE_MARGIN_MS}, on the router's clock. */
  readonly until: number;
}

/** Routes requests to shard leaders. */
export class KvRouter {
  readonly #options: KvRouterOptions;
  readonly #clock: Clock;
  readonly #streams = new Map<string, KvNodeStream>();
  readonly #stats = { retries: 0, redirects: 0 };
  /** Shard id → the address that last answered as leader (or was named as leader). */
  readonly #leaders = new Map<ShardId, string>();
  #closed = false;

  constructor(options: KvRouterOptions) {
    this.#options = options;
    this.#clock = options.clock ?? dateClock;
  }

  /** The clock the router reads deadlines on (see {@linkcode KvRouterOptions.clock}). */
  get clock(): Clock {
    return this.#clock;
  }

  /**
   * Counts since the router was made: `retries`, attempts after a request's first (whatever the
   * cause); `redirects`, attempts sent to the leader a NOT_LEADER answer named.
   */
  get stats(): { readonly retries: number; readonly redirects: number } {
    return { ...this.#stats };
  }

  /** The streams open to kvnodes (one per kvnode address). */
  get streams(): number {
    return this.#streams.size;
  }

  /** The shard a key belongs to under the current map, if there is a map. */
  shardOf(key: Uint8Array): ShardEntry | undefined {
    const map = this.#options.view.shardMap();
    return map === undefined ? undefined : shardForKey(map, key);
  }

  /** The ids of every shard in the current map, if there is a map. */
  shards(): ShardId[] | undefined {
    return this.#options.view.shardMap()?.shards.map((shard) => shard.id);
  }

  /**
   * Where to reach shard `id`'s leader, best guess first (the leader last seen or named, the map's
   * hint, then every replica), and the shard's conf epoch; undefined while no map names the shard.
   * For calls that are not requests of the data stream (watches).
   */
  candidates(id: ShardId): { confEpoch: number; addresses: string[] } | undefined {
    const map = this.#options.view.shardMap();
    const shard = map === undefined ? undefined : shardById(map, toShardId(id));
    if (shard === undefined) return undefined;
    const view = this.#options.view;
    const addresses: string[] = [];
    const add = (address: string | undefined) => {
      if (address !== undefined && !addresses.includes(address)) addresses.push(address);
    };
    add(this.#leaders.get(shard.id));
    if (shard.leaderHint !== undefined) add(view.nodeAddress(shard.leaderHint));
    for (const node of shard.replicas) add(view.nodeAddress(node));
    return { confEpoch: shard.confEpoch, addresses };
  }

  /** A call other than the data stream found (or was told of) shard `id`'s leader. */
  noteLeader(id: ShardId, address: string | undefined): void {
    if (address === undefined || address === "") this.#leaders.delete(id);
    else this.#leaders.set(id, address);
  }

  /** Resolves when the shard map or node addresses change, or after `timeoutMs`. */
  mapChanged(timeoutMs: number): Promise<void> {
    return this.#options.view.changed(timeoutMs);
  }

  /**
   * Sends `op` to the shard `target` names and retries until `deadlineMs` (on the router's clock).
   * Resolves {@linkcode DEADLINE_MARGIN_MS} before the deadline at the latest; never rejects.
   */
  async route(target: RouteTarget, op: RouteOp, deadlineMs: number): Promise<RouteResult> {
    const state: RouteState = {
      attempts: 0,
      maybeApplied: false,
      lastProblem: "no attempt was made before the deadline",
      until: deadlineMs - DEADLINE_MARGIN_MS,
    };
    while (!this.#closed) {
      const now = this.#clock.now();
      if (now >= state.until) break;
      const shard = this.#locate(target, state);
      if (shard === undefined) {
        await this.#options.view.changed(Math.min(MAP_WAIT_MS_MAX, state.until - now));
        continue;
      }
      const address = this.#pickAddress(shard, state.attempts);
      state.attempts++;
      if (state.attempts > 1) this.#stats.retries++;
      if (address === undefined) {
        state.lastProblem = `shard ${shard.id} has no replica with a known address`;
        await this.#pause(state);
        continue;
      }
      const timeoutMs = Math.min(
        state.until - now,
        this.#options.attemptTimeoutMsMax ?? ATTEMPT_TIMEOUT_MS_MAX_DEFAULT,
      );
      const stream = this.#stream(address);
      const outcome = await stream.send({
        ...op,
        traceId: op.traceId ?? "",
        shardId: shard.id,
        confEpoch: shard.confEpoch,
        timeoutMs: Math.max(1, Math.floor(timeoutMs)),
      });
      if (outcome.kind === "answered" && outcome.item.failure === undefined) {
        // The common case, answered without the detour through #settle's promises.
        this.#leaders.set(shard.id, address);
        return { kind: "ok", item: outcome.item, attempts: state.attempts };
      }
      const final = await this.#settle(outcome, { shard, address, stream }, state);
      if (final !== undefined) return final;
    }
    const message = `Request did not complete before its deadline: ${state.lastProblem}`;
    const { attempts, maybeApplied } = state;
    return {
      kind: maybeApplied ? "deadlineExceeded" : "unavailable",
      message,
      attempts,
      maybeApplied,
    };
  }

  /**
   * Acts on one attempt's outcome: returns the final answer, or undefined once ready for the next
   * attempt (after a pause where one is due).
   */
  async #settle(
    outcome: StreamOutcome,
    at: { readonly shard: RouteShard; readonly address: string; readonly stream: KvNodeStream },
    state: RouteState,
  ): Promise<RouteResult | undefined> {
    switch (outcome.kind) {
      case "answered":
        return await this.#settleAnswer(outcome.item, at, state);
      case "streamBroken":
        // A request that had left may have been applied; one that had not, was not.
        if (outcome.sent) state.maybeApplied = true;
        state.lastProblem = `shard ${at.shard.id} at ${at.address}: ${outcome.message}`;
        this.#forgetLeader(at.shard.id, at.address);
        // The next request to that node opens a fresh channel.
        this.#dropStream(at.address, at.stream);
        await this.#pause(state);
        return undefined;
      case "overloaded": {
        const { attempts, maybeApplied } = state;
        return { kind: "resourceExhausted", message: outcome.message, attempts, maybeApplied };
      }
      default: {
        const unreachable: never = outcome;
        return unreachable;
      }
    }
  }

  async #settleAnswer(
    item: ResponseItem,
    at: { readonly shard: RouteShard; readonly address: string },
    state: RouteState,
  ): Promise<RouteResult | undefined> {
    const { shard, address } = at;
    const failure = item.failure;
    if (failure === undefined) {
      this.#leaders.set(shard.id, address);
      return { kind: "ok", item, attempts: state.attempts };
    }
    state.lastProblem = `shard ${shard.id} at ${address}: ${failure.message}`;
    switch (failure.kind) {
      case ItemFailure_Kind.NOT_LEADER:
        if (failure.leaderAddress !== "" && failure.leaderAddress !== address) {
          this.#leaders.set(shard.id, failure.leaderAddress);
          this.#stats.redirects++;
          return undefined;
        }
        this.#leaders.delete(shard.id);
        await this.#pause(state);
        return undefined;
      case ItemFailure_Kind.STALE_EPOCH:
        this.#leaders.delete(shard.id);
        await this.#options.view.changed(
          Math.min(MAP_WAIT_MS_MAX, state.until - this.#clock.now()),
        );
        return undefined;
      case ItemFailure_Kind.UNKNOWN:
        state.maybeApplied = true;
        this.#forgetLeader(shard.id, address);
        await this.#pause(state);
        return undefined;
      case ItemFailure_Kind.UNAVAILABLE:
        this.#forgetLeader(shard.id, address);
        await this.#pause(state);
        return undefined;
      default: {
        const { attempts, maybeApplied } = state;
        return { kind: finalKind(failure.kind), message: failure.message, attempts, maybeApplied };
      }
    }
  }

  #locate(target: RouteTarget, state: RouteState): RouteShard | undefined {
    if (this.#options.locate !== undefined) {
      const shard = this.#options.locate(target);
      if (shard === undefined) state.lastProblem = "no kvnode is known for the request's shard";
      return shard;
    }
    const map = this.#options.view.shardMap();
    if (map === undefined) {
      state.lastProblem = "no shard map is known yet";
      return undefined;
    }
    if ("key" in target) return shardForKey(map, target.key);
    const shard = shardById(map, toShardId(target.shardId));
    if (shard === undefined) {
      state.lastProblem = `shard ${target.shardId} is not in shard map version ${map.version}`;
    }
    return shard;
  }

  #pickAddress(shard: RouteShard, attempt: number): string | undefined {
    const cached = this.#leaders.get(shard.id);
    if (cached !== undefined) return cached;
    const view = this.#options.view;
    if (shard.leaderHint !== undefined && attempt === 0) {
      const hinted = view.nodeAddress(shard.leaderHint);
      if (hinted !== undefined) return hinted;
    }
    const members = shard.replicas;
    for (let i = 0; i < members.length; i++) {
      const address = view.nodeAddress(members[(attempt + i) % members.length]);
      if (address !== undefined) return address;
    }
    return undefined;
  }

  #forgetLeader(shardId: ShardId, address: string): void {
    if (this.#leaders.get(shardId) === address) this.#leaders.delete(shardId);
  }

  /** Closes a broken stream, unless another request replaced it already. */
  #dropStream(address: string, stream: KvNodeStream): void {
    if (this.#streams.get(address) !== stream) return;
    this.#streams.delete(address);
    stream.close();
  }

  async #pause(state: RouteState): Promise<void> {
    // A closed router answers at once: nothing will be tried again.
    if (this.#closed) return;
    const delay = backoffDelayMs(Math.min(state.attempts, 16), {
      minMs: this.#options.backoffMinMs ?? BACKOFF_MIN_MS_DEFAULT,
      maxMs: this.#options.backoffMaxMs ?? BACKOFF_MAX_MS_DEFAULT,
      prng: this.#options.prng,
    });
    const wait = Math.min(delay, state.until - this.#clock.now());
    if (wait > 0) {
      await new Promise<void>((resolve) => this.#clock.setTimeout(() => resolve(), wait));
    }
  }

  #stream(address: string): KvNodeStream {
    let stream = this.#streams.get(address);
    if (stream === undefined) {
      stream = new KvNodeStream(address, {
        maxMessageBytes: this.#options.maxMessageBytes,
        security: this.#options.security,
        batchItemsMax: this.#options.batchItemsMax ?? BATCH_ITEMS_MAX_DEFAULT,
        connect: this.#options.connect,
      });
      this.#streams.set(address, stream);
    }
    return stream;
  }

  /** Closes every stream; requests in flight are answered as failed. */
  close(): void {
    this.#closed = true;
    for (const stream of this.#streams.values()) stream.close();
    this.#streams.clear();
  }
}

function finalKind(kind: ItemFailure_Kind): Exclude<RouteResult["kind"], "ok"> {
  switch (kind) {
    case ItemFailure_Kind.INVALID:
      return "invalidArgument";
    case ItemFailure_Kind.SESSION_EXPIRED:
      return "failedPrecondition";
    case ItemFailure_Kind.RESOURCE_EXHAUSTED:
      return "resourceExhausted";
    case ItemFailure_Kind.DATA_LOSS:
      return "dataLoss";
    default:
      return "internal";
  }
}
