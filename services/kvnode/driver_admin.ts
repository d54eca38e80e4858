/**
 * The driver's admin calls — create and delete a replica, change a group's membership, transfer
 * its leadership — as the node-admin service and the simulations make them. Each runs its checks
 * and its change inside a loop turn (a task), so it sees the replicas as the loop does, and answers
 * an {@linkcode AdminResult}. What they need of the driver is the small {@linkcode AdminHost}, so
 * that this file says exactly which parts of the loop's state an admin call touches.
 *
 * @module
 */
import type { ConfChange, PeerId } from "@tinykv/raft";
import type { ShardId } from "@tinykv/shard";
import type { GroupMachine } from "./application.ts";
import type { NodeStorage } from "./node_storage.ts";
import {
  encodeContext,
  encodeRecord,
  type PeerAddress,
  type Replica,
  type ReplicaRecord,
  replicaRecordKey,
} from "./replica.ts";

/** The result of an admin call. */
export type AdminResult<T> =
  | { readonly kind: "ok"; readonly value: T }
  | { readonly kind: "notFound"; readonly message: string }
  | { readonly kind: "staleEpoch"; readonly message: string; readonly confEpoch: number }
  | { readonly kind: "notLeader"; readonly message: string; readonly leader?: PeerAddress }
  | { readonly kind: "invalid"; readonly message: string }
  | { readonly kind: "unavailable"; readonly message: string }
  | { readonly kind: "timeout"; readonly message: string };

/** What the admin calls use of the driver. */
export interface AdminHost<R, M extends GroupMachine<R>> {
  readonly nodeId: string;
  readonly store: NodeStorage;
  /** The driver's wall clock, in milliseconds. */
  nowMs(): number;
  /** Runs `work` inside a loop turn; resolves with its result. */
  task<T>(work: () => T): Promise<T>;
  /** The replica of `shardId` hosted here, if any (inside a task). */
  replica(shardId: ShardId): Replica<R, M> | undefined;
  /**
   * Shards whose replica is being created (shard id → peer id): reserved from `createReplica`'s
   * check to the end of its record's write.
   */
  readonly creating: Map<number, number>;
  /** Inside a task: starts hosting a replica of `record` (its record is written). */
  host(record: ReplicaRecord): void;
  /** Inside a task: deletes the replica of `shardId` in the next turn's write; then `done`. */
  evict(shardId: ShardId, why: string, done: () => void): void;
  /** Inside a task: the replica has admin calls waiting; each tick checks their deadlines. */
  waitingApplied(replica: Replica<R, M>): void;
}

/**
 * Creates a replica (idempotent for the same peer id). The shard is reserved from the check to
 * the end of the record's write, so two calls at once cannot both create one: the second gets
 * UNAVAILABLE (same peer: retry to learn the outcome) or INVALID (another peer).
 */
export async function createReplica<R, M extends GroupMachine<R>>(
  host: AdminHost<R, M>,
  record: ReplicaRecord,
): Promise<AdminResult<{ created: boolean }>> {
  const decided = await host.task((): AdminResult<{ created: boolean }> | { kind: "reserved" } => {
    const existing = host.replica(record.shardId);
    const creating = host.creating.get(record.shardId);
    const other = existing?.peerId ?? creating;
    if (other !== undefined && other !== record.peerId) {
      return {
        kind: "invalid",
        message: `Shard ${record.shardId} already has replica peer ${other} on node ` +
          `"${host.nodeId}": cannot create peer ${record.peerId}`,
      };
    }
    if (existing !== undefined) return ok({ created: false });
    if (creating !== undefined) {
      return {
        kind: "unavailable",
        message: `Replica peer ${record.peerId} of shard ${record.shardId} is being created ` +
          `on node "${host.nodeId}": retry`,
      };
    }
    host.creating.set(record.shardId, record.peerId);
    return { kind: "reserved" };
  });
  if (decided.kind !== "reserved") return decided;
  try {
    await host.store.write(() => {
      host.store.put(replicaRecordKey(record.peerId), encodeRecord(record));
    });
    return await host.task(() => {
      host.host(record);
      return ok({ created: true });
    });
  } finally {
    host.creating.delete(record.shardId);
  }
}

/**
 * Deletes the replica `peerId` of a shard, which the caller (placement) found outside its group's
 * configuration at `confEpoch`. Refused (`staleEpoch`) while the replica may be a member: when
 * its own epoch is not older than `confEpoch` and it has applied anything.
 */
