/**
 * What a replica's requests wait on, between the driver's turns: reads going through their
 * ReadIndex round ({@linkcode ReadRounds}) and admin calls waiting for their conf change to apply
 * ({@linkcode AppliedWaiters}). The driver owns the loop and decides when each step runs; these
 * classes own the bookkeeping, so that a request is answered exactly once whichever way it ends.
 *
 * @module
 */
import type { LogIndex, RawNode, ReadState, Term } from "@tinykv/raft";
import type { Failure, Outcome } from "./application.ts";
import { unreachable } from "./_assert.ts";

/** A read waiting for its ReadIndex round and then for the applied index. */
export interface ReadWaiter<R> {
  readonly serve: () => Outcome<R>;
  readonly resolve: (outcome: Outcome<R>) => void;
}

/** Request ids of ReadIndex rounds wrap before this bound. */
const READ_ROUND_IDS_MAX = 2 ** 31;

/**
 * One replica's linearizable reads: those that arrived this turn ({@linkcode queue}) leave as one
 * ReadIndex round at the end of the turn's intake ({@linkcode sendRound}); the round's read state
 * confirms them at an index ({@linkcode take}); they are served once the replica applied that far
 * ({@linkcode serveApplied}), in index order.
 */
export class ReadRounds<R> {
  /** Reads of the current turn, not yet sent as a round. */
  #turn: ReadWaiter<R>[] = [];
  /** Reads by round id, waiting for confirmation. */
  readonly #confirming = new Map<number, ReadWaiter<R>[]>();
  /** Confirmed reads waiting for the applied index to reach `index`, in index order. */
  readonly #confirmed: Array<{ index: LogIndex; waiters: ReadWaiter<R>[] }> = [];
  #rounds = 0;
  #leased = 0;

  /** ReadIndex rounds the core took so far (for metrics). */
  get rounds(): number {
    return this.#rounds;
  }

  /** Turns whose reads the core confirmed at once under its lease, no round (for metrics). */
  get leased(): number {
    return this.#leased;
  }

  /** Whether reads of this turn wait for their round. */
  get queued(): boolean {
    return this.#turn.length > 0;
  }

  /** A read of this turn. */
  queue(waiter: ReadWaiter<R>): void {
    this.#turn.push(waiter);
  }

