/**
 * Idle cost: what a cluster costs with no load. A fresh TinyKV cluster with N shards is started,
 * the comparison waits (at most {@linkcode SETTLE_TIMEOUT_MS}) until every shard has a leader
 * followed by its voters, placement has no move in flight and no leader moves (for about 10 s),
 * lets it rest a few seconds, and then measures each process's CPU over
 * {@linkcode IDLE_WINDOW_SECONDS} (in % of one core) and its resident memory (VmRSS) at the end. A cluster that does not settle in time is
 * measured anyway and reported as not settled, with how many shards had a leader. etcd's members
 * are measured the same way, for reference.
 *
 * @module
 */
import type { EtcdCluster } from "./compare_etcd.ts";
import { type ProcessRegistry, sampleCpu, sampleRssKib, sleep } from "./compare_procs.ts";
import {
  type IdleProcess,
  type IdleResult,
  summarizeIdle,
  type UnexpectedExit,
} from "./compare_report.ts";
import { leaderSignature } from "./compare_shard_view.ts";
import { cpuSecondsBetween } from "./compare_stats.ts";
import { TinyKvCluster, type TinyKvPorts } from "./compare_tinykv.ts";

/** The measured window (long enough that one clock tick of CPU is 0.03 % of a core). */
export const IDLE_WINDOW_SECONDS = 30;
/** Bound on the wait for a cluster to settle. */
export const SETTLE_TIMEOUT_MS = 10 * 60_000;
/**
 * Rest between settling and the window. The polls cost CPU themselves, and every process of a
 * fresh cluster goes through V8's memory reducer once it falls idle: a few full collections over
 * some tens of seconds (all processes at once, about 1 % of a core each, resident memory
 * dropping by a third; nothing in their logs). A cluster measured idle should be past that.
 */
const REST_MS = 60_000;
const POLL_INTERVAL_MS = 2000;
/** Quiet polls in a row that count as settled (about 10 s). */
const QUIET_POLLS = 5;

/** Measures each named process over the window. */
export async function measureIdle(
  pids: Readonly<Record<string, number>>,
  ticksPerSecond: number,
): Promise<IdleProcess[]> {
  const list = Object.values(pids);
  const before = await sampleCpu(list);
  await sleep(IDLE_WINDOW_SECONDS * 1000);
  const after = await sampleCpu(list);
  const rss = await sampleRssKib(list);
  const seconds = (after.atMs - before.atMs) / 1000;
  const cpu = cpuSecondsBetween(pids, {
    before: before.stats,
    after: after.stats,
    ticksPerSecond,
  });
  return Object.entries(pids).map(([name, pid]) => ({
    name,
    cpuPercent: (cpu[name] / seconds) * 100,
    rssMib: (rss.get(pid) ?? NaN) / 1024,
  }));
}

/** How far a cluster got while settling. */
interface Settling {
  readonly settled: boolean;
  readonly shardsWithLeader: number;
  readonly tasks: number | undefined;
}

/**
 * Polls until the cluster is whole, placement has no move in flight and no leader has moved, for
 * {@linkcode QUIET_POLLS} polls in a row (placement balances leaders one move at a time, with
 * rounds between them, so one quiet poll proves little); or until `deadlineMs` (Date.now()).
 */
async function settle(cluster: TinyKvCluster, deadlineMs: number): Promise<Settling> {
  let last: Settling = { settled: false, shardsWithLeader: 0, tasks: undefined };
  let quietPolls = 0;
  let lastLeaders = "";
  while (Date.now() < deadlineMs) {
    const { view } = await cluster.view();
    const tasks = await cluster.placementTasks();
    const leaders = leaderSignature(view);
    last = { settled: false, shardsWithLeader: view.shardsWithLeader, tasks };
    const quiet = view.whole && tasks === 0 && leaders === lastLeaders;
    quietPolls = quiet ? quietPolls + 1 : 0;
    lastLeaders = leaders;
    if (quietPolls >= QUIET_POLLS) return { ...last, settled: true };
    await sleep(POLL_INTERVAL_MS);
  }
  return last;
}

/** Starts a fresh cluster with `shards` shards, waits for it to settle, measures it, stops it. */
export async function tinyKvIdle(
  registry: ProcessRegistry,
  options: {
    root: string;
    shards: number;
    ports: TinyKvPorts;
    ticksPerSecond: number;
    say: (line: string) => void;
  },
): Promise<IdleResult> {
  const { shards, say } = options;
  const started = Date.now();
  const deadlineMs = started + SETTLE_TIMEOUT_MS;
  const dir = await registry.tempDir(`tinykv-compare-idle-${shards}-`);
  let cluster: TinyKvCluster | undefined;
  try {
    cluster = await TinyKvCluster.start(registry, { ...options, dir });
    say(`  ${shards} shards: dev serves after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    const settling = await settle(cluster, deadlineMs);
    const settleSeconds = (Date.now() - started) / 1000;
    say(
      `  ${shards} shards: ${settling.settled ? "settled" : "NOT settled"} after ` +
        `${settleSeconds.toFixed(0)} s (${settling.shardsWithLeader} shards with a leader); ` +
        `measuring ${IDLE_WINDOW_SECONDS} s`,
    );
    await sleep(REST_MS);
    const processes = await measureIdle(cluster.pids(), options.ticksPerSecond);
    return summarizeIdle({
      system: "tinykv",
      shards,
      settled: settling.settled,
      settleSeconds,
      shardsWithLeader: settling.shardsWithLeader,
      windowSeconds: IDLE_WINDOW_SECONDS,
      processes,
      note: noteOf(settling, shards, cluster.unexpectedExits),
    });
  } catch (error) {
    return notStarted(shards, started, error);
  } finally {
    await cluster?.stop();
    await registry.removeTempDir(dir);
  }
}

/** What the report should say besides the numbers; undefined when nothing. */
function noteOf(
  settling: Settling,
  shards: number,
  exits: readonly UnexpectedExit[],
): string | undefined {
  const notes = exits.map((exit) =>
    `${exit.name} exited unexpectedly (pid ${exit.pid}, ${exit.how}): ${
      exit.lastLines.at(-1) ?? ""
    }`
  );
  if (!settling.settled) {
    notes.unshift(
      `did not settle within ${SETTLE_TIMEOUT_MS / 60_000} min: ` +
        `${settling.shardsWithLeader}/${shards} shards had a leader, placement had ` +
        `${settling.tasks ?? "an unknown number of"} moves in flight; measured as it was`,
    );
  }
  return notes.length === 0 ? undefined : notes.join("; ");
}

function notStarted(shards: number, started: number, error: unknown): IdleResult {
  const message = error instanceof Error ? error.message : String(error);
  return summarizeIdle({
    system: "tinykv",
    shards,
    settled: false,
    settleSeconds: (Date.now() - started) / 1000,
    shardsWithLeader: 0,
    windowSeconds: 0,
    processes: [],
    note: `not measured: ${message.split("\n")[0]}`,
  });
}

/** Measures etcd's three members as they are (after the cells: with the keys loaded). */
export async function etcdIdle(etcd: EtcdCluster, ticksPerSecond: number): Promise<IdleResult> {
  await sleep(REST_MS);
  const processes = await measureIdle(etcd.pids(), ticksPerSecond);
  return summarizeIdle({
    system: "etcd",
    shards: null,
    settled: true,
    settleSeconds: 0,
    shardsWithLeader: 0,
    windowSeconds: IDLE_WINDOW_SECONDS,
    processes,
  });
}
