/**
 * `deno task test:chaos [--minutes N] [--seed S] [--results DIR]`: the fault test of a real
 * cluster. It runs ZooKeeper, two placement instances, two gateways and five kvnodes (each on a
 * test host of its own, in a network namespace) with four shards replicated three times; clients
 * run the register, append and scan workloads through the gateways while the nemesis injects
 * faults for N minutes (default 3); then everything is healed and checked:
 *
 * - the register history is linearizable (the project's checker; a search that runs out of its
 *   step budget fails the run like a violation does);
 * - appends: every acknowledged token exactly once, in real-time order, reads are prefixes;
 * - scans: ordered, no duplicates, every key acknowledged before the scan began is in it;
 * - durability: after healing, every replica of each shard holds identical data (same applied
 *   index and data hash), and final reads show every acknowledged write;
 * - availability during faults is reported, and a run must reach floors of operations and keys,
 *   in all and for each workload (a run that barely sent traffic proves nothing);
 * - every bad-input probe was refused and changed nothing;
 * - every legal request at the limits (4,096-byte keys, 1 MiB values, an append to exactly the
 *   limit, a compare-and-swap of two 1 MiB values) that got an answer got the right one, and
 *   enough of them got through (see floors.ts, with the floors on each workload).
 *
 * A failing run saves the history, the fault timeline, a report and the processes' logs under
 * the results folder (default `./data/chaos/<time>-seed-<S>`); a passing one saves the report and
 * timeline. The last line says PASS or FAIL and how to replay the seed.
 *
 * Needs root (network namespaces, nftables), `ip` and `nft`; `deno task setup` installs nftables.
 *
 * @module
 */
import { ChaosCluster } from "./cluster.ts";
import { run } from "./net.ts";
import { type FaultEvent, faultTable, Nemesis, sleep } from "./nemesis.ts";
import { Probes } from "./probes.ts";
import { judge, type Verdict } from "./verdict.ts";
import { Workloads } from "./workloads.ts";

const WARMUP_MS = 5000;
const AFTER_HEAL_MS = 5000;

interface ChaosArgs {
  readonly minutes: number;
  readonly seed: number;
  readonly results: string | undefined;
}

function parseArgs(args: readonly string[]): ChaosArgs | string {
  let minutes = 3;
  let seed = Math.floor(Math.random() * 0x7fffffff);
  let results: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].split("=", 2);
    const value = inline ?? args[++i];
    if (flag === "--minutes") {
      minutes = Number(value);
      if (!(minutes > 0 && minutes <= 24 * 60)) {
        return `Flag "--minutes" is ${JSON.stringify(value ?? "")}: expected a number above 0`;
      }
    } else if (flag === "--seed") {
      seed = Number(value);
      if (!Number.isSafeInteger(seed) || seed < 0) {
        return `Flag "--seed" is ${JSON.stringify(value ?? "")}: expected a whole number >= 0`;
      }
    } else if (flag === "--results") {
      if (value === undefined || value === "") return 'Flag "--results" needs a folder';
      results = value;
    } else {
      return `Unknown argument "${args[i]}": expected --minutes N, --seed S or --results DIR`;
    }
  }
  return { minutes, seed, results };
}

/** Says why this machine cannot run the fault test, or undefined when it can. */
async function preflight(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "The fault test needs root (network namespaces and nftables)";
  try {
    await run("ip", ["netns", "list"]);
  } catch (error) {
    return `The fault test needs "ip netns" (iproute2): ${error}`;
  }
  try {
    await run("nft", ["--version"]);
  } catch {
    return 'The fault test needs nftables: run "deno task setup" (it installs the Debian package)';
  }
  return undefined;
}

/** A run's clock and its log lines. */
interface Clock {
  readonly now: () => number;
  readonly log: (line: string) => void;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === "string") {
    console.error(`chaos: ${args}`);
    return 2;
  }
  const unable = await preflight();
  if (unable !== undefined) {
    console.error(`chaos: ${unable}`);
    return 2;
  }
  const stamp = new Date().toISOString().replaceAll(":", "-").slice(0, 19);
  const results = args.results ?? `data/chaos/${stamp}-seed-${args.seed}`;
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const log = (line: string) =>
    console.log(`chaos ${(now() / 1000).toFixed(1).padStart(6)}s ${line}`);
  const dir = await Deno.makeTempDir({ prefix: "tinykv-chaos-" });
  log(`seed ${args.seed}, ${args.minutes} min of faults; data in ${dir}`);
  const cluster = await ChaosCluster.start({
    nodes: 5,
    hosts: 6,
    shards: 4,
    replicas: 3,
    gateways: 2,
    placements: 2,
    dir,
  });
  // Ctrl-C or SIGTERM: stop every process and remove the test hosts before leaving.
  const interrupted = async () => {
    log("interrupted: stopping the cluster and removing the test hosts");
    await cluster.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  log(
    `cluster serves: 5 kvnodes, 4 shards x3, 2 placement, 2 gateways, ZooKeeper ${cluster.zkConnect}`,
  );
  const { verdict, workloads, nemesis } = await runFaults(cluster, args, { now, log });
  const failed = verdict.problems.length > 0;
  await saveResults(results, args, verdict, workloads, nemesis, cluster);
  await cluster.close();
  if (failed) await run("cp", ["-r", `${dir}/logs`, `${results}/logs`]).catch(() => {});
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  for (const line of verdict.lines) console.log(`  ${line}`);
  if (failed) {
    console.log(`\nPROBLEMS (${verdict.problems.length}):`);
    for (const problem of verdict.problems.slice(0, 30)) console.log(`  - ${problem}`);
    console.log(`\nchaos: FAIL (seed ${args.seed}); report, history and logs in ${results}`);
    console.log(`chaos: replay with: ${replayCommand(args)}`);
    return 1;
  }
  console.log(`\nchaos: PASS (seed ${args.seed}); report in ${results}/report.md`);
  return 0;
}

