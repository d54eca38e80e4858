/**
 * A small simulated executor for the planner's tests, private to this folder: it plans, checks
 * every rule the plan must satisfy, runs the moves step by step (some only partly, so they stay
 * in flight into the next round), asserting that no step costs a shard its live majority, elects
 * leaders, and advances the clock. Node failures, joins and drains are injected between rounds.
 *
 * @module
 */

import assert from "node:assert/strict";
import { mulberry32, type Prng } from "@tinykv/raft";
import { type NodeId, nodeId, type ShardId, shardId } from "./ids.ts";
import { planMoves } from "./planner.ts";
import {
  hasLiveMajority,
  type Move,
  type MoveStep,
  moveSteps,
  type Plan,
  type PlannedMove,
  type PlannerInput,
  type PlannerLimits,
} from "./planner_types.ts";

/** A node in the simulation. */
export interface SimNode {
  id: NodeId;
  live: boolean;
  draining: boolean;
  deadSinceMs?: number;
}

/** A shard's group in the simulation. */
export interface SimShard {
  id: ShardId;
  voters: NodeId[];
  learners: NodeId[];
  leader?: NodeId;
  sizeBytes: number;
  lastMoveMs?: number;
}

/** A move the executor has started but not finished. */
interface Running {
  move: PlannedMove;
  remaining: MoveStep[];
}

/** The whole simulated cluster. */
export interface Sim {
  replicaCount: number;
  nodes: SimNode[];
  shards: SimShard[];
  running: Running[];
  nowMs: number;
  limits: PlannerLimits;
  /** How much simulated time one round takes. */
  roundMs: number;
  /** Draws in [0, 1): decides which moves stop half way. */
  random: Prng;
  /** The chance that a planned move stops half way and stays in flight. */
  partialChance: number;
  /** Every move planned so far. */
  history: PlannedMove[];
}

/** Limits for simulations: rounds of 10 s, cooldown of 2 rounds, grace of 3. */
export const SIM_LIMITS: PlannerLimits = {
  movesPerNodeMax: 2,
  movesMax: 1000,
  snapshotBytesInFlightMax: 1 << 30,
  shardCooldownMs: 15_000,
  deadNodeGraceMs: 25_000,
};

/**
 * The simulation's PRNG: the Raft core's seeded `mulberry32`, so that a fast-check seed replays a
 * run. Re-exported for the tests that build a {@linkcode Sim}.
 */
export { mulberry32 };

/** Node ids `n1`..`n<count>`. */
export function nodeIds(count: number, first = 1): NodeId[] {
  return Array.from({ length: count }, (_, i) => nodeId(`n${first + i}`));
}

/** A cluster of `nodeCount` live nodes and `shardCount` shards placed round-robin. */
export function roundRobinSim(
  nodeCount: number,
  shardCount: number,
  replicaCount: number,
  overrides: Partial<Sim> = {},
): Sim {
  const ids = nodeIds(nodeCount);
  return {
    replicaCount,
    nodes: ids.map((id) => ({ id, live: true, draining: false })),
    shards: Array.from({ length: shardCount }, (_, i) => {
      const voters = Array.from({ length: replicaCount }, (_, j) => ids[(i + j) % nodeCount]);
      return { id: shardId(i), voters, learners: [], leader: voters[0], sizeBytes: 1000 };
    }),
    running: [],
    nowMs: 1_000_000,
    limits: SIM_LIMITS,
    roundMs: 10_000,
    random: mulberry32(1),
    partialChance: 0,
    history: [],
    ...overrides,
  };
}

/** The planner's view of the simulated cluster. */
export function simInput(sim: Sim): PlannerInput {
  return {
    replicaCount: sim.replicaCount,
    nodes: sim.nodes.map((node) => ({ ...node })),
    shards: sim.shards.map((shard) => ({
      ...shard,
      voters: [...shard.voters],
      learners: [...shard.learners],
    })),
    movesInFlight: sim.running.map(({ move }) => stripReason(move)),
    nowMs: sim.nowMs,
    limits: sim.limits,
  };
}

