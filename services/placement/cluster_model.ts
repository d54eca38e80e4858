/**
 * The cluster as the placement leader sees it, built purely from the kvnodes' `Status` answers,
 * the registered nodes and the last published shard map: one {@linkcode ShardView} per shard
 * (members with peer ids and addresses, leader, conf epoch, replication progress), the
 * {@linkcode PlannerInput} handed to `planMoves`, and the shard map to publish.
 *
 * @module
 */
import { type NodeStatusResponse, ReplicaStatus_Role } from "@tinykv/proto/tinykv/v1";
import {
  type HashRange,
  type Move,
  nodeId,
  type PlannerInput,
  type PlannerLimits,
  type PlannerNode,
  type PlannerShard,
  type ShardId,
  shardId,
  type ShardMap,
} from "@tinykv/shard";

/** One member of a shard group, as a status reports it. */
export interface Member {
  readonly peerId: number;
  readonly nodeId: string;
  readonly address: string;
}

/** A replica some node reports hosting. */
export interface HostedReplica {
  readonly peerId: number;
  readonly role: number;
  readonly appliedIndex: number;
  readonly confEpoch: number;
}

/** A shard as placement last saw it. */
export interface ShardView {
  readonly id: ShardId;
  readonly range: HashRange;
  readonly voters: readonly Member[];
  readonly learners: readonly Member[];
  /** The node leading the group, when a live node reports leading it. */
  readonly leader?: Member;
  readonly confEpoch: number;
  /** The leader's commit index (0 without a leader). */
  readonly commitIndex: number;
  /** On the leader: peer id → match index. */
  readonly progress: ReadonlyMap<number, number>;
  readonly sizeBytes: number;
  /** Node id → the replica that node reports hosting. */
  readonly hosted: ReadonlyMap<string, HostedReplica>;
}

/** A node registered in ZooKeeper (`nodes/<id>`). */
export interface RegisteredNode {
  readonly id: string;
  readonly address: string;
}

/**
 * Builds one view per shard. A shard's configuration comes from the replica that leads it with
 * the highest term, else from the replica with the highest conf epoch (then applied index). A
 * shard that no status mentions keeps the members of `map` (without peer ids), so that a shard
 * whose every replica is down still appears.
 */
export function shardViews(
  statuses: readonly NodeStatusResponse[],
  map: ShardMap | undefined,
): Map<number, ShardView> {
  const views = new Map<number, ShardView>();
  const best = new Map<number, { status: NodeStatusResponse; index: number }>();
  const hosted = new Map<number, Map<string, HostedReplica>>();
  for (const status of statuses) {
    status.replicas.forEach((replica, index) => {
      const perShard = hosted.get(replica.shardId) ?? new Map<string, HostedReplica>();
      hosted.set(replica.shardId, perShard);
      perShard.set(status.nodeId, {
        peerId: replica.peerId,
        role: replica.role,
        appliedIndex: replica.appliedIndex,
        confEpoch: replica.confEpoch,
      });
      const current = best.get(replica.shardId);
      if (current === undefined || isBetter(replica, current.status.replicas[current.index])) {
        best.set(replica.shardId, { status, index });
      }
    });
  }
  for (const [id, { status, index }] of best) {
    const replica = status.replicas[index];
    const leading = replica.role === ReplicaStatus_Role.LEADER;
    const members = [...replica.voters, ...replica.learners];
    const leader = leading
      ? members.find((member) => member.peerId === replica.peerId) ??
        { peerId: replica.peerId, nodeId: status.nodeId, address: status.address }
      : undefined;
    views.set(id, {
      id: shardId(id),
      range: { lo: replica.rangeLo, hi: replica.rangeHi },
      voters: replica.voters.map(member),
      learners: replica.learners.map(member),
      leader: leader === undefined ? undefined : member(leader),
      confEpoch: replica.confEpoch,
      commitIndex: leading ? replica.commitIndex : 0,
      progress: new Map(
        leading ? replica.progress.map((p) => [p.peerId, p.matchIndex] as const) : [],
      ),
      sizeBytes: replica.dataBytes,
      hosted: hosted.get(id) ?? new Map(),
    });
  }
  for (const entry of map?.shards ?? []) {
    if (views.has(entry.id)) continue;
    const fromMap = (node: string): Member => ({ peerId: 0, nodeId: node, address: "" });
    views.set(entry.id, {
      id: entry.id,
      range: entry.range,
      voters: entry.replicas.map(fromMap),
      learners: entry.learners.map(fromMap),
      confEpoch: entry.confEpoch,
      commitIndex: 0,
      progress: new Map(),
      sizeBytes: 0,
      hosted: new Map(),
    });
  }
  return views;
}

type ReplicaLike = NodeStatusResponse["replicas"][number];

function isBetter(a: ReplicaLike, b: ReplicaLike): boolean {
  const aLeads = a.role === ReplicaStatus_Role.LEADER;
  const bLeads = b.role === ReplicaStatus_Role.LEADER;
  if (aLeads !== bLeads) return aLeads;
  if (aLeads && a.term !== b.term) return a.term > b.term;
  if (a.confEpoch !== b.confEpoch) return a.confEpoch > b.confEpoch;
  return a.appliedIndex > b.appliedIndex;
}

