/**
 * The scenarios of the MIT 6.824 Raft lab (2A election, 2B agreement, 2C
 * persistence, 2D snapshots), run on the seeded in-memory {@linkcode Cluster}.
 * Time is in ticks (election timeout 10–19 ticks, heartbeat every tick);
 * "disconnect" is a network partition, "crash" drops the RawNode and restarts
 * it from its storage. Every applied entry is checked against what other
 * replicas applied at the same index.
 */

import assert from "node:assert/strict";
import { bytes, Cluster, type ClusterOptions, mulberry32, randomInt } from "./testing.ts";
import type { PeerId } from "./types.ts";

const ELECTION_TICKS = 10;

function cluster(voters: number, seed: number, extra: Partial<ClusterOptions> = {}): Cluster {
  return new Cluster({ voters, seed, node: { electionTicks: ELECTION_TICKS }, ...extra });
}

/** The leader of the highest term among `ids` (running nodes only). */
function leaderIn(c: Cluster, ids: readonly number[]): PeerId | undefined {
  let best: PeerId | undefined;
  let bestTerm = -1;
  for (const id of ids) {
    const raw = c.node(id).raw;
    if (raw === undefined) continue;
    const s = raw.status();
    if (s.role === "leader" && s.term > bestTerm) {
      bestTerm = s.term;
      best = s.id;
    }
  }
  return best;
}

function connectedTo(c: Cluster, id: number): number[] {
  return c.ids.filter((other) => c.connected(id as PeerId, other));
}

function checkOneLeader(c: Cluster, among: readonly number[] = c.ids): PeerId {
  let found: PeerId | undefined;
  const ok = c.tickUntil(() => (found = leaderIn(c, among)) !== undefined, 300);
  assert.ok(ok && found !== undefined, "expected one leader");
  c.leader(); // asserts no two leaders share a term
  return found;
}

function checkNoLeader(c: Cluster, among: readonly number[]): void {
  for (const id of among) {
    assert.notEqual(c.node(id).raw?.status().role, "leader", `node ${id} claims leadership`);
  }
}

function termOf(c: Cluster, id: number): number {
  return c.raw(id).status().term;
}

function proposeAt(c: Cluster, id: number, text: string): number | undefined {
  const result = c.node(id).raw?.propose(bytes(text));
  return result?.kind === "ok" ? result.index : undefined;
}

function one(c: Cluster, text: string, expected: number): number {
  const index = c.one(text, expected);
  assert.ok(index !== undefined, `"${text}" did not reach ${expected} nodes`);
  return index;
}

// ------------------------------------------------------------------ 2A: election

Deno.test("initial election elects one leader and keeps it and its term when idle", () => {
  const c = cluster(3, 1);
  const leader = checkOneLeader(c);
  const term = termOf(c, leader);
  assert.ok(term >= 1);
  c.tick(5 * ELECTION_TICKS);
  assert.equal(termOf(c, leader), term, "term changed with no failures");
  assert.equal(checkOneLeader(c), leader);
});

Deno.test("re-election after the leader disconnects, and none without a majority", () => {
  const c = cluster(3, 2);
  const leader1 = checkOneLeader(c);
  c.isolate(leader1);
  const others = c.ids.filter((id) => id !== leader1);
  const leader2 = checkOneLeader(c, others);
  // The old leader rejoins; it must not disturb the new one.
  c.heal();
  c.tick(2 * ELECTION_TICKS);
  assert.equal(checkOneLeader(c), leader2);
  // Without a quorum no leader is elected among the remaining node.
  const lonely = c.ids.find((id) => id !== leader2)!;
  c.partition([leader2], [lonely]);
  const last = c.ids.find((id) => id !== leader2 && id !== lonely)!;
  c.tick(4 * ELECTION_TICKS);
  checkNoLeader(c, [last]);
  checkNoLeader(c, [lonely]);
  c.heal();
  checkOneLeader(c);
});

