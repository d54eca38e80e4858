/**
 * `deno task test:deploy`: the deployment guide (docs/deploy.md), tested on separate hosts. It
 * builds the guide's example cluster (tests/deploy/cluster.ts) — a 3-server ZooKeeper ensemble,
 * kvnodes on three hosts of their own, two placement instances, two gateways behind haproxy, each
 * host a network namespace — and starts every process from the files the guide ships (`deploy/`)
 * and the `ExecStart=` of its systemd unit, secure as the guide sets it up (TLS, tokens, the
 * ZooKeeper credential). Then, under a steady write load through the load balancer:
 *
 * 1. the guide's rolling restart of every kvnode, one at a time, with the operator's tools: the
 *    `tinykv` CLI (`status`, `transfer-leader`) moves the node's leaderships away, the node is
 *    stopped (SIGTERM, as `systemctl stop`), its certificate is renewed (the guide's certificate
 *    rotation), it is started again and `deno task caught-up` waits until it serves and its
 *    replicas caught up;
 * 2. a restart of the ZooKeeper ensemble's leader, after the first kvnode;
 * 3. a restart of one gateway behind the load balancer.
 *
 * Then it checks: every key holds every acknowledged append, once and in order, and no failed one
 * (nothing lost, even writes long overwritten in a put-only load); every shard's replicas hold the same data; each restarted kvnode serves
 * its renewed certificate; the metrics ports answer over HTTPS; and the cluster served throughout (no
 * stretch of more than {@linkcode GAP_MS_MAX} ms without an acknowledged write, at least
 * {@linkcode ACKED_RATIO_MIN} of writes acknowledged). It prints the timings and availability.
 *
 * Bounded ({@linkcode RUN_MS_MAX}); it stops every process it started by PID and removes the
 * namespaces and its temp directory, whatever happens; a failed run keeps the hosts' logs under
 * `data/deploy/<time>`. Needs root (network namespaces), `ip`, `setpriv`, Debian's `zookeeper`
 * and `haproxy` (`deno task setup --deploy` installs them).
 *
 * @module
 */
import { NodeAdminService, type NodeStatusResponse } from "@tinykv/proto/tinykv/v1";
import { type ClientSecurity, createGrpcClient, unaryCaller } from "@tinykv/rpc";
import { run } from "../chaos/net.ts";
import { DeployCluster, HAPROXY_UNIT, type KvNodeHost } from "./cluster.ts";
import { availability, judgeWrites, readAll, WriteLoad } from "./load.ts";

/** The longest the whole run may take before it gives up (and cleans up). */
export const RUN_MS_MAX = 8 * 60_000;
/** The longest stretch without an acknowledged write that still counts as serving. */
export const GAP_MS_MAX = 3000;
/** The least share of writes acknowledged during the restarts. */
export const ACKED_RATIO_MIN = 0.99;
const WORKERS = 4;
const KEYS_PER_WORKER = 50;
const WRITES_PER_SECOND = 20;
const SHARDS = 10;

interface Clock {
  readonly now: () => number;
  readonly log: (line: string) => void;
}

/** Says why this machine cannot run the test, or undefined when it can. */
async function preflight(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "The deploy test needs root (network namespaces)";
  const needs: Array<[string, string[], string]> = [
    ["ip", ["-V"], "ip (iproute2)"],
    ["curl", ["--version"], "curl"],
    ["setpriv", ["--version"], "setpriv (util-linux)"],
    ["java", ["-version"], "java (Debian's zookeeper package brings it)"],
    ["/usr/sbin/haproxy", ["-v"], "haproxy"],
    ["openssl", ["version"], "openssl"],
  ];
  for (const [command, args, what] of needs) {
    try {
      await run(command, args);
    } catch {
      return `The deploy test needs ${what}: run "deno task setup --deploy"`;
    }
  }
  try {
    await Deno.stat(HAPROXY_UNIT);
  } catch {
    return `The deploy test needs Debian's haproxy unit (${HAPROXY_UNIT}): deno task setup --deploy`;
  }
  return undefined;
}

