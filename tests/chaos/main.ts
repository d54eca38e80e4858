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
 * - availability during faults is reported, and a run must complete a floor of operations and
 *   keys (a run that barely sent traffic proves nothing);
 * - every bad-input probe was refused and changed nothing.
 *
 * A failing run saves the history, the fault timeline, a report and the processes' logs under
 * the results folder (default `./data/chaos/<time>-seed-<S>`); a passing one saves the report and
 * timeline. The last line says PASS or FAIL and how to replay the seed.
 *
 * Needs root (network namespaces, nftables), `ip` and `nft`; `deno task setup` installs nftables.
 *
 * @module
 */
import { text, TinyKvClient } from "@tinykv/client";
import { check, registerModel } from "@tinykv/lincheck";
import type { Operation, RegisterInput, RegisterOutput } from "@tinykv/lincheck";
import { checkAppends, checkScans, parseTokens } from "./checks.ts";
import type { ListRead } from "./checks.ts";
import { ChaosCluster } from "./cluster.ts";
import { run } from "./net.ts";
import { type FaultEvent, Nemesis, sleep } from "./nemesis.ts";
import { Probes } from "./probes.ts";
import { prefixEnd, Workloads } from "./workloads.ts";

/** The linearizability search's budget per key, in steps. */
const STEP_BUDGET = 2_000_000;
/** Completed operations a run must reach per minute of faults. */
const OPERATIONS_PER_MINUTE_MIN = 1500;
/** Distinct keys a run must touch per minute of faults. */
const KEYS_PER_MINUTE_MIN = 40;
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

