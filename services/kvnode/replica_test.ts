// Checks Replica.failAll: when a replica goes away, its proposals are answered `unknown` (their
// entries may still commit on the other members), its reads with the given outcome; and that a
// compaction due by count is spread over turns, each step covering what applied since the last.
import assert from "node:assert/strict";
import { createEntry, type LogIndex, mulberry32, type PeerId, type Term } from "@tinykv/raft";
import { MemoryNodeStore } from "./memory_node_store.ts";
import type { ItemOutcome, ItemResult } from "./outcome.ts";
import { KvApplication, type KvMachine } from "./kv_app.ts";
import { Replica } from "./replica.ts";
import { TEST_TUNING } from "./_test_cluster.ts";
import { shardId as toShardId } from "@tinykv/shard";

const app = new KvApplication();

/** Replica peer 7 of shard 1 (the whole hash space), alone in its group, on a fresh store. */
function soloReplica(store = new MemoryNodeStore()): Replica<ItemResult, KvMachine> {
  const peer = { peerId: 7, nodeId: "n1", address: "mem:n1" };
  return new Replica<ItemResult, KvMachine>(store, {
    record: {
      shardId: toShardId(1),
      peerId: 7,
      range: { lo: 0, hi: 2 ** 32 },
      peers: [peer],
      initialConfState: { voters: [7 as PeerId], learners: [], epoch: 0 as LogIndex },
    },
    tuning: TEST_TUNING,
    prng: mulberry32(1),
    open: (spaces, range) => app.open(spaces, range),
  });
}

Deno.test("Replica.failAll() answers proposals unknown and reads with the outcome", () => {
  const replica = soloReplica();
  const answers: ItemOutcome[] = [];
  replica.pending.set(5, { term: 1 as Term, resolve: (o) => answers.push(o) });
  replica.reads.queue({ serve: () => assert.fail("served"), resolve: (o) => answers.push(o) });
  replica.failAll({ kind: "unavailable", message: "Shard 1 left node n1" });
  assert.deepEqual(answers.map((o) => o.kind), ["unknown", "unavailable"]);
  assert.equal(replica.pending.size, 0);
});

Deno.test("Replica.replacePending() answers an earlier term's proposal unknown, and asserts on a same-term one", () => {
  const replica = soloReplica();
  const answers: ItemOutcome[] = [];
  replica.pending.set(5, { term: 1 as Term, resolve: (o) => answers.push(o) });
  replica.replacePending(5 as LogIndex, 2 as Term);
  assert.deepEqual(answers.map((o) => o.kind), ["unknown"]);
  assert.equal(replica.pending.size, 0);
  replica.replacePending(6 as LogIndex, 2 as Term);
  replica.pending.set(6, { term: 2 as Term, resolve: (o) => answers.push(o) });
  assert.throws(() => replica.replacePending(6 as LogIndex, 2 as Term), { name: "AssertionError" });
});

Deno.test("Replica.failAll() answers admin calls waiting for a conf change as timed out", async () => {
  const replica = soloReplica();
  const wait = replica.appliedWaiters.add(9 as LogIndex, 1 as Term, 1e15);
  replica.failAll({ kind: "unavailable", message: "Shard 1 left node n1" });
  assert.equal((await wait).kind, "timeout");
  assert.equal(replica.appliedWaiters.size, 0);
});

Deno.test("Replica.compactIfDue() spreads a compaction due by count over steps; the bytes bound does not", async () => {
  const store = new MemoryNodeStore();
  const replica = soloReplica(store);
  const log = replica.log;
  const confState = log.appliedState.confState;
  let last = 0;
  /** Appends and applies `count` more entries, as a turn would. */
  const applyMore = (count: number) =>
    store.write(() => {
      log.append(Array.from({ length: count }, () => {
        last++;
        return createEntry({
          index: last as LogIndex,
          term: 1 as Term,
          data: new TextEncoder().encode(`e${last}`),
        });
      }));
      log.setHardState({ term: 1 as Term, vote: 7 as PeerId, commit: last as LogIndex });
      log.setApplied({ applied: last as LogIndex, confState });
    });
  const tuning = { snapshotEntries: 40, snapshotLogBytes: 1 << 30, compactStepEntries: 3 };
  await applyMore(39);
  await store.write(() => replica.compactIfDue(tuning));
  assert.equal(log.firstIndex(), 1, "39 applied entries are not due");
  assert.equal(replica.compacting, false);
  await applyMore(61);
  // Due at 100 applied entries: it keeps a quarter of 40 (to 90). The step also covers the 61
  // entries applied since the last call (at 39): 3 + 61 entries go.
  await store.write(() => replica.compactIfDue(tuning));
  assert.equal(log.firstIndex(), 65);
  assert.equal(replica.compacting, true);
  // A step with nothing applied since the last deletes 3 entries.
  await store.write(() => replica.compactIfDue(tuning));
  assert.equal(log.firstIndex(), 68);
  // Five applied since: the step covers them too, 3 + 5. The target stays at 90 (105 applied is
  // only 38 past the start: not due again).
  await applyMore(5);
  await store.write(() => replica.compactIfDue(tuning));
  assert.equal(log.firstIndex(), 76);
  const firsts: number[] = [];
  while (replica.compacting) {
    await store.write(() => replica.compactIfDue(tuning));
    firsts.push(log.firstIndex());
  }
  assert.deepEqual(firsts, [79, 82, 85, 88, 91]);
  // Done: another step deletes nothing.
  await store.write(() => replica.compactIfDue(tuning));
  assert.equal(log.firstIndex(), 91);
  // Over the bytes bound the whole applied log goes in one step.
  await store.write(() => replica.compactIfDue({ ...tuning, snapshotLogBytes: 1 }));
  assert.equal(log.firstIndex(), 106);
  assert.equal(replica.compacting, false);
});
