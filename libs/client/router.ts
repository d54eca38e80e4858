/**
 * {@linkcode KvRouter}: sends one request to the kvnode leading its shard and retries until it has
 * a final answer or its deadline comes. The routing core shared by the gateway and the client
 * library:
 *
 * - key → shard by FNV-1a over the published shard map (hash tags included, `libs/shard`);
 * - shard → leader from a cache, else the map's leader hint, else each replica in turn;
 * - `not_leader` with a hint → straight to that leader; `unavailable`/`unknown` → another replica
 *   after a jittered backoff; `stale_epoch` → wait briefly for a newer map;
 * - every retry carries the same `(client_id, seq, ack_seq)`, so a mutation applies once however
 *   often it is sent;
 * - the answer comes before the deadline: `deadlineExceeded` when some attempt may have applied
 *   the request (outcome unknown), `unavailable` when none can have.
 *
 * @module
 */
import { ItemFailure_Kind, type RequestItem, type ResponseItem } from "@tinykv/proto/tinykv/v1";
import { shardById, type ShardEntry, shardForKey, shardId as toShardId } from "@tinykv/shard";
import { backoffDelayMs } from "@tinykv/timer";
import type { ClusterView } from "./cluster_view.ts";
import { BATCH_ITEMS_MAX_DEFAULT, KvNodeStream } from "./kvnode_stream.ts";

/** An operation as the router sends it: one of the `RequestItem` operation fields. */
export type RouteOp = Omit<RequestItem, "id" | "shardId" | "confEpoch" | "timeoutMs">;

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
  readonly maxMessageBytes: number;
  /** The shortest and longest wait between attempts. */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** The longest one attempt may wait for its kvnode. */
  readonly attemptTimeoutMsMax?: number;
  /** Randomness for backoff jitter. */
  readonly prng?: () => number;
  /** Requests per `BatchRequest` to one kvnode (default {@linkcode BATCH_ITEMS_MAX_DEFAULT}). */
  readonly batchItemsMax?: number;
}

const BACKOFF_MIN_MS_DEFAULT = 10;
/**
 * The longest pause between attempts. Short, because the pauses come in a failover: the old
 * leader's node is gone and the others name it or no one until the election ends (a replica that
 * knows no leader holds the request until one is elected); a long pause would add itself to the
 * failover time. Attempts stay bounded by the request's deadline.
 */
const BACKOFF_MAX_MS_DEFAULT = 100;
const ATTEMPT_TIMEOUT_MS_MAX_DEFAULT = 2000;
/** Answer this long before the caller's deadline, so the answer arrives in time. */
const DEADLINE_MARGIN_MS = 20;

/** Routes requests to shard leaders. */
export class KvRouter {
  readonly #options: KvRouterOptions;
  readonly #streams = new Map<string, KvNodeStream>();
  /** Shard id → the address that last answered as leader (or was named as leader). */
  readonly #leaders = new Map<number, string>();
  #closed = false;

  constructor(options: KvRouterOptions) {
    this.#options = options;
  }

  /** The shard a key belongs to under the current map, if there is a map. */
  shardOf(key: Uint8Array): ShardEntry | undefined {
    const map = this.#options.view.shardMap();
    return map === undefined ? undefined : shardForKey(map, key);
  }

  /** The ids of every shard in the current map, if there is a map. */
  shards(): number[] | undefined {
    return this.#options.view.shardMap()?.shards.map((shard) => shard.id);
  }

