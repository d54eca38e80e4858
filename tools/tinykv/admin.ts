/**
 * The admin commands of `tinykv` (`status`, `rebalance`, `move`, `transfer-leader`, `drain`),
 * through placement's admin API. Each runs one command and returns its exit code; output goes
 * through the CLI's {@linkcode AdminOutput}. Failures are printed with the server's message and
 * mapped through the same exit-code table as the data commands.
 *
 * @module
 */
import {
  type ClusterStateResponse,
  type NodeStatusResponse,
  type PlacementMove,
  type PlacementService,
  type PlacementTask,
  ReplicaStatus_Role,
} from "@tinykv/proto/tinykv/v1";
import { type ClientSecurity, type RpcFailure, type RpcResult, unaryCaller } from "@tinykv/rpc";
import { type ShardId, shardId } from "@tinykv/shard";
import { EXIT, exitCodeOf } from "./exit_codes.ts";
import {
  NODE_STATUS_DEADLINE_MS_MAX,
  nodeStatuses,
  type PlacementCall,
  PlacementConnection,
} from "./placement_connection.ts";
import { formatTable, progressBar } from "./render.ts";

/** The default `--placement` address (the dev cluster's placement admin port). */
export const PLACEMENT_DEFAULT = "127.0.0.1:7800";
/** The default deadline of an admin call, retries included. */
export const ADMIN_TIMEOUT_MS_DEFAULT = 5000;
/** The default bound on the wait of `drain` (the moves themselves keep going after it). */
export const DRAIN_TIMEOUT_MS_DEFAULT = 600_000;
/** How often `drain` asks placement for the node's replica count. */
export const DRAIN_POLL_MS = 500;
/** How often `drain` prints a progress line when stdout is not a terminal (and on each change). */
export const DRAIN_LINE_MS = 5000;
/** The bound on each `ClusterState` call made while `drain` waits. */
export const DRAIN_CALL_DEADLINE_MS_MAX = 5000;

/** A parsed admin command. */
export type AdminCommand =
  | { kind: "status" }
  | { kind: "rebalance"; dryRun: boolean }
  | { kind: "move"; shardId: ShardId; from: string; to: string }
  | { kind: "transfer-leader"; shardId: ShardId; to: string }
  | { kind: "drain"; nodeId: string; wait: boolean };

/** The options every admin command takes. */
export interface AdminOptions {
  /** Placement admin addresses, tried in order. */
  placements: readonly string[];
  /** `--timeout`: the call's deadline, or for `drain` the bound on the whole wait. */
  timeoutMs: number | undefined;
  json: boolean;
  /** `--ca`, `--token-file`: TLS and the caller's token (none: plaintext, no credential). */
  security?: ClientSecurity;
}

/** Where an admin command writes. */
export interface AdminOutput {
  /** Writes `line` and a newline to stdout. */
  out(line: string): Promise<void>;
  /** Writes `line` and a newline to stderr. */
  err(line: string): Promise<void>;
  /** Rewrites the current stdout line (a progress bar); only called when `terminal`. */
  rewrite?(line: string): Promise<void>;
  /** Whether stdout is a terminal. */
  terminal?: boolean;
}

/** A failure that ends the command: printed, then mapped to an exit code. */
class AdminFailure extends Error {
  readonly failure: RpcFailure;
  /** Whether the request may have taken effect; by default, a DEADLINE_EXCEEDED change. */
  readonly outcomeUnknown: boolean | undefined;

  constructor(failure: RpcFailure, outcomeUnknown?: boolean) {
    super(failure.message);
    this.failure = failure;
    this.outcomeUnknown = outcomeUnknown;
  }
}

function ok<T>(result: RpcResult<T>): T {
  if (result.kind !== "ok") throw new AdminFailure(result);
  return result.response;
}

/** Runs `command`; returns the exit code. */
export async function runAdmin(
  command: AdminCommand,
  options: AdminOptions,
  io: AdminOutput,
): Promise<number> {
  const connection = new PlacementConnection(options.placements, options.security);
  const timeoutMs = options.timeoutMs ??
    (command.kind === "drain" && command.wait
      ? DRAIN_TIMEOUT_MS_DEFAULT
      : ADMIN_TIMEOUT_MS_DEFAULT);
  const deadlineAt = Date.now() + timeoutMs;
  const call = async <T>(body: PlacementCall<T>) => ok(await connection.call(body, deadlineAt));
  const context: AdminContext = { options, io, call, deadlineAt, timeoutMs, connection };
  try {
    switch (command.kind) {
      case "status":
        return await runStatus(context);
      case "rebalance":
        return await runRebalance(context, command.dryRun);
      case "move":
        return await runMove(context, command);
      case "transfer-leader":
        return await runTransferLeader(context, command);
      case "drain":
        return await runDrain(context, command);
      default:
        return command satisfies never;
    }
  } catch (error) {
    if (!(error instanceof AdminFailure)) throw error;
    const { kind, message } = error.failure;
    if (options.json) {
      const outcomeUnknown = error.outcomeUnknown ??
        (kind === "deadlineExceeded" && command.kind !== "status");
      await io.out(JSON.stringify({ error: { code: kind, message, outcomeUnknown } }));
    } else {
      await io.err(`error: ${kind}: ${message}`);
    }
    return exitCodeOf(kind);
  } finally {
    connection.close();
  }
}

