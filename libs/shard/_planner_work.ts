/**
 * The planner's working state, private to this folder: node health, per-node replica and leader
 * counts projected over the moves in flight and those planned so far, the movement budget, and
 * the helpers that record a move and phrase numbers for reasons.
 *
 * @module
 */

import { assert, unreachable } from "./_assert.ts";
import type { NodeId, ShardId } from "./ids.ts";
import {
  hasLiveMajority,
  type Move,
  PLAN_NOTES_MAX,
  type PlannedMove,
  PLANNER_REPLICA_COUNT_MAX,
  type PlannerInput,
  type PlannerLimits,
  type PlannerShard,
} from "./planner_types.ts";

/** What the planner makes of a node. */
export type NodeHealth =
  | { readonly kind: "up" } // Live and not draining: may receive replicas and leaders.
  | { readonly kind: "draining" } // Live, but its replicas and leaders move away.
  | { readonly kind: "suspect"; readonly downMs: number } // Down, within the grace period.
  | { readonly kind: "dead"; readonly why: string }; // Down past the grace, or not registered.

/** One shard and what this planning round knows about it. */
export interface ShardWork {
  readonly shard: PlannerShard;
  /** The leader once the moves in flight and planned finish, if known and live. */
  leader: NodeId | undefined;
  /** A move is in flight or planned: the shard gets no other this round. */
  busy: boolean;
  /** No live majority: nothing may be started on the shard. */
  blocked: boolean;
}

/** The state of one planning round. */
export interface Work {
  readonly input: PlannerInput;
  readonly limits: PlannerLimits;
  readonly health: ReadonlyMap<NodeId, NodeHealth>;
  /** The nodes that may receive replicas and leaders (`up`), sorted by id. */
  readonly eligible: readonly NodeId[];
  /**
   * Eligible nodes that leader balancing gives no leadership now: an operator moved one away
   * from them within the cooldown (`PlannerNode.leadersMovedAwayMs`).
   */
  readonly leadersHeld: ReadonlySet<NodeId>;
  /** Voters per node once the moves in flight and planned finish. */
  readonly replicas: Map<NodeId, number>;
  /** Leaders per node once the moves in flight and planned finish. */
  readonly leaders: Map<NodeId, number>;
  /** Moves in flight and planned that touch each node. */
  readonly touching: Map<NodeId, number>;
  /** The shards, sorted by id. */
  readonly shards: readonly ShardWork[];
  moveCount: number;
  snapshotBytes: number;
  readonly moves: PlannedMove[];
  readonly notes: string[];
  notesDropped: number;
}

/** Compares node ids by code unit, so that every tie-break is deterministic. */
export function byId(a: NodeId, b: NodeId): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Asserts the input's invariants: its builder (placement) owns them, so a violation is a bug. */
export function checkInput(input: PlannerInput): void {
  const { replicaCount, limits } = input;
  assert(
    Number.isSafeInteger(replicaCount) && replicaCount >= 1 &&
      replicaCount <= PLANNER_REPLICA_COUNT_MAX,
    `Replica count ${replicaCount} is outside [1, ${PLANNER_REPLICA_COUNT_MAX}]`,
  );
  for (const name of ["movesPerNodeMax", "movesMax", "snapshotBytesInFlightMax"] as const) {
    const value = limits[name];
    assert(Number.isSafeInteger(value) && value >= 1, `Limit ${name} is ${value}: expected >= 1`);
  }
  for (const name of ["shardCooldownMs", "deadNodeGraceMs"] as const) {
    const value = limits[name];
    assert(Number.isFinite(value) && value >= 0, `Limit ${name} is ${value}: expected >= 0`);
  }
  assert(Number.isFinite(input.nowMs), `Time ${input.nowMs} is not finite`);
  const nodeIds = new Set(input.nodes.map((node) => node.id));
  assert(nodeIds.size === input.nodes.length, "Planner input lists a node twice");
  const shardIds = new Set<ShardId>();
  for (const shard of input.shards) {
    assert(!shardIds.has(shard.id), `Planner input lists shard ${shard.id} twice`);
    shardIds.add(shard.id);
    const members = new Set([...shard.voters, ...shard.learners]);
    assert(shard.voters.length >= 1, `Shard ${shard.id} has no voters`);
    assert(
      shard.sizeBytes === undefined ||
        (Number.isSafeInteger(shard.sizeBytes) && shard.sizeBytes >= 0),
      `Shard ${shard.id} has size ${shard.sizeBytes}: expected a non-negative safe integer`,
    );
    assert(
      members.size === shard.voters.length + shard.learners.length,
      `Shard ${shard.id} lists a member twice`,
    );
  }
  for (const move of input.movesInFlight) {
    assert(shardIds.has(move.shardId), `A move in flight names unknown shard ${move.shardId}`);
  }
}