function stripReason(move: PlannedMove): Move {
  switch (move.kind) {
    case "addReplica":
      return { kind: move.kind, shardId: move.shardId, to: move.to };
    case "removeReplica":
      return { kind: move.kind, shardId: move.shardId, from: move.from };
    case "moveReplica":
    case "transferLeader":
      return { kind: move.kind, shardId: move.shardId, from: move.from, to: move.to };
  }
}

/** Whether a simulated node is live. */
export function liveIn(sim: Sim): (node: NodeId) => boolean {
  const live = new Set(sim.nodes.filter((node) => node.live).map((node) => node.id));
  return (node) => live.has(node);
}

/** Whether a simulated node may receive replicas: live and not draining. */
export function eligibleIn(sim: Sim): (node: NodeId) => boolean {
  const ok = new Set(sim.nodes.filter((n) => n.live && !n.draining).map((node) => node.id));
  return (node) => ok.has(node);
}

/**
 * Checks every rule a plan must satisfy for `input`: one move per shard and none on a shard
 * with a move in flight; the per-node and cluster budgets; targets live and not draining and
 * not yet members; sources members; no move on a shard without a live majority, and no step of
 * any move that costs one; cooldown respected by rebalancing; a reason naming the shard.
 */
export function checkPlan(input: PlannerInput, plan: Plan): void {
  const nodes = new Map(input.nodes.map((node) => [node.id, node]));
  const isLive = (node: NodeId) => nodes.get(node)?.live === true;
  const isEligible = (node: NodeId) => isLive(node) && nodes.get(node)?.draining !== true;
  const shards = new Map(input.shards.map((shard) => [shard.id, shard]));
  const touched = new Map<NodeId, number>();
  const busy = new Set<ShardId>();
  const touch = (move: Move) => {
    for (
      const node of [
        "from" in move ? move.from : undefined,
        "to" in move ? move.to : undefined,
      ]
    ) {
      if (node !== undefined) touched.set(node, (touched.get(node) ?? 0) + 1);
    }
  };
  for (const move of input.movesInFlight) {
    touch(move);
    busy.add(move.shardId);
  }
  const planned = new Set<NodeId>();
  for (const move of plan.moves) {
    if ("from" in move) planned.add(move.from);
    if ("to" in move) planned.add(move.to);
    const shard = shards.get(move.shardId);
    assert(shard !== undefined, `plan names unknown shard ${move.shardId}`);
    assert(!busy.has(move.shardId), `shard ${move.shardId} got two concurrent moves`);
    busy.add(move.shardId);
    touch(move);
    assert(move.reason.includes(`shard ${move.shardId}`), `reason lacks the shard: ${move.reason}`);
    assert(hasLiveMajority(shard.voters, isLive), `move on unavailable shard: ${move.reason}`);
    if ("to" in move) assert(isEligible(move.to), `target ${move.to} not eligible: ${move.reason}`);
    const members = [...shard.voters, ...shard.learners];
    switch (move.kind) {
      case "addReplica":
      case "moveReplica":
        assert(!members.includes(move.to), `target already a member: ${move.reason}`);
        if (move.kind === "moveReplica") assert(shard.voters.includes(move.from), move.reason);
        break;
      case "removeReplica":
        assert(members.includes(move.from), `source not a member: ${move.reason}`);
        break;
      case "transferLeader":
        assert(shard.leader === move.from && shard.voters.includes(move.to), move.reason);
        break;
    }
    if (move.cause === "replicaBalance" || move.cause === "leaderBalance") {
      assert(
        shard.lastMoveMs === undefined ||
          input.nowMs - shard.lastMoveMs >= input.limits.shardCooldownMs,
        `rebalanced shard ${shard.id} within its cooldown`,
      );
    }
    const copy: SimShard = {
      ...shard,
      voters: [...shard.voters],
      learners: [...shard.learners],
      sizeBytes: shard.sizeBytes ?? 0,
    };
    for (const step of moveSteps(move, shard.leader)) {
      applyStep(copy, step, isLive);
      assert(
        hasLiveMajority(copy.voters, isLive),
        `step ${step.kind} of "${move.reason}" leaves ${copy.voters} without a live majority`,
      );
    }
  }
  // A down node is exempt (it does no work), so a revived one may carry more moves in flight
  // than the limit: then the plan must add none to it.
  for (const [node, count] of touched) {
    if (!isLive(node) || !planned.has(node)) continue;
    assert(count <= input.limits.movesPerNodeMax, `${count} moves touch ${node}`);
  }
  assert(busy.size <= input.limits.movesMax, "more moves than movesMax");
}

