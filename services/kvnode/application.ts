/**
 * The contract between the multi-Raft {@linkcode ./driver.ts} and the application it replicates.
 * The driver owns the loop, group commit, the transport, fencing, membership and snapshots; the
 * application owns what the log's entries mean: how a request becomes a proposal or a read, how a
 * committed entry changes the state, and what a read answers. The driver never decodes a request
 * or an entry; the application never touches Raft.
 *
 * The KV application of TinyKV is {@linkcode ./kv_app.ts}.
 *
 * @module
 */
import type { Entry } from "@tinykv/raft";
import type { HashRange } from "@tinykv/shard";
import type { KvSpace } from "./kv_space.ts";

/**
 * How one request ended: `ok` with the application's result, or a failure of the product's status
 * table (docs/design.md "Status codes").
 */
export type Outcome<R> =
  | { readonly kind: "ok"; readonly result: R }
  | {
    readonly kind: "notLeader";
    readonly message: string;
    readonly leaderNode: string;
    readonly leaderAddress: string;
    readonly confEpoch: number;
  }
  | { readonly kind: "staleEpoch"; readonly message: string; readonly confEpoch: number }
  | { readonly kind: "invalid"; readonly message: string }
  | { readonly kind: "unavailable"; readonly message: string }
  | { readonly kind: "unknown"; readonly message: string }
  | { readonly kind: "sessionExpired"; readonly message: string }
  | { readonly kind: "resourceExhausted"; readonly message: string }
  | { readonly kind: "dataLoss"; readonly message: string }
  | { readonly kind: "internal"; readonly message: string };

/** A failed {@linkcode Outcome}: any kind but `ok`, whatever the result type. */
export type Failure = Exclude<Outcome<never>, { kind: "ok" }>;

/**
 * The spaces a replica's state lives in (one generation of them): the application's data, its
 * client sessions and its metadata. A snapshot is the records of all three.
 */
export interface MachineSpaces {
  readonly data: KvSpace;
  readonly sessions: KvSpace;
  readonly meta: KvSpace;
}

/** Which replica a state machine belongs to. */
export interface ReplicaIdentity {
  readonly shardId: number;
  readonly peerId: number;
  /** The index the state being opened has applied (the replica's, or the snapshot's). */
  readonly applied: number;
}

/** One replica's state machine, over one generation of its spaces. */
export interface GroupMachine<R> {
  /**
   * Inside the turn's transaction: applies the committed normal entry `entry` (never an empty
   * one) and returns the answer for its proposer. Deterministic: every replica applying the same
   * entries in the same order reaches the same state and the same answers. An entry that does
   * not decode is answered `invalid` on every replica alike; anything thrown is a storage failure
   * or a bug, and stops the node.
   */
  apply(entry: Entry): Outcome<R>;
  /**
   * Inside the same transaction, after a run of {@linkcode apply} calls: writes what the machine
   * kept in hand across them (records each apply would otherwise rewrite). The replica calls it
   * once at the end of its turn's applies.
   */
  flush(): void;
  /** Replaces the whole state with a snapshot's inline data (in-process transports). */
  restore(data: Uint8Array): { kind: "ok" } | { kind: "invalid"; message: string };
  /** Keys and bytes of the application's data (for status). */
  dataSize(): { keys: number; bytes: number };
  /** A hash of the whole state, equal on replicas at the same applied index (for checks). */
  dataHash(): string;
}

/** What the application makes of a request, on the replica that received it, in the loop. */
export type Prepared<R, M> =
  /** Propose `data`; the answer is what applying it returns. */
  | { readonly kind: "propose"; readonly data: Uint8Array }
  /**
   * A read: `serve` runs on the replica's state machine as it is at an applied index that covers
   * every write acknowledged before the read arrived (lease or ReadIndex), or at once when `local` (a
   * serializable read). It is given the machine then current: a snapshot installed meanwhile
   * replaces it.
   */
  | { readonly kind: "read"; readonly local: boolean; readonly serve: (machine: M) => Outcome<R> }
  /** Refused before anything was proposed (INVALID_ARGUMENT). */
  | { readonly kind: "invalid"; readonly message: string };

/** The application the driver replicates: requests of type `Op`, results of type `R`. */
export interface GroupApplication<Op, R, M extends GroupMachine<R>> {
  /**
   * The state machine of replica `replica` of the shard owning `range`, over `spaces`: when the
   * replica opens, and again when a snapshot replaces its state.
   */
  open(spaces: MachineSpaces, range: HashRange, replica: ReplicaIdentity): M;
  /**
   * Turns a request into a proposal or a read, on the replica's current state machine; `nowMs`
   * is the driver's wall clock (a leader stamps it into what it proposes).
   */
  prepare(op: Op, machine: M, nowMs: number): Prepared<R, M>;
  /** Whether `op` may be served by any replica without a leader (a serializable read). */
  isLocal(op: Op): boolean;
}
