/**
 * The CLI's connection to placement's admin API (`tinykv.v1.Placement`): the `--placement`
 * addresses tried in order, a redirect to the leader named by a non-leader, and retries of
 * UNAVAILABLE (definitely not applied) until the deadline. Also a best-effort read of each
 * kvnode's `NodeAdmin.Status`, for what `ClusterState` does not carry (applied index, size).
 *
 * @module
 */
import {
  NodeAdminService,
  type NodeStatusResponse,
  PlacementService,
} from "@tinykv/proto/tinykv/v1";
import {
  type ClientSecurity,
  createGrpcClient,
  type GrpcClient,
  rpcFailure,
  type RpcResult,
  unaryCaller,
  type UnaryCallOptions,
} from "@tinykv/rpc";

/** The largest admin message sent or accepted. */
export const ADMIN_MESSAGE_BYTES_MAX = 8 * 1024 * 1024;
/** The pause between two rounds over every placement address that answered UNAVAILABLE. */
export const RETRY_PAUSE_MS = 250;
/** The bound on each kvnode `Status` call of `status` (the nodes are asked in parallel). */
export const NODE_STATUS_DEADLINE_MS_MAX = 2000;

type PlacementClient = GrpcClient<typeof PlacementService>;

/** A unary call on one placement instance. */
export type PlacementCall<T> = (
  client: PlacementClient,
  options: UnaryCallOptions,
) => Promise<RpcResult<T>>;

/** The leader address in the UNAVAILABLE message of a non-leader instance (admin_service.ts). */
const LEADER_AT = /the leader is at (\S+)$/;

/** Placement instances, tried in order; one gRPC client per address, closed by `close()`. */
export class PlacementConnection {
  readonly #endpoints: readonly string[];
  readonly #clients = new Map<string, PlacementClient>();
  /** The address that answered last, tried first next time. */
  #preferred: string | undefined;
  readonly #security: ClientSecurity;

  constructor(endpoints: readonly string[], security: ClientSecurity = {}) {
    this.#endpoints = endpoints;
    this.#security = security;
  }

  #client(address: string): PlacementClient {
    let client = this.#clients.get(address);
    if (client === undefined) {
      client = createGrpcClient(PlacementService, address, {
        maxMessageBytes: ADMIN_MESSAGE_BYTES_MAX,
        ...this.#security,
      });
      this.#clients.set(address, client);
    }
    return client;
  }

  /**
   * Runs `call` on the addresses in order until one answers anything but UNAVAILABLE, or the
   * deadline (`deadlineAt`, Unix ms) passes. A non-leader's answer naming the leader's address
   * sends the call there next, once per address. Only UNAVAILABLE is retried: it means the
   * request was definitely not applied, so retrying a mutation is safe.
   */
  async call<T>(call: PlacementCall<T>, deadlineAt: number): Promise<RpcResult<T>> {
    const redirected = new Set<string>();
    let last: RpcResult<T> = rpcFailure("deadlineExceeded", "No placement address was tried");
    while (true) {
      const queue = this.#order();
      while (queue.length > 0) {
        const address = queue.shift()!;
        const remaining = deadlineAt - Date.now();
        if (remaining <= 0) return withAddress(last, address);
        const result = await call(this.#client(address), { deadlineMs: remaining });
        if (result.kind !== "unavailable") {
          if (result.kind === "ok") this.#preferred = address;
          return withAddress(result, address);
        }
        last = withAddress(result, address);
        const leader = LEADER_AT.exec(result.message)?.[1];
        if (leader !== undefined && !redirected.has(leader)) {
          redirected.add(leader);
          queue.unshift(leader);
        }
      }
      if (Date.now() + RETRY_PAUSE_MS >= deadlineAt) return last;
      await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
    }
  }

  #order(): string[] {
    const order = [...this.#endpoints];
    if (this.#preferred !== undefined) {
      return [this.#preferred, ...order.filter((a) => a !== this.#preferred)];
    }
    return order;
  }

  /** The address that answered the last successful call. */
  get answeredBy(): string | undefined {
    return this.#preferred;
  }

  /** Closes every client. */
  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/** Failures name the placement address they came from, unless the message already does. */
function withAddress<T>(result: RpcResult<T>, address: string): RpcResult<T> {
  if (result.kind === "ok" || result.message.startsWith("Placement at ")) return result;
  if (result.kind !== "unavailable" && result.kind !== "deadlineExceeded") return result;
  // grpc-js ends a connection failure with an empty "Resolution note: ".
  const message = result.message.replace(/\s*Resolution note:\s*$/, "");
  return rpcFailure(result.kind, `Placement at ${address}: ${message}`);
}

/**
 * Asks each kvnode at `addresses` for its `Status`, in parallel, each bounded by `deadlineMs`.
 * Best effort: a node that does not answer is left out (the table then shows "-").
 */
export async function nodeStatuses(
  addresses: readonly string[],
  deadlineMs: number,
  security: ClientSecurity = {},
): Promise<NodeStatusResponse[]> {
  const answers = await Promise.all(addresses.map(async (address) => {
    const client = createGrpcClient(NodeAdminService, address, {
      maxMessageBytes: ADMIN_MESSAGE_BYTES_MAX,
      ...security,
    });
    try {
      return await unaryCaller<typeof NodeAdminService, "Status">(client, "Status")({
        withDataHash: false,
        resetTurnStats: false,
        sinceVersion: 0,
        sinceStartedAtMs: 0,
      }, { deadlineMs });
    } finally {
      client.close();
    }
  }));
  return answers.flatMap((answer) => answer.kind === "ok" ? [answer.response] : []);
}
