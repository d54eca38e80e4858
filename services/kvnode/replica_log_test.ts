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
import { encodeEntry, ReplicaLog, UNAPPLIED_BYTES_KEPT } from "./replica_log.ts";
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
    // The log itself still serves its unapplied entries from memory, as written; a log opened
    // afresh (a restart) reads them from LMDB.
    assert.equal(log.entries(1 as LogIndex, 4 as LogIndex, { bytesMax: 1 << 20 }).kind, "ok");
    const read = open(store).entries(1 as LogIndex, 4 as LogIndex, { bytesMax: 1 << 20 });
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

Deno.test("ReplicaLog answers from the entries it keeps exactly what LMDB holds", async () => {
  // Seeded runs of appends (some replacing a suffix, some large enough to pass the bound),
  // applies, compactions and snapshots. After each, every term and a range of entries from the
  // log (served from the entries it keeps) equal those of the same log opened afresh (served
  // from LMDB), and the kept bytes stay within the bound and reach zero once all is applied.
  for (let seed = 1; seed <= 12; seed++) {
    let state = seed;
    const random = (n: number) => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return Math.floor((state / 2147483648) * n);
    };
    await withStore(async (store) => {
      const log = open(store);
      let term = 1;
      let served = 0;
      for (let step = 0; step < 60; step++) {
        const roll = random(10);
        const last = log.lastIndex();
        const applied = log.appliedState.applied;
        await store.write(() => {
          if (roll < 6) {
            if (random(4) === 0) term++;
            const first = Math.max(applied + 1, last + 1 - random(3), log.firstIndex());
            const count = 1 + random(4);
            const size = random(5) === 0 ? 300_000 : 1 + random(200);
            // Some entries' data are views into a larger buffer, as decoded messages' are.
            const view = random(2) === 0;
            log.append(Array.from({ length: count }, (_, i) => {
              const made = entry(first + i, term, `${step}:${i}:`.padEnd(size, "x"));
              if (!view) return made;
              const large = new Uint8Array(made.data.length + 16);
              large.set(made.data, 8);
              return { ...made, data: large.subarray(8, 8 + made.data.length) };
            }));
          } else if (roll < 8 && last > applied) {
            const to = applied + 1 + random(last - applied);
            log.setHardState({ term: term as Term, vote: undefined, commit: to as LogIndex });
            log.setApplied({ applied: to as LogIndex, confState: CONF });
          } else if (roll < 9 && applied > log.firstIndex()) {
            log.compact((log.firstIndex() + random(applied - log.firstIndex())) as LogIndex);
          } else if (random(3) === 0) {
            const at = (applied + 1 + random(last - applied + 5)) as LogIndex;
            log.setHardState({ term: term as Term, vote: undefined, commit: at });
            log.installSnapshot({ index: at, term: term as Term, confState: CONF });
            assert.equal(log.keptBytes, 0, "a snapshot replaces the whole log");
          }
        });
        assert.ok(log.keptBytes <= UNAPPLIED_BYTES_KEPT, `seed ${seed}: ${log.keptBytes} kept`);
        const fresh = open(store);
        assert.equal(fresh.keptBytes, 0);
        assert.equal(fresh.lastIndex(), log.lastIndex());
        for (let i = log.firstIndex() - 1; i <= log.lastIndex() + 1; i++) {
          assert.equal(log.term(i as LogIndex), fresh.term(i as LogIndex), `seed ${seed}: ${i}`);
        }
        const low = (log.firstIndex() + random(log.lastIndex() - log.firstIndex() + 1)) as LogIndex;
        const high = (log.lastIndex() + 1) as LogIndex;
        const bytesMax = random(2) === 0 ? 1 << 30 : random(400_000);
        const text = (result: ReturnType<ReplicaLog["entries"]>) =>
          result.kind === "ok"
            ? result.entries.map((e) =>
              `${e.index}/${e.term}/${e.checksum}/${new TextDecoder().decode(e.data)}`
            )
            : result.kind;
        const mine = log.entries(low, high, { bytesMax });
        assert.deepEqual(text(mine), text(fresh.entries(low, high, { bytesMax })), `seed ${seed}`);
        if (log.keptBytes > 0 && mine.kind === "ok") served += mine.entries.length;
      }
      await store.write(() => {
        const last = log.lastIndex();
        log.setHardState({ term: term as Term, vote: undefined, commit: last });
        log.setApplied({ applied: last, confState: CONF });
      });
      assert.equal(log.keptBytes, 0, `seed ${seed}: nothing kept once all is applied`);
      assert.ok(served > 0, `seed ${seed}: some reads came from the kept entries`);
    });
  }
});
