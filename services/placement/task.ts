/**
 * A move in flight as a small state machine: the {@linkcode Task} record kept in ZooKeeper under
 * `placement/tasks/<shard>` (so a new leader resumes it), and {@linkcode nextAction}, a pure
 * function from the task and the shard as last seen to what to do now.
 *
 * Every step is idempotent: it first checks whether the shard already shows the step's effect
 * (the learner is there, the learner became a voter, the leadership moved, the member is gone)
 * and only then asks for the change, with the shard's conf epoch as seen, so a stale decision is
 * refused by the kvnode (fencing) instead of undoing a newer one.
 *
 * @module
 */
import { type Move, type MoveStep, moveSteps, nodeId } from "@tinykv/shard";
import { assert, unreachable } from "./_assert.ts";
import type { Member, ShardView } from "./cluster_model.ts";

/** How far behind the leader's commit index a learner may be and still be promoted. */
export const CATCH_UP_LAG_ENTRIES_MAX = 8;

/** Where a move came from: the planner's cause, or an operator's call. */
export type TaskCause = string;

/** A move in flight, as recorded in ZooKeeper. */
export interface Task {
  readonly move: Move;
  readonly cause: TaskCause;
  readonly reason: string;
  readonly steps: readonly MoveStep[];
  /**
   * The step being worked on; `steps.length` once done.
   * Invariant: `0 <= stepIndex <= steps.length`.
   */
  readonly stepIndex: number;
  /**
   * The peer id of the replica being added, once allocated (kept so a retry reuses it). A positive
   * integer never used before, so no other member of the shard holds it.
   */
  readonly newPeerId?: number;
  readonly startedAtMs: number;
  /** When the current step began: a step that makes no progress for {@linkcode STEP_TIMEOUT_MS} fails. */
  readonly stepStartedAtMs: number;
  /** How many times the current step's call failed. */
  readonly failures: number;
  readonly lastError?: string;
}

/** The most times one step's call may fail before the task is abandoned (and replanned). */
export const STEP_FAILURES_MAX = 20;
/**
 * The longest one step may take before the task is abandoned (and replanned), on top of the time
 * the shard's snapshot takes to stream (see {@linkcode expired}).
 */
export const STEP_TIMEOUT_MS = 30_000;

/** A new task for `move` on a shard led by `leader`. */
export function newTask(
  move: Move,
  options: { cause: TaskCause; reason: string; leader?: string; nowMs: number },
): Task {
  return {
    move,
    cause: options.cause,
    reason: options.reason,
    steps: moveSteps(move, options.leader === undefined ? undefined : nodeId(options.leader)),
    stepIndex: 0,
    startedAtMs: options.nowMs,
    stepStartedAtMs: options.nowMs,
    failures: 0,
  };
}

/** What to do for a task now. */
export type TaskAction =
  | { readonly kind: "advance"; readonly why: string }
  | { readonly kind: "done" }
  | { readonly kind: "wait"; readonly why: string }
  | { readonly kind: "fail"; readonly why: string }
  | { readonly kind: "allocatePeerId" }
  | {
    readonly kind: "createReplica";
    readonly node: Member;
    readonly voters: readonly Member[];
    readonly learners: readonly Member[];
    readonly confEpoch: number;
  }
  | {
    readonly kind: "changeMembership";
    readonly change: "addLearner" | "promote" | "remove";
    readonly leader: Member;
    readonly peer: Member;
    readonly expectedConfEpoch: number;
  }
  | {
    readonly kind: "transferLeader";
    readonly leader: Member;
    readonly target: Member;
    readonly expectedConfEpoch: number;
  };

/** What {@linkcode nextAction} needs to know about nodes. */
export interface NodeLookup {
  /** The address of a registered node, undefined when it is not registered. */
  address(node: string): string | undefined;
}

/** The next action of `task` on `view` (undefined view: the shard is unknown). */
export function nextAction(
  task: Task,
  view: ShardView | undefined,
  nodes: NodeLookup,
): TaskAction {
  assert(
    Number.isSafeInteger(task.stepIndex) && task.stepIndex >= 0 &&
      task.stepIndex <= task.steps.length,
    () => `Task of shard ${task.move.shardId} is at step ${task.stepIndex} of ${task.steps.length}`,
  );
  if (task.stepIndex === task.steps.length) return { kind: "done" };
  if (view === undefined) return { kind: "fail", why: `shard ${task.move.shardId} is unknown` };
  const step = task.steps[task.stepIndex];
  switch (step.kind) {
    case "addLearner":
      return addLearner(task, view, step.node, nodes);
    case "promoteLearner":
      return promoteLearner(view, step.node);
    case "transferLeader":
      return transferLeader(view, step.from, step.to, nodes);
    case "removeMember":
      return removeMember(view, step.node, nodes);
    default:
      return unreachable(step, "move step");
  }
}

