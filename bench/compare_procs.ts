/**
 * The processes and temp dirs of one `deno task bench:compare` run, and reading `/proc`.
 *
 * Every process the comparison starts is registered in a {@linkcode ProcessRegistry}; stopping
 * sends SIGTERM to each by its pid, then SIGKILL after a bound, so a run leaves nothing behind,
 * also on an error or Ctrl-C. What a process prints goes to a log file in the run's temp dir
 * (and, line by line, to an optional callback).
 *
 * Deno lets a script read `/proc` only with `--allow-all`, so `/proc` files are read with `cat`
 * (`--allow-run=cat`), and a process that is not our child is signalled with `kill`
 * (`--allow-run=kill`; `Deno.kill` would need `--allow-run` for every program).
 *
 * @module
 */
import {
  type MachineCpu,
  parseMachineCpu,
  parseProcStats,
  parseStatusRssKib,
  type ProcStat,
} from "./compare_stats.ts";

/** How long a process may take to exit after SIGTERM before it gets SIGKILL. */
export const STOP_GRACE_MS = 15_000;

/** A process this run started. */
export interface TrackedProcess {
  /** For messages, e.g. `etcd m1`. */
  readonly name: string;
  /** Its process id. */
  readonly pid: number;
  /** The child process handle. */
  readonly child: Deno.ChildProcess;
  /** Resolves once it exited and its output is written to its log. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Set once it exited. */
  status: Deno.CommandStatus | undefined;
}

/** How to start a process. */
export interface SpawnOptions {
  /** The program. */
  readonly command: string;
  /** Its arguments. */
  readonly args: readonly string[];
  /** Its working directory. */
  readonly cwd?: string;
  /** Extra environment variables. */
  readonly env?: Record<string, string>;
  /** Appends everything it prints here. */
  readonly logFile: string;
  /** Called with each line it prints on stderr, and on stdout unless `captureStdout`. */
  readonly onLine?: (line: string) => void;
  /** Keep stdout apart (returned by {@linkcode ProcessRegistry.spawn} as `stdout`). */
  readonly captureStdout?: boolean;
}

/** The processes and temp dirs of a run. */
export class ProcessRegistry {
  readonly #processes = new Set<TrackedProcess>();
  readonly #tempDirs = new Set<string>();

  /** Makes a temp dir that {@linkcode cleanUp} removes. */
  async tempDir(prefix: string): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix });
    this.#tempDirs.add(dir);
    return dir;
  }

  /** Removes a temp dir now. */
  async removeTempDir(dir: string): Promise<void> {
    this.#tempDirs.delete(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  /** Starts a process; its stdout is collected into `stdout` when `captureStdout` is set. */
  spawn(name: string, options: SpawnOptions): { process: TrackedProcess; stdout: Promise<string> } {
    const child = new Deno.Command(options.command, {
      args: [...options.args],
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const file = Deno.openSync(options.logFile, { append: true, create: true });
    const capture = options.captureStdout === true;
    const stdout = pump(child.stdout, file, capture ? undefined : options.onLine, capture);
    const stderr = pump(child.stderr, file, options.onLine, false);
    const outputDone = Promise.all([stdout, stderr]).finally(() => file.close());
    const tracked: TrackedProcess = {
      name,
      pid: child.pid,
      child,
      status: undefined,
      exited: child.status.then(async (status) => {
        await outputDone.catch(() => {});
        tracked.status = status;
        this.#processes.delete(tracked);
        return status;
      }),
    };
    this.#processes.add(tracked);
    return { process: tracked, stdout };
  }

  /** Stops every process still running (in reverse start order), then removes the temp dirs. */
  async cleanUp(): Promise<void> {
    for (const process of [...this.#processes].reverse()) await stopProcess(process);
    for (const dir of this.#tempDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
    this.#tempDirs.clear();
  }
}

/** Copies a stream to `file`, line by line to `onLine`; resolves to all of it when `keep`. */
async function pump(
  stream: ReadableStream<Uint8Array>,
  file: Deno.FsFile,
  onLine: ((line: string) => void) | undefined,
  keep: boolean,
): Promise<string> {
  const decoder = new TextDecoder();
  let kept = "";
  let partial = "";
  for await (const chunk of stream) {
    for (let written = 0; written < chunk.length;) {
      written += file.writeSync(chunk.subarray(written));
    }
    const text = decoder.decode(chunk, { stream: true });
    if (keep) kept += text;
    if (onLine === undefined) continue;
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    for (const line of lines) onLine(line);
  }
  if (onLine !== undefined && partial !== "") onLine(partial);
  return kept;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited. */
export async function stopProcess(process: TrackedProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (process.status !== undefined) return;
  signalChild(process, "SIGTERM");
  const timer = setTimeout(() => signalChild(process, "SIGKILL"), graceMs);
  try {
    await process.exited;
  } finally {
    clearTimeout(timer);
  }
}

function signalChild(process: TrackedProcess, signal: Deno.Signal): void {
  try {
    process.child.kill(signal);
  } catch {
    // It exited meanwhile.
  }
}

/** Sends `signal` to any process by pid with `kill`; false when it failed (e.g. no such pid). */
export async function killPid(pid: number, signal: "KILL" | "TERM"): Promise<boolean> {
  const output = await new Deno.Command("kill", {
    args: [`-${signal}`, String(pid)],
    stdout: "null",
    stderr: "null",
  }).output();
  return output.success;
}

/** Reads files `cat` can read (missing ones are skipped silently), concatenated. */
export async function readWithCat(paths: readonly string[]): Promise<string> {
  const output = await new Deno.Command("cat", {
    args: [...paths],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(output.stdout);
}

/** One sample of the CPU time of some processes and of the machine. */
export interface CpuSample {
  /** Each running process's `/proc/<pid>/stat`, by pid. */
  readonly stats: ReadonlyMap<number, ProcStat>;
  /** The machine's CPU time (`/proc/stat`). */
  readonly machine: MachineCpu | undefined;
  /** `performance.now()` when it was taken. */
  readonly atMs: number;
}

/** Samples `/proc/<pid>/stat` of each pid and `/proc/stat`. */
export async function sampleCpu(pids: readonly number[]): Promise<CpuSample> {
  const text = await readWithCat([...pids.map((pid) => `/proc/${pid}/stat`), "/proc/stat"]);
  return { stats: parseProcStats(text), machine: parseMachineCpu(text), atMs: performance.now() };
}

/** Resident memory (VmRSS, KiB) of each pid that is running. */
export async function sampleRssKib(pids: readonly number[]): Promise<Map<number, number>> {
  return parseStatusRssKib(await readWithCat(pids.map((pid) => `/proc/${pid}/status`)));
}

/** Whether a process with this pid exists and is not a zombie. */
export async function isRunning(pid: number): Promise<boolean> {
  const state = /^State:\s+(\S)/m.exec(await readWithCat([`/proc/${pid}/status`]))?.[1];
  return state !== undefined && state !== "Z" && state !== "X";
}

/** USER_HZ, the unit of `/proc/<pid>/stat` times, from `getconf CLK_TCK` (100 if unknown). */
export async function clockTicksPerSecond(): Promise<number> {
  try {
    const output = await new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" })
      .output();
    const ticks = Number(new TextDecoder().decode(output.stdout).trim());
    if (output.success && Number.isSafeInteger(ticks) && ticks > 0) return ticks;
  } catch {
    // No getconf: Linux's USER_HZ is 100 on every architecture we run on.
  }
  return 100;
}

/** Sleeps `ms` milliseconds (for polling loops with a bound; never to wait for a condition). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
