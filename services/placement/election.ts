/**
 * Leader election among placement instances with the ZooKeeper recipe: each instance creates an
 * ephemeral sequential znode under `placement/election` holding its admin address; the lowest
 * sequence leads; every other instance watches only its predecessor (no herd effect) and checks
 * again when the predecessor goes.
 *
 * An instance steps down when its session expires, or when it has been disconnected for the
 * session timeout (it must then assume the session, and its znode, are gone), and campaigns again
 * once it has a session.
 *
 * @module
 */
import type { ZooKeeperClient } from "@tinykv/zk";
import { unreachable } from "./_assert.ts";

/** The znode under which candidates enlist, relative to the cluster root. */
export const ELECTION_PATH = "/placement/election";
const CANDIDATE_PREFIX = "n-";

/** Where an instance stands. */
export type ElectionState =
  | { readonly kind: "leader" }
  | { readonly kind: "follower" }
  | { readonly kind: "stopped" };

/** Options of {@linkcode LeaderElection}. */
export interface LeaderElectionOptions {
  /** This instance's admin address, stored in its candidate znode. */
  readonly address: string;
  /** Called on every change of state, one at a time. */
  readonly onChange: (state: ElectionState) => void;
  /** Reports problems (ZooKeeper failures while campaigning). */
  readonly warn: (message: string, fields?: Record<string, unknown>) => void;
  /** How long a disconnection may last before this instance steps down. */
  readonly sessionTimeoutMs: number;
}

/** One instance's part in the election. */
export class LeaderElection {
  readonly #zk: ZooKeeperClient;
  readonly #options: LeaderElectionOptions;
  #own: string | undefined;
  #state: ElectionState = { kind: "follower" };
  #unwatch: (() => void) | undefined;
  #queue: Promise<void> = Promise.resolve();
  #disconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(zk: ZooKeeperClient, options: LeaderElectionOptions) {
    this.#zk = zk;
    this.#options = options;
  }

  /** The current state. */
  get state(): ElectionState {
    return this.#state;
  }

  /** Enlists and starts following the election. */
  async start(): Promise<void> {
    this.#unsubscribe = this.#zk.onConnectionEvent((event) => {
      switch (event.kind) {
        case "disconnected":
          clearTimeout(this.#disconnectTimer);
          this.#disconnectTimer = setTimeout(
            () => this.#set({ kind: "follower" }),
            this.#options.sessionTimeoutMs,
          );
          return;
        case "reconnected":
          clearTimeout(this.#disconnectTimer);
          this.#schedule();
          return;
        case "expired":
          clearTimeout(this.#disconnectTimer);
          this.#own = undefined;
          this.#set({ kind: "follower" });
          return;
        case "connected":
          this.#schedule();
          return;
        case "ephemeralLost":
        case "closed":
          return;
        default:
          return unreachable(event, "connection event");
      }
    });
    await this.#zk.mkdirp(ELECTION_PATH);
    this.#schedule();
    await this.#queue;
  }

  /** The admin address of the current leader, read from ZooKeeper. */
  async leaderAddress(): Promise<string | undefined> {
    const children = await this.#zk.children(ELECTION_PATH);
    for (const child of sortCandidates(children ?? [])) {
      const node = await this.#zk.get(`${ELECTION_PATH}/${child}`);
      if (node !== undefined) return new TextDecoder().decode(node.data);
    }
    return undefined;
  }

  /** Leaves the election: deletes this instance's znode. */
  async stop(): Promise<void> {
    this.#unsubscribe?.();
    clearTimeout(this.#disconnectTimer);
    clearTimeout(this.#retryTimer);
    this.#unwatch?.();
    await this.#queue;
    this.#set({ kind: "stopped" });
    const own = this.#own;
    this.#own = undefined;
    if (own !== undefined) await this.#zk.delete(`${ELECTION_PATH}/${own}`).catch(() => {});
  }

  #set(state: ElectionState): void {
    if (this.#state.kind === "stopped" || this.#state.kind === state.kind) return;
    this.#state = state;
    this.#options.onChange(state);
  }

  #schedule(): void {
    this.#queue = this.#queue.then(() => this.#check()).catch((error) => {
      this.#options.warn("Election check failed: retrying", { error: String(error) });
      clearTimeout(this.#retryTimer);
      this.#retryTimer = setTimeout(() => this.#schedule(), 500);
    });
  }

  async #check(): Promise<void> {
    if (this.#state.kind === "stopped") return;
    let children = await this.#zk.children(ELECTION_PATH) ?? [];
    if (this.#own === undefined || !children.includes(this.#own)) {
      const created = await this.#zk.create(
        `${ELECTION_PATH}/${CANDIDATE_PREFIX}`,
        this.#options.address,
        { mode: "ephemeralSequential" },
      );
      if (created.kind !== "ok") throw new Error(`Cannot enlist: ${created.kind}`);
      this.#own = created.path.slice(created.path.lastIndexOf("/") + 1);
      children = await this.#zk.children(ELECTION_PATH) ?? [];
    }
    const sorted = sortCandidates(children);
    const index = sorted.indexOf(this.#own!);
    this.#unwatch?.();
    this.#unwatch = undefined;
    if (index === 0) {
      this.#set({ kind: "leader" });
      return;
    }
    this.#set({ kind: "follower" });
    const predecessor = sorted[index - 1];
    let first = true;
    this.#unwatch = this.#zk.watchData(`${ELECTION_PATH}/${predecessor}`, (node) => {
      if (node === undefined || !first) this.#schedule();
      first = false;
    });
  }
}

/** Candidate znodes in election order (by their sequence number). */
export function sortCandidates(children: readonly string[]): string[] {
  const sequence = (name: string) => Number(name.slice(name.lastIndexOf("-") + 1));
  return children.filter((c) => c.startsWith(CANDIDATE_PREFIX)).sort((a, b) =>
    sequence(a) - sequence(b)
  );
}
