/**
 * Rule-by-rule, table-driven tests of the Raft state machine (the private
 * `Raft` class behind `RawNode`): each case gives a node's state and one
 * message, and checks the next state and the messages sent. Paper sections
 * are cited as in etcd's raft_paper_test.go.
 */

import assert from "node:assert/strict";
import {
  appendMessage,
  appendResponse,
  entriesWithTerms,
  forceLeader,
  i,
  logTerms,
  n,
  newRaft,
  pump,
  t,
  voteMessage,
} from "./_test_helpers.ts";
import { Raft } from "./_raft.ts";
import type { MemoryStorage } from "./storage.ts";
import { createEntry, encodeConfChange } from "./types.ts";
import { mulberry32 } from "./prng.ts";
import type { AppendResponseMessage, Message, VoteResponseMessage } from "./messages.ts";

type MessageOf<T extends Message["type"]> = Message extends infer M
  ? M extends { type: infer U } ? T extends U ? M : never : never
  : never;

function only<T extends Message["type"]>(raft: Raft, type: T): MessageOf<T> {
  const messages = raft.takeMessages();
  assert.equal(messages.length, 1, `expected one message, got ${JSON.stringify(messages)}`);
  assert.equal(messages[0].type, type);
  return messages[0] as MessageOf<T>;
}

// ------------------------------------------------------------------ AppendEntries receiver

Deno.test("handleAppend() follows paper figure 2 receiver rules 1-5", () => {
  // Follower 2 in term 2 with entries 1@1 and 2@2, nothing committed.
  const cases: {
    prev: [number, number];
    entries?: number[];
    commit: number;
    want: {
      log: number[];
      commit: number;
      reject: boolean;
      index: number;
      hint?: [number, number];
    };
  }[] = [
    // Rule 2: no entry at prevLogIndex with prevLogTerm: reject, hint at our last fit.
    {
      prev: [2, 3],
      commit: 3,
      want: { log: [1, 2], commit: 0, reject: true, index: 2, hint: [2, 2] },
    },
    {
      prev: [3, 3],
      commit: 3,
      want: { log: [1, 2], commit: 0, reject: true, index: 3, hint: [2, 2] },
    },
    // Match: commit = min(leaderCommit, index of last new entry) (rule 5).
    { prev: [1, 1], commit: 1, want: { log: [1, 2], commit: 1, reject: false, index: 1 } },
    // Rule 3: a conflicting entry and all that follow it are deleted.
    {
      prev: [0, 0],
      entries: [2],
      commit: 1,
      want: { log: [2], commit: 1, reject: false, index: 1 },
    },
    // Rule 4: new entries are appended.
    {
      prev: [2, 2],
      entries: [2, 2],
      commit: 3,
      want: { log: [1, 2, 2, 2], commit: 3, reject: false, index: 4 },
    },
    {
      prev: [2, 2],
      entries: [2],
      commit: 4,
      want: { log: [1, 2, 2], commit: 3, reject: false, index: 3 },
    },
    // An entry we already have is not a conflict; nothing is truncated.
    {
      prev: [1, 1],
      entries: [2],
      commit: 4,
      want: { log: [1, 2], commit: 2, reject: false, index: 2 },
    },
    { prev: [2, 2], commit: 2, want: { log: [1, 2], commit: 2, reject: false, index: 2 } },
    { prev: [2, 2], commit: 4, want: { log: [1, 2], commit: 2, reject: false, index: 2 } },
  ];
  for (const [k, c] of cases.entries()) {
    const raft = newRaft(2, [1, 2, 3], { logTerms: [1, 2], term: 2 });
    const entries = entriesWithTerms(c.entries ?? [], c.prev[0] + 1);
    raft.step(appendMessage({
      from: 1,
      to: 2,
      term: 2,
      prevLogIndex: c.prev[0],
      prevLogTerm: c.prev[1],
      entries,
      commit: c.commit,
    }));
    const reply = only(raft, "appendResponse");
    assert.deepEqual(logTerms(raft), c.want.log, `case ${k}: log`);
    assert.equal(raft.log.committed, c.want.commit, `case ${k}: commit`);
    assert.equal(reply.reject, c.want.reject, `case ${k}: reject`);
    assert.equal(reply.index, c.want.index, `case ${k}: index`);
    if (c.want.hint) assert.deepEqual([reply.hintIndex, reply.hintTerm], c.want.hint, `case ${k}`);
    assert.equal(raft.leader, 1);
    assert.equal(raft.electionElapsed, 0);
  }
});