Deno.test("many elections with random partitions of 3 out of 7 nodes", () => {
  const c = cluster(7, 3);
  const prng = mulberry32(33);
  checkOneLeader(c);
  for (let iteration = 0; iteration < 10; iteration++) {
    const ids = [...c.ids];
    const cut: number[] = [];
    while (cut.length < 3) {
      const pick = ids.splice(randomInt(prng, ids.length), 1)[0];
      cut.push(pick);
    }
    c.partition(...cut.map((id) => [id]));
    checkOneLeader(c, ids);
    c.heal();
  }
  checkOneLeader(c);
});

// ------------------------------------------------------------------ 2B: agreement

Deno.test("basic agreement commits at consecutive indexes on every node", () => {
  const c = cluster(3, 4);
  checkOneLeader(c);
  let previous = 0;
  for (let i = 0; i < 3; i++) {
    const next = c.leader()!;
    const expectedIndex = c.raw(next).status().lastIndex + 1;
    assert.equal(c.nCommitted(expectedIndex).count, 0, "committed before start");
    const index = one(c, `cmd${i}`, 3);
    assert.equal(index, expectedIndex);
    assert.ok(index > previous);
    previous = index;
  }
});

Deno.test("follower failure: agreement continues with a majority, stops without one", () => {
  const c = cluster(3, 5);
  one(c, "101", 3);
  const leader1 = checkOneLeader(c);
  const follower = c.ids.find((id) => id !== leader1)!;
  c.isolate(follower);
  one(c, "102", 2);
  one(c, "103", 2);
  const leader2 = c.leader()!;
  const rest = c.ids.filter((id) => id !== leader2);
  c.partition(...rest.map((id) => [id]));
  const index = proposeAt(c, leader2, "104");
  assert.ok(index !== undefined);
  c.tick(2 * ELECTION_TICKS);
  assert.equal(c.nCommitted(index).count, 0, "committed without a majority");
});

Deno.test("leader failure: a new leader commits; a lone node commits nothing", () => {
  const c = cluster(3, 6);
  one(c, "101", 3);
  const leader1 = checkOneLeader(c);
  c.isolate(leader1);
  one(c, "102", 2);
  one(c, "103", 2);
  const leader2 = c.leader()!;
  assert.notEqual(leader2, leader1);
  c.partition([leader1], [leader2]);
  const indexes = c.ids.map((id) => proposeAt(c, id, "104"));
  c.tick(2 * ELECTION_TICKS);
  for (const index of indexes) {
    if (index !== undefined) assert.equal(c.nCommitted(index).count, 0);
  }
});

Deno.test("a reconnected follower catches up (fail agree)", () => {
  const c = cluster(3, 7);
  one(c, "101", 3);
  const leader = checkOneLeader(c);
  const follower = c.ids.find((id) => id !== leader)!;
  c.isolate(follower);
  for (const v of ["102", "103", "104", "105"]) one(c, v, 2);
  c.heal();
  one(c, "106", 3);
  one(c, "107", 3);
});

Deno.test("no agreement without a majority (fail no agree)", () => {
  const c = cluster(5, 8);
  one(c, "10", 5);
  const leader = checkOneLeader(c);
  const followers = c.ids.filter((id) => id !== leader).slice(0, 3);
  c.partition(...followers.map((id) => [id]));
  const index = proposeAt(c, leader, "20");
  assert.ok(index !== undefined);
  c.tick(2 * ELECTION_TICKS);
  assert.equal(c.nCommitted(index).count, 0);
  c.heal();
  checkOneLeader(c);
  one(c, "1000", 5);
});

Deno.test("concurrent starts: proposals of one turn commit together in one term", () => {
  const c = cluster(3, 9);
  const leader = checkOneLeader(c);
  const term = termOf(c, leader);
  c.sent.clear();
  const indexes = Array.from({ length: 5 }, (_, i) => proposeAt(c, leader, `c${i}`)!);
  c.stabilize();
  c.tick(1);
  for (const [i, index] of indexes.entries()) {
    assert.equal(c.nCommitted(index).value, `c${i}`);
  }
  assert.equal(termOf(c, leader), term);
  // The five proposals travelled in one append per follower.
  const appendsWithEntries = c.ids.length - 1;
  assert.ok(c.sentCount("append") <= appendsWithEntries * 3, "proposals were not batched");
});

