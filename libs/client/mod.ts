/**
 * Reaching TinyKV's kvnodes from gateways and clients: the batched data stream to one kvnode.
 * (Shard-map routing, leader caches and retries come with the placement and gateway issues.)
 *
 * ```ts ignore
 * import { KvNodeStream } from "@tinykv/client";
 *
 * const stream = new KvNodeStream("127.0.0.1:7901", { maxMessageBytes: 8 << 20 });
 * const key = new TextEncoder().encode("greeting");
 * const answer = await stream.request({ shardId: 1, confEpoch: 0, timeoutMs: 1000, get: { key, serializable: false } });
 * console.log(answer.get?.found);
 * stream.close();
 * ```
 *
 * @module
 */
export {
  BATCH_ITEMS_MAX_DEFAULT,
  KvNodeStream,
  type KvNodeStreamOptions,
  STREAM_REQUESTS_MAX_DEFAULT,
} from "./kvnode_stream.ts";
