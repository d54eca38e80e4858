// Checks MemoryNodeStore's transaction semantics (the simulation's stand-in for LMDB): ordered byte
// keys, reads inside a transaction see its writes, a throwing transaction applies nothing, writes
// outside a transaction are refused, and a crash keeps exactly the synced transactions.
import assert from "node:assert/strict";
import { MemoryNodeStore } from "./memory_node_store.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) =>
  b === undefined ? undefined : new TextDecoder().decode(b);
const keys = (store: MemoryNodeStore) =>
  [...store.range(new Uint8Array(), new Uint8Array([0xff]))].map((p) => dec(p.key));

Deno.test("MemoryNodeStore.write() sees its own writes and orders keys bytewise", async () => {
  const store = new MemoryNodeStore();
  const seen = await store.write(() => {
    store.put(enc("b"), enc("2"));
    store.put(enc("a"), enc("1"));
    store.put(enc("ab"), enc("3"));
    return dec(store.get(enc("a")));
  });
  assert.equal(seen, "1");
  assert.deepEqual(keys(store), ["a", "ab", "b"]);
  const removed = await store.write(() => store.removeRange(enc("a"), enc("b")));
  assert.equal(removed, 2);
  assert.deepEqual(keys(store), ["b"]);
  assert.throws(() => store.put(enc("c"), enc("4")), /outside write/);
});

Deno.test("MemoryNodeStore.write() applies nothing of a transaction that throws", async () => {
  const store = new MemoryNodeStore();
  await store.write(() => store.put(enc("k"), enc("old")));
  await assert.rejects(
    store.write(() => {
      store.put(enc("k"), enc("new"));
      store.put(enc("x"), enc("1"));
      store.remove(enc("k"));
      throw new Error("boom");
    }),
    /boom/,
  );
  assert.equal(dec(store.get(enc("k"))), "old");
  assert.equal(store.get(enc("x")), undefined);
  assert.equal(dec(store.crash().get(enc("k"))), "old");
});

Deno.test("MemoryNodeStore.crash() keeps synced transactions and loses a frozen one whole", async () => {
  const store = new MemoryNodeStore();
  await store.write(() => store.putIdentity("node_id", "n1"));
  let frozen = false;
  store.freezeNextSync(() => (frozen = true));
  let resolved = false;
  store.write(() => {
    store.put(enc("a"), enc("1"));
    store.put(enc("b"), enc("2"));
  }).then(() => (resolved = true));
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assert.ok(frozen);
  assert.ok(!resolved);
  assert.equal(dec(store.get(enc("a"))), "1");
  const recovered = store.crash();
  assert.equal(recovered.getIdentity("node_id"), "n1");
  assert.equal(recovered.get(enc("a")), undefined);
  assert.equal(recovered.get(enc("b")), undefined);
  assert.equal(store.inFlight, 1);
});

Deno.test("MemoryNodeStore with a sync gate: write() resolves when the gate says synced", async () => {
  const gates: Array<() => void> = [];
  const store = new MemoryNodeStore({ syncGate: (synced) => gates.push(synced) });
  let done = false;
  const writing = store.write(() => store.put(enc("a"), enc("1"))).then(() => (done = true));
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assert.equal(gates.length, 1);
  assert.equal(store.syncing, true);
  assert.equal(dec(store.get(enc("a"))), "1", "committed: visible before the sync");
  assert.equal(done, false);
  gates[0]();
  await writing;
  assert.equal(store.syncing, false);
  assert.equal(store.transactions, 1);
});

Deno.test("MemoryNodeStore.crash() keeps or loses the transaction waiting for its sync, whole", async () => {
  for (const keepUnsynced of [false, true]) {
    const gates: Array<() => void> = [];
    const store = new MemoryNodeStore({ syncGate: (synced) => gates.push(synced) });
    const first = store.write(() => store.put(enc("a"), enc("1")));
    for (let i = 0; i < 10; i++) await Promise.resolve();
    gates[0]();
    await first;
    store.write(() => {
      store.put(enc("b"), enc("2"));
      store.remove(enc("a"));
    });
    for (let i = 0; i < 10; i++) await Promise.resolve();
    assert.equal(store.syncing, true);
    const recovered = store.crash({ keepUnsynced });
    assert.deepEqual(keys(recovered), keepUnsynced ? ["b"] : ["a"]);
    // The recovered store syncs through the same gate.
    const next = recovered.write(() => recovered.put(enc("c"), enc("3")));
    for (let i = 0; i < 10; i++) await Promise.resolve();
    assert.equal(gates.length, 3);
    gates[2]();
    await next;
    assert.equal(recovered.transactions, 1);
  }
});