/** Applies one step to a shard, as a kvnode would. */
export function applyStep(shard: SimShard, step: MoveStep, isLive: (n: NodeId) => boolean): void {
  switch (step.kind) {
    case "addLearner":
      if (!shard.learners.includes(step.node) && !shard.voters.includes(step.node)) {
        shard.learners.push(step.node);
      }
      return;
    case "promoteLearner":
      shard.learners = shard.learners.filter((node) => node !== step.node);
      if (!shard.voters.includes(step.node)) shard.voters.push(step.node);
      return;
    case "transferLeader":
      shard.leader = step.to ??
        shard.voters.filter((node) => node !== step.from && isLive(node)).sort()[0];
      return;
    case "removeMember":
      shard.voters = shard.voters.filter((node) => node !== step.node);
      shard.learners = shard.learners.filter((node) => node !== step.node);
      if (shard.leader === step.node) shard.leader = undefined;
      return;
  }
}

/** Whether the executor may run `step` now: the target is live and a majority remains. */
function stepAllowed(shard: SimShard, step: MoveStep, isLive: (n: NodeId) => boolean): boolean {
  if (!hasLiveMajority(shard.voters, isLive)) return false;
  if ((step.kind === "addLearner" || step.kind === "promoteLearner") && !isLive(step.node)) {
    return false;
  }
  if (step.kind === "promoteLearner" && !shard.learners.includes(step.node)) return false;
  const copy: SimShard = { ...shard, voters: [...shard.voters], learners: [...shard.learners] };
  applyStep(copy, step, isLive);
  return hasLiveMajority(copy.voters, isLive);
}

/**
 * Runs one round: plan and check it; finish the moves left running last round (aborting one
 * whose next step is unsafe, as an executor re-checking before each step would); run the new
 * moves, some only partly; elect leaders; advance the clock. Returns the plan.
 */
export function simRound(sim: Sim): Plan {
  const input = simInput(sim);
  const plan = planMoves(input);
  checkPlan(input, plan);
  sim.history.push(...plan.moves);
  const isLive = liveIn(sim);
  const byId = new Map(sim.shards.map((shard) => [shard.id, shard]));
  for (const { move, remaining } of sim.running) {
    const shard = byId.get(move.shardId)!;
    for (const step of remaining) {
      if (!stepAllowed(shard, step, isLive)) break;
      applyStep(shard, step, isLive);
    }
    shard.lastMoveMs = sim.nowMs;
  }
  sim.running = [];
  for (const move of plan.moves) {
    const shard = byId.get(move.shardId)!;
    const steps = moveSteps(move, shard.leader);
    const cut = steps.length > 1 && sim.random() < sim.partialChance
      ? 1 + Math.floor(sim.random() * (steps.length - 1))
      : steps.length;
    for (const step of steps.slice(0, cut)) {
      applyStep(shard, step, isLive);
      assert(hasLiveMajority(shard.voters, isLive), `step ${step.kind} broke ${move.reason}`);
    }
    if (cut < steps.length) sim.running.push({ move, remaining: steps.slice(cut) });
    else shard.lastMoveMs = sim.nowMs;
  }
  elect(sim);
  sim.nowMs += sim.roundMs;
  return plan;
}

