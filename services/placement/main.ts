/**
 * The placement process: wires the config, the logger, ZooKeeper, the leader election, the leader
 * loop (while this instance leads), the `Placement` admin gRPC service, the HTTP endpoint (status,
 * metrics and the live dashboard), and shuts them down cleanly on SIGINT/SIGTERM. A broken invariant (a failed assertion in the
 * leader loop, a leadership change or an admin handler) stops it with exit code 2.
 *
 * Run: `deno run <permissions> services/placement/main.ts [--config FILE] [--section.key=value …]`.
 *
 * @module
 */
import type { Config } from "@tinykv/config";
import { runService, waitForShutdown } from "@tinykv/lifecycle";
import type { Logger } from "@tinykv/log";
import { newRegistry } from "@tinykv/metrics";
import { type Policy, prepareServiceSecurity, servicePolicy, startGrpcServer } from "@tinykv/rpc";
import { connectConfiguredZooKeeper, readDigestFile } from "@tinykv/zk";
import { PLANNER_LIMITS_DEFAULT } from "@tinykv/shard";
import { isBrokenInvariant } from "./_assert.ts";
import {
  clusterStateOf,
  type PlacementControl,
  placementHandlers,
  placementService,
} from "./admin_service.ts";
import { DashboardCollector, DECISIONS_SHOWN } from "./dashboard/collector.ts";
import { loadAssets } from "./dashboard/http.ts";
import { DecisionLog } from "./decisions.ts";
import { type ElectionState, LeaderElection } from "./election.ts";
import { serveHttp } from "./http_status.ts";
import { MOVES_MAX, PlacementLeader } from "./leader.ts";
import { placementGauges, PlacementMetrics } from "./metrics.ts";
import { ADMIN_MESSAGE_BYTES_MAX, NodeAdminPool } from "./node_admin.ts";
import { gatewayDirectory } from "./registry.ts";

/** How many seconds of snapshot streaming the planner may queue. */
const SNAPSHOT_QUEUE_SECONDS = 60;
/** How long the dashboard waits for a kvnode's status or a gateway's metrics. */
const DASHBOARD_PULL_MS = 900;
/** The most of a gateway's `/metrics` the dashboard reads (a gateway's is about 20 KB). */
const SCRAPE_BYTES_MAX = 1 << 20;

async function main(args: string[]): Promise<number> {
  return await runService(args, {
    service: "placement",
    logName: (config) => `placement-${config.placement.admin_port}`,
    run,
  });
}

/** Who may call placement's admin API: operators. */
const PLACEMENT_POLICY: Policy = servicePolicy([["/tinykv.v1.Placement/", ["admin"]]]);