interface AdminContext {
  options: AdminOptions;
  io: AdminOutput;
  call<T>(body: PlacementCall<T>): Promise<T>;
  deadlineAt: number;
  timeoutMs: number;
  connection: PlacementConnection;
}

const clusterState: PlacementCall<ClusterStateResponse> = (client, options) =>
  unaryCaller<typeof PlacementService, "ClusterState">(client, "ClusterState")({}, options);

// ---------------------------------------------------------------------------------------------
// status

/** What `ClusterState` lacks, read from the kvnodes: one entry per shard that a node reported. */
interface ShardStats {
  shardId: ShardId;
  appliedIndex: number;
  dataKeys: number;
  dataBytes: number;
  /** The node whose replica reported it: the leader's when it answered. */
  reportedBy: string;
}

async function runStatus(context: AdminContext): Promise<number> {
  const state = await context.call(clusterState);
  const live = state.nodes.filter((n) => n.live && n.address !== "");
  const remaining = Math.max(1, context.deadlineAt - Date.now());
  const statuses = await nodeStatuses(
    live.map((n) => n.address),
    Math.min(remaining, NODE_STATUS_DEADLINE_MS_MAX),
    context.options.security,
  );
  const stats = shardStatsOf(state, statuses);
  if (context.options.json) {
    await context.io.out(JSON.stringify({ ...state, shardStats: [...stats.values()] }));
    return EXIT.ok;
  }
  for (const line of statusLines(state, stats, context.connection.answeredBy ?? "")) {
    await context.io.out(line);
  }
  return EXIT.ok;
}

function shardStatsOf(
  state: ClusterStateResponse,
  statuses: readonly NodeStatusResponse[],
): Map<number, ShardStats> {
  const stats = new Map<number, ShardStats>();
  const leaders = new Map(state.shards.map((s) => [s.shardId, s.leader]));
  for (const node of statuses) {
    for (const replica of node.replicas) {
      const known = stats.get(replica.shardId);
      const isLeader = replica.role === ReplicaStatus_Role.LEADER ||
        leaders.get(replica.shardId) === node.nodeId;
      const knownIsLeader = known !== undefined &&
        leaders.get(replica.shardId) === known.reportedBy;
      if (
        known === undefined || (isLeader && !knownIsLeader) ||
        (!knownIsLeader && replica.appliedIndex > known.appliedIndex)
      ) {
        stats.set(replica.shardId, {
          shardId: shardId(replica.shardId),
          appliedIndex: replica.appliedIndex,
          dataKeys: replica.dataKeys,
          dataBytes: replica.dataBytes,
          reportedBy: node.nodeId,
        });
      }
    }
  }
  return stats;
}

function statusLines(
  state: ClusterStateResponse,
  stats: ReadonlyMap<number, ShardStats>,
  answeredBy: string,
): string[] {
  const lines = [
    `Placement leader ${state.leaderAddress || answeredBy}, shard map version ` +
    `${state.shardMapVersion}${state.bootstrapped ? "" : ", not bootstrapped yet"}`,
    "",
    ...formatTable(
      ["NODE", "ADDRESS", "LIVE", "DRAINING", "REPLICAS", "LEADERS"],
      state.nodes.map((n) => [
        n.nodeId,
        n.address || "-",
        n.live ? "yes" : `no (down ${ago(n.downSinceMs)})`,
        n.draining ? "yes" : "no",
        String(n.replicas),
        String(n.leaders),
      ]),
    ),
    "",
    ...formatTable(
      ["SHARD", "RANGE", "REPLICAS", "LEARNERS", "LEADER", "CONF EPOCH", "APPLIED", "SIZE"],
      state.shards.map((s) => {
        const stat = stats.get(s.shardId);
        return [
          String(s.shardId),
          `[${hash(s.rangeLo)}, ${hash(s.rangeHi)})`,
          s.voters.join(",") || "-",
          s.learners.join(",") || "-",
          s.leader || "-",
          String(s.confEpoch),
          stat === undefined ? "-" : String(stat.appliedIndex),
          stat === undefined ? "-" : `${byteSize(stat.dataBytes)} (${stat.dataKeys} keys)`,
        ];
      }),
    ),
    "",
  ];
  if (state.tasks.length === 0) lines.push("No moves in progress");
  else {
    lines.push(
      "Moves in progress:",
      ...formatTable(
        ["SHARD", "MOVE", "FROM", "TO", "CAUSE", "STEP", "STARTED", "LAST ERROR"],
        state.tasks.map(taskRow),
      ),
    );
  }
  if (state.notes.length > 0) lines.push("", "Notes:", ...state.notes.map((n) => `  ${n}`));
  return lines;
}

