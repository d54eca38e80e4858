// Checks planMoves() on table situations: a balanced cluster, a node joining, a node dying
// (before and after its grace period), a drain, leader imbalance alone, a shard without a live
// majority, moves in flight, the cooldown and the movement budget; and moveSteps() and
// hasLiveMajority() on their own. Every plan also passes checkPlan(), the rules the property
// tests assert at every step.

import assert from "node:assert/strict";
import { nodeId, shardId } from "./ids.ts";
import {
  assertConverged,
  checkPlan,
  counts,
  nodeIds,
  roundRobinSim,
  runUntilQuiet,
  SIM_LIMITS,
  simInput,
} from "./_planner_sim.ts";
import { planMoves } from "./planner.ts";
import {
  hasLiveMajority,
  moveSteps,
  type Plan,
  type PlannerInput,
  type PlannerShard,
} from "./planner_types.ts";
import { AssertionError } from "./_assert.ts";

const [n1, n2, n3, n4, n5] = nodeIds(5);
const NOW = 1_000_000;

function input(overrides: Partial<PlannerInput> = {}): PlannerInput {
  return {
    replicaCount: 3,
    nodes: [n1, n2, n3].map((id) => ({ id, live: true })),
    shards: [],
    movesInFlight: [],
    nowMs: NOW,
    limits: SIM_LIMITS,
    ...overrides,
  };
}

function shard(id: number, voters: string[], extra: Partial<PlannerShard> = {}): PlannerShard {
  return {
    id: shardId(id),
    voters: voters.map(nodeId),
    learners: [],
    ...(voters.length > 0 ? { leader: nodeId(voters[0]) } : {}),
    ...extra,
  };
}

function plan(planInput: PlannerInput): Plan {
  const result = planMoves(planInput);
  checkPlan(planInput, result);
  return result;
}

Deno.test("planMoves() leaves a bootstrap-balanced cluster alone", () => {
  const sim = roundRobinSim(3, 6, 3);
  const result = plan(simInput(sim));
  assert.deepEqual(result.moves, []);
  assert.equal(result.notes.length, 1);
  assert.match(result.notes[0], /^3 eligible nodes, 0 draining, 0 down; 6 shards/);
});

Deno.test("planMoves() moves replicas, then leaders, onto a joining node", () => {
  const sim = roundRobinSim(3, 6, 3);
  sim.nodes.push({ id: n4, live: true, draining: false });
  const first = plan(simInput(sim));
  assert(first.moves.length > 0);
  for (const move of first.moves) {
    assert(move.kind === "moveReplica" && move.to === n4 && move.cause === "replicaBalance");
    assert.match(
      move.reason,
      /^shard \d+: replica moved from n\d to n4 to balance replicas: n\d held 6, n4 held [01], mean 4\.5$/,
    );
  }
  assert.equal(first.moves.length, SIM_LIMITS.movesPerNodeMax);
  runUntilQuiet(sim, 30);
  assertConverged(sim);
  const { replicas, leaders } = counts(sim);
  assert.equal(replicas.get(n4), 4);
  assert(leaders.get(n4)! >= 1);
  const moved = sim.history.filter((move) => move.kind === "moveReplica").length;
  assert.equal(moved, 4, "exactly the 4 replicas the new node needs");
});

Deno.test("planMoves() waits out a dead node's grace, then replaces its replicas", () => {
  const nodes = [n1, n2, n3, n4].map((id) => ({ id, live: id !== n2, deadSinceMs: NOW - 10_000 }));
  const shards = [shard(1, ["n1", "n2", "n3"]), shard(2, ["n2", "n3", "n4"], { leader: n3 })];
  const early = plan(input({ nodes, shards }));
  assert.deepEqual(early.moves, []);
  assert(
    early.notes.includes(
      "n2 has been down 10 s: its 2 replicas are replaced once it has been down 25 s",
    ),
  );

  const late = plan(input({ nodes, shards, nowMs: NOW + 20_000 }));
  assert.deepEqual(late.moves.map((m) => [m.kind, m.shardId, "from" in m && m.from, m.cause]), [
    ["moveReplica", 1, "n2", "deadNode"],
    ["moveReplica", 2, "n2", "deadNode"],
  ]);
  assert.equal(
    late.moves[0].reason,
    "shard 1: replica added on n4 and removed from n2 because n2 died 30 s ago " +
      "(n4 held 1 replicas, the fewest of 1 candidates)",
  );
  assert.equal(late.moves[1].kind === "moveReplica" && late.moves[1].to, n1);
});

