/**
 * The rebalancing planner: a pure function from the cluster placement sees (live nodes, each
 * shard's voters, learners and leader, the moves in flight, the time and the movement budget) to
 * the moves to start now, each with the reason for it.
 *
 * One round plans in three phases, sharing one budget and one projection of per-node counts:
 *
 * 1. **Repairs**, most urgent shard first (fewest live voters to spare): replace a voter on a
 *    dead node, add a voter to an under-replicated shard, remove an extra voter, move a replica
 *    off a draining node (or at least its leadership), remove a learner no move uses. A shard
 *    without a live majority gets nothing, only a note: it needs an operator.
 * 2. **Replica balance**: while the most loaded eligible node holds 2 or more voters than the
 *    least loaded, move one replica between them. Each move lowers the spread, so few moves
 *    are made. The leadership of a moved replica travels with it, so a shard the source leads
 *    is preferred when that also balances leaders, and avoided otherwise; then the smallest.
 * 3. **Leader balance**: while a node leads 2 or more shards than another that it can reach
 *    through a chain of "leads a shard where the next node is a voter", transfer leadership
 *    along the shortest such chain (an augmenting path, so a balance reachable by transfers is
 *    found). A chain waits when a shorter one is only held up by a busy or cooling shard; a
 *    node inside a chain needs budget for two transfers, and without it only the chain's tail
 *    is planned, leaving a shorter chain for the next round. A node an operator moved a
 *    leadership away from within the cooldown gets none (it is being emptied of leaders).
 *
 * Safety: every move starts from a live majority and keeps one at each of its steps (see
 * {@linkcode moveSteps}): a new voter joins as a learner and is promoted before anything is
 * removed, and a live voter is removed alone only if the rest keep a majority of the new,
 * smaller configuration. A shard gets at most one move at a time; a live node at most
 * `movesPerNodeMax`. Rebalancing (phases 2 and 3) waits for a shard's cooldown; repairs do not.
 *
 * @module
 */

import {
  budgetAllows,
  byId,
  checkInput,
  countOf,
  duration,
  eligibleTotal,
  freeSlots,
  healthOf,
  inCooldown,
  isEligible,
  isLive,
  mean,
  moveBytes,
  newWork,
  note,
  record,
  shardAvailable,
  type ShardWork,
  type Work,
} from "./_planner_work.ts";
import { unreachable } from "./_assert.ts";
import type { NodeId } from "./ids.ts";
import type { Move, MoveCause, Plan, PlannedMove, PlannerInput } from "./planner_types.ts";

/**
 * Plans the moves to start now. Pure and deterministic: the same input gives the same plan (ties
 * are broken by node and shard id). Call it again after moves finish or the cluster changes;
 * repeated planning converges to every shard with `replicaCount` voters on distinct live nodes,
 * voters per eligible node within one of each other, and leaders likewise.
 *
 * @example A fourth node joins a balanced three-node cluster
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeId, PLANNER_LIMITS_DEFAULT, planMoves, shardId } from "@tinykv/shard";
 *
 * const [n1, n2, n3, n4] = ["n1", "n2", "n3", "n4"].map(nodeId);
 * const plan = planMoves({
 *   replicaCount: 3,
 *   nodes: [n1, n2, n3, n4].map((id) => ({ id, live: true })),
 *   shards: [0, 1, 2, 3].map((i) => ({
 *     id: shardId(i),
 *     voters: [n1, n2, n3],
 *     learners: [],
 *     leader: [n1, n2, n3][i % 3],
 *   })),
 *   movesInFlight: [],
 *   nowMs: 0,
 *   limits: PLANNER_LIMITS_DEFAULT,
 * });
 * assert(plan.moves.length > 0);
 * assert(plan.moves.every((move) => move.kind === "moveReplica" && move.to === n4));
 * ```
 */
export function planMoves(input: PlannerInput): Plan {
  checkInput(input);
  const work = newWork(input);
  noteSummary(work);
  noteSuspects(work);
  planRepairs(work);
  planReplicaBalance(work);
  planLeaderBalance(work);
  const notes = [...work.notes];
  if (work.notesDropped > 0) notes.push(`${work.notesDropped} more notes left out`);
  return { moves: work.moves, notes };
}

