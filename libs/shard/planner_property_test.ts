// Property tests of planMoves() over random clusters (3–9 nodes, 1–40 shards, replica count 1–5
// up to the node count, random layouts with learners, down and draining nodes). A simulated
// executor runs every plan step by step, some moves only partly, and between rounds kills,
// revives, adds, drains and undrains nodes. At every round checkPlan() asserts the rules (one
// move per shard, per-node budget counting moves in flight, eligible targets, cooldown, a live
// majority at every step) and the plan must not depend on the order of the input's lists. Once
// the node set is stable, planning must converge within a bound to a balanced, fully replicated
// state; and a node joining a balanced cluster must cost close to the minimum of moves.

import assert from "node:assert/strict";
import fc from "fast-check";
import { type NodeId, nodeId } from "./ids.ts";
import {
  assertConverged,
  eligibleIn,
  liveIn,
  mulberry32,
  roundRobinSim,
  runUntilQuiet,
  type Sim,
  SIM_LIMITS,
  simInput,
  simRound,
  type SimShard,
} from "./_planner_sim.ts";
import { planMoves } from "./planner.ts";
import { hasLiveMajority, type PlannerInput } from "./planner_types.ts";

const NODES_MAX = 12;

type EventKind = "kill" | "revive" | "join" | "drain" | "undrain";
interface Event {
  kind: EventKind;
  pick: number;
}

interface Scenario {
  nodeCount: number;
  replicaCount: number;
  shardCount: number;
  movesPerNodeMax: number;
  layoutSeed: number;
  simSeed: number;
  partialChance: number;
  rounds: Event[][];
}

const arbitraryScenario: fc.Arbitrary<Scenario> = fc.record({
  nodeCount: fc.integer({ min: 3, max: 9 }),
  replicaCount: fc.integer({ min: 1, max: 5 }),
  shardCount: fc.integer({ min: 1, max: 40 }),
  movesPerNodeMax: fc.integer({ min: 1, max: 3 }),
  layoutSeed: fc.integer(),
  simSeed: fc.integer(),
  partialChance: fc.constantFrom(0, 0.3),
  rounds: fc.array(
    fc.array(
      fc.record({
        kind: fc.constantFrom<EventKind>("kill", "revive", "join", "drain", "undrain"),
        pick: fc.nat(),
      }),
      { maxLength: 2 },
    ),
    { maxLength: 8 },
  ),
}).map((s) => ({ ...s, replicaCount: Math.min(s.replicaCount, s.nodeCount) }));

/** A random starting cluster: round-robin or random voters, learners, leaders and node states. */
function buildSim(s: Scenario): Sim {
  const random = mulberry32(s.layoutSeed);
  const pickInt = (n: number) => Math.floor(random() * n);
  const sim = roundRobinSim(s.nodeCount, s.shardCount, s.replicaCount, {
    limits: { ...SIM_LIMITS, movesPerNodeMax: s.movesPerNodeMax },
    random: mulberry32(s.simSeed),
    partialChance: s.partialChance,
  });
  if (random() < 0.6) {
    const ids = sim.nodes.map((node) => node.id);
    sim.shards = sim.shards.map((shard): SimShard => {
      const shuffled = [...ids].sort(() => random() - 0.5);
      const size = Math.max(1, Math.min(ids.length, s.replicaCount + pickInt(3) - 1));
      const voters = shuffled.slice(0, size);
      const learners = random() < 0.15 ? shuffled.slice(size, size + 1) : [];
      const leader = random() < 0.9 ? voters[pickInt(voters.length)] : undefined;
      return { ...shard, voters, learners, leader, sizeBytes: pickInt(5000) };
    });
  }
  for (const node of sim.nodes) {
    const roll = random();
    if (roll < 0.1) {
      node.live = false;
      node.deadSinceMs = sim.nowMs - pickInt(60_000);
    } else if (roll < 0.15) node.draining = true;
  }
  return sim;
}

function applyEvent(sim: Sim, event: Event): void {
  const pick = <T>(list: T[]) => list.length === 0 ? undefined : list[event.pick % list.length];
  switch (event.kind) {
    case "kill": {
      const node = pick(sim.nodes.filter((n) => n.live));
      if (node !== undefined) Object.assign(node, { live: false, deadSinceMs: sim.nowMs });
      return;
    }
    case "revive": {
      const node = pick(sim.nodes.filter((n) => !n.live));
      if (node !== undefined) Object.assign(node, { live: true, deadSinceMs: undefined });
      return;
    }
    case "join":
      if (sim.nodes.length < NODES_MAX) join(sim);
      return;
    case "drain": {
      const node = pick(sim.nodes.filter((n) => n.live && !n.draining));
      if (node !== undefined) node.draining = true;
      return;
    }
    case "undrain": {
      const node = pick(sim.nodes.filter((n) => n.draining));
      if (node !== undefined) node.draining = false;
      return;
    }
  }
}

