// Checks that placement's status cache, fed whole and delta answers from a node's status versions
// (the kvnode's own `StatusVersions`), always hands out the node's whole status as of the answer
// it holds: deltas merged in order, answers that arrive after a newer one ignored, a delta with
// no base (or a base newer than the status held) refused, a restarted node's answer taking the
// place of the old one. The last test runs seeded random histories with answers delivered out of
// order and the entry dropped now and then.
import assert from "node:assert/strict";
import type { NodeStatusResponse, ReplicaStatus } from "@tinykv/proto/tinykv/v1";
import { StatusVersions } from "@tinykv/kvnode";
import { mulberry32 } from "@tinykv/raft";
import { type StatusBase, StatusCache } from "./status_cache.ts";
import { nodeStatus, replica } from "./_testing.ts";

/** A node's answer to `since`, as the kvnode's `Status` builds it. */
function answerOf(
  versions: StatusVersions,
  current: ReplicaStatus[],
  since: StatusBase,
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

/** Asks the node with what the cache says and merges the answer, as node_admin.ts does. */
function askAndMerge(cache: StatusCache, versions: StatusVersions, current: ReplicaStatus[]) {
  const since = cache.since("a");
  return cache.merge("a", answerOf(versions, current, since), since);
}

const ids = (status: NodeStatusResponse) =>
  status.replicas.map((r) => `${r.shardId}/${r.peerId}@${r.appliedIndex}`);

Deno.test("a delta merges into the whole status held", () => {
  const cache = new StatusCache();
  const versions = new StatusVersions();
  assert.deepEqual(cache.since("a"), { sinceVersion: 0, sinceStartedAtMs: 0 });
  const first = askAndMerge(cache, versions, [
    replica({ shardId: 2, peerId: 21 }),
    replica({ shardId: 1, peerId: 11 }),
  ]);
  assert.deepEqual(ids(first!), ["1/11@10", "2/21@10"]);
  assert.deepEqual(cache.since("a"), { sinceVersion: 1, sinceStartedAtMs: 5 });
  const deltaSince = cache.since("a");
  const delta = answerOf(versions, [
    replica({ shardId: 1, peerId: 11, appliedIndex: 12 }),
    replica({ shardId: 3, peerId: 31 }),
  ], deltaSince);
  assert.equal(delta.delta, true);
  const whole = cache.merge("a", delta, deltaSince)!;
  assert.deepEqual(ids(whole), ["1/11@12", "3/31@10"]);
  assert.equal(whole.delta, false);
  assert.deepEqual(whole.removed, []);
  // Nothing changed: an empty delta, the same replicas.
  const quietSince = cache.since("a");
  const quiet = answerOf(versions, [
    replica({ shardId: 1, peerId: 11, appliedIndex: 12 }),
    replica({ shardId: 3, peerId: 31 }),
  ], quietSince);
  assert.deepEqual(quiet.replicas, []);
  assert.deepEqual(ids(cache.merge("a", { ...quiet, diskBytes: 99 }, quietSince)!), [
    "1/11@12",
    "3/31@10",
  ]);
  assert.equal(cache.merge("a", quiet, quietSince)!.diskBytes, 0);
});

Deno.test("an answer older than the status held is not applied", () => {
  const cache = new StatusCache();
  const versions = new StatusVersions();
  askAndMerge(cache, versions, [replica({ shardId: 1, peerId: 11 })]);
  const since = cache.since("a");
  const older = answerOf(versions, [replica({ shardId: 1, peerId: 11, appliedIndex: 11 })], since);
  const newer = answerOf(versions, [replica({ shardId: 1, peerId: 11, appliedIndex: 12 })], since);
  assert.deepEqual(ids(cache.merge("a", newer, since)!), ["1/11@12"]);
  assert.deepEqual(ids(cache.merge("a", older, since)!), ["1/11@12"]);
  assert.equal(cache.since("a").sinceVersion, newer.statusVersion);
});

Deno.test("a delta without a base is refused; a restarted node's whole answer replaces the old", () => {
  const cache = new StatusCache();
  const versions = new StatusVersions();
  askAndMerge(cache, versions, [replica({ shardId: 1, peerId: 11 })]);
  const since = cache.since("a");
  const delta = answerOf(versions, [replica({ shardId: 1, peerId: 11, appliedIndex: 13 })], since);
  assert.equal(cache.merge("b", delta, since), undefined);
  // The same address, another process (another start time): its delta has no base here either.
  assert.equal(
    cache.merge("a", { ...delta, startedAtMs: 6 }, { ...since, sinceStartedAtMs: 6 }),
    undefined,
  );
  const restarted = answerOf(
    new StatusVersions(),
    [replica({ shardId: 2, peerId: 22 })],
    cache.since("a"),
    6,
  );
  assert.equal(restarted.delta, false);
  assert.deepEqual(ids(cache.merge("a", restarted, since)!), ["2/22@10"]);
  assert.deepEqual(cache.since("a"), { sinceVersion: 1, sinceStartedAtMs: 6 });
  cache.delete("a");
  assert.deepEqual(cache.since("a"), { sinceVersion: 0, sinceStartedAtMs: 0 });
});

Deno.test("a delta asked against a newer status than the one held is refused", () => {
  const cache = new StatusCache();
  const versions = new StatusVersions();
  // Two whole answers in flight; the later one (v2) arrives first and a delta is asked since it.
  const none = cache.since("a");
  const early = answerOf(versions, [replica({ shardId: 1, peerId: 11 })], none);
  const late = answerOf(versions, [replica({ shardId: 2, peerId: 21 })], none);
  cache.merge("a", late, none);
  const since = cache.since("a");
  assert.equal(since.sinceVersion, late.statusVersion);
  const delta = answerOf(versions, [replica({ shardId: 2, peerId: 21, appliedIndex: 12 })], since);
  // The entry is dropped (its client closed), and the early answer fills it again, older.
  cache.delete("a");
  assert.deepEqual(ids(cache.merge("a", early, none)!), ["1/11@10"]);
  // The delta holds only what changed after v2: on top of v1 it would keep shard 1 for good.
  assert.equal(cache.merge("a", delta, since), undefined);
});

Deno.test("random histories, answers out of order, entries dropped: the status handed out is the node's at its version", () => {
  let refused = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const random = mulberry32(seed);
    const pick = (n: number) => Math.floor(random() * n);
    const versions = new StatusVersions(1 + pick(6));
    const cache = new StatusCache();
    let current = new Map<number, ReplicaStatus>();
    const truth = new Map<number, string[]>();
    const inFlight: Array<{
      answer: NodeStatusResponse;
      since: StatusBase;
    }> = [];
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
      // The entry is dropped now and then (node_admin.ts closes a client past its bound).
      if (random() < 0.05) cache.delete("a");
      if (random() < 0.7) {
        const since = cache.since("a");
        const answer = answerOf(versions, [...current.values()], since);
        truth.set(answer.statusVersion, sorted(current.values()));
        inFlight.push({ answer, since });
      }
      while (inFlight.length > 0 && random() < 0.5) {
        const [{ answer, since }] = inFlight.splice(pick(inFlight.length), 1);
        const whole = cache.merge("a", answer, since);
        if (whole === undefined) {
          // Refused only for a delta whose base is not held; node_admin.ts then asks for all.
          assert.equal(answer.delta, true, `seed ${seed} step ${step}: a whole answer refused`);
          refused++;
          continue;
        }
        assert.deepEqual(ids(whole), truth.get(whole.statusVersion), `seed ${seed} step ${step}`);
      }
    }
  }
  assert.ok(refused > 0, "no history dropped a base under a delta in flight");
});