function findMember(members: readonly Member[], node: string): Member | undefined {
  return members.find((m) => m.nodeId === node);
}

function findPeer(members: readonly Member[], peerId: number): Member | undefined {
  return members.find((m) => m.peerId === peerId);
}

function addLearner(task: Task, view: ShardView, node: string, nodes: NodeLookup): TaskAction {
  const existing = findMember([...view.voters, ...view.learners], node);
  if (existing !== undefined) {
    if (task.newPeerId === undefined || existing.peerId === task.newPeerId) {
      return { kind: "advance", why: `${node} is a member of shard ${view.id}` };
    }
    return {
      kind: "fail",
      why: `cannot add ${node} to shard ${view.id}: it is already a member as peer ` +
        `${existing.peerId}`,
    };
  }
  const address = nodes.address(node);
  if (address === undefined) {
    return { kind: "fail", why: `cannot add ${node} to shard ${view.id}: it is not registered` };
  }
  if (task.newPeerId === undefined) return { kind: "allocatePeerId" };
  const newPeerId = task.newPeerId;
  // Invariant: a peer id is unique within a shard. The new one was allocated above every peer id
  // placement had seen and is never reused, and `node` holds no member: no member may hold it.
  const holder = findPeer([...view.voters, ...view.learners], newPeerId);
  assert(
    holder === undefined,
    () => `New peer ${newPeerId} for ${node} in shard ${view.id} is already ${holder?.nodeId}'s`,
  );
  if (view.leader === undefined) return { kind: "wait", why: `shard ${view.id} has no leader` };
  const peer: Member = { peerId: newPeerId, nodeId: node, address };
  if (view.hosted.get(node)?.peerId !== task.newPeerId) {
    return {
      kind: "createReplica",
      node: peer,
      voters: view.voters,
      learners: [...view.learners, peer],
      confEpoch: view.confEpoch,
    };
  }
  return {
    kind: "changeMembership",
    change: "addLearner",
    leader: view.leader,
    peer,
    expectedConfEpoch: view.confEpoch,
  };
}

function promoteLearner(view: ShardView, node: string): TaskAction {
  if (findMember(view.voters, node) !== undefined) {
    return { kind: "advance", why: `${node} is a voter of shard ${view.id}` };
  }
  const learner = findMember(view.learners, node);
  if (learner === undefined) {
    return { kind: "fail", why: `cannot promote ${node}: it is not a learner of shard ${view.id}` };
  }
  if (view.leader === undefined) return { kind: "wait", why: `shard ${view.id} has no leader` };
  const match = view.progress.get(learner.peerId) ?? 0;
  if (match + CATCH_UP_LAG_ENTRIES_MAX < view.commitIndex || match === 0) {
    return {
      kind: "wait",
      why: `learner ${node} of shard ${view.id} is catching up: at ${match} of ${view.commitIndex}`,
    };
  }
  return {
    kind: "changeMembership",
    change: "promote",
    leader: view.leader,
    peer: learner,
    expectedConfEpoch: view.confEpoch,
  };
}

function transferLeader(
  view: ShardView,
  from: string,
  to: string | undefined,
  nodes: NodeLookup,
): TaskAction {
  if (view.leader === undefined) return { kind: "wait", why: `shard ${view.id} has no leader` };
  if (view.leader.nodeId !== from) {
    return { kind: "advance", why: `${view.leader.nodeId} leads shard ${view.id}, not ${from}` };
  }
  const target = to === undefined
    ? view.voters.find((m) => m.nodeId !== from && nodes.address(m.nodeId) !== undefined)
    : findMember(view.voters, to);
  if (target === undefined || nodes.address(target.nodeId) === undefined) {
    return {
      kind: "fail",
      why: `cannot move the leadership of shard ${view.id} to ${to ?? "another live voter"}: ` +
        (target === undefined ? "no such voter" : `${target.nodeId} is down`),
    };
  }
  return { kind: "transferLeader", leader: view.leader, target, expectedConfEpoch: view.confEpoch };
}

function removeMember(view: ShardView, node: string, nodes: NodeLookup): TaskAction {
  const voter = findMember(view.voters, node);
  const target = voter ?? findMember(view.learners, node);
  if (target === undefined) {
    return { kind: "advance", why: `${node} is no longer a member of shard ${view.id}` };
  }
  if (view.leader === undefined) return { kind: "wait", why: `shard ${view.id} has no leader` };
  if (view.leader.nodeId === node) {
    const other = view.voters.find((m) => m.nodeId !== node && nodes.address(m.nodeId));
    if (other === undefined) {
      return { kind: "wait", why: `shard ${view.id} has no other live voter to lead it` };
    }
    return {
      kind: "transferLeader",
      leader: view.leader,
      target: other,
      expectedConfEpoch: view.confEpoch,
    };
  }
  if (voter !== undefined) {
    const rest = view.voters.filter((m) => m.nodeId !== node);
    const live = rest.filter((m) => nodes.address(m.nodeId) !== undefined).length;
    if (2 * live <= rest.length) {
      return {
        kind: "wait",
        why: `removing ${node} from shard ${view.id} would leave ${live} live of ` +
          `${rest.length} voters, not a majority`,
      };
    }
  }
  return {
    kind: "changeMembership",
    change: "remove",
    leader: view.leader,
    peer: target,
    expectedConfEpoch: view.confEpoch,
  };
}