function replayCommand(args: ChaosArgs): string {
  return `deno task test:chaos --seed ${args.seed} --minutes ${args.minutes}`;
}

/** Runs the workloads and the nemesis, heals, and judges the run. */
async function runFaults(cluster: ChaosCluster, args: ChaosArgs, clock: Clock) {
  const { now, log } = clock;
  const endpoints = cluster.gateways.map((g) => g.address);
  // The test's clients use the client role's token, over TLS.
  const security = { ...cluster.clientSecurity, token: cluster.clientToken };
  const workloads = new Workloads({
    endpoints,
    security,
    seed: args.seed,
    registerWorkers: 4,
    appendWorkers: 3,
    scanWriters: 2,
    scanReaders: 1,
    rotateMs: 30_000,
    now,
  });
  const probes = new Probes(endpoints, 5000, security);
  const nemesis = new Nemesis(cluster, args.seed ^ 0x5bd1e995, now, log);
  let verdict: Verdict;
  try {
    workloads.start();
    probes.start();
    await sleep(WARMUP_MS);
    const faultWindow = { start: now(), end: 0 };
    await nemesis.run(now() + args.minutes * 60_000);
    faultWindow.end = now();
    log("faults over: healing");
    await nemesis.healAll();
    await sleep(AFTER_HEAL_MS);
    await workloads.stop();
    await probes.stop();
    log("workloads stopped; waiting for the cluster to settle");
    const history = workloads.history;
    verdict = await judge({ cluster, history, probes, nemesis, faultWindow, now, log });
  } catch (error) {
    verdict = {
      problems: [`the run stopped: ${error instanceof Error ? error.stack : error}`],
      lines: [],
    };
    await workloads.stop().catch(() => {});
    await probes.stop().catch(() => {});
  }
  return { verdict, workloads, nemesis };
}

/** Writes the report and timeline; for a failed run also the history and process output. */
async function saveResults(
  results: string,
  args: ChaosArgs,
  verdict: Verdict,
  workloads: Workloads,
  nemesis: Nemesis,
  cluster: ChaosCluster,
): Promise<void> {
  const failed = verdict.problems.length > 0;
  await Deno.mkdir(results, { recursive: true });
  const report = [
    `# TinyKV fault test: ${failed ? "FAIL" : "PASS"}`,
    "",
    `seed ${args.seed}, ${args.minutes} min of faults; replay: \`${replayCommand(args)}\``,
    "",
    ...verdict.lines.map((l) => `- ${l}`),
    "",
    ...(failed ? ["## Problems", "", ...verdict.problems.map((p) => `- ${p}`), ""] : []),
    "## Faults by kind",
    "",
    ...faultTable(nemesis.timeline),
    "",
    "## Fault timeline (seconds from start)",
    "",
    ...nemesis.timeline.map(describeFault),
    "",
  ].join("\n");
  await Deno.writeTextFile(`${results}/report.md`, report);
  await Deno.writeTextFile(`${results}/timeline.json`, JSON.stringify(nemesis.timeline, null, 1));
  if (!failed) return;
  await Deno.writeTextFile(
    `${results}/history.json`,
    JSON.stringify(workloads.history, (_k, v) => (v === Infinity ? "Infinity" : v)),
  );
  for (const process of cluster.processes) {
    const name = process.name.replaceAll(/[^\w.-]+/g, "_");
    await Deno.writeTextFile(`${results}/${name}.out`, process.output);
  }
}

function describeFault(event: FaultEvent): string {
  const at = (ms: number) => (ms / 1000).toFixed(1);
  return `- ${at(event.start)}–${at(event.end)} ${event.kind} ${event.detail}` +
    (event.skipped === undefined ? "" : ` (skipped: ${event.skipped})`);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
