/**
 * The snapshot benchmark: moving a large shard to a new kvnode, measured for memory and pauses.
 *
 * Four real kvnode processes (real LMDB with synced commits, real gRPC, a real ZooKeeper) on
 * 127.0.0.1. One shard on the first three is filled with `--gib` GiB of values (`--value-kib`
 * KiB each, written through the leader's batched data stream, so the Raft log compacts many times
 * over); the four nodes are then restarted, so that what follows starts from fresh processes.
 * Then the fourth node gets a replica (CreateReplica, then ChangeMembership ADD_LEARNER on the
 * leader): the leader streams the whole shard to it as a snapshot, read from an LMDB read
 * transaction, and the new replica writes it in bounded transactions as it arrives. The move then
 * ends as placement ends one: the learner is promoted and a source replica removed, and the
 * source's node deletes its copy of the shard in the background.
 *
 * Meanwhile, every 100 ms it samples each kvnode's resident memory from `/proc/<pid>/status`:
 * `RssAnon` (the process's own memory: heap, buffers) and `RssFile` (pages of the memory-mapped
 * LMDB file it touched, which are the kernel's page cache and reclaimable, not the process's). A
 * writer keeps putting small values to the shard throughout, one at a time, to show it keeps
 * serving. It reports the transfer time and rate, the largest `RssAnon` and `VmRSS` per node, the
 * longest driver turn and the turns over 100 ms per node (node-admin `Status`), and the writer's
 * latency. The targets (issue 12): `RssAnon` under 512 MiB on every node, no driver turn over
 * 100 ms.
 *
 * Run (`deno task bench:snapshot`):
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-run --allow-net=127.0.0.1 --allow-env \
 *   bench/snapshot_move.ts [--gib 2] [--value-kib 256] [--json] [--keep-logs DIR]
 * ```
 *
 * It stops by itself and removes its processes, data dirs and ZooKeeper root, also on an error.
 * Deno reads `/proc` only with `--allow-all`, so one `cat` per sample reads the status files.
 *
 * @module
 */
import { KvNodeStream } from "@tinykv/client";
import type { NodeStatusResponse, RequestItem } from "@tinykv/proto/tinykv/v1";
import { type ClusterNode, KvNodeCluster } from "../tests/_harness/kvnode_cluster.ts";

const MIB = 1024 * 1024;
const MESSAGE_BYTES = 8 * MIB;
const LOAD_IN_FLIGHT = 16;
const VALUE_POOL_SIZE = 16;
const SAMPLE_INTERVAL_MS = 100;
const MOVE_TIMEOUT_MS = 30 * 60 * 1000;
const LEADER_ROLE = 4;
const RSS_ANON_TARGET_MIB = 512;
const TURN_TARGET_MS = 100;
const NEW_PEER_ID = 9_000_000_001;

interface Options {
  gib: number;
  valueKib: number;
  json: boolean;
  /** Where to copy the kvnodes' logs before the cluster is removed. */
  keepLogs: string | undefined;
}

function parseOptions(args: readonly string[]): Options {
  const options: Options = { gib: 2, valueKib: 256, json: false, keepLogs: undefined };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const number = () => {
      const value = Number(args[++i]);
      if (!(value > 0 && Number.isFinite(value))) {
        throw new Error(`Flag "${flag}" is "${args[i]}": expected a positive number`);
      }
      return value;
    };
    if (flag === "--gib") options.gib = number();
    else if (flag === "--value-kib") options.valueKib = Math.floor(number());
    else if (flag === "--json") options.json = true;
    else if (flag === "--keep-logs") options.keepLogs = args[++i];
    else {
      throw new Error(
        `Unknown argument "${flag}": expected --gib N, --value-kib N, --json, --keep-logs DIR`,
      );
    }
  }
  return options;
}

let say = (line: string) => console.log(line);

/** Resident memory of one process, in KiB, from `/proc/<pid>/status`. */
interface Memory {
  vmRss: number;
  rssAnon: number;
  rssFile: number;
}

