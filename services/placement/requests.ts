/**
 * Checks of operator requests (move a replica, move a leadership, drain a node) against the
 * cluster as last seen: pure functions answering either the move to run or a refusal with the
 * status-table kind and a precise message.
 *
 * @module
 */
import { type Move, nodeId, type ShardId, shardId } from "@tinykv/shard";
import type { ShardView } from "./cluster_model.ts";

/** What the checks look at. */
export interface RequestContext {
  readonly views: ReadonlyMap<number, ShardView>;
  /** Registered (live) nodes. */
  readonly live: ReadonlySet<string>;
  readonly draining: ReadonlySet<string>;
  /** Shards with a move in flight. */
  readonly busy: ReadonlySet<number>;
  readonly replicaCount: number;
}

/** A refusal: `invalidArgument` for bad input, `failedPrecondition` for a bad moment. */
export type Refusal = {
  readonly kind: "invalidArgument" | "failedPrecondition";
  readonly message: string;
};

/** The outcome of a check. */
export type Checked<T> = { readonly kind: "ok"; readonly value: T } | Refusal;

function shardOf(context: RequestContext, id: number): Checked<ShardView> {
  const view = context.views.get(id);
  if (view === undefined) {
    const known = [...context.views.keys()].sort((a, b) => a - b);
    return {
      kind: "invalidArgument",
      message: `Shard ${id} does not exist: the shards are ${known.join(", ") || "none yet"}`,
    };
  }
  if (context.busy.has(id)) {
    return {
      kind: "failedPrecondition",
      message: `Shard ${id} already has a move in flight: wait for it to finish`,
    };
  }
  return { kind: "ok", value: view };
}

function liveVoters(context: RequestContext, view: ShardView): number {
  return view.voters.filter((m) => context.live.has(m.nodeId)).length;
}

/** Checks `MoveReplica{shard, from, to}`. */
export function checkMoveReplica(
  context: RequestContext,
  request: { shardId: ShardId; from: string; to: string },
): Checked<Move> {
  const shard = shardOf(context, request.shardId);
  if (shard.kind !== "ok") return shard;
  const view = shard.value;
  const voters = view.voters.map((m) => m.nodeId);
  if (!voters.includes(request.from)) {
    return {
      kind: "invalidArgument",
      message: `Node "${request.from}" holds no voter of shard ${view.id}: its voters are ` +
        voters.join(", "),
    };
  }
  if (!context.live.has(request.to)) {
    return {
      kind: "invalidArgument",
      message: `Node "${request.to}" is not registered: the live nodes are ` +
        [...context.live].sort().join(", "),
    };
  }
  if ([...voters, ...view.learners.map((m) => m.nodeId)].includes(request.to)) {
    return {
      kind: "invalidArgument",
      message: `Node "${request.to}" already holds shard ${view.id}`,
    };
  }
  if (context.draining.has(request.to)) {
    return { kind: "failedPrecondition", message: `Node "${request.to}" is draining` };
  }
  const live = liveVoters(context, view);
  if (2 * live <= voters.length) {
    return {
      kind: "failedPrecondition",
      message: `Shard ${view.id} has ${live} live of ${voters.length} voters, not a majority: ` +
        `it cannot change its membership`,
    };
  }
  return {
    kind: "ok",
    value: {
      kind: "moveReplica",
      shardId: shardId(view.id),
      from: nodeId(request.from),
      to: nodeId(request.to),
    },
  };
}

/** Checks `TransferLeader{shard, to}`. */
export function checkTransferLeader(
  context: RequestContext,
  request: { shardId: ShardId; to: string },
): Checked<Move> {
  const shard = shardOf(context, request.shardId);
  if (shard.kind !== "ok") return shard;
  const view = shard.value;
  const voters = view.voters.map((m) => m.nodeId);
  if (!voters.includes(request.to)) {
    return {
      kind: "invalidArgument",
      message: `Node "${request.to}" is not a voter of shard ${view.id}: its voters are ` +
        voters.join(", "),
    };
  }
  if (!context.live.has(request.to)) {
    return { kind: "failedPrecondition", message: `Node "${request.to}" is not registered` };
  }
  const leader = view.leader?.nodeId;
  if (leader === undefined) {
    return { kind: "failedPrecondition", message: `Shard ${view.id} has no leader right now` };
  }
  if (leader === request.to) {
    return {
      kind: "failedPrecondition",
      message: `Node "${request.to}" already leads shard ${view.id}`,
    };
  }
  return {
    kind: "ok",
    value: {
      kind: "transferLeader",
      shardId: shardId(view.id),
      from: nodeId(leader),
      to: nodeId(request.to),
    },
  };
}

/** Checks `DrainNode{node}`: enough other eligible nodes must remain for every shard. */
export function checkDrain(context: RequestContext, node: string): Checked<string> {
  const known = new Set([...context.live]);
  for (const view of context.views.values()) {
    for (const m of [...view.voters, ...view.learners]) known.add(m.nodeId);
  }
  if (!known.has(node)) {
    return {
      kind: "invalidArgument",
      message: `Node "${node}" is unknown: the nodes are ${[...known].sort().join(", ")}`,
    };
  }
  if (context.draining.has(node)) return { kind: "ok", value: node };
  const remaining = [...context.live].filter((n) => n !== node && !context.draining.has(n));
  if (remaining.length < context.replicaCount) {
    return {
      kind: "failedPrecondition",
      message: `Cannot drain "${node}": ${remaining.length} eligible nodes would remain, ` +
        `fewer than the replica count ${context.replicaCount}`,
    };
  }
  return { kind: "ok", value: node };
}
