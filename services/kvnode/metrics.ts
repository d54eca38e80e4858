/**
 * The kvnode's Prometheus metrics (`/metrics` on `[kvnode] http_port`).
 *
 * - Per hosted replica (label `shard`), read from the replicas when Prometheus scrapes: role,
 *   term, commit and applied index, log entries and bytes, data keys and bytes, and the counts of
 *   proposals, ReadIndex rounds, lease reads and snapshots sent and received since the replica was opened here.
 * - Per node: turn duration, its transaction's duration (the LMDB commit, synced) and the entries
 *   each turn persisted (the group commit's size), as histograms fed by the driver's observer; the
 *   inbox depth, Raft messages dropped, and the transport's batches, bytes and drops.
 *
 * @module
 */
import type { Role } from "@tinykv/raft";
import {
  Counter,
  followingCounter,
  Gauge,
  Histogram,
  LATENCY_BUCKETS_SECONDS,
  type Registry,
} from "@tinykv/metrics";
import type { DriverObserver, TurnReport } from "./driver.ts";
import type { GroupMachine } from "./application.ts";
import type { Replica } from "./replica.ts";
import type { RaftTransportStats } from "./transport_shared.ts";

/** What the metrics read of the driver at scrape time (the driver itself fits). */
export interface DriverSource {
  // deno-lint-ignore no-explicit-any
  replicas(): readonly Replica<any, GroupMachine<any>>[];
  readonly inboxDepth: number;
  readonly droppedMessages: number;
}

/** What the metrics read at scrape time: the driver and the transport's counters. */
interface KvNodeSources {
  readonly driver: DriverSource;
  transportStats(): RaftTransportStats;
}

const ROLES: readonly Role[] = ["follower", "preCandidate", "candidate", "leader"];

/** Entries per turn: 1 to 16k, doubling. */
const ENTRY_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384];

/**
 * Registers the kvnode's metrics. The returned observer goes into the driver's options (it times
 * turns); `attach` names what the scrape-time metrics read, once the driver and transport exist.
 */
