/**
 * Placement's Prometheus metrics (`/metrics` on `[placement] http_port`): what the leader loop
 * does (rounds, status pulls that failed, moves started and ended by cause, step failures, map
 * publications, orphans deleted, planning time) and, read from the last round when Prometheus
 * scrapes, what it sees (nodes alive, draining and down; shards without a leader and
 * under-replicated; moves in flight) and whether this instance leads.
 *
 * @module
 */
import { Counter, Gauge, Histogram, LATENCY_BUCKETS_SECONDS, type Registry } from "@tinykv/metrics";
import type { ClusterSnapshot, LeaderMetrics } from "./leader.ts";

/** What the gauges read at scrape time. */
export interface PlacementSources {
  /** The last round's view while this instance leads; undefined otherwise. */
  snapshot(): ClusterSnapshot | undefined;
  /** How many voters each shard should have (`sharding.replica_count`). */
  readonly replicaCount: number;
}

/** The leader's counters on prom-client: see {@linkcode LeaderMetrics}. */
export class PlacementMetrics implements LeaderMetrics {
  readonly #rounds: Counter;
  readonly #statusFailures: Counter;
  readonly #moves: Counter<"cause" | "event">;
  readonly #stepFailures: Counter;
  readonly #mapPublications: Counter;
  readonly #orphansDeleted: Counter;
  readonly #planning: Histogram;

  constructor(registry: Registry) {
    const counter = (name: string, help: string) =>
      new Counter({ name: `tinykv_placement_${name}`, help, registers: [registry] });
    this.#rounds = counter("rounds_total", "Rounds of the leader loop.");
    this.#statusFailures = counter(
      "status_failures_total",
      "Status pulls from a kvnode that failed.",
    );
    this.#moves = new Counter({
      name: "tinykv_placement_moves_total",
      help: "Moves started, done and failed, by the cause that planned them.",
      labelNames: ["cause", "event"] as const,
      registers: [registry],
    });
    this.#stepFailures = counter("move_step_failures_total", "Move steps that failed (retried).");
    this.#mapPublications = counter("map_publications_total", "Shard maps published.");
    this.#orphansDeleted = counter("orphans_deleted_total", "Orphan replicas deleted.");
    this.#planning = new Histogram({
      name: "tinykv_placement_planning_duration_seconds",
      help: "Time to plan a round's moves.",
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers: [registry],
    });
  }

  round(): void {
    this.#rounds.inc();
  }
  statusFailure(): void {
    this.#statusFailures.inc();
  }
  moveStarted(cause: string): void {
    this.#moves.inc({ cause, event: "started" });
  }
  moveEnded(cause: string, event: "done" | "failed"): void {
    this.#moves.inc({ cause, event });
  }
  stepFailure(): void {
    this.#stepFailures.inc();
  }
  mapPublished(): void {
    this.#mapPublications.inc();
  }
  orphanDeleted(): void {
    this.#orphansDeleted.inc();
  }
  planned(seconds: number): void {
    this.#planning.observe(seconds);
  }
}

/** Registers the gauges read from the last round (see {@linkcode PlacementSources}). */
export function placementGauges(registry: Registry, sources: PlacementSources): void {
  const gauge = (
    name: string,
    help: string,
    read: (snapshot: ClusterSnapshot | undefined) => number,
  ) =>
    new Gauge({
      name: `tinykv_placement_${name}`,
      help,
      registers: [registry],
      collect() {
        this.set(read(sources.snapshot()));
      },
    });
  gauge("is_leader", "1 while this instance leads placement.", (s) => (s === undefined ? 0 : 1));
  new Gauge({
    name: "tinykv_placement_nodes",
    help: "Kvnodes by state, as the leader's last round saw them (0 on a non-leader).",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const counts = nodeCounts(sources.snapshot());
      for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
    },
  });
  gauge(
    "shards_without_leader",
    "Shards no live kvnode reports leading.",
    (s) => s === undefined ? 0 : [...s.views.values()].filter((v) => v.leader === undefined).length,
  );
  gauge(
    "shards_under_replicated",
    "Shards with fewer voters on live kvnodes than replica_count.",
    (s) => (s === undefined ? 0 : underReplicated(s, sources.replicaCount)),
  );
  gauge("moves_in_flight", "Moves being carried out.", (s) => s?.tasks.length ?? 0);
}

/** Nodes alive (registered, not draining), draining, and down (members not registered). */
export function nodeCounts(
  snapshot: ClusterSnapshot | undefined,
): { alive: number; draining: number; down: number } {
  if (snapshot === undefined) return { alive: 0, draining: 0, down: 0 };
  const registered = snapshot.registered.map((node) => node.id);
  const draining = registered.filter((id) => snapshot.draining.has(id)).length;
  return {
    alive: registered.length - draining,
    draining,
    down: snapshot.downSinceMs.size,
  };
}

/** Shards whose voters on registered nodes are fewer than `replicaCount`. */
export function underReplicated(snapshot: ClusterSnapshot, replicaCount: number): number {
  const live = new Set(snapshot.registered.map((node) => node.id));
  let count = 0;
  for (const view of snapshot.views.values()) {
    const voters = view.voters.filter((member) => live.has(member.nodeId)).length;
    if (voters < replicaCount) count++;
  }
  return count;
}