Deno.test("rejoin of a partitioned leader with uncommitted entries", () => {
  const c = cluster(3, 10);
  one(c, "101", 3);
  const leader1 = checkOneLeader(c);
  c.isolate(leader1);
  for (const v of ["102", "103", "104"]) proposeAt(c, leader1, v);
  one(c, "103", 2);
  const leader2 = leaderIn(c, c.ids.filter((id) => id !== leader1))!;
  c.isolate(leader2);
  one(c, "104", 2);
  c.heal();
  one(c, "105", 3);
});

Deno.test("backup over 50 conflicting entries uses few probes", () => {
  const c = cluster(5, 11);
  one(c, "start", 5);
  const leader1 = checkOneLeader(c);
  const f1 = c.ids.find((id) => id !== leader1)!;
  c.partition([leader1, f1]);
  for (let i = 0; i < 50; i++) proposeAt(c, leader1, `lost-a${i}`);
  c.tick(ELECTION_TICKS / 2);
  const majority = c.ids.filter((id) => id !== leader1 && id !== f1);
  c.partition([leader1, f1], majority);
  const leader2 = checkOneLeader(c, majority);
  for (let i = 0; i < 50; i++) one(c, `kept-b${i}`, 3);
  const other = majority.find((id) => id !== leader2)!;
  c.partition([leader1, f1], [other], majority.filter((id) => id !== other));
  for (let i = 0; i < 50; i++) proposeAt(c, leader2, `lost-c${i}`);
  c.tick(ELECTION_TICKS / 2);
  // The old pair comes back together with `other`, which has the committed entries.
  c.partition([leader1, f1, other], majority.filter((id) => id !== other));
  checkOneLeader(c, [leader1, f1, other]);
  c.sent.clear();
  for (let i = 0; i < 50; i++) one(c, `kept-d${i}`, 3);
  c.heal();
  c.sent.clear();
  one(c, "end", 5);
  // Fast backtracking skips whole terms: a handful of rejections, not ~50 per follower.
  assert.ok(c.sentCount("appendResponse") < 100, `${c.sentCount("appendResponse")} replies`);
});

Deno.test("message counts for an election and for idle heartbeats", () => {
  const c = cluster(3, 12);
  checkOneLeader(c);
  // Pre-vote and vote: one request and one reply per peer each.
  const election = c.sentCount(
    "requestPreVote",
    "requestPreVoteResponse",
    "requestVote",
    "requestVoteResponse",
  );
  assert.ok(election >= 8 && election <= 16, `election took ${election} messages`);
  one(c, "warm-up", 3);
  c.sent.clear();
  for (let i = 0; i < 10; i++) one(c, `x${i}`, 3);
  const perProposal = c.sentCount("append", "appendResponse") / 10;
  assert.ok(perProposal <= 12, `${perProposal} append messages per proposal`);
  c.sent.clear();
  const idleTicks = 20;
  c.tick(idleTicks);
  // Idle: exactly one heartbeat and reply per follower per tick, nothing else.
  assert.equal(c.sentCount("heartbeat"), 2 * idleTicks);
  assert.equal(c.sentCount("heartbeatResponse"), 2 * idleTicks);
  assert.equal(c.sentCount("append", "appendResponse", "requestVote", "requestPreVote"), 0);
});

// ------------------------------------------------------------------ 2C: persistence

function crashRestart(c: Cluster, id: number): void {
  c.crash(id);
  c.restart(id);
}

