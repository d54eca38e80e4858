/**
 * The `tinykv.v1.Placement` admin service (its handlers are also the dashboard's actions) and the
 * JSON view of the cluster shared with the HTTP endpoint's `/status`. Handlers decode the request, check it against the leader's last view
 * (`requests.ts`), start the move, and map the answer through the product's status table. An
 * instance that does not lead answers UNAVAILABLE naming the leader's admin address.
 *
 * @module
 */
import {
  type ClusterStateResponse,
  type PlacementMove,
  PlacementService,
  type PlacementTask,
} from "@tinykv/proto/tinykv/v1";
import {
  bindService,
  rpcFailure,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
  type ServiceHandlers,
} from "@tinykv/rpc";
import { type Move, shardId } from "@tinykv/shard";
import { type DecisionLog, DECISIONS_MAX } from "./decisions.ts";
import type { ClusterSnapshot, PlacementLeader } from "./leader.ts";
import { checkDrain, checkMoveReplica, checkTransferLeader, type Refusal } from "./requests.ts";
import { moveEnds, type Task } from "./task.ts";

/** What the service needs from the running instance. */
export interface PlacementControl {
  /** The leader loop when this instance leads. */
  leader(): PlacementLeader | undefined;
  /** The admin address of the leader, as recorded in ZooKeeper. */
  leaderAddress(): Promise<string | undefined>;
  /** The decision log. */
  readonly decisions: DecisionLog;
}

/** A move for the wire. */
export function moveToProto(move: Move, cause: string, reason: string): PlacementMove {
  const ends = moveEnds(move);
  return {
    kind: move.kind,
    shardId: move.shardId,
    fromNode: ends.from,
    toNode: ends.to,
    cause,
    reason,
  };
}

/** A task for the wire. */
export function taskToProto(task: Task): PlacementTask {
  return {
    move: moveToProto(task.move, task.cause, task.reason),
    step: task.steps[task.stepIndex]?.kind ?? "done",
    stepIndex: task.stepIndex,
    steps: task.steps.length,
    startedAtMs: task.startedAtMs,
    lastError: task.lastError ?? "",
  };
}

/** The cluster state for the wire (and, as JSON, for `GET /status`). */
export function clusterStateOf(
  snapshot: ClusterSnapshot | undefined,
  leader: { address: string; isLeader: boolean },
): ClusterStateResponse {
  const replicas = new Map<string, number>();
  const leaders = new Map<string, number>();
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
  const shards = [...(snapshot?.views.values() ?? [])].sort((a, b) => a.id - b.id).map((view) => {
    for (const m of view.voters) bump(replicas, m.nodeId);
    if (view.leader !== undefined) bump(leaders, view.leader.nodeId);
    return {
      shardId: view.id,
      rangeLo: view.range.lo,
      rangeHi: view.range.hi,
      voters: view.voters.map((m) => m.nodeId),
      learners: view.learners.map((m) => m.nodeId),
      leader: view.leader?.nodeId ?? "",
      confEpoch: view.confEpoch,
    };
  });
  const ids = new Set([
    ...(snapshot?.registered.map((n) => n.id) ?? []),
    ...(snapshot?.downSinceMs.keys() ?? []),
  ]);
  const addresses = new Map(snapshot?.registered.map((n) => [n.id, n.address]) ?? []);
  const nodes = [...ids].sort().map((id) => ({
    nodeId: id,
    address: addresses.get(id) ?? "",
    live: addresses.has(id),
    draining: snapshot?.draining.has(id) ?? false,
    downSinceMs: snapshot?.downSinceMs.get(id) ?? 0,
    replicas: replicas.get(id) ?? 0,
    leaders: leaders.get(id) ?? 0,
  }));
  return {
    leaderAddress: leader.address,
    isLeader: leader.isLeader,
    shardMapVersion: snapshot?.mapVersion ?? 0,
    nodes,
    shards,
    tasks: snapshot?.tasks.map(taskToProto) ?? [],
    notes: [...(snapshot?.notes ?? [])],
    bootstrapped: snapshot?.bootstrapped ?? false,
  };
}

async function notLeader(control: PlacementControl): Promise<RpcResult<never>> {
  const address = await control.leaderAddress().catch(() => undefined);
  return rpcFailure(
    "unavailable",
    address === undefined
      ? "This placement instance is not the leader: no leader is known"
      : `This placement instance is not the leader: the leader is at ${address}`,
  );
}

