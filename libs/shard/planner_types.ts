/**
 * The vocabulary of the rebalancing planner: its input (nodes, shards, moves in flight, limits),
 * its output (a {@linkcode Plan} of {@linkcode PlannedMove}s with reasons), and the
 * {@linkcode MoveStep}s an executor performs for one move.
 *
 * @module
 */

import { unreachable } from "./_assert.ts";
import type { NodeId, ShardId } from "./ids.ts";
import { SHARD_REPLICAS_MAX } from "./shard_map.ts";

/** The largest replica count the planner accepts: a shard map's {@linkcode SHARD_REPLICAS_MAX}. */
export const PLANNER_REPLICA_COUNT_MAX: number = SHARD_REPLICAS_MAX;

/** The most notes one {@linkcode Plan} carries; the rest are summed up in a last note. */
export const PLAN_NOTES_MAX = 64;

/** A kvnode as placement sees it. */
export interface PlannerNode {
  /** The node's id, unique among the input's nodes. */
  readonly id: NodeId;
  /** Whether the node answers its status calls. */
  readonly live: boolean;
  /** An operator asked to empty the node: no new replicas go there and its replicas move away. */
  readonly draining?: boolean;
  /**
   * When a node that is not live was last seen live. Its replicas are replaced once it has been
   * down for {@linkcode PlannerLimits.deadNodeGraceMs}; without this time they are replaced at
   * once.
   */
  readonly deadSinceMs?: number;
  /**
   * When an operator last moved a shard's leadership away from this node. For
   * {@linkcode PlannerLimits.shardCooldownMs} after it, leader balancing moves no leadership onto
   * the node: the operator is emptying it of leaders (before restarting it, say), and balancing
   * would hand other shards' leaderships straight back.
   */
  readonly leadersMovedAwayMs?: number;
}

/** A shard's Raft group as placement last saw it. */
export interface PlannerShard {
  /** The shard's id, unique among the input's shards. */
  readonly id: ShardId;
  /** The voting members, distinct, at least one. A voter on a node not in the input is dead. */
  readonly voters: readonly NodeId[];
  /** The non-voting members, distinct and disjoint from `voters`. */
  readonly learners: readonly NodeId[];
  /** The node that leads the group, when known. */
  readonly leader?: NodeId;
  /** The shard's data size: what a new replica's snapshot costs. Unknown counts as 0. */
  readonly sizeBytes?: number;
  /** When the last move on this shard finished; rebalancing waits for the cooldown after it. */
  readonly lastMoveMs?: number;
}

/**
 * One change to a shard's placement, without its reason: the unit the planner plans and the
 * executor runs (see {@linkcode moveSteps} for the conf changes each kind stands for).
 *
 * - `addReplica`: a new voter on `to` (the shard has too few).
 * - `removeReplica`: `from` leaves the group, as a voter or a learner.
 * - `moveReplica`: a new voter on `to` replaces the one on `from`; the usual unit.
 * - `transferLeader`: leadership moves from `from` to the voter `to`.
 */
export type Move =
  | { readonly kind: "addReplica"; readonly shardId: ShardId; readonly to: NodeId }
  | { readonly kind: "removeReplica"; readonly shardId: ShardId; readonly from: NodeId }
  | {
    readonly kind: "moveReplica";
    readonly shardId: ShardId;
    readonly from: NodeId;
    readonly to: NodeId;
  }
  | {
    readonly kind: "transferLeader";
    readonly shardId: ShardId;
    readonly from: NodeId;
    readonly to: NodeId;
  };

/**
 * Why a move was planned, for metrics and for the cooldown: only `replicaBalance` and
 * `leaderBalance` moves wait for a shard's cooldown; repairs and drains do not.
 */
export type MoveCause =
  | "deadNode"
  | "underReplicated"
  | "overReplicated"
  | "draining"
  | "staleLearner"
  | "replicaBalance"
  | "leaderBalance";

/** A move with why it was planned: a {@linkcode MoveCause} and a sentence with the numbers. */
export type PlannedMove = Move & {
  /** The rule that asked for the move. */
  readonly cause: MoveCause;
  /** A human sentence, e.g. `shard 7: replica moved from n2 to n4 because n2 died 30 s ago`. */
  readonly reason: string;
};

/**
 * The movement budget. Every limit is a positive count or duration; none means "unlimited".
 * Moves in flight count against the budget as much as planned ones.
 */
