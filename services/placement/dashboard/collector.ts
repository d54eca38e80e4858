/**
 * What the dashboard shows, gathered once a second while a page is open (every five seconds
 * while none is, for the charts' history): the placement leader's view of nodes, shards
 * and moves, the recent decisions, each replica's status (term, applied index, data, requests)
 * while someone watches, and each gateway's calls and latency from its `/metrics`. Every round
 * makes a {@linkcode DashboardView} and a {@linkcode DashboardSample} for the charts; the last
 * {@linkcode HISTORY_MS} of samples are kept in memory and the page gets both as they come
 * (dashboard/http.ts streams them as server-sent events).
 *
 * Only the leader knows the cluster: another instance's view says where the leader is.
 *
 * @module
 */
import type { GatewayInfo } from "@tinykv/client";
import {
  type NodeStatusResponse,
  type ReplicaStatus,
  ReplicaStatus_Role,
} from "@tinykv/proto/tinykv/v1";
import { clusterStateOf, moveToProto, taskToProto } from "../admin_service.ts";
import type { Decision } from "../decisions.ts";
import type { ShardView } from "../cluster_model.ts";
import type { ClusterSnapshot } from "../leader.ts";
import type { Task } from "../task.ts";
import {
  countsBetween,
  type GatewayCounts,
  gatewayCounts,
  histogramQuantile,
  sumCounts,
  totalRequests,
} from "./gateway_stats.ts";
import { parsePrometheusText } from "./prom_text.ts";

/** How often the dashboard gathers while a page watches (or asked within `DETAIL_LINGER_MS`). */
export const DASHBOARD_INTERVAL_MS = 1000;
/**
 * How often it gathers while nobody watches: the leader still keeps the charts' history, at this
 * coarser step. Once a second it cost an idle cluster 0.3–0.4 % of a core (a gateway scrape and
 * its parse, a view of every shard), which nobody looked at.
 */
export const DASHBOARD_UNWATCHED_INTERVAL_MS = 5000;
/** How much chart history is kept (and sent to a page that opens). */
export const HISTORY_MS = 10 * 60_000;
/** How long replica statuses are still pulled after the last viewer left or asked. */
export const DETAIL_LINGER_MS = 15_000;
/** How many recent decisions a view lists. */
export const DECISIONS_SHOWN = 30;
/** How many rounds a kvnode's last status is shown after it stopped answering. */
export const STATUS_STALE_ROUNDS = 3;