Deno.test("planMoves() replaces a voter on a node that is not registered at once", () => {
  const result = plan(
    input({
      shards: [shard(1, ["n1", "n2", "n9"])],
      nodes: [n1, n2, n3].map((id) => ({ id, live: true })),
    }),
  );
  assert.equal(result.moves.length, 1);
  assert.match(result.moves[0].reason, /because n9 is not a registered node/);
});

Deno.test("planMoves() drains a node of its replicas and leaders", () => {
  const sim = roundRobinSim(4, 8, 3);
  sim.nodes[0].draining = true;
  const first = plan(simInput(sim));
  assert(
    first.moves.every((move) => move.cause === "draining" && "from" in move && move.from === n1),
  );
  assert.match(first.moves[0].reason, /because n1 is draining/);
  runUntilQuiet(sim, 40);
  assertConverged(sim);
  assert(sim.shards.every((s) => !s.voters.includes(n1)));
});

Deno.test("planMoves() moves leadership off a draining node that must keep its replica", () => {
  const result = plan(input({
    nodes: [{ id: n1, live: true, draining: true }, { id: n2, live: true }, { id: n3, live: true }],
    shards: [shard(1, ["n1", "n2", "n3"])],
  }));
  assert.equal(result.moves.length, 1);
  assert.deepEqual({ ...result.moves[0], reason: "" }, {
    kind: "transferLeader",
    shardId: 1,
    from: n1,
    to: n2,
    cause: "draining",
    reason: "",
  });
});

Deno.test("planMoves() moves a draining node's leadership to a held node only as a last resort", () => {
  // n2 leads fewest because an operator is emptying it of leaders: a drain of n1 picks n3.
  const held = { id: n2, live: true, leadersMovedAwayMs: NOW - 1000 };
  const result = plan(input({
    nodes: [{ id: n1, live: true, draining: true }, held, { id: n3, live: true }],
    shards: [shard(1, ["n1", "n2", "n3"]), shard(2, ["n3", "n1", "n2"])],
  }));
  assert.deepEqual(
    result.moves.filter((m) => m.kind === "transferLeader").map((m) =>
      m.kind === "transferLeader" && m.to
    ),
    [n3],
  );
  // With only the held node eligible besides, it still takes the leadership.
  const only = plan(input({
    nodes: [{ id: n1, live: true, draining: true }, held, { id: n3, live: false }],
    shards: [shard(1, ["n1", "n2", "n3"])],
  }));
  assert.deepEqual(only.moves.map((m) => m.kind === "transferLeader" && m.to), [n2]);
});

Deno.test("planMoves() fixes leader imbalance alone with transfers only", () => {
  const shards = [0, 1, 2, 3, 4, 5].map((i) => shard(i, ["n1", "n2", "n3"]));
  const result = plan(input({ shards }));
  assert.deepEqual(
    result.moves.map((move) => move.kind),
    Array(SIM_LIMITS.movesPerNodeMax).fill("transferLeader"),
  );
  assert.equal(
    result.moves[0].reason,
    "leader of shard 0 moved from n1 to n2: n1 led 6 shards, n2 led 0, mean 2.0",
  );
  const sim = roundRobinSim(3, 6, 3);
  for (const s of sim.shards) s.leader = n1;
  runUntilQuiet(sim, 20);
  assertConverged(sim);
  assert(sim.history.every((move) => move.kind === "transferLeader"));
});

Deno.test("planMoves() gives no leadership to a node an operator is emptying of leaders", () => {
  // An operator moved n1's leaderships to n2 and n3 (a restart is coming): balancing must not
  // hand n1 other shards' leaderships for the cooldown, then may again.
  const shards = [0, 1, 2, 3, 4, 5].map((i) =>
    shard(i, i % 2 === 0 ? ["n2", "n1", "n3"] : ["n3", "n1", "n2"])
  );
  const movedAway = NOW - 1000;
  const nodes = [
    { id: n1, live: true, leadersMovedAwayMs: movedAway },
    { id: n2, live: true },
    { id: n3, live: true },
  ];
  assert.deepEqual(plan(input({ nodes, shards })).moves, []);
  const later = plan(input({ nodes, shards, nowMs: movedAway + SIM_LIMITS.shardCooldownMs }));
  assert.ok(later.moves.length > 0, "after the cooldown, leaders come back");
  assert.ok(later.moves.every((m) => m.kind === "transferLeader" && m.to === n1));
  // Without the hold, the same cluster balances at once.
  const unheld = plan(input({ shards }));
  assert.ok(unheld.moves.some((m) => m.kind === "transferLeader" && m.to === n1));
  // A held node still hands its own leaderships on, and the others still balance among
  // themselves: n2 leads 4, n3 none, n1 (held) none.
  const lopsided = [0, 1, 2, 3].map((i) => shard(i, ["n2", "n1", "n3"]));
  const among = plan(input({ nodes, shards: lopsided }));
  assert.ok(among.moves.length > 0);
  assert.ok(
    among.moves.every((m) => m.kind === "transferLeader" && m.to === n3),
    JSON.stringify(among.moves),
  );
});

