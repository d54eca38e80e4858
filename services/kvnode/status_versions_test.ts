// Checks status deltas on the kvnode's side: the first answer and any answer without a usable
// version hold every replica; later ones hold exactly the replicas that changed, appeared or went
// since the version asked for; the version moves only when something changed; a caller further
// behind than the removals kept, or ahead of the node, gets every replica.
import assert from "node:assert/strict";
import type { ReplicaStatus } from "@tinykv/proto/tinykv/v1";
import { sameStatus, StatusVersions } from "./status_versions.ts";

function status(shardId: number, peerId: number, appliedIndex = 10): ReplicaStatus {
  return {
    shardId,
    peerId,
    role: 1,
    term: 1,
    commitIndex: appliedIndex,
    appliedIndex,
    confEpoch: 1,
    voters: [{ peerId, nodeId: "n1", address: "a1" }],
    learners: [],
    leaderPeerId: 0,
    rangeLo: 0,
    rangeHi: 2 ** 32,
    logEntries: 0,
    logBytes: 0,
    dataKeys: 0,
    dataBytes: 0,
    dataHash: "",
    progress: [],
    proposals: 0,
    reads: 0,
  };
}

const ids = (list: readonly ReplicaStatus[]) => list.map((s) => `${s.shardId}/${s.peerId}`);

Deno.test("the first answer holds every replica and starts the versions", () => {
  const versions = new StatusVersions();
  const first = versions.answer([status(1, 11), status(2, 21)], 0);
  assert.equal(first.delta, false);
  assert.equal(first.version, 1);
  assert.deepEqual(ids(first.replicas), ["1/11", "2/21"]);
});

Deno.test("an answer since the current version is an empty delta, and the version stays", () => {
  const versions = new StatusVersions();
  const first = versions.answer([status(1, 11), status(2, 21)], 0);
  // Equal values in new objects are no change.
  const again = versions.answer([status(1, 11), status(2, 21)], first.version);
  assert.deepEqual(again, { version: first.version, delta: true, replicas: [], removed: [] });
});

Deno.test("a delta holds the replicas changed, added and removed since the version asked for", () => {
  const versions = new StatusVersions();
  const v1 = versions.answer([status(1, 11), status(2, 21), status(3, 31)], 0).version;
  const v2 = versions.answer([status(1, 11, 12), status(2, 21), status(3, 31)], v1).version;
  assert.equal(v2, v1 + 1);
  const third = versions.answer([status(1, 11, 12), status(2, 21), status(4, 41)], v2);
  assert.equal(third.version, v2 + 1);
  assert.deepEqual(ids(third.replicas), ["4/41"]);
  assert.deepEqual(third.removed, [{ shardId: 3, peerId: 31 }]);
  // From further back: both steps.
  const fromV1 = versions.answer([status(1, 11, 12), status(2, 21), status(4, 41)], v1);
  assert.equal(fromV1.version, third.version);
  assert.deepEqual(ids(fromV1.replicas), ["1/11", "4/41"]);
  assert.equal(fromV1.replicas[0].appliedIndex, 12);
  assert.deepEqual(fromV1.removed, [{ shardId: 3, peerId: 31 }]);
});

Deno.test("a replica removed and created again shows among the removals and the replicas", () => {
  const versions = new StatusVersions();
  const v1 = versions.answer([status(1, 11)], 0).version;
  versions.answer([], v1);
  const back = versions.answer([status(1, 11, 1)], v1);
  assert.deepEqual(back.removed, [{ shardId: 1, peerId: 11 }]);
  assert.deepEqual(ids(back.replicas), ["1/11"]);
  assert.equal(back.replicas[0].appliedIndex, 1);
});

Deno.test("a version the node never handed out gets every replica", () => {
  const versions = new StatusVersions();
  const v1 = versions.answer([status(1, 11), status(2, 21)], 0).version;
  const ahead = versions.answer([status(1, 11), status(2, 21)], v1 + 5);
  assert.equal(ahead.delta, false);
  assert.deepEqual(ids(ahead.replicas), ["1/11", "2/21"]);
});

Deno.test("a caller behind the removals kept gets every replica", () => {
  const versions = new StatusVersions(2);
  const v1 = versions.answer([status(1, 11), status(2, 21), status(3, 31), status(4, 41)], 0)
    .version;
  const v2 = versions.answer([status(2, 21), status(3, 31), status(4, 41)], v1).version;
  const v3 = versions.answer([status(3, 31), status(4, 41)], v2).version;
  // Two removals kept: both versions still answer deltas.
  assert.equal(versions.answer([status(3, 31), status(4, 41)], v1).delta, true);
  const v4 = versions.answer([status(4, 41)], v3).version;
  // The removal at v2 is forgotten: a caller at v1 would miss it.
  const behind = versions.answer([status(4, 41)], v1);
  assert.equal(behind.delta, false);
  assert.deepEqual(ids(behind.replicas), ["4/41"]);
  const recent = versions.answer([status(4, 41)], v2);
  assert.equal(recent.delta, true);
  assert.deepEqual(recent.removed, [{ shardId: 2, peerId: 21 }, { shardId: 3, peerId: 31 }]);
  assert.equal(recent.version, v4);
});

Deno.test("statuses compare by value, nested lists included", () => {
  const a = status(1, 11);
  assert.equal(sameStatus(a, status(1, 11)), true);
  assert.equal(
    sameStatus(a, { ...status(1, 11), progress: [{ peerId: 1, matchIndex: 3 }] }),
    false,
  );
  assert.equal(
    sameStatus(a, { ...status(1, 11), voters: [{ peerId: 11, nodeId: "n2", address: "a1" }] }),
    false,
  );
  assert.equal(sameStatus(a, { ...status(1, 11), reads: 1 }), false);
});