/** Where the collector reads from. */
export interface DashboardSources {
  /** The leader loop's last round, undefined unless this instance leads. */
  snapshot(): ClusterSnapshot | undefined;
  /** The leader's admin address as ZooKeeper records it. */
  leaderAddress(): Promise<string | undefined>;
  /** The newest decisions, newest last. */
  decisions(): readonly Decision[];
  /** The gateways registered now. */
  gateways(): readonly GatewayInfo[];
  /** A kvnode's status; undefined when it does not answer in time. */
  nodeStatus(address: string): Promise<NodeStatusResponse | undefined>;
  /** The text of `http://<address>/metrics`; undefined when it does not answer in time. */
  scrape(address: string): Promise<string | undefined>;
  /** Epoch milliseconds. */
  now(): number;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** A node as the dashboard shows it. */
export interface NodeRow {
  readonly id: string;
  readonly address: string;
  readonly state: "live" | "draining" | "down";
  readonly downSinceMs: number;
  readonly replicas: number;
  readonly leaders: number;
  /** Its data file's size up to the last written page; null when not known. */
  readonly diskBytes: number | null;
}

/** A shard as the dashboard shows it; the replica-status fields are null when not known. */
export interface ShardRow {
  readonly id: number;
  readonly rangeLo: number;
  readonly rangeHi: number;
  readonly voters: readonly string[];
  readonly learners: readonly string[];
  /** Empty when no leader is known. */
  readonly leader: string;
  readonly confEpoch: number;
  readonly term: number | null;
  readonly applied: number | null;
  readonly keys: number | null;
  readonly bytes: number | null;
  /** Requests the shard's replicas took (writes proposed, reads served) since they started. */
  readonly requests: number | null;
  readonly rps: number | null;
}

/** A move in flight. */
export interface MoveRow {
  readonly shardId: number;
  readonly kind: string;
  readonly from: string;
  readonly to: string;
  readonly cause: string;
  readonly reason: string;
  readonly step: string;
  readonly stepIndex: number;
  readonly steps: number;
  readonly startedAtMs: number;
  readonly lastError: string;
  /**
   * While the move's new replica is a member: how far its log matches (as the shard's leader
   * knows it) against the leader's commit index; null before, or when the leader does not say.
   */
  readonly catchUp: { readonly match: number; readonly commit: number } | null;
}

/** A gateway, with its calls. */
export interface GatewayRow {
  readonly address: string;
  readonly metricsAddress: string;
  /** Its `/metrics` answered this round. */
  readonly up: boolean;
  readonly requests: number | null;
  readonly rps: number | null;
}

/** One round's picture of the cluster. */
export interface DashboardView {
  readonly atMs: number;
  readonly placement: {
    readonly isLeader: boolean;
    /** The leader's admin address, empty when none is known. */
    readonly leaderAddress: string;
    readonly bootstrapped: boolean;
    readonly mapVersion: number;
    readonly notes: readonly string[];
  };
  /** Whether the replica statuses are live (they are pulled only while someone watches). */
  readonly detail: boolean;
  readonly nodes: readonly NodeRow[];
  readonly shards: readonly ShardRow[];
  readonly moves: readonly MoveRow[];
  readonly decisions: ReadonlyArray<{
    readonly atMs: number;
    readonly event: string;
    readonly reason: string;
    readonly shardId: number | null;
  }>;
  readonly gateways: readonly GatewayRow[];
  readonly totals: { readonly requests: number; readonly rps: number | null };
}

/** One point of the charts. */
export interface DashboardSample {
  readonly atMs: number;
  /** Calls per second through the gateways, by method (absent: no interval known). */
  readonly rps: Readonly<Record<string, number>>;
  /** p99 latency in milliseconds, by method, over the interval (absent: no calls). */
  readonly p99Ms: Readonly<Record<string, number>>;
  /** Shards each node leads. */
  readonly leaders: Readonly<Record<string, number>>;
}

/** What a watcher gets each round. */
export interface DashboardUpdate {
  readonly view: DashboardView;
  readonly sample: DashboardSample;
}

interface Counted<T> {
  readonly atMs: number;
  readonly value: T;
}

/** Gathers the dashboard's rounds; see the module doc. */
export class DashboardCollector {
  readonly #sources: DashboardSources;
  readonly #intervalMs: number;
  readonly #unwatchedIntervalMs: number;
  /** When the pending round is due (epoch ms), while one is scheduled. */
  #dueAtMs: number | undefined;
  readonly #history: DashboardSample[] = [];
  readonly #watchers = new Set<(update: DashboardUpdate) => void>();
  readonly #stopCallbacks = new Set<() => void>();
  readonly #gatewayCounts = new Map<string, Counted<GatewayCounts>>();
  readonly #replicaCounts = new Map<string, ReplicaRate>();
  readonly #statuses = new Map<string, Counted<NodeStatusResponse>>();
  #view: DashboardView | undefined;
  #detailUntilMs = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #round: Promise<void> | undefined;
  #stopped = false;

  constructor(
    sources: DashboardSources,
    options: { intervalMs?: number; unwatchedIntervalMs?: number } = {},
  ) {
    this.#sources = sources;
    this.#intervalMs = options.intervalMs ?? DASHBOARD_INTERVAL_MS;
    this.#unwatchedIntervalMs = options.unwatchedIntervalMs ??
      Math.max(this.#intervalMs, DASHBOARD_UNWATCHED_INTERVAL_MS);
  }

  /** Starts gathering every interval. */
  start(): void {
    this.#schedule(0);
  }

  /** Stops gathering and lets every watcher go (their streams end). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#round;
    this.#watchers.clear();
    for (const callback of this.#stopCallbacks) callback();
    this.#stopCallbacks.clear();
  }

  /** Calls `callback` when the collector stops (an event stream ends then). */
  onStop(callback: () => void): () => void {
    if (this.#stopped) {
      callback();
      return () => {};
    }
    this.#stopCallbacks.add(callback);
    return () => this.#stopCallbacks.delete(callback);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#dueAtMs = this.#sources.now() + delayMs;
    this.#timer = setTimeout(() => {
      this.#dueAtMs = undefined;
      this.#round = this.collect().finally(() => this.#schedule(this.#nextDelayMs()));
    }, delayMs);
  }