Deno.test("handleAppend() answers an append below the commit index with the commit index", () => {
  const raft = newRaft(2, [1, 2, 3], { logTerms: [1, 1, 1], term: 1, commit: 3 });
  raft.step(appendMessage({ from: 1, to: 2, term: 1, prevLogIndex: 1, prevLogTerm: 1 }));
  const reply = only(raft, "appendResponse");
  assert.equal(reply.reject, false);
  assert.equal(reply.index, 3);
});

Deno.test("handleAppend() rejection hints skip a whole conflicting term", () => {
  // Follower log terms [1, 2, 2, 2, 5].
  const cases = [
    { prev: [5, 6], hint: [5, 5] },
    { prev: [4, 3], hint: [4, 2] },
    { prev: [7, 4], hint: [4, 2] },
    { prev: [5, 1], hint: [1, 1] },
  ];
  for (const c of cases) {
    const raft = newRaft(2, [1, 2], { logTerms: [1, 2, 2, 2, 5], term: 6 });
    raft.step(
      appendMessage({ from: 1, to: 2, term: 6, prevLogIndex: c.prev[0], prevLogTerm: c.prev[1] }),
    );
    const reply = only(raft, "appendResponse");
    assert.equal(reply.reject, true);
    assert.deepEqual([reply.hintIndex, reply.hintTerm], c.hint, `prev ${c.prev}`);
  }
});

Deno.test("leader uses the hint to jump back a term at once", () => {
  const leader = newRaft(1, [1, 2], { logTerms: [1, 2, 2, 3, 3, 3, 3], term: 3 });
  forceLeader(leader); // term 4, empty entry at 8
  assert.equal(leader.progress.get(n(2))!.next, 8);
  leader.step(
    appendResponse({ from: 2, to: 1, term: 4, index: 7, reject: true, hintIndex: 4, hintTerm: 2 }),
  );
  const probe = only(leader, "append");
  // The leader's last entry with term <= 2 at or below 4 is index 3.
  assert.equal(probe.prevLogIndex, 3);
  assert.equal(probe.prevLogTerm, 2);
  assert.equal(probe.entries.length, 5);
  assert.equal(leader.progress.get(n(2))!.state, "probe");
});

// ------------------------------------------------------------------ RequestVote receiver

Deno.test("handleVoteRequest() grants only to up-to-date logs and once per term (§5.2, §5.4.1)", () => {
  // Node 1 in term 2 with log [2, 2]; candidate 2 asks in term 2.
  const cases: {
    role: "follower" | "preCandidate" | "candidate" | "leader";
    last: [number, number];
    vote?: number;
    reject: boolean;
  }[] = [
    { role: "follower", last: [0, 0], reject: true },
    { role: "follower", last: [0, 1], reject: true },
    { role: "follower", last: [0, 2], reject: true },
    { role: "follower", last: [0, 3], reject: false },
    { role: "follower", last: [1, 1], reject: true },
    { role: "follower", last: [1, 2], reject: true },
    { role: "follower", last: [1, 3], reject: false },
    { role: "follower", last: [2, 1], reject: true },
    { role: "follower", last: [2, 2], reject: false },
    { role: "follower", last: [2, 3], reject: false },
    { role: "follower", last: [3, 1], reject: true },
    { role: "follower", last: [3, 2], reject: false },
    { role: "follower", last: [3, 3], reject: false },
    { role: "follower", last: [3, 2], vote: 2, reject: false },
    { role: "follower", last: [3, 2], vote: 3, reject: true },
    { role: "leader", last: [3, 3], reject: true },
    { role: "candidate", last: [3, 3], reject: true },
  ];
  for (const [k, c] of cases.entries()) {
    const raft = newRaft(1, [1, 2, 3], {
      logTerms: [2, 2],
      term: c.role === "follower" ? 2 : 1,
      vote: c.vote,
    });
    if (c.role === "candidate") raft.becomeCandidate();
    if (c.role === "leader") forceLeader(raft);
    assert.equal(raft.term, 2);
    raft.step(
      voteMessage({ from: 2, to: 1, term: 2, lastLogIndex: c.last[0], lastLogTerm: c.last[1] }),
    );
    const reply = only(raft, "requestVoteResponse") as VoteResponseMessage;
    assert.equal(reply.reject, c.reject, `case ${k}`);
    if (!c.reject) assert.equal(raft.vote, 2, `case ${k}: vote recorded`);
  }
});