Deno.test("persistence: crash and restart all, the leader, and followers", () => {
  const c = cluster(3, 13);
  one(c, "11", 3);
  for (const id of c.ids) crashRestart(c, id);
  one(c, "12", 3);
  const leader1 = checkOneLeader(c);
  crashRestart(c, leader1);
  one(c, "13", 3);
  const leader2 = checkOneLeader(c);
  c.crash(leader2);
  one(c, "14", 2);
  c.restart(leader2);
  c.tick(ELECTION_TICKS);
  const leader3 = checkOneLeader(c);
  const follower = c.ids.find((id) => id !== leader3)!;
  c.crash(follower);
  one(c, "15", 2);
  c.restart(follower);
  one(c, "16", 3);
});

Deno.test("persistence: more crashes with partitions (persist2)", () => {
  const c = cluster(5, 14);
  let index = 1;
  for (let iteration = 0; iteration < 5; iteration++) {
    one(c, `${10 + index++}`, 5);
    const leader1 = checkOneLeader(c);
    const down = [(leader1 % 5) + 1, ((leader1 + 1) % 5) + 1];
    for (const id of down) c.crash(id);
    one(c, `${10 + index++}`, 3);
    const down2 = [leader1, ((leader1 + 2) % 5) + 1, ((leader1 + 3) % 5) + 1];
    for (const id of down2) c.crash(id);
    for (const id of down) c.restart(id);
    c.tick(ELECTION_TICKS);
    c.restart(((leader1 + 2) % 5) + 1);
    one(c, `${10 + index++}`, 3);
    for (const id of [leader1, ((leader1 + 3) % 5) + 1]) c.restart(id);
  }
  one(c, "1000", 5);
});

Deno.test("persistence: a crashed leader and a lagging follower (persist3)", () => {
  const c = cluster(3, 15);
  one(c, "101", 3);
  const leader = checkOneLeader(c);
  const lagging = (leader % 3) + 1;
  c.isolate(lagging);
  one(c, "102", 2);
  c.crash(leader);
  c.crash((lagging % 3) + 1);
  c.heal();
  c.restart(leader);
  one(c, "103", 2);
  c.restart((lagging % 3) + 1);
  one(c, "104", 3);
});

Deno.test("persistence: a proposal not yet persisted is lost by a crash", () => {
  const c = cluster(3, 16);
  one(c, "kept", 3);
  const leader = checkOneLeader(c);
  const index = proposeAt(c, leader, "volatile")!;
  c.crash(leader); // before any Ready was processed
  c.restart(leader);
  one(c, "after", 3);
  assert.notEqual(c.nCommitted(index).value, "volatile");
  assert.equal(c.node(leader).storage.hardState().vote !== undefined, true);
});

function figure8(seed: number, unreliable: boolean): void {
  const c = cluster(5, seed);
  const prng = mulberry32(seed);
  if (unreliable) c.faults = { dropRate: 0.1, duplicateRate: 0.05, delayTicksMax: 3 };
  one(c, "start", 1);
  let up = 5;
  for (let iteration = 0; iteration < 1000; iteration++) {
    if (unreliable && iteration % 50 === 0) {
      const ids = [...c.ids];
      const cut = ids.filter(() => prng() < 0.4);
      c.partition(cut);
    }
    let leader: number | undefined;
    for (const id of c.ids) {
      if (proposeAt(c, id, `r${iteration}`) !== undefined) leader = id;
    }
    c.tick(prng() < 0.1 ? randomInt(prng, 2 * ELECTION_TICKS) : randomInt(prng, 3));
    if (leader !== undefined && c.node(leader).alive && prng() < 0.5) {
      c.crash(leader);
      up--;
    }
    if (up < 3) {
      const down = c.ids.filter((id) => !c.node(id).alive);
      c.restart(down[randomInt(prng, down.length)]);
      up++;
    }
  }
  c.faults = { dropRate: 0, duplicateRate: 0, delayTicksMax: 0 };
  c.heal();
  for (const id of c.ids) if (!c.node(id).alive) c.restart(id);
  const final = one(c, "final", 5);
  assert.ok(final > 10, `only ${final} entries committed`);
}

