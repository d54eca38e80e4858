/**
 * The RawNode contract: numbered Readies, one outstanding at a time, hard and
 * soft state reported only on change, mustSync, and the `unavailable` storage
 * path completed by `onEntriesFetched()`.
 */

import assert from "node:assert/strict";
import { AssertionError } from "./_assert.ts";
import { n } from "./_test_helpers.ts";
import { mulberry32 } from "./prng.ts";
import { RawNode, type Ready } from "./raw_node.ts";
import { type EntriesResult, type LogReader, MemoryStorage } from "./storage.ts";
import type { LogIndex } from "./types.ts";

function persist(storage: MemoryStorage, ready: Ready): void {
  if (ready.snapshot) storage.applySnapshot(ready.snapshot);
  storage.append(ready.entries);
  if (ready.hardState) storage.setHardState(ready.hardState);
}

Deno.test("Readies are numbered, one at a time, and report state changes once", () => {
  const id = n(1);
  const storage = new MemoryStorage({ voters: [id] });
  const node = new RawNode({ id, storage, prng: mulberry32(1) });
  assert.equal(node.hasReady(), false);
  node.campaign();
  const first = node.ready();
  assert.equal(first.number, 1);
  assert.deepEqual(first.softState, { leader: id, role: "leader" });
  assert.deepEqual(first.hardState, { term: 1, vote: id, commit: 1 });
  assert.equal(first.entries.length, 1);
  assert.equal(first.committedEntries.length, 1);
  assert.equal(first.mustSync, true);
  assert.throws(() => node.ready(), AssertionError);
  persist(storage, first);
  node.advance(first);
  assert.equal(node.hasReady(), false);
  node.propose(new Uint8Array([1]));
  const second = node.ready();
  assert.equal(second.number, 2);
  assert.equal(second.softState, undefined, "role unchanged");
  assert.deepEqual(second.hardState, { term: 1, vote: id, commit: 2 });
  assert.throws(() => node.advance(first), AssertionError);
  persist(storage, second);
  node.advance(second);
  assert.equal(node.status().applied, 2);
});

Deno.test("a restarted node redelivers committed entries above its applied index", () => {
  const id = n(1);
  const storage = new MemoryStorage({ voters: [id] });
  const node = new RawNode({ id, storage, prng: mulberry32(1) });
  node.campaign();
  for (let k = 0; k < 3; k++) node.propose(new Uint8Array([k]));
  const ready = node.ready();
  persist(storage, ready);
  node.advance(ready);
  const restarted = new RawNode({ id, storage, prng: mulberry32(1), applied: 2 as LogIndex });
  const again = restarted.ready();
  assert.deepEqual(again.committedEntries.map((e) => e.index), [3, 4]);
  assert.equal(again.mustSync, false);
});

/** A LogReader whose entries() answers `unavailable` until `fetched` is set. */
class SlowStorage implements LogReader {
  fetched = false;
  constructor(readonly inner: MemoryStorage) {}
  initialState() {
    return this.inner.initialState();
  }
  entries(low: LogIndex, high: LogIndex, options: { bytesMax: number }): EntriesResult {
    return this.fetched ? this.inner.entries(low, high, options) : { kind: "unavailable" };
  }
  term(index: LogIndex) {
    return this.inner.term(index);
  }
  firstIndex() {
    return this.inner.firstIndex();
  }
  lastIndex() {
    return this.inner.lastIndex();
  }
  snapshot() {
    return this.inner.snapshot();
  }
}

Deno.test("unavailable entries are delivered after onEntriesFetched()", () => {
  const id = n(1);
  const inner = new MemoryStorage({ voters: [id] });
  const node = new RawNode({ id, storage: inner, prng: mulberry32(1) });
  node.campaign();
  node.propose(new Uint8Array([5]));
  const ready = node.ready();
  persist(inner, ready);
  node.advance(ready);
  const slow = new SlowStorage(inner);
  const restarted = new RawNode({ id, storage: slow, prng: mulberry32(1) });
  const empty = restarted.ready();
  assert.deepEqual(empty.committedEntries, []);
  restarted.advance(empty);
  assert.equal(restarted.hasReady(), false, "no busy loop while entries are unavailable");
  slow.fetched = true;
  restarted.onEntriesFetched();
  assert.equal(restarted.hasReady(), true);
  const full = restarted.ready();
  assert.deepEqual(full.committedEntries.map((e) => e.index), [1, 2]);
});

Deno.test("step() of a message for another node is a host bug", () => {
  const id = n(1);
  const node = new RawNode({
    id,
    storage: new MemoryStorage({ voters: [id] }),
    prng: mulberry32(1),
  });
  assert.throws(
    () => node.step({ type: "timeoutNow", from: n(2), to: n(3), term: 1 as never }),
    AssertionError,
  );
});