function join(sim: Sim): NodeId {
  const id = nodeId(`n${sim.nodes.length + 1}`);
  sim.nodes.push({ id, live: true, draining: false });
  return id;
}

/**
 * Makes the node set one planning can finish on: revives the down nodes a shard needs for its
 * majority (the rest stay down for good), and undrains or adds nodes until `replicaCount` are
 * eligible.
 */
function stabilize(sim: Sim): void {
  const isLive = liveIn(sim);
  for (const shard of sim.shards) {
    if (hasLiveMajority(shard.voters, isLive)) continue;
    for (const node of sim.nodes) {
      if (shard.voters.includes(node.id) && !node.live) {
        Object.assign(node, { live: true, deadSinceMs: undefined });
      }
    }
  }
  for (const node of sim.nodes) {
    if (sim.nodes.filter((n) => eligibleIn(sim)(n.id)).length >= sim.replicaCount) break;
    if (node.live && node.draining) node.draining = false;
  }
  while (sim.nodes.filter((n) => eligibleIn(sim)(n.id)).length < sim.replicaCount) join(sim);
}

/** The same input with every list reversed and members shuffled: must give the same plan. */
function reordered(input: PlannerInput): PlannerInput {
  return {
    ...input,
    nodes: [...input.nodes].reverse(),
    shards: [...input.shards].reverse().map((shard) => ({
      ...shard,
      voters: [...shard.voters].reverse(),
      learners: [...shard.learners].reverse(),
    })),
    movesInFlight: [...input.movesInFlight].reverse(),
  };
}

/** A generous bound on the rounds to converge: repairs and moves limited by the budget. */
function roundsBound(sim: Sim): number {
  const replicas = sim.shards.length * sim.replicaCount;
  return 30 + 2 * Math.ceil(replicas / sim.limits.movesPerNodeMax);
}

Deno.test("planMoves() keeps every rule at every step and converges after failures", () => {
  let roundsWorst = 0;
  fc.assert(
    fc.property(arbitraryScenario, (scenario) => {
      const sim = buildSim(scenario);
      for (const events of scenario.rounds) {
        for (const event of events) applyEvent(sim, event);
        const input = simInput(sim);
        assert.deepEqual(planMoves(reordered(input)), planMoves(input), "order-dependent plan");
        simRound(sim);
      }
      stabilize(sim);
      const bound = roundsBound(sim);
      const rounds = runUntilQuiet(sim, bound);
      roundsWorst = Math.max(roundsWorst, rounds / bound);
      assertConverged(sim);
    }),
    { numRuns: 600 },
  );
  assert(roundsWorst <= 1);
});

Deno.test("planMoves() moves close to the minimum of replicas when a node joins", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 3, max: 8 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 3 }),
      (nodeCount, replicaRaw, shardCount, movesPerNodeMax) => {
        const replicaCount = Math.min(replicaRaw, nodeCount);
        const sim = roundRobinSim(nodeCount, shardCount, replicaCount, {
          limits: { ...SIM_LIMITS, movesPerNodeMax },
        });
        runUntilQuiet(sim, roundsBound(sim)); // Round-robin is balanced only up to rounding.
        sim.history = [];
        const added = join(sim);
        runUntilQuiet(sim, roundsBound(sim));
        assertConverged(sim);
        const moves = sim.history.filter((move) => move.kind === "moveReplica");
        const minimum = Math.floor((shardCount * replicaCount) / (nodeCount + 1));
        assert(moves.length >= minimum);
        assert(
          moves.length <= minimum + 1,
          `${moves.length} replica moves for a minimum of ${minimum}`,
        );
        assert(moves.every((move) => move.to === added), "a replica moved between old nodes");
        const transfers = sim.history.filter((move) => move.kind === "transferLeader").length;
        // Replica moves carry leadership to the new node when that helps, so the transfers
        // come to about the new node's share of leaders.
        const transfersMax = Math.ceil(shardCount / (nodeCount + 1)) + 1;
        assert(transfers <= transfersMax, `${transfers} transfers, more than ${transfersMax}`);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("planMoves() never plans on a shard without a live majority", () => {
  fc.assert(
    fc.property(arbitraryScenario, (scenario) => {
      const sim = buildSim(scenario);
      for (const event of scenario.rounds.flat()) applyEvent(sim, event);
      const input = simInput(sim);
      const isLive = liveIn(sim);
      const plan = planMoves(input);
      for (const shard of input.shards) {
        if (hasLiveMajority(shard.voters, isLive)) continue;
        assert(plan.moves.every((move) => move.shardId !== shard.id));
        const noted = plan.notes.some((text) =>
          text.startsWith(`shard ${shard.id} is unavailable`) || text.endsWith("notes left out")
        );
        assert(noted, `shard ${shard.id} is unavailable without a note`);
      }
    }),
    { numRuns: 300 },
  );
});
