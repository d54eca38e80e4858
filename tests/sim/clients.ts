/**
 * {@linkcode ClientDriver}: the simulated clients. Each runs one operation at
 * a time against a small key set — put, compare-and-swap and linearizable get
 * on registers, append and read on lists — sends it to the leader it believes
 * in (or any node), retries with the same dedup seq on "retry" answers and
 * timeouts, and gives up after a deadline: a mutation that was never answered
 * has an unknown outcome. Every operation is recorded with lincheck's
 * {@linkcode HistoryRecorder} on the simulated clock.
 *
 * @module
 */

import {
  type AppendListInput,
  type AppendListOutput,
  HistoryRecorder,
  type OperationId,
  type RegisterInput,
  type RegisterOutput,
} from "@tinykv/lincheck";
import type { PeerId } from "@tinykv/raft";
import { assert } from "./_assert.ts";
import { type SimConfig, TICK_UNITS } from "./config.ts";
import type { SimRandom } from "./random.ts";
import type { SimResult } from "./sim_app.ts";

/** A client operation as sent to a node. Mutations carry the client's dedup `seq`. */
export type ClientOp =
  | { readonly kind: "put"; readonly key: string; readonly value: string; readonly seq: number }
  | {
    readonly kind: "cas";
    readonly key: string;
    readonly expected: string | null;
    readonly next: string;
    readonly seq: number;
  }
  | { readonly kind: "append"; readonly key: string; readonly token: string; readonly seq: number }
  | { readonly kind: "get"; readonly key: string }
  | { readonly kind: "read"; readonly key: string };

/** A request from a client; `opNumber` identifies the client's operation. */
export interface ClientRequest {
  /** The client. */
  readonly client: number;
  /** The client's operation this is about. */
  readonly opNumber: number;
  /** What the client asks. */
  readonly op: ClientOp;
}

/** A node's answer to a client. */
export type ClientOutcome =
  | { readonly kind: "ok"; readonly result: SimResult }
  | { readonly kind: "value"; readonly value: string | null }
  | { readonly kind: "list"; readonly tokens: readonly string[] }
  /** Not served here (or the outcome is unknown): retry, possibly at `leader`. */
  | { readonly kind: "retry"; readonly leader: PeerId | undefined };

/** A reply on its way to a client. */
export interface ClientReply {
  /** The node that answered. */
  readonly from: PeerId;
  /** The client. */
  readonly client: number;
  /** The client's operation this is about. */
  readonly opNumber: number;
  /** The answer. */
  readonly outcome: ClientOutcome;
}

/** The register keys clients use. */
export const REGISTER_KEYS: readonly string[] = ["x", "y", "z"];
/** The list keys clients use. */
export const LIST_KEYS: readonly string[] = ["L", "M"];

/** Time units one attempt waits for an answer before retrying. */
const ATTEMPT_TIMEOUT_TICKS = 20;
/** Time units an operation may take before the client gives up. */
const OPERATION_DEADLINE_TICKS = 200;
/** Time units between a "retry" answer and the next attempt. */
const RETRY_BACKOFF_UNITS = 5;

interface Pending {
  readonly opNumber: number;
  readonly op: ClientOp;
  readonly recorded:
    | { readonly kind: "register"; readonly id: OperationId }
    | { readonly kind: "list"; readonly id: OperationId };
  readonly deadline: number;
  attemptTimeout: number;
}

interface Client {
  readonly id: number;
  /** The share of this client's operations that are reads (some clients mostly read). */
  readonly readRatio: number;
  seq: number;
  opNumber: number;
  leaderHint: PeerId | undefined;
  pending: Pending | undefined;
  /** Ignores wake-ups scheduled before the latest one. */
  wakeToken: number;
  /** The last value this client saw per register, to make compare-and-swaps likely to win. */
  readonly seen: Map<string, string | null>;
}

/** What the clients need from the simulation. */
export interface ClientEnv {
  /** The run's configuration. */
  readonly config: SimConfig;
  /** The run's generator. */
  readonly random: SimRandom;
  /** The current simulated time. */
  now(): number;
  /** Nodes a client may contact (it does not know which are up). */
  contactable(): readonly PeerId[];
  /** Sends a request to a node over the network. */
  sendRequest(to: PeerId, request: ClientRequest): void;
  /** Wakes client `client` after `delay` with `token`. */
  scheduleWake(client: number, delay: number, token: number): void;
  /** Records a line of the trace (built only when tracing). */
  trace(line: () => string): void;
}