  /** Sends `op` for `key` (or to `target.shardId` for a scan) and retries until `deadlineMs`. */
  async route(
    target: { readonly key: Uint8Array } | { readonly shardId: number },
    op: RouteOp,
    deadlineMs: number,
  ): Promise<RouteResult> {
    const until = deadlineMs - DEADLINE_MARGIN_MS;
    let attempts = 0;
    let maybeApplied = false;
    let lastProblem = "no attempt was made before the deadline";
    while (!this.#closed) {
      const now = Date.now();
      if (now >= until) break;
      const shard = this.#shardFor(target);
      if (shard === undefined) {
        lastProblem = "no shard map is known yet";
        await this.#options.view.changed(Math.min(200, until - now));
        continue;
      }
      const address = this.#pickAddress(shard, attempts);
      attempts++;
      if (address === undefined) {
        lastProblem = `shard ${shard.id} has no replica with a known address`;
        await this.#pause(attempts, until);
        continue;
      }
      const timeoutMs = Math.min(
        until - now,
        this.#options.attemptTimeoutMsMax ?? ATTEMPT_TIMEOUT_MS_MAX_DEFAULT,
      );
      const item = await this.#stream(address).request({
        ...op,
        shardId: shard.id,
        confEpoch: shard.confEpoch,
        timeoutMs: Math.max(1, Math.floor(timeoutMs)),
      });
      const failure = item.failure;
      if (failure === undefined) {
        this.#leaders.set(shard.id, address);
        return { kind: "ok", item, attempts };
      }
      lastProblem = `shard ${shard.id} at ${address}: ${failure.message}`;
      switch (failure.kind) {
        case ItemFailure_Kind.NOT_LEADER:
          if (failure.leaderAddress !== "" && failure.leaderAddress !== address) {
            this.#leaders.set(shard.id, failure.leaderAddress);
            continue;
          }
          this.#leaders.delete(shard.id);
          await this.#pause(attempts, until);
          continue;
        case ItemFailure_Kind.STALE_EPOCH:
          this.#leaders.delete(shard.id);
          await this.#options.view.changed(Math.min(200, until - Date.now()));
          continue;
        case ItemFailure_Kind.UNKNOWN:
          maybeApplied = true;
          this.#forget(address, shard.id, failure.message);
          await this.#pause(attempts, until);
          continue;
        case ItemFailure_Kind.UNAVAILABLE:
          this.#forget(address, shard.id, failure.message);
          await this.#pause(attempts, until);
          continue;
        default:
          return {
            kind: finalKind(failure.kind),
            message: failure.message,
            attempts,
            maybeApplied,
          };
      }
    }
    const message = `Request did not complete before its deadline: ${lastProblem}`;
    return {
      kind: maybeApplied ? "deadlineExceeded" : "unavailable",
      message,
      attempts,
      maybeApplied,
    };
  }

  #shardFor(target: { readonly key: Uint8Array } | { readonly shardId: number }) {
    const map = this.#options.view.shardMap();
    if (map === undefined) return undefined;
    return "key" in target
      ? shardForKey(map, target.key)
      : shardById(map, toShardId(target.shardId));
  }

  #pickAddress(shard: ShardEntry, attempt: number): string | undefined {
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

  #forget(address: string, shardId: number, why: string): void {
    if (this.#leaders.get(shardId) === address) this.#leaders.delete(shardId);
    // A broken stream is replaced by a fresh one on the next request to that node.
    if (/^Stream to /.test(why)) {
      this.#streams.get(address)?.close();
      this.#streams.delete(address);
    }
  }

  async #pause(attempt: number, until: number): Promise<void> {
    const delay = backoffDelayMs(Math.min(attempt, 16), {
      minMs: this.#options.backoffMinMs ?? BACKOFF_MIN_MS_DEFAULT,
      maxMs: this.#options.backoffMaxMs ?? BACKOFF_MAX_MS_DEFAULT,
      prng: this.#options.prng,
    });
    const wait = Math.min(delay, until - Date.now());
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }

  #stream(address: string): KvNodeStream {
    let stream = this.#streams.get(address);
    if (stream === undefined) {
      stream = new KvNodeStream(address, {
        maxMessageBytes: this.#options.maxMessageBytes,
        batchItemsMax: this.#options.batchItemsMax ?? BATCH_ITEMS_MAX_DEFAULT,
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