function member(peer: { peerId: number; nodeId: string; address: string }): Member {
  return { peerId: peer.peerId, nodeId: peer.nodeId, address: peer.address };
}

/** The largest peer id any status mentions (0 when none): new peer ids start above it. */
export function maxPeerId(statuses: readonly NodeStatusResponse[]): number {
  let max = 0;
  for (const status of statuses) {
    for (const replica of status.replicas) {
      max = Math.max(max, replica.peerId);
      for (const peer of [...replica.voters, ...replica.learners]) max = Math.max(max, peer.peerId);
    }
  }
  return max;
}

/**
 * Tracks since when each known node has been absent from the registry. A node registered now is
 * dropped from the result; a known node absent now keeps its first absence time, or gets `nowMs`.
 * `known` holds every node that a shard lists as a member.
 */
export function trackDowntime(
  previous: ReadonlyMap<string, number>,
  registered: ReadonlySet<string>,
  known: ReadonlySet<string>,
  nowMs: number,
): Map<string, number> {
  const next = new Map<string, number>();
  for (const node of known) {
    if (registered.has(node)) continue;
    next.set(node, previous.get(node) ?? nowMs);
  }
  return next;
}

/** Every node a shard lists as a voter or learner. */
export function memberNodes(views: ReadonlyMap<number, ShardView>): Set<string> {
  const out = new Set<string>();
  for (const view of views.values()) {
    for (const m of [...view.voters, ...view.learners]) out.add(m.nodeId);
  }
  return out;
}

/** What {@linkcode plannerInput} needs beyond the views. */
export interface PlannerInputOptions {
  readonly registered: readonly RegisteredNode[];
  readonly downSinceMs: ReadonlyMap<string, number>;
  readonly draining: ReadonlySet<string>;
  readonly movesInFlight: readonly Move[];
  readonly lastMoveMs: ReadonlyMap<number, number>;
  /** When an operator last moved a leadership away from each node (`leadersMovedAwayMs`). */
  readonly leadersMovedAwayMs?: ReadonlyMap<string, number>;
  readonly replicaCount: number;
  readonly limits: PlannerLimits;
  readonly nowMs: number;
}

/** The planner's input: registered nodes are live; absent members are down since they left. */
export function plannerInput(
  views: ReadonlyMap<number, ShardView>,
  options: PlannerInputOptions,
): PlannerInput {
  const nodes: PlannerNode[] = options.registered.map((node) => {
    const movedAway = options.leadersMovedAwayMs?.get(node.id);
    return {
      id: nodeId(node.id),
      live: true,
      draining: options.draining.has(node.id),
      ...(movedAway === undefined ? {} : { leadersMovedAwayMs: movedAway }),
    };
  });
  const registered = new Set(options.registered.map((node) => node.id));
  for (const node of [...memberNodes(views)].sort()) {
    if (registered.has(node)) continue;
    nodes.push({ id: nodeId(node), live: false, deadSinceMs: options.downSinceMs.get(node) });
  }
  const shards: PlannerShard[] = [...views.values()].sort((a, b) => a.id - b.id).map((view) => ({
    id: shardId(view.id),
    voters: view.voters.map((m) => nodeId(m.nodeId)),
    learners: view.learners.map((m) => nodeId(m.nodeId)),
    leader: view.leader === undefined ? undefined : nodeId(view.leader.nodeId),
    sizeBytes: view.sizeBytes,
    lastMoveMs: options.lastMoveMs.get(view.id),
  }));
  return {
    replicaCount: options.replicaCount,
    nodes,
    shards,
    movesInFlight: options.movesInFlight,
    nowMs: options.nowMs,
    limits: options.limits,
  };
}

/**
 * The shard map placement would publish for `views`, at `version`: shards ordered by range, the
 * leader hint only when the leader is a voter.
 */
export function shardMapOf(
  views: ReadonlyMap<number, ShardView>,
  options: { version: number; clusterId?: string },
): ShardMap {
  const shards = [...views.values()].sort((a, b) => a.range.lo - b.range.lo).map((view) => {
    const replicas = view.voters.map((m) => nodeId(m.nodeId));
    const leader = view.leader?.nodeId;
    return {
      id: shardId(view.id),
      range: view.range,
      replicas,
      learners: view.learners.map((m) => nodeId(m.nodeId)),
      leaderHint: leader !== undefined && replicas.includes(nodeId(leader))
        ? nodeId(leader)
        : undefined,
      confEpoch: view.confEpoch,
    };
  });
  return { version: options.version, clusterId: options.clusterId, shards };
}

/**
 * How two maps differ, ignoring the version: `"none"`, `"leaders"` (only leader hints moved:
 * publishing may be debounced) or `"members"` (members, epochs or ranges changed: publish now).
 */
export function mapChange(
  published: ShardMap | undefined,
  next: ShardMap,
): "none" | "leaders" | "members" {
  if (published === undefined) return "members";
  const strip = (map: ShardMap, hints: boolean) =>
    JSON.stringify(
      map.shards.map((s) => ({ ...s, leaderHint: hints ? s.leaderHint ?? null : null })),
    );
  if (strip(published, false) !== strip(next, false)) return "members";
  return strip(published, true) === strip(next, true) ? "none" : "leaders";
}
