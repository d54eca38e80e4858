/**
 * The kvnode process: wires the config, the LMDB store, the driver loop, the Raft transport, the
 * gRPC services (data path, node admin, Raft transport) and the ZooKeeper registration together.
 *
 * Run: `deno run <permissions> services/kvnode/main.ts [--config FILE] [--section.key=value …]`.
 * The data dir is `<storage.data_dir>/kvnode-<kvnode.port>`.
 *
 * @module
 */
import type { Config } from "@tinykv/config";
import { runService, waitForShutdown } from "@tinykv/lifecycle";
import type { Logger } from "@tinykv/log";
import {
  KVNODE_METRICS_PORT_OFFSET,
  metricsPort,
  newRegistry,
  startMetrics,
} from "@tinykv/metrics";
import { type Policy, prepareServiceSecurity, servicePolicy, startGrpcServer } from "@tinykv/rpc";
import { isNodeId } from "@tinykv/shard";
import { systemClock, Timer } from "@tinykv/timer";
import { connectConfiguredZooKeeper, readDigestFile } from "@tinykv/zk";
import { nodeAdminService } from "./admin_service.ts";
import { kvNodeService } from "./data_service.ts";
import { Driver } from "./driver.ts";
import { KvApplication } from "./kv_app.ts";
import { WatchHub } from "./watch_hub.ts";
import { nodeIdOf } from "./identity.ts";
import { kvnodeMetrics, watchMetrics } from "./metrics.ts";
import { joinCluster, Registration } from "./registration.ts";
import { NodeStore } from "./node_store.ts";
import { GrpcRaftTransport, raftTransportService } from "./transport.ts";

/** Items one data stream may have in flight. */
const STREAM_ITEMS_MAX = 16_384;
/** How long admin calls may wait for a change to apply. */
const CHANGE_TIMEOUT_MS_MAX = 60_000;

async function main(args: string[]): Promise<number> {
  return await runService(args, {
    service: "kvnode",
    logName: (config) => `kvnode-${config.kvnode.port}`,
    run: (config, log) =>
      run(config, `${config.storage.data_dir}/kvnode-${config.kvnode.port}`, log),
  });
}

/**
 * Who may call a kvnode: the gateways its data stream; placement its admin service, of which an
 * operator may read the status (changes go through placement, which checks them); other kvnodes
 * its Raft transport (each only as itself: transport_service.ts and the driver).
 */
const KVNODE_POLICY: Policy = servicePolicy([
  ["/tinykv.v1.KvNode/", ["gateway"]],
  ["/tinykv.v1.NodeAdmin/Status", ["placement", "admin"]],
  ["/tinykv.v1.NodeAdmin/ExportShard", ["admin"]],
  ["/tinykv.v1.NodeAdmin/", ["placement"]],
  ["/tinykv.v1.RaftTransport/", ["kvnode"]],
]);