/** Gives every leaderless shard with a live majority a leader: its first live voter by id. */
export function elect(sim: Sim): void {
  const isLive = liveIn(sim);
  for (const shard of sim.shards) {
    const ok = shard.leader !== undefined && isLive(shard.leader) &&
      shard.voters.includes(shard.leader);
    if (ok) continue;
    shard.leader = hasLiveMajority(shard.voters, isLive)
      ? shard.voters.filter(isLive).sort()[0]
      : undefined;
  }
}

/**
 * Runs rounds until a plan made with nothing in flight is empty, with every shard led, no shard
 * in its cooldown and no node within its grace period (each may hold moves back); returns the
 * rounds it took.
 */
export function runUntilQuiet(sim: Sim, roundsMax: number): number {
  for (let round = 1; round <= roundsMax; round++) {
    const isLive = liveIn(sim);
    const leaderless = sim.shards.some((s) => s.leader === undefined || !isLive(s.leader));
    const waiting = sim.running.length > 0 || leaderless || sim.shards.some((shard) =>
      shard.lastMoveMs !== undefined && sim.nowMs - shard.lastMoveMs < sim.limits.shardCooldownMs
    ) || sim.nodes.some((node) =>
      !node.live && node.deadSinceMs !== undefined &&
      sim.nowMs - node.deadSinceMs < sim.limits.deadNodeGraceMs
    );
    const plan = simRound(sim);
    if (plan.moves.length === 0 && sim.running.length === 0 && !waiting) {
      return round;
    }
  }
  throw new Error(`Planning did not converge within ${roundsMax} rounds`);
}

/** Counts per node of the eligible nodes: voters and leaders. */
export function counts(sim: Sim): { replicas: Map<NodeId, number>; leaders: Map<NodeId, number> } {
  const eligible = eligibleIn(sim);
  const replicas = new Map<NodeId, number>();
  const leaders = new Map<NodeId, number>();
  for (const node of sim.nodes) {
    if (!eligible(node.id)) continue;
    replicas.set(node.id, 0);
    leaders.set(node.id, 0);
  }
  for (const shard of sim.shards) {
    for (const voter of shard.voters) {
      if (replicas.has(voter)) replicas.set(voter, replicas.get(voter)! + 1);
    }
    if (shard.leader !== undefined && leaders.has(shard.leader)) {
      leaders.set(shard.leader, leaders.get(shard.leader)! + 1);
    }
  }
  return { replicas, leaders };
}

/** The spread (max - min) of a count map's values. */
export function spread(values: ReadonlyMap<NodeId, number>): number {
  const list = [...values.values()];
  return list.length === 0 ? 0 : Math.max(...list) - Math.min(...list);
}

/**
 * Asserts the converged state: every shard has `replicaCount` voters on distinct eligible nodes,
 * no learners and a leader; voters and leaders per eligible node within one of each other; no
 * replica on a draining or down node.
 */
export function assertConverged(sim: Sim): void {
  const eligible = eligibleIn(sim);
  for (const shard of sim.shards) {
    assert.equal(shard.voters.length, sim.replicaCount, `shard ${shard.id} voters ${shard.voters}`);
    assert.equal(new Set(shard.voters).size, shard.voters.length, `shard ${shard.id} duplicates`);
    assert(shard.voters.every(eligible), `shard ${shard.id} has a voter off the eligible nodes`);
    assert.deepEqual(shard.learners, [], `shard ${shard.id} keeps learners`);
    assert(shard.leader !== undefined && shard.voters.includes(shard.leader));
  }
  const { replicas, leaders } = counts(sim);
  assert(spread(replicas) <= 1, `replicas unbalanced: ${JSON.stringify([...replicas])}`);
  assert(spread(leaders) <= 1, `leaders unbalanced: ${JSON.stringify([...leaders])}`);
}
