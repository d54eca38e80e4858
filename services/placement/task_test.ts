// Checks the move state machine step by step: each step first looks whether its effect is already
// visible (idempotence), asks for the change fenced by the conf epoch as seen, waits for a leader,
// a caught-up learner or a live majority, and fails with a reason when the move cannot go on. Then
// its invariants: a new peer id is no member's, the step index stays within the steps (decodeTask
// refuses a stored task that breaks either), and its switches are exhaustive.
import assert from "node:assert/strict";
import { nodeId, shardId } from "@tinykv/shard";
import { AssertionError } from "./_assert.ts";
import {
  advanced,
  decodeTask,
  encodeTask,
  expired,
  failedOnce,
  moveEnds,
  newTask,
  nextAction,
  STEP_FAILURES_MAX,
  STEP_TIMEOUT_MS,
  type Task,
} from "./task.ts";
import { peer, view } from "./_testing.ts";

const live = (...nodes: string[]) => ({
  address: (node: string) => nodes.includes(node) ? `addr-${node}` : undefined,
});
const everyone = live("n1", "n2", "n3", "n4");

function moveN1ToN4(): Task {
  return newTask(
    { kind: "moveReplica", shardId: shardId(1), from: nodeId("n1"), to: nodeId("n4") },
    { cause: "operator", reason: "test", leader: "n1", nowMs: 0 },
  );
}

Deno.test("nextAction() walks a move of the leader's replica through every step", () => {
  let task = moveN1ToN4();
  assert.deepEqual(task.steps.map((s) => s.kind), [
    "addLearner",
    "promoteLearner",
    "transferLeader",
    "removeMember",
  ]);
  assert.equal(nextAction(task, view(), everyone).kind, "allocatePeerId");
  task = { ...task, newPeerId: 40 };
  const create = nextAction(task, view(), everyone);
  assert.equal(create.kind, "createReplica");
  if (create.kind === "createReplica") {
    assert.deepEqual(create.learners.map((m) => m.peerId), [40]);
    assert.equal(create.confEpoch, 4);
  }
  const hosted = new Map(view().hosted);
  hosted.set("n4", { peerId: 40, role: 5, appliedIndex: 0, confEpoch: 4 });
  const add = nextAction(task, view({ hosted }), everyone);
  assert.equal(add.kind, "changeMembership");
  if (add.kind === "changeMembership") {
    assert.equal(add.change, "addLearner");
    assert.equal(add.expectedConfEpoch, 4);
    assert.equal(add.leader.nodeId, "n1");
  }
  // The learner is in the configuration: the step is done.
  const withLearner = view({ learners: [peer("n4", 40)], confEpoch: 5, hosted });
  assert.equal(nextAction(task, withLearner, everyone).kind, "advance");
  task = advanced(task, 1);
  // It is behind: wait; caught up: promote.
  const behind = nextAction(task, withLearner, everyone);
  assert.equal(behind.kind, "wait");
  const caughtUp = view({
    learners: [peer("n4", 40)],
    confEpoch: 5,
    progress: new Map([[40, 99]]),
  });
  const promote = nextAction(task, caughtUp, everyone);
  assert.equal(promote.kind === "changeMembership" && promote.change, "promote");
  const promoted = view({
    voters: [...view().voters, peer("n4", 40)],
    confEpoch: 6,
  });
  assert.equal(nextAction(task, promoted, everyone).kind, "advance");
  task = advanced(task, 2);
  const transfer = nextAction(task, promoted, everyone);
  assert.equal(transfer.kind === "transferLeader" && transfer.target.nodeId, "n4");
  const ledByN4 = { ...promoted, leader: peer("n4", 40) };
  assert.equal(nextAction(task, ledByN4, everyone).kind, "advance");
  task = advanced(task, 3);
  const remove = nextAction(task, ledByN4, everyone);
  assert.equal(remove.kind === "changeMembership" && remove.peer.nodeId, "n1");
  const removed = view({
    voters: [peer("n2", 2), peer("n3", 3), peer("n4", 40)],
    leader: peer("n4", 40),
    confEpoch: 7,
  });
  assert.equal(nextAction(task, removed, everyone).kind, "advance");
  assert.equal(nextAction(advanced(task, 4), removed, everyone).kind, "done");
});

Deno.test("nextAction() waits without a leader and fails on an unknown shard or target", () => {
  const task = { ...moveN1ToN4(), newPeerId: 40 };
  assert.equal(nextAction(task, view({ leader: undefined }), everyone).kind, "wait");
  assert.equal(nextAction(task, undefined, everyone).kind, "fail");
  assert.equal(nextAction(task, view(), live("n1", "n2", "n3")).kind, "fail");
  const otherIncarnation = view({ learners: [peer("n4", 77)] });
  assert.equal(nextAction(task, otherIncarnation, everyone).kind, "fail");
});

Deno.test("nextAction() removes a leader only after moving its leadership", () => {
  const task = newTask({ kind: "removeReplica", shardId: shardId(1), from: nodeId("n1") }, {
    cause: "overReplicated",
    reason: "test",
    leader: "n2",
    nowMs: 0,
  });
  const action = nextAction(task, view(), everyone);
  assert.equal(action.kind, "transferLeader");
});

