// Checks ReplicaLog on a real LMDB NodeStore: appends that overwrite a suffix, term lookups at the
// edges, byte-bounded reads, compaction, snapshot installation, state surviving a reopen, and a
// corrupt entry caught both by verifyAll() at startup and by entries() on read.
import assert from "node:assert/strict";
import {
  type ConfState,
  createEntry,
  type Entry,
  type LogIndex,
  type PeerId,
  type Term,
} from "@tinykv/raft";
import { makeKey, NodeStore, PREFIX } from "./node_store.ts";
import { encodeEntry, ReplicaLog } from "./replica_log.ts";
import { AssertionError } from "./_assert.ts";

const CONF: ConfState = { voters: [1 as PeerId, 2 as PeerId], learners: [], epoch: 0 as LogIndex };

function entry(index: number, term: number, text = `e${index}`): Entry {
  return createEntry({
    index: index as LogIndex,
    term: term as Term,
    data: new TextEncoder().encode(text),
  });
}

async function withStore(fn: (store: NodeStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-log-" });
  const store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
  try {
    await fn(store, dir);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Snapshot indexes the log reported asking for, in order. */
const taken: number[] = [];

function open(store: NodeStore, peerId = 11): ReplicaLog {
  return new ReplicaLog(store, {
    peerId,
    initialConfState: CONF,
    snapshotTaken: (index) => taken.push(index),
  });
}

Deno.test("ReplicaLog appends, overwrites a suffix and answers terms at the edges", async () => {
  await withStore(async (store) => {
    const log = open(store);
    assert.equal(log.lastIndex(), 0);
    assert.equal(log.term(0 as LogIndex), 0);
    await store.write(() => log.append([entry(1, 1), entry(2, 1), entry(3, 2)]));
    assert.equal(log.lastIndex(), 3);
    assert.equal(log.term(3 as LogIndex), 2);
    await store.write(() => log.append([entry(2, 3, "new")]));
    assert.equal(log.lastIndex(), 2);
    assert.equal(log.term(2 as LogIndex), 3);
    assert.equal(log.term(3 as LogIndex), undefined);
    const read = log.entries(1 as LogIndex, 3 as LogIndex, { bytesMax: 1 << 20 });
    assert.equal(read.kind, "ok");
    if (read.kind === "ok") {
      assert.deepEqual(read.entries.map((e) => new TextDecoder().decode(e.data)), ["e1", "new"]);
    }
  });
});

Deno.test("ReplicaLog.entries() stops at bytesMax but returns at least one entry", async () => {
  await withStore(async (store) => {
    const log = open(store);
    await store.write(() =>
      log.append([entry(1, 1, "aaaa"), entry(2, 1, "bbbb"), entry(3, 1, "c")])
    );
    const one = log.entries(1 as LogIndex, 4 as LogIndex, { bytesMax: 1 });
    assert.equal(one.kind === "ok" && one.entries.length, 1);
    const two = log.entries(1 as LogIndex, 4 as LogIndex, { bytesMax: 8 });
    assert.equal(two.kind === "ok" && two.entries.length, 2);
  });
});

Deno.test("ReplicaLog compacts up to the applied index and reports compacted reads", async () => {
  await withStore(async (store) => {
    const log = open(store);
    await store.write(() => {
      log.append([entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
      log.setApplied({ applied: 3 as LogIndex, confState: CONF });
    });
    await assert.rejects(store.write(() => log.compact(4 as LogIndex)), AssertionError);
    await store.write(() => log.compact(3 as LogIndex));
    assert.equal(log.firstIndex(), 4);
    assert.equal(log.term(3 as LogIndex), 2);
    assert.equal(log.term(2 as LogIndex), undefined);
    assert.deepEqual(log.entries(2 as LogIndex, 5 as LogIndex, { bytesMax: 100 }), {
      kind: "compacted",
    });
    taken.length = 0;
    const snapshot = log.snapshot();
    assert.equal(snapshot.kind, "ok");
    if (snapshot.kind === "ok") {
      assert.equal(snapshot.snapshot.metadata.index, 3);
      assert.equal(snapshot.snapshot.metadata.term, 2);
      // The data travels beside the message, from a view the replica opens when told.
      assert.equal(snapshot.snapshot.data.length, 0);
      assert.deepEqual(taken, [3]);
    }
  });
});

Deno.test("ReplicaLog keeps hard state, applied state, log start and entries across a reopen", async () => {
  await withStore(async (store, dir) => {
    const log = open(store);
    const conf: ConfState = {
      voters: [1 as PeerId],
      learners: [3 as PeerId],
      epoch: 5 as LogIndex,
    };
    await store.write(() => {
      log.installSnapshot({ index: 10 as LogIndex, term: 4 as Term, confState: conf });
      log.append([entry(11, 4), entry(12, 5)]);
      log.setHardState({ term: 5 as Term, vote: 1 as PeerId, commit: 12 as LogIndex });
    });
    await store.close();
    const again = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
    try {
      const reopened = open(again);
      assert.deepEqual(reopened.initialState(), {
        hardState: { term: 5, vote: 1, commit: 12 },
        confState: conf,
      });
      assert.equal(reopened.firstIndex(), 11);
      assert.equal(reopened.lastIndex(), 12);
      assert.equal(reopened.term(10 as LogIndex), 4);
      assert.deepEqual(reopened.appliedState, { applied: 10, confState: conf });
      assert.deepEqual(reopened.verifyAll(), { kind: "ok", entries: 2 });
      // Another replica on the same node sees none of it.
      assert.equal(open(again, 12).lastIndex(), 0);
    } finally {
      await again.close();
    }
  });
});

Deno.test("ReplicaLog finds a corrupt entry at startup and on read, naming its index", async () => {
  await withStore(async (store) => {
    const log = open(store);
    await store.write(() => log.append([entry(1, 1), entry(2, 1), entry(3, 1)]));
    const bad = encodeEntry(entry(2, 1, "e2"));
    bad[bad.length - 1] ^= 0xff;
    await store.write(() => store.put(makeKey(PREFIX.log, [11, 2]), bad));
    const verified = log.verifyAll();
    assert.equal(verified.kind, "dataLoss");
    assert.equal(verified.kind === "dataLoss" && verified.index, 2);
    const read = log.entries(1 as LogIndex, 4 as LogIndex, { bytesMax: 1 << 20 });
    assert.equal(read.kind, "dataLoss");
    assert.equal(read.kind === "dataLoss" && read.index, 2);
  });
});

Deno.test("ReplicaLog writes an applied state taken with deferWrite only when told", async () => {
  await withStore(async (store) => {
    const log = open(store);
    await store.write(() => {
      log.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
      log.setHardState({ term: 1 as Term, vote: 1 as PeerId, commit: 3 as LogIndex });
      log.setApplied({ applied: 1 as LogIndex, confState: CONF });
    });
    await store.write(() => {
      log.setApplied({ applied: 2 as LogIndex, confState: CONF }, { deferWrite: true });
      log.setApplied({ applied: 3 as LogIndex, confState: CONF }, { deferWrite: true });
      assert.equal(log.appliedState.applied, 3, "taken at once");
      assert.equal(open(store).appliedState.applied, 1, "not written yet");
      assert.throws(() => log.assertConsistent(), AssertionError);
      log.writeApplied();
      log.assertConsistent();
    });
    assert.equal(open(store).appliedState.applied, 3, "written once told");
  });
});
