/**
 * The decision log: what the placement leader decided and why, kept as a bounded ring in the
 * znode `placement/decisions` (JSON, newest last) so that operators and the next leader see it.
 *
 * @module
 */
import type { ZooKeeperClient } from "@tinykv/zk";
import type { Move } from "@tinykv/shard";

/** The most decisions the ring keeps; older ones are dropped. */
export const DECISIONS_MAX = 200;
/** The znode of the ring, relative to the cluster root. */
export const DECISIONS_PATH = "/placement/decisions";

/** What happened. */
export type DecisionEvent =
  | "bootstrap"
  | "started"
  | "done"
  | "failed"
  | "drain"
  | "leader"
  | "publish"
  | "orphan";

/** One decision. */
export interface Decision {
  readonly atMs: number;
  readonly event: DecisionEvent;
  readonly reason: string;
  readonly move?: Move;
  readonly cause?: string;
}

/** `ring` with `entries` appended, keeping the newest `max`. */
export function appendDecisions(
  ring: readonly Decision[],
  entries: readonly Decision[],
  max: number = DECISIONS_MAX,
): Decision[] {
  const all = [...ring, ...entries];
  return all.slice(Math.max(0, all.length - max));
}

/** Decodes the ring's znode; an unreadable one counts as empty. */
export function decodeDecisions(bytes: Uint8Array): Decision[] {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes));
    return Array.isArray(value) ? value.filter((d) => typeof d?.reason === "string") : [];
  } catch {
    return [];
  }
}

/**
 * The ring in ZooKeeper, with decisions buffered in memory between flushes. Only the placement
 * leader writes it; a conditional write that meets another writer re-reads and merges.
 */
export class DecisionLog {
  readonly #zk: ZooKeeperClient;
  #pending: Decision[] = [];
  #recent: Decision[] = [];

  constructor(zk: ZooKeeperClient) {
    this.#zk = zk;
  }

  /** Records a decision; it reaches ZooKeeper on the next {@linkcode flush}. */
  add(decision: Decision): void {
    this.#pending.push(decision);
    this.#recent = appendDecisions(this.#recent, [decision]);
  }

  /** The newest decisions known here, newest last. */
  recent(limit: number = DECISIONS_MAX): Decision[] {
    return this.#recent.slice(Math.max(0, this.#recent.length - limit));
  }

  /** Loads the ring from ZooKeeper (after becoming leader). */
  async load(): Promise<void> {
    const node = await this.#zk.get(DECISIONS_PATH);
    const stored = node === undefined ? [] : decodeDecisions(node.data);
    this.#recent = appendDecisions(stored, this.#pending);
  }

  /** Writes the pending decisions. Throws only on ZooKeeper environment failures. */
  async flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const pending = this.#pending;
    this.#pending = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const node = await this.#zk.get(DECISIONS_PATH);
      const ring = appendDecisions(node === undefined ? [] : decodeDecisions(node.data), pending);
      const data = JSON.stringify(ring);
      if (node === undefined) {
        const created = await this.#zk.create(DECISIONS_PATH, data);
        if (created.kind === "ok") return;
      } else {
        const written = await this.#zk.setData(DECISIONS_PATH, data, node.version);
        if (written.kind === "ok") return;
      }
    }
  }
}
