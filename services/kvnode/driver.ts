/**
 * {@linkcode Driver}: the one loop that drives every Raft group hosted on a kvnode
 * (docs/style.md "The I/O edge is one driver loop per kvnode").
 *
 * Each turn (`#turn`): take the due ticks, then the inbox (Raft messages, client requests, admin
 * tasks), and confirm the turn's reads under the leader's lease or send them as one ReadIndex
 * round per group (`#intake`) → collect the Readies of the groups that may have work (awake or
 * touched this turn) → send each leader's appends and heartbeats at once, before its own log is
 * written (`splitMessages`, Raft thesis §10.2.1) → persist every Ready and apply its committed
 * entries in ONE synced LMDB transaction (group commit), answering the applied requests inside it
 * (`#write`; a turn with nothing to persist or apply writes nothing) → send the rest (votes,
 * acknowledgements) → advance (`#advance`). Whatever arrives while a turn's transaction is being synced waits in the inbox and
 * goes into the next turn, so a busier node writes bigger batches, not more of them.
 *
 * The driver is generic over the application it replicates ({@linkcode GroupApplication},
 * application.ts): it never decodes a request or an entry. The kvnode runs the KV application
 * (kv_app.ts); the driver owns the loop, group commit, the transport, fencing, membership and
 * snapshots.
 *
 * Only this loop touches the RawNodes, replicas and state machines; everything else talks to it
 * through the inbox. It never awaits between reading core state and acting on it, except for the
 * turn's one write, during which nothing else touches what it wrote.
 *
 * @module
 */
import {
  type LogIndex,
  type Message,
  mulberry32,
  type PeerId,
  type Prng,
  type Ready,
  splitMessages,
  type Term,
} from "@tinykv/raft";
import type { NodeStorage } from "./node_storage.ts";
import type { Failure, GroupApplication, GroupMachine, Outcome } from "./application.ts";
import {
  decodeRecord,
  type PeerAddress,
  Replica,
  type ReplicaHooks,
  type ReplicaRecord,
  type ReplicaTuning,
} from "./replica.ts";
import { PREFIX, prefixEnd } from "./node_storage.ts";
import { type SnapshotSource, stagedGeneration, stagedToken } from "./snapshot_stream.ts";
import { SnapshotStaging } from "./snapshot_staging.ts";
import { deleteGeneration, generationKey, storedGenerations } from "./generations.ts";
import type { ShardId } from "@tinykv/shard";
import { assert, AssertionError, unreachable } from "./_assert.ts";
import { type ReadWaiter, RoundIds } from "./replica_waiters.ts";
import {
  type AdminHost,
  type AdminResult,
  changeMembership,
  createReplica,
  deleteReplica,
  transferLeader,
} from "./driver_admin.ts";

/** A Raft message of one group, as it travels between nodes. */
export interface Envelope {
  readonly shardId: ShardId;
  readonly confEpoch: number;
  readonly message: Message;
  /** On receipt: the node that sent it and where it listens, when the transport knows. */
  readonly sender?: { readonly nodeId: string; readonly address: string };
  /**
   * A notice instead of a message to step: as of `confEpoch` the receiver is no longer a member of
   * the group (it was removed while it could not hear about it), so it deletes itself.
   */
  readonly notMember?: boolean;
  /**
   * On a snapshot message sent: where its data is read from (a read view of the sender's state
   * at the snapshot's index). Never on the wire; whoever takes the envelope closes it.
   */
  readonly snapshotSource?: SnapshotSource;
}

/** Where the driver sends Raft messages. Sending never blocks and may drop (Raft retries). */
export interface RaftOutbound {
  /** Queues an envelope for the node hosting `to`. */
  send(to: PeerAddress, envelope: Envelope): void;
  /** Called at the end of each turn: write out what was queued. */
  flush(): void;
  /**
   * Sends the node hosting `to` a sign of life even when nothing is queued for it (leaves with
   * the next flush): quiesced groups send no heartbeats, so their followers watch the leader's
   * node instead (see {@linkcode Driver.receive}).
   */
  ping(to: PeerAddress): void;
}

/** Reads the wall clock in Unix milliseconds (stamped into commands by the leader). */
export interface WallClock {
  now(): number;
}

/** A logger the driver reports to. */
export interface DriverLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** A data-path request for one shard: the application's `op`. */
export interface DataRequest<Op> {
  readonly shardId: ShardId;
  /** The caller's conf epoch for the shard, 0 to skip the check. */
  readonly confEpoch: number;
  readonly op: Op;
  /** When the caller stops waiting, on the driver's wall clock. */
  readonly deadlineMs: number;
  /** The client asked to follow this request: its steps are logged with field `trace`. */
  readonly traceId?: string;
}

/** Options of a {@linkcode Driver}. */
export interface DriverOptions<Op, R, M extends GroupMachine<R>> {
  /** The application the groups replicate. */
  readonly app: GroupApplication<Op, R, M>;
  readonly store: NodeStorage;
  readonly nodeId: string;
  readonly tuning: ReplicaTuning;
  readonly outbound: RaftOutbound;
  readonly clock: WallClock;
  readonly log: DriverLog;
  /** Seeds the replicas' election jitter. */
  readonly seed: number;
  /** Requests waiting in the inbox before new ones are refused (RESOURCE_EXHAUSTED). */
  readonly inboxRequestsMax?: number;
  /** Raft messages waiting in the inbox before new ones are dropped (Raft sends again). */
  readonly inboxMessagesMax?: number;
  /** A monotonic clock in milliseconds, to time turns (default `performance.now`). */
  readonly monotonicMs?: () => number;
  /**
   * Counts ticks by this clock rather than by `tick()` calls: a turn takes every tick whose time
   * has come, even when the timer ran late or the process was paused (see {@linkcode TickClock}).
   * Lease reads need it. Without it (the simulations, most tests), each `tick()` is one tick.
   */
  readonly tickClock?: TickClock;
  /** Sees every Ready a replica persists and every turn (safety checks, metrics). */
  readonly observer?: DriverObserver<R, M>;
  /**
   * Settles once answers given now have left the process: a turn that only applies holds its
   * transaction open until then and flushes after (`WriteOptions.hold`). Default: two turns of
   * the event loop (`setImmediate` twice), after which the data path's answer batch, queued in
   * the first, has been written to its socket.
   */
  readonly answersLeft?: () => Promise<void>;
}