Deno.test("planMoves() balances leaders through a chain of transfers", () => {
  // Replicas are balanced (3, 3, 2, 2). n1 leads two shards whose other voter is n2; only n2
  // shares a shard with n3, which leads none.
  const chainInput = input({
    replicaCount: 2,
    nodes: [n1, n2, n3, n4].map((id) => ({ id, live: true })),
    shards: [
      shard(1, ["n1", "n2"]),
      shard(2, ["n1", "n2"]),
      shard(3, ["n2", "n3"]),
      shard(4, ["n4", "n3"]),
      shard(5, ["n4", "n1"]),
    ],
  });
  const result = plan(chainInput);
  assert.deepEqual(
    result.moves.map((m) => [m.kind, m.shardId, "from" in m && m.from, "to" in m && m.to]),
    [
      ["transferLeader", 1, "n1", "n2"],
      ["transferLeader", 3, "n2", "n3"],
    ],
  );
  assert.match(result.moves[1].reason, /hop 2 of 2 moving one leadership from n1 to n3/);

  // With one move per node, n2 cannot both receive and hand on: only the tail hop goes now.
  const tight = plan({ ...chainInput, limits: { ...SIM_LIMITS, movesPerNodeMax: 1 } });
  assert.deepEqual(tight.moves.map((m) => [m.kind, m.shardId]), [["transferLeader", 3]]);
  assert.match(tight.moves[0].reason, /hop 2 of 2 .* \(hop 1 waits for the move budget\)/);
});

Deno.test("planMoves() leaves a shard without a live majority to an operator", () => {
  const nodes = [n1, n2, n3, n4].map((id) => ({ id, live: id === n1 || id === n4 }));
  const result = plan(input({ nodes, shards: [shard(3, ["n1", "n2", "n3"])] }));
  assert.deepEqual(result.moves, []);
  assert(
    result.notes.includes(
      "shard 3 is unavailable, needs operator: 1 of 3 voters live (n1); no move planned",
    ),
  );
});

Deno.test("planMoves() replaces one dead voter of three: add first, then remove", () => {
  const nodes = [n1, n2, n3, n4].map((id) => ({ id, live: id !== n3 }));
  const result = plan(input({ nodes, shards: [shard(1, ["n1", "n2", "n3"])] }));
  assert.equal(result.moves.length, 1);
  const [move] = result.moves;
  assert(move.kind === "moveReplica" && move.from === n3 && move.to === n4);
  assert.deepEqual(moveSteps(move, n1).map((step) => step.kind), [
    "addLearner",
    "promoteLearner",
    "removeMember",
  ]);
});

Deno.test("planMoves() removes an extra voter, a down one first", () => {
  const nodes = [n1, n2, n3, n4].map((id) => ({ id, live: id !== n4, deadSinceMs: NOW }));
  const result = plan(input({ nodes, shards: [shard(1, ["n1", "n2", "n3", "n4"])] }));
  assert.equal(result.moves.length, 1);
  assert.deepEqual([result.moves[0].kind, "from" in result.moves[0] && result.moves[0].from], [
    "removeReplica",
    n4,
  ]);
  assert.match(result.moves[0].reason, /has 4 voters for 3 wanted \(n4 is down\)/);
});

Deno.test("planMoves() adds a voter to an under-replicated shard and removes stale learners", () => {
  const result = plan(input({
    nodes: [n1, n2, n3, n4].map((id) => ({ id, live: true })),
    shards: [shard(1, ["n1", "n2"]), shard(2, ["n1", "n2", "n3"], { learners: [n4] })],
  }));
  assert.deepEqual(result.moves.map((m) => [m.kind, m.shardId, m.cause]), [
    ["addReplica", 1, "underReplicated"],
    ["removeReplica", 2, "staleLearner"],
  ]);
  assert.match(
    result.moves[0].reason,
    /^shard 1: replica added on n\d because the shard has 2 of 3 voters/,
  );
});

