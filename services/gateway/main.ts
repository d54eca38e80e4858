/**
 * The gateway process: serves the client API `tinykv.v1.KV` on `rpc_server.host:port`, routing
 * every request to its shard's leader from the shard map published in ZooKeeper. Stateless: any
 * number can run side by side. It keeps routing with the last map it has while ZooKeeper is down,
 * and on SIGINT/SIGTERM it stops accepting calls, finishes those in flight, then exits. A broken
 * invariant (a failed assertion in a handler) stops it with exit code 2.
 *
 * Run: `deno run --allow-read --allow-write --allow-net --allow-env --allow-sys
 * services/gateway/main.ts [--config FILE] [--section.key=value …]`.
 *
 * @module
 */
import {
  decodeGatewayInfo,
  encodeGatewayInfo,
  type GatewayInfo,
  gatewayPath,
  GATEWAYS_PATH,
  KvRouter,
  ZooKeeperClusterView,
} from "@tinykv/client";
import type { Config } from "@tinykv/config";
import { runService, waitForShutdown } from "@tinykv/lifecycle";
import type { Logger } from "@tinykv/log";
import {
  GATEWAY_METRICS_PORT_OFFSET,
  metricsPort,
  newRegistry,
  startMetrics,
} from "@tinykv/metrics";
import { type Policy, prepareServiceSecurity, servicePolicy, startGrpcServer } from "@tinykv/rpc";
import {
  connectConfiguredZooKeeperRetrying,
  keepEphemeral,
  readDigestFile,
  ZnodeDirectory,
  type ZooKeeperClient,
} from "@tinykv/zk";
import { isBrokenInvariant } from "./_assert.ts";
import { etcdServices } from "./etcd_service.ts";
import { GatewaySession, kvBinding, kvHandlers } from "./kv_service.ts";
import { GatewayWatches, grpcShardStreams } from "./watch.ts";
import { gatewayMetrics } from "./metrics.ts";

/** How long a stopping gateway waits for calls in flight. */
const DRAIN_MS_MAX = 10_000;
/** How long to wait between attempts to reach ZooKeeper. */
const ZOOKEEPER_RETRY_MS = 2000;
/** Hosts that mean "every address": a gateway listening on one is not listed in ZooKeeper. */
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]", ""]);

async function main(args: string[]): Promise<number> {
  return await runService(args, {
    service: "gateway",
    logName: (config) => `gateway-${config.rpc_server.port}`,
    run,
  });
}

/** Who may call a gateway: applications and operators. */
const GATEWAY_POLICY: Policy = servicePolicy([
  ["/tinykv.v1.KV/", ["client", "admin"]],
  // The etcd services the gateway serves, each named (a service added later needs its own row).
  ["/etcdserverpb.KV/", ["client", "admin"]],
  ["/etcdserverpb.Watch/", ["client", "admin"]],
  ["/etcdserverpb.Maintenance/", ["client", "admin"]],
  ["/etcdserverpb.Cluster/", ["client", "admin"]],
  ["/etcdserverpb.Lease/", ["client", "admin"]],
  ["/etcdserverpb.Auth/", ["client", "admin"]],
]);