/** Builds the round's state: health, projections of the moves in flight, and the budget used. */
export function newWork(input: PlannerInput): Work {
  const health = new Map<NodeId, NodeHealth>();
  for (const node of input.nodes) health.set(node.id, nodeHealth(input, node));
  const eligible = input.nodes.filter((node) => health.get(node.id)?.kind === "up")
    .map((node) => node.id).sort(byId);
  const leadersHeld = new Set(
    input.nodes.filter((node) =>
      node.leadersMovedAwayMs !== undefined &&
      input.nowMs - node.leadersMovedAwayMs < input.limits.shardCooldownMs
    ).map((node) => node.id),
  );
  const inFlight = new Map<ShardId, Move[]>();
  for (const move of input.movesInFlight) {
    inFlight.set(move.shardId, [...inFlight.get(move.shardId) ?? [], move]);
  }
  const work: Work = {
    input,
    limits: input.limits,
    health,
    eligible,
    leadersHeld,
    replicas: new Map(),
    leaders: new Map(),
    touching: new Map(),
    shards: [],
    moveCount: 0,
    snapshotBytes: 0,
    moves: [],
    notes: [],
    notesDropped: 0,
  };
  const shards: ShardWork[] = [];
  for (const shard of [...input.shards].sort((a, b) => a.id - b.id)) {
    const moves = inFlight.get(shard.id) ?? [];
    const voters = new Set(shard.voters);
    let leader = shard.leader !== undefined && shard.voters.includes(shard.leader)
      ? shard.leader
      : undefined;
    for (const move of moves) {
      leader = projectInFlight(work, shard, move, voters, leader);
    }
    if (leader !== undefined && !isLive(work, leader)) leader = undefined;
    for (const voter of voters) increment(work.replicas, voter, 1);
    if (leader !== undefined) increment(work.leaders, leader, 1);
    shards.push({ shard, leader, busy: moves.length > 0, blocked: false });
  }
  return { ...work, shards };
}

function nodeHealth(input: PlannerInput, node: PlannerInput["nodes"][number]): NodeHealth {
  if (node.live) return node.draining === true ? { kind: "draining" } : { kind: "up" };
  if (node.deadSinceMs === undefined) {
    return { kind: "dead", why: `${node.id} is down (since an unknown time)` };
  }
  const downMs = Math.max(0, input.nowMs - node.deadSinceMs);
  if (downMs >= input.limits.deadNodeGraceMs) {
    return { kind: "dead", why: `${node.id} died ${duration(downMs)} ago` };
  }
  return { kind: "suspect", downMs };
}

/** Applies a move in flight to a shard's projected voters; returns its projected leader. */
function projectInFlight(
  work: Work,
  shard: PlannerShard,
  move: Move,
  voters: Set<NodeId>,
  leader: NodeId | undefined,
): NodeId | undefined {
  for (const node of touchedNodes(move)) increment(work.touching, node, 1);
  work.moveCount++;
  switch (move.kind) {
    case "addReplica":
      work.snapshotBytes += shard.sizeBytes ?? 0;
      voters.add(move.to);
      return leader;
    case "removeReplica":
      voters.delete(move.from);
      return leader === move.from ? undefined : leader;
    case "moveReplica":
      work.snapshotBytes += shard.sizeBytes ?? 0;
      voters.add(move.to);
      voters.delete(move.from);
      return leader === move.from ? move.to : leader;
    case "transferLeader":
      return move.to;
    default:
      return unreachable(move, "move");
  }
}

/** The nodes a move touches, for the per-node budget. */
export function touchedNodes(move: Move): NodeId[] {
  switch (move.kind) {
    case "addReplica":
      return [move.to];
    case "removeReplica":
      return [move.from];
    case "moveReplica":
    case "transferLeader":
      return [move.from, move.to];
    default:
      return unreachable(move, "move");
  }
}

/** A node's health; a node missing from the input is dead. */
export function healthOf(work: Work, node: NodeId): NodeHealth {
  return work.health.get(node) ?? { kind: "dead", why: `${node} is not a registered node` };
}

/** Reports whether `node` answers (up or draining). */
export function isLive(work: Work, node: NodeId): boolean {
  const kind = healthOf(work, node).kind;
  return kind === "up" || kind === "draining";
}