interface Verdict {
  readonly problems: string[];
  readonly lines: string[];
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
  const replay = `deno task test:chaos --seed ${args.seed} --minutes ${args.minutes}`;
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
  log(
    `cluster serves: 5 kvnodes, 4 shards x3, 2 placement, 2 gateways, ZooKeeper ${cluster.zkConnect}`,
  );
  const endpoints = cluster.gateways.map((g) => g.address);
  const workloads = new Workloads({
    endpoints,
    seed: args.seed,
    registerWorkers: 4,
    appendWorkers: 3,
    scanWriters: 2,
    scanReaders: 1,
    rotateMs: 30_000,
    now,
  });
  const probes = new Probes(endpoints, 5000);
  const nemesis = new Nemesis(cluster, args.seed ^ 0x5bd1e995, now, log);
  let verdict: Verdict;
  let faultWindow = { start: 0, end: 0 };
  try {
    workloads.start();
    probes.start();
    await sleep(WARMUP_MS);
    faultWindow = { start: now(), end: 0 };
    await nemesis.run(now() + args.minutes * 60_000);
    faultWindow.end = now();
    log("faults over: healing");
    await nemesis.healAll();
    await sleep(AFTER_HEAL_MS);
    await workloads.stop();
    await probes.stop();
    log("workloads stopped; waiting for the cluster to settle");
    verdict = await checkRun(cluster, workloads, probes, nemesis, faultWindow, args, log);
  } catch (error) {
    verdict = {
      problems: [`the run stopped: ${error instanceof Error ? error.stack : error}`],
      lines: [],
    };
    await workloads.stop().catch(() => {});
    await probes.stop().catch(() => {});
  }
  const failed = verdict.problems.length > 0;
  await Deno.mkdir(results, { recursive: true });
  const report = [
    `# TinyKV fault test: ${failed ? "FAIL" : "PASS"}`,
    "",
    `seed ${args.seed}, ${args.minutes} min of faults; replay: \`${replay}\``,
    "",
    ...verdict.lines.map((l) => `- ${l}`),
    "",
    ...(failed ? ["## Problems", "", ...verdict.problems.map((p) => `- ${p}`), ""] : []),
    "## Fault timeline (seconds from start)",
    "",
    ...nemesis.timeline.map(describeFault),
    "",
  ].join("\n");
  await Deno.writeTextFile(`${results}/report.md`, report);
  await Deno.writeTextFile(`${results}/timeline.json`, JSON.stringify(nemesis.timeline, null, 1));
  if (failed) {
    await Deno.writeTextFile(
      `${results}/history.json`,
      JSON.stringify(workloads.history, (_k, v) => (v === Infinity ? "Infinity" : v)),
    );
    for (const process of cluster.processes) {
      await Deno.writeTextFile(
        `${results}/${process.name.replaceAll(/[^\w.-]+/g, "_")}.out`,
        process.output,
      );
    }
  }
  await cluster.close();
  if (failed) {
    await run("cp", ["-r", `${dir}/logs`, `${results}/logs`]).catch(() => {});
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  for (const line of verdict.lines) console.log(`  ${line}`);
  if (failed) {
    console.log(`\nPROBLEMS (${verdict.problems.length}):`);
    for (const problem of verdict.problems.slice(0, 30)) console.log(`  - ${problem}`);
    console.log(`\nchaos: FAIL (seed ${args.seed}); report, history and logs in ${results}`);
    console.log(`chaos: replay with: ${replay}`);
    return 1;
  }
  console.log(`\nchaos: PASS (seed ${args.seed}); report in ${results}/report.md`);
  return 0;
}

function describeFault(event: FaultEvent): string {
  const at = (ms: number) => (ms / 1000).toFixed(1);
  return `- ${at(event.start)}–${at(event.end)} ${event.kind} ${event.detail}` +
    (event.skipped === undefined ? "" : ` (skipped: ${event.skipped})`);
}

/** Waits until every replica of each shard holds the same data; returns the problems. */
async function waitReplicasIdentical(cluster: ChaosCluster, timeoutMs: number): Promise<string[]> {
  const deadline = performance.now() + timeoutMs;
  let problems: string[] = [];
  while (performance.now() < deadline) {
    problems = [];
    const leader = await cluster.placementLeader();
    if (leader === undefined) {
      problems.push("no placement leader answers");
    } else {
      const statuses = new Map<string, Awaited<ReturnType<ChaosCluster["status"]>>>();
      for (const node of cluster.liveNodes) {
        statuses.set(node.nodeId, await cluster.status(node, true));
      }
      for (const shard of leader.state.shards) {
        const seen: string[] = [];
        for (const member of [...shard.voters, ...shard.learners]) {
          const replica = statuses.get(member)?.replicas.find((r) => r.shardId === shard.shardId);
          seen.push(
            replica === undefined
              ? `${member}: no answer`
              : `${member}: applied ${replica.appliedIndex} hash ${replica.dataHash}`,
          );
        }
        const distinct = new Set(seen.map((s) => s.slice(s.indexOf(":"))));
        if (distinct.size !== 1 || seen.some((s) => s.endsWith("no answer"))) {
          problems.push(`shard ${shard.shardId} replicas differ: ${seen.join("; ")}`);
        }
      }
    }
    if (problems.length === 0) return [];
    await sleep(1000);
  }
  return problems;
}

async function checkRun(
  cluster: ChaosCluster,
  workloads: Workloads,
  probes: Probes,
  nemesis: Nemesis,
  faultWindow: { start: number; end: number },
  args: ChaosArgs,
  log: (line: string) => void,
): Promise<Verdict> {
  const problems: string[] = [...nemesis.problems];
  const lines: string[] = [];
  const h = workloads.history;
  for (const unexpected of h.unexpected) problems.push(`unexpected error: ${unexpected}`);

  try {
    await cluster.waitHealthy(120_000);
  } catch (error) {
    problems.push(`the cluster did not settle after healing: ${error}`);
  }
  problems.push(...await waitReplicasIdentical(cluster, 60_000));
  log("replicas compared; final reads");

  // Final reads through the gateways, after everything settled.
  const client = TinyKvClient.connect({
    endpoints: cluster.gateways.map((g) => g.address),
    deadlineMs: 15_000,
  });
  const register = [...h.register];
  const finalsAppend = new Map<string, string[]>();
  const finalsScan = new Map<string, Array<[string, string]>>();
  try {
    for (const key of new Set(h.register.map((op) => op.input.key))) {
      const invokeTime = Math.max(...register.map((op) => op.invokeTime)) + 1;
      const got = await client.get(key);
      register.push({
        clientId: "final",
        input: { kind: "get", key },
        output: { kind: "get", value: got.found ? text(got.value) : null },
        invokeTime,
        returnTime: invokeTime + 1,
      });
    }
    for (const key of new Set(h.appends.map((a) => a.key))) {
      const got = await client.get(key);
      const parsed = parseTokens(got.found ? text(got.value) : "");
      if (parsed.kind === "malformed") problems.push(`final read of "${key}": ${parsed.problem}`);
      else finalsAppend.set(key, parsed.tokens);
    }
    for (
      const prefix of new Set(h.scanWrites.map((w) => w.key.slice(0, w.key.indexOf("/", 2) + 1)))
    ) {
      const entries: Array<[string, string]> = [];
      for await (
        const kv of client.scanAll({ start: prefix, end: prefixEnd(prefix), pageSize: 500 })
      ) {
        entries.push([text(kv.key), text(kv.value)]);
      }
      finalsScan.set(prefix, entries);
    }
  } catch (error) {
    problems.push(`a final read failed: ${error}`);
  } finally {
    client.close();
  }

  // Linearizability of the register workload.
  const started = performance.now();
  const lin = check(registerModel, register as Operation<RegisterInput, RegisterOutput>[], {
    stepBudget: STEP_BUDGET,
  });
  const linMs = Math.round(performance.now() - started);
  const registerKeys = new Set(register.map((op) => op.input.key)).size;
  if (lin.kind === "illegal") {
    problems.push(
      `register key "${lin.key}" is not linearizable:\n${lin.explanation.summary}`,
    );
  } else if (lin.kind === "unknown") {
    problems.push(
      `the linearizability search ran out of its budget (${STEP_BUDGET} steps per key) on ` +
        `${lin.keys.join(", ")}: not shown linearizable`,
    );
  }
  lines.push(
    `register: ${h.completed.register} ok, ${h.registerUnknown} unknown, ${h.registerFailed} ` +
      `failed on ${registerKeys} keys; linearizability ${lin.kind} (${lin.stepsUsed} steps, ` +
      `${linMs} ms)`,
  );

  // Appends, from their unique tokens.
  const reads: ListRead[] = [];
  for (const read of h.reads) {
    const parsed = parseTokens(read.value);
    if (parsed.kind === "malformed") {
      problems.push(`read of "${read.key}" by ${read.client}: ${parsed.problem}`);
    } else reads.push({ ...read, tokens: parsed.tokens });
  }
  const appends = checkAppends({ appends: h.appends, reads, finals: finalsAppend });
  problems.push(...appends.problems);
  if (appends.problemCount > appends.problems.length) {
    problems.push(`… and ${appends.problemCount - appends.problems.length} more append problems`);
  }
  lines.push(
    `append: ${appends.appends.ok} ok, ${appends.appends.unknown} unknown, ` +
      `${appends.appends.failed} failed appends and ${appends.reads} reads on ${appends.keys} keys; ` +
      `${appends.problemCount} problems`,
  );

  // Scans.
  const scans = checkScans({ writes: h.scanWrites, scans: h.scans, finals: finalsScan });
  problems.push(...scans.problems);
  if (scans.problemCount > scans.problems.length) {
    problems.push(`… and ${scans.problemCount - scans.problems.length} more scan problems`);
  }
  lines.push(
    `scan: ${scans.writes.ok} ok, ${scans.writes.unknown} unknown, ${scans.writes.failed} failed ` +
      `writes; ${scans.scans} scans of ${scans.prefixes} prefixes; ${scans.problemCount} problems`,
  );

  // Bad-input probes.
  problems.push(...probes.report.problems);
  lines.push(
    `probes: ${probes.report.refused} bad requests refused with state untouched, ` +
      `${probes.report.skipped} probes skipped (calls could not get through); ` +
      `${probes.report.problems.length} problems`,
  );
  if (probes.report.refused === 0) problems.push("no bad-input probe got through");

  // Faults and availability.
  const applied = nemesis.timeline.filter((e) => e.skipped === undefined);
  const kinds = new Map<string, number>();
  for (const event of applied) kinds.set(event.kind, (kinds.get(event.kind) ?? 0) + 1);
  lines.push(
    `faults: ${applied.length} applied (${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}), ${
      nemesis.timeline.length - applied.length
    } skipped, over ${((faultWindow.end - faultWindow.start) / 1000).toFixed(0)} s`,
  );
  const windows = applied.map((e) => [e.start, e.end] as const);
  let during = 0;
  let duringOk = 0;
  let okTotal = 0;
  for (const call of h.calls) {
    if (call.ok) okTotal++;
    if (windows.some(([s, e]) => call.invoke >= s && call.invoke <= e)) {
      during++;
      if (call.ok) duringOk++;
    }
  }
  const availability = during === 0 ? 0 : duringOk / during;
  lines.push(
    `availability: ${(availability * 100).toFixed(1)}% of ${during} calls invoked while a fault ` +
      `was active succeeded; ${okTotal} of ${h.calls.length} calls in all`,
  );
  const completed = h.completed.register + h.completed.append + h.completed.scan;
  const keys = registerKeys + appends.keys + new Set(h.scanWrites.filter((w) => w.outcome === "ok"))
    .size;
  const minutes = (faultWindow.end - faultWindow.start) / 60_000;
  const opsFloor = Math.floor(OPERATIONS_PER_MINUTE_MIN * minutes);
  const keysFloor = Math.floor(KEYS_PER_MINUTE_MIN * minutes);
  lines.push(
    `traffic: ${completed} operations completed (floor ${opsFloor}), ${keys} keys (floor ${keysFloor})`,
  );
  if (completed < opsFloor) {
    problems.push(`only ${completed} operations completed (floor ${opsFloor})`);
  }
  if (keys < keysFloor) problems.push(`only ${keys} keys were used (floor ${keysFloor})`);
  if (applied.length < minutes * 4) {
    problems.push(`only ${applied.length} faults were applied in ${minutes.toFixed(1)} min`);
  }
  void args;
  return { problems, lines };
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