/** Counts for the summary. */
export interface ClientStats {
  /** Operations started. */
  invoked: number;
  /** Operations answered. */
  ok: number;
  /** Mutations given up on: their outcome is unknown. */
  unknown: number;
  /** Reads given up on (they change nothing, so they leave the history). */
  failedReads: number;
}

/** All clients of one run and their recorded history. */
export class ClientDriver {
  /** The history of register operations. */
  readonly registers: HistoryRecorder<RegisterInput, RegisterOutput>;
  /** The history of list operations. */
  readonly lists: HistoryRecorder<AppendListInput, AppendListOutput>;
  /** Counts for the summary. */
  readonly stats: ClientStats = { invoked: 0, ok: 0, unknown: 0, failedReads: 0 };
  /** When false, clients finish what they started and begin nothing new. */
  accepting = true;
  readonly #clients: Client[] = [];
  readonly #env: ClientEnv;

  /** Creates `config.clients` clients and schedules their first operations. */
  constructor(env: ClientEnv) {
    this.#env = env;
    const clock = () => env.now();
    this.registers = new HistoryRecorder({ clock });
    this.lists = new HistoryRecorder({ clock });
    for (let i = 1; i <= env.config.clients; i++) {
      const client: Client = {
        id: i,
        readRatio: env.random.pick([0.2, 0.4, 0.7, 0.95]),
        seq: 0,
        opNumber: 0,
        leaderHint: undefined,
        pending: undefined,
        wakeToken: 0,
        seen: new Map(),
      };
      this.#clients.push(client);
      this.#wake(client, 1 + env.random.int(env.config.thinkUnitsMax));
    }
  }

  /** Whether some client still waits for an answer. */
  get busy(): boolean {
    return this.#clients.some((c) => c.pending !== undefined);
  }

  #wake(client: Client, delay: number): void {
    client.wakeToken++;
    this.#env.scheduleWake(client.id, delay, client.wakeToken);
  }

  /** A scheduled wake-up: start an operation, or time out the current attempt. */
  onWake(clientId: number, token: number): void {
    const client = this.#clients[clientId - 1];
    if (token !== client.wakeToken) return;
    const pending = client.pending;
    if (pending === undefined) {
      if (this.accepting) this.#start(client);
      return;
    }
    const now = this.#env.now();
    if (now >= pending.deadline) return this.#giveUp(client, pending);
    // The attempt timed out (or a retry's backoff ended): try again, maybe elsewhere.
    if (now >= pending.attemptTimeout) client.leaderHint = undefined;
    this.#attempt(client, pending);
  }

  /** A node's answer reached the client. */
  onReply(reply: ClientReply): void {
    const client = this.#clients[reply.client - 1];
    const pending = client.pending;
    if (pending === undefined || pending.opNumber !== reply.opNumber) return;
    const outcome = reply.outcome;
    if (outcome.kind === "retry") {
      client.leaderHint = outcome.leader;
      this.#wake(client, RETRY_BACKOFF_UNITS);
      return;
    }
    // Like a real client, keep talking to the node that answered (it was the leader then).
    client.leaderHint = reply.from;
    this.#complete(client, pending, outcome);
  }

  #start(client: Client): void {
    const op = this.#drawOp(client);
    const recorded = this.#record(client, op);
    const now = this.#env.now();
    client.opNumber++;
    const pending: Pending = {
      opNumber: client.opNumber,
      op,
      recorded,
      deadline: now + OPERATION_DEADLINE_TICKS * TICK_UNITS,
      attemptTimeout: 0,
    };
    client.pending = pending;
    this.stats.invoked++;
    this.#env.trace(() => `c${client.id} invokes ${describeOp(op)}`);
    this.#attempt(client, pending);
  }

  #attempt(client: Client, pending: Pending): void {
    const env = this.#env;
    const nodes = env.contactable();
    const target = client.leaderHint !== undefined && nodes.includes(client.leaderHint)
      ? client.leaderHint
      : env.random.pick(nodes);
    pending.attemptTimeout = env.now() + ATTEMPT_TIMEOUT_TICKS * TICK_UNITS;
    env.sendRequest(target, { client: client.id, opNumber: pending.opNumber, op: pending.op });
    this.#wake(client, Math.min(pending.attemptTimeout, pending.deadline) - env.now());
  }

  #drawOp(client: Client): ClientOp {
    const random = this.#env.random;
    const onList = random.chance(0.4);
    if (random.chance(client.readRatio)) {
      return onList
        ? { kind: "read", key: random.pick(LIST_KEYS) }
        : { kind: "get", key: random.pick(REGISTER_KEYS) };
    }
    const seq = ++client.seq;
    const value = `c${client.id}.${seq}`;
    if (onList) return { kind: "append", key: random.pick(LIST_KEYS), token: value, seq };
    const key = random.pick(REGISTER_KEYS);
    if (random.chance(0.5)) return { kind: "put", key, value, seq };
    const seen = client.seen.get(key) ?? null;
    const expected = random.chance(0.8) ? seen : null;
    return { kind: "cas", key, expected, next: value, seq };
  }

  #record(client: Client, op: ClientOp): Pending["recorded"] {
    switch (op.kind) {
      case "get":
        return { kind: "register", id: this.registers.invoke(client.id, op) };
      case "put":
        return { kind: "register", id: this.registers.invoke(client.id, op) };
      case "cas":
        return {
          kind: "register",
          id: this.registers.invoke(client.id, {
            kind: "cas",
            key: op.key,
            expected: op.expected,
            next: op.next,
          }),
        };
      case "append":
        return { kind: "list", id: this.lists.invoke(client.id, op) };
      case "read":
        return { kind: "list", id: this.lists.invoke(client.id, op) };
    }
  }

  #complete(client: Client, pending: Pending, outcome: ClientOutcome): void {
    const op = pending.op;
    const recorded = pending.recorded;
    if (recorded.kind === "register") {
      const output = registerOutput(op, outcome);
      this.registers.ok(recorded.id, output);
      if (output.kind === "get") client.seen.set(op.key, output.value);
      if (op.kind === "put") client.seen.set(op.key, op.value);
      if (op.kind === "cas" && output.kind === "cas" && output.succeeded) {
        client.seen.set(op.key, op.next);
      }
    } else {
      this.lists.ok(recorded.id, listOutput(op, outcome));
    }
    this.stats.ok++;
    this.#env.trace(() => `c${client.id} completes ${describeOp(op)}: ${describeOutcome(outcome)}`);
    this.#finishOp(client);
  }

  #giveUp(client: Client, pending: Pending): void {
    const op = pending.op;
    const recorded = pending.recorded;
    const readOnly = op.kind === "get" || op.kind === "read";
    const recorder = recorded.kind === "register" ? this.registers : this.lists;
    if (readOnly) {
      recorder.fail(recorded.id);
      this.stats.failedReads++;
    } else {
      recorder.unknown(recorded.id);
      this.stats.unknown++;
    }
    this.#env.trace(() => `c${client.id} gives up on ${describeOp(op)}`);
    this.#finishOp(client);
  }

  #finishOp(client: Client): void {
    client.pending = undefined;
    this.#wake(client, 1 + this.#env.random.int(this.#env.config.thinkUnitsMax));
  }
}