  /** Whether a page watches now, or asked recently enough that statuses are still pulled. */
  #watched(): boolean {
    return this.#watchers.size > 0 || this.#sources.now() < this.#detailUntilMs;
  }

  #nextDelayMs(): number {
    return this.#watched() ? this.#intervalMs : this.#unwatchedIntervalMs;
  }

  /** A page arrived: a round waiting out the unwatched step runs within the watched one. */
  #hurry(): void {
    const due = this.#dueAtMs;
    if (due === undefined || due - this.#sources.now() <= this.#intervalMs) return;
    clearTimeout(this.#timer);
    this.#schedule(0);
  }

  /** The last view (pulling statuses for a while from now on) and the chart history. */
  current(): { view: DashboardView | undefined; history: readonly DashboardSample[] } {
    this.#detailUntilMs = this.#sources.now() + DETAIL_LINGER_MS;
    this.#hurry();
    return { view: this.#view, history: [...this.#history] };
  }

  /** Calls `watcher` with every round from now on, until the returned function is called. */
  watch(watcher: (update: DashboardUpdate) => void): () => void {
    this.#watchers.add(watcher);
    this.#hurry();
    return () => {
      this.#watchers.delete(watcher);
      this.#detailUntilMs = this.#sources.now() + DETAIL_LINGER_MS;
    };
  }

  /** How many watch now. */
  get watchers(): number {
    return this.#watchers.size;
  }

  /** Gathers one round (the timer calls it; tests call it directly). Never throws. */
  async collect(): Promise<void> {
    try {
      const update = await this.#gather();
      this.#view = update.view;
      this.#history.push(update.sample);
      const oldest = update.sample.atMs - HISTORY_MS;
      while (this.#history.length > 0 && this.#history[0].atMs < oldest) this.#history.shift();
      for (const watcher of this.#watchers) watcher(update);
    } catch (error) {
      this.#sources.warn("The dashboard's round failed", { error });
    }
  }

  async #gather(): Promise<DashboardUpdate> {
    const sources = this.#sources;
    const snapshot = sources.snapshot();
    const watched = this.#watched();
    const detail = snapshot !== undefined && watched;
    if (!detail) this.#statuses.clear();
    // The leader keeps the charts' history whether or not anyone watches; another instance
    // gathers only for a page open on it (it shows where the leader is, and the gateways).
    const [gateways, statuses, leaderAddress] = await Promise.all([
      snapshot !== undefined || watched ? this.#gatherGateways() : this.#noGateways(),
      detail ? this.#gatherStatuses(snapshot) : Promise.resolve(new Map()),
      snapshot === undefined && watched
        ? sources.leaderAddress().catch(() => undefined)
        : undefined,
    ]);
    const atMs = sources.now();
    const state = clusterStateOf(snapshot, { address: "", isLeader: snapshot !== undefined });
    const byShard = this.#replicasByShard(statuses);
    const leaders: Record<string, number> = {};
    for (const shard of state.shards) {
      if (shard.leader !== "") leaders[shard.leader] = (leaders[shard.leader] ?? 0) + 1;
    }
    const view: DashboardView = {
      atMs,
      placement: {
        isLeader: snapshot !== undefined,
        leaderAddress: leaderAddress ?? "",
        bootstrapped: state.bootstrapped,
        mapVersion: state.shardMapVersion,
        notes: state.notes,
      },
      detail,
      nodes: state.nodes.map((node) => ({
        id: node.nodeId,
        address: node.address,
        state: !node.live ? "down" : node.draining ? "draining" : "live",
        downSinceMs: node.downSinceMs,
        replicas: node.replicas,
        leaders: node.leaders,
        diskBytes: statuses.get(node.nodeId)?.diskBytes || null,
      })),
      shards: state.shards.map((shard) => {
        const replicas = byShard.get(shard.shardId) ?? [];
        const leading = replicas.find((r) => r.status.role === ReplicaStatus_Role.LEADER)?.status;
        const freshest = leading ?? replicas.at(0)?.status;
        const known = replicas.length > 0;
        return {
          id: shard.shardId,
          rangeLo: shard.rangeLo,
          rangeHi: shard.rangeHi,
          voters: shard.voters,
          learners: shard.learners,
          leader: shard.leader,
          confEpoch: shard.confEpoch,
          term: known ? Math.max(...replicas.map((r) => r.status.term)) : null,
          applied: freshest?.appliedIndex ?? null,
          keys: freshest?.dataKeys ?? null,
          bytes: freshest?.dataBytes ?? null,
          requests: known ? replicas.reduce((sum, r) => sum + r.requests, 0) : null,
          rps: known && replicas.every((r) => r.rps !== null)
            ? replicas.reduce((sum, r) => sum + (r.rps ?? 0), 0)
            : null,
        };
      }),
      moves: (snapshot?.tasks ?? []).map((raw) => ({ task: taskToProto(raw), raw })).map((
        { task, raw },
      ) => ({
        shardId: task.move?.shardId ?? 0,
        kind: task.move?.kind ?? "",
        from: task.move?.fromNode ?? "",
        to: task.move?.toNode ?? "",
        cause: task.move?.cause ?? "",
        reason: task.move?.reason ?? "",
        step: task.step,
        stepIndex: task.stepIndex,
        steps: task.steps,
        startedAtMs: task.startedAtMs,
        lastError: task.lastError,
        catchUp: catchUpOf(raw, snapshot?.views.get(raw.move.shardId)),
      })),
      // Another instance's decisions are its own, from when it led: not the cluster's now.
      decisions: (snapshot === undefined ? [] : sources.decisions().slice(-DECISIONS_SHOWN)).map((
        decision,
      ) => ({
        atMs: decision.atMs,
        event: decision.event,
        reason: decision.reason,
        shardId: decision.move === undefined ? null : moveToProto(decision.move, "", "").shardId,
      })),
      gateways: gateways.rows,
      totals: {
        requests: gateways.rows.reduce((sum, g) => sum + (g.requests ?? 0), 0),
        rps: gateways.intervals.length === 0
          ? null
          : Object.values(gateways.rps).reduce((sum, value) => sum + value, 0),
      },
    };
    return { view, sample: { atMs, rps: gateways.rps, p99Ms: gateways.p99Ms, leaders } };
  }

  /** Scrapes every gateway; rates over the time since each one's previous scrape. */
  async #gatherGateways(): Promise<GatewayRound> {
    const sources = this.#sources;
    const gateways = sources.gateways();
    // Each answer is timed as it arrives: a slow gateway must not stretch another's interval.
    const answers = await Promise.all(
      gateways.map((g) =>
        g.metricsAddress === ""
          ? undefined
          : sources.scrape(g.metricsAddress).then((text) => ({ text, atMs: sources.now() }))
      ),
    );
    const rows: GatewayRow[] = [];
    const intervals: Array<{ counts: GatewayCounts; seconds: number }> = [];
    const keys = new Set<string>();
    gateways.forEach((gateway, i) => {
      const text = answers[i]?.text;
      const atMs = answers[i]?.atMs ?? 0;
      const counts = text === undefined ? undefined : gatewayCounts(parsePrometheusText(text));
      // A gateway restarted at the same address is another process: its counts start anew.
      const key = `${gateway.address}/${gateway.startedAtMs}`;
      keys.add(key);
      const previous = this.#gatewayCounts.get(key);
      let rps: number | null = null;
      if (counts !== undefined && previous !== undefined && atMs > previous.atMs) {
        const between = countsBetween(previous.value, counts);
        if (between !== undefined) {
          const seconds = (atMs - previous.atMs) / 1000;
          intervals.push({ counts: between, seconds });
          rps = totalRequests(between) / seconds;
        }
      }
      if (counts !== undefined) this.#gatewayCounts.set(key, { atMs, value: counts });
      rows.push({
        address: gateway.address,
        metricsAddress: gateway.metricsAddress,
        up: counts !== undefined,
        requests: counts === undefined ? null : totalRequests(counts),
        rps,
      });
    });
    for (const key of this.#gatewayCounts.keys()) {
      if (!keys.has(key)) this.#gatewayCounts.delete(key);
    }
    const rps: Record<string, number> = {};
    for (const { counts, seconds } of intervals) {
      for (const [method, calls] of counts.requests) {
        rps[method] = (rps[method] ?? 0) + calls / seconds;
      }
    }
    const p99Ms: Record<string, number> = {};
    for (const [method, buckets] of sumCounts(intervals.map((i) => i.counts)).buckets) {
      const p99 = histogramQuantile(0.99, buckets);
      if (p99 !== undefined) p99Ms[method] = p99 * 1000;
    }
    return { rows, intervals, rps, p99Ms };
  }

  /** A round without the gateways (nobody watches another instance than the leader). */
  #noGateways(): Promise<GatewayRound> {
    this.#gatewayCounts.clear();
    return Promise.resolve({ rows: [], intervals: [], rps: {}, p99Ms: {} });
  }

  /**
   * Each live node's status, by node id, timed as it arrives. A node that does not answer keeps
   * its last status for {@linkcode STATUS_STALE_ROUNDS} rounds, then shows as unknown.
   */
  async #gatherStatuses(snapshot: ClusterSnapshot): Promise<Map<string, NodeStatusResponse>> {
    const sources = this.#sources;
    const answers = await Promise.all(
      snapshot.registered.map((node) =>
        sources.nodeStatus(node.address).then((status) => ({ status, atMs: sources.now() }))
      ),
    );
    const staleBeforeMs = sources.now() - STATUS_STALE_ROUNDS * this.#intervalMs;
    const out = new Map<string, NodeStatusResponse>();
    snapshot.registered.forEach((node, i) => {
      const { status: answer, atMs } = answers[i];
      if (answer !== undefined) this.#statuses.set(node.id, { atMs, value: answer });
      const known = this.#statuses.get(node.id);
      if (known !== undefined && known.atMs < staleBeforeMs) this.#statuses.delete(node.id);
      else if (known !== undefined) out.set(node.id, known.value);
    });
    const registered = new Set(snapshot.registered.map((node) => node.id));
    for (const id of this.#statuses.keys()) {
      if (!registered.has(id)) this.#statuses.delete(id);
    }
    return out;
  }

  /**
   * The replicas in the statuses by shard, each with its requests and their rate since an earlier
   * status of it (null the first time, or when its process restarted).
   */
  #replicasByShard(
    statuses: ReadonlyMap<string, NodeStatusResponse>,
  ): Map<number, ReplicaCounts[]> {
    const out = new Map<number, ReplicaCounts[]>();
    const seen = new Set<string>();
    for (const [nodeId, node] of statuses) {
      const atMs = this.#statuses.get(nodeId)?.atMs ?? this.#sources.now();
      for (const status of node.replicas) {
        const key = `${nodeId}/${node.startedAtMs}/${status.shardId}/${status.peerId}`;
        seen.add(key);
        const requests = status.proposals + status.reads;
        const previous = this.#replicaCounts.get(key);
        let counted: ReplicaRate = { atMs, requests, rps: null };
        if (previous !== undefined && atMs === previous.atMs) counted = previous;
        else if (previous !== undefined && atMs > previous.atMs && requests >= previous.requests) {
          const rps = (requests - previous.requests) / ((atMs - previous.atMs) / 1000);
          counted = { atMs, requests, rps };
        }
        this.#replicaCounts.set(key, counted);
        const list = out.get(status.shardId) ?? [];
        list.push({ status, requests, rps: counted.rps });
        out.set(status.shardId, list);
      }
    }
    for (const key of this.#replicaCounts.keys()) {
      if (!seen.has(key)) this.#replicaCounts.delete(key);
    }
    return out;
  }
}

/** What one round read from the gateways. */
interface GatewayRound {
  readonly rows: GatewayRow[];
  readonly intervals: Array<{ counts: GatewayCounts; seconds: number }>;
  readonly rps: Record<string, number>;
  readonly p99Ms: Record<string, number>;
}

interface ReplicaRate {
  readonly atMs: number;
  readonly requests: number;
  readonly rps: number | null;
}

interface ReplicaCounts {
  readonly status: ReplicaStatus;
  readonly requests: number;
  readonly rps: number | null;
}

function catchUpOf(
  task: Task,
  view: ShardView | undefined,
): { match: number; commit: number } | null {
  if (task.newPeerId === undefined || view === undefined) return null;
  const match = view.progress.get(task.newPeerId);
  return match === undefined ? null : { match, commit: view.commitIndex };
}