  /**
   * Sends this turn's reads as one round `roundId` of `node`; when the core refuses (not the
   * leader, too many reads pending), they are answered at once: `notLeader()`, or
   * RESOURCE_EXHAUSTED naming `shard`.
   */
  sendRound(node: RawNode, roundId: number, notLeader: () => Outcome<R>, shard: number): void {
    if (this.#turn.length === 0) return;
    const waiters = this.#turn;
    this.#turn = [];
    const result = node.readIndex(roundId);
    switch (result.kind) {
      case "ok":
        if (result.leased) this.#leased++;
        else this.#rounds++;
        this.#confirming.set(roundId, waiters);
        return;
      case "notLeader":
        return answerAll(waiters, notLeader());
      case "overloaded":
        return answerAll(waiters, {
          kind: "resourceExhausted",
          message: `Shard ${shard} has ${result.pendingReads} reads waiting: the limit`,
        });
      default:
        return unreachable(result, "read result");
    }
  }

  /** Takes a Ready's read states: confirmed rounds wait for their index, dropped ones fail. */
  take(states: readonly ReadState[], notLeader: () => Outcome<R>): void {
    for (const state of states) {
      const waiters = this.#confirming.get(state.requestId);
      if (waiters === undefined) continue;
      this.#confirming.delete(state.requestId);
      if (state.kind === "dropped") answerAll(waiters, notLeader());
      else this.#confirmed.push({ index: state.index, waiters });
    }
  }

  /** Serves, with `serve`, every confirmed read whose index is applied (`applied`). */
  serveApplied(applied: number, serve: (waiter: ReadWaiter<R>) => void): void {
    let served = 0;
    for (const { index, waiters } of this.#confirmed) {
      if (index > applied) break;
      for (const waiter of waiters) serve(waiter);
      served++;
    }
    this.#confirmed.splice(0, served);
  }

  /** Answers every read with `outcome` (the replica is going away). */
  failAll(outcome: Failure): void {
    for (const waiters of this.#confirming.values()) answerAll(waiters, outcome);
    this.#confirming.clear();
    for (const { waiters } of this.#confirmed) answerAll(waiters, outcome);
    this.#confirmed.length = 0;
    answerAll(this.#turn, outcome);
    this.#turn = [];
  }
}

/** The ids of ReadIndex rounds of one node: positive, wrapping before 2^31. */
export class RoundIds {
  #last = 0;

  /** The next round id. */
  next(): number {
    this.#last = (this.#last % READ_ROUND_IDS_MAX) + 1;
    return this.#last;
  }
}

/** How waiting for an entry to apply ended (admin calls wait for their conf change). */
export type AppliedWait =
  | { readonly kind: "applied"; readonly confEpoch: number }
  /** Another leader's entry took the index: the change will never apply (not applied). */
  | { readonly kind: "lost" }
  | { readonly kind: "timeout" };

interface AppliedWaiter {
  readonly index: LogIndex;
  /** The term the change was proposed in: the entry applied at `index` must have it. */
  readonly term: Term;
  readonly deadlineMs: number;
  readonly resolve: (result: AppliedWait) => void;
}

/** Admin calls of one replica waiting for the entry they proposed to apply. */
export class AppliedWaiters {
  readonly #waiters: AppliedWaiter[] = [];

  /** How many calls wait. */
  get size(): number {
    return this.#waiters.length;
  }

  /** Waits for the entry proposed at `index` in `term`, until `deadlineMs` at the latest. */
  add(index: LogIndex, term: Term, deadlineMs: number): Promise<AppliedWait> {
    const { promise, resolve } = Promise.withResolvers<AppliedWait>();
    this.#waiters.push({ index, term, deadlineMs, resolve });
    return promise;
  }

  /**
   * Answers the calls whose index is applied (`applied`): the entry applied there is theirs only if
   * it has their term (Log Matching, Raft §5.3), which `termAt` tells: `applied` at `confEpoch`,
   * else `lost`. A term that is gone (a snapshot installed past the index: this replica applied
   * someone's state, not the entry) cannot tell: `timeout`, the change may or may not have
   * applied. (The replica's own compaction keeps a tail of entries, so this is rare otherwise: a
   * log cut whole past `snapshot_log_bytes` in the turn that applied the change.)
   */
  wake(applied: number, termAt: (index: LogIndex) => Term | undefined, confEpoch: number): void {
    this.#settle((w) => {
      if (w.index > applied) return undefined;
      const term = termAt(w.index);
      if (term === undefined) return { kind: "timeout" };
      return term === w.term ? { kind: "applied", confEpoch } : { kind: "lost" };
    });
  }

  /** Answers `timeout` to the calls whose deadline is past `nowMs`. */
  expire(nowMs: number): void {
    this.#settle((w) => (w.deadlineMs > nowMs ? undefined : { kind: "timeout" }));
  }

  /** Answers `timeout` to every call: the change may still apply on the other members. */
  failAll(): void {
    this.#settle(() => ({ kind: "timeout" }));
  }

  /** Answers each waiter `decide` has an answer for; keeps the others, in order. */
  #settle(decide: (waiter: AppliedWaiter) => AppliedWait | undefined): void {
    const waiting = this.#waiters.filter((w) => {
      const answer = decide(w);
      if (answer === undefined) return true;
      w.resolve(answer);
      return false;
    });
    this.#waiters.length = 0;
    this.#waiters.push(...waiting);
  }
}

function answerAll<R>(waiters: readonly ReadWaiter<R>[], outcome: Outcome<R>): void {
  for (const waiter of waiters) waiter.resolve(outcome);
}
