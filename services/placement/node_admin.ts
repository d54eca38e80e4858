/**
 * Placement's side of the kvnode `NodeAdmin` API: one gRPC client per kvnode address, and the
 * calls the leader makes (status, create replica, membership change, leader transfer, delete an
 * orphan replica), each
 * bounded by a deadline and answering a typed {@linkcode RpcResult}, never throwing.
 *
 * @module
 */
import {
  ChangeMembershipRequest_Change,
  NodeAdminService,
  type NodeStatusResponse,
} from "@tinykv/proto/tinykv/v1";
import {
  type ClientSecurity,
  createGrpcClient,
  type GrpcClient,
  rpcFailure,
  rpcOk,
  type RpcResult,
  unaryCaller,
} from "@tinykv/rpc";
import type { HashRange, ShardId } from "@tinykv/shard";
import type { Member } from "./cluster_model.ts";
import { NO_BASE, type StatusBase, StatusCache } from "./status_cache.ts";

/** The largest admin message placement sends or accepts. */
export const ADMIN_MESSAGE_BYTES_MAX = 8 * 1024 * 1024;
/** How long a membership change or leader transfer may take before the call gives up. */
export const CHANGE_TIMEOUT_MS = 10_000;
/** The most kvnode clients kept; the oldest is closed past it. */
export const NODE_CLIENTS_MAX = 1024;

const CHANGE_CODES = {
  addLearner: ChangeMembershipRequest_Change.ADD_LEARNER,
  promote: ChangeMembershipRequest_Change.PROMOTE,
  remove: ChangeMembershipRequest_Change.REMOVE,
} as const;

/** Clients of every kvnode placement talks to, by address. */
export class NodeAdminPool {
  readonly #clients = new Map<string, GrpcClient<typeof NodeAdminService>>();
  readonly #statuses = new StatusCache();
  readonly #clusterId: () => string;
  readonly #security: ClientSecurity;

  /** `clusterId` is read at each call (it is learned after start). */
  constructor(clusterId: () => string, security: ClientSecurity = {}) {
    this.#clusterId = clusterId;
    this.#security = security;
  }

  #client(address: string): GrpcClient<typeof NodeAdminService> {
    let client = this.#clients.get(address);
    if (client === undefined) {
      if (this.#clients.size >= NODE_CLIENTS_MAX) {
        const [oldest, old] = this.#clients.entries().next().value!;
        old.close();
        this.#clients.delete(oldest);
        this.#statuses.delete(oldest);
      }
      client = createGrpcClient(NodeAdminService, address, {
        maxMessageBytes: ADMIN_MESSAGE_BYTES_MAX,
        ...this.#security,
      });
      this.#clients.set(address, client);
    }
    return client;
  }

  /**
   * The node's status, every replica in it. Asks for a delta since the last answer from the
   * node at `address` (`NodeStatusRequest.since_version`) and merges it into that answer, kept
   * here: the leader's rounds and the dashboard share it.
   */
  async status(address: string, deadlineMs: number): Promise<RpcResult<NodeStatusResponse>> {
    const ask = (since: StatusBase) =>
      unaryCaller(this.#client(address), "Status")({
        withDataHash: false,
        resetTurnStats: false,
        ...since,
      }, { deadlineMs });
    const since = this.#statuses.since(address);
    const answer = await ask(since);
    if (answer.kind !== "ok") return answer;
    if (this.#clients.has(address)) {
      const merged = this.#statuses.merge(address, answer.response, since);
      if (merged !== undefined) return rpcOk(merged);
    } else if (!answer.response.delta) {
      return answer; // Its client was closed meanwhile: nothing is kept for it.
    }
    // A delta whose base is gone (dropped with its client, or replaced): ask for every replica.
    const whole = await ask(NO_BASE);
    if (whole.kind !== "ok") return whole;
    return rpcOk(this.#statuses.merge(address, whole.response, NO_BASE) ?? whole.response);
  }

  /** Creates a replica (`join`: of a running group; otherwise a member of a new one). */
  async createReplica(
    target: Member,
    options: {
      shardId: ShardId;
      range: HashRange;
      voters: readonly Member[];
      learners: readonly Member[];
      confEpoch: number;
      join: boolean;
    },
  ): Promise<RpcResult<unknown>> {
    return await unaryCaller(this.#client(target.address), "CreateReplica")({
      clusterId: this.#clusterId(),
      shardId: options.shardId,
      rangeLo: options.range.lo,
      rangeHi: options.range.hi,
      peerId: target.peerId,
      voters: [...options.voters],
      learners: [...options.learners],
      confEpoch: options.confEpoch,
      join: options.join,
    }, { deadlineMs: CHANGE_TIMEOUT_MS });
  }

  /** Proposes one membership change on the shard's leader and waits until it applies. */
  async changeMembership(
    leader: Member,
    options: {
      shardId: ShardId;
      change: keyof typeof CHANGE_CODES;
      peer: Member;
      expectedConfEpoch: number;
    },
  ): Promise<RpcResult<unknown>> {
    if (leader.address === "") return rpcFailure("unavailable", "The leader's address is unknown");
    return await unaryCaller(this.#client(leader.address), "ChangeMembership")({
      clusterId: this.#clusterId(),
      shardId: options.shardId,
      expectedConfEpoch: options.expectedConfEpoch,
      change: CHANGE_CODES[options.change],
      peer: options.peer,
      timeoutMs: CHANGE_TIMEOUT_MS - 500,
    }, { deadlineMs: CHANGE_TIMEOUT_MS });
  }

  /** Asks the shard's leader to hand leadership to `target`. */
  async transferLeader(
    leader: Member,
    options: { shardId: ShardId; target: Member; expectedConfEpoch: number },
  ): Promise<RpcResult<unknown>> {
    if (leader.address === "") return rpcFailure("unavailable", "The leader's address is unknown");
    return await unaryCaller(this.#client(leader.address), "TransferLeader")({
      clusterId: this.#clusterId(),
      shardId: options.shardId,
      expectedConfEpoch: options.expectedConfEpoch,
      targetPeerId: options.target.peerId,
      timeoutMs: CHANGE_TIMEOUT_MS - 500,
    }, { deadlineMs: CHANGE_TIMEOUT_MS });
  }

  /** Deletes replica `peerId` of a shard on `target`, found outside its group at `confEpoch`. */
  async deleteReplica(
    target: { address: string },
    options: { shardId: ShardId; peerId: number; confEpoch: number },
  ): Promise<RpcResult<{ deleted: boolean }>> {
    return await unaryCaller(this.#client(target.address), "DeleteReplica")({
      clusterId: this.#clusterId(),
      ...options,
    }, { deadlineMs: CHANGE_TIMEOUT_MS });
  }

  /** Closes every client. */
  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
    this.#statuses.clear();
  }
}
