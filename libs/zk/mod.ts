/**
 * `@tinykv/zk`: a promise-based ZooKeeper client for TinyKV's cluster metadata, over
 * `npm:node-zookeeper-client`.
 *
 * What it adds to the library:
 * - paths relative to a root (`/tinykv/<cluster>`), created on connect, and `mkdirp`;
 * - expected outcomes as discriminated unions (`setData` with a version is a compare-and-set that
 *   returns `{kind: "badVersion"}` rather than throwing);
 * - survival of session expiry: the client opens a new session by itself, re-creates the
 *   ephemerals made with `createEphemeral`, and re-arms every watch;
 * - watches that re-arm after each event (`watchData`, `watchChildren`);
 * - connection events: `connected`, `disconnected`, `reconnected`, `expired`, `closed`.
 *
 * Services connect with {@linkcode connectConfiguredZooKeeper} (or
 * {@linkcode connectConfiguredZooKeeperRetrying}, to start while ZooKeeper is down): the config's
 * `[zookeeper]` section and the service's logger, the same way in every service.
 *
 * Which failures throw and which are returned is listed in `client.ts`'s module doc. The real
 * server for tests and `deno task dev` is started by `@tinykv/zk/server`; test helpers are in
 * `@tinykv/zk/testing`.
 *
 * Permissions: `--allow-net` to reach ZooKeeper. Nothing else: node-zookeeper-client needs no
 * `--allow-env` or `--allow-sys`.
 *
 * @example Register a node and watch the shard map
 * ```ts ignore
 * import { connectZooKeeper } from "@tinykv/zk";
 *
 * const zk = await connectZooKeeper({
 *   connectString: "127.0.0.1:2181",
 *   root: "/tinykv/dev",
 *   sessionTimeoutMs: 10_000,
 * });
 * zk.onConnectionEvent((event) => console.log("zookeeper:", event.kind));
 * await zk.mkdirp("/nodes");
 * // Re-created by the client if the session expires.
 * await zk.createEphemeral("/nodes/n1", JSON.stringify({ address: "127.0.0.1:7901" }));
 * const stop = zk.watchData("/shardmap", (node) => {
 *   console.log("shard map version", node?.version);
 * });
 * const current = await zk.get("/shardmap");
 * if (current !== undefined) {
 *   const result = await zk.setData("/shardmap", "{}", current.version);
 *   if (result.kind === "badVersion") console.log("someone else wrote it first");
 * }
 * stop();
 * await zk.close();
 * ```
 *
 * @module
 */
export {
  CLOSE_TIMEOUT_MS,
  CONNECT_TIMEOUT_MS_DEFAULT,
  connectZooKeeper,
  DATA_BYTES_MAX,
  OPERATION_TIMEOUT_MS_DEFAULT,
  RECONNECT_DELAY_MS_DEFAULT,
  SESSION_RETRY_DELAY_MS_MAX,
  SESSION_TIMEOUT_MS_DEFAULT,
  ZooKeeperClient,
  ZooKeeperError,
} from "./client.ts";
export type {
  ConnectionEvent,
  ConnectZooKeeperOptions,
  CreateMode,
  CreateResult,
  DeleteResult,
  NodeData,
  NodeStat,
  SetDataResult,
  ZnodeData,
  ZooKeeperErrorCode,
  ZooKeeperLogger,
} from "./client.ts";
export { claimEphemeral, keepEphemeral } from "./presence.ts";
export { ZnodeDirectory, type ZnodeDirectoryOptions } from "./directory.ts";
export {
  type ConfiguredConnectOptions,
  configuredZooKeeperOptions,
  connectConfiguredZooKeeper,
  connectConfiguredZooKeeperRetrying,
  connectStringOf,
  readDigestFile,
  type RetryingConnectOptions,
  type RetryingConnectResult,
  type ServiceLog,
  type ZooKeeperSection,
} from "./service_connect.ts";