/** `tinykv --json status`, parsed; throws when the CLI fails. */
async function status(cluster: DeployCluster) {
  const result = await cluster.tinykv(["--json", "status"]);
  if (result.code !== 0) {
    throw new Error(`tinykv status exited with ${result.code}: ${result.stdout}${result.stderr}`);
  }
  return JSON.parse(result.stdout) as {
    nodes: Array<{ nodeId: string; address: string; live: boolean; leaders: number }>;
    shards: Array<{ shardId: number; voters: string[]; learners: string[]; leader: string }>;
    tasks: unknown[];
    bootstrapped: boolean;
  };
}

type Status = Awaited<ReturnType<typeof status>>;

/** Polls `tinykv status` until `ready` holds; throws with the last status after `timeoutMs`. */
async function waitStatus(
  cluster: DeployCluster,
  what: string,
  ready: (s: Status) => boolean,
  timeoutMs: number,
): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  let last: Status | string = "no answer";
  while (Date.now() < deadline) {
    try {
      last = await status(cluster);
      if (ready(last)) return last;
    } catch (error) {
      last = String(error);
    }
    await sleep(500);
  }
  throw new Error(`Waited ${timeoutMs} ms for ${what}; last status: ${JSON.stringify(last)}`);
}

/** Every shard has its replicas and a leader, every kvnode is live, no move is in flight. */
function healthy(s: Status, kvnodes: number): boolean {
  return s.bootstrapped && s.tasks.length === 0 && s.shards.length === SHARDS &&
    s.nodes.filter((n) => n.live).length === kvnodes &&
    s.shards.every((sh) => sh.voters.length === 3 && sh.learners.length === 0 && sh.leader !== "");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What one kvnode's restart took. */
interface RestartReport {
  node: string;
  leadersBefore: number;
  transfers: number;
  rounds: number;
  leadersAwayMs: number;
  downMs: number;
  caughtUpMs: number;
  serial: string;
}

/**
 * The guide's "Moving a node's leaders away": `tinykv transfer-leader` for each shard the node
 * leads, to the live voter leading fewest, until `tinykv status` shows it leads none (placement
 * may hand a leadership back meanwhile: then again). Returns the transfers and rounds.
 */
async function moveLeadersAway(cluster: DeployCluster, node: string, clock: Clock) {
  let transfers = 0;
  for (let round = 1; round <= 5; round++) {
    const before = await waitStatus(
      cluster,
      "no move in flight",
      (s) => s.tasks.length === 0,
      60_000,
    );
    const led = before.shards.filter((s) => s.leader === node);
    if (led.length === 0) return { transfers, rounds: round - 1 };
    const leaders = new Map(before.nodes.map((n) => [n.nodeId, n.leaders]));
    const live = new Set(before.nodes.filter((n) => n.live).map((n) => n.nodeId));
    for (const shard of led) {
      const to = shard.voters.filter((v) => v !== node && live.has(v))
        .sort((a, b) => (leaders.get(a) ?? 0) - (leaders.get(b) ?? 0))[0];
      if (to === undefined) throw new Error(`Shard ${shard.shardId} has no other live voter`);
      const result = await cluster.tinykv(["transfer-leader", String(shard.shardId), "--to", to]);
      transfers++;
      leaders.set(to, (leaders.get(to) ?? 0) + 1);
      if (result.code !== 0) {
        clock.log(
          `  transfer-leader ${shard.shardId} --to ${to}: exit ${result.code}: ` +
            `${(result.stderr + result.stdout).trim()}`,
        );
      }
    }
    try {
      await waitStatus(
        cluster,
        `${node} to lead nothing`,
        (s) => s.tasks.length === 0 && s.shards.every((sh) => sh.leader !== node),
        15_000,
      );
      return { transfers, rounds: round };
    } catch (error) {
      clock.log(`  round ${round}: ${node} still leads: ${String(error).slice(0, 300)}`);
    }
  }
  throw new Error(`Cannot move every leadership away from ${node} in 5 rounds`);
}

/** The guide's rolling restart step for one kvnode. */
async function restartKvnode(
  cluster: DeployCluster,
  kv: KvNodeHost,
  clock: Clock,
): Promise<RestartReport> {
  const { now, log } = clock;
  const start = now();
  const leadersBefore = (await status(cluster)).shards.filter((s) => s.leader === kv.nodeId).length;
  const { transfers, rounds } = await moveLeadersAway(cluster, kv.nodeId, clock);
  const leadersAwayMs = now() - start;
  log(
    `${kv.nodeId}: led ${leadersBefore} shards, none after ${transfers} transfers ` +
      `(${(leadersAwayMs / 1000).toFixed(1)} s); stopping it`,
  );
  const stopAt = now();
  const stopped = await cluster.stop(kv.host, "kvnode");
  if (stopped.killed || stopped.status?.code !== 0) {
    throw new Error(`${kv.nodeId} did not stop cleanly on SIGTERM: ${JSON.stringify(stopped)}`);
  }
  const serial = await cluster.renewCertificate(kv.host);
  await cluster.startService(kv.host, "kvnode");
  const downMs = now() - stopAt;
  log(
    `${kv.nodeId}: serves again with a renewed certificate (${serial}) after ` +
      `${(downMs / 1000).toFixed(1)} s down; waiting until it caught up`,
  );
  const caughtStart = now();
  const caught = await cluster.caughtUp(kv.nodeId, 60_000);
  if (caught.code !== 0) {
    throw new Error(
      `caught-up ${kv.nodeId} exited ${caught.code}: ${caught.stdout}${caught.stderr}`,
    );
  }
  const caughtUpMs = now() - caughtStart;
  log(
    `${kv.nodeId}: ${caught.stdout.trim().split("\n").at(-1)} (${
      (caughtUpMs / 1000).toFixed(1)
    } s)`,
  );
  return {
    node: kv.nodeId,
    leadersBefore,
    transfers,
    rounds,
    leadersAwayMs,
    downMs,
    caughtUpMs,
    serial,
  };
}

/** Restarts the ensemble's leader (SIGTERM, start, wait until it serves in the ensemble again). */
async function restartZooKeeperLeader(cluster: DeployCluster, clock: Clock): Promise<string> {
  const zks = cluster.hostsWith("zookeeper");
  const modes = await Promise.all(zks.map((h) => cluster.zooKeeperMode(h)));
  const leader = zks[modes.indexOf("leader")];
  if (leader === undefined) throw new Error(`No ZooKeeper leader: modes ${modes.join(", ")}`);
  const t0 = clock.now();
  const stopped = await cluster.stop(leader, "zookeeper");
  if (stopped.killed) throw new Error(`ZooKeeper on ${leader.guide.name} needed SIGKILL`);
  await cluster.startZooKeeper(leader);
  await waitFor(
    async () => {
      const all = await Promise.all(zks.map((h) => cluster.zooKeeperMode(h)));
      return all.filter((m) => m === "leader").length === 1 &&
        all.filter((m) => m === "follower").length === 2;
    },
    60_000,
    "the ensemble to have one leader and two followers again",
  );
  const after = await Promise.all(zks.map((h) => cluster.zooKeeperMode(h)));
  const line = `ZooKeeper leader ${leader.guide.name} restarted; back in the ensemble after ` +
    `${((clock.now() - t0) / 1000).toFixed(1)} s (modes now ${
      zks.map((h, i) => `${h.guide.name} ${after[i]}`).join(", ")
    })`;
  clock.log(line);
  return line;
}

/**
 * Restarts a gateway under load (the guide's "Restarting a gateway"): clients whose connection it
 * held reconnect through haproxy, which routes them to the other gateway until it is back.
 */
async function restartGateway(cluster: DeployCluster, clock: Clock): Promise<string> {
  const [host] = cluster.hostsWith("gateway");
  const t0 = clock.now();
  const stopped = await cluster.stop(host, "gateway");
  if (stopped.killed || stopped.status?.code !== 0) {
    throw new Error(
      `The gateway on ${host.guide.name} did not stop cleanly: ${JSON.stringify(stopped)}`,
    );
  }
  await cluster.startService(host, "gateway");
  const line = `gateway ${host.guide.name} restarted behind haproxy in ` +
    `${((clock.now() - t0) / 1000).toFixed(1)} s`;
  clock.log(line);
  return line;
}

/**
 * The metrics ports serve HTTPS with the host's certificate: what the guide's curl does, for one
 * kvnode, one gateway and one placement instance.
 */
async function checkMetrics(cluster: DeployCluster): Promise<string[]> {
  const problems: string[] = [];
  const targets = [
    [`${cluster.kvnodes[0].host.address}:8901`, "tinykv_kvnode_"],
    [`${cluster.hostsWith("gateway")[0].address}:7790`, "tinykv_gateway_"],
    [`${cluster.hostsWith("placement")[0].address}:7880`, "tinykv_placement_"],
  ];
  for (const [address, prefix] of targets) {
    try {
      const body = await run("curl", [
        "-sf",
        "--max-time",
        "10",
        "--cacert",
        cluster.admin.ca,
        `https://${address}/metrics`,
      ]);
      if (!body.includes(prefix)) {
        problems.push(`https://${address}/metrics has no ${prefix} metric`);
      }
    } catch (error) {
      problems.push(`curl https://${address}/metrics failed: ${error}`);
    }
  }
  return problems;
}

async function waitFor(
  condition: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Waited ${timeoutMs} ms for ${what}`);
    await sleep(250);
  }
}

/**
 * Every shard's replicas at the same applied index hold the same data (their data hashes), asked
 * of each kvnode with the admin's token; waits up to 30 s for the replicas to settle.
 */
async function checkReplicasAgree(cluster: DeployCluster): Promise<string[]> {
  const tls = { ca: await Deno.readTextFile(cluster.admin.ca), serverName: "tinykv" };
  const token = (await Deno.readTextFile(cluster.admin.adminToken)).trim();
  const clients = cluster.kvnodes.map((kv) =>
    createGrpcClient(NodeAdminService, `${kv.host.address}:7901`, {
      maxMessageBytes: 8 * 1024 * 1024,
      tls,
      token,
    })
  );
  let problems: string[] = ["not checked"];
  try {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const statuses: NodeStatusResponse[] = [];
      for (const client of clients) {
        const answer = await unaryCaller(client, "Status")({
          withDataHash: true,
          resetTurnStats: false,
          sinceVersion: 0,
          sinceStartedAtMs: 0,
        }, { deadlineMs: 10_000 });
        if (answer.kind === "ok") statuses.push(answer.response);
      }
      problems = replicaProblems(statuses);
      if (problems.length === 0) return [];
      await sleep(1000);
    }
    return problems;
  } finally {
    for (const client of clients) client.close();
  }
}

function replicaProblems(statuses: readonly NodeStatusResponse[]): string[] {
  const problems: string[] = [];
  if (statuses.length !== 3) problems.push(`${statuses.length} of 3 kvnodes answered Status`);
  const byShard = new Map<number, Array<{ node: string; applied: number; hash: string }>>();
  for (const status of statuses) {
    for (const r of status.replicas) {
      const list = byShard.get(r.shardId) ?? [];
      list.push({ node: status.nodeId, applied: r.appliedIndex, hash: r.dataHash });
      byShard.set(r.shardId, list);
    }
  }
  if (byShard.size !== SHARDS) problems.push(`${byShard.size} of ${SHARDS} shards reported`);
  for (const [shard, replicas] of byShard) {
    const applied = new Set(replicas.map((r) => r.applied));
    const hashes = new Set(replicas.map((r) => r.hash));
    if (replicas.length !== 3 || applied.size !== 1 || hashes.size !== 1) {
      problems.push(`shard ${shard}: ${JSON.stringify(replicas)}`);
    }
  }
  return problems;
}

/** The serial of the certificate `address` presents (openssl s_client). */
async function servedSerial(address: string): Promise<string> {
  const output = await run("sh", [
    "-c",
    `timeout 10 openssl s_client -connect ${address} -servername tinykv </dev/null 2>/dev/null | ` +
    "openssl x509 -noout -serial",
  ]);
  return output.trim();
}

/** Starts everything, in the guide's order; returns the start's duration. */
async function startCluster(cluster: DeployCluster, clock: Clock): Promise<void> {
  const zks = cluster.hostsWith("zookeeper");
  await Promise.all(zks.map((h) => cluster.startZooKeeper(h)));
  await waitFor(
    async () => {
      const modes = await Promise.all(zks.map((h) => cluster.zooKeeperMode(h)));
      return modes.filter((m) => m === "leader").length === 1 &&
        modes.filter((m) => m === "follower").length === 2;
    },
    90_000,
    "the ZooKeeper ensemble to elect a leader",
  );
  clock.log("ZooKeeper ensemble serves (1 leader, 2 followers)");
  await Promise.all(cluster.kvnodes.map((kv) => cluster.startService(kv.host, "kvnode")));
  for (const host of cluster.hostsWith("placement")) await cluster.startService(host, "placement");
  await Promise.all(cluster.hostsWith("gateway").map((h) => cluster.startService(h, "gateway")));
  await cluster.startBalancer();
  clock.log("kvnodes, placement, gateways and haproxy started from their units");
  await waitStatus(cluster, "a healthy cluster", (s) => healthy(s, 3), 120_000);
}

interface Outcome {
  problems: string[];
  lines: string[];
}

/** The run after the cluster serves: load, restarts, checks. */
async function exercise(cluster: DeployCluster, clock: Clock): Promise<Outcome> {
  const { now, log } = clock;
  const outcome: Outcome = { problems: [], lines: [] };
  const security = {
    tls: { ca: await Deno.readTextFile(cluster.admin.ca), serverName: "tinykv" },
    token: (await Deno.readTextFile(cluster.admin.clientToken)).trim(),
  };
  const load = new WriteLoad({
    endpoint: cluster.balancerAddress,
    security,
    workers: WORKERS,
    keysPerWorker: KEYS_PER_WORKER,
    writesPerSecond: WRITES_PER_SECOND,
    now,
  });
  load.start();
  const window = { startMs: 0, endMs: 0 };
  try {
    await sleep(3000);
    window.startMs = now();
    const reports: RestartReport[] = [];
    for (const [i, kv] of cluster.kvnodes.entries()) {
      reports.push(await restartKvnode(cluster, kv, clock));
      if (i === 0) outcome.lines.push(await restartZooKeeperLeader(cluster, clock));
    }
    outcome.lines.push(await restartGateway(cluster, clock));
    window.endMs = now();
    outcome.lines.push(...reports.map(reportLine));
    await sleep(2000);
    await load.stop();
    log("load stopped; checking");
    await waitStatus(cluster, "a healthy cluster after the restarts", (s) => healthy(s, 3), 60_000);
    outcome.problems.push(...await checkMetrics(cluster));
    for (const r of reports) {
      const kv = cluster.kvnodes.find((k) => k.nodeId === r.node)!;
      const served = await servedSerial(`${kv.host.address}:7901`);
      if (served !== r.serial) {
        outcome.problems.push(
          `${r.node} serves certificate ${served}, not its renewed ${r.serial}`,
        );
      }
    }
  } catch (error) {
    outcome.problems.push(`the run stopped: ${error instanceof Error ? error.stack : error}`);
    await load.stop().catch(() => {});
    window.endMs ||= now();
  }
  judgeAvailability(load, window, outcome);
  await judgeDurability(cluster, load, security, outcome);
  return outcome;
}

function reportLine(r: RestartReport): string {
  return `${r.node}: led ${r.leadersBefore}, ${r.transfers} transfers in ${r.rounds} round(s), ` +
    `leaders away in ${(r.leadersAwayMs / 1000).toFixed(1)} s, down ` +
    `${(r.downMs / 1000).toFixed(1)} s, caught up in ${(r.caughtUpMs / 1000).toFixed(1)} s`;
}

/** The cluster served the writes made during the restarts (`window`). */
function judgeAvailability(
  load: WriteLoad,
  window: { startMs: number; endMs: number },
  outcome: Outcome,
): void {
  const served = availability(load.history, window.startMs, window.endMs);
  outcome.lines.push(
    `writes during the restarts (${((window.endMs - window.startMs) / 1000).toFixed(1)} s): ` +
      `${served.attempts} sent, ${served.acknowledged} acknowledged ` +
      `(${(served.ratio * 100).toFixed(2)} %), ${served.failed} failed, ${served.unknown} ` +
      `unknown ${JSON.stringify(served.codes)}; longest stretch without an acknowledgement ` +
      `${served.longestGapMs.toFixed(0)} ms (at ${(served.longestGapAtMs / 1000).toFixed(1)} s), ` +
      `slowest acknowledged write ${served.slowestAckMs.toFixed(0)} ms`,
  );
  if (served.longestGapMs > GAP_MS_MAX) {
    outcome.problems.push(
      `no write was acknowledged for ${served.longestGapMs.toFixed(0)} ms (at most ${GAP_MS_MAX})`,
    );
  }
  if (served.ratio < ACKED_RATIO_MIN) {
    outcome.problems.push(`only ${(served.ratio * 100).toFixed(2)} % of writes were acknowledged`);
  }
}

/** Every key holds every acknowledged append, once and in order; every shard's replicas agree. */
async function judgeDurability(
  cluster: DeployCluster,
  load: WriteLoad,
  security: ClientSecurity,
  outcome: Outcome,
): Promise<void> {
  const { reads, failures } = await readAll(load.keys, {
    endpoint: cluster.balancerAddress,
    security,
    parallel: 8,
  });
  outcome.problems.push(...failures.map((f) => `final read failed: ${f}`));
  const verdict = judgeWrites(load.history, reads);
  outcome.lines.push(
    `durability: ${verdict.keys} keys, ${verdict.acknowledged} acknowledged writes in all; ` +
      `${verdict.latest} keys hold every acknowledged write once and in order, ` +
      `${verdict.unknownApplied} with a write of unknown outcome; ` +
      `${verdict.problems.length} lost or unexplained`,
  );
  outcome.problems.push(...verdict.problems);
  if (verdict.keys !== WORKERS * KEYS_PER_WORKER) {
    outcome.problems.push(`only ${verdict.keys} of ${WORKERS * KEYS_PER_WORKER} keys were written`);
  }
  const disagree = await checkReplicasAgree(cluster);
  outcome.lines.push(
    disagree.length === 0
      ? "replicas: every shard's 3 replicas hold the same data"
      : "replicas: DISAGREE",
  );
  outcome.problems.push(...disagree);
}

/** Copies the hosts' journals and logs to `results`. */
async function keepLogs(cluster: DeployCluster, results: string): Promise<void> {
  for (const host of cluster.hosts) {
    const to = `${results}/${host.guide.name}`;
    await Deno.mkdir(to, { recursive: true });
    await run("sh", [
      "-c",
      `cp ${host.root}/*.journal "${to}/" 2>/dev/null; ` +
      `cp -r ${host.root}/var/log/tinykv "${to}/logs" 2>/dev/null; true`,
    ]);
  }
}

async function main(): Promise<number> {
  const unable = await preflight();
  if (unable !== undefined) {
    console.error(`deploy: ${unable}`);
    return 2;
  }
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const log = (line: string) =>
    console.log(`deploy ${(now() / 1000).toFixed(1).padStart(6)}s ${line}`);
  const clock = { now, log };
  const dir = await Deno.makeTempDir({ prefix: "tinykv-deploy-" });
  log(`building the guide's hosts (network namespaces) in ${dir}`);
  let cluster: DeployCluster | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    cleaned ??= (async () => {
      await cluster?.close().catch((error) => console.error(`deploy: cleanup: ${error}`));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  const abort = (why: string) => async () => {
    log(`${why}: stopping every process and removing the test hosts`);
    await cleanup();
    Deno.exit(why === "over time" ? 1 : 130);
  };
  const onSignal = abort("interrupted");
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const overTime = setTimeout(abort("over time"), RUN_MS_MAX);
  let outcome: Outcome;
  try {
    cluster = await DeployCluster.build(dir);
    await startCluster(cluster, clock);
    log(
      `cluster serves: ZooKeeper ensemble on 3 hosts, 3 kvnodes, 2 placement, 2 gateways behind ` +
        `haproxy at ${cluster.balancerAddress}; writes start`,
    );
    const shown = await cluster.tinykv(["status"]);
    log(`tinykv status (exit ${shown.code}):\n${shown.stdout}${shown.stderr}`);
    outcome = await exercise(cluster, clock);
  } catch (error) {
    outcome = {
      problems: [`the run stopped: ${error instanceof Error ? error.stack : error}`],
      lines: [],
    };
  }
  if (outcome.problems.length > 0 && cluster !== undefined) {
    const stamp = new Date().toISOString().replaceAll(":", "-").slice(0, 19);
    const results = `data/deploy/${stamp}`;
    await keepLogs(cluster, results).catch(() => {});
    outcome.lines.push(`logs kept in ${results}`);
  }
  await cleanup();
  clearTimeout(overTime);
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  for (const line of outcome.lines) console.log(`  ${line}`);
  if (outcome.problems.length > 0) {
    console.log(`\nPROBLEMS (${outcome.problems.length}):`);
    for (const problem of outcome.problems.slice(0, 30)) console.log(`  - ${problem}`);
    console.log(`\ndeploy: FAIL after ${(now() / 1000).toFixed(0)} s`);
    return 1;
  }
  console.log(`\ndeploy: PASS after ${(now() / 1000).toFixed(0)} s`);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
