/**
 * A kvnode's identity: its node id (chosen once per data dir and kept there, so a restarted node is
 * the same node) and the id of the cluster it belongs to (recorded in the data dir the first time
 * the node meets its cluster in ZooKeeper; a node refuses to serve a cluster with another id).
 *
 * @module
 */
import type { ZooKeeperClient } from "@tinykv/zk";
import type { NodeStorage } from "./node_storage.ts";

/** The znode, under the cluster root, that holds the cluster id. */
export const CLUSTER_ID_ZNODE = "/cluster_id";
const NODE_ID = "node_id";
const CLUSTER_ID = "cluster_id";

function randomHex(bytes: number): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The node id stored in `store`; the first time, `assigned` (the node's token names it) or a new
 * one (`n-<8 hex>`), stored.
 */
export async function nodeIdOf(store: NodeStorage, assigned?: string): Promise<string> {
  const existing = store.getIdentity(NODE_ID);
  if (existing !== undefined) return existing;
  const chosen = assigned ?? `n-${randomHex(4)}`;
  await store.write(() => store.putIdentity(NODE_ID, chosen));
  return chosen;
}

/** The cluster id recorded in the data dir, if any. */
export function storedClusterId(store: NodeStorage): string | undefined {
  return store.getIdentity(CLUSTER_ID);
}

/** The outcome of matching the data dir's cluster with ZooKeeper's. */
export type ClusterIdResult =
  | { readonly kind: "ok"; readonly clusterId: string }
  | { readonly kind: "mismatch"; readonly message: string };

/**
 * Reads the cluster id from ZooKeeper (creating it when this is a new cluster) and checks it
 * against the data dir's, recording it there the first time.
 */
export async function resolveClusterId(
  store: NodeStorage,
  zk: ZooKeeperClient,
  options: { dataDir: string },
): Promise<ClusterIdResult> {
  let znode = await zk.get(CLUSTER_ID_ZNODE);
  if (znode === undefined) {
    const created = await zk.create(
      CLUSTER_ID_ZNODE,
      new TextEncoder().encode(`c-${randomHex(8)}`),
    );
    if (created.kind !== "ok" && created.kind !== "nodeExists") {
      throw new Error(`Cannot create the cluster id in ZooKeeper: ${created.kind}`);
    }
    znode = await zk.get(CLUSTER_ID_ZNODE);
  }
  if (znode === undefined) throw new Error("Cannot read the cluster id from ZooKeeper");
  const clusterId = new TextDecoder().decode(znode.data);
  const stored = storedClusterId(store);
  if (stored === undefined) {
    await store.write(() => store.putIdentity(CLUSTER_ID, clusterId));
    return { kind: "ok", clusterId };
  }
  if (stored !== clusterId) {
    return {
      kind: "mismatch",
      message: `Data dir "${options.dataDir}" belongs to cluster "${stored}": ZooKeeper at ` +
        `"${zk.root}" holds cluster "${clusterId}" (use another data dir, or the right cluster)`,
    };
  }
  return { kind: "ok", clusterId };
}
