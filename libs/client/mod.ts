/**
 * Reaching TinyKV's kvnodes from gateways and clients: the batched data stream to one kvnode
 * ({@linkcode KvNodeStream}), the cluster as published in ZooKeeper ({@linkcode ClusterView}), the
 * routing core with leader cache and retries ({@linkcode KvRouter}, the product's one
 * leader-following retry loop) and exactly-once sessions ({@linkcode ClientSession}). Applications
 * use {@linkcode TinyKvClient}, the client of the public `tinykv.v1.KV` API served by gateways.
 * In-memory fakes of kvnodes and gateways for tests are in `@tinykv/client/testing`.
 *
 * ```ts ignore
 * import { KvNodeStream } from "@tinykv/client";
 *
 * const stream = new KvNodeStream("127.0.0.1:7901", { maxMessageBytes: 8 << 20 });
 * const key = new TextEncoder().encode("greeting");
 * const outcome = await stream.send({ shardId: 1, confEpoch: 0, timeoutMs: 1000, get: { key, serializable: false } });
 * if (outcome.kind === "answered") console.log(outcome.item.get?.found);
 * stream.close();
 * ```
 *
 * @module
 */
export {
  BATCH_ITEMS_MAX_DEFAULT,
  type BatchCall,
  type BatchCallEvents,
  type BatchChannel,
  grpcBatchChannel,
  KvNodeStream,
  type KvNodeStreamOptions,
  STREAM_REQUESTS_MAX_DEFAULT,
  type StreamOutcome,
} from "./kvnode_stream.ts";
export {
  type ClusterView,
  StaticClusterView,
  type ViewLog,
  ZooKeeperClusterView,
} from "./cluster_view.ts";
export {
  KvRouter,
  type KvRouterOptions,
  type RouteOp,
  type RouteResult,
  type RouteShard,
  type RouteTarget,
} from "./router.ts";
export { ClientSession, SESSION_OUTSTANDING_MAX_DEFAULT } from "./session.ts";
export {
  decodeGatewayInfo,
  decodeNodeAddress,
  encodeGatewayInfo,
  type GatewayInfo,
  gatewayPath,
  GATEWAYS_PATH,
  NODES_PATH,
} from "./registrations.ts";
export {
  type Bytes,
  bytes,
  type CallOptions,
  type CasAction,
  type CasCondition,
  type CasResult,
  CLIENT_DEADLINE_MS_DEFAULT,
  type GatewayConnection,
  type GetResult,
  grpcGatewayConnection,
  type KeyValue,
  type KvMethod,
  SCAN_PAGE_SIZE_DEFAULT,
  type ScanAllOptions,
  type ScanOptions,
  type ScanPage,
  type ScanRange,
  text,
  TinyKvClient,
  type TinyKvClientOptions,
  TinyKvError,
  type TinyKvErrorCode,
  type WatchOptions,
  type WatchUpdate,
} from "./tinykv_client.ts";