function noteSummary(work: Work): void {
  const { input, eligible } = work;
  const kinds = input.nodes.map((node) => healthOf(work, node.id).kind);
  const draining = kinds.filter((kind) => kind === "draining").length;
  const down = kinds.length - eligible.length - draining;
  const spread = (counts: ReadonlyMap<NodeId, number>) => {
    const values = eligible.map((node) => countOf(counts, node));
    const total = values.reduce((a, b) => a + b, 0);
    return values.length === 0
      ? "none"
      : `${Math.min(...values)}–${Math.max(...values)} (mean ${mean(total, values.length)})`;
  };
  note(
    work,
    `${eligible.length} eligible nodes, ${draining} draining, ${down} down; ` +
      `${input.shards.length} shards, ${input.movesInFlight.length} moves in flight; ` +
      `replicas per eligible node ${spread(work.replicas)}, leaders ${spread(work.leaders)}`,
  );
}

function noteSuspects(work: Work): void {
  for (const node of [...work.input.nodes].sort((a, b) => byId(a.id, b.id))) {
    const health = healthOf(work, node.id);
    if (health.kind !== "suspect") continue;
    note(
      work,
      `${node.id} has been down ${duration(health.downMs)}: its ${
        countOf(work.replicas, node.id)
      } replicas are replaced once it has been down ${duration(work.limits.deadNodeGraceMs)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: repairs.

/** Something wrong with a shard, most urgent kinds first. */
type Need =
  | { kind: "deadVoter"; node: NodeId; why: string }
  | { kind: "underReplicated" }
  | { kind: "overReplicated" }
  | { kind: "drainingVoter"; node: NodeId }
  | { kind: "drainingLeader"; node: NodeId }
  | { kind: "staleLearner"; node: NodeId };

/** The outcome of trying to meet a need: a move, or why there is none. */
type Attempt = { kind: "planned" } | { kind: "blocked"; why: string };

function planRepairs(work: Work): void {
  const queue: { shardWork: ShardWork; needs: Need[]; spare: number }[] = [];
  for (const shardWork of work.shards) {
    if (shardWork.busy) continue;
    const { shard } = shardWork;
    const liveVoters = shard.voters.filter((node) => isLive(work, node)).sort(byId);
    if (!shardAvailable(work, shard)) {
      shardWork.blocked = true;
      note(
        work,
        `shard ${shard.id} is unavailable, needs operator: ${liveVoters.length} of ` +
          `${shard.voters.length} voters live (${
            liveVoters.join(", ") || "none"
          }); no move planned`,
      );
      continue;
    }
    const needs = shardNeeds(work, shardWork);
    // Spare = how many more voters may fail before the shard loses its majority.
    const spare = liveVoters.length - (Math.floor(shard.voters.length / 2) + 1);
    if (needs.length > 0) queue.push({ shardWork, needs, spare });
  }
  queue.sort((a, b) =>
    NEED_ORDER[a.needs[0].kind] - NEED_ORDER[b.needs[0].kind] || a.spare - b.spare ||
    a.shardWork.shard.id - b.shardWork.shard.id
  );
  for (const { shardWork, needs } of queue) {
    let firstBlock: string | undefined;
    for (const need of needs) {
      const attempt = meetNeed(work, shardWork, need);
      if (attempt.kind === "planned") break;
      firstBlock ??= attempt.why;
    }
    if (!shardWork.busy && firstBlock !== undefined) {
      note(work, `shard ${shardWork.shard.id}: ${firstBlock}`);
    }
  }
}

const NEED_ORDER: Record<Need["kind"], number> = {
  deadVoter: 0,
  underReplicated: 1,
  overReplicated: 2,
  drainingVoter: 3,
  drainingLeader: 4,
  staleLearner: 5,
};

function shardNeeds(work: Work, shardWork: ShardWork): Need[] {
  const { shard } = shardWork;
  const wanted = work.input.replicaCount;
  const needs: Need[] = [];
  for (const node of [...shard.voters].sort(byId)) {
    const health = healthOf(work, node);
    if (health.kind === "dead") needs.push({ kind: "deadVoter", node, why: health.why });
  }
  if (shard.voters.length < wanted) needs.push({ kind: "underReplicated" });
  if (shard.voters.length > wanted) needs.push({ kind: "overReplicated" });
  for (const node of [...shard.voters].sort(byId)) {
    if (healthOf(work, node).kind === "draining") needs.push({ kind: "drainingVoter", node });
  }
  const leader = shardWork.leader;
  if (leader !== undefined && healthOf(work, leader).kind === "draining") {
    needs.push({ kind: "drainingLeader", node: leader });
  }
  for (const node of [...shard.learners].sort(byId)) needs.push({ kind: "staleLearner", node });
  return needs;
}

function meetNeed(work: Work, shardWork: ShardWork, need: Need): Attempt {
  const { shard } = shardWork;
  const wanted = work.input.replicaCount;
  switch (need.kind) {
    case "deadVoter": {
      if (shard.voters.length > wanted) {
        const reason = `shard ${shard.id}: replica removed from ${need.node} because ` +
          `${need.why} and the shard has ${shard.voters.length} voters for ${wanted} wanted`;
        return plan(
          work,
          shardWork,
          { kind: "removeReplica", shardId: shard.id, from: need.node },
          {
            cause: "deadNode",
            reason,
          },
        );
      }
      return planWithTarget(work, shardWork, `replace the replica on ${need.node}`, (to, why) => ({
        move: { kind: "moveReplica", shardId: shard.id, from: need.node, to },
        cause: "deadNode",
        reason: `shard ${shard.id}: replica added on ${to} and removed from ${need.node} ` +
          `because ${need.why} (${why})`,
      }));
    }
    case "underReplicated":
      return planWithTarget(work, shardWork, "add a replica", (to, why) => ({
        move: { kind: "addReplica", shardId: shard.id, to },
        cause: "underReplicated",
        reason: `shard ${shard.id}: replica added on ${to} because the shard has ` +
          `${shard.voters.length} of ${wanted} voters (${why})`,
      }));
    case "overReplicated":
      return removeExtraVoter(work, shardWork);
    case "drainingVoter":
      return planWithTarget(work, shardWork, `move the replica off ${need.node}`, (to, why) => ({
        move: { kind: "moveReplica", shardId: shard.id, from: need.node, to },
        cause: "draining",
        reason: `shard ${shard.id}: replica moved from ${need.node} to ${to} because ` +
          `${need.node} is draining (${why})`,
      }));
    case "drainingLeader":
      return moveLeaderOffDraining(work, shardWork, need.node);
    case "staleLearner":
      return plan(work, shardWork, { kind: "removeReplica", shardId: shard.id, from: need.node }, {
        cause: "staleLearner",
        reason: `shard ${shard.id}: learner on ${need.node} removed because no move in flight ` +
          `uses it`,
      });
    default:
      return unreachable(need, "need");
  }
}

/** Plans `move` if the budget allows it. */
function plan(
  work: Work,
  shardWork: ShardWork,
  move: Move,
  why: { cause: MoveCause; reason: string },
): Attempt {
  const nodes = move.kind === "addReplica"
    ? [move.to]
    : move.kind === "removeReplica"
    ? [move.from]
    : [move.from, move.to];
  if (!budgetAllows(work, nodes, moveBytes(shardWork.shard, move))) {
    return { kind: "blocked", why: `waiting for the movement budget (${describe(move)})` };
  }
  record(work, shardWork, { ...move, ...why } as PlannedMove);
  return { kind: "planned" };
}

function describe(move: Move): string {
  switch (move.kind) {
    case "addReplica":
      return `add on ${move.to}`;
    case "removeReplica":
      return `remove from ${move.from}`;
    case "moveReplica":
      return `move from ${move.from} to ${move.to}`;
    case "transferLeader":
      return `transfer leadership from ${move.from} to ${move.to}`;
    default:
      return unreachable(move, "move");
  }
}

/**
 * Picks the eligible node outside the shard with the fewest replicas (then fewest leaders, then
 * lowest id) that the budget allows, and plans the move `build` makes for it.
 */
function planWithTarget(
  work: Work,
  shardWork: ShardWork,
  goal: string,
  build: (to: NodeId, why: string) => { move: Move; cause: MoveCause; reason: string },
): Attempt {
  const { shard } = shardWork;
  const outside = work.eligible.filter((node) =>
    !shard.voters.includes(node) && !shard.learners.includes(node)
  );
  if (outside.length === 0) {
    return { kind: "blocked", why: `cannot ${goal}: every eligible node already holds it` };
  }
  const ranked = [...outside].sort((a, b) =>
    countOf(work.replicas, a) - countOf(work.replicas, b) ||
    countOf(work.leaders, a) - countOf(work.leaders, b) || byId(a, b)
  );
  for (const to of ranked) {
    const why = `${to} held ${countOf(work.replicas, to)} replicas, ` +
      `the fewest of ${outside.length} candidates`;
    const { move, cause, reason } = build(to, why);
    const nodes = move.kind === "moveReplica" ? [move.from, to] : [to];
    if (budgetAllows(work, nodes, moveBytes(shard, move))) {
      record(work, shardWork, { ...move, cause, reason } as PlannedMove);
      return { kind: "planned" };
    }
  }
  return { kind: "blocked", why: `cannot ${goal} yet: waiting for the movement budget` };
}

/**
 * Removes one voter from a shard with too many: a down one first (always safe), then a draining
 * one, then the one on the most loaded node that does not lead. A live voter is removed only if
 * the remaining live voters are a majority of the smaller configuration.
 */
function removeExtraVoter(work: Work, shardWork: ShardWork): Attempt {
  const { shard } = shardWork;
  const rank = (node: NodeId) => {
    const kind = healthOf(work, node).kind;
    return kind === "dead" || kind === "suspect" ? 0 : kind === "draining" ? 1 : 2;
  };
  const [victim] = [...shard.voters].sort((a, b) =>
    rank(a) - rank(b) || Number(a === shardWork.leader) - Number(b === shardWork.leader) ||
    countOf(work.replicas, b) - countOf(work.replicas, a) || byId(a, b)
  );
  const liveVoters = shard.voters.filter((node) => isLive(work, node)).length;
  const votersAfter = shard.voters.length - 1;
  const liveAfter = liveVoters - (isLive(work, victim) ? 1 : 0);
  if (2 * liveAfter <= votersAfter) {
    return {
      kind: "blocked",
      why: `cannot remove an extra voter: ${liveAfter} live of ${votersAfter} would remain, ` +
        `not a majority`,
    };
  }
  const why = rank(victim) === 0
    ? `${victim} is down`
    : rank(victim) === 1
    ? `${victim} is draining`
    : `${victim} held ${countOf(work.replicas, victim)} replicas, the most among the voters`;
  return plan(work, shardWork, { kind: "removeReplica", shardId: shard.id, from: victim }, {
    cause: "overReplicated",
    reason: `shard ${shard.id}: replica removed from ${victim} because the shard has ` +
      `${shard.voters.length} voters for ${work.input.replicaCount} wanted (${why})`,
  });
}

function moveLeaderOffDraining(work: Work, shardWork: ShardWork, from: NodeId): Attempt {
  const { shard } = shardWork;
  // A node an operator is emptying of leaders (leadersHeld) is the last choice: it leads fewest
  // exactly because it is about to restart.
  const held = (node: NodeId) => work.leadersHeld.has(node) ? 1 : 0;
  const candidates = shard.voters.filter((node) => isEligible(work, node)).sort((a, b) =>
    held(a) - held(b) || countOf(work.leaders, a) - countOf(work.leaders, b) || byId(a, b)
  );
  if (candidates.length === 0) {
    return {
      kind: "blocked",
      why: `cannot move leadership off draining ${from}: no eligible voter`,
    };
  }
  const to = candidates[0];
  return plan(work, shardWork, { kind: "transferLeader", shardId: shard.id, from, to }, {
    cause: "draining",
    reason: `leader of shard ${shard.id} moved from ${from} to ${to} because ${from} is ` +
      `draining (${to} led ${countOf(work.leaders, to)} shards, the fewest of the voters)`,
  });
}

// ---------------------------------------------------------------------------------------------
// Phase 2: replica balance.

/**
 * A shard may be rebalanced now: healthy, settled, idle and out of its cooldown. With `later`,
 * one that is healthy but busy or cooling down counts too: it will be rebalanceable soon.
 */
function balanceable(work: Work, shardWork: ShardWork, when: "now" | "later" = "now"): boolean {
  const { shard } = shardWork;
  const healthy = !shardWork.blocked && shard.voters.every((node) => isLive(work, node));
  if (when === "later") return healthy;
  return healthy && !shardWork.busy && !inCooldown(work, shard) && shard.learners.length === 0;
}

function planReplicaBalance(work: Work): void {
  if (work.eligible.length < 2) return;
  for (let round = 0; round <= work.shards.length; round++) {
    if (!planOneReplicaMove(work)) return;
  }
}

function planOneReplicaMove(work: Work): boolean {
  const load = (node: NodeId) => countOf(work.replicas, node);
  const descending = [...work.eligible].sort((a, b) => load(b) - load(a) || byId(a, b));
  const ascending = [...work.eligible].sort((a, b) => load(a) - load(b) || byId(a, b));
  const total = eligibleTotal(work, work.replicas);
  for (const from of descending) {
    if (freeSlots(work, from) < 1) continue;
    for (const to of ascending) {
      if (load(from) - load(to) < 2) break;
      if (freeSlots(work, to) < 1) continue;
      const shardWork = pickShardToMove(work, from, to);
      if (shardWork === undefined) continue;
      const { shard } = shardWork;
      const reason = `shard ${shard.id}: replica moved from ${from} to ${to} to balance ` +
        `replicas: ${from} held ${load(from)}, ${to} held ${load(to)}, ` +
        `mean ${mean(total, work.eligible.length)}`;
      const move: Move = { kind: "moveReplica", shardId: shard.id, from, to };
      record(work, shardWork, { ...move, cause: "replicaBalance", reason });
      return true;
    }
  }
  return false;
}

/**
 * The shard to move from `from` to `to`. The leadership of a shard `from` leads travels with
 * the replica (see {@linkcode moveSteps}), so prefer such a shard when `from` leads 2 or more
 * shards than `to` (the move balances leaders for free) and avoid one otherwise; then the
 * smallest, then the lowest id.
 */
function pickShardToMove(work: Work, from: NodeId, to: NodeId): ShardWork | undefined {
  let best: ShardWork | undefined;
  const carryLeader = countOf(work.leaders, from) - countOf(work.leaders, to) >= 2;
  const score = (shardWork: ShardWork) => [
    Number((shardWork.leader === from) !== carryLeader),
    shardWork.shard.sizeBytes ?? 0,
    shardWork.shard.id,
  ];
  for (const shardWork of work.shards) {
    const { shard } = shardWork;
    if (!shard.voters.includes(from) || shard.voters.includes(to)) continue;
    if (!balanceable(work, shardWork)) continue;
    const move: Move = { kind: "moveReplica", shardId: shard.id, from, to };
    if (!budgetAllows(work, [from, to], moveBytes(shard, move))) continue;
    if (best === undefined || lexicographicLess(score(shardWork), score(best))) best = shardWork;
  }
  return best;
}

function lexicographicLess(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i];
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Phase 3: leader balance.

/** One possible transfer: `shardWork`'s leader may hand leadership to `to`. */
interface LeaderEdge {
  readonly shardWork: ShardWork;
  readonly to: NodeId;
}

function planLeaderBalance(work: Work): void {
  if (work.eligible.length < 2) return;
  for (let round = 0; round <= work.shards.length; round++) {
    if (!planOneLeaderChain(work)) return;
  }
}

function planOneLeaderChain(work: Work): boolean {
  const led = (node: NodeId) => countOf(work.leaders, node);
  const edges = leaderEdges(work, "now");
  const soon = leaderEdges(work, "later");
  const starts = [...work.eligible].sort((a, b) => led(b) - led(a) || byId(a, b));
  const receivers = work.eligible.filter((node) => !work.leadersHeld.has(node));
  if (receivers.length === 0) return false;
  const fewest = Math.min(...receivers.map(led));
  for (const start of starts) {
    if (led(start) - fewest < 2) return false;
    const found = shortestLeaderChain(work, edges, start);
    if (found === undefined) continue;
    // Few moves: when a shorter chain (often a direct transfer) only waits for a busy or cooling
    // shard, wait for it rather than move leadership along a longer one now.
    if (leaderHops(soon, start, found[found.length - 1].to) < found.length) continue;
    const chain = budgetedSuffix(work, found);
    if (work.moveCount + chain.length > work.limits.movesMax) continue;
    planLeaderChain(work, start, found, chain);
    return true;
  }
  return false;
}

/**
 * The part of `chain` the per-node budget allows now. A node inside a chain both receives and
 * hands on a leadership, so it needs two free slots. If one lacks them, only the hops after it
 * are planned: they do not lower the spread yet, but they leave a shorter chain (down to one
 * direct transfer) for the next round, so the balance is still reached with one slot per node.
 */
function budgetedSuffix(work: Work, chain: readonly LeaderEdge[]): readonly LeaderEdge[] {
  for (let i = chain.length - 1; i >= 1; i--) {
    if (freeSlots(work, chain[i - 1].to) < 2) return chain.slice(i);
  }
  return chain;
}

function planLeaderChain(
  work: Work,
  start: NodeId,
  found: readonly LeaderEdge[],
  chain: readonly LeaderEdge[],
): void {
  const led = (node: NodeId) => countOf(work.leaders, node);
  const end = found[found.length - 1].to;
  const total = eligibleTotal(work, work.leaders);
  const numbers = `${start} led ${led(start)} shards, ${end} led ${led(end)}, ` +
    `mean ${mean(total, work.eligible.length)}`;
  const skipped = found.length - chain.length;
  let from = skipped === 0 ? start : found[skipped - 1].to;
  for (const [i, { shardWork, to }] of chain.entries()) {
    const id = shardWork.shard.id;
    const hop = skipped + i + 1;
    const reason = found.length === 1
      ? `leader of shard ${id} moved from ${from} to ${to}: ${numbers}`
      : `leader of shard ${id} moved from ${from} to ${to}, hop ${hop} of ${found.length} ` +
        `moving one leadership from ${start} to ${end}` +
        (skipped === 0
          ? ""
          : skipped === 1
          ? " (hop 1 waits for the move budget)"
          : ` (hops 1 to ${skipped} wait for the move budget)`) +
        `: ${numbers}`;
    const move: Move = { kind: "transferLeader", shardId: id, from, to };
    record(work, shardWork, { ...move, cause: "leaderBalance", reason });
    from = to;
  }
}

function leaderEdges(work: Work, when: "now" | "later"): Map<NodeId, LeaderEdge[]> {
  const edges = new Map<NodeId, LeaderEdge[]>();
  for (const shardWork of work.shards) {
    const leader = shardWork.leader;
    if (leader === undefined || !isEligible(work, leader) || !balanceable(work, shardWork, when)) {
      continue;
    }
    for (const to of [...shardWork.shard.voters].sort(byId)) {
      if (to === leader || !isEligible(work, to) || work.leadersHeld.has(to)) continue;
      edges.set(leader, [...edges.get(leader) ?? [], { shardWork, to }]);
    }
  }
  return edges;
}

/**
 * Breadth-first search from `start` for a node leading at least 2 fewer shards, through nodes
 * with budget for a transfer (see {@linkcode budgetedSuffix} for those needing two). Returns the transfers of the best chain: to
 * the node leading fewest, then shortest, then lowest id.
 */
function shortestLeaderChain(
  work: Work,
  edges: ReadonlyMap<NodeId, readonly LeaderEdge[]>,
  start: NodeId,
): LeaderEdge[] | undefined {
  const led = (node: NodeId) => countOf(work.leaders, node);
  const via = new Map<NodeId, { edge: LeaderEdge; prev: NodeId; hops: number }>();
  const queue: NodeId[] = [start];
  let best: { node: NodeId; hops: number } | undefined;
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head];
    const hops = node === start ? 0 : via.get(node)!.hops;
    if (node !== start && led(node) <= led(start) - 2 && freeSlots(work, node) >= 1) {
      if (
        best === undefined || led(node) < led(best.node) ||
        (led(node) === led(best.node) &&
          (hops < best.hops || (hops === best.hops && byId(node, best.node) < 0)))
      ) {
        best = { node, hops };
      }
    }
    if (freeSlots(work, node) < 1) continue;
    for (const edge of edges.get(node) ?? []) {
      if (edge.to === start || via.has(edge.to)) continue;
      via.set(edge.to, { edge, prev: node, hops: hops + 1 });
      queue.push(edge.to);
    }
  }
  if (best === undefined) return undefined;
  const chain: LeaderEdge[] = [];
  for (let node = best.node; node !== start;) {
    const step = via.get(node)!;
    chain.unshift(step.edge);
    node = step.prev;
  }
  return chain;
}

/** The fewest transfers that lead from `start` to `end` over `edges`, ignoring the budget. */
function leaderHops(
  edges: ReadonlyMap<NodeId, readonly LeaderEdge[]>,
  start: NodeId,
  end: NodeId,
): number {
  const hops = new Map<NodeId, number>([[start, 0]]);
  const queue: NodeId[] = [start];
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head];
    if (node === end) return hops.get(node)!;
    for (const edge of edges.get(node) ?? []) {
      if (hops.has(edge.to)) continue;
      hops.set(edge.to, hops.get(node)! + 1);
      queue.push(edge.to);
    }
  }
  return Number.POSITIVE_INFINITY;
}