async function run(config: Config, dataDir: string, log: Logger): Promise<number> {
  const address = `${config.kvnode.host}:${config.kvnode.port}`;
  // A ZooKeeper credential that cannot be read stops the service now, not at its first use.
  const prepared = await prepareServiceSecurity(config.security, {
    cluster: config.zookeeper.cluster,
    role: "kvnode",
    host: config.kvnode.host,
    check: () => {
      if (config.zookeeper.digest_file !== "") readDigestFile(config.zookeeper.digest_file);
    },
  });
  if (prepared.kind === "refused") {
    console.error(`kvnode: ${prepared.message}`);
    return 2;
  }
  const { security } = prepared;
  const store = NodeStore.open({ dir: dataDir, mapBytes: config.storage.map_bytes });
  if (security.identity !== undefined && !isNodeId(security.identity.sub)) {
    console.error(
      `kvnode: The token names "${security.identity.sub}", which cannot be a node id ` +
        "(1 to 64 characters of A-Z a-z 0-9 _ . : -)",
    );
    return 2;
  }
  // With credentials, the node is who its token says: a new data dir takes that id.
  const nodeId = await nodeIdOf(store, security.identity?.sub);
  if (security.identity !== undefined && security.identity.sub !== nodeId) {
    console.error(
      `kvnode: The data dir "${dataDir}" belongs to node "${nodeId}", but the token names ` +
        `"${security.identity.sub}" ([security] token_file)`,
    );
    await store.close();
    return 2;
  }
  const connect = (connectTimeoutMs?: number) =>
    connectConfiguredZooKeeper(config.zookeeper, { log, connectTimeoutMs });
  const joined = await joinCluster(store, { dataDir, connect, log });
  if (joined.kind === "mismatch") {
    console.error(`kvnode: ${joined.message}`);
    await store.close();
    return 2;
  }
  const { clusterId } = joined;
  const nodeLog = log.child({ node: nodeId });
  const transport = new GrpcRaftTransport({
    nodeId,
    address,
    clusterId,
    maxMessageBytes: config.rpc_server.max_message_bytes,
    security: security.client,
    log: nodeLog,
    onSnapshotStatus: (shardId, to, ok) => driver.reportSnapshot(shardId, to, ok),
  });
  const registry = newRegistry();
  const metrics = kvnodeMetrics(registry);
  const watches = new WatchHub({ bytesMax: config.kvnode.watch_window_bytes });
  const driver = new Driver({
    store,
    nodeId,
    observer: metrics.observer,
    tuning: {
      electionTicks: config.raft.election_ticks,
      heartbeatTicks: config.raft.heartbeat_ticks,
      quiesceTicks: config.raft.quiesce_ticks,
      preVote: config.raft.pre_vote,
      checkQuorum: config.raft.check_quorum,
      readMode: config.raft.read_mode === "lease" ? "leaseBased" : "safe",
      inflightMessagesMax: config.raft.inflight_messages_max,
      messageBytesMax: config.raft.message_bytes_max,
      uncommittedBytesMax: config.raft.uncommitted_bytes_max,
      snapshotEntries: config.raft.snapshot_entries,
      snapshotLogBytes: config.raft.snapshot_log_bytes,
    },
    outbound: transport,
    clock: { now: () => Date.now() },
    tickClock: { periodMs: config.raft.tick_ms, now: () => performance.now() },
    log: nodeLog,
    seed: crypto.getRandomValues(new Uint32Array(1))[0],
    app: new KvApplication({
      valueBytesMax: config.storage.value_bytes_max,
      sessionTtlMs: config.kvnode.session_ttl_ms,
      watches,
    }),
  });
  const loadedReplicas = driver.load();
  if (loadedReplicas.kind === "dataLoss") {
    console.error(`kvnode: Cannot start: ${loadedReplicas.message}`);
    nodeLog.error("Refusing to start: corrupt data", { detail: loadedReplicas.message });
    await joined.zk?.close();
    await store.close();
    return 3;
  }
  const identity = { nodeId, clusterId: clusterId, address, startedAtMs: Date.now() };
  const clock = { now: () => Date.now() };
  const server = await startGrpcServer({
    host: config.kvnode.host,
    port: config.kvnode.port,
    maxMessageBytes: config.rpc_server.max_message_bytes,
    services: [
      kvNodeService({
        driver,
        clock,
        requestTimeoutMsDefault: config.gateway.request_timeout_ms,
        requestTimeoutMsMax: config.gateway.request_timeout_max_ms,
        valueBytesMax: config.storage.value_bytes_max,
        streamItemsMax: STREAM_ITEMS_MAX,
        responseBytesMax: Math.floor(config.rpc_server.max_message_bytes / 2),
        watches,
        log: nodeLog,
      }),
      nodeAdminService({
        driver,
        identity,
        changeTimeoutMsMax: CHANGE_TIMEOUT_MS_MAX,
        diskBytes: () => store.usedBytes(),
        messageBytesMax: config.rpc_server.max_message_bytes,
      }),
      raftTransportService({
        clusterId,
        maxSnapshotBytes: config.storage.snapshot_bytes_max,
        onEnvelopes: (envelopes, fromNode) => driver.receive(envelopes, fromNode),
        stageSnapshot: (envelope) => driver.stageSnapshot(envelope),
        log: nodeLog,
      }),
    ],
    onUnexpectedError: (error, method) => nodeLog.error("Handler failed", { method, error }),
    tls: security.serverTls,
    auth: security.auth(KVNODE_POLICY),
  });
  driver.start();
  metrics.attach(driver, () => transport.stats());
  watchMetrics(registry, watches);
  const metricsAbort = new AbortController();
  const metricsServer = await startMetrics(registry, {
    host: config.kvnode.host,
    port: metricsPort(config.kvnode.http_port, config.kvnode.port, KVNODE_METRICS_PORT_OFFSET),
    signal: metricsAbort.signal,
    log: nodeLog,
    tls: security.serverTls,
  });
  const ticker = new Timer({
    clock: systemClock,
    mode: { kind: "fixed", periodMs: config.raft.tick_ms },
    onFire: () => driver.tick(),
  });
  ticker.start();
  const registration = new Registration(store, joined.zk, {
    dataDir,
    nodeId,
    info: { address, startedAtMs: identity.startedAtMs },
    connect,
    log: nodeLog,
  });
  const registered = registration.start();
  if (!joined.known) await registered;
  const metricsAt = metricsServer === undefined ? "" : `metrics :${metricsServer.addr.port}, `;
  nodeLog.info("kvnode serving", {
    address,
    replicas: loadedReplicas.replicas,
    dataDir,
    metricsPort: metricsServer?.addr.port,
  });
  console.log(
    `kvnode ${nodeId} serving on ${address} (cluster ${clusterId}, ` +
      `${loadedReplicas.replicas} replicas, data in ${dataDir}, ${metricsAt}pid ${Deno.pid})`,
  );

  // A failed driver loop (a storage error, a broken invariant) stops the node: its memory may be
  // ahead of its disk, and serving on could diverge it from the other replicas.
  const failed = driver.failed.then((error) =>
    `Stopping: the driver loop failed, the node cannot serve on safely: ${error.message}`
  );
  const reason = await Promise.race([waitForShutdown(), registration.foreign, failed]);
  nodeLog.info("kvnode stopping", { reason });
  const clean = reason === "SIGINT" || reason === "SIGTERM" || reason === "parent exited";
  if (!clean) console.error(`kvnode: ${reason}`);
  registration.stop();
  ticker.stop();
  metricsAbort.abort();
  await metricsServer?.finished;
  await server.shutdown(2000);
  await driver.stop();
  await transport.close();
  await registration.close();
  await store.close();
  console.log(`kvnode ${nodeId} stopped`);
  return clean ? 0 : 2;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