async function sampleMemory(pids: readonly number[]): Promise<Array<Memory | undefined>> {
  const output = await new Deno.Command("cat", {
    args: pids.map((pid) => `/proc/${pid}/status`),
    stdout: "piped",
    stderr: "null",
  }).output();
  const blocks = new TextDecoder().decode(output.stdout).split(/^Name:/m).slice(1);
  return pids.map((pid) => {
    const block = blocks.find((b) => new RegExp(`^Pid:\\s+${pid}$`, "m").test(b));
    if (block === undefined) return undefined;
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(block)?.[1]);
    return { vmRss: field("VmRSS"), rssAnon: field("RssAnon"), rssFile: field("RssFile") };
  });
}

function pidOf(node: ClusterNode): number {
  const pid = node.process.pid;
  if (pid === undefined) throw new Error(`${node.process.name} is not running`);
  return pid;
}

async function status(
  cluster: KvNodeCluster,
  node: ClusterNode,
  resetTurnStats = false,
): Promise<NodeStatusResponse> {
  const result = await cluster.call(node, "Status", {
    withDataHash: false,
    resetTurnStats,
    sinceVersion: 0,
    sinceStartedAtMs: 0,
  });
  if (result.kind !== "ok") throw new Error(`Status of ${node.process.name}: ${result.message}`);
  return result.response as NodeStatusResponse;
}

async function leaderOf(cluster: KvNodeCluster, members: readonly ClusterNode[]) {
  for (const node of members) {
    const replica = (await status(cluster, node)).replicas.find((r) => r.shardId === 1);
    if (replica?.role === LEADER_ROLE) return { node, replica };
  }
  throw new Error("Shard 1 has no leader");
}

/** Values the load cycles through (random bytes, so nothing compresses them away). */
function valuePool(bytes: number): Uint8Array[] {
  return Array.from({ length: VALUE_POOL_SIZE }, () => {
    const value = new Uint8Array(bytes);
    for (let at = 0; at < bytes; at += 65536) {
      crypto.getRandomValues(value.subarray(at, Math.min(at + 65536, bytes)));
    }
    return value;
  });
}

function put(key: string, value: Uint8Array): Omit<RequestItem, "id"> {
  const request = { key: new TextEncoder().encode(key), value, clientId: "", seq: 0, ackSeq: 0 };
  return { shardId: 1, confEpoch: 0, timeoutMs: 30_000, traceId: "", put: request };
}

