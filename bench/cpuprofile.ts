/**
 * Summarizes V8 CPU profiles (`deno run --cpu-prof`, e.g. the services the benchmarks start with
 * `TINYKV_SERVICE_DENO_FLAGS="--cpu-prof --cpu-prof-dir=DIR"`): the share of samples spent in each
 * function itself (self time) and in each source file, over all the profiles given, so the largest
 * cost stands out without a flame-graph viewer; and the total (inclusive) time of each function. `--last S` counts only each profile's final S
 * seconds (e.g. the idle period after a cluster settled).
 *
 * ```sh
 * deno run --allow-read bench/cpuprofile.ts [--top 30] [--last SECONDS] DIR_OR_FILE...
 * ```
 *
 * @module
 */

/** One node of a `.cpuprofile` call tree. */
interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}

/** The parts of a `.cpuprofile` this reads. */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time in microseconds, by function (`name file:line`) and by file. */
export interface SelfTimes {
  readonly byFunction: Map<string, number>;
  readonly byFile: Map<string, number>;
  /** Total (inclusive) time by function: samples with the function anywhere on the stack. */
  readonly byFunctionTotal: Map<string, number>;
  totalUs: number;
}

/**
 * Adds `profile`'s samples to `into` (each sample counts its time delta to its leaf node), only
 * those of its last `lastUs` microseconds when given.
 */
export function addSelfTimes(profile: CpuProfile, into: SelfTimes, lastUs = Infinity): void {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parents.set(child, node.id);
  }
  let first = profile.samples.length;
  for (let spanUs = 0; first > 0 && spanUs < lastUs; first--) {
    spanUs += Math.max(0, profile.timeDeltas[first - 1] ?? 0);
  }
  for (let i = first; i < profile.samples.length; i++) {
    const node = nodes.get(profile.samples[i]);
    const us = Math.max(0, profile.timeDeltas[i] ?? 0);
    if (node === undefined) continue;
    const name = nameOf(node);
    into.byFunction.set(name, (into.byFunction.get(name) ?? 0) + us);
    const file = shortUrl(node.callFrame.url);
    into.byFile.set(file, (into.byFile.get(file) ?? 0) + us);
    into.totalUs += us;
    const onStack = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parents.get(id)) {
      const frame = nodes.get(id);
      if (frame !== undefined && frame.callFrame.functionName !== "(root)") {
        onStack.add(nameOf(frame));
      }
    }
    for (const name of onStack) {
      into.byFunctionTotal.set(name, (into.byFunctionTotal.get(name) ?? 0) + us);
    }
  }
}

function nameOf(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  return `${functionName || "(anonymous)"} ${shortUrl(url)}:${lineNumber + 1}`;
}

/** A URL shortened to what identifies it: the repository path or the npm package's file. */
export function shortUrl(url: string): string {
  if (url === "") return "(native)";
  const npm = url.match(/node_modules\/\.deno\/([^/]+)\/node_modules\/(.*)$/);
  if (npm !== null) return `npm:${npm[2]}`;
  const repo = url.match(/\/(libs|services|tools|tests|bench|proto)\/(.*)$/);
  if (repo !== null) return `${repo[1]}/${repo[2]}`;
  return url.replace(/^.*\/ext:/, "ext:");
}

/** The `top` largest entries of `times` as markdown rows: share of the total, ms, name. */
export function topRows(times: Map<string, number>, totalUs: number, top: number): string[] {
  return [...times].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) =>
    `| ${(100 * us / Math.max(1, totalUs)).toFixed(1)}% | ${(us / 1000).toFixed(0)} | ` +
    `${name.replaceAll("|", "\\|")} |`
  );
}

async function profilesIn(path: string): Promise<string[]> {
  const info = await Deno.stat(path);
  if (!info.isDirectory) return [path];
  const files: string[] = [];
  for await (const entry of Deno.readDir(path)) {
    if (entry.name.endsWith(".cpuprofile")) files.push(`${path}/${entry.name}`);
  }
  return files.sort();
}

async function main(): Promise<void> {
  let top = 30;
  let lastUs = Infinity;
  const paths: string[] = [];
  for (let i = 0; i < Deno.args.length; i++) {
    if (Deno.args[i] === "--top") top = Number(Deno.args[++i]);
    else if (Deno.args[i] === "--last") lastUs = Number(Deno.args[++i]) * 1e6;
    else paths.push(Deno.args[i]);
  }
  const times: SelfTimes = {
    byFunction: new Map(),
    byFile: new Map(),
    byFunctionTotal: new Map(),
    totalUs: 0,
  };
  for (const path of paths) {
    for (const file of await profilesIn(path)) {
      addSelfTimes(JSON.parse(await Deno.readTextFile(file)) as CpuProfile, times, lastUs);
    }
  }
  console.log(`Sampled ${(times.totalUs / 1e6).toFixed(2)} s in all.\n`);
  console.log("| self | ms | function |\n|---:|---:|---|");
  for (const row of topRows(times.byFunction, times.totalUs, top)) console.log(row);
  console.log("\n| self | ms | file |\n|---:|---:|---|");
  for (const row of topRows(times.byFile, times.totalUs, top)) console.log(row);
  console.log("\n| total | ms | function (self and what it called) |\n|---:|---:|---|");
  for (const row of topRows(times.byFunctionTotal, times.totalUs, top)) console.log(row);
}

if (import.meta.main) await main();