/** Resolves after the event loop's next round of I/O callbacks and timers (`setImmediate`). */
function oneLoopTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Two turns of the event loop: the data path writes its answers from an immediate. */
function twoLoopTurns(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

/**
 * Watches the loop from inside: the core simulation (`tests/sim`) checks Raft's safety properties
 * with `persisted`, the kvnode's metrics time turns with `turned`. A throw stops the node as a
 * broken invariant does.
 */
export interface DriverObserver<R, M extends GroupMachine<R>> {
  /**
   * Inside the turn's transaction, right after `replica` persisted `ready` and applied its
   * committed entries: `appliedBefore` is the replica's applied index before the Ready (its
   * snapshot's index when the Ready installs one).
   */
  persisted?(replica: Replica<R, M>, ready: Ready, appliedBefore: LogIndex): void;
  /** After each turn that wrote: its length, its transaction's, and the entries it persisted. */
  turned?(turn: TurnReport): void;
}

/** One turn that wrote, as {@linkcode DriverObserver.turned} sees it. */
export interface TurnReport {
  /** The whole turn, in milliseconds. */
  readonly ms: number;
  /**
   * Its one transaction, in milliseconds: to the commit being durable, or only committed when
   * `durable` is false.
   */
  readonly writeMs: number;
  /** Whether the turn waited for its sync (false: it only applied committed entries or compacted). */
  readonly durable: boolean;
  /** Log entries persisted, over every group (the group commit's size). */
  readonly entries: number;
  /** Groups whose Ready the transaction persisted or applied. */
  readonly groups: number;
}

/**
 * The schedule of a node's ticks: tick `k` is due `k * periodMs` after the driver starts. A
 * leader's lease is counted in its own ticks and its followers' promise not to vote in theirs, so
 * both must keep pace with real time: a timer that fires late, or not at all while the process is
 * stopped, would leave a deposed leader trusting a lease that ran out long ago. Each turn
 * therefore takes the ticks that came due first, before it steps the messages it found waiting:
 * a follower that hears its leader then counts only ticks due after that, and a leader confirms
 * reads as of the turn's start, after every request it serves arrived. A leader whose turn came
 * late by a whole election timeout may step down by check-quorum before it sees the answers that
 * waited; its lease was void anyway. At most `electionTicks - 1` are taken at once: that already
 * voids any lease older than the gap, yet cannot alone run a follower's election timer out.
 */
export interface TickClock {
  /** Milliseconds per tick (`raft.tick_ms`). */
  readonly periodMs: number;
  /** A monotonic clock in milliseconds. */
  readonly now: () => number;
}

/** A turn longer than this counts as slow (see {@linkcode Driver.turnStats}). */
export const SLOW_TURN_MS = 100;

/**
 * How long a request waits on a replica that knows no leader (an election is under way) before
 * it is answered NOT_LEADER without one: answering at once would send the caller into backoff
 * just as the election ends, adding its pause to the failover.
 */
export const LEADERLESS_WAIT_MS = 1_500;

/**
 * Pings to the nodes this one shares groups with per election timeout (see `Driver.receive`): a
 * node is taken for silent once nothing came from it for `raft.election_ticks`, so with three a
 * node must miss three pings in a row (or stall for about two thirds of a timeout). Every other
 * tick (five per timeout) cost each idle kvnode about 0.3 % of a core more on the dev machine,
 * the receivers' wakes.
 */
const PINGS_PER_ELECTION_TIMEOUT = 3;

/** Ticks between pings for an election timeout of `electionTicks`. */
export function pingEveryTicks(electionTicks: number): number {
  return Math.max(1, Math.floor(electionTicks / PINGS_PER_ELECTION_TIMEOUT));
}

/**
 * A snapshot being received (see {@linkcode Driver.stageSnapshot}): its pieces are written as they
 * come; {@linkcode finish} returns the `data` to put in the snapshot message handed to the driver.
 */
export interface SnapshotStagingHandle {
  /** Writes the next piece; resolves with a problem when the data cannot be a snapshot. */
  write(piece: Uint8Array): Promise<string | undefined>;
  /** Writes what is left: the message's `data` (a token naming the staged records), or why not. */
  finish(): Promise<{ kind: "ok"; data: Uint8Array } | { kind: "invalid"; message: string }>;
  /** Gives the staging up (the transfer failed): what was written becomes garbage. */
  abort(): void;
}

/** Bytes of one snapshot record at most: a 4 KiB key and a value of up to 64 MiB, with room. */
const SNAPSHOT_RECORD_BYTES_MAX = 80 * 1024 * 1024;

export type { AdminResult } from "./driver_admin.ts";

/** A request held by a replica that knows no leader, since `sinceMs`. */
interface Held {
  // deno-lint-ignore no-explicit-any
  readonly request: DataRequest<any>;
  readonly live: LiveRequest;
  readonly sinceMs: number;
}

interface LiveRequest {
  readonly deadlineMs: number;
  proposed: boolean;
  done: boolean;
  /** Set for a traced request: its id and shard, for the log lines of its steps. */
  readonly trace?: { readonly trace: string; readonly shard: ShardId };
  // deno-lint-ignore no-explicit-any
  readonly resolve: (outcome: Outcome<any>) => void;
}

type InboxItem =
  | { readonly kind: "message"; readonly envelope: Envelope }
  // deno-lint-ignore no-explicit-any
  | { readonly kind: "request"; readonly request: DataRequest<any>; readonly live: LiveRequest }
  | { readonly kind: "task"; readonly run: () => void; readonly readOnly: boolean }
  | { readonly kind: "snapshotStatus"; shardId: ShardId; to: number; ok: boolean };

// deno-lint-ignore no-explicit-any
type AnyReplica = Replica<any, any>;

const INBOX_REQUESTS_MAX_DEFAULT = 100_000;
const INBOX_MESSAGES_MAX_DEFAULT = 100_000;

/**
 * The driver loop of one kvnode, running the application `app` of its options on every group: requests
 * of type `Op`, results of type `R`, state machines of type `M`. See the module docs.
 */
export class Driver<Op, R, M extends GroupMachine<R>> {
  readonly #options: DriverOptions<Op, R, M>;
  readonly #replicas = new Map<number, Replica<R, M>>();
  readonly #live = new Set<LiveRequest>();
  /**
   * Replicas that may have work on a tick or a Ready: all but the quiesced ones with nothing
   * pending. A turn looks at these and at {@linkcode #touched} only, so that a thousand quiet
   * groups cost next to nothing.
   */
  readonly #awake = new Set<Replica<R, M>>();
  /** Replicas with a log compaction under way: each turn's write takes a step of each. */
  readonly #compacting = new Set<Replica<R, M>>();
  /** Replicas a message, request or snapshot report reached in this turn. */
  readonly #touched = new Set<Replica<R, M>>();
  /** An admin task ran in this turn: it may have touched any replica. */
  #touchedAll = false;
  /** Ticks counted so far; the clock of {@linkcode #heardAt}. */
  #tickCount = 0;
  /** The tick of the last pings sent. */
  #pingedAtTick = Number.NEGATIVE_INFINITY;
  /** The nodes to ping; recomputed (undefined) when a replica comes, goes or learns a peer. */
  #pingTargets: Map<string, PeerAddress> | undefined;
  /** Replicas with a snapshot view open, released at the end of each turn. */
  readonly #withSources = new Set<Replica<R, M>>();
  /** Replicas with {@linkcode Replica.appliedWaiters}, whose deadlines each tick checks. */
  readonly #waitingApplied = new Set<Replica<R, M>>();
  readonly #replicaHooks: ReplicaHooks = {
    peersChanged: () => (this.#pingTargets = undefined),
    sourceOpened: (replica) => this.#withSources.add(replica),
  };
  /** The tick at which each other node was last heard from (a Raft batch, empty or not). */
  readonly #heardAt = new Map<string, number>();
  /**
   * Requests that reached a replica which knew no leader (shard id → requests), held until one
   * is elected ({@linkcode LEADERLESS_WAIT_MS} at most): then served here, or redirected to it.
   */
  readonly #leaderless = new Map<number, Held[]>();
  #inbox: InboxItem[] = [];
  #inboxRequests = 0;
  #inboxMessages = 0;
  #droppedMessages = 0;
  /** Shards whose replica is being created (shard id → peer id), reserved by `createReplica`. */
  readonly #creating = new Map<number, number>();
  /**
   * Replicas to delete in the next turn's transaction (shard id → why): told by a member that they
   * are no longer in the group, or deleted by an admin call (which `done` answers).
   */
  readonly #evicted = new Map<number, { why: string; done?: () => void }>();
  #ticksDue = 0;
  /** With a tick clock: its reading at start, and the ticks it has made due since. */
  #tickOrigin = 0;
  #ticksScheduled = 0;
  #wake: (() => void) | undefined;
  #running = false;
  #stopped: Promise<void> | undefined;
  #prng: Prng;
  readonly #readRounds = new RoundIds();
  #turns = 0;
  #turnMsMax = 0;
  #turnWriteMsOfMax = 0;
  #slowTurns = 0;
  /** How long the current turn's write took (of the turn's time, the part spent on disk). */
  #writeMs = 0;
  /** What the current turn's write persisted, if it wrote. */
  #turnWrote: { entries: number; groups: number; durable: boolean } | undefined;
  /** Whether the loop waited for work since its last turn (see `#turn`). */
  #fromIdle = false;
  readonly #now: () => number;
  readonly #idleWaiters: Array<() => void> = [];
  /**
   * Generations being written by a snapshot transfer (`writing`), or staged and handed to the
   * loop, not yet installed or refused (`delivered`), by `generationKey`. Never deleted.
   */
  readonly #staging = new Map<string, "writing" | "delivered">();
  #nextGeneration = 1;
  #collectRequested = false;
  #collectWake: (() => void) | undefined;
  #collecting: Promise<void> | undefined;
  /** Resolved when the loop stops: a task asked of it then will never run. */
  readonly #stopping = Promise.withResolvers<void>();
  readonly #failure = Promise.withResolvers<Error>();
  readonly #admin: AdminHost<R, M>;

  constructor(options: DriverOptions<Op, R, M>) {
    this.#options = options;
    this.#now = options.monotonicMs ?? (() => performance.now());
    this.#prng = mulberry32(options.seed);
    this.#admin = this.#adminHost();
  }

  /** The node this driver runs on. */
  get nodeId(): string {
    return this.#options.nodeId;
  }

  /** Loop turns that wrote (each one LMDB transaction). */
  get turns(): number {
    return this.#turns;
  }

  /**
   * The longest turn so far (and the part of it spent in its storage write) and how many turns
   * took over {@linkcode SLOW_TURN_MS}, in milliseconds, since the start or the last
   * {@linkcode resetTurnStats}.
   */
  get turnStats(): {
    readonly turnMsMax: number;
    readonly turnWriteMs: number;
    readonly slowTurns: number;
  } {
    return {
      turnMsMax: this.#turnMsMax,
      turnWriteMs: this.#turnWriteMsOfMax,
      slowTurns: this.#slowTurns,
    };
  }

  /** Starts a new window for {@linkcode turnStats}. */
  resetTurnStats(): void {
    this.#turnMsMax = 0;
    this.#turnWriteMsOfMax = 0;
    this.#slowTurns = 0;
  }

  /**
   * Loads every replica recorded in the store, verifying their logs. Returns a message naming the
   * replica and index when a stored entry is corrupt: the node must then refuse to start.
   */
  load(): { kind: "ok"; replicas: number } | { kind: "dataLoss"; message: string } {
    const start = new Uint8Array([PREFIX.replica]);
    for (const { value } of this.#options.store.range(start, prefixEnd(start))) {
      const record = decodeRecord(value);
      const replica = this.#newReplica(record);
      const verified = replica.log.verifyAll();
      if (verified.kind === "dataLoss") {
        return {
          kind: "dataLoss",
          message: `Replica of shard ${record.shardId} (peer ${record.peerId}) has a corrupt log ` +
            `entry at index ${verified.index}: ${verified.detail}`,
        };
      }
      this.#replicas.set(record.shardId, replica);
      this.#pingTargets = undefined;
      this.#nextGeneration = Math.max(this.#nextGeneration, replica.generation + 1);
    }
    for (const { generation } of storedGenerations(this.#options.store)) {
      this.#nextGeneration = Math.max(this.#nextGeneration, generation + 1);
    }
    return { kind: "ok", replicas: this.#replicas.size };
  }

  #newReplica(record: ReplicaRecord): Replica<R, M> {
    const seed = Math.floor(this.#prng() * 2 ** 32);
    const replica = new Replica<R, M>(this.#options.store, {
      record,
      tuning: this.#options.tuning,
      prng: mulberry32(seed),
      open: (spaces, range, replica) => this.#options.app.open(spaces, range, replica),
      hooks: this.#replicaHooks,
    });
    this.#awake.add(replica);
    return replica;
  }

  /**
   * Resolves with the error that stopped the loop: a storage failure (memory may then be ahead of
   * the disk) or a broken invariant. The node must then stop: it can no longer serve correctly.
   */
  get failed(): Promise<Error> {
    return this.#failure.promise;
  }

  /** Starts the loop. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    if (this.#options.tickClock !== undefined) {
      this.#tickOrigin = this.#options.tickClock.now();
      this.#ticksScheduled = 0;
    }
    this.#stopped = this.#loop().catch((error) => {
      this.#running = false;
      this.#stopping.resolve();
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
      this.#wakeCollector();
      this.#options.log.error("Driver loop failed: stopping the node", { error });
      this.#failure.resolve(error instanceof Error ? error : new Error(String(error)));
    });
    this.#collecting = this.#collectLoop();
    this.#requestCollection();
  }

  /** Stops the loop after the current turn; waiting requests get UNAVAILABLE or unknown. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#stopping.resolve();
    this.#wakeUp();
    this.#wakeCollector();
    await this.#stopped;
    await this.#collecting;
    // Admin calls waiting for a conf change: it may still apply on the other members.
    for (const replica of this.#waitingApplied) replica.appliedWaiters.failAll();
    for (const live of this.#live) {
      this.#finish(
        live,
        live.proposed ? unknown("The node is shutting down") : {
          kind: "unavailable",
          message: "The node is shutting down",
        },
      );
    }
  }

  /**
   * Counts one Raft tick (called by the node's fixed-period timer); with a tick clock, takes the
   * ticks that clock made due instead.
   */
  tick(): void {
    if (this.#options.tickClock === undefined) this.#ticksDue++;
    else this.#takeDueTicks();
    this.#wakeUp();
  }

  /** With a tick clock: counts the ticks due by now, at most `electionTicks - 1` pending. */
  #takeDueTicks(): void {
    const clock = this.#options.tickClock;
    if (clock === undefined || !this.#running) return;
    const due = Math.floor((clock.now() - this.#tickOrigin) / clock.periodMs);
    if (due <= this.#ticksScheduled) return;
    const pendingMax = Math.max(1, this.#options.tuning.electionTicks - 1);
    this.#ticksDue = Math.min(this.#ticksDue + (due - this.#ticksScheduled), pendingMax);
    this.#ticksScheduled = due;
  }

  /** Raft messages, requests and tasks waiting in the inbox for the next turn. */
  get inboxDepth(): number {
    return this.#inbox.length;
  }

  /** Raft messages dropped because the inbox was full. */
  get droppedMessages(): number {
    return this.#droppedMessages;
  }

  /**
   * Hands received Raft messages to the loop; drops them past the inbox bound. `fromNode` (the
   * sending kvnode, whose batch may be empty: a ping) counts as a sign of its life: a quiesced
   * follower whose leader's node is not heard from for an election timeout wakes and elects.
   */
  receive(envelopes: readonly Envelope[], fromNode?: string): void {
    // Stamped with the ticks already due too (by the clock, when it counts them), so a long turn
    // or a pause of this process does not make every peer look silent.
    this.#takeDueTicks();
    if (fromNode !== undefined && fromNode !== "") {
      this.#heardAt.set(fromNode, this.#tickCount + this.#ticksDue);
    }
    const max = this.#options.inboxMessagesMax ?? INBOX_MESSAGES_MAX_DEFAULT;
    for (const envelope of envelopes) {
      if (this.#inboxMessages >= max) {
        this.#droppedMessages++;
        this.#releaseStaged(envelope);
        continue;
      }
      this.#inboxMessages++;
      this.#inbox.push({ kind: "message", envelope });
    }
    // A ping only updates `#heardAt`, which the next tick reads: no turn for it.
    if (envelopes.length > 0) this.#wakeUp();
  }

  /** Reports how sending a snapshot went. */
  reportSnapshot(shardId: ShardId, to: number, ok: boolean): void {
    this.#inbox.push({ kind: "snapshotStatus", shardId, to, ok });
    this.#wakeUp();
  }

  /** Submits a data-path request; resolves with its outcome by its deadline at the latest. */
  submit(request: DataRequest<Op>): Promise<Outcome<R>> {
    const inboxMax = this.#options.inboxRequestsMax ?? INBOX_REQUESTS_MAX_DEFAULT;
    if (this.#inboxRequests >= inboxMax) {
      return Promise.resolve({
        kind: "resourceExhausted",
        message: `Node "${this.nodeId}" has ${inboxMax} requests queued: the limit`,
      });
    }
    const { promise, resolve } = Promise.withResolvers<Outcome<R>>();
    const trace = request.traceId === undefined || request.traceId === ""
      ? undefined
      : { trace: request.traceId, shard: request.shardId };
    const live: LiveRequest = {
      deadlineMs: request.deadlineMs,
      proposed: false,
      done: false,
      resolve,
      trace,
    };
    if (trace !== undefined) this.#options.log.info("Traced request arrived", trace);
    this.#live.add(live);
    this.#inboxRequests++;
    this.#inbox.push({ kind: "request", request, live });
    this.#wakeUp();
    return promise;
  }

  /** Runs `work` inside a loop turn, where it may touch replicas; resolves with its result. */
  #task<T>(work: () => T, readOnly = false): Promise<T> {
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    this.#inbox.push({
      kind: "task",
      readOnly,
      run: () => {
        try {
          resolve(work());
        } catch (error) {
          reject(error);
          // A broken invariant stops the node, whatever the caller makes of the rejection.
          if (error instanceof AssertionError) throw error;
        }
      },
    });
    this.#wakeUp();
    return promise;
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      if (this.#inbox.length === 0 && this.#ticksDue === 0 && !this.#anyReady()) {
        if (this.#compacting.size === 0) {
          for (const resolve of this.#idleWaiters.splice(0)) resolve();
          await new Promise<void>((resolve) => (this.#wake = resolve));
          this.#fromIdle = true;
          continue;
        }
        // Only compaction steps are due. Such a turn may not wait for anything (it commits on
        // this thread), so let the event loop run first: messages, requests and timers get in
        // between the steps, and a long compaction never stalls the node one turn after another.
        await oneLoopTurn();
        if (!this.#running) break;
      }
      const started = this.#now();
      this.#writeMs = 0;
      this.#turnWrote = undefined;
      await this.#turn();
      const took = this.#now() - started;
      // Set by `#write` during the turn (TypeScript narrowed the field at the reset above).
      const wrote = this.#turnWrote as
        | { entries: number; groups: number; durable: boolean }
        | undefined;
      if (wrote !== undefined) {
        this.#options.observer?.turned?.({ ms: took, writeMs: this.#writeMs, ...wrote });
      }
      if (took > this.#turnMsMax) {
        this.#turnMsMax = took;
        this.#turnWriteMsOfMax = this.#writeMs;
      }
      if (took > SLOW_TURN_MS) {
        this.#slowTurns++;
        this.#options.log.warn("Slow driver turn", {
          ms: Math.round(took),
          writeMs: Math.round(this.#writeMs),
          replicas: this.#replicas.size,
        });
      }
    }
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /** Resolves the next time the loop has nothing to do (tests use it to pace logical time). */
  whenIdle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#idleWaiters.push(resolve);
    this.#wakeUp();
    return promise;
  }

  #anyReady(): boolean {
    for (const replica of this.#awake) if (replica.node.hasReady()) return true;
    return false;
  }

  async #turn(): Promise<void> {
    const fromIdle = this.#fromIdle;
    this.#fromIdle = false;
    this.#intake();
    const evictions = new Map(this.#evicted);
    this.#evicted.clear();
    const evicted = [...evictions.keys()].flatMap((id) => this.#replicas.get(id) ?? []);
    // An eviction whose replica is already gone has nothing left to do.
    for (const [id, eviction] of evictions) if (!this.#replicas.has(id)) eviction.done?.();
    const inPlay = [...this.#inPlay()];
    const readies: Array<[Replica<R, M>, Ready]> = [];
    for (const replica of inPlay) {
      if (evicted.includes(replica)) continue;
      if (replica.node.hasReady()) readies.push([replica, replica.node.ready()]);
    }
    if (readies.length === 0 && evicted.length === 0 && this.#compacting.size === 0) {
      this.#options.outbound.flush();
      this.#releaseSnapshotSources();
      this.#settleAwake(inPlay);
      return;
    }
    // A leader's appends and heartbeats leave now, while its own log is written (Raft thesis
    // §10.2.1); answers, votes and the rest wait for the write (`splitMessages`).
    const late: Array<[Replica<R, M>, readonly Message[]]> = [];
    let sentEarly = false;
    for (const [replica, ready] of readies) {
      const { early, late: held } = splitMessages(ready, replica.log.hardState);
      this.#send(replica, early);
      if (early.length > 0) sentEarly = true;
      late.push([replica, held]);
    }
    this.#options.outbound.flush();
    // A small turn of a quiet node that sent nothing ahead (a follower's, at a low rate) has
    // nothing to do until its write is synced: it commits on the loop's thread, without the
    // handoffs.
    const small = smallWrite(readies);
    const quiet = fromIdle && !sentEarly && evicted.length === 0 && small;
    const { installed, removed } = await this.#write(readies, evicted, { small, quiet });
    for (const [replica, messages] of late) this.#send(replica, messages);
    this.#options.outbound.flush();
    this.#releaseSnapshotSources();
    for (const replica of installed) this.#installed(replica);
    if (removed.length > 0) this.#requestCollection();
    this.#advance(readies, removed);
    for (const replica of removed) {
      const eviction = evictions.get(replica.shardId);
      this.#drop(replica, eviction?.why ?? "it was removed from its group");
      eviction?.done?.();
    }
    this.#settleAwake(inPlay);
  }

  /** The start of a turn: due ticks, the inbox, held requests, and reads confirmed or sent. */
  #intake(): void {
    // The due ticks before the messages (see TickClock): a follower's election timer counts only
    // ticks due after it heard its leader, and a leader's lease is judged as of this moment, after
    // every request in this inbox arrived.
    const inbox = this.#inbox;
    this.#inbox = [];
    this.#takeDueTicks();
    const ticked = this.#ticksDue > 0;
    for (; this.#ticksDue > 0; this.#ticksDue--) {
      this.#tickCount++;
      for (const replica of this.#inPlay()) replica.node.tick();
    }
    for (const item of inbox) this.#handle(item);
    if (ticked) {
      this.#expireRequests();
      this.#watchLeaderNodes();
    }
    this.#releaseLeaderless();
    for (const replica of this.#touched) this.#sendReadRound(replica);
  }

  /**
   * The turn's one transaction: deletes the evicted replicas, persists and applies the Readies
   * that write something (a turn that only sends — a read round, heartbeats and their answers —
   * writes nothing), answers the applied proposals, and takes a step of every compaction under
   * way (a turn with nothing else to do runs for those alone, until they are done).
   */
  async #write(
    readies: ReadonlyArray<[Replica<R, M>, Ready]>,
    evicted: readonly Replica<R, M>[],
    turn: { small: boolean; quiet: boolean },
  ): Promise<{ installed: Replica<R, M>[]; removed: Replica<R, M>[] }> {
    const removed: Replica<R, M>[] = [];
    const installed: Replica<R, M>[] = [];
    const writing = readies.filter(([, ready]) => writesSomething(ready));
    // Those persisting a Ready step their compaction after it (`#persistAndApply`). Most turns
    // have no compaction under way: no copy of the set then.
    const stepping = this.#compacting.size === 0
      ? []
      : [...this.#compacting].filter((replica) =>
        !evicted.includes(replica) && !writing.some(([writer]) => writer === replica)
      );
    if (writing.length === 0 && evicted.length === 0 && stepping.length === 0) {
      return { installed, removed };
    }
    const writeStarted = this.#now();
    // A turn that only applies committed entries need not wait for its sync: a machine crash
    // that undoes it is redone from the durable log on restart (`durable: false`, node_store.ts),
    // which commits on the loop's thread, without the handoffs to lmdb-js's writer thread, and
    // answers at once. It still flushes the data pages, blocking the loop meanwhile, so it is
    // taken only for a small turn (`smallWrite`) while few requests wait on this node (no more
    // live than this turn applies entries); under load the writer thread flushes while the loop
    // reads.
    // New entries, a new term or vote, a snapshot, an eviction or a membership change wait.
    let applying = 0;
    for (const [, ready] of writing) applying += ready.committedEntries.length;
    // A turn of compaction steps alone has nothing to wait for either: a crash that undoes it
    // leaves a longer log, compacted again later.
    const stepsOnly = writing.length === 0 && evicted.length === 0;
    const durable = !stepsOnly &&
      (evicted.length > 0 || this.#live.size > applying || !turn.small ||
        writing.some(([, ready]) => mustWaitForSync(ready)));
    const answers: Array<() => void> = [];
    const answersLeft = this.#options.answersLeft ?? twoLoopTurns;
    // An entry this very turn persists may already be committed (a group whose only voter is this
    // node): its answer must wait for the sync, the only copy's.
    const afterSync = writing.some(([, ready]) => appliesOwnEntries(ready));
    await this.#options.store.write(() => {
      for (const replica of evicted) {
        replica.destroy();
        removed.push(replica);
      }
      for (const [replica, ready] of writing) {
        this.#persistAndApply(replica, ready, answers, installed, removed);
      }
      for (const replica of stepping) this.#compactIfDue(replica);
      // Answered before the transaction commits: what they answer is decided (committed
      // entries, durable on a majority; a crash re-applies them alike), and nothing reads this
      // node's data until the loop's next turn, which starts after the commit.
      if (!afterSync) { for (const answer of answers) answer(); }
    }, {
      durable,
      now: turn.quiet,
      // A turn that only applies lets its answers leave before it flushes (node_store.ts).
      hold: durable ? undefined : () => (answers.length > 0 ? answersLeft() : undefined),
    });
    if (afterSync) { for (const answer of answers) answer(); }
    this.#writeMs = this.#now() - writeStarted;
    this.#turns++;
    let entries = 0;
    for (const [, ready] of writing) entries += ready.entries.length;
    this.#turnWrote = { entries, groups: writing.length, durable };
    return { installed, removed };
  }

  /** After the write: serves confirmed reads, advances every Ready. */
  #advance(
    readies: ReadonlyArray<[Replica<R, M>, Ready]>,
    removed: readonly Replica<R, M>[],
  ): void {
    for (const [replica, ready] of readies) {
      // A replica removed in this turn is gone (its data is garbage): its reads must not be
      // served from it. `#drop` answers them UNAVAILABLE (another member will serve them).
      if (!removed.includes(replica)) {
        this.#takeReadStates(replica, ready);
        this.#serveConfirmedReads(replica);
      }
      replica.node.advance(ready);
    }
  }

  /** Inside the turn's write: persists one Ready and applies its committed entries. */
  #persistAndApply(
    replica: Replica<R, M>,
    ready: Ready,
    answers: Array<() => void>,
    installed: Replica<R, M>[],
    removed: Replica<R, M>[],
  ): void {
    const { observer } = this.#options;
    const appliedBefore = ready.snapshot?.metadata.index ?? replica.log.appliedState.applied;
    const summary = replica.persistAndApply(ready, { answers });
    observer?.persisted?.(replica, ready, appliedBefore);
    // Admin calls whose change applied now: checked while the log still holds the terms of what
    // this Ready applied (before compaction, or before the replica's removal deletes its log).
    // Like proposals, they are answered before the commit: what they answer is committed.
    this.#wakeAppliedWaiters(replica);
    for (const change of summary.changes) {
      this.#options.log.info("Applied a membership change", { shard: replica.shardId, change });
    }
    if (summary.replacedGeneration !== undefined) installed.push(replica);
    if (summary.removed) {
      replica.destroy();
      removed.push(replica);
    } else {
      this.#compactIfDue(replica);
    }
  }

  /** Inside the turn's write: a step of the replica's compaction, if one is due or under way. */
  #compactIfDue(replica: Replica<R, M>): void {
    replica.compactIfDue(this.#options.tuning);
    if (replica.compacting) this.#compacting.add(replica);
    else this.#compacting.delete(replica);
  }

  #handle(item: InboxItem): void {
    switch (item.kind) {
      case "message":
        this.#inboxMessages--;
        this.#touch(item.envelope.shardId);
        return this.#step(item.envelope);
      case "request":
        this.#inboxRequests--;
        return this.#accept(item.request, item.live);
      case "task":
        // A task that may change a replica may also leave it a Ready: look at every one.
        if (!item.readOnly) this.#touchedAll = true;
        return item.run();
      case "snapshotStatus": {
        const replica = this.#touch(item.shardId);
        replica?.node.reportSnapshot(item.to as PeerId, item.ok ? "success" : "failure");
        return;
      }
      default: {
        const never: never = item;
        return unreachable(never, "inbox item");
      }
    }
  }

  /** Marks the replica of `shardId` (if any) for this turn's tick and Ready; returns it. */
  #touch(shardId: ShardId): Replica<R, M> | undefined {
    const replica = this.#replicas.get(shardId);
    if (replica !== undefined) this.#touched.add(replica);
    return replica;
  }

  /** The replicas this turn looks at: the awake and the touched ones (all after an admin task). */
  #inPlay(): Iterable<Replica<R, M>> {
    if (this.#touchedAll) return this.#replicas.values();
    if (this.#touched.size === 0) return this.#awake;
    return new Set([...this.#awake, ...this.#touched]);
  }

  /** After a turn: a quiesced replica with nothing pending sleeps until something touches it. */
  #settleAwake(inPlay: Iterable<Replica<R, M>>): void {
    for (const replica of inPlay) {
      if (!this.#replicas.has(replica.shardId)) continue;
      if (replica.node.quiesced && !replica.node.hasReady()) this.#awake.delete(replica);
      else this.#awake.add(replica);
    }
    this.#touched.clear();
    this.#touchedAll = false;
  }

  #step(envelope: Envelope): void {
    const replica = this.#replicas.get(envelope.shardId);
    const before = replica === undefined ? undefined : pendingStaged(replica);
    try {
      this.#stepChecked(envelope);
    } finally {
      // A staged snapshot the core did not take (stale, or the message went nowhere) is garbage,
      // and so is one the core held until this message brought a newer one.
      this.#releaseStaged(envelope);
      if (before !== undefined && pendingStaged(replica!) !== before) {
        this.#forgetStaging(replica!.peerId, before);
      }
    }
  }

  /** Forgets a delivered staged snapshot unless its replica's core holds it for the next Ready. */
  #releaseStaged(envelope: Envelope): void {
    const message = envelope.message;
    if (message.type !== "snapshot") return;
    const generation = stagedGeneration(message.snapshot.data);
    if (generation === undefined) return;
    const replica = this.#replicas.get(envelope.shardId);
    if (replica?.peerId === message.to && pendingStaged(replica) === generation) return;
    this.#forgetStaging(message.to, generation);
  }

  #forgetStaging(peerId: number, generation: number): void {
    this.#staging.delete(generationKey(peerId, generation));
    this.#requestCollection();
  }

  #stepChecked(envelope: Envelope): void {
    const replica = this.#replicas.get(envelope.shardId);
    // Replicas are created only by admin calls, never by a message for an unknown group.
    if (replica === undefined || envelope.message.to !== replica.peerId) return;
    const refused = this.#refusedSender(replica, envelope);
    if (refused !== undefined) {
      this.#options.log.warn(`Dropped a Raft message: ${refused}`, {
        shard: replica.shardId,
        peer: envelope.message.from,
        sender: envelope.sender?.nodeId,
      });
      return;
    }
    const { sender } = envelope;
    const known = replica.peers.get(envelope.message.from);
    if (envelope.notMember) {
      if (envelope.confEpoch > replica.confEpoch) {
        this.#evicted.set(replica.shardId, {
          why: "a member told it that it is no longer in its group",
        });
      }
      return;
    }
    if (this.#answerRemovedPeer(replica, envelope)) return;
    if (sender !== undefined && sender.address !== "") {
      // A replica that missed the conf change adding a peer (it caught up by snapshot) still
      // learns where the peer lives from the peer's own messages, so it can answer them.
      if (known === undefined || known.address !== sender.address) {
        replica.learnPeer({ peerId: envelope.message.from, ...sender });
      }
    }
    replica.node.step(envelope.message);
  }

  /**
   * Why a message may not be stepped for the peer it names: a message speaks for `message.from`,
   * which must live on the node it came from (the transport names that node, authenticated when
   * credentials are on), so a node speaks for its own replicas only. A peer the replica does not
   * know yet is taken from its own node only if the replica's configuration lists it (added while
   * the replica could not hear of it); otherwise it may still send appends and heartbeats (a
   * member the replica has not caught up with yet may lead), and a snapshot whose membership lists
   * it as a voter and keeps the replica in the group (such a leader may have compacted past what
   * the replica holds: refusing it would leave the replica behind for good), but no removal notice,
   * other snapshot or leadership hand-over. Undefined: step it. (No sender: an unauthenticated
   * test transport.)
   */
  #refusedSender(replica: Replica<R, M>, envelope: Envelope): string | undefined {
    const { sender, message } = envelope;
    if (sender === undefined) return undefined;
    const known = replica.peers.get(message.from);
    if (known !== undefined && known.nodeId !== sender.nodeId) {
      return `peer ${message.from} lives on node "${known.nodeId}", not "${sender.nodeId}"`;
    }
    if (replica.isConfirmed(message.from)) return undefined;
    if (!envelope.notMember && message.type === "snapshot") {
      const { voters, learners } = message.snapshot.metadata.confState;
      const self = replica.peerId as PeerId;
      if (voters.includes(message.from) && (voters.includes(self) || learners.includes(self))) {
        return undefined;
      }
    }
    if (envelope.notMember || message.type === "snapshot" || message.type === "timeoutNow") {
      return `peer ${message.from} of node "${sender.nodeId}" is not a member it knows`;
    }
    return undefined;
  }

  /**
   * A peer behind on the group's membership that is no longer in it was removed while it could
   * not hear of it: tell it so (it deletes itself) instead of stepping its message. Membership only
   * changes through committed entries, and peer ids are never reused, so a member at a newer epoch
   * that does not list the peer knows the removal is final.
   */
  #answerRemovedPeer(replica: Replica<R, M>, envelope: Envelope): boolean {
    const from = envelope.message.from;
    const { voters, learners } = replica.log.appliedState.confState;
    if (envelope.confEpoch >= replica.confEpoch) return false;
    if (voters.includes(from) || learners.includes(from)) return false;
    const to = replica.peers.get(from) ??
      (envelope.sender === undefined ? undefined : { peerId: from, ...envelope.sender });
    if (to === undefined) return true;
    this.#options.outbound.send(to, {
      shardId: replica.shardId,
      confEpoch: replica.confEpoch,
      message: {
        type: "heartbeatResponse",
        from: replica.peerId as PeerId,
        to: from,
        term: 0 as Term,
        round: 0,
      },
      notMember: true,
    });
    return true;
  }

  #send(replica: Replica<R, M>, messages: readonly Message[]): void {
    for (const message of messages) {
      const to = replica.peers.get(message.to);
      if (to === undefined) {
        this.#options.log.warn("Dropped a Raft message to a peer with no known address", {
          shard: replica.shardId,
          peer: message.to,
        });
        continue;
      }
      if (message.type === "snapshot" && message.snapshot.data.length === 0) {
        // The data is read from the view opened when the core asked for this snapshot.
        const source = replica.takeSnapshotSource(message.snapshot.metadata.index);
        if (source === undefined) {
          this.#options.log.warn("Dropped a snapshot whose read view is gone", {
            shard: replica.shardId,
            peer: message.to,
          });
          replica.node.reportSnapshot(message.to, "failure");
          continue;
        }
        replica.counters.snapshotsSent++;
        this.#options.outbound.send(to, {
          shardId: replica.shardId,
          confEpoch: replica.confEpoch,
          message,
          snapshotSource: source,
        });
        continue;
      }
      this.#options.outbound.send(to, {
        shardId: replica.shardId,
        confEpoch: replica.confEpoch,
        message,
      });
    }
  }

  // --- Snapshots received, and unused generations ------------------------------------------

  /**
   * Starts receiving a snapshot for the replica `envelope` is addressed to: its records go into a
   * new generation of the replica's spaces (`snapshot_staging.ts`); the message handed to
   * {@linkcode receive} afterwards carries the token `finish` returns. Refused when this node
   * has no such replica.
   */
  stageSnapshot(envelope: Envelope): SnapshotStagingHandle | { readonly refused: string } {
    const replica = this.#replicas.get(envelope.shardId);
    const to = envelope.message.to;
    if (!this.#running || replica === undefined || replica.peerId !== to) {
      return {
        refused: `Node "${this.nodeId}" has no replica peer ${to} of shard ${envelope.shardId}`,
      };
    }
    const refused = this.#refusedSender(replica, envelope);
    if (refused !== undefined) return { refused: `Shard ${envelope.shardId}: ${refused}` };
    const generation = this.#nextGeneration++;
    const key = generationKey(to, generation);
    this.#staging.set(key, "writing");
    this.#options.log.info("Receiving a snapshot", {
      shard: envelope.shardId,
      index: envelope.message.type === "snapshot" ? envelope.message.snapshot.metadata.index : 0,
      generation,
    });
    const staging = new SnapshotStaging(this.#options.store, {
      peerId: to,
      generation,
      recordBytesMax: SNAPSHOT_RECORD_BYTES_MAX,
    });
    // The transport aborts only a staging whose message it does not hand over.
    const abort = () => {
      if (!this.#staging.has(key)) return;
      this.#staging.delete(key);
      this.#requestCollection();
    };
    return {
      write: async (piece) => {
        const result = await staging.write(piece);
        return result.kind === "ok" ? undefined : result.message;
      },
      finish: async () => {
        const result = await staging.finish();
        if (result.kind !== "ok") {
          abort();
          return result;
        }
        this.#staging.set(key, "delivered");
        return { kind: "ok", data: stagedToken(generation) };
      },
      abort,
    };
  }

  /** Closes the snapshot views no message took, at the end of a turn. */
  #releaseSnapshotSources(): void {
    for (const replica of this.#withSources) {
      if (!replica.releaseSnapshotSources()) this.#withSources.delete(replica);
    }
  }

  /**
   * A staged snapshot became the replica's current generation: it needs no protection any more,
   * and the generation it replaced is garbage.
   */
  #installed(replica: Replica<R, M>): void {
    this.#options.log.info("Installed a snapshot", {
      shard: replica.shardId,
      index: replica.log.appliedState.applied,
      generation: replica.generation,
    });
    this.#forgetStaging(replica.peerId, replica.generation);
  }

  /** Asks the collector to look for unused generations. */
  #requestCollection(): void {
    this.#collectRequested = true;
    this.#wakeCollector();
  }

  #wakeCollector(): void {
    const wake = this.#collectWake;
    this.#collectWake = undefined;
    wake?.();
  }

  /**
   * Deletes generations no replica uses and no snapshot is staging into, in bounded transactions
   * beside the loop's own, whenever asked (at start, after an install, a removal, an abort).
   */
  async #collectLoop(): Promise<void> {
    while (this.#running) {
      if (!this.#collectRequested) {
        await new Promise<void>((resolve) => (this.#collectWake = resolve));
        continue;
      }
      this.#collectRequested = false;
      try {
        await this.#collectOnce();
      } catch (error) {
        this.#options.log.error("Deleting unused generations failed", { error });
      }
    }
  }

  async #collectOnce(): Promise<void> {
    // Found on disk first, then checked against the loop's state: a generation created after the
    // scan is not among the candidates, one staging before it is in #staging.
    const found = [...storedGenerations(this.#options.store)];
    if (found.length === 0 || !this.#running) return;
    const used = await Promise.race([
      this.#task(() => {
        const keys = new Set(this.#staging.keys());
        for (const r of this.#replicas.values()) keys.add(generationKey(r.peerId, r.generation));
        return keys;
      }),
      this.#stopping.promise.then(() => undefined),
    ]);
    if (used === undefined) return;
    for (const generation of found) {
      if (used.has(generationKey(generation.peerId, generation.generation))) continue;
      const deleted = await deleteGeneration(this.#options.store, generation, () => this.#running);
      this.#options.log.info("Deleted an unused generation of replica data", {
        peer: generation.peerId,
        generation: generation.generation,
        keys: deleted,
      });
    }
  }

  // --- Data path ---------------------------------------------------------------------------

  #accept(request: DataRequest<Op>, live: LiveRequest): void {
    if (live.done) return;
    try {
      this.#acceptChecked(request, live);
    } catch (error) {
      // A broken invariant stops the node (the loop's failure path); any other failure while
      // serving one request answers that request, and the node carries on.
      if (error instanceof AssertionError) throw error;
      this.#options.log.error("Serving a request failed", { shard: request.shardId, error });
      this.#finish(live, internal(`Serving the request failed: ${error}`));
    }
  }

  #acceptChecked(request: DataRequest<Op>, live: LiveRequest): void {
    const replica = this.#touch(request.shardId);
    if (replica === undefined) {
      return this.#finish(live, {
        kind: "unavailable",
        message: `Shard ${request.shardId} has no replica on node "${this.nodeId}"`,
      });
    }
    if (request.confEpoch > replica.confEpoch) {
      return this.#finish(live, {
        kind: "staleEpoch",
        message: `Shard ${request.shardId} on node "${this.nodeId}" is at conf epoch ` +
          `${replica.confEpoch}, behind the caller's ${request.confEpoch}`,
        confEpoch: replica.confEpoch,
      });
    }
    const { op } = request;
    const { app } = this.#options;
    if (!app.isLocal(op) && !replica.knowsLeader()) return this.#holdLeaderless(request, live);
    const prepared = app.prepare(op, replica.machine, this.#options.clock.now());
    assert(
      prepared.kind !== "read" || prepared.local === app.isLocal(op),
      "The application's prepared read and isLocal() disagree",
    );
    switch (prepared.kind) {
      case "invalid":
        return this.#finish(live, { kind: "invalid", message: prepared.message });
      case "propose":
        return this.#propose(replica, prepared.data, live);
      case "read": {
        const waiter: ReadWaiter<R> = {
          serve: () => prepared.serve(replica.machine),
          resolve: (outcome) => this.#finish(live, outcome),
        };
        if (prepared.local) return this.#serveRead(replica, waiter);
        if (!replica.isLeader()) return this.#finish(live, this.#notLeader(replica));
        return replica.reads.queue(waiter);
      }
      default:
        return unreachable(prepared, "prepared request");
    }
  }

  /**
   * Once per tick: pings every node this one shares a group with (three times per election
   * timeout: {@linkcode pingEveryTicks}), and when one of them has been silent for an election
   * timeout, wakes each quiesced follower it leads (which then votes at once and campaigns within
   * another timeout).
   */
  #watchLeaderNodes(): void {
    // Counted from the last pings, not by the tick's number: a turn that takes several ticks at
    // once must not skip one.
    const pingNow = this.#pingTargets === undefined ||
      this.#tickCount - this.#pingedAtTick >= pingEveryTicks(this.#options.tuning.electionTicks);
    this.#pingTargets ??= this.#peerNodes();
    if (pingNow) {
      this.#pingedAtTick = this.#tickCount;
      for (const peer of this.#pingTargets.values()) {
        this.#options.outbound.ping(peer);
      }
    }
    const silentAfter = this.#options.tuning.electionTicks;
    const silent = new Set<string>();
    for (const nodeId of this.#pingTargets.keys()) {
      if (this.#tickCount - (this.#heardAt.get(nodeId) ?? 0) >= silentAfter) silent.add(nodeId);
    }
    if (silent.size === 0) return;
    for (const replica of this.#replicas.values()) {
      if (!replica.node.quiesced || replica.isLeader()) continue;
      const leader = replica.leader();
      if (leader === undefined || !silent.has(leader.nodeId)) continue;
      this.#options.log.info("Woke a quiesced replica: its leader's node is silent", {
        shard: replica.shardId,
        leader: leader.nodeId,
      });
      replica.node.wake(true);
      this.#touched.add(replica);
    }
  }

  /** The other nodes this one shares a group with, one peer address each. */
  #peerNodes(): Map<string, PeerAddress> {
    const nodes = new Map<string, PeerAddress>();
    for (const replica of this.#replicas.values()) {
      for (const peer of replica.peers.values()) {
        if (peer.nodeId !== this.nodeId && !nodes.has(peer.nodeId)) nodes.set(peer.nodeId, peer);
      }
    }
    return nodes;
  }

  #holdLeaderless(request: DataRequest<Op>, live: LiveRequest): void {
    const held = this.#leaderless.get(request.shardId) ?? [];
    held.push({ request, live, sinceMs: this.#options.clock.now() });
    this.#leaderless.set(request.shardId, held);
  }

  /**
   * Takes up the requests held for want of a leader: those of shards that know one now go
   * through {@linkcode #acceptChecked} again (served, or redirected); those held for
   * {@linkcode LEADERLESS_WAIT_MS} are answered NOT_LEADER; answered ones are dropped.
   */
  #releaseLeaderless(): void {
    if (this.#leaderless.size === 0) return;
    const now = this.#options.clock.now();
    for (const [shardId, held] of [...this.#leaderless]) {
      const replica = this.#replicas.get(shardId);
      const known = replica === undefined || replica.knowsLeader();
      const waiting = held.filter(({ request, live, sinceMs }) => {
        if (live.done) return false;
        if (known) this.#accept(request, live);
        else if (now - sinceMs >= LEADERLESS_WAIT_MS) this.#finish(live, this.#notLeader(replica));
        else return true;
        return false;
      });
      if (waiting.length === 0) this.#leaderless.delete(shardId);
      else this.#leaderless.set(shardId, waiting);
    }
  }

  /** Serves one read; a failure answers that read only (INTERNAL), never the loop. */
  #serveRead(replica: Replica<R, M>, waiter: ReadWaiter<R>): void {
    replica.counters.reads++;
    let outcome: Outcome<R>;
    try {
      outcome = waiter.serve();
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      this.#options.log.error("Serving a read failed", { shard: replica.shardId, error });
      outcome = internal(`Serving the read on shard ${replica.shardId} failed: ${error}`);
    }
    waiter.resolve(outcome);
  }

  #propose(replica: Replica<R, M>, data: Uint8Array, live: LiveRequest): void {
    // An empty entry is a new leader's and answers nobody (`Replica.#applyNormal`).
    assert(data.length > 0, () => `Shard ${replica.shardId}: the application proposed nothing`);
    const result = replica.node.propose(data);
    switch (result.kind) {
      case "ok":
        live.proposed = true;
        replica.counters.proposals++;
        if (live.trace !== undefined) {
          this.#options.log.info("Traced request proposed", {
            ...live.trace,
            index: result.index,
            term: result.term,
          });
        }
        replica.replacePending(result.index, result.term);
        replica.pending.set(result.index, {
          term: result.term,
          resolve: (outcome) => this.#finish(live, outcome),
        });
        return;
      case "notLeader":
        return this.#finish(live, this.#notLeader(replica));
      case "overloaded":
        return this.#finish(live, {
          kind: "resourceExhausted",
          message: `Shard ${replica.shardId} has ${result.uncommittedBytes} uncommitted bytes: ` +
            "the leader refuses new proposals until some commit",
        });
      case "transferring":
      case "confChangePending":
        return this.#finish(live, {
          kind: "unavailable",
          message: `Shard ${replica.shardId} is transferring its leadership: retry`,
        });
      case "invalid":
        return this.#finish(live, { kind: "invalid", message: result.reason });
      default: {
        const never: never = result;
        return unreachable(never, "propose result");
      }
    }
  }

  #notLeader(replica: Replica<R, M>): Outcome<R> {
    const leader = replica.leader();
    const self = leader?.peerId === replica.peerId;
    return {
      kind: "notLeader",
      message: `Shard ${replica.shardId}: node "${this.nodeId}" is not the leader` +
        (leader === undefined || self ? " (no leader known)" : ` (leader is "${leader.nodeId}")`),
      leaderNode: leader === undefined || self ? "" : leader.nodeId,
      leaderAddress: leader === undefined || self ? "" : leader.address,
      confEpoch: replica.confEpoch,
    };
  }

  #sendReadRound(replica: Replica<R, M>): void {
    if (!replica.reads.queued) return;
    const notLeader = () => this.#notLeader(replica);
    replica.reads.sendRound(replica.node, this.#readRounds.next(), notLeader, replica.shardId);
  }

  #takeReadStates(replica: Replica<R, M>, ready: Ready): void {
    if (ready.readStates.length === 0) return;
    replica.reads.take(ready.readStates, () => this.#notLeader(replica));
  }

  #serveConfirmedReads(replica: Replica<R, M>): void {
    const applied = replica.log.appliedState.applied;
    replica.reads.serveApplied(applied, (waiter) => this.#serveRead(replica, waiter));
  }

  #wakeAppliedWaiters(replica: Replica<R, M>): void {
    if (replica.appliedWaiters.size === 0) return;
    const { log } = replica;
    replica.appliedWaiters.wake(log.appliedState.applied, (i) => log.term(i), replica.confEpoch);
  }

  #finish(live: LiveRequest, outcome: Outcome<R>): void {
    if (live.done) return;
    live.done = true;
    this.#live.delete(live);
    if (live.trace !== undefined) {
      const failure = outcome.kind === "ok" ? {} : { message: outcome.message };
      this.#options.log.info("Traced request answered", {
        ...live.trace,
        outcome: outcome.kind,
        ...failure,
      });
    }
    live.resolve(outcome);
  }

  #expireRequests(): void {
    const now = this.#options.clock.now();
    for (const replica of this.#waitingApplied) {
      replica.appliedWaiters.expire(now);
      if (replica.appliedWaiters.size === 0) this.#waitingApplied.delete(replica);
    }
    for (const live of this.#live) {
      if (live.deadlineMs > now) continue;
      this.#finish(
        live,
        live.proposed
          ? unknown("The request was proposed but did not commit before its deadline")
          : { kind: "unavailable", message: "The request was not proposed before its deadline" },
      );
    }
  }

  #drop(replica: Replica<R, M>, why: string): void {
    this.#replicas.delete(replica.shardId);
    this.#awake.delete(replica);
    this.#compacting.delete(replica);
    this.#waitingApplied.delete(replica);
    this.#pingTargets = undefined;
    replica.failAll({
      kind: "unavailable",
      message: `Shard ${replica.shardId} left node "${this.nodeId}": ${why}`,
    });
    this.#options.log.info("Removed a replica", { shard: replica.shardId, why });
  }

  // --- Admin (driver_admin.ts) --------------------------------------------------------------

  /** What the admin calls use of the loop's state; see `AdminHost`. */
  #adminHost(): AdminHost<R, M> {
    return {
      nodeId: this.nodeId,
      store: this.#options.store,
      nowMs: () => this.#options.clock.now(),
      task: (work) => this.#task(work),
      replica: (shardId) => this.#replicas.get(shardId),
      creating: this.#creating,
      host: (record) => {
        this.#replicas.set(record.shardId, this.#newReplica(record));
        this.#pingTargets = undefined;
      },
      evict: (shardId, why, done) => this.#evicted.set(shardId, { why, done }),
      waitingApplied: (replica) => this.#waitingApplied.add(replica),
    };
  }

  /** Creates a replica; see `createReplica` in driver_admin.ts. */
  createReplica(record: ReplicaRecord): Promise<AdminResult<{ created: boolean }>> {
    return createReplica(this.#admin, record);
  }

  /** Deletes a replica found outside its group; see `deleteReplica` in driver_admin.ts. */
  deleteReplica(
    request: { shardId: ShardId; peerId: number; confEpoch: number },
  ): Promise<AdminResult<{ deleted: boolean }>> {
    return deleteReplica(this.#admin, request);
  }

  /** Proposes a membership change here and waits until it applies (driver_admin.ts). */
  changeMembership(
    request: Parameters<typeof changeMembership>[1],
  ): Promise<AdminResult<{ confEpoch: number }>> {
    return changeMembership(this.#admin, request);
  }

  /** Asks the shard's leader here to hand leadership to another member (driver_admin.ts). */
  transferLeader(
    request: { shardId: ShardId; expectedConfEpoch: number; targetPeerId: number },
  ): Promise<AdminResult<Record<string, never>>> {
    return transferLeader(this.#admin, request);
  }

  /** Runs `read` on the hosted replicas between two turns (a consistent, read-only look). */
  inspect<T>(read: (replicas: readonly Replica<R, M>[]) => T): Promise<T> {
    return this.#task(() => read([...this.#replicas.values()]), true);
  }

  /** The replicas hosted here (read-only use; the loop owns them). */
  replicas(): readonly Replica<R, M>[] {
    return [...this.#replicas.values()];
  }

  /** Tells a replica to campaign now (tests and bootstrap speed-up). */
  campaign(shardId: ShardId): Promise<boolean> {
    return this.#task(() => this.#replicas.get(shardId)?.node.campaign().kind === "ok");
  }
}

/** Whether `ready` has anything to persist or apply (else its turn needs no write). */
function writesSomething(ready: Ready): boolean {
  return ready.snapshot !== undefined || ready.entries.length > 0 ||
    ready.hardState !== undefined || ready.committedEntries.length > 0;
}

/**
 * Bytes of entries a turn may persist and apply and still commit on the loop's thread (see
 * `#write`): a bigger one leaves the loop free (to answer pings, status and streams) while
 * lmdb-js's writer thread writes it.
 */
const LOOP_THREAD_WRITE_BYTES_MAX = 1024 * 1024;

/** Whether a turn's Readies are small enough to be written on the loop's thread. */
function smallWrite(readies: ReadonlyArray<readonly [unknown, Ready]>): boolean {
  let bytes = 0;
  for (const [, ready] of readies) {
    if (ready.snapshot !== undefined) return false;
    for (const entry of ready.entries) bytes += entry.data.length;
    for (const entry of ready.committedEntries) bytes += entry.data.length;
    if (bytes > LOOP_THREAD_WRITE_BYTES_MAX) return false;
  }
  return true;
}

/** Whether `ready` applies an entry it also persists (a group whose only voter is this node). */
function appliesOwnEntries(ready: Ready): boolean {
  const first = ready.entries[0];
  const last = ready.committedEntries.at(-1);
  return first !== undefined && last !== undefined && last.index >= first.index;
}

/**
 * Whether a Ready's write must be synced before the turn goes on: Raft's own rule (`mustSync`:
 * entries, a snapshot, a new term or vote), and a membership change among the entries it applies,
 * which may remove the replica or change whom it answers.
 */
function mustWaitForSync(ready: Ready): boolean {
  return ready.mustSync || ready.committedEntries.some((entry) => entry.type === "confChange");
}

/** The generation of the staged snapshot a replica's core holds for its next Ready, if any. */
function pendingStaged(replica: AnyReplica): number | undefined {
  const pending = replica.node.pendingSnapshot();
  return pending === undefined ? undefined : stagedGeneration(pending.data);
}

function internal(message: string): Failure {
  return { kind: "internal", message };
}

function unknown(message: string): Failure {
  return { kind: "unknown", message };
}

/** The index type, re-exported for callers that wait on applied indexes. */
export type { LogIndex };