Deno.test("figure 8: leaders crash with uncommitted entries (reliable)", () => {
  figure8(17, false);
});

Deno.test("figure 8: leaders crash with uncommitted entries (unreliable)", () => {
  figure8(18, true);
});

Deno.test("unreliable agreement: loss, duplication and reordering", () => {
  const c = cluster(5, 19);
  c.faults = { dropRate: 0.1, duplicateRate: 0.1, delayTicksMax: 3 };
  for (let i = 0; i < 30; i++) {
    for (const id of c.ids) proposeAt(c, id, `u${i}-${id}`);
    c.tick(2);
  }
  c.faults = { dropRate: 0, duplicateRate: 0, delayTicksMax: 0 };
  one(c, "100", 5);
});

function churn(seed: number, unreliable: boolean): void {
  const c = cluster(5, seed);
  const prng = mulberry32(seed);
  if (unreliable) c.faults = { dropRate: 0.1, duplicateRate: 0.05, delayTicksMax: 2 };
  const proposed: { index: number; text: string }[] = [];
  for (let iteration = 0; iteration < 500; iteration++) {
    const id = c.ids[randomInt(prng, 5)];
    const text = `churn${iteration}`;
    const index = proposeAt(c, id, text);
    if (index !== undefined) proposed.push({ index, text });
    const r = prng();
    if (r < 0.1) c.crash(c.ids[randomInt(prng, 5)]);
    else if (r < 0.2) c.isolate(c.ids[randomInt(prng, 5)]);
    else if (r < 0.4) c.heal();
    for (const other of c.ids) if (!c.node(other).alive && prng() < 0.3) c.restart(other);
    c.tick(randomInt(prng, 4));
  }
  c.faults = { dropRate: 0, duplicateRate: 0, delayTicksMax: 0 };
  c.heal();
  for (const id of c.ids) if (!c.node(id).alive) c.restart(id);
  const last = one(c, "churn-end", 5);
  // Every entry that was applied anywhere is applied everywhere (the checker
  // also verified that no index was applied with two different values).
  for (let index = 1; index <= last; index++) assert.equal(c.nCommitted(index).count, 5);
  const committed = proposed.filter((p) => c.nCommitted(p.index).value === p.text).length;
  assert.ok(committed > 20, `only ${committed} proposals committed`);
}

Deno.test("reliable churn: random crashes, restarts and partitions", () => {
  churn(20, false);
});

Deno.test("unreliable churn: churn on a lossy, reordering network", () => {
  churn(21, true);
});

// ------------------------------------------------------------------ 2D: snapshots

const SNAPSHOT_EVERY = 10;

Deno.test("snapshot basic: logs are compacted while commits continue", () => {
  const c = cluster(3, 22, { snapshotEveryEntries: SNAPSHOT_EVERY });
  for (let i = 0; i < 40; i++) one(c, `s${i}`, 3);
  for (const id of c.ids) {
    assert.ok(c.node(id).storage.firstIndex() > 20, `node ${id} log not compacted`);
  }
});

function snapshotInstall(seed: number, options: { crash: boolean; unreliable: boolean }): void {
  const c = cluster(3, seed, { snapshotEveryEntries: SNAPSHOT_EVERY });
  if (options.unreliable) c.faults = { dropRate: 0.1, duplicateRate: 0.05, delayTicksMax: 2 };
  one(c, "first", 1);
  for (let iteration = 0; iteration < 8; iteration++) {
    const leader = checkOneLeader(c);
    const victim = (leader % 3) + 1;
    if (options.crash) c.crash(victim);
    else c.isolate(victim);
    for (let i = 0; i < SNAPSHOT_EVERY + 1; i++) {
      proposeAt(c, c.leader() ?? leader, `i${iteration}-${i}`);
    }
    one(c, `m${iteration}`, 2);
    if (options.crash) c.restart(victim);
    else c.heal();
    one(c, `j${iteration}`, 3);
  }
  c.faults = { dropRate: 0, duplicateRate: 0, delayTicksMax: 0 };
  one(c, "last", 3);
  assert.ok(c.sentCount("snapshot") > 0, "no snapshot was sent");
}

