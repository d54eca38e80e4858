// Checks Replica.failAll: when a replica goes away, its proposals are answered `unknown` (their
// entries may still commit on the other members), its reads with the given outcome.
import assert from "node:assert/strict";
import { type LogIndex, mulberry32, type PeerId, type Term } from "@tinykv/raft";
import { MemoryNodeStore } from "./memory_node_store.ts";
import type { ItemOutcome, ItemResult } from "./outcome.ts";
import { KvApplication, type KvMachine } from "./kv_app.ts";
import { Replica } from "./replica.ts";
import { TEST_TUNING } from "./_test_cluster.ts";
import { shardId as toShardId } from "@tinykv/shard";

const app = new KvApplication();

/** Replica peer 7 of shard 1 (the whole hash space), alone in its group, on a fresh store. */
function soloReplica(): Replica<ItemResult, KvMachine> {
  const peer = { peerId: 7, nodeId: "n1", address: "mem:n1" };
  return new Replica<ItemResult, KvMachine>(new MemoryNodeStore(), {
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