Deno.test("pre-vote rules: no term change, lease stickiness, stale terms rejected (§9.6)", () => {
  // A pre-vote for term 3 from an up-to-date node is granted in term 3, but changes nothing.
  const voter = newRaft(1, [1, 2, 3], { logTerms: [1, 2], term: 2, vote: 3, preVote: true });
  voter.step(
    voteMessage({ from: 2, to: 1, term: 3, lastLogIndex: 2, lastLogTerm: 2, preVote: true }),
  );
  let reply = only(voter, "requestPreVoteResponse");
  assert.deepEqual([reply.reject, reply.term], [false, 3]);
  assert.deepEqual([voter.term, voter.vote], [2, 3]);

  // A stale log is rejected, answered in the voter's own term.
  voter.step(
    voteMessage({ from: 2, to: 1, term: 3, lastLogIndex: 1, lastLogTerm: 1, preVote: true }),
  );
  reply = only(voter, "requestPreVoteResponse");
  assert.deepEqual([reply.reject, reply.term], [true, 2]);

  // A pre-vote from a lower term is rejected with our term, so the sender catches up.
  voter.step(
    voteMessage({ from: 2, to: 1, term: 1, lastLogIndex: 9, lastLogTerm: 9, preVote: true }),
  );
  reply = only(voter, "requestPreVoteResponse");
  assert.deepEqual([reply.reject, reply.term], [true, 2]);

  // With check-quorum, a follower that hears from its leader ignores (pre-)votes...
  const sticky = newRaft(1, [1, 2, 3], {
    logTerms: [1, 2],
    term: 2,
    preVote: true,
    checkQuorum: true,
  });
  sticky.step({
    type: "heartbeat",
    from: n(3),
    to: n(1),
    term: t(2),
    commit: i(0),
    round: 0,
    quiesce: false,
  });
  sticky.takeMessages();
  sticky.step(
    voteMessage({ from: 2, to: 1, term: 3, lastLogIndex: 2, lastLogTerm: 2, preVote: true }),
  );
  sticky.step(voteMessage({ from: 2, to: 1, term: 3, lastLogIndex: 2, lastLogTerm: 2 }));
  assert.deepEqual(sticky.takeMessages(), []);
  assert.equal(sticky.term, 2);
  // ...unless a leader transfer asked for the election.
  sticky.step(
    voteMessage({ from: 2, to: 1, term: 3, lastLogIndex: 2, lastLogTerm: 2, transfer: true }),
  );
  assert.equal(only(sticky, "requestVoteResponse").reject, false);
  assert.deepEqual([sticky.term, sticky.vote], [3, 2]);
});

Deno.test("a pre-candidate becomes a candidate only with a majority of pre-votes", () => {
  const raft = newRaft(1, [1, 2, 3], { logTerms: [1], term: 1, preVote: true });
  raft.campaign("preElection");
  assert.equal(raft.role, "preCandidate");
  assert.equal(raft.term, 1, "pre-vote does not bump the term");
  const requests = raft.takeMessages();
  assert.deepEqual(requests.map((m) => [m.type, m.to, m.term]), [["requestPreVote", 2, 2], [
    "requestPreVote",
    3,
    2,
  ]]);
  raft.step({ type: "requestPreVoteResponse", from: n(2), to: n(1), term: t(2), reject: false });
  assert.equal(raft.role, "candidate");
  assert.equal(raft.term, 2);
  assert.deepEqual(raft.takeMessages().map((m) => [m.type, m.to, m.term]), [["requestVote", 2, 2], [
    "requestVote",
    3,
    2,
  ]]);
  raft.step({ type: "requestVoteResponse", from: n(3), to: n(1), term: t(2), reject: false });
  assert.equal(raft.role, "leader");
});

