/**
 * The leader's view of each follower's log (etcd's tracker.Progress) and the
 * bounded window of in-flight append messages.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { idx } from "./_raft_log.ts";
import type { LogIndex } from "./types.ts";

/**
 * A bounded FIFO of the last indexes of append messages sent but not yet
 * acknowledged, so a follower in replicate state gets a pipeline of at most
 * `messagesMax` messages.
 */
export class Inflights {
  readonly messagesMax: number;
  #indexes: LogIndex[] = [];

  constructor(messagesMax: number) {
    assert(Number.isSafeInteger(messagesMax) && messagesMax > 0, "inflightMessagesMax must be > 0");
    this.messagesMax = messagesMax;
  }

  /** The number of messages in flight. */
  get count(): number {
    return this.#indexes.length;
  }

  full(): boolean {
    return this.#indexes.length >= this.messagesMax;
  }

  add(lastIndex: LogIndex): void {
    assert(!this.full(), "Adding to a full inflight window");
    const n = this.#indexes.length;
    assert(n === 0 || this.#indexes[n - 1] <= lastIndex, "Inflight indexes must not decrease");
    this.#indexes.push(lastIndex);
  }

  /** Frees every message whose last index is <= `index`. */
  freeLE(index: LogIndex): void {
    let i = 0;
    while (i < this.#indexes.length && this.#indexes[i] <= index) i++;
    if (i > 0) this.#indexes.splice(0, i);
  }

  freeFirst(): void {
    this.#indexes.shift();
  }

  reset(): void {
    this.#indexes = [];
  }
}

/**
 * How the leader replicates to a follower: `probe` sends one append at a time
 * until it finds where the logs match; `replicate` streams appends optimistically;
 * `snapshot` waits for a snapshot to be installed.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** The leader's view of one peer's log. */
export class Progress {
  // Invariant: match < next.
  match: LogIndex;
  next: LogIndex;
  state: ProgressState = "probe";
  /** In probe state: an append is outstanding, wait for its reply or a heartbeat reply. */
  probeSent = false;
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot: LogIndex = idx(0);
  /** Whether the peer replied since the last check-quorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(next: LogIndex, inflightMessagesMax: number) {
    this.match = idx(0);
    this.next = next;
    this.inflights = new Inflights(inflightMessagesMax);
  }

  #resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = idx(0);
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.#resetState("probe");
      this.next = idx(Math.max(this.match + 1, pending + 1));
    } else {
      this.#resetState("probe");
      this.next = idx(this.match + 1);
    }
  }

  becomeReplicate(): void {
    this.#resetState("replicate");
    this.next = idx(this.match + 1);
  }

  becomeSnapshot(snapshotIndex: LogIndex): void {
    this.#resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records an acknowledgement up to `index`; reports whether `match` grew. */
  maybeUpdate(index: LogIndex): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = idx(Math.max(this.next, index + 1));
    return updated;
  }

  /**
   * Handles a rejection of the append at `rejected`; `matchHint` is the
   * largest index that may still match. Reports whether the rejection was
   * fresh (not a late reply to an older message).
   */
  maybeDecrTo(rejected: LogIndex, matchHint: LogIndex): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = idx(this.match + 1);
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = idx(Math.max(Math.min(rejected, matchHint + 1), this.match + 1));
    this.probeSent = false;
    return true;
  }

  /** Whether the leader must hold back appends to this peer for now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