Deno.test("nextAction() does not remove a voter when the rest would lack a live majority", () => {
  const task = newTask({ kind: "removeReplica", shardId: shardId(1), from: nodeId("n2") }, {
    cause: "operator",
    reason: "test",
    leader: "n1",
    nowMs: 0,
  });
  const fourVoters = view({ voters: [...view().voters, peer("n4", 4)] });
  assert.equal(nextAction(task, fourVoters, live("n1", "n2")).kind, "wait");
  assert.equal(nextAction(task, fourVoters, everyone).kind, "changeMembership");
});

Deno.test("nextAction() fails a leader transfer to a node that is down", () => {
  const task = newTask(
    { kind: "transferLeader", shardId: shardId(1), from: nodeId("n1"), to: nodeId("n3") },
    { cause: "leaderBalance", reason: "test", leader: "n1", nowMs: 0 },
  );
  assert.equal(nextAction(task, view(), live("n1", "n2")).kind, "fail");
  assert.equal(nextAction(task, view(), everyone).kind, "transferLeader");
});

Deno.test("expired() abandons a task stuck on a step or failing too often", () => {
  const task = moveN1ToN4();
  assert.equal(expired(task, STEP_TIMEOUT_MS), undefined);
  assert.match(expired(task, STEP_TIMEOUT_MS + 1)!, /made no progress/);
  const big = { sizeBytes: 10_000, bytesPerSecond: 1000 };
  assert.equal(expired(task, STEP_TIMEOUT_MS + 19_000, big), undefined);
  assert.match(expired(task, STEP_TIMEOUT_MS + 20_001, big)!, /made no progress for 50000 ms/);
  let failing = task;
  for (let i = 0; i <= STEP_FAILURES_MAX; i++) failing = failedOnce(failing, "boom");
  assert.match(expired(failing, 0)!, /failed 21 times \(last: boom\)/);
  assert.equal(advanced(failing, 5).failures, 0);
});

Deno.test("encodeTask() and decodeTask() round-trip; garbage decodes to undefined", () => {
  const task = { ...moveN1ToN4(), newPeerId: 40 };
  assert.deepEqual(decodeTask(encodeTask(task)), task);
  assert.equal(decodeTask("{"), undefined);
  assert.equal(decodeTask('{"move":1}'), undefined);
});

Deno.test("decodeTask() refuses unknown kinds, a step index outside the steps, a bad peer id", () => {
  const task = { ...moveN1ToN4(), newPeerId: 40 };
  const encoded = (fields: Record<string, unknown>) => JSON.stringify({ ...task, ...fields });
  assert.equal(decodeTask(encoded({ stepIndex: task.steps.length }))?.stepIndex, 4);
  assert.equal(decodeTask(encoded({ stepIndex: -1 })), undefined);
  assert.equal(decodeTask(encoded({ stepIndex: task.steps.length + 1 })), undefined);
  assert.equal(decodeTask(encoded({ newPeerId: 0 })), undefined);
  assert.equal(decodeTask(encoded({ newPeerId: "40" })), undefined);
  assert.equal(decodeTask(encoded({ move: { ...task.move, kind: "splitShard" } })), undefined);
  assert.equal(decodeTask(encoded({ steps: [...task.steps, { kind: "splitShard" }] })), undefined);
  assert.equal(decodeTask(encoded({ steps: [null] })), undefined);
});

Deno.test("nextAction() asserts that no member of the shard holds the new peer id", () => {
  // Peer ids are allocated above every one placement has seen: n2's peer 2 cannot be reused.
  const task = { ...moveN1ToN4(), newPeerId: 2 };
  assert.throws(() => nextAction(task, view(), everyone), {
    name: "AssertionError",
    message: "New peer 2 for n4 in shard 1 is already n2's",
  });
});

Deno.test("nextAction() and advanced() assert that the step index stays within the steps", () => {
  const task = moveN1ToN4();
  const done = { ...task, stepIndex: task.steps.length };
  assert.equal(nextAction(done, view(), everyone).kind, "done");
  assert.throws(() => advanced(done, 1), {
    name: "AssertionError",
    message: "Task of shard 1 advanced past its last step 4",
  });
  assert.throws(() => nextAction({ ...task, stepIndex: -1 }, view(), everyone), AssertionError);
  assert.throws(() => nextAction({ ...task, stepIndex: 5 }, view(), everyone), {
    message: "Task of shard 1 is at step 5 of 4",
  });
});

Deno.test("nextAction() and moveEnds() assert that their switches are exhaustive", () => {
  const task = { ...moveN1ToN4(), steps: [{ kind: "splitShard" } as never] };
  assert.throws(() => nextAction(task, view(), everyone), {
    name: "AssertionError",
    message: 'Unknown move step: {"kind":"splitShard"}',
  });
  assert.throws(() => moveEnds({ kind: "splitShard" } as never), {
    name: "AssertionError",
    message: 'Unknown move: {"kind":"splitShard"}',
  });
});