Deno.test("a candidate that loses the vote returns to follower", () => {
  const raft = newRaft(1, [1, 2, 3], { term: 1 });
  raft.campaign("election");
  raft.takeMessages();
  raft.step({ type: "requestVoteResponse", from: n(2), to: n(1), term: t(2), reject: true });
  assert.equal(raft.role, "candidate");
  raft.step({ type: "requestVoteResponse", from: n(3), to: n(1), term: t(2), reject: true });
  assert.equal(raft.role, "follower");
  assert.equal(raft.term, 2);
});

// ------------------------------------------------------------------ terms and roles

Deno.test("any role steps down on a higher term; candidates yield to a same-term leader (§5.1, §5.2)", () => {
  for (const role of ["follower", "candidate", "leader"] as const) {
    const raft = newRaft(1, [1, 2, 3], { term: 1 });
    if (role === "candidate") raft.becomeCandidate();
    if (role === "leader") forceLeader(raft);
    raft.step(appendMessage({ from: 2, to: 1, term: 5, prevLogIndex: 0, prevLogTerm: 0 }));
    assert.deepEqual([raft.role, raft.term, raft.leader], ["follower", 5, 2], role);
  }
  const candidate = newRaft(1, [1, 2, 3], { term: 1 });
  candidate.becomeCandidate(); // term 2
  candidate.step({
    type: "heartbeat",
    from: n(3),
    to: n(1),
    term: t(2),
    commit: i(0),
    round: 0,
    quiesce: false,
  });
  assert.deepEqual([candidate.role, candidate.leader], ["follower", 3]);
});

Deno.test("a stale leader learns the new term from a follower and steps down", () => {
  // Follower 2 is in term 3; the old leader 1 still thinks it is term 2.
  const follower = newRaft(2, [1, 2, 3], { logTerms: [1], term: 3, checkQuorum: true });
  follower.step(
    appendMessage({
      from: 1,
      to: 2,
      term: 2,
      prevLogIndex: 1,
      prevLogTerm: 1,
      entries: entriesWithTerms([2], 2),
    }),
  );
  const reply = only(follower, "appendResponse");
  assert.equal(reply.term, 3);
  assert.deepEqual(logTerms(follower), [1], "the stale append changed nothing");

  const stale = newRaft(1, [1, 2, 3], { logTerms: [1], term: 1 });
  forceLeader(stale); // term 2
  const proposal = stale.propose(new Uint8Array([7]));
  assert.equal(proposal.kind, "ok");
  stale.step(reply as AppendResponseMessage);
  assert.deepEqual([stale.role, stale.term], ["follower", 3]);
  assert.equal(stale.log.committed, 0, "the stale proposal is not committed");
  // The new leader's entries replace the stale, uncommitted ones.
  stale.step(
    appendMessage({
      from: 2,
      to: 1,
      term: 3,
      prevLogIndex: 1,
      prevLogTerm: 1,
      entries: entriesWithTerms([3], 2),
      commit: 2,
    }),
  );
  assert.deepEqual(logTerms(stale), [1, 3]);
  assert.equal(stale.propose(new Uint8Array([8])).kind, "notLeader");
});

// ------------------------------------------------------------------ commitment

Deno.test("maybeCommit() only counts replicas for entries of the current term (§5.4.2, figure 8)", () => {
  const cases = [
    { acked: 1, commit: 0 },
    { acked: 2, commit: 0 },
    { acked: 3, commit: 3 },
  ];
  for (const c of cases) {
    const leader = newRaft(1, [1, 2, 3], { logTerms: [1, 2], term: 2 });
    forceLeader(leader); // term 3, entry 3@3
    leader.step(appendResponse({ from: 2, to: 1, term: 3, index: c.acked }));
    assert.equal(leader.log.committed, c.commit, `acked ${c.acked}`);
  }
});

