// Checks the pure cluster model: views from kvnode statuses, downtime tracking, the planner's
// input, and the shard map to publish with its change classification.
import assert from "node:assert/strict";
import { PLANNER_LIMITS_DEFAULT } from "@tinykv/shard";
import {
  mapChange,
  maxPeerId,
  plannerInput,
  shardMapOf,
  shardViews,
  trackDowntime,
} from "./cluster_model.ts";
import { nodeStatus, peer, replica } from "./_testing.ts";

const voters = [peer("n1", 11), peer("n2", 12), peer("n3", 13)];

Deno.test("shardViews() takes the configuration from the leader with the highest term", () => {
  const statuses = [
    nodeStatus("n1", [replica({ shardId: 1, peerId: 11, role: 4, term: 2, voters, confEpoch: 3 })]),
    nodeStatus("n2", [
      replica({
        shardId: 1,
        peerId: 12,
        role: 4,
        term: 5,
        voters,
        learners: [peer("n4", 20)],
        confEpoch: 4,
        commitIndex: 77,
        progress: [{ peerId: 20, matchIndex: 70 }],
      }),
    ]),
    nodeStatus("n4", [replica({ shardId: 1, peerId: 20, role: 5, voters, confEpoch: 4 })]),
  ];
  const views = shardViews(statuses, undefined);
  const view = views.get(1)!;
  assert.equal(view.leader?.nodeId, "n2");
  assert.equal(view.confEpoch, 4);
  assert.equal(view.commitIndex, 77);
  assert.deepEqual(view.learners.map((m) => m.nodeId), ["n4"]);
  assert.equal(view.progress.get(20), 70);
  assert.equal(view.hosted.get("n4")?.peerId, 20);
  assert.equal(maxPeerId(statuses), 20);
});

Deno.test("shardViews() keeps a shard no status mentions from the map", () => {
  const map = shardMapOf(
    shardViews([nodeStatus("n1", [replica({ shardId: 3, peerId: 11, voters })])], undefined),
    { version: 7 },
  );
  const views = shardViews([], map);
  assert.deepEqual(views.get(3)?.voters.map((m) => m.nodeId), ["n1", "n2", "n3"]);
  assert.equal(views.get(3)?.leader, undefined);
});

Deno.test("trackDowntime() keeps first absence times and forgets nodes that came back", () => {
  const first = trackDowntime(new Map(), new Set(["n1"]), new Set(["n1", "n2", "n3"]), 100);
  assert.deepEqual([...first], [["n2", 100], ["n3", 100]]);
  const second = trackDowntime(first, new Set(["n1", "n3"]), new Set(["n1", "n2", "n3"]), 500);
  assert.deepEqual([...second], [["n2", 100]]);
});

Deno.test("plannerInput() marks registered nodes live and absent members down since they left, and when an operator moved leaders away", () => {
  const views = shardViews(
    [nodeStatus("n1", [replica({ shardId: 1, peerId: 11, role: 4, voters })])],
    undefined,
  );
  const input = plannerInput(views, {
    registered: [{ id: "n1", address: "a1" }, { id: "n2", address: "a2" }, {
      id: "n4",
      address: "a4",
    }],
    downSinceMs: new Map([["n3", 42]]),
    draining: new Set(["n2"]),
    movesInFlight: [],
    lastMoveMs: new Map([[1, 9]]),
    leadersMovedAwayMs: new Map([["n2", 700]]),
    replicaCount: 3,
    limits: PLANNER_LIMITS_DEFAULT,
    nowMs: 1000,
  });
  assert.deepEqual(input.nodes, [
    { id: "n1", live: true, draining: false },
    { id: "n2", live: true, draining: true, leadersMovedAwayMs: 700 },
    { id: "n4", live: true, draining: false },
    { id: "n3", live: false, deadSinceMs: 42 },
  ]);
  assert.deepEqual(input.shards[0].voters, ["n1", "n2", "n3"]);
  assert.equal(input.shards[0].leader, "n1");
  assert.equal(input.shards[0].lastMoveMs, 9);
});

Deno.test("mapChange() tells member changes from leader-hint-only changes", () => {
  const led = (leader: number) =>
    shardMapOf(
      shardViews([
        nodeStatus(`n${leader}`, [
          replica({ shardId: 1, peerId: 10 + leader, role: 4, voters, confEpoch: 2 }),
        ]),
      ], undefined),
      { version: 1 },
    );
  assert.equal(mapChange(undefined, led(1)), "members");
  assert.equal(mapChange(led(1), { ...led(1), version: 2 }), "none");
  assert.equal(mapChange(led(1), led(2)), "leaders");
  const moreEpoch = { ...led(1), shards: [{ ...led(1).shards[0], confEpoch: 3 }] };
  assert.equal(mapChange(led(1), moreEpoch), "members");
  assert.equal(led(1).shards[0].leaderHint, "n1");
});
