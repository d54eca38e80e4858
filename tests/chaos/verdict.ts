/**
 * What the fault test concludes once the faults are over and the cluster healed: it waits for
 * the cluster to settle, compares every shard's replicas, reads every key the workloads touched,
 * and runs the checks — linearizability of the register history, the append and scan checkers,
 * the bad-input probes and the legal requests at the limits, the floors on traffic, on each
 * workload, on faults and on legal boundary probes ({@linkcode evaluateFloors}) — into a list of
 * problems (empty when the run passes) and the lines of its report.
 *
 * @module
 */
import { text, TinyKvClient } from "@tinykv/client";
import { check, registerModel } from "@tinykv/lincheck";
import type { Operation, RegisterInput, RegisterOutput } from "@tinykv/lincheck";
import {
  type AppendReport,
  checkAppends,
  checkScans,
  type ListRead,
  parseTokens,
  type ScanReport,
} from "./checks.ts";
import type { ChaosCluster } from "./cluster.ts";
import { evaluateFloors, type RunCounts } from "./floors.ts";
import { type Nemesis, sleep } from "./nemesis.ts";
import type { Probes } from "./probes.ts";
import { type History, prefixEnd } from "./workloads.ts";

/** The linearizability search's budget per key, in steps. */
export const STEP_BUDGET = 2_000_000;

/** The outcome of a run: problems (none when it passed) and the report's summary lines. */
export interface Verdict {
  readonly problems: string[];
  readonly lines: string[];
}

/** Everything a verdict is drawn from. */
export interface RunRecord {
  readonly cluster: ChaosCluster;
  readonly history: History;
  readonly probes: Probes;
  readonly nemesis: Nemesis;
  /** When the faults began and ended, on the run's clock. */
  readonly faultWindow: { readonly start: number; readonly end: number };
  /** The run's clock (ms). */
  readonly now: () => number;
  readonly log: (line: string) => void;
}

/** The reads made once everything settled. */
interface FinalReads {
  /** One get of every register key, as history operations after every other. */
  readonly register: Operation<RegisterInput, RegisterOutput>[];
  readonly appends: Map<string, string[]>;
  readonly scans: Map<string, Array<[string, string]>>;
}

/** Settles the cluster, reads back everything and checks the run. */
export async function judge(run: RunRecord): Promise<Verdict> {
  const verdict: Verdict = { problems: [...run.nemesis.problems], lines: [] };
  for (const unexpected of run.history.unexpected) {
    verdict.problems.push(`unexpected error: ${unexpected}`);
  }
  try {
    await run.cluster.waitHealthy(120_000);
  } catch (error) {
    verdict.problems.push(`the cluster did not settle after healing: ${error}`);
  }
  verdict.problems.push(...await waitReplicasIdentical(run.cluster, 60_000));
  run.log("replicas compared; reading every key back");
  const finals = await finalReads(run, verdict);
  checkRegister(run.history, finals, verdict);
  const appends = checkAppendWorkload(run.history, finals, verdict);
  const scans = checkScanWorkload(run.history, finals, verdict);
  checkProbes(run.probes, verdict);
  const h = run.history;
  const faults = checkFaults(run, verdict);
  checkFloors(verdict, (run.faultWindow.end - run.faultWindow.start) / 60_000, {
    operations: h.completed.register + h.completed.append + h.completed.scan,
    keys: finals.register.length + appends.keys + scans.writes.ok,
    faults,
    register: { operations: h.completed.register, keys: finals.register.length },
    append: { appends: appends.appends.ok, reads: appends.reads, keys: appends.keys },
    scan: {
      writes: scans.writes.ok,
      scans: scans.scans,
      prefixes: new Set(h.scans.map((scan) => scan.prefix)).size,
    },
    boundary: run.probes.boundary.ok,
  });
  return verdict;
}

/**
 * Waits until every member of each shard (as placement lists them) reports the same applied
 * index and data hash; returns the differences still seen at the deadline.
 */
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
        const seen = [...shard.voters, ...shard.learners].map((member) => {
          const replica = statuses.get(member)?.replicas.find((r) => r.shardId === shard.shardId);
          return replica === undefined
            ? `${member}: no answer`
            : `${member}: applied ${replica.appliedIndex} hash ${replica.dataHash}`;
        });
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