Deno.test("planMoves() plans nothing on a shard with a move in flight, and counts it", () => {
  const sim = roundRobinSim(3, 6, 3);
  sim.nodes.push({ id: n4, live: true, draining: false });
  const base = simInput(sim);
  const withFlight = {
    ...base,
    shards: base.shards.map((s) => s.id === 0 ? { ...s, learners: [n4] } : s),
    movesInFlight: [{ kind: "moveReplica" as const, shardId: shardId(0), from: n1, to: n4 }],
  };
  const result = plan(withFlight);
  assert(result.moves.every((move) => move.shardId !== 0));
  assert.equal(result.moves.length, SIM_LIMITS.movesPerNodeMax - 1);
});

Deno.test("planMoves() respects the cooldown when rebalancing, not when repairing", () => {
  const sim = roundRobinSim(3, 6, 3);
  sim.nodes.push({ id: n4, live: true, draining: false });
  for (const s of sim.shards) s.lastMoveMs = sim.nowMs - 1000;
  assert.deepEqual(plan(simInput(sim)).moves, []);
  sim.nodes[1].live = false;
  const repair = plan(simInput(sim));
  assert(repair.moves.length > 0 && repair.moves.every((move) => move.cause === "deadNode"));
});

Deno.test("planMoves() keeps within the snapshot bytes budget, but lets one big move through", () => {
  const sim = roundRobinSim(3, 6, 3);
  sim.nodes.push({ id: n4, live: true, draining: false }, { id: n5, live: true, draining: false });
  for (const s of sim.shards) s.sizeBytes = 600;
  const limits = { ...SIM_LIMITS, snapshotBytesInFlightMax: 1000 };
  assert.equal(plan({ ...simInput(sim), limits }).moves.length, 1);
  const small = { ...SIM_LIMITS, snapshotBytesInFlightMax: 100 };
  assert.equal(plan({ ...simInput(sim), limits: small }).moves.length, 1);
  const wide = { ...SIM_LIMITS, snapshotBytesInFlightMax: 1200 };
  assert.equal(plan({ ...simInput(sim), limits: wide }).moves.length, 2);
});

Deno.test("planMoves() rejects broken input with an AssertionError", () => {
  assert.throws(() => planMoves(input({ replicaCount: 0 })), AssertionError);
  assert.throws(
    () => planMoves(input({ limits: { ...SIM_LIMITS, movesPerNodeMax: 0 } })),
    AssertionError,
  );
  assert.throws(() => planMoves(input({ shards: [shard(1, ["n1", "n1"])] })), AssertionError);
  assert.throws(() => planMoves(input({ shards: [shard(1, [])] })), AssertionError);
});

Deno.test("moveSteps() adds before it removes, and moves leadership off a leaving leader", () => {
  const s = shardId(1);
  assert.deepEqual(moveSteps({ kind: "addReplica", shardId: s, to: n4 }), [
    { kind: "addLearner", node: n4 },
    { kind: "promoteLearner", node: n4 },
  ]);
  assert.deepEqual(moveSteps({ kind: "removeReplica", shardId: s, from: n1 }, n1), [
    { kind: "transferLeader", from: n1 },
    { kind: "removeMember", node: n1 },
  ]);
  assert.deepEqual(moveSteps({ kind: "moveReplica", shardId: s, from: n1, to: n4 }, n2), [
    { kind: "addLearner", node: n4 },
    { kind: "promoteLearner", node: n4 },
    { kind: "removeMember", node: n1 },
  ]);
  assert.deepEqual(moveSteps({ kind: "transferLeader", shardId: s, from: n1, to: n2 }, n1), [
    { kind: "transferLeader", from: n1, to: n2 },
  ]);
  // An unknown kind of move is a bug: the switch is exhaustive.
  assert.throws(() => moveSteps({ kind: "splitShard", shardId: s } as never), {
    name: "AssertionError",
    message: 'Unknown move: {"kind":"splitShard","shardId":1}',
  });
  assert.throws(() => moveSteps({ kind: "splitShard" } as never), AssertionError);
});

Deno.test("hasLiveMajority() needs more than half of the voters live", () => {
  const live = (...ids: string[]) => (node: string) => ids.includes(node);
  const cases: [string[], string[], boolean][] = [
    [["n1"], ["n1"], true],
    [["n1"], [], false],
    [["n1", "n2"], ["n1"], false],
    [["n1", "n2", "n3"], ["n1", "n2"], true],
    [["n1", "n2", "n3", "n4"], ["n1", "n2"], false],
    [["n1", "n2", "n3", "n4"], ["n1", "n2", "n3"], true],
  ];
  for (const [voters, up, expected] of cases) {
    assert.equal(hasLiveMajority(voters.map(nodeId), live(...up)), expected, `${voters} ${up}`);
  }
});
