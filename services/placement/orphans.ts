/**
 * Orphan replicas: a replica a kvnode hosts that is not in its group's configuration as the group's
 * leader reports it. A move abandoned after creating its learner but before adding it leaves one;
 * so does a learner removed while it could not hear of it (a learner never sends first, so no
 * member ever tells it). Nothing else ever deletes them, so placement does, through the kvnode's
 * `DeleteReplica`, once it has seen the replica orphaned for {@linkcode ORPHAN_GRACE_MS} and no
 * move of the shard is in flight. The kvnode refuses unless the replica cannot be a member.
 *
 * @module
 */
import type { ShardId } from "@tinykv/shard";
import type { ShardView } from "./cluster_model.ts";

/** How long a replica must be seen orphaned before placement deletes it. */
export const ORPHAN_GRACE_MS = 10_000;

/** A replica to delete, and the epoch at which its group does not list it. */
export interface Orphan {
  readonly shardId: ShardId;
  readonly nodeId: string;
  readonly peerId: number;
  readonly confEpoch: number;
}

/** The key of an orphan in {@linkcode orphansDue}'s record of first sightings. */
export function orphanKey(orphan: Orphan): string {
  return `${orphan.shardId}/${orphan.nodeId}/${orphan.peerId}`;
}

/**
 * The replicas hosted outside their group's configuration, for shards with a leader and no move
 * in flight (`busy`).
 */
export function findOrphans(
  views: ReadonlyMap<number, ShardView>,
  busy: ReadonlySet<number>,
): Orphan[] {
  const orphans: Orphan[] = [];
  for (const view of views.values()) {
    if (view.leader === undefined || busy.has(view.id)) continue;
    const members = new Set([...view.voters, ...view.learners].map((m) => m.peerId));
    for (const [nodeId, hosted] of view.hosted) {
      if (members.has(hosted.peerId)) continue;
      orphans.push({ shardId: view.id, nodeId, peerId: hosted.peerId, confEpoch: view.confEpoch });
    }
  }
  return orphans;
}

/**
 * Updates `firstSeen` (orphan key → when first seen, forgetting those no longer orphaned) with
 * this round's `orphans`, and returns those seen for at least {@linkcode ORPHAN_GRACE_MS}.
 */
export function orphansDue(
  firstSeen: Map<string, number>,
  orphans: readonly Orphan[],
  nowMs: number,
): Orphan[] {
  const current = new Set(orphans.map(orphanKey));
  for (const key of [...firstSeen.keys()]) if (!current.has(key)) firstSeen.delete(key);
  const due: Orphan[] = [];
  for (const orphan of orphans) {
    const key = orphanKey(orphan);
    const since = firstSeen.get(key) ?? nowMs;
    firstSeen.set(key, since);
    if (nowMs - since >= ORPHAN_GRACE_MS) due.push(orphan);
  }
  return due;
}
