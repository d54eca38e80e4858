/**
 * The gateway: TinyKV's stateless client-facing service. It serves `tinykv.v1.KV` and routes each
 * request to its shard's leader (see `main.ts` for the process, `kv_service.ts` for the API).
 *
 * ```ts ignore
 * import { kvService } from "@tinykv/gateway";
 * ```
 *
 * @module
 */
export { GatewaySession, kvHandlers, kvService, type KvServiceOptions } from "./kv_service.ts";
