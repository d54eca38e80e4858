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
import { startGrpcServer } from "@tinykv/rpc";
import { systemClock, Timer } from "@tinykv/timer";
import { connectConfiguredZooKeeper, type ZooKeeperClient } from "@tinykv/zk";
import { nodeAdminService } from "./admin_service.ts";
import { kvNodeService } from "./data_service.ts";
import { Driver } from "./driver.ts";
import { KvApplication } from "./kv_app.ts";
import { nodeIdOf, resolveClusterId, storedClusterId } from "./identity.ts";
import { NodeStore } from "./node_store.ts";
import { GrpcRaftTransport, raftTransportService } from "./transport.ts";

/** Items one data stream may have in flight. */
const STREAM_ITEMS_MAX = 16_384;
/** How long admin calls may wait for a change to apply. */
const CHANGE_TIMEOUT_MS_MAX = 60_000;

/** How long to wait between attempts to reach ZooKeeper. */
const ZOOKEEPER_RETRY_MS = 2000;
/** How long a node that knows its cluster waits for ZooKeeper before serving without it. */
const ZOOKEEPER_FIRST_CONNECT_MS = 2000;

async function main(args: string[]): Promise<number> {
  return await runService(args, {
    service: "kvnode",
    logName: (config) => `kvnode-${config.kvnode.port}`,
    run: (config, log) =>
      run(config, `${config.storage.data_dir}/kvnode-${config.kvnode.port}`, log),
  });
}