export async function deleteReplica<R, M extends GroupMachine<R>>(
  host: AdminHost<R, M>,
  request: { shardId: ShardId; peerId: number; confEpoch: number },
): Promise<AdminResult<{ deleted: boolean }>> {
  type Decided = AdminResult<{ deleted: boolean }> | { kind: "deleting"; done: Promise<void> };
  const decided = await host.task((): Decided => {
    const replica = host.replica(request.shardId);
    if (replica === undefined || replica.peerId !== request.peerId) return ok({ deleted: false });
    const { applied, confState } = replica.log.appliedState;
    if (confState.epoch >= request.confEpoch && applied > 0) {
      return {
        kind: "staleEpoch",
        message: `Replica peer ${request.peerId} of shard ${request.shardId} on node ` +
          `"${host.nodeId}" is at conf epoch ${confState.epoch} with entries applied: it may ` +
          `be a member, so it is not deleted on the word of epoch ${request.confEpoch}`,
        confEpoch: confState.epoch,
      };
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    const why = `an admin call found it outside its group at conf epoch ${request.confEpoch}`;
    host.evict(request.shardId, why, resolve);
    return { kind: "deleting", done: promise };
  });
  if (decided.kind !== "deleting") return decided;
  await decided.done;
  return ok({ deleted: true });
}

/** Proposes a membership change on the shard's leader here and waits until it applies. */
export async function changeMembership<R, M extends GroupMachine<R>>(
  host: AdminHost<R, M>,
  request: {
    shardId: ShardId;
    expectedConfEpoch: number;
    change: "addLearner" | "promote" | "remove";
    peer: PeerAddress;
    timeoutMs: number;
  },
): Promise<AdminResult<{ confEpoch: number }>> {
  const proposed = await host.task(() => {
    const replica = fenced(host, request.shardId, request.expectedConfEpoch);
    if (replica.kind !== "ok") return replica;
    const change: ConfChange = {
      type: request.change === "remove"
        ? "removeNode"
        : request.change === "promote"
        ? "addNode"
        : "addLearner",
      nodeId: request.peer.peerId as PeerId,
      context: encodeContext(request.peer),
    };
    const result = replica.value.node.proposeConfChange(change);
    if (result.kind === "ok") {
      const deadlineMs = host.nowMs() + request.timeoutMs;
      const applied = replica.value.appliedWaiters.add(result.index, result.term, deadlineMs);
      host.waitingApplied(replica.value);
      return ok({ applied });
    }
    if (result.kind === "notLeader") return notLeader(replica.value, host.nodeId);
    const reason = "reason" in result ? result.reason : result.kind;
    return { kind: "unavailable" as const, message: `Cannot change membership: ${reason}` };
  });
  if (proposed.kind !== "ok") return proposed;
  const applied = await proposed.value.applied;
  switch (applied.kind) {
    case "lost":
      return {
        kind: "unavailable",
        message: `Membership change of shard ${request.shardId} was not applied: another ` +
          "leader's entry took its place in the log",
      };
    case "timeout":
      return {
        kind: "timeout",
        message: `Membership change of shard ${request.shardId} not applied within ` +
          `${request.timeoutMs} ms (it may still apply)`,
      };
    case "applied":
      return ok({ confEpoch: applied.confEpoch });
  }
}

/** Asks the shard's leader here to hand leadership to `targetPeerId`. */
export function transferLeader<R, M extends GroupMachine<R>>(
  host: AdminHost<R, M>,
  request: { shardId: ShardId; expectedConfEpoch: number; targetPeerId: number },
): Promise<AdminResult<Record<string, never>>> {
  return host.task(() => {
    const replica = fenced(host, request.shardId, request.expectedConfEpoch);
    if (replica.kind !== "ok") return replica;
    const result = replica.value.node.transferLeader(request.targetPeerId as PeerId);
    if (result.kind === "ok") return ok({});
    if (result.kind === "notLeader") return notLeader(replica.value, host.nodeId);
    return { kind: "invalid" as const, message: result.reason };
  });
}

/** The replica of `shardId` if it is here at `expectedConfEpoch` (fencing by conf epoch). */
function fenced<R, M extends GroupMachine<R>>(
  host: AdminHost<R, M>,
  shardId: ShardId,
  expectedConfEpoch: number,
): AdminResult<Replica<R, M>> {
  const replica = host.replica(shardId);
  if (replica === undefined) {
    return {
      kind: "notFound",
      message: `Shard ${shardId} has no replica on node "${host.nodeId}"`,
    };
  }
  if (replica.confEpoch !== expectedConfEpoch) {
    return {
      kind: "staleEpoch",
      message: `Shard ${shardId} is at conf epoch ${replica.confEpoch}, not the expected ` +
        `${expectedConfEpoch}`,
      confEpoch: replica.confEpoch,
    };
  }
  return ok(replica);
}

function notLeader<R, M extends GroupMachine<R>>(
  replica: Replica<R, M>,
  nodeId: string,
): AdminResult<never> {
  return {
    kind: "notLeader",
    message: `Shard ${replica.shardId}: node "${nodeId}" is not the leader`,
    leader: replica.leader(),
  };
}

function ok<T>(value: T): { kind: "ok"; value: T } {
  return { kind: "ok", value };
}
