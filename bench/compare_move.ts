/**
 * The time to move one replica of a large shard, measured by running the existing snapshot
 * benchmark (bench/snapshot_move.ts, of the TinyKV checkout under test) as a sub-process with
 * `--gib N --json`: four real kvnodes, a shard filled with N GiB, a fourth node given a replica
 * (streamed as a snapshot), promoted, and a source replica removed. Its JSON result is kept whole;
 * the transfer time and rate are picked out for the report.
 *
 * @module
 */
import { type ProcessRegistry, stopProcess } from "./compare_procs.ts";
import type { MoveResult } from "./compare_report.ts";

/** The permissions `deno task bench:snapshot` gives the benchmark. */
const MOVE_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-net=127.0.0.1",
  "--allow-env",
];
/** Bound on the whole benchmark (fill, restart, move); its own move timeout is 30 min. */
const MOVE_TIMEOUT_MS = 45 * 60_000;

/** Runs `<root>/bench/snapshot_move.ts --gib <gib> --json` and reads its result. */
export async function runMove(
  registry: ProcessRegistry,
  options: { root: string; gib: number; logDir: string; say: (line: string) => void },
): Promise<MoveResult> {
  const script = `${options.root}/bench/snapshot_move.ts`;
  try {
    await Deno.stat(script);
  } catch {
    return { kind: "failed", message: `${script} does not exist in that checkout` };
  }
  const { process, stdout } = registry.spawn("snapshot move", {
    command: "deno",
    args: ["run", ...MOVE_PERMISSIONS, script, "--gib", String(options.gib), "--json"],
    cwd: options.root,
    logFile: `${options.logDir}/snapshot_move.log`,
    captureStdout: true,
    onLine: (line) => line.trim() !== "" && options.say(`  move: ${line}`),
  });
  const timer = setTimeout(() => stopProcess(process), MOVE_TIMEOUT_MS);
  try {
    const status = await process.exited;
    if (!status.success) {
      return { kind: "failed", message: `snapshot_move.ts exited with code ${status.code}` };
    }
    return moveResultOf(await stdout);
  } finally {
    clearTimeout(timer);
  }
}

/** Picks the figures out of snapshot_move.ts's JSON result. */
export function moveResultOf(json: string): MoveResult {
  let details: Record<string, unknown>;
  try {
    details = JSON.parse(json);
  } catch {
    return { kind: "failed", message: `snapshot_move.ts printed no JSON: ${json.slice(0, 200)}` };
  }
  const number = (name: string): number => {
    const value = details[name];
    return typeof value === "number" ? value : NaN;
  };
  return {
    kind: "ok",
    shardBytes: number("shardBytes"),
    copySeconds: number("copySeconds"),
    copyMibPerSecond: number("copyMibPerSecond"),
    moveSeconds: number("moveSeconds"),
    details,
  };
}