Deno.test("figure 8: an old-term entry on a majority is not committed and may be overwritten", () => {
  // (c) S1 leads term 4 with [1@1, 2@2]; S3 also has 2@2, S2 too: a majority of five.
  const s1 = newRaft(1, [1, 2, 3, 4, 5], { logTerms: [1, 2], term: 3, commit: 1 });
  forceLeader(s1); // term 4, entry 3@4 not replicated yet
  s1.step(appendResponse({ from: 2, to: 1, term: 4, index: 2 }));
  s1.step(appendResponse({ from: 3, to: 1, term: 4, index: 2 }));
  assert.equal(s1.log.committed, 1, "2@2 is on a majority but must not commit");
  // (d) S5, with 2@3, can still win S3's vote and overwrite 2@2 on it.
  const s3 = newRaft(3, [1, 2, 3, 4, 5], { logTerms: [1, 2], term: 4, commit: 1 });
  s3.step(voteMessage({ from: 5, to: 3, term: 5, lastLogIndex: 2, lastLogTerm: 3 }));
  assert.equal(only(s3, "requestVoteResponse").reject, false);
  s3.step(
    appendMessage({
      from: 5,
      to: 3,
      term: 5,
      prevLogIndex: 1,
      prevLogTerm: 1,
      entries: entriesWithTerms([3], 2),
    }),
  );
  assert.deepEqual(logTerms(s3), [1, 3]);
  // (e) If instead S1 replicates its term-4 entry to a majority, both commit.
  s1.step(appendResponse({ from: 2, to: 1, term: 4, index: 3 }));
  s1.step(appendResponse({ from: 3, to: 1, term: 4, index: 3 }));
  assert.equal(s1.log.committed, 3);
});

Deno.test("figure 7: a new leader brings each follower's log in line with its own", () => {
  const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const followers: Record<string, number[]> = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  for (const [name, log] of Object.entries(followers)) {
    const leader = newRaft(1, [1, 2, 3], {
      logTerms: leaderLog,
      term: 8,
      commit: leaderLog.length,
    });
    const follower = newRaft(2, [1, 2, 3], { logTerms: log, term: 7 });
    // Node 3 has an empty log so that it votes for node 1 even when 2 refuses.
    const voter = newRaft(3, [1, 2, 3], { term: 7 });
    const nodes = new Map([[1, leader], [2, follower], [3, voter]]);
    leader.campaign("election");
    pump(nodes);
    assert.equal(leader.role, "leader", name);
    leader.propose(new Uint8Array([1]));
    pump(nodes);
    assert.deepEqual(logTerms(follower), logTerms(leader), `follower (${name})`);
    assert.deepEqual(logTerms(leader).slice(0, leaderLog.length), leaderLog);
    // The new commit index reaches the follower with the next heartbeat.
    leader.tick();
    pump(nodes);
    assert.equal(follower.log.committed, leader.log.committed, `commit (${name})`);
  }
});

Deno.test("a heartbeat moves the follower's commit index and echoes the read round", () => {
  const raft = newRaft(2, [1, 2, 3], { logTerms: [1, 1, 1], term: 1 });
  raft.step({
    type: "heartbeat",
    from: n(1),
    to: n(2),
    term: t(1),
    commit: i(2),
    round: 7,
    quiesce: false,
  });
  const reply = only(raft, "heartbeatResponse");
  assert.equal(reply.round, 7);
  assert.equal(raft.log.committed, 2);
});

// ------------------------------------------------------------------ timers

Deno.test("election timeouts are randomized in [electionTicks, 2 * electionTicks)", () => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 50; seed++) {
    const raft = newRaft(1, [1, 2, 3], { prng: mulberry32(seed) });
    const timeout = raft.randomizedElectionTimeout;
    assert.ok(timeout >= 10 && timeout < 20, `${timeout}`);
    seen.add(timeout);
  }
  assert.ok(seen.size > 5, "timeouts are not spread");
});

Deno.test("a follower campaigns after its election timeout; a learner never does", () => {
  const raft = newRaft(1, [1, 2, 3]);
  for (let k = 0; k < raft.randomizedElectionTimeout; k++) raft.tick();
  assert.equal(raft.role, "candidate");
  const learner = newRaft(4, [1, 2, 3], { learners: [4] });
  for (let k = 0; k < 100; k++) learner.tick();
  assert.equal(learner.role, "follower");
  assert.deepEqual(learner.takeMessages(), []);
});