/** Reads every key the workloads touched, through the gateways, with long deadlines. */
async function finalReads(run: RunRecord, verdict: Verdict): Promise<FinalReads> {
  const finals: FinalReads = { register: [], appends: new Map(), scans: new Map() };
  const h = run.history;
  const client = TinyKvClient.connect({
    endpoints: run.cluster.gateways.map((g) => g.address),
    deadlineMs: 15_000,
    security: { ...run.cluster.clientSecurity, token: run.cluster.clientToken },
  });
  try {
    for (const key of new Set(h.register.map((op) => op.input.key))) {
      const invokeTime = run.now();
      const got = await client.get(key);
      finals.register.push({
        clientId: "final",
        input: { kind: "get", key },
        output: { kind: "get", value: got.found ? text(got.value) : null },
        invokeTime,
        returnTime: run.now(),
      });
    }
    for (const key of new Set(h.appends.map((a) => a.key))) {
      const got = await client.get(key);
      const parsed = parseTokens(got.found ? text(got.value) : "");
      if (parsed.kind === "ok") finals.appends.set(key, parsed.tokens);
      else verdict.problems.push(`final read of "${key}": ${parsed.problem}`);
    }
    const prefixes = new Set(h.scanWrites.map((w) => w.key.slice(0, w.key.indexOf("/", 2) + 1)));
    for (const prefix of prefixes) {
      const entries: Array<[string, string]> = [];
      const range = { start: prefix, end: prefixEnd(prefix), pageSize: 500 };
      for await (const kv of client.scanAll(range)) {
        entries.push([text(kv.key), text(kv.value)]);
      }
      finals.scans.set(prefix, entries);
    }
  } catch (error) {
    verdict.problems.push(`a final read failed: ${error}`);
  } finally {
    client.close();
  }
  return finals;
}

/** Checks the register history, final reads included, for linearizability. */
function checkRegister(h: History, finals: FinalReads, verdict: Verdict): void {
  const history = [...h.register, ...finals.register];
  const started = performance.now();
  const result = check(registerModel, history, { stepBudget: STEP_BUDGET });
  const ms = Math.round(performance.now() - started);
  if (result.kind === "illegal") {
    verdict.problems.push(
      `register key "${result.key}" is not linearizable:\n${result.explanation.summary}`,
    );
  } else if (result.kind === "unknown") {
    verdict.problems.push(
      `the linearizability search ran out of its budget (${STEP_BUDGET} steps per key) on ` +
        `${result.keys.join(", ")}: not shown linearizable`,
    );
  }
  verdict.lines.push(
    `register: ${h.completed.register} ok, ${h.registerUnknown} unknown, ${h.registerFailed} ` +
      `failed on ${finals.register.length} keys; linearizability ${result.kind} ` +
      `(${result.stepsUsed} steps, ${ms} ms)`,
  );
}

/** Checks the append workload from its unique tokens; returns the checker's report. */
function checkAppendWorkload(h: History, finals: FinalReads, verdict: Verdict): AppendReport {
  const reads: ListRead[] = [];
  for (const read of h.reads) {
    const parsed = parseTokens(read.value);
    if (parsed.kind === "ok") reads.push({ ...read, tokens: parsed.tokens });
    else verdict.problems.push(`read of "${read.key}" by ${read.client}: ${parsed.problem}`);
  }
  const report = checkAppends({ appends: h.appends, reads, finals: finals.appends });
  verdict.problems.push(...report.problems);
  if (report.problemCount > report.problems.length) {
    verdict.problems.push(
      `… and ${report.problemCount - report.problems.length} more append problems`,
    );
  }
  verdict.lines.push(
    `append: ${report.appends.ok} ok, ${report.appends.unknown} unknown, ` +
      `${report.appends.failed} failed appends and ${report.reads} reads on ${report.keys} ` +
      `keys; ${report.problemCount} problems`,
  );
  return report;
}

/** Checks the scan workload; returns the checker's report. */
function checkScanWorkload(h: History, finals: FinalReads, verdict: Verdict): ScanReport {
  const report = checkScans({ writes: h.scanWrites, scans: h.scans, finals: finals.scans });
  verdict.problems.push(...report.problems);
  if (report.problemCount > report.problems.length) {
    verdict.problems.push(
      `… and ${report.problemCount - report.problems.length} more scan problems`,
    );
  }
  verdict.lines.push(
    `scan: ${report.writes.ok} ok, ${report.writes.unknown} unknown, ${report.writes.failed} ` +
      `failed writes; ${report.scans} scans of ${report.prefixes} prefixes; ` +
      `${report.problemCount} problems`,
  );
  return report;
}

