/**
 * Status deltas (`NodeStatusRequest.since_version`): a node numbers the states of its replicas'
 * statuses as it hands them out, so that a caller who held an earlier answer is sent only what
 * changed since — with a thousand quiet replicas, placement's status round and its dashboard used
 * to encode, send and decode a thousand unchanged statuses per node every few seconds.
 *
 * Each call of {@linkcode StatusVersions.answer} compares every replica's status with the one
 * recorded for it (the quiet ones are the same object, see `QuietStatusCache`); when any differs,
 * appears or is gone, the node's version goes up by one and the changed replicas are stamped with
 * it. A delta since version `v` holds the replicas stamped after `v`, each whole, and the
 * removals recorded after `v`. The last {@linkcode REMOVALS_KEPT} removals are kept; a caller
 * further behind than that, one that names a version this node never handed out (another
 * process: the caller also sends the process's start time), or one with no version gets every
 * replica.
 *
 * A replica removed and created again (same shard and peer) shows in a delta both among the
 * removals and among the replicas: a caller applies the removals first.
 *
 * @module
 */
import type { ReplicaRef, ReplicaStatus } from "@tinykv/proto/tinykv/v1";

/** Removals remembered for deltas; a caller further behind gets every replica. */
export const REMOVALS_KEPT = 4096;

/** What one status call answers. */
export interface StatusAnswer {
  /** The node's version after this call: the caller's next `since_version`. */
  readonly version: number;
  /** Set when `replicas` holds only the changed replicas and `removed` the removals. */
  readonly delta: boolean;
  readonly replicas: ReplicaStatus[];
  readonly removed: ReplicaRef[];
}

/** The versions of one node's replica statuses (one per `NodeAdmin` service). */
export class StatusVersions {
  #version = 0;
  readonly #known = new Map<string, { status: ReplicaStatus; changedAt: number }>();
  #removals: { ref: ReplicaRef; at: number }[] = [];
  /** Deltas since a version below this would miss a removal that is no longer kept. */
  #floor = 0;
  readonly #removalsKept: number;

  constructor(removalsKept = REMOVALS_KEPT) {
    this.#removalsKept = removalsKept;
  }

  /** The current version (0 before any replica was seen). */
  get version(): number {
    return this.#version;
  }

  /**
   * Records `current` (every replica's status now) and answers a delta since `since`, or every
   * replica when `since` is 0 or cannot be answered.
   */
  answer(current: readonly ReplicaStatus[], since: number): StatusAnswer {
    const next = this.#version + 1;
    let changed = false;
    const seen = new Set<string>();
    for (const status of current) {
      const key = keyOf(status);
      seen.add(key);
      const known = this.#known.get(key);
      if (known !== undefined && sameStatus(known.status, status)) {
        known.status = status;
        continue;
      }
      this.#known.set(key, { status, changedAt: next });
      changed = true;
    }
    for (const [key, known] of this.#known) {
      if (seen.has(key)) continue;
      this.#known.delete(key);
      this.#removals.push({
        ref: { shardId: known.status.shardId, peerId: known.status.peerId },
        at: next,
      });
      changed = true;
    }
    if (changed) this.#version = next;
    if (this.#removals.length > this.#removalsKept) {
      const dropped = this.#removals.length - this.#removalsKept;
      this.#floor = Math.max(this.#floor, this.#removals[dropped - 1].at);
      this.#removals = this.#removals.slice(dropped);
    }
    if (since <= 0 || since > this.#version || since < this.#floor) {
      return { version: this.#version, delta: false, replicas: [...current], removed: [] };
    }
    const replicas: ReplicaStatus[] = [];
    for (const known of this.#known.values()) {
      if (known.changedAt > since) replicas.push(known.status);
    }
    const removed = this.#removals.filter((removal) => removal.at > since).map((r) => r.ref);
    return { version: this.#version, delta: true, replicas, removed };
  }
}

/** A replica's key among a node's statuses. */
export function replicaKey(shardId: number, peerId: number): string {
  return `${shardId}/${peerId}`;
}

function keyOf(status: ReplicaStatus): string {
  return replicaKey(status.shardId, status.peerId);
}

/** Whether two statuses hold the same values (plain data: numbers, strings, arrays, objects). */
export function sameStatus(a: ReplicaStatus, b: ReplicaStatus): boolean {
  return a === b || sameValue(a, b);
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = Object.keys(left);
  if (keys.length !== Object.keys(right).length) return false;
  for (const key of keys) if (!sameValue(left[key], right[key])) return false;
  return true;
}
