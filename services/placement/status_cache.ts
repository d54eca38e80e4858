/**
 * The last status of each kvnode placement talks to, kept so that the next `Status` call asks
 * only for what changed (`NodeStatusRequest.since_version`, kvnode `status_versions.ts`) and the
 * answer is merged back into a whole status: everything above `node_admin.ts` sees every replica,
 * as before deltas.
 *
 * Answers can arrive out of order (the leader's round and the dashboard ask the same node at
 * once): an answer older than the one held is not applied, and the held status, which is newer,
 * is returned in its place; a delta is applied only to a status at or after the one it was asked
 * against (an entry dropped and filled again meanwhile may be older).
 *
 * @module
 */
import type { NodeStatusResponse, ReplicaStatus } from "@tinykv/proto/tinykv/v1";

/** The status a call asks against (`NodeStatusRequest.since_version`, `since_started_at_ms`). */
export interface StatusBase {
  readonly sinceVersion: number;
  readonly sinceStartedAtMs: number;
}

/** No base: ask for every replica. */
export const NO_BASE: StatusBase = { sinceVersion: 0, sinceStartedAtMs: 0 };

interface Entry {
  readonly startedAtMs: number;
  version: number;
  readonly replicas: Map<string, ReplicaStatus>;
  /** The whole status as last merged, replicas sorted by shard and peer. */
  whole: NodeStatusResponse;
}

/** Whole statuses by node address, updated from whole or delta answers. */
export class StatusCache {
  readonly #entries = new Map<string, Entry>();

  /** What to ask the node at `address` for: a delta since the status held, or everything. */
  since(address: string): StatusBase {
    const entry = this.#entries.get(address);
    return entry === undefined || entry.version === 0
      ? NO_BASE
      : { sinceVersion: entry.version, sinceStartedAtMs: entry.startedAtMs };
  }

  /**
   * Merges an answer from the node at `address` to a call that asked with `since`; the whole status
   * after it, or `undefined` for a delta this cache cannot apply (its base is not the status held,
   * which may have been dropped or replaced meanwhile): ask for everything then.
   */
  merge(
    address: string,
    answer: NodeStatusResponse,
    since: StatusBase,
  ): NodeStatusResponse | undefined {
    const entry = this.#entries.get(address);
    const sameNode = entry !== undefined && entry.whole.nodeId === answer.nodeId;
    const sameProcess = sameNode && entry.startedAtMs === answer.startedAtMs;
    if (!answer.delta) {
      // Older than the one held. (A late answer of the node's previous process takes the place of
      // the new one's until the next call: start times are wall clocks, which may step back.)
      if (sameProcess && answer.statusVersion < entry.version) return entry.whole;
      const replicas = new Map<string, ReplicaStatus>();
      for (const status of answer.replicas) replicas.set(keyOf(status), status);
      const fresh: Entry = {
        startedAtMs: answer.startedAtMs,
        version: answer.statusVersion,
        replicas,
        whole: wholeOf(answer, replicas),
      };
      this.#entries.set(address, fresh);
      return fresh.whole;
    }
    // A delta holds the changes after its base: it applies to a status at or after that base.
    if (!sameProcess || since.sinceStartedAtMs !== entry.startedAtMs) return undefined;
    if (since.sinceVersion > entry.version) return undefined;
    if (answer.statusVersion < entry.version) return entry.whole;
    for (const removed of answer.removed) {
      entry.replicas.delete(`${removed.shardId}/${removed.peerId}`);
    }
    for (const status of answer.replicas) entry.replicas.set(keyOf(status), status);
    entry.version = answer.statusVersion;
    entry.whole = answer.replicas.length === 0 && answer.removed.length === 0
      ? { ...answer, replicas: entry.whole.replicas, delta: false, removed: [] }
      : wholeOf(answer, entry.replicas);
    return entry.whole;
  }

  /** Forgets the node at `address`. */
  delete(address: string): void {
    this.#entries.delete(address);
  }

  /** Forgets every node. */
  clear(): void {
    this.#entries.clear();
  }
}

function keyOf(status: ReplicaStatus): string {
  return `${status.shardId}/${status.peerId}`;
}

function wholeOf(
  answer: NodeStatusResponse,
  replicas: ReadonlyMap<string, ReplicaStatus>,
): NodeStatusResponse {
  const sorted = [...replicas.values()].sort((a, b) =>
    a.shardId - b.shardId || a.peerId - b.peerId
  );
  return { ...answer, replicas: sorted, delta: false, removed: [] };
}