/** Fills shard 1 through its leader with `count` values; returns the bytes written. */
async function load(stream: KvNodeStream, count: number, values: Uint8Array[]): Promise<number> {
  let next = 0;
  let written = 0;
  let reported = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const value = values[i % values.length];
      for (let attempt = 0;; attempt++) {
        const answer = await stream.request(put(`blob/${String(i).padStart(8, "0")}`, value));
        if (answer.failure === undefined) break;
        if (attempt > 20) throw new Error(`Put ${i} failed: ${answer.failure.message}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      written += value.length;
      if (written - reported >= count * value.length / 10) {
        reported = written;
        const seconds = (performance.now() - started) / 1000;
        say(
          `  loaded ${(written / MIB).toFixed(0)} MiB (${
            (written / MIB / seconds).toFixed(1)
          } MiB/s)`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: LOAD_IN_FLIGHT }, worker));
  return written;
}

/** Puts small values one at a time until stopped; returns their latencies in ms. */
function backgroundWriter(stream: KvNodeStream): { stop(): Promise<number[]> } {
  let running = true;
  const latencies: number[] = [];
  const done = (async () => {
    const value = new Uint8Array(100);
    for (let i = 0; running; i++) {
      const started = performance.now();
      const answer = await stream.request(put(`during/${i}`, value));
      if (answer.failure === undefined) latencies.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return latencies;
    },
  };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function main(args: readonly string[]): Promise<number> {
  const options = parseOptions(args);
  if (options.json) say = (line) => console.error(line);
  const valueBytes = options.valueKib * 1024;
  const count = Math.ceil(options.gib * 1024 * MIB / valueBytes);
  say(
    `snapshot move: ${count} values of ${options.valueKib} KiB (${options.gib} GiB) in one shard`,
  );
  const cluster = await KvNodeCluster.start({ nodes: 4, shards: 1 });
  const streams: KvNodeStream[] = [];
  try {
    const members = cluster.nodes.slice(0, 3);
    const target = cluster.nodes[3];
    await cluster.bootstrap(members);
    await cluster.waitForLeaders();
    const first = await leaderOf(cluster, members);
    const loader = new KvNodeStream(first.node.address, { maxMessageBytes: MESSAGE_BYTES });
    streams.push(loader);
    const loadStarted = performance.now();
    const written = await load(loader, count, valuePool(valueBytes));
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    loader.close();
    say(
      `loaded ${(written / MIB).toFixed(0)} MiB in ${
        loadSeconds.toFixed(1)
      } s; restarting the kvnodes`,
    );
    for (const node of cluster.nodes) {
      await node.process.stop();
      await cluster.restart(node);
    }
    await cluster.waitForLeaders();
    const { node: leader, replica } = await leaderOf(cluster, members);
    say(
      `shard 1: ${(replica.dataBytes / MIB).toFixed(0)} MiB in ${replica.dataKeys} keys, ` +
        `leader ${leader.process.name}, log ${replica.logEntries} entries since its snapshot`,
    );

    const pids = cluster.nodes.map(pidOf);
    const peaks = cluster.nodes.map(() => ({ vmRss: 0, rssAnon: 0, rssFile: 0 }));
    const baseline = await sampleMemory(pids);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const sample = await sampleMemory(pids);
        sample.forEach((memory, i) => {
          if (memory === undefined) return;
          peaks[i].vmRss = Math.max(peaks[i].vmRss, memory.vmRss);
          peaks[i].rssAnon = Math.max(peaks[i].rssAnon, memory.rssAnon);
          peaks[i].rssFile = Math.max(peaks[i].rssFile, memory.rssFile);
        });
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
      }
    })();
    const writerStream = new KvNodeStream(leader.address, { maxMessageBytes: MESSAGE_BYTES });
    streams.push(writerStream);
    const writer = backgroundWriter(writerStream);

    // The turn statistics cover the move alone.
    for (const node of cluster.nodes) await status(cluster, node, true);
    const moveStarted = performance.now();
    const newPeer = cluster.peer(target, NEW_PEER_ID);
    const created = await cluster.call(target, "CreateReplica", {
      clusterId: cluster.clusterId,
      shardId: 1,
      rangeLo: replica.rangeLo,
      rangeHi: replica.rangeHi,
      peerId: NEW_PEER_ID,
      voters: replica.voters,
      learners: [...replica.learners, newPeer],
      confEpoch: replica.confEpoch,
      join: true,
    });
    if (created.kind !== "ok") throw new Error(`CreateReplica: ${created.message}`);
    const added = await cluster.call(leader, "ChangeMembership", {
      clusterId: cluster.clusterId,
      shardId: 1,
      expectedConfEpoch: replica.confEpoch,
      change: 1,
      peer: newPeer,
      timeoutMs: 30_000,
    });
    if (added.kind !== "ok") throw new Error(`ChangeMembership: ${added.message}`);
    let caughtUp = false;
    while (!caughtUp) {
      if (performance.now() - moveStarted > MOVE_TIMEOUT_MS) throw new Error("The move timed out");
      await new Promise((resolve) => setTimeout(resolve, 250));
      const mine = (await status(cluster, target)).replicas.find((r) => r.shardId === 1);
      caughtUp = mine !== undefined && mine.dataKeys >= replica.dataKeys &&
        mine.appliedIndex >= replica.commitIndex;
    }
    const copySeconds = (performance.now() - moveStarted) / 1000;
    // Finish the move as placement does: promote the learner, remove a source replica, whose
    // node then deletes its copy of the shard in the background.
    const source = members.find((node) => node !== leader)!;
    const sourcePeer = replica.voters.find((peer) => peer.nodeId === source.nodeId)!;
    const change = async (kind: 2 | 3, peer: typeof newPeer, expectedConfEpoch: number) => {
      const result = await cluster.call(leader, "ChangeMembership", {
        clusterId: cluster.clusterId,
        shardId: 1,
        expectedConfEpoch,
        change: kind,
        peer,
        timeoutMs: 30_000,
      });
      if (result.kind !== "ok") throw new Error(`ChangeMembership ${kind}: ${result.message}`);
      return (result.response as { confEpoch: number }).confEpoch;
    };
    const promotedEpoch = await change(
      2,
      newPeer,
      (added.response as { confEpoch: number }).confEpoch,
    );
    await change(3, sourcePeer, promotedEpoch);
    const deleteStarted = performance.now();
    while (!(await cluster.logOf(source)).includes("Deleted an unused generation")) {
      if (performance.now() - moveStarted > MOVE_TIMEOUT_MS) throw new Error("The move timed out");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const deleteSeconds = (performance.now() - deleteStarted) / 1000;
    const moveSeconds = (performance.now() - moveStarted) / 1000;
    const latencies = (await writer.stop()).sort((a, b) => a - b);
    sampling = false;
    await sampler;
    const turns = await Promise.all(cluster.nodes.map((node) => status(cluster, node)));

    const rows = cluster.nodes.map((node, i) => ({
      node: node.process.name,
      role: node === leader
        ? "leader (sends)"
        : node === target
        ? "new replica (receives)"
        : node === source
        ? "source (removed, deletes its copy)"
        : "follower",
      baselineRssAnonMib: (baseline[i]?.rssAnon ?? 0) / 1024,
      peakRssAnonMib: peaks[i].rssAnon / 1024,
      peakVmRssMib: peaks[i].vmRss / 1024,
      peakRssFileMib: peaks[i].rssFile / 1024,
      turnMsMax: turns[i].turnMsMax,
      turnWriteMs: turns[i].turnWriteMs,
      slowTurns: turns[i].slowTurns,
    }));
    const result = {
      shardBytes: replica.dataBytes,
      shardKeys: replica.dataKeys,
      valueBytes,
      loadSeconds,
      copySeconds,
      copyMibPerSecond: replica.dataBytes / MIB / copySeconds,
      deleteSeconds,
      moveSeconds,
      writerOps: latencies.length,
      writerP50Ms: percentile(latencies, 0.5),
      writerP99Ms: percentile(latencies, 0.99),
      writerMaxMs: latencies.at(-1) ?? 0,
      nodes: rows,
      rssAnonTargetMib: RSS_ANON_TARGET_MIB,
      turnTargetMs: TURN_TARGET_MS,
      met: rows.every((r) =>
        r.peakRssAnonMib < RSS_ANON_TARGET_MIB && r.turnMsMax <= TURN_TARGET_MS
      ),
    };
    if (options.json) console.log(JSON.stringify(result, null, 2));
    say(
      `\nmoved ${(replica.dataBytes / MIB).toFixed(0)} MiB in ${moveSeconds.toFixed(1)} s: the ` +
        `copy took ${copySeconds.toFixed(1)} s (${result.copyMibPerSecond.toFixed(1)} MiB/s), ` +
        `the source's deletion of its copy ${deleteSeconds.toFixed(1)} s after its removal; a ` +
        `writer meanwhile: ${latencies.length} puts, p50 ${result.writerP50Ms.toFixed(1)} ms, ` +
        `p99 ${result.writerP99Ms.toFixed(1)} ms, max ${result.writerMaxMs.toFixed(1)} ms\n`,
    );
    say(
      "| node | role | RssAnon before MiB | RssAnon peak MiB | VmRSS peak MiB | RssFile peak MiB | longest turn ms (of it writing) | turns > 100 ms |",
    );
    say("|---|---|---|---|---|---|---|---|");
    for (const r of rows) {
      say(
        `| ${r.node} | ${r.role} | ${r.baselineRssAnonMib.toFixed(0)} | ${
          r.peakRssAnonMib.toFixed(0)
        } | ` +
          `${r.peakVmRssMib.toFixed(0)} | ${
            r.peakRssFileMib.toFixed(0)
          } | ${r.turnMsMax} (${r.turnWriteMs}) | ${r.slowTurns} |`,
      );
    }
    say(
      `\ntargets: RssAnon < ${RSS_ANON_TARGET_MIB} MiB and no turn over ${TURN_TARGET_MS} ms on every node: ` +
        (result.met ? "met" : "NOT met"),
    );
    return 0;
  } finally {
    for (const stream of streams) stream.close();
    if (options.keepLogs !== undefined) {
      await Deno.mkdir(options.keepLogs, { recursive: true });
      for await (const entry of Deno.readDir(`${cluster.dataDir}/logs`)) {
        await Deno.copyFile(
          `${cluster.dataDir}/logs/${entry.name}`,
          `${options.keepLogs}/${entry.name}`,
        );
      }
    }
    await cluster.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
