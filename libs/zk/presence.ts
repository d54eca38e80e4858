/**
 * A process's presence in ZooKeeper: an ephemeral znode naming where it listens, which the
 * client re-creates after a session expiry ({@linkcode ZooKeeperClient.createEphemeral}).
 *
 * @module
 */
import type { ZnodeData, ZooKeeperClient } from "./client.ts";

/**
 * Creates the ephemeral `path` (and its parents) for this session, replacing a znode another
 * session left there: a previous run of the same process keeps its znode until that session
 * expires, and the running process is the one to list. Throws when ZooKeeper refuses.
 */
export async function claimEphemeral(
  zk: ZooKeeperClient,
  path: string,
  data: ZnodeData,
): Promise<void> {
  const parent = path.slice(0, path.lastIndexOf("/"));
  if (parent !== "") await zk.mkdirp(parent);
  for (let attempt = 0; attempt < 2; attempt++) {
    const created = await zk.createEphemeral(path, data);
    if (created.kind === "ok") return;
    if (created.kind !== "nodeExists") {
      throw new Error(`Cannot create "${path}" in ZooKeeper: ${created.kind}`);
    }
    await zk.delete(path);
  }
  throw new Error(`"${path}" exists in ZooKeeper and could not be replaced`);
}

/**
 * Keeps `path` claimed while the process runs: claims it until that succeeds (retrying every
 * `retryMs`) and a check finds it owned by this session, and again whenever it disappears
 * (someone deleted it) or the client gives up restoring it after a session expiry (another
 * session's znode was in the way). Returns a function that stops it.
 */
export function keepEphemeral(
  zk: ZooKeeperClient,
  path: string,
  data: ZnodeData,
  options: {
    readonly retryMs: number;
    readonly warn: (message: string, fields: Record<string, unknown>) => void;
  },
): () => void {
  let stopped = false;
  let claiming = false;
  let again = false;
  const claim = async () => {
    if (claiming) {
      // Not dropped: the znode may have gone after the running claim created it (see below).
      again = true;
      return;
    }
    claiming = true;
    while (!stopped) {
      again = false;
      try {
        await claimEphemeral(zk, path, data);
        // Checked, not assumed: the watch reports a value only when it differs from the last it
        // reported, so when it last saw the znode absent (this claim's own delete of another
        // session's znode, or the deletion that started the claim) and someone deletes the
        // znode this claim created before the watch reads it back, the watch reports nothing.
        // That read, sent when the creation's event came, is ahead of this one on the session.
        const stat = await zk.exists(path);
        const owned = stat !== undefined && stat.ephemeralOwner === zk.sessionId;
        if (owned && !again) break;
      } catch (error) {
        options.warn("Cannot register in ZooKeeper: retrying", { path, error });
        await new Promise((resolve) => setTimeout(resolve, options.retryMs));
      }
    }
    claiming = false;
  };
  const unlisten = zk.onConnectionEvent((event) => {
    if (event.kind === "ephemeralLost" && event.path === path) void claim();
  });
  let claimedOnce = false;
  const unwatch = zk.watchData(path, (node) => {
    if (node !== undefined) claimedOnce = true;
    else if (claimedOnce && !stopped) void claim();
  });
  void claim();
  return () => {
    stopped = true;
    unlisten();
    unwatch();
  };
}