/** The task after its current step is done; a task already done has no step to finish. */
export function advanced(task: Task, nowMs: number): Task {
  assert(
    task.stepIndex < task.steps.length,
    () => `Task of shard ${task.move.shardId} advanced past its last step ${task.steps.length}`,
  );
  return {
    ...task,
    stepIndex: task.stepIndex + 1,
    stepStartedAtMs: nowMs,
    failures: 0,
    lastError: undefined,
  };
}

/**
 * Why `task` should be abandoned at `nowMs`, or undefined while it may go on. A step may take
 * {@linkcode STEP_TIMEOUT_MS} plus twice the time a snapshot of `sizeBytes` streams at
 * `bytesPerSecond` (a learner catching up receives one).
 */
export function expired(
  task: Task,
  nowMs: number,
  snapshot: { sizeBytes: number; bytesPerSecond: number } = { sizeBytes: 0, bytesPerSecond: 1 },
): string | undefined {
  const timeoutMs = STEP_TIMEOUT_MS +
    Math.ceil(2000 * snapshot.sizeBytes / Math.max(1, snapshot.bytesPerSecond));
  if (task.failures > STEP_FAILURES_MAX) {
    return `step "${task.steps[task.stepIndex]?.kind}" failed ${task.failures} times ` +
      `(last: ${task.lastError})`;
  }
  if (nowMs - task.stepStartedAtMs > timeoutMs) {
    return `step "${task.steps[task.stepIndex]?.kind}" made no progress for ` +
      `${timeoutMs} ms (STEP_TIMEOUT_MS and the snapshot time)` +
      (task.lastError === undefined ? "" : `: ${task.lastError}`);
  }
  return undefined;
}

/** The task after its current step's call failed with `why`. */
export function failedOnce(task: Task, why: string): Task {
  return { ...task, failures: task.failures + 1, lastError: why };
}

/** The nodes a move touches, for display. */
export function moveEnds(move: Move): { from: string; to: string } {
  switch (move.kind) {
    case "addReplica":
      return { from: "", to: move.to };
    case "removeReplica":
      return { from: move.from, to: "" };
    case "moveReplica":
    case "transferLeader":
      return { from: move.from, to: move.to };
    default:
      return unreachable(move, "move");
  }
}

/** Encodes a task for its znode. */
export function encodeTask(task: Task): string {
  return JSON.stringify(task);
}

const MOVE_KINDS: ReadonlySet<unknown> = new Set<Move["kind"]>([
  "addReplica",
  "removeReplica",
  "moveReplica",
  "transferLeader",
]);
const STEP_KINDS: ReadonlySet<unknown> = new Set<MoveStep["kind"]>([
  "addLearner",
  "promoteLearner",
  "transferLeader",
  "removeMember",
]);

/**
 * Reports whether a parsed task znode holds a task {@linkcode nextAction} and
 * {@linkcode moveEnds} can run: a move and steps of known kinds, a step index within the steps
 * and, once allocated, a positive new peer id (both functions assert all of that).
 */
function isRunnableTask(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const task = value as { move?: { kind?: unknown }; steps?: unknown; stepIndex?: unknown };
  if (!MOVE_KINDS.has(task.move?.kind) || !Array.isArray(task.steps)) return false;
  if (!task.steps.every((step) => STEP_KINDS.has(step?.kind))) return false;
  const stepIndex = task.stepIndex;
  if (typeof stepIndex !== "number" || !Number.isSafeInteger(stepIndex)) return false;
  if (stepIndex < 0 || stepIndex > task.steps.length) return false;
  const newPeerId = (value as { newPeerId?: unknown }).newPeerId;
  return newPeerId === undefined ||
    (typeof newPeerId === "number" && Number.isSafeInteger(newPeerId) && newPeerId > 0);
}

/** Decodes a task znode; undefined when it is not a task this leader can run. */
export function decodeTask(text: string): Task | undefined {
  try {
    const value = JSON.parse(text);
    if (!isRunnableTask(value)) return undefined;
    return { failures: 0, stepStartedAtMs: Date.now(), ...value } as Task;
  } catch {
    return undefined;
  }
}
