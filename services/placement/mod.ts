/**
 * TinyKV placement: the ZooKeeper-elected owner of the shard map. The leader pulls every kvnode's
 * status, bootstraps the shards, replaces dead replicas, rebalances replicas and leaders with the
 * pure planner of `@tinykv/shard`, runs each move as a resumable, epoch-fenced state machine
 * recorded in ZooKeeper, and publishes the versioned shard map. Operators use the
 * `tinykv.v1.Placement` gRPC API, the CLI, or the live dashboard on the HTTP port.
 *
 * @example Build the views of a cluster from kvnode statuses
 * ```ts
 * import assert from "node:assert/strict";
 * import { shardViews } from "./cluster_model.ts";
 *
 * const views = shardViews([], undefined);
 * assert.equal(views.size, 0);
 * ```
 *
 * @module
 */
export {
  type HostedReplica,
  mapChange,
  maxPeerId,
  type Member,
  memberNodes,
  plannerInput,
  type PlannerInputOptions,
  type RegisteredNode,
  shardMapOf,
  type ShardView,
  shardViews,
  trackDowntime,
} from "./cluster_model.ts";
export {
  appendDecisions,
  type Decision,
  type DecisionEvent,
  DecisionLog,
  DECISIONS_MAX,
  DECISIONS_PATH,
  decodeDecisions,
} from "./decisions.ts";
export { ELECTION_PATH, type ElectionState, LeaderElection, sortCandidates } from "./election.ts";
export {
  type ClusterSnapshot,
  LEADER_HINT_DEBOUNCE_MS,
  type LeaderMetrics,
  type LeaderSettings,
  MOVES_MAX,
  PATHS,
  PlacementLeader,
} from "./leader.ts";
export {
  nodeCounts,
  placementGauges,
  PlacementMetrics,
  type PlacementSources,
  underReplicated,
} from "./metrics.ts";
export { NodeRegistry, NODES_PATH } from "./registry.ts";
export { checkDrain, checkMoveReplica, checkTransferLeader } from "./requests.ts";
export {
  CATCH_UP_LAG_ENTRIES_MAX,
  newTask,
  nextAction,
  STEP_FAILURES_MAX,
  type Task,
  type TaskAction,
} from "./task.ts";