Deno.test("snapshot install to a disconnected follower (reliable)", () => {
  snapshotInstall(23, { crash: false, unreliable: false });
});

Deno.test("snapshot install to a disconnected follower (unreliable)", () => {
  snapshotInstall(24, { crash: false, unreliable: true });
});

Deno.test("snapshot install to a crashed follower", () => {
  snapshotInstall(25, { crash: true, unreliable: false });
});

Deno.test("snapshot install to a crashed follower on an unreliable network", () => {
  snapshotInstall(26, { crash: true, unreliable: true });
});

Deno.test("full-cluster crash after snapshots, then progress continues", () => {
  const c = cluster(3, 27, { snapshotEveryEntries: SNAPSHOT_EVERY });
  let last = 0;
  for (let iteration = 0; iteration < 5; iteration++) {
    for (let i = 0; i < SNAPSHOT_EVERY + 2; i++) one(c, `a${iteration}-${i}`, 3);
    for (const id of c.ids) c.crash(id);
    for (const id of c.ids) c.restart(id);
    const index = one(c, `b${iteration}`, 3);
    assert.ok(index > last);
    last = index;
  }
  for (const id of c.ids) {
    const node = c.node(id);
    assert.ok(node.storage.snapshot().kind === "ok");
    assert.ok(node.storage.firstIndex() > 1);
  }
});

Deno.test("snapshot init: restart from a snapshot with an empty log", () => {
  const c = cluster(3, 28, { snapshotEveryEntries: 1 });
  one(c, "only", 3);
  for (const id of c.ids) c.crash(id);
  for (const id of c.ids) c.restart(id);
  one(c, "again", 3);
  for (const id of c.ids) c.crash(id);
  for (const id of c.ids) c.restart(id);
  one(c, "and again", 3);
  for (const id of connectedTo(c, 1)) assert.ok(c.node(id).applied > 0);
});

// ------------------------------------------------------------------ pre-vote and check-quorum

Deno.test("pre-vote: a partitioned follower rejoining does not depose a healthy leader", () => {
  const c = cluster(3, 29);
  one(c, "x", 3);
  const leader = checkOneLeader(c);
  const term = termOf(c, leader);
  const follower = c.ids.find((id) => id !== leader)!;
  c.isolate(follower);
  c.tick(10 * ELECTION_TICKS);
  assert.equal(termOf(c, follower), term, "pre-vote keeps the isolated node's term");
  assert.ok(c.sentCount("requestPreVote") > 0);
  c.heal();
  c.tick(3 * ELECTION_TICKS);
  assert.equal(c.leader(), leader);
  assert.equal(termOf(c, leader), term);
  one(c, "y", 3);
});

Deno.test("check-quorum: an isolated leader steps down within two election timeouts", () => {
  const c = cluster(3, 30);
  one(c, "x", 3);
  const leader = checkOneLeader(c);
  c.isolate(leader);
  c.tick(2 * ELECTION_TICKS);
  assert.equal(c.raw(leader).status().role, "follower");
  assert.equal(c.raw(leader).propose(bytes("late")).kind, "notLeader");
});

Deno.test("overload: a leader cut off from its followers refuses proposals past the bound", () => {
  const c = new Cluster({
    voters: 3,
    seed: 31,
    node: { electionTicks: ELECTION_TICKS, uncommittedBytesMax: 1000, checkQuorum: false },
  });
  one(c, "x", 3);
  const leader = checkOneLeader(c);
  c.isolate(leader);
  const results = Array.from({ length: 20 }, () => c.raw(leader).propose(new Uint8Array(100)));
  assert.equal(results.filter((r) => r.kind === "ok").length, 10);
  assert.deepEqual(results[19], { kind: "overloaded", uncommittedBytes: 1000 });
});