Deno.test("check-quorum: a leader that hears no majority within an election timeout steps down", () => {
  const leader = newRaft(1, [1, 2, 3], { checkQuorum: true });
  forceLeader(leader);
  for (let k = 0; k < 10; k++) leader.tick();
  assert.equal(leader.role, "follower");
  // With a reply from one peer (a majority with itself) it stays leader.
  const healthy = newRaft(1, [1, 2, 3], { checkQuorum: true });
  forceLeader(healthy);
  for (let k = 0; k < 19; k++) {
    healthy.tick();
    healthy.step({
      type: "heartbeatResponse",
      from: n(2),
      to: n(1),
      term: healthy.term,
      round: 0,
    });
  }
  assert.equal(healthy.role, "leader");
});

Deno.test("a single voter elects itself and commits at once", () => {
  const raft = newRaft(1, [1]);
  raft.campaign("preElection");
  assert.equal(raft.role, "leader");
  assert.equal(raft.log.committed, 1);
  const result = raft.propose(new Uint8Array([1]));
  assert.deepEqual(result, { kind: "ok", index: 2, term: 1 });
  assert.equal(raft.log.committed, 2);
});

// ------------------------------------------------------------------ replication flow control

Deno.test("probe sends one append at a time; replicate pipelines up to the inflight window", () => {
  const leader = newRaft(1, [1, 2], { inflightMessagesMax: 3, appendBytesMax: 1 });
  forceLeader(leader);
  leader.flush();
  assert.equal(leader.takeMessages().length, 1, "one probe");
  const pr = leader.progress.get(n(2))!;
  assert.equal(pr.state, "probe");
  for (let k = 0; k < 5; k++) leader.propose(new Uint8Array([k]));
  leader.flush();
  assert.equal(leader.takeMessages().length, 0, "paused while the probe is outstanding");
  leader.step(appendResponse({ from: 2, to: 1, term: 1, index: 1 }));
  assert.equal(pr.state, "replicate");
  // One entry per message (appendBytesMax 1), at most 3 in flight.
  const sent = leader.takeMessages().filter((m) => m.type === "append");
  assert.equal(sent.length, 3);
  assert.equal(pr.inflights.count, 3);
  leader.step(appendResponse({ from: 2, to: 1, term: 1, index: 3 }));
  assert.equal(leader.takeMessages().filter((m) => m.type === "append").length, 2);
  // A rejection sends the follower back to probe.
  leader.step(
    appendResponse({ from: 2, to: 1, term: 1, index: 4, reject: true, hintIndex: 3, hintTerm: 1 }),
  );
  assert.equal(pr.state, "probe");
  assert.equal(pr.next, 4);
});

Deno.test("entryOverheadBytes bounds an append of many small entries by their framing too", () => {
  // 100 one-byte entries: 100 bytes of data, but 100 * (1 + 9) = 1000 counted with a framing of 9
  // bytes each, so an appendBytesMax of 100 lets only 10 entries into one message.
  const leader = newRaft(1, [1, 2], { appendBytesMax: 100, entryOverheadBytes: 9 });
  forceLeader(leader);
  leader.step(appendResponse({ from: 2, to: 1, term: 1, index: 1 }));
  leader.flush();
  leader.takeMessages();
  for (let k = 0; k < 100; k++) leader.propose(new Uint8Array([k]));
  leader.flush();
  const appends = leader.takeMessages().filter((m) => m.type === "append");
  assert.ok(appends.length > 0);
  for (const m of appends) assert.equal(m.type === "append" && m.entries.length, 10);
  // Without the overhead, all 100 fit in one message of 100 bytes.
  const plain = newRaft(1, [1, 2], { appendBytesMax: 100 });
  forceLeader(plain);
  plain.step(appendResponse({ from: 2, to: 1, term: 1, index: 1 }));
  plain.flush();
  plain.takeMessages();
  for (let k = 0; k < 100; k++) plain.propose(new Uint8Array([k]));
  plain.flush();
  const one = plain.takeMessages().filter((m) => m.type === "append");
  assert.equal(one.length, 1);
  assert.equal(one[0].type === "append" && one[0].entries.length, 100);
});