export function kvnodeMetrics(registry: Registry): {
  // deno-lint-ignore no-explicit-any
  observer: DriverObserver<any, any>;
  attach(driver: DriverSource, transportStats: () => RaftTransportStats): void;
} {
  let sources: KvNodeSources | undefined;
  const turn = new Histogram({
    name: "tinykv_kvnode_turn_duration_seconds",
    help: "Driver turns that wrote: the whole turn (intake, transaction, sends, advance).",
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  const commit = new Histogram({
    name: "tinykv_kvnode_lmdb_commit_duration_seconds",
    help: "A turn's one LMDB transaction, from its start to the commit being synced " +
      "(committed, for a turn that did not wait for its sync).",
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  const entries = new Histogram({
    name: "tinykv_kvnode_turn_entries",
    help: "Log entries a turn persisted over every group (the group commit's size).",
    buckets: ENTRY_BUCKETS,
    registers: [registry],
  });
  const groups = new Histogram({
    name: "tinykv_kvnode_turn_groups",
    help: "Groups whose Ready a turn's transaction persisted or applied.",
    buckets: ENTRY_BUCKETS,
    registers: [registry],
  });
  const unsynced = new Counter({
    name: "tinykv_kvnode_turns_unsynced_total",
    help: "Turns that went on without waiting for their sync: those that only applied " +
      "committed entries or took steps of a log compaction.",
    registers: [registry],
  });
  const observer = {
    turned(report: TurnReport): void {
      if (!report.durable) unsynced.inc();
      turn.observe(report.ms / 1000);
      commit.observe(report.writeMs / 1000);
      if (report.entries > 0) entries.observe(report.entries);
      groups.observe(report.groups);
    },
  };
  const replicas = () => sources?.driver.replicas() ?? [];
  new Gauge({
    name: "tinykv_kvnode_replica_role",
    help: "1 for the role each hosted replica has now (follower, preCandidate, candidate, leader).",
    labelNames: ["shard", "role"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const replica of replicas()) {
        const role = replica.node.role;
        for (const r of ROLES) this.set({ shard: replica.shardId, role: r }, r === role ? 1 : 0);
      }
    },
  });
  replicaGauge(registry, "term", "The current term.", (r) => r.log.hardState.term, replicas);
  replicaGauge(
    registry,
    "commit_index",
    "The commit index persisted.",
    (r) => r.log.hardState.commit,
    replicas,
  );
  replicaGauge(
    registry,
    "applied_index",
    "The index applied to the state machine.",
    (r) => r.log.appliedState.applied,
    replicas,
  );
  replicaGauge(
    registry,
    "log_entries",
    "Entries in the log (since its compaction point).",
    (r) => r.log.entryCount,
    replicas,
  );
  replicaGauge(
    registry,
    "log_bytes",
    "Payload bytes in the log.",
    (r) => r.log.entryBytes,
    replicas,
  );
  replicaGauge(
    registry,
    "data_keys",
    "Keys in the state machine.",
    (r) => r.machine.dataSize().keys,
    replicas,
  );
  replicaGauge(
    registry,
    "data_bytes",
    "Bytes of keys and values in the state machine.",
    (r) => r.machine.dataSize().bytes,
    replicas,
  );
  replicaCounter(
    registry,
    "proposals_total",
    "Entries this replica proposed as leader.",
    (r) => r.counters.proposals,
    replicas,
  );
  replicaCounter(
    registry,
    "read_index_rounds_total",
    "ReadIndex rounds this replica ran as leader.",
    (r) => r.reads.rounds,
    replicas,
  );
  replicaCounter(
    registry,
    "lease_reads_total",
    "Turns whose reads this replica confirmed under its leader lease, without a ReadIndex round.",
    (r) => r.reads.leased,
    replicas,
  );
  replicaCounter(
    registry,
    "snapshots_sent_total",
    "Snapshots this replica sent to a follower.",
    (r) => r.counters.snapshotsSent,
    replicas,
  );
  replicaCounter(
    registry,
    "snapshots_received_total",
    "Snapshots this replica installed.",
    (r) => r.counters.snapshotsReceived,
    replicas,
  );
  new Gauge({
    name: "tinykv_kvnode_inbox_depth",
    help: "Raft messages, requests and tasks waiting for the driver's next turn.",
    registers: [registry],
    collect() {
      this.set(sources?.driver.inboxDepth ?? 0);
    },
  });
  followingCounter(
    registry,
    "tinykv_kvnode_messages_dropped_total",
    "Raft messages dropped because the driver's inbox was full.",
    () => sources?.driver.droppedMessages ?? 0,
  );
  const transport = () => sources?.transportStats();
  followingCounter(
    registry,
    "tinykv_kvnode_transport_sent_bytes_total",
    "Bytes of Raft batches sent to other kvnodes (estimated from each message's bound).",
    () => transport()?.bytesSent ?? 0,
  );
  followingCounter(
    registry,
    "tinykv_kvnode_transport_sent_messages_total",
    "Raft messages sent to other kvnodes.",
    () => transport()?.envelopesSent ?? 0,
  );
  followingCounter(
    registry,
    "tinykv_kvnode_transport_dropped_messages_total",
    "Raft messages the transport dropped (queue full, oversized, invalid).",
    () => {
      const s = transport();
      return s === undefined ? 0 : s.droppedQueueFull + s.droppedOversized + s.droppedInvalid;
    },
  );
  return {
    observer,
    attach: (driver, transportStats) => (sources = { driver, transportStats }),
  };
}

// deno-lint-ignore no-explicit-any
type AnyReplica = Replica<any, GroupMachine<any>>;

function replicaGauge(
  registry: Registry,
  name: string,
  help: string,
  read: (replica: AnyReplica) => number,
  replicas: () => readonly AnyReplica[],
): void {
  new Gauge({
    name: `tinykv_kvnode_replica_${name}`,
    help: `${help} Per hosted replica.`,
    labelNames: ["shard"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const replica of replicas()) this.set({ shard: replica.shardId }, read(replica));
    },
  });
}

/** A counter per replica, read from the replica's own count (it restarts with the replica). */
function replicaCounter(
  registry: Registry,
  name: string,
  help: string,
  read: (replica: AnyReplica) => number,
  replicas: () => readonly AnyReplica[],
): void {
  new Counter({
    name: `tinykv_kvnode_replica_${name}`,
    help: `${help} Per hosted replica, since it was opened on this node.`,
    labelNames: ["shard"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const replica of replicas()) this.inc({ shard: replica.shardId }, read(replica));
    },
  });
}

/** What {@linkcode watchMetrics} reads: the node's watch windows. */
export interface WatchStatsSource {
  readonly stats: {
    bytes: number;
    events: number;
    watchers: number;
    recorded: number;
    evicted: number;
    watchersCut: number;
  };
}

/** Registers the metrics of the node's watch windows and watchers (read when scraped). */
export function watchMetrics(registry: Registry, hub: WatchStatsSource): void {
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  gauge(
    "tinykv_kvnode_watch_window_bytes",
    "Bytes the watch windows of every replica hold (kvnode.watch_window_bytes bounds them).",
    () => hub.stats.bytes,
  );
  gauge(
    "tinykv_kvnode_watch_window_changes",
    "Changes the watch windows hold.",
    () => hub.stats.events,
  );
  gauge("tinykv_kvnode_watchers", "Watchers this node serves now.", () => hub.stats.watchers);
  counter(
    "tinykv_kvnode_watch_changes_recorded_total",
    "Changes recorded in the watch windows since start.",
    () => hub.stats.recorded,
  );
  counter(
    "tinykv_kvnode_watch_changes_evicted_total",
    "Changes dropped from the watch windows (budget, snapshot, replica gone) since start.",
    () => hub.stats.evicted,
  );
  counter(
    "tinykv_kvnode_watchers_cut_total",
    "Watchers ended by the node (not leading, replica gone, fell behind the window) since start.",
    () => hub.stats.watchersCut,
  );
}