function checkProbes(probes: Probes, verdict: Verdict): void {
  const { refused, skipped, problems } = probes.report;
  verdict.problems.push(...problems);
  if (refused === 0) verdict.problems.push("no bad-input probe got through");
  verdict.lines.push(
    `probes: ${refused} bad requests refused with the state untouched, ${skipped} probes ` +
      `skipped (a call could not get through); ${problems.length} problems`,
  );
  const boundary = probes.boundary;
  verdict.problems.push(...boundary.wrong);
  const byKind = (counts: Record<string, number>) =>
    Object.entries(counts).map(([kind, n]) => `${kind} ${n}`).join(", ");
  const codes = [...boundary.unknownCodes].map(([code, n]) => `${code} ${n}`).join(", ");
  verdict.lines.push(
    `legal boundary probes (4,096-byte keys, 1 MiB values): ${boundary.okTotal} ok ` +
      `(${byKind(boundary.ok)}), ${boundary.unknownTotal} unknown (${byKind(boundary.unknown)}` +
      `${codes === "" ? "" : `; ${codes}`}), ${boundary.wrong.length} wrong`,
  );
}

/** Counts faults and availability while they were active; returns the faults applied. */
function checkFaults(run: RunRecord, verdict: Verdict): number {
  const { nemesis, history: h, faultWindow } = run;
  const applied = nemesis.timeline.filter((e) => e.skipped === undefined);
  const kinds = new Map<string, number>();
  for (const event of applied) kinds.set(event.kind, (kinds.get(event.kind) ?? 0) + 1);
  const seconds = (faultWindow.end - faultWindow.start) / 1000;
  verdict.lines.push(
    `faults: ${applied.length} applied (${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}), ` +
      `${nemesis.timeline.length - applied.length} skipped, over ${seconds.toFixed(0)} s`,
  );
  verdict.lines.push(availabilityLine(h.calls, applied.map((e) => [e.start, e.end] as const)));
  return applied.length;
}

/** Checks the run's counts against the floors; one report line lists them all. */
function checkFloors(verdict: Verdict, minutes: number, counts: RunCounts): void {
  const { results, problems } = evaluateFloors(counts, minutes);
  verdict.problems.push(...problems);
  verdict.lines.push(
    `floors (${minutes.toFixed(1)} min of faults): ` +
      results.map((r) => `${r.what} ${r.seen} (floor ${r.floor})`).join(", "),
  );
}

/**
 * The share of calls invoked while a fault was active that succeeded (the client retries within
 * its deadline, so a fault shows as latency until it outlasts the deadline), and the latency of
 * those calls against the calls made in calm.
 */
function availabilityLine(
  calls: History["calls"],
  windows: ReadonlyArray<readonly [number, number]>,
): string {
  // Faults come one after another: with the calls sorted by invoke time, one merge pass.
  const sorted = [...calls].sort((a, b) => a.invoke - b.invoke);
  const during: number[] = [];
  const calm: number[] = [];
  let duringOk = 0;
  let w = 0;
  for (const call of sorted) {
    while (w < windows.length && windows[w][1] < call.invoke) w++;
    const faulted = w < windows.length && windows[w][0] <= call.invoke;
    if (faulted && call.ok) duringOk++;
    (faulted ? during : calm).push(call.ms);
  }
  const share = during.length === 0 ? 0 : (100 * duringOk) / during.length;
  return `availability: ${share.toFixed(2)}% of the ${during.length} calls invoked while a fault ` +
    `was active succeeded (${during.length - duringOk} failed); latency during faults ` +
    `${percentiles(during)}, in calm ${percentiles(calm)}`;
}

function percentiles(samples: number[]): string {
  if (samples.length === 0) return "(no calls)";
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
  return `p50 ${at(0.5).toFixed(0)} ms, p99 ${at(0.99).toFixed(0)} ms, max ` +
    `${samples[samples.length - 1].toFixed(0)} ms`;
}