Deno.test("many proposals of one turn travel in one append per follower", () => {
  const leader = newRaft(1, [1, 2, 3]);
  forceLeader(leader);
  for (const id of [2, 3]) leader.step(appendResponse({ from: id, to: 1, term: 1, index: 1 }));
  leader.flush();
  leader.takeMessages();
  for (let k = 0; k < 100; k++) leader.propose(new Uint8Array([k]));
  leader.flush();
  const appends = leader.takeMessages();
  assert.equal(appends.length, 2);
  for (const m of appends) assert.equal(m.type === "append" && m.entries.length, 100);
});

Deno.test("the uncommitted bytes bound refuses proposals until entries commit", () => {
  const leader = newRaft(1, [1, 2, 3], { uncommittedBytesMax: 100 });
  forceLeader(leader);
  assert.equal(leader.propose(new Uint8Array(60)).kind, "ok");
  const refused = leader.propose(new Uint8Array(60));
  assert.deepEqual(refused, { kind: "overloaded", uncommittedBytes: 60 });
  assert.equal(leader.propose(new Uint8Array(40)).kind, "ok");
  leader.reduceUncommitted(entriesWithTerms([1]).map((e) => ({ ...e, data: new Uint8Array(60) })));
  assert.equal(leader.propose(new Uint8Array(60)).kind, "ok");
});

// ------------------------------------------------------------------ snapshots

Deno.test("a follower installs a snapshot it lacks and fast-forwards one it has", () => {
  const snapshot = {
    metadata: {
      index: i(10),
      term: t(3),
      confState: { voters: [n(1), n(2), n(3)], learners: [], epoch: i(0) },
    },
    data: new Uint8Array([42]),
  };
  const behind = newRaft(2, [1, 2, 3], { logTerms: [1, 1], term: 3 });
  behind.step({ type: "snapshot", from: n(1), to: n(2), term: t(3), snapshot });
  let reply = only(behind, "appendResponse");
  assert.deepEqual([reply.reject, reply.index], [false, 10]);
  assert.equal(behind.log.committed, 10);
  assert.equal(behind.log.lastIndex(), 10);
  assert.equal(behind.log.unstable.snapshot, snapshot);

  const matching = newRaft(2, [1, 2, 3], { logTerms: [1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3], term: 3 });
  matching.step({ type: "snapshot", from: n(1), to: n(2), term: t(3), snapshot });
  reply = only(matching, "appendResponse");
  assert.deepEqual([reply.reject, reply.index], [false, 10]);
  assert.equal(matching.log.lastIndex(), 11, "the log is kept");
  assert.equal(matching.log.unstable.snapshot, undefined);
});

Deno.test("reportSnapshot() moves a follower out of snapshot state", () => {
  for (const status of ["success", "failure"] as const) {
    const leader = newRaft(1, [1, 2]);
    forceLeader(leader);
    const pr = leader.progress.get(n(2))!;
    pr.becomeSnapshot(i(10));
    leader.reportSnapshot(n(2), status);
    assert.equal(pr.state, "probe");
    assert.equal(pr.next, status === "success" ? 11 : 1);
    assert.equal(pr.probeSent, true, "waits for a reply before probing");
  }
});

Deno.test("a node with a committed but unapplied conf change does not campaign", () => {
  const storage = newRaft(1, [1, 2, 3]).log.storage as MemoryStorage;
  storage.append([
    createEntry({ term: t(1), index: i(1) }),
    createEntry({
      term: t(1),
      index: i(2),
      type: "confChange",
      data: encodeConfChange({ type: "addLearner", nodeId: n(4) }),
    }),
  ]);
  storage.setHardState({ term: t(1), vote: undefined, commit: i(2) });
  const raft = new Raft({ ...newRaft(1, [1, 2, 3]).options, storage, applied: i(1) });
  raft.campaign("election");
  assert.equal(raft.role, "follower");
  raft.log.appliedTo(i(2));
  raft.campaign("election");
  assert.equal(raft.role, "candidate");
});