function refused(refusal: Refusal): RpcResult<never> {
  return rpcFailure(refusal.kind, refusal.message);
}

const NOT_READY = "The placement leader has not finished its first round yet";

/** The `Placement` service. */
export function placementService(control: PlacementControl): ServiceBinding {
  return bindService(PlacementService, placementHandlers(control));
}

/**
 * The `Placement` handlers: the gRPC service's, and the dashboard's actions (dashboard/http.ts)
 * call the same ones, so a request is checked and answered alike whichever way it comes.
 */
export function placementHandlers(
  control: PlacementControl,
): ServiceHandlers<typeof PlacementService> {
  /** Runs `body` on the leader with its request context, or answers why not. */
  const onLeader = async <T>(
    body: (
      leader: PlacementLeader,
      context: NonNullable<ReturnType<PlacementLeader["requestContext"]>>,
    ) => Promise<RpcResult<T>>,
  ): Promise<RpcResult<T>> => {
    const leader = control.leader();
    if (leader === undefined) return await notLeader(control);
    const context = leader.requestContext();
    if (context === undefined) return rpcFailure("unavailable", NOT_READY);
    return await body(leader, context);
  };
  return {
    ClusterState: async () => {
      const leader = control.leader();
      if (leader === undefined) return await notLeader(control);
      return rpcOk(clusterStateOf(leader.snapshot, { address: "", isLeader: true }));
    },
    Rebalance: (request) =>
      onLeader(async (leader) => {
        const plan = await leader.rebalance(request.dryRun);
        return rpcOk({
          moves: plan.moves.map((move) => moveToProto(move, move.cause, move.reason)),
          notes: [...plan.notes],
        });
      }),
    MoveReplica: (request) =>
      onLeader(async (leader, context) => {
        const checked = checkMoveReplica(context, {
          shardId: shardId(request.shardId),
          from: request.fromNode,
          to: request.toNode,
        });
        if (checked.kind !== "ok") return refused(checked);
        const view = context.views.get(request.shardId);
        const task = await leader.startMove(checked.value, {
          cause: "operator",
          reason: `shard ${request.shardId}: replica moved from ${request.fromNode} to ` +
            `${request.toNode} because an operator asked`,
          leader: view?.leader?.nodeId,
        });
        return rpcOk({ task: taskToProto(task) });
      }),
    TransferLeader: (request) =>
      onLeader(async (leader, context) => {
        const checked = checkTransferLeader(context, {
          shardId: shardId(request.shardId),
          to: request.toNode,
        });
        if (checked.kind !== "ok") return refused(checked);
        const task = await leader.startMove(checked.value, {
          cause: "operator",
          reason: `leader of shard ${request.shardId} moved to ${request.toNode} because an ` +
            `operator asked`,
          leader: context.views.get(request.shardId)?.leader?.nodeId,
        });
        return rpcOk({ task: taskToProto(task) });
      }),
    DrainNode: (request) =>
      onLeader(async (leader, context) => {
        const checked = checkDrain(context, request.nodeId);
        if (checked.kind !== "ok") return refused(checked);
        await leader.drain(checked.value);
        let replicas = 0;
        for (const view of context.views.values()) {
          if (view.voters.some((m) => m.nodeId === request.nodeId)) replicas++;
        }
        return rpcOk({ replicas });
      }),
    ListDecisions: async (request) => {
      if (request.limit > DECISIONS_MAX) {
        return rpcFailure(
          "invalidArgument",
          `Field "limit" is ${request.limit}: the maximum is ${DECISIONS_MAX} (DECISIONS_MAX)`,
        );
      }
      // The leader's ring is current in memory; another instance reads the stored one.
      if (control.leader() === undefined) await control.decisions.load();
      const decisions = control.decisions.recent(
        request.limit === 0 ? DECISIONS_MAX : request.limit,
      )
        .map((d) => ({
          atMs: d.atMs,
          reason: d.reason,
          event: d.event,
          move: d.move === undefined ? undefined : moveToProto(d.move, d.cause ?? "", d.reason),
        }));
      return rpcOk({ decisions });
    },
  };
}