function taskRow(task: PlacementTask): string[] {
  const move = task.move;
  return [
    String(move?.shardId ?? "-"),
    move?.kind ?? "-",
    move?.fromNode || "-",
    move?.toNode || "-",
    move?.cause || "-",
    `${task.step} (${Math.min(task.stepIndex + 1, task.steps)} of ${task.steps})`,
    ago(task.startedAtMs),
    task.lastError || "-",
  ];
}

function hash(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}

function ago(atMs: number): string {
  if (atMs === 0) return "-";
  return `${Math.max(0, Math.round((Date.now() - atMs) / 1000))}s ago`;
}

function byteSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// ---------------------------------------------------------------------------------------------
// rebalance, move, transfer-leader

function moveLine(move: PlacementMove): string {
  const ends = move.kind === "addReplica"
    ? `to ${move.toNode}`
    : move.kind === "removeReplica"
    ? `from ${move.fromNode}`
    : `${move.fromNode || "?"} -> ${move.toNode || "?"}`;
  return `  shard ${move.shardId}: ${move.kind} ${ends} (${move.cause}): ${move.reason}`;
}

async function runRebalance(context: AdminContext, dryRun: boolean): Promise<number> {
  const plan = await context.call((client, options) =>
    unaryCaller<typeof PlacementService, "Rebalance">(client, "Rebalance")({ dryRun }, options)
  );
  const started = !dryRun && plan.moves.length > 0;
  if (context.options.json) {
    await context.io.out(JSON.stringify({ dryRun, started, moves: plan.moves, notes: plan.notes }));
    return EXIT.ok;
  }
  const { io } = context;
  if (plan.moves.length === 0) await io.out("No moves planned: nothing to rebalance");
  else {
    const count = `${plan.moves.length} move${plan.moves.length === 1 ? "" : "s"}`;
    await io.out(
      dryRun ? `Planned ${count} (dry run: not started):` : `Planned ${count}, started:`,
    );
    for (const move of plan.moves) await io.out(moveLine(move));
  }
  if (plan.notes.length > 0) {
    await io.out("Notes:");
    for (const note of plan.notes) await io.out(`  ${note}`);
  }
  return EXIT.ok;
}

async function printTask(context: AdminContext, task: PlacementTask | undefined): Promise<number> {
  if (context.options.json) {
    await context.io.out(JSON.stringify({ started: true, task: task ?? null }));
    return EXIT.ok;
  }
  if (task?.move === undefined) {
    await context.io.out("Started");
    return EXIT.ok;
  }
  await context.io.out(`Started: ${task.move.reason}`);
  await context.io.out(
    `Step: ${task.step} (${Math.min(task.stepIndex + 1, task.steps)} of ${task.steps}); ` +
      `follow it with "tinykv status"`,
  );
  return EXIT.ok;
}

async function runMove(
  context: AdminContext,
  command: Extract<AdminCommand, { kind: "move" }>,
): Promise<number> {
  const answer = await context.call((client, options) =>
    unaryCaller<typeof PlacementService, "MoveReplica">(client, "MoveReplica")({
      shardId: command.shardId,
      fromNode: command.from,
      toNode: command.to,
    }, options)
  );
  return await printTask(context, answer.task);
}

async function runTransferLeader(
  context: AdminContext,
  command: Extract<AdminCommand, { kind: "transfer-leader" }>,
): Promise<number> {
  const answer = await context.call((client, options) =>
    unaryCaller<typeof PlacementService, "TransferLeader">(client, "TransferLeader")({
      shardId: command.shardId,
      toNode: command.to,
    }, options)
  );
  return await printTask(context, answer.task);
}

// ---------------------------------------------------------------------------------------------
// drain

/** Replicas (voters and learners) that `nodeId` still holds, as `state` sees it. */
function replicasLeft(state: ClusterStateResponse, nodeId: string): number {
  return state.shards.filter((s) => s.voters.includes(nodeId) || s.learners.includes(nodeId))
    .length;
}