export interface PlannerLimits {
  /**
   * The most moves (in flight plus planned) that touch one live node as `from` or `to`. Down
   * nodes do no work, so moves off them do not count against them.
   */
  readonly movesPerNodeMax: number;
  /** The most moves in flight plus planned in the whole cluster. */
  readonly movesMax: number;
  /**
   * The most snapshot bytes (sizes of shards gaining a replica) in flight plus planned. One move
   * may exceed it when nothing else is copying, so that a big shard can still move. The executor
   * throttles the streaming itself (bytes per second); this bounds how much it has queued.
   */
  readonly snapshotBytesInFlightMax: number;
  /** How long after a shard's last move it may be rebalanced again. Repairs ignore it. */
  readonly shardCooldownMs: number;
  /** How long a node must be down before its replicas are replaced. */
  readonly deadNodeGraceMs: number;
}

/** Limits that suit a small cluster: 2 moves per node, 1 minute cooldown, 30 s grace. */
export const PLANNER_LIMITS_DEFAULT: PlannerLimits = {
  movesPerNodeMax: 2,
  movesMax: 32,
  snapshotBytesInFlightMax: 1024 * 1024 * 1024,
  shardCooldownMs: 60_000,
  deadNodeGraceMs: 30_000,
};

/** Everything the planner looks at. The planner is a pure function of it. */
export interface PlannerInput {
  /** How many voters every shard should have, 1 to {@linkcode PLANNER_REPLICA_COUNT_MAX}. */
  readonly replicaCount: number;
  /** The registered nodes, ids unique. */
  readonly nodes: readonly PlannerNode[];
  /** The shards, ids unique. */
  readonly shards: readonly PlannerShard[];
  /**
   * The moves the executor is running. Their shards get no new move, and they count against
   * the budget. `shards` may show such a move half done (a learner added, or promoted).
   */
  readonly movesInFlight: readonly Move[];
  /** The current time, on the same clock as `deadSinceMs` and `lastMoveMs`. */
  readonly nowMs: number;
  /** The movement budget. */
  readonly limits: PlannerLimits;
}

/** The planner's answer: moves to start now, at most one per shard, and notes on the rest. */
export interface Plan {
  /** Moves to start now, most urgent first. */
  readonly moves: readonly PlannedMove[];
  /**
   * Sentences about the cluster and about what could not be planned, e.g.
   * `shard 3 is unavailable, needs operator: 1 of 3 voters live (n1)`.
   */
  readonly notes: readonly string[];
}

/**
 * One Raft configuration change or leader transfer, in the order the executor runs them.
 * `transferLeader` without `to` lets the executor pick any other live voter.
 */
export type MoveStep =
  | { readonly kind: "addLearner"; readonly node: NodeId }
  | { readonly kind: "promoteLearner"; readonly node: NodeId }
  | { readonly kind: "transferLeader"; readonly from: NodeId; readonly to?: NodeId }
  | { readonly kind: "removeMember"; readonly node: NodeId };

/**
 * The steps that carry out `move` on a shard led by `leader`: a new replica starts as a learner
 * (it catches up without counting toward quorums), is promoted once caught up, leadership leaves
 * a member before it is removed, and the old member is removed last — so the group never drops
 * below the voters it had (Raft thesis §4.2.1, one change at a time).
 *
 * @example Replace the leader's replica
 * ```ts
 * import assert from "node:assert/strict";
 * import { moveSteps, nodeId, shardId } from "@tinykv/shard";
 *
 * const [n1, n4] = [nodeId("n1"), nodeId("n4")];
 * const steps = moveSteps({ kind: "moveReplica", shardId: shardId(7), from: n1, to: n4 }, n1);
 * assert.deepEqual(steps.map((step) => step.kind), [
 *   "addLearner",
 *   "promoteLearner",
 *   "transferLeader",
 *   "removeMember",
 * ]);
 * ```
 */
export function moveSteps(move: Move, leader?: NodeId): MoveStep[] {
  switch (move.kind) {
    case "addReplica":
      return [{ kind: "addLearner", node: move.to }, { kind: "promoteLearner", node: move.to }];
    case "removeReplica":
      return move.from === leader
        ? [{ kind: "transferLeader", from: move.from }, { kind: "removeMember", node: move.from }]
        : [{ kind: "removeMember", node: move.from }];
    case "moveReplica": {
      const steps: MoveStep[] = [
        { kind: "addLearner", node: move.to },
        { kind: "promoteLearner", node: move.to },
      ];
      if (move.from === leader) {
        steps.push({ kind: "transferLeader", from: move.from, to: move.to });
      }
      steps.push({ kind: "removeMember", node: move.from });
      return steps;
    }
    case "transferLeader":
      return [{ kind: "transferLeader", from: move.from, to: move.to }];
    default:
      return unreachable(move, "move");
  }
}

/**
 * Reports whether the voters on live nodes are a majority of `voters`: whether the group can
 * commit anything, a configuration change included (Raft §5.2).
 */
export function hasLiveMajority(
  voters: readonly NodeId[],
  isLive: (node: NodeId) => boolean,
): boolean {
  const live = voters.filter(isLive).length;
  return 2 * live > voters.length;
}
