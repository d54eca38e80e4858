// Checks that placement's status cache, fed whole and delta answers from a node's status versions
// (the kvnode's own `StatusVersions`), always hands out the node's whole status as of the answer
// it holds: deltas merged in order, answers that arrive after a newer one ignored, a delta with
// no base refused, a restarted node's answer taking the place of the old one. The last test runs
// seeded random histories with answers delivered out of order.
import assert from "node:assert/strict";
import type { NodeStatusResponse, ReplicaStatus } from "@tinykv/proto/tinykv/v1";
import { StatusVersions } from "@tinykv/kvnode";
import { mulberry32 } from "@tinykv/raft";
import { StatusCache } from "./status_cache.ts";
import { nodeStatus, replica } from "./_testing.ts";

/** A node's answer to `since`, as the kvnode's `Status` builds it. */
function answerOf(
  versions: StatusVersions,
  current: ReplicaStatus[],
  since: { sinceVersion: number; sinceStartedAtMs: number },
  startedAtMs = 5,
): NodeStatusResponse {
  const answer = versions.answer(
    current,
    since.sinceStartedAtMs === startedAtMs ? since.sinceVersion : 0,
  );
  return {
    ...nodeStatus("n1", answer.replicas),
    startedAtMs,
    statusVersion: answer.version,
    delta: answer.delta,
    removed: answer.removed,
  };
}

const ids = (status: NodeStatusResponse) =>
  status.replicas.map((r) => `${r.shardId}/${r.peerId}@${r.appliedIndex}`);

Deno.test("a delta merges into the whole status held", () => {
  const cache = new StatusCache();
  const versions = new StatusVersions();
  assert.deepEqual(cache.since("a"), { sinceVersion: 0, sinceStartedAtMs: 0 });
  const first = answerOf(versions, [
    replica({ shardId: 2, peerId: 21 }),
    replica({ shardId: 1, peerId: 11 }),
  ], cache.since("a"));
  assert.deepEqual(ids(cache.merge("a", first)!), ["1/11@10", "2/21@10"]);
  assert.deepEqual(cache.since("a"), { sinceVersion: 1, sinceStartedAtMs: 5 });
  const delta = answerOf(versions, [
    replica({ shardId: 1, peerId: 11, appliedIndex: 12 }),
    replica({ shardId: 3, peerId: 31 }),
  ], cache.since("a"));
  assert.equal(delta.delta, true);
  const whole = cache.merge("a", delta)!;
  assert.deepEqual(ids(whole), ["1/11@12", "3/31@10"]);
  assert.equal(whole.delta, false);
  assert.deepEqual(whole.removed, []);
  // Nothing changed: an empty delta, the same replicas.
  const quiet = answerOf(versions, [
    replica({ shardId: 1, peerId: 11, appliedIndex: 12 }),
    replica({ shardId: 3, peerId: 31 }),
  ], cache.since("a"));
  assert.deepEqual(quiet.replicas, []);
  assert.deepEqual(ids(cache.merge("a", { ...quiet, diskBytes: 99 })!), ["1/11@12", "3/31@10"]);
  assert.equal(cache.merge("a", quiet)!.diskBytes, 0);
});

Deno.test("an answer older than the status held is not applied", () => {
  const cache = new StatusCache();
  const versions = new StatusVersions();
  cache.merge("a", answerOf(versions, [replica({ shardId: 1, peerId: 11 })], cache.since("a")));
  const since = cache.since("a");
  const older = answerOf(versions, [replica({ shardId: 1, peerId: 11, appliedIndex: 11 })], since);
  const newer = answerOf(versions, [replica({ shardId: 1, peerId: 11, appliedIndex: 12 })], since);
  assert.deepEqual(ids(cache.merge("a", newer)!), ["1/11@12"]);
  assert.deepEqual(ids(cache.merge("a", older)!), ["1/11@12"]);
  assert.equal(cache.since("a").sinceVersion, newer.statusVersion);
});

Deno.test("a delta without a base is refused; a restarted node's whole answer replaces the old", () => {
  const cache = new StatusCache();
  const versions = new StatusVersions();
  cache.merge("a", answerOf(versions, [replica({ shardId: 1, peerId: 11 })], cache.since("a")));
  const delta = answerOf(
    versions,
    [replica({ shardId: 1, peerId: 11, appliedIndex: 13 })],
    cache.since("a"),
  );
  assert.equal(cache.merge("b", delta), undefined);
  // The same address, another process (another start time): its delta has no base here either.
  assert.equal(cache.merge("a", { ...delta, startedAtMs: 6 }), undefined);
  const restarted = answerOf(
    new StatusVersions(),
    [replica({ shardId: 2, peerId: 22 })],
    cache.since("a"),
    6,
  );
  assert.equal(restarted.delta, false);
  assert.deepEqual(ids(cache.merge("a", restarted)!), ["2/22@10"]);
  assert.deepEqual(cache.since("a"), { sinceVersion: 1, sinceStartedAtMs: 6 });
  cache.delete("a");
  assert.deepEqual(cache.since("a"), { sinceVersion: 0, sinceStartedAtMs: 0 });
});

Deno.test("random histories, answers out of order: the status handed out is the node's at its version", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const random = mulberry32(seed);
    const pick = (n: number) => Math.floor(random() * n);
    const versions = new StatusVersions(1 + pick(6));
    const cache = new StatusCache();
    let current = new Map<number, ReplicaStatus>();
    const truth = new Map<number, string[]>();
    const inFlight: NodeStatusResponse[] = [];
    const sorted = (list: Iterable<ReplicaStatus>) =>
      [...list].sort((a, b) => a.shardId - b.shardId).map((r) =>
        `${r.shardId}/${r.peerId}@${r.appliedIndex}`
      );
    for (let step = 0; step < 60; step++) {
      const next = new Map(current);
      for (let change = pick(4); change > 0; change--) {
        const shard = 1 + pick(8);
        if (next.has(shard) && random() < 0.3) next.delete(shard);
        else {next.set(
            shard,
            replica({ shardId: shard, peerId: shard * 10, appliedIndex: pick(5) }),
          );}
      }
      current = next;
      if (random() < 0.7) {
        const answer = answerOf(versions, [...current.values()], cache.since("a"));
        truth.set(answer.statusVersion, sorted(current.values()));
        inFlight.push(answer);
      }
      while (inFlight.length > 0 && random() < 0.5) {
        const [answer] = inFlight.splice(pick(inFlight.length), 1);
        const whole = cache.merge("a", answer);
        if (whole === undefined) continue; // Only a delta older than a dropped base: never here.
        assert.deepEqual(ids(whole), truth.get(whole.statusVersion), `seed ${seed} step ${step}`);
      }
    }
  }
});