async function runDrain(
  context: AdminContext,
  command: Extract<AdminCommand, { kind: "drain" }>,
): Promise<number> {
  const startedAt = Date.now();
  // Only the wait is bounded by the drain's larger --timeout; the call itself is short.
  const answer = ok(
    await context.connection.call(
      (client, options) =>
        unaryCaller<typeof PlacementService, "DrainNode">(client, "DrainNode")({
          nodeId: command.nodeId,
        }, options),
      Math.min(context.deadlineAt, startedAt + ADMIN_TIMEOUT_MS_DEFAULT),
    ),
  );
  const { io, options } = context;
  const total = answer.replicas;
  if (!command.wait) {
    if (options.json) {
      await io.out(JSON.stringify({ node: command.nodeId, replicas: total, done: total === 0 }));
    } else {
      await io.out(
        `Node "${command.nodeId}" is draining: ${total} replica${total === 1 ? "" : "s"} to ` +
          `move away; follow it with "tinykv status"`,
      );
    }
    return EXIT.ok;
  }
  const progress = new DrainProgress(command.nodeId, total, options.json ? undefined : io);
  const left = await waitDrained(context, command.nodeId, progress);
  await progress.finish();
  const elapsedMs = Date.now() - startedAt;
  if (left !== 0) {
    throw new AdminFailure({
      kind: "deadlineExceeded",
      message: `Node "${command.nodeId}" still holds ${left ?? "an unknown number"} of ${total} ` +
        `replicas after ${context.timeoutMs} ms (--timeout): the drain goes on; follow it with ` +
        `"tinykv status"`,
    }, false);
  }
  if (options.json) {
    await io.out(
      JSON.stringify({
        node: command.nodeId,
        replicas: total,
        done: true,
        remaining: 0,
        elapsedMs,
      }),
    );
  } else {
    await io.out(
      `Node "${command.nodeId}" is drained: ${total} replica${total === 1 ? "" : "s"} moved ` +
        `away in ${(elapsedMs / 1000).toFixed(1)}s`,
    );
  }
  return EXIT.ok;
}

/**
 * Polls placement until `nodeId` holds no replica or the deadline passes; returns the replicas
 * left (undefined when placement never answered). A failed poll that may pass (UNAVAILABLE,
 * DEADLINE_EXCEEDED: placement changing leader) is waited out; any other failure ends the wait.
 */
async function waitDrained(
  context: AdminContext,
  nodeId: string,
  progress: DrainProgress,
): Promise<number | undefined> {
  let left: number | undefined;
  while (true) {
    const remaining = context.deadlineAt - Date.now();
    if (remaining <= 0) return left;
    const answer = await context.connection.call(
      clusterState,
      Date.now() + Math.min(remaining, DRAIN_CALL_DEADLINE_MS_MAX),
    );
    if (answer.kind === "ok") {
      left = replicasLeft(answer.response, nodeId);
      await progress.update(left);
      if (left === 0) return 0;
    } else if (answer.kind !== "unavailable" && answer.kind !== "deadlineExceeded") {
      throw new AdminFailure(answer);
    }
    const pause = Math.min(DRAIN_POLL_MS, context.deadlineAt - Date.now());
    if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/**
 * The drain's progress: a bar rewritten in place on a terminal; otherwise a plain line on each
 * change of the count and every {@linkcode DRAIN_LINE_MS}. Silent without `io` (`--json`).
 */
class DrainProgress {
  readonly #nodeId: string;
  readonly #total: number;
  readonly #io: AdminOutput | undefined;
  readonly #startedAt = Date.now();
  #lastLeft: number | undefined;
  #lastLineAt = 0;
  #drawn = false;

  constructor(nodeId: string, total: number, io: AdminOutput | undefined) {
    this.#nodeId = nodeId;
    this.#total = total;
    this.#io = io;
  }

  async update(left: number): Promise<void> {
    const io = this.#io;
    if (io === undefined) return;
    const now = Date.now();
    const elapsed = `${Math.round((now - this.#startedAt) / 1000)}s`;
    // The count may grow past the start (a move onto the node was in flight): widen the bar.
    const total = Math.max(this.#total, left);
    if (io.terminal === true && io.rewrite !== undefined) {
      const bar = progressBar(total - left, total);
      await io.rewrite(
        `Draining "${this.#nodeId}" ${bar} ${
          total - left
        }/${total} moved, ${left} left  ${elapsed}`,
      );
      this.#drawn = true;
    } else if (left !== this.#lastLeft || now - this.#lastLineAt >= DRAIN_LINE_MS) {
      await io.out(`drain "${this.#nodeId}": ${left} of ${total} replicas left (${elapsed})`);
      this.#lastLineAt = now;
    }
    this.#lastLeft = left;
  }

  /** Ends the bar's line. */
  async finish(): Promise<void> {
    if (this.#drawn) await this.#io?.out("");
    this.#drawn = false;
  }
}
