import assert from "node:assert/strict";
import type { GatewayInfo } from "@tinykv/client";
import { LATENCY_BUCKETS_SECONDS, newRegistry } from "@tinykv/metrics";
import type { NodeStatusResponse } from "@tinykv/proto/tinykv/v1";
import { Counter, Histogram } from "prom-client";
import { nodeStatus, peer, replica, view } from "../_testing.ts";
import type { Decision } from "../decisions.ts";
import type { ClusterSnapshot } from "../leader.ts";
import {
  DASHBOARD_INTERVAL_MS,
  DashboardCollector,
  type DashboardSources,
  type DashboardUpdate,
  DETAIL_LINGER_MS,
  HISTORY_MS,
  STATUS_STALE_ROUNDS,
} from "./collector.ts";
import { LATENCY_METRIC, REQUESTS_METRIC } from "./gateway_stats.ts";
import { nodeId, shardId } from "@tinykv/shard";
import { newTask } from "../task.ts";

/** A gateway's metrics, under the gateway's names. */
function gatewayMetrics() {
  const registry = newRegistry();
  const requests = new Counter({
    name: REQUESTS_METRIC,
    help: "h",
    labelNames: ["method", "code"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: LATENCY_METRIC,
    help: "h",
    labelNames: ["method"] as const,
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  return {
    registry,
    call(method: string, seconds: number, times = 1) {
      for (let i = 0; i < times; i++) {
        requests.inc({ method, code: "OK" });
        latency.observe({ method }, seconds);
      }
    },
  };
}

function snapshotOf(): ClusterSnapshot {
  const shard1 = view();
  const shard2 = view({
    id: shardId(2),
    leader: peer("n2", 5),
    voters: [peer("n1", 4), peer("n2", 5), peer("n3", 6)],
  });
  return {
    atMs: 0,
    bootstrapped: true,
    mapVersion: 3,
    registered: ["n1", "n2", "n3"].map((id) => ({ id, address: `addr-${id}` })),
    downSinceMs: new Map([["n4", 500]]),
    draining: new Set(["n3"]),
    views: new Map([[1, shard1], [2, shard2]]),
    tasks: [],
    notes: ["a note"],
  };
}

/** Sources over fakes, with a clock the test moves. */
function fakeSources() {
  const state = {
    nowMs: 1_000_000,
    snapshot: snapshotOf() as ClusterSnapshot | undefined,
    gateways: [] as GatewayInfo[],
    metrics: new Map<string, ReturnType<typeof gatewayMetrics>>(),
    statuses: new Map<string, NodeStatusResponse>(),
    statusCalls: 0,
    decisions: [] as Decision[],
    warnings: [] as string[],
  };
  const sources: DashboardSources = {
    snapshot: () => state.snapshot,
    leaderAddress: () => Promise.resolve("127.0.0.1:9999"),
    decisions: () => state.decisions,
    gateways: () => state.gateways,
    nodeStatus: (address) => {
      state.statusCalls++;
      return Promise.resolve(state.statuses.get(address));
    },
    scrape: async (address) => await state.metrics.get(address)?.registry.metrics(),
    now: () => state.nowMs,
    warn: (message) => state.warnings.push(message),
  };
  return { state, sources };
}

Deno.test("the collector's view: nodes, shards, leaders per node, and no detail unless watched", async () => {
  const { state, sources } = fakeSources();
  const collector = new DashboardCollector(sources);
  await collector.collect();
  const { view: first, history } = collector.current();
  assert.equal(state.statusCalls, 0, "nobody watched yet: no status pulled");
  assert.equal(first?.detail, false);
  assert.deepEqual(first?.placement, {
    isLeader: true,
    leaderAddress: "",
    bootstrapped: true,
    mapVersion: 3,
    notes: ["a note"],
  });
  assert.deepEqual(first?.nodes.map((n) => [n.id, n.state, n.replicas, n.leaders]), [
    ["n1", "live", 2, 1],
    ["n2", "live", 2, 1],
    ["n3", "draining", 2, 0],
    ["n4", "down", 0, 0],
  ]);
  assert.equal(first?.nodes[3].downSinceMs, 500);
  assert.deepEqual(first?.shards.map((s) => [s.id, s.leader, s.term, s.requests]), [
    [1, "n1", null, null],
    [2, "n2", null, null],
  ]);
  assert.deepEqual(history.map((s) => s.leaders), [{ n1: 1, n2: 1 }]);
  // current() asked: the next rounds pull statuses, for DETAIL_LINGER_MS.
  state.statuses.set(
    "addr-n1",
    {
      ...nodeStatus("n1", [
        replica({ shardId: 1, role: 4, term: 7, appliedIndex: 50, proposals: 10, reads: 5 }),
      ]),
      diskBytes: 4096,
    },
  );
  await collector.collect();
  const second = collector.current().view!;
  assert.equal(second.detail, true);
  assert.equal(state.statusCalls, 3);
  assert.equal(second.nodes[0].diskBytes, 4096);
  assert.deepEqual(second.shards.map((s) => [s.term, s.applied, s.requests, s.rps]), [
    [7, 50, 15, null],
    [null, null, null, null],
  ]);
  // A second later the leader took 20 more requests.
  state.nowMs += 1000;
  state.statuses.set(
    "addr-n1",
    nodeStatus("n1", [replica({ shardId: 1, role: 4, term: 7, proposals: 20, reads: 15 })]),
  );
  await collector.collect();
  assert.deepEqual(collector.current().view!.shards[0].rps, 20);
  state.nowMs += DETAIL_LINGER_MS + 1;
  const calls = state.statusCalls;
  await collector.collect();
  assert.equal(state.statusCalls, calls, "the linger passed: no more pulls");
});

Deno.test("a kvnode that stops answering keeps its last status a few rounds, then shows unknown", async () => {
  const { state, sources } = fakeSources();
  const collector = new DashboardCollector(sources);
  collector.current();
  state.statuses.set("addr-n1", nodeStatus("n1", [replica({ shardId: 1, role: 4, term: 3 })]));
  await collector.collect();
  assert.equal(collector.current().view!.shards[0].term, 3);
  state.statuses.delete("addr-n1");
  for (let round = 1; round <= STATUS_STALE_ROUNDS; round++) {
    state.nowMs += DASHBOARD_INTERVAL_MS;
    await collector.collect();
    assert.equal(collector.current().view!.shards[0].term, 3, `round ${round} after`);
  }
  state.nowMs += DASHBOARD_INTERVAL_MS;
  await collector.collect();
  assert.equal(collector.current().view!.shards[0].term, null);
});

Deno.test("the collector totals the gateways: rates and p99 by method between scrapes", async () => {
  const { state, sources } = fakeSources();
  const a = gatewayMetrics();
  const b = gatewayMetrics();
  state.metrics.set("a:1", a);
  state.metrics.set("b:1", b);
  state.gateways = [
    { address: "a:0", metricsAddress: "a:1", startedAtMs: 0 },
    { address: "b:0", metricsAddress: "b:1", startedAtMs: 0 },
    { address: "c:0", metricsAddress: "", startedAtMs: 0 },
  ];
  const collector = new DashboardCollector(sources);
  const updates: DashboardUpdate[] = [];
  const unwatch = collector.watch((update) => updates.push(update));
  a.call("Get", 0.001, 10);
  await collector.collect();
  assert.equal(updates[0].view.totals.requests, 10);
  assert.equal(updates[0].view.totals.rps, null, "one scrape: no rate yet");
  state.nowMs += 2000;
  a.call("Get", 0.001, 100);
  b.call("Put", 0.004, 50);
  await collector.collect();
  const { view: second, sample } = updates[1];
  assert.equal(second.totals.requests, 160);
  assert.deepEqual(sample.rps, { Get: 50, Put: 25 });
  assert.ok(sample.p99Ms.Get > 0.5 && sample.p99Ms.Get <= 1, `Get p99 ${sample.p99Ms.Get} ms`);
  assert.ok(sample.p99Ms.Put > 2.5 && sample.p99Ms.Put <= 5, `Put p99 ${sample.p99Ms.Put} ms`);
  assert.deepEqual(second.gateways.map((g) => [g.address, g.up, g.requests, g.rps]), [
    ["a:0", true, 110, 50],
    ["b:0", true, 50, 25],
    ["c:0", false, null, null],
  ]);
  unwatch();
  // History keeps ten minutes.
  for (let i = 0; i < 5; i++) {
    state.nowMs += HISTORY_MS / 4;
    await collector.collect();
  }
  const { history } = collector.current();
  assert.ok(history.length <= 5 && history.length >= 4, `${history.length} samples kept`);
  assert.ok(history[0].atMs >= state.nowMs - HISTORY_MS);
});

Deno.test("a move in flight shows its step and how far its new replica caught up", async () => {
  const { state, sources } = fakeSources();
  const move = newTask(
    { kind: "moveReplica", shardId: shardId(1), from: nodeId("n3"), to: nodeId("n4") },
    { cause: "operator", reason: "asked", leader: "n1", nowMs: 5 },
  );
  const base = snapshotOf();
  const learner = peer("n4", 9);
  state.snapshot = {
    ...base,
    tasks: [{ ...move, stepIndex: 1, newPeerId: 9 }],
    views: new Map([
      ...base.views,
      [1, view({ learners: [learner], progress: new Map([[1, 100], [9, 40]]) })],
    ]),
  };
  const collector = new DashboardCollector(sources);
  await collector.collect();
  const [shown] = collector.current().view!.moves;
  assert.deepEqual(shown, {
    shardId: 1,
    kind: "moveReplica",
    from: "n3",
    to: "n4",
    cause: "operator",
    reason: "asked",
    step: move.steps[1].kind,
    stepIndex: 1,
    steps: move.steps.length,
    startedAtMs: 5,
    lastError: "",
    catchUp: { match: 40, commit: 100 },
  });
  assert.deepEqual(collector.current().view!.shards[0].learners, ["n4"]);
  // Before the new replica has a peer id, nothing to say.
  state.snapshot = { ...base, tasks: [move] };
  await collector.collect();
  assert.equal(collector.current().view!.moves[0].catchUp, null);
});

Deno.test("a follower's view names the leader; a failing source is a warning, not a stop", async () => {
  const { state, sources } = fakeSources();
  const collector = new DashboardCollector({
    ...sources,
    decisions: () => {
      throw new Error("broken source");
    },
  });
  await collector.collect();
  assert.equal(collector.current().view, undefined);
  assert.deepEqual(state.warnings, ["The dashboard's round failed"]);
  state.snapshot = undefined;
  const follower = new DashboardCollector(sources);
  state.decisions = [{ atMs: 1, event: "leader", reason: "from when it led" }];
  await follower.collect();
  assert.equal(follower.current().view?.placement.leaderAddress, "", "unwatched: not asked");
  // current() counts as watching: the next round asks where the leader is.
  await follower.collect();
  const { view: seen } = follower.current();
  assert.equal(seen?.placement.isLeader, false);
  assert.equal(seen?.placement.leaderAddress, "127.0.0.1:9999");
  assert.deepEqual(seen?.shards, []);
  assert.deepEqual(seen?.decisions, [], "its own old decisions are not the cluster's");
});

Deno.test("stopping the collector ends its watchers' streams", async () => {
  const { sources } = fakeSources();
  const collector = new DashboardCollector(sources, { intervalMs: 10 });
  let ended = 0;
  collector.onStop(() => ended++);
  collector.start();
  await new Promise((resolve) => setTimeout(resolve, 50));
  await collector.stop();
  assert.equal(ended, 1);
  collector.onStop(() => ended++);
  assert.equal(ended, 2, "after the stop, at once");
});

Deno.test("unwatched, the collector gathers at the coarse step; a page that opens gets a round at once", async () => {
  const { state, sources } = fakeSources();
  // The unwatched step is far longer than the test: a round before it is the page's doing.
  const collector = new DashboardCollector(sources, {
    intervalMs: 5,
    unwatchedIntervalMs: 600_000,
  });
  const rounds: number[] = [];
  const realCollect = collector.collect.bind(collector);
  collector.collect = () => (rounds.push(state.nowMs), realCollect());
  collector.start();
  try {
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(rounds.length, 1, "the first round, then the unwatched step");
    const updates: DashboardUpdate[] = [];
    const firstUpdate = Promise.withResolvers<void>();
    const unwatch = collector.watch((update) => {
      updates.push(update);
      if (updates.length === 3) firstUpdate.resolve();
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      firstUpdate.promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no rounds for the page")), 10_000);
      }),
    ]);
    clearTimeout(timer);
    assert.ok(rounds.length >= 4, "a round at once, then every watched step");
    unwatch();
    // The linger still counts as watching; past it the rounds slow down again.
    state.nowMs += DETAIL_LINGER_MS + 1;
    await new Promise((resolve) => setTimeout(resolve, 30));
    const settled = rounds.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(rounds.length, settled, "no round within the unwatched step");
  } finally {
    await collector.stop();
  }
});