async function run(config: Config, log: Logger): Promise<number> {
  const p = config.placement;
  const adminAddress = `${p.host}:${p.admin_port}`;
  // A ZooKeeper credential that cannot be read stops the service now, not at its first use.
  const prepared = await prepareServiceSecurity(config.security, {
    cluster: config.zookeeper.cluster,
    role: "placement",
    host: p.host,
    check: () => {
      if (config.zookeeper.digest_file !== "") readDigestFile(config.zookeeper.digest_file);
    },
  });
  if (prepared.kind === "refused") {
    console.error(`placement: ${prepared.message}`);
    return 2;
  }
  const { security } = prepared;
  const zk = await connectConfiguredZooKeeper(config.zookeeper, { log });
  const registry = newRegistry();
  const metrics = new PlacementMetrics(registry);
  placementGauges(registry, {
    snapshot: () => leader?.snapshot,
    replicaCount: config.sharding.replica_count,
  });
  const decisions = new DecisionLog(zk);
  let leader: PlacementLeader | undefined;
  const admin = new NodeAdminPool(() => leader?.clusterId ?? "", security.client);
  // A broken invariant, wherever it shows, stops the process: this instance can no longer lead
  // correctly, and another one takes over once its election znode is gone.
  const broken = Promise.withResolvers<Error>();
  const settings = {
    numShards: config.sharding.num_shards,
    replicaCount: config.sharding.replica_count,
    statusIntervalMs: p.status_interval_ms,
    snapshotBytesPerSecond: p.snapshot_bytes_per_second,
    limits: {
      ...PLANNER_LIMITS_DEFAULT,
      movesPerNodeMax: p.moves_per_node_max,
      movesMax: MOVES_MAX,
      snapshotBytesInFlightMax: p.snapshot_bytes_per_second * SNAPSHOT_QUEUE_SECONDS,
      shardCooldownMs: p.shard_cooldown_ms,
      deadNodeGraceMs: p.down_after_ms,
    },
  };
  // Leadership changes run one at a time, in order.
  let transitions = Promise.resolve();
  const onChange = (state: ElectionState) => {
    transitions = transitions.then(async () => {
      if (state.kind === "leader" && leader === undefined) {
        const next = new PlacementLeader(zk, { settings, log, decisions, admin, metrics });
        await next.start();
        leader = next;
        next.failed.then(broken.resolve);
        log.info("Became the placement leader", { address: adminAddress });
        console.log(`placement ${adminAddress} is the leader`);
      } else if (state.kind !== "leader" && leader !== undefined) {
        const previous = leader;
        leader = undefined;
        await previous.stop();
        log.info("No longer the placement leader", { state: state.kind });
        console.log(`placement ${adminAddress} is no longer the leader`);
      }
    }).catch((error) => {
      log.error("Leadership change failed", { error });
      if (isBrokenInvariant(error)) broken.resolve(error);
    });
  };
  const election = new LeaderElection(zk, {
    address: adminAddress,
    onChange,
    warn: (message, fields) => log.warn(message, fields),
    sessionTimeoutMs: config.zookeeper.session_timeout_ms,
  });
  const control: PlacementControl = {
    leader: () => leader,
    leaderAddress: () => election.leaderAddress(),
    decisions,
  };
  const server = await startGrpcServer({
    host: p.host,
    port: p.admin_port,
    maxMessageBytes: ADMIN_MESSAGE_BYTES_MAX,
    services: [placementService(control)],
    tls: security.serverTls,
    auth: security.auth(PLACEMENT_POLICY),
    onUnexpectedError: (error, method) => {
      log.error("Handler failed", { method, error });
      if (isBrokenInvariant(error)) broken.resolve(error);
    },
  });
  const warn = (message: string, fields?: Record<string, unknown>) => log.warn(message, fields);
  // Gateways serve their metrics over HTTPS when the cluster has TLS: trust its CA for them.
  const scrapeClient = security.client.tls === undefined
    ? undefined
    : Deno.createHttpClient({ caCerts: [security.client.tls.ca] });
  const gateways = gatewayDirectory(zk, warn);
  gateways.start();
  const collector = new DashboardCollector({
    snapshot: () => leader?.snapshot,
    leaderAddress: () => election.leaderAddress(),
    decisions: () => decisions.recent(DECISIONS_SHOWN),
    gateways: () => gateways.entries().map((entry) => entry.value),
    nodeStatus: async (address) => {
      const answer = await admin.status(address, DASHBOARD_PULL_MS);
      return answer.kind === "ok" ? answer.response : undefined;
    },
    scrape: (address) => scrapeMetrics(address, scrapeClient),
    now: () => Date.now(),
    warn,
  });
  const dashboard = {
    assets: await loadAssets(warn),
    collector,
    handlers: placementHandlers(control),
    listen: { host: p.host, port: p.http_port },
    // With credentials on, changes go through the admin API with an admin's token: the page's
    // buttons carry none.
    actionsRefused: security.auth(PLACEMENT_POLICY) === undefined
      ? undefined
      : "Credentials are on: act with the tinykv CLI and an admin token (--token-file)",
    onUnexpectedError: (error: unknown, method: string) => {
      log.error("Handler failed", { method, error });
      if (isBrokenInvariant(error)) broken.resolve(error);
    },
  };
  const httpAbort = new AbortController();
  const http = serveHttp({
    state: async () => {
      const current = leader;
      if (current !== undefined) {
        return clusterStateOf(current.snapshot, { address: adminAddress, isLeader: true });
      }
      const address = await election.leaderAddress().catch(() => undefined);
      return clusterStateOf(undefined, { address: address ?? "", isLeader: false });
    },
    registry,
    dashboard,
  }, { host: p.host, port: p.http_port, signal: httpAbort.signal, tls: security.serverTls });
  await election.start();
  collector.start();
  log.info("placement serving", { adminAddress, httpPort: p.http_port });
  console.log(
    `placement serving on ${adminAddress} (http ${p.host}:${p.http_port}, pid ${Deno.pid})`,
  );

  const failed = broken.promise.then((error) =>
    `Stopping: a broken invariant, placement cannot go on safely: ${error.message}`
  );
  const reason = await Promise.race([waitForShutdown(), failed]);
  log.info("placement stopping", { reason });
  const clean = reason === "SIGINT" || reason === "SIGTERM" || reason === "parent exited";
  if (!clean) console.error(`placement: ${reason}`);
  await election.stop();
  await transitions;
  await leader?.stop();
  await server.shutdown(2000);
  await collector.stop();
  gateways.close();
  scrapeClient?.close();
  httpAbort.abort();
  await http.finished;
  admin.close();
  await zk.close();
  console.log(`placement ${adminAddress} stopped`);
  return clean ? 0 : 2;
}

/**
 * The text of `http://<address>/metrics` (`https` with `tls`, a client trusting the cluster's
 * CA), or undefined when it fails, is slow or too large.
 */
async function scrapeMetrics(
  address: string,
  tls: Deno.HttpClient | undefined,
): Promise<string | undefined> {
  try {
    const response = await fetch(`${tls === undefined ? "http" : "https"}://${address}/metrics`, {
      signal: AbortSignal.timeout(DASHBOARD_PULL_MS),
      ...(tls === undefined ? {} : { client: tls }),
    });
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      return undefined;
    }
    let text = "";
    const decoder = new TextDecoder();
    let bytes = 0;
    for await (const chunk of response.body) {
      bytes += chunk.length;
      if (bytes > SCRAPE_BYTES_MAX) return undefined; // Leaving the loop cancels the body.
      text += decoder.decode(chunk, { stream: true });
    }
    return text + decoder.decode();
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