async function run(config: Config, log: Logger): Promise<number> {
  const address = `${config.rpc_server.host}:${config.rpc_server.port}`;
  // A ZooKeeper credential that cannot be read stops the service now, not at its first use.
  const prepared = await prepareServiceSecurity(config.security, {
    cluster: config.zookeeper.cluster,
    role: "gateway",
    host: config.rpc_server.host,
    check: () => {
      if (config.zookeeper.digest_file !== "") readDigestFile(config.zookeeper.digest_file);
    },
  });
  if (prepared.kind === "refused") {
    console.error(`gateway: ${prepared.message}`);
    return 2;
  }
  const { security } = prepared;
  const startedAtMs = Date.now();
  let stopping = false;
  let zk: ZooKeeperClient | undefined;
  let unregister = () => {};
  const metricsReady = Promise.withResolvers<string | undefined>();
  let view: ZooKeeperClusterView | undefined;
  // The gateways, listed as etcd members by Cluster.MemberList.
  let gateways: ZnodeDirectory<GatewayInfo> | undefined;
  const viewReady = Promise.withResolvers<ZooKeeperClusterView>();
  // ZooKeeper may be down when the gateway starts: keep trying in the background.
  const connecting = (async () => {
    const connected = await connectConfiguredZooKeeperRetrying(config.zookeeper, {
      log,
      retryDelayMs: ZOOKEEPER_RETRY_MS,
      stopped: () => stopping,
    });
    if (connected.kind === "stopped") return;
    zk = connected.client;
    view = new ZooKeeperClusterView(zk, { log });
    viewReady.resolve(view);
    gateways = new ZnodeDirectory(zk, {
      path: GATEWAYS_PATH,
      decode: decodeGatewayInfo,
      warn: (message, fields) => log.warn(message, fields),
    });
    gateways.start();
    // Listed for placement's dashboard, which reads every gateway's metrics; an address of every
    // interface names no one place to reach (and would be the same on every host).
    const metricsAddress = (await metricsReady.promise) ?? "";
    if (stopping) return;
    if (WILDCARD_HOSTS.has(config.rpc_server.host)) {
      log.warn("Not listed for placement's dashboard: rpc_server.host listens on every address", {
        host: config.rpc_server.host,
      });
      return;
    }
    unregister = keepEphemeral(
      zk,
      gatewayPath(address),
      encodeGatewayInfo({ address, metricsAddress, startedAtMs }),
      { retryMs: ZOOKEEPER_RETRY_MS, warn: (message, fields) => log.warn(message, fields) },
    );
  })();
  const router = new KvRouter({
    view: {
      shardMap: () => view?.shardMap(),
      nodeAddress: (nodeId) => view?.nodeAddress(nodeId),
      changed: (timeoutMs) =>
        view?.changed(timeoutMs) ??
          Promise.race([
            viewReady.promise.then(() => {}),
            new Promise<void>((resolve) => setTimeout(resolve, timeoutMs)),
          ]),
      close: () => view?.close(),
    },
    maxMessageBytes: config.rpc_server.max_message_bytes,
    batchItemsMax: config.gateway.batch_requests_max,
    security: security.client,
  });
  const inFlight = { count: 0 };
  // A broken invariant in a handler stops the process (see _assert.ts).
  const broken = Promise.withResolvers<Error>();
  const registry = newRegistry();
  const shardStreams = grpcShardStreams({
    maxMessageBytes: config.rpc_server.max_message_bytes,
    security: security.client,
  });
  const watches = new GatewayWatches({ router, open: shardStreams.open, log });
  const metrics = gatewayMetrics(registry, { router, inFlight, watches });
  const metricsAbort = new AbortController();
  const metricsServer = await startMetrics(registry, {
    host: config.rpc_server.host,
    port: metricsPort(
      config.gateway.http_port,
      config.rpc_server.port,
      GATEWAY_METRICS_PORT_OFFSET,
    ),
    signal: metricsAbort.signal,
    log,
    tls: security.serverTls,
  });
  const kv = kvHandlers({
    router,
    watches,
    session: new GatewaySession(),
    requestTimeoutMs: config.gateway.request_timeout_ms,
    requestTimeoutMsMax: config.gateway.request_timeout_max_ms,
    valueBytesMax: config.storage.value_bytes_max,
    inFlight,
    observe: metrics.observe,
    log,
  });
  const server = await startGrpcServer({
    host: config.rpc_server.host,
    port: config.rpc_server.port,
    maxMessageBytes: config.rpc_server.max_message_bytes,
    // Clients' calls are unary but for watches: answers leave with their trailers (coalesce.ts).
    answersWhole: true,
    services: [
      kvBinding(kv),
      ...etcdServices({
        kv,
        address,
        members: () => gateways?.entries().map((entry) => entry.value) ?? [],
        clusterId: () => view?.shardMap()?.clusterId,
        shardOf: (key) => router.shardOf(key)?.id,
        maxMessageBytes: config.rpc_server.max_message_bytes,
        valueBytesMax: config.storage.value_bytes_max,
        tls: security.serverTls !== undefined,
        tokensRequired: security.auth(GATEWAY_POLICY) !== undefined,
        watches,
      }),
    ],
    onUnexpectedError: (error, method) => {
      log.error("Handler failed", { method, error });
      if (isBrokenInvariant(error)) broken.resolve(error);
    },
    tls: security.serverTls,
    auth: security.auth(GATEWAY_POLICY),
  });
  metricsReady.resolve(
    metricsServer === undefined
      ? undefined
      : `${config.rpc_server.host}:${metricsServer.addr.port}`,
  );
  const metricsAt = metricsServer === undefined ? "" : `metrics :${metricsServer.addr.port}, `;
  log.info("gateway serving", { address, metricsPort: metricsServer?.addr.port });
  console.log(`gateway serving on ${address} (${metricsAt}pid ${Deno.pid})`);

  const failed = broken.promise.then((error) =>
    `Stopping: a broken invariant, the gateway cannot go on safely: ${error.message}`
  );
  const reason = await Promise.race([waitForShutdown(), failed]);
  log.info("gateway stopping", { reason, inFlight: inFlight.count });
  const clean = reason === "SIGINT" || reason === "SIGTERM" || reason === "parent exited";
  if (!clean) console.error(`gateway: ${reason}`);
  stopping = true;
  unregister();
  metricsReady.resolve(undefined);
  // Watches never finish by themselves: end them now (clients resume on another gateway).
  watches.close();
  // Stop accepting new calls, let those in flight finish (bounded), then close everything.
  const drained = server.shutdown(DRAIN_MS_MAX);
  await drained;
  metricsAbort.abort();
  await metricsServer?.finished;
  router.close();
  shardStreams.close();
  gateways?.close();
  view?.close();
  await connecting;
  await zk?.close();
  console.log("gateway stopped");
  return clean ? 0 : 2;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