/** Reports whether `node` may receive replicas and leaders. */
export function isEligible(work: Work, node: NodeId): boolean {
  return healthOf(work, node).kind === "up";
}

/** Reports whether the shard's live voters are a majority of its voters. */
export function shardAvailable(work: Work, shard: PlannerShard): boolean {
  return hasLiveMajority(shard.voters, (node) => isLive(work, node));
}

/** Reports whether the shard's last move was less than the cooldown ago. */
export function inCooldown(work: Work, shard: PlannerShard): boolean {
  return shard.lastMoveMs !== undefined &&
    work.input.nowMs - shard.lastMoveMs < work.limits.shardCooldownMs;
}

/** How many more moves may touch `node`: unbounded for a node that is down. */
export function freeSlots(work: Work, node: NodeId): number {
  if (!isLive(work, node)) return Number.POSITIVE_INFINITY;
  return work.limits.movesPerNodeMax - (work.touching.get(node) ?? 0);
}

/** Reports whether the budget allows one more move touching `nodes` and copying `bytes`. */
export function budgetAllows(work: Work, nodes: readonly NodeId[], bytes: number): boolean {
  if (work.moveCount >= work.limits.movesMax) return false;
  if (!nodes.every((node) => freeSlots(work, node) >= 1)) return false;
  return bytes === 0 || work.snapshotBytes === 0 ||
    work.snapshotBytes + bytes <= work.limits.snapshotBytesInFlightMax;
}

/** The snapshot bytes a move copies: the shard's size if it creates a replica. */
export function moveBytes(shard: PlannerShard, move: Move): number {
  return move.kind === "addReplica" || move.kind === "moveReplica" ? shard.sizeBytes ?? 0 : 0;
}

/** Records a planned move: marks the shard busy and charges the budget and the projections. */
export function record(work: Work, shardWork: ShardWork, move: PlannedMove): void {
  const { shard } = shardWork;
  assert(!shardWork.busy && !shardWork.blocked, `Shard ${shard.id} got a second move`);
  assert(move.shardId === shard.id, `Move for shard ${move.shardId} recorded on ${shard.id}`);
  shardWork.busy = true;
  work.moves.push(move);
  work.moveCount++;
  work.snapshotBytes += moveBytes(shard, move);
  for (const node of touchedNodes(move)) increment(work.touching, node, 1);
  switch (move.kind) {
    case "addReplica":
      increment(work.replicas, move.to, 1);
      break;
    case "removeReplica":
      if (shard.voters.includes(move.from)) increment(work.replicas, move.from, -1);
      if (shardWork.leader === move.from) setLeader(work, shardWork, undefined);
      break;
    case "moveReplica":
      increment(work.replicas, move.to, 1);
      increment(work.replicas, move.from, -1);
      if (shardWork.leader === move.from) setLeader(work, shardWork, move.to);
      break;
    case "transferLeader":
      setLeader(work, shardWork, move.to);
      break;
    default:
      return unreachable(move, "move");
  }
}

function setLeader(work: Work, shardWork: ShardWork, leader: NodeId | undefined): void {
  if (shardWork.leader !== undefined) increment(work.leaders, shardWork.leader, -1);
  shardWork.leader = leader;
  if (leader !== undefined) increment(work.leaders, leader, 1);
}

function increment(counts: Map<NodeId, number>, node: NodeId, by: number): void {
  counts.set(node, (counts.get(node) ?? 0) + by);
}

/** Adds a note, keeping at most {@linkcode PLAN_NOTES_MAX} (the last says how many were cut). */
export function note(work: Work, text: string): void {
  if (work.notes.length < PLAN_NOTES_MAX - 1) work.notes.push(text);
  else work.notesDropped++;
}

/** Phrases a duration for a reason: `30 s`, `5 min`, `2.5 h`. */
export function duration(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** Phrases a mean with one decimal. */
export function mean(total: number, count: number): string {
  return count === 0 ? "0" : (total / count).toFixed(1);
}

/** The count of `node` in `counts`, 0 if absent. */
export function countOf(counts: ReadonlyMap<NodeId, number>, node: NodeId): number {
  return counts.get(node) ?? 0;
}

/** The sum of `counts` over the eligible nodes. */
export function eligibleTotal(work: Work, counts: ReadonlyMap<NodeId, number>): number {
  return work.eligible.reduce((sum, node) => sum + countOf(counts, node), 0);
}