async function run(config: Config, dataDir: string, log: Logger): Promise<number> {
  const address = `${config.kvnode.host}:${config.kvnode.port}`;
  const store = NodeStore.open({ dir: dataDir, mapBytes: config.storage.map_bytes });
  const nodeId = await nodeIdOf(store);
  const connect = (connectTimeoutMs?: number) =>
    connectConfiguredZooKeeper(config.zookeeper, { log, connectTimeoutMs });
  // A node that knows its cluster serves its data without ZooKeeper and registers once it can;
  // a new node must learn its cluster id from ZooKeeper first.
  const known = storedClusterId(store);
  let zk: ZooKeeperClient | undefined;
  let clusterId: string;
  if (known === undefined) {
    zk = await connect();
    const cluster = await resolveClusterId(store, zk, { dataDir });
    if (cluster.kind === "mismatch") {
      console.error(`kvnode: ${cluster.message}`);
      await zk.close();
      await store.close();
      return 2;
    }
    clusterId = cluster.clusterId;
  } else {
    clusterId = known;
    // Check the cluster before serving when ZooKeeper answers quickly; otherwise serve and check
    // once it does (see the registration loop below).
    try {
      const client = await connect(ZOOKEEPER_FIRST_CONNECT_MS);
      const checked = await resolveClusterId(store, client, { dataDir });
      zk = client;
      if (checked.kind === "mismatch") {
        console.error(`kvnode: ${checked.message}`);
        await zk.close();
        await store.close();
        return 2;
      }
    } catch (error) {
      log.warn("ZooKeeper is unreachable: serving without it, registering later", { error });
    }
  }
  const cluster = { clusterId };
  const nodeLog = log.child({ node: nodeId });
  const transport = new GrpcRaftTransport({
    nodeId,
    address,
    clusterId: cluster.clusterId,
    maxMessageBytes: config.rpc_server.max_message_bytes,
    log: nodeLog,
    onSnapshotStatus: (shardId, to, ok) => driver.reportSnapshot(shardId, to, ok),
  });
  const driver = new Driver({
    store,
    nodeId,
    tuning: {
      electionTicks: config.raft.election_ticks,
      heartbeatTicks: config.raft.heartbeat_ticks,
      quiesceTicks: config.raft.quiesce_ticks,
      preVote: config.raft.pre_vote,
      checkQuorum: config.raft.check_quorum,
      inflightMessagesMax: config.raft.inflight_messages_max,
      messageBytesMax: config.raft.message_bytes_max,
      uncommittedBytesMax: config.raft.uncommitted_bytes_max,
      snapshotEntries: config.raft.snapshot_entries,
      snapshotLogBytes: config.raft.snapshot_log_bytes,
    },
    outbound: transport,
    clock: { now: () => Date.now() },
    log: nodeLog,
    seed: crypto.getRandomValues(new Uint32Array(1))[0],
    app: new KvApplication({
      valueBytesMax: config.storage.value_bytes_max,
      sessionTtlMs: config.kvnode.session_ttl_ms,
    }),
  });
  const loadedReplicas = driver.load();
  if (loadedReplicas.kind === "dataLoss") {
    console.error(`kvnode: Cannot start: ${loadedReplicas.message}`);
    nodeLog.error("Refusing to start: corrupt data", { detail: loadedReplicas.message });
    await zk?.close();
    await store.close();
    return 3;
  }
  const identity = { nodeId, clusterId: cluster.clusterId, address, startedAtMs: Date.now() };
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
      }),
      nodeAdminService({ driver, identity, changeTimeoutMsMax: CHANGE_TIMEOUT_MS_MAX }),
      raftTransportService({
        clusterId: cluster.clusterId,
        maxSnapshotBytes: config.storage.map_bytes,
        onEnvelopes: (envelopes, fromNode) => driver.receive(envelopes, fromNode),
        stageSnapshot: (envelope) => driver.stageSnapshot(envelope),
        log: nodeLog,
      }),
    ],
    onUnexpectedError: (error, method) => nodeLog.error("Handler failed", { method, error }),
  });
  driver.start();
  const ticker = new Timer({
    clock: systemClock,
    mode: { kind: "fixed", periodMs: config.raft.tick_ms },
    onFire: () => driver.tick(),
  });
  ticker.start();
  const registration = { address, startedAtMs: identity.startedAtMs };
  let stopping = false;
  const foreign = Promise.withResolvers<string>();
  // Registers until it succeeds (or the node stops). Later, should the client give up restoring
  // the registration after a session expiry (another session's node was in the way), it
  // registers again: a node must never stay unregistered while it runs.
  let registering: Promise<void> = Promise.resolve();
  const registerUntilDone = async () => {
    while (!stopping) {
      try {
        if (zk === undefined) {
          const client = await connect();
          const checked = await resolveClusterId(store, client, { dataDir });
          zk = client;
          if (checked.kind === "mismatch") return foreign.resolve(checked.message);
          followRegistration(client);
        }
        await register(zk, nodeId, registration);
        return;
      } catch (error) {
        nodeLog.warn("Cannot register in ZooKeeper: retrying", { error });
        await new Promise((resolve) => setTimeout(resolve, ZOOKEEPER_RETRY_MS));
      }
    }
  };
  const followRegistration = (client: ZooKeeperClient) =>
    client.onConnectionEvent((event) => {
      if (event.kind !== "ephemeralLost" || event.path !== `/nodes/${nodeId}`) return;
      nodeLog.warn("The ZooKeeper registration was lost after a session expiry: registering");
      registering = registering.then(registerUntilDone);
    });
  if (zk !== undefined) followRegistration(zk);
  const registered = registerUntilDone();
  if (known === undefined) await registered;
  nodeLog.info("kvnode serving", { address, replicas: loadedReplicas.replicas, dataDir });
  console.log(
    `kvnode ${nodeId} serving on ${address} (cluster ${cluster.clusterId}, ` +
      `${loadedReplicas.replicas} replicas, data in ${dataDir}, pid ${Deno.pid})`,
  );

  // A failed driver loop (a storage error, a broken invariant) stops the node: its memory may be
  // ahead of its disk, and serving on could diverge it from the other replicas.
  const failed = driver.failed.then((error) =>
    `Stopping: the driver loop failed, the node cannot serve on safely: ${error.message}`
  );
  const reason = await Promise.race([waitForShutdown(), foreign.promise, failed]);
  nodeLog.info("kvnode stopping", { reason });
  const clean = reason === "SIGINT" || reason === "SIGTERM" || reason === "parent exited";
  if (!clean) console.error(`kvnode: ${reason}`);
  stopping = true;
  ticker.stop();
  await server.shutdown(2000);
  await driver.stop();
  await transport.close();
  await registered;
  await registering;
  await zk?.close();
  await store.close();
  console.log(`kvnode ${nodeId} stopped`);
  return clean ? 0 : 2;
}

/** Registers the node under `nodes/<id>` (ephemeral; re-created after a session expiry). */
async function register(
  zk: ZooKeeperClient,
  nodeId: string,
  info: { address: string; startedAtMs: number },
): Promise<void> {
  await zk.mkdirp("/nodes");
  const path = `/nodes/${nodeId}`;
  const data = new TextEncoder().encode(JSON.stringify(info));
  for (let attempt = 0; attempt < 2; attempt++) {
    const created = await zk.createEphemeral(path, data);
    if (created.kind === "ok") return;
    if (created.kind !== "nodeExists") {
      throw new Error(`Cannot register node "${nodeId}" in ZooKeeper: ${created.kind}`);
    }
    // A previous run of this node (same data dir) left its znode until its session expires.
    await zk.delete(path);
  }
  throw new Error(`Cannot register node "${nodeId}": "${path}" exists and could not be replaced`);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