Deno.test("MemoryNodeStore.write({ durable: false }) commits at once; a crash loses it until a later sync", async () => {
  const store = new MemoryNodeStore();
  await store.write(() => store.put(enc("a"), enc("1")));
  // Runs during the call (as LMDB's transactionSync), visible at once.
  let ran = false;
  const deferred = store.write(() => {
    ran = true;
    store.put(enc("b"), enc("2"));
    store.remove(enc("a"));
    return "done";
  }, { durable: false });
  assert.ok(ran, "the work ran during the call");
  assert.deepEqual(keys(store), ["b"]);
  assert.equal(store.syncing, false, "no one waits for its sync");
  assert.equal(store.deferredUncovered, 1);
  assert.equal(await deferred, "done");
  // Lost whole by a crash, or kept whole when the disk wrote it anyway.
  assert.deepEqual(keys(store.crash()), ["a"]);
  const kept = new MemoryNodeStore();
  await kept.write(() => kept.put(enc("a"), enc("1")));
  await kept.write(() => kept.put(enc("b"), enc("2")), { durable: false });
  assert.deepEqual(keys(kept.crash({ keepUnsynced: true })), ["a", "b"]);
  // A durable transaction committed after it covers it.
  const covered = new MemoryNodeStore();
  await covered.write(() => covered.put(enc("b"), enc("2")), { durable: false });
  // An empty transaction flushes nothing (as in LMDB): it covers nothing.
  await covered.write(() => {});
  assert.equal(covered.deferredUncovered, 1);
  await covered.write(() => covered.put(enc("c"), enc("3")));
  assert.equal(covered.deferredUncovered, 0);
  await covered.write(() => covered.put(enc("d"), enc("4")), { durable: false });
  assert.deepEqual(keys(covered.crash()), ["b", "c"]);
});

Deno.test("MemoryNodeStore: a deferred write after a durable one's commit stays uncovered by its sync", async () => {
  const gates: Array<() => void> = [];
  const store = new MemoryNodeStore({ syncGate: (synced) => gates.push(synced) });
  await store.write(() => store.put(enc("a"), enc("1")), { durable: false });
  const durable = store.write(() => store.put(enc("b"), enc("2")));
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assert.equal(gates.length, 1, "the durable transaction committed and waits for its sync");
  await store.write(() => store.put(enc("c"), enc("3")), { durable: false });
  gates[0]();
  await durable;
  assert.equal(store.deferredUncovered, 1, "the later deferred write is not synced");
  assert.deepEqual(keys(store.crash()), ["a", "b"]);
});

Deno.test("MemoryNodeStore.write({ durable: false }) that throws applies nothing, over deferred writes", async () => {
  const store = new MemoryNodeStore();
  await store.write(() => store.put(enc("k"), enc("synced")));
  await store.write(() => store.put(enc("k"), enc("deferred")), { durable: false });
  await assert.rejects(
    store.write(() => {
      store.put(enc("k"), enc("new"));
      store.removeRange(enc("a"), enc("z"));
      store.put(enc("x"), enc("1"));
      throw new Error("boom");
    }, { durable: false }),
    /boom/,
  );
  // Rolled back to the committed state (the deferred write), not to the synced one.
  assert.equal(dec(store.get(enc("k"))), "deferred");
  assert.equal(store.get(enc("x")), undefined);
  await assert.rejects(
    store.write(() => {
      store.put(enc("k"), enc("newer"));
      throw new Error("boom");
    }),
    /boom/,
  );
  assert.equal(dec(store.get(enc("k"))), "deferred");
});
