/**
 * {@linkcode HostProcess}: one process of the deployment test, started on a test host the way its
 * systemd unit would start it — the unit's command line, environment (and nothing else of this
 * process's), working directory and user — inside the host's network namespace.
 *
 * How the test stays in charge of what it starts: the command runs under a small `sh` watchdog
 * (in the namespace, as root) that starts it, reports its PID, and kills it with SIGTERM when the
 * watchdog's stdin (a pipe from this test) ends, which happens however the test ends, even by
 * SIGKILL. Signals go to the reported PID only: never by name. The user is set with `setpriv`,
 * which execs the command, so the PID is the service's own.
 *
 * @module
 */
import { readReportedPid } from "@tinykv/zk/server";

// Arguments: the output file, then the command. (A background job's stdin is /dev/null in a
// non-interactive shell, so the watcher reads the pipe through a copy of it, fd 3.)
const WATCHDOG = `
out="$1"; shift
"$@" >>"$out" 2>&1 </dev/null &
child=$!
echo "$child"
exec 3<&0
(
  while read -r _ <&3; do :; done
  kill -TERM "$child" 2>/dev/null
) >/dev/null 2>&1 &
watcher=$!
exec 3<&- 0</dev/null
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
`;

/** What a host process runs. */
export interface HostCommand {
  /** Shown in messages: `kvnode kv1`. */
  readonly name: string;
  /** The command prefix entering the host's namespace (`ip netns exec <ns>`). */
  readonly prefix: readonly string[];
  readonly argv: readonly string[];
  /** The whole environment of the process (as systemd gives one: no inherited variables). */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Run as this user and group (root when absent). */
  readonly user?: { readonly user: string; readonly group: string };
  /** Where its stdout and stderr go (appended, by the watchdog), as the journal keeps them. */
  readonly outputFile: string;
}

/** Bound on the wait for the watchdog to report the PID. */
const PID_TIMEOUT_MS = 10_000;

/** A process started from a {@linkcode HostCommand}; restartable. */
export class HostProcess {
  readonly command: HostCommand;
  #child: Deno.ChildProcess | undefined;
  #pid: number | undefined;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #exited: Promise<Deno.CommandStatus> | undefined;
  #status: Deno.CommandStatus | undefined;
  /** The output file's size when the current run started. */
  #mark = 0;

  constructor(command: HostCommand) {
    this.command = command;
  }

  /** The service's PID while it runs. */
  get pid(): number | undefined {
    return this.#status === undefined ? this.#pid : undefined;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#status === undefined;
  }

  /** How the last run ended, once it has. */
  get status(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** Starts it; resolves with its PID once the watchdog reports it. */
  async start(): Promise<number> {
    if (this.running) throw new Error(`${this.command.name} is already running`);
    const { prefix, argv, user, env, cwd, outputFile } = this.command;
    const run = user === undefined
      ? argv
      : ["setpriv", `--reuid=${user.user}`, `--regid=${user.group}`, "--clear-groups", ...argv];
    const command = [...prefix, "sh", "-c", WATCHDOG, "watchdog", outputFile, ...run];
    this.#mark = await fileSize(outputFile);
    this.#status = undefined;
    const child = new Deno.Command(command[0], {
      args: command.slice(1),
      cwd,
      clearEnv: true,
      env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#exited = child.status.then(async (status) => {
      this.#status = status;
      await this.#stdin?.close().catch(() => {});
      return status;
    });
    this.#pid = await readPid(child.stdout, this.command.name);
    return this.#pid;
  }

  /** What the current run has written so far. */
  async output(): Promise<string> {
    const bytes = await Deno.readFile(this.command.outputFile).catch(() => new Uint8Array());
    return new TextDecoder().decode(bytes.subarray(this.#mark));
  }

  /**
   * Waits until the current run's output matches `ready`; throws with the output when the run
   * ends first or `timeoutMs` passes. Returns the match.
   */
  async waitForOutput(ready: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const text = await this.output();
      const match = ready.exec(text);
      if (match !== null) return match;
      if (!this.running || Date.now() > deadline) {
        const why = this.running
          ? `it did not print ${ready} within ${timeoutMs} ms`
          : `it exited (${JSON.stringify(this.#status)})`;
        throw new Error(`${this.command.name}: ${why}; it printed:\n${text.slice(-3000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Sends `signal` to the service's PID (nothing when it is not running). */
  signal(signal: Deno.Signal): void {
    const pid = this.pid;
    if (pid === undefined) return;
    try {
      Deno.kill(pid, signal);
    } catch {
      // Gone already.
    }
  }

  /** Resolves when the current run has ended. */
  async exited(): Promise<Deno.CommandStatus | undefined> {
    return await this.#exited;
  }

  /**
   * Stops it as systemd would: SIGTERM, then SIGKILL after `timeoutMs` (TimeoutStopSec). Returns
   * how it ended, and whether the SIGTERM sufficed.
   */
  async stop(timeoutMs: number): Promise<{ status?: Deno.CommandStatus; killed: boolean }> {
    if (!this.running) return { status: this.#status, killed: false };
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const first = await Promise.race([this.#exited!, timedOut]);
    clearTimeout(timer);
    if (first !== "timeout") return { status: first, killed: false };
    this.signal("SIGKILL");
    return { status: await this.#exited, killed: true };
  }
}

/** Reads the PID the watchdog prints on its stdout (nothing else is printed there). */
async function readPid(stream: ReadableStream<Uint8Array>, name: string): Promise<number> {
  const read = await readReportedPid(stream, PID_TIMEOUT_MS);
  if (typeof read === "number") return read;
  throw new Error(`${name}: the watchdog reported no PID (it printed "${read.printed}")`);
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}