function registerOutput(op: ClientOp, outcome: ClientOutcome): RegisterOutput {
  switch (op.kind) {
    case "get":
      assert(outcome.kind === "value", `A get was answered with ${outcome.kind}`);
      return { kind: "get", value: outcome.value };
    case "put":
      assert(outcome.kind === "ok" && outcome.result.kind === "put", "A put got a wrong answer");
      return { kind: "put" };
    case "cas":
      assert(outcome.kind === "ok" && outcome.result.kind === "cas", "A cas got a wrong answer");
      return { kind: "cas", succeeded: outcome.result.succeeded };
    default:
      throw new Error(`Operation ${op.kind} is not a register operation`);
  }
}

function listOutput(op: ClientOp, outcome: ClientOutcome): AppendListOutput {
  if (op.kind === "read") {
    assert(outcome.kind === "list", `A read was answered with ${outcome.kind}`);
    return { kind: "read", tokens: outcome.tokens };
  }
  assert(outcome.kind === "ok" && outcome.result.kind === "append", "An append got a wrong answer");
  return { kind: "append" };
}

function describeOutcome(outcome: ClientOutcome): string {
  switch (outcome.kind) {
    case "ok":
      return outcome.result.kind === "cas" ? `cas ${outcome.result.succeeded}` : "ok";
    case "value":
      return `value ${outcome.value}`;
    case "list": {
      const t = outcome.tokens;
      return `list of ${t.length} ending ${JSON.stringify(t.slice(-3))}`;
    }
    case "retry":
      return `retry at ${outcome.leader}`;
  }
}

/** A short description of an operation for the trace. */
export function describeOp(op: ClientOp): string {
  switch (op.kind) {
    case "get":
      return `get(${op.key})`;
    case "read":
      return `read(${op.key})`;
    case "put":
      return `put(${op.key}, ${op.value}) #${op.seq}`;
    case "cas":
      return `cas(${op.key}, ${op.expected} -> ${op.next}) #${op.seq}`;
    case "append":
      return `append(${op.key}, ${op.token}) #${op.seq}`;
  }
}
