/**
 * The RawNode contract: numbered Readies, one outstanding at a time, hard and
 * soft state reported only on change, mustSync, and the `unavailable` storage
 * path completed by `onEntriesFetched()`.
 */

import assert from "node:assert/strict";
import { AssertionError } from "./_assert.ts";
import { n } from "./_test_helpers.ts";
import { mulberry32 } from "./prng.ts";
import { RawNode, type Ready, splitMessages } from "./raw_node.ts";
import { type EntriesResult, type LogReader, MemoryStorage } from "./storage.ts";
import type { Message } from "./messages.ts";
import { createEntry, EMPTY_HARD_STATE, type LogIndex, type PeerId, type Term } from "./types.ts";

const EMPTY = new Uint8Array(0);

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

/** Peer `from`'s acknowledgement of node 1's log up to `index` in term 1. */
function appendAck(from: PeerId, index: number): Message {
  return {
    type: "appendResponse",
    from,
    to: n(1),
    term: 1 as Term,
    reject: false,
    index: index as LogIndex,
    hintIndex: 0 as LogIndex,
    hintTerm: 0 as Term,
  };
}

/** A three-voter node 1 that has won an election in term 1 (pre-vote off), Readies persisted. */
function threeVoterLeader(): { node: RawNode; storage: MemoryStorage } {
  const storage = new MemoryStorage({ voters: [n(1), n(2), n(3)] });
  const node = new RawNode({ id: n(1), storage, prng: mulberry32(7), preVote: false });
  node.campaign();
  const candidacy = node.ready();
  assert.deepEqual(
    splitMessages(candidacy, EMPTY_HARD_STATE).early,
    [],
    "vote requests wait for the vote to be persisted",
  );
  persist(storage, candidacy);
  node.advance(candidacy);
  node.step({ type: "requestVoteResponse", from: n(2), to: n(1), term: 1 as Term, reject: false });
  return { node, storage };
}

Deno.test("splitMessages() lets a leader's appends leave before its own write", () => {
  const { node, storage } = threeVoterLeader();
  const persisted = storage.initialState().hardState;
  const elected = node.ready();
  const { early, late } = splitMessages(elected, persisted);
  assert.deepEqual(early.map((m) => [m.type, m.to]), [["append", 2], ["append", 3]]);
  assert.deepEqual(late, []);
  persist(storage, elected);
  node.advance(elected);
  for (const from of [n(2), n(3)]) node.step(appendAck(from, 1));
  node.propose(new Uint8Array([1]));
  const proposal = node.ready();
  assert.equal(proposal.entries.length, 1);
  const split = splitMessages(proposal, storage.initialState().hardState);
  const first = proposal.entries[0].index;
  assert.ok(split.early.every((m) => m.type === "append" && m.commit < first));
  const carrying = split.early.filter((m) => m.type === "append" && m.entries.length > 0);
  assert.deepEqual(carrying.map((m) => m.to), [2, 3], "the new entry leaves before the write");
});

Deno.test("splitMessages() holds answers, a new term, and a commit past the persisted log", () => {
  // A follower's acknowledgement promises durability: it waits.
  const storage = new MemoryStorage({ voters: [n(1), n(2), n(3)] });
  const follower = new RawNode({ id: n(2), storage, prng: mulberry32(3), preVote: false });
  follower.step({
    type: "append",
    from: n(1),
    to: n(2),
    term: 1 as Term,
    prevLogIndex: 0 as LogIndex,
    prevLogTerm: 0 as Term,
    entries: [createEntry({ term: 1 as Term, index: 1 as LogIndex, type: "normal", data: EMPTY })],
    commit: 0 as LogIndex,
  });
  const answered = follower.ready();
  const split = splitMessages(answered, EMPTY_HARD_STATE);
  assert.deepEqual(split.early, []);
  assert.deepEqual(split.late.map((m) => m.type), ["appendResponse"]);
  // A single voter commits what it appends: its appends to a learner carry that commit, so they
  // wait for the write.
  const single = new MemoryStorage({ voters: [n(1)], learners: [n(2)] });
  const leader = new RawNode({ id: n(1), storage: single, prng: mulberry32(5) });
  leader.campaign();
  const first = leader.ready();
  assert.deepEqual(splitMessages(first, EMPTY_HARD_STATE).early, [], "term and vote changed");
  persist(single, first);
  leader.advance(first);
  leader.step(appendAck(n(2), 1));
  leader.propose(new Uint8Array([2]));
  const proposal = leader.ready();
  const firstNew = proposal.entries[0].index;
  const held = splitMessages(proposal, single.initialState().hardState);
  assert.ok(held.early.every((m) => m.type === "append" && m.commit < firstNew));
  const carrying = held.late.filter((m) => m.type === "append" && m.commit >= firstNew);
  assert.equal(carrying.length, 1, "the append that tells the learner of the new commit waits");
});
