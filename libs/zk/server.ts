/**
 * A harness that runs the real ZooKeeper (Debian's `zookeeper` package) as a child process, for
 * tests and for `deno task dev`.
 *
 * {@linkcode startZooKeeper} writes a `zoo.cfg` into the data directory, starts a standalone
 * server on a chosen or free port, and resolves once the server answers `ruok` with `imok`.
 * ZooKeeper's output goes to a log file (by default `<dataDir>/zookeeper.log`), never to the
 * parent's terminal.
 *
 * How the child is tied to this process: Java does not run directly under Deno but under a small
 * `sh` watchdog whose standard input is a pipe from this process. When this process closes the
 * pipe (on {@linkcode ZooKeeperServer.stop}) or exits for any reason — even SIGKILL — the pipe
 * reaches end-of-file and the watchdog sends SIGTERM to ZooKeeper. So ZooKeeper never outlives the
 * process that started it. The reported `pid` is Java's own.
 *
 * Permissions: `--allow-run=sh`, `--allow-net` (free port, `ruok`), `--allow-read` and
 * `--allow-write` (data directory, log, jar check).
 *
 * @example Start a server on a free port and stop it
 * ```ts ignore
 * import { startZooKeeper } from "@tinykv/zk/server";
 *
 * const dataDir = await Deno.makeTempDir();
 * const zk = await startZooKeeper({ dataDir, removeDataDirOnExit: true });
 * console.log(`ZooKeeper serves on ${zk.connectString} (pid ${zk.pid})`);
 * await zk.stop();
 * ```
 *
 * @module
 */

/** Where Debian's packages put the jars the server needs. */
export const ZOOKEEPER_JAR_DIR = "/usr/share/java";

/**
 * The jars on the server's class path, relative to {@linkcode ZOOKEEPER_JAR_DIR}. Debian's
 * `/usr/share/java/*` holds six SLF4J bindings and SLF4J picks one at random (often the no-op
 * one, which hides every log line), so the harness names one binding, `slf4j-simple`, whose
 * output goes to the log file.
 */
export const ZOOKEEPER_JARS: readonly string[] = [
  "zookeeper.jar",
  "zookeeper-jute.jar",
  "slf4j-api.jar",
  "slf4j-simple.jar",
];

/** What to tell a user whose machine lacks ZooKeeper. */
export const ZOOKEEPER_SETUP_HINT =
  'run the setup ("deno task setup") or install the Debian package "zookeeper"';

/** Default ZooKeeper tick; sessions may then be as short as two ticks (400 ms). */
export const TICK_TIME_MS_DEFAULT = 200;
/** Default longest session timeout the server grants. */
export const SESSION_TIMEOUT_MS_MAX_DEFAULT = 60_000;
/** Default bound on the wait for a started server to answer `ruok`. */
export const START_TIMEOUT_MS_DEFAULT = 30_000;
/** Default bound on each of the two waits in {@linkcode ZooKeeperServer.stop}. */
export const STOP_TIMEOUT_MS_DEFAULT = 10_000;
/** How many bytes of ZooKeeper's log an error message quotes. */
export const LOG_TAIL_BYTES_MAX = 4096;
/** The most connections ZooKeeper accepts from one IP address (its default, 60, is too few). */
export const CLIENT_CONNECTIONS_PER_HOST_MAX = 1000;

const FREE_PORT_ATTEMPTS_MAX = 3;
const POLL_INTERVAL_MS = 25;
const RUOK_TIMEOUT_MS = 1000;
const PID_REPORT_TIMEOUT_MS = 5000;

/** Whether the ZooKeeper jars are installed; see {@linkcode findZooKeeper}. */
export type ZooKeeperInstallation =
  | { kind: "installed"; classPath: string }
  | { kind: "missing"; missingPaths: string[]; message: string };

/**
 * Tells whether the jars in {@linkcode ZOOKEEPER_JARS} exist under `jarDir`. When some are
 * missing, `message` names them and says how to install them. Needs `--allow-read` on `jarDir`.
 */
export function findZooKeeper(jarDir: string = ZOOKEEPER_JAR_DIR): ZooKeeperInstallation {
  const paths = ZOOKEEPER_JARS.map((jar) => `${jarDir}/${jar}`);
  const missingPaths = paths.filter((path) => !isFile(path));
  if (missingPaths.length === 0) return { kind: "installed", classPath: paths.join(":") };
  const names = missingPaths.map((path) => `"${path}"`).join(", ");
  return {
    kind: "missing",
    missingPaths,
    message: `Cannot find ZooKeeper: ${names} missing; ${ZOOKEEPER_SETUP_HINT}`,
  };
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Options of {@linkcode startZooKeeper}. */
export interface StartZooKeeperOptions {
  /** The server's own directory: `zoo.cfg`, snapshots, transaction logs and (by default) its log. Created if missing. */
  dataDir: string;
  /** The client port; 0 or absent picks a free one. */
  port?: number;
  /** The address to listen on. Default `"127.0.0.1"`. */
  host?: string;
  /** ZooKeeper's `tickTime`. Default {@linkcode TICK_TIME_MS_DEFAULT}. */
  tickTimeMs?: number;
  /** ZooKeeper's `maxSessionTimeout`. Default {@linkcode SESSION_TIMEOUT_MS_MAX_DEFAULT}. */
  sessionTimeoutMsMax?: number;
  /** Where ZooKeeper's output goes (appended). Default `<dataDir>/zookeeper.log`. */
  logFile?: string;
  /** Bound on the wait until the server serves. Default {@linkcode START_TIMEOUT_MS_DEFAULT}. */
  startTimeoutMs?: number;
  /** Bound on each wait in `stop()`. Default {@linkcode STOP_TIMEOUT_MS_DEFAULT}. */
  stopTimeoutMs?: number;
  /** Delete `dataDir` once ZooKeeper has exited, however it exits. Default false. */
  removeDataDirOnExit?: boolean;
  /** The Java launcher. Default `"java"` from `PATH`. */
  java?: string;
  /** Where the jars are. Default {@linkcode ZOOKEEPER_JAR_DIR}. */
  jarDir?: string;
}

/** How the watchdog (and so ZooKeeper) ended. */
export interface ZooKeeperExit {
  /** The exit code: ZooKeeper's own, or 128 + the signal number when a signal ended it. */
  code: number;
}

/** A running ZooKeeper started by {@linkcode startZooKeeper}. */
export interface ZooKeeperServer {
  /** The address the server listens on. */
  readonly host: string;
  /** The client port. */
  readonly port: number;
  /** `host:port`, for ZooKeeper clients. */
  readonly connectString: string;
  /** The Java process's id. */
  readonly pid: number;
  /** The server's data directory (as given). */
  readonly dataDir: string;
  /** The file ZooKeeper's output goes to. */
  readonly logFile: string;
  /** Resolves when ZooKeeper has exited, whether by `stop()` or on its own. */
  readonly exited: Promise<ZooKeeperExit>;
  /**
   * Sends SIGTERM to the server's pid (through the watchdog) and waits for it to exit; after
   * `stopTimeoutMs` it sends SIGKILL itself (which needs `--allow-run`). Resolves once the process
   * is gone. Calling it again returns the same promise. Throws only if the process survives
   * SIGKILL for `stopTimeoutMs`.
   */
  stop(): Promise<void>;
}

/** Thrown by {@linkcode startZooKeeper} when the server cannot be started. */
export class ZooKeeperStartError extends Error {
  /** Creates the error; `message` already holds the log's tail. */
  constructor(message: string) {
    super(message);
    this.name = "ZooKeeperStartError";
  }
}

// The watchdog. Arguments: log file, directory to delete after exit ("" for none), then the
// command. It reports Java's pid on stdout, then waits for Java. A background subshell reads our
// stdin (a pipe from the Deno process) to end-of-file, sends SIGTERM to Java, waits until Java is
// gone and deletes the directory. The subshell does the cleanup because Deno kills its direct
// children (this shell) when it exits.
//
// Ctrl-C in a terminal sends SIGINT to the whole process group: the watchdog and ZooKeeper ignore
// it, so that the Deno process decides when ZooKeeper stops (and `exited` means Java exited).
const WATCHDOG_SCRIPT = `
trap '' INT
log="$1"; cleanup="$2"; shift 2
"$@" >>"$log" 2>&1 </dev/null &
zk=$!
echo "$zk"
exec 3<&0
(
  while read -r _ <&3; do :; done
  kill -TERM "$zk"
  while kill -0 "$zk"; do sleep 0.05; done
  if [ -n "$cleanup" ]; then rm -rf -- "$cleanup"; fi
) >/dev/null 2>&1 &
watcher=$!
exec 3<&- 0</dev/null >/dev/null
wait "$zk"
status=$?
kill "$watcher" 2>/dev/null
if [ -n "$cleanup" ]; then rm -rf -- "$cleanup"; fi
exit "$status"
`;

/**
 * Starts a standalone ZooKeeper and waits until it serves (answers `ruok` with `imok`).
 *
 * Throws {@linkcode ZooKeeperStartError} — an environment failure — when the jars are missing,
 * when the process exits before serving (e.g. the port is taken), or when it does not serve
 * within `startTimeoutMs`; the message quotes the end of ZooKeeper's log. With an automatically
 * chosen port, a lost race for the port is retried with another one.
 */
export async function startZooKeeper(options: StartZooKeeperOptions): Promise<ZooKeeperServer> {
  const installation = findZooKeeper(options.jarDir);
  if (installation.kind === "missing") throw new ZooKeeperStartError(installation.message);
  const host = options.host ?? "127.0.0.1";
  await Deno.mkdir(options.dataDir, { recursive: true });
  const absoluteDataDir = await Deno.realPath(options.dataDir);
  const logFile = options.logFile ?? `${absoluteDataDir}/zookeeper.log`;
  const pickPort = options.port === undefined || options.port === 0;
  for (let attempt = 1;; attempt++) {
    const port = pickPort ? freePort(host) : options.port!;
    const launched = await launch({
      ...options,
      host,
      port,
      logFile,
      absoluteDataDir,
      classPath: installation.classPath,
    });
    if (launched.kind === "serving") return launched.server;
    if (launched.portTaken && pickPort && attempt < FREE_PORT_ATTEMPTS_MAX) continue;
    throw new ZooKeeperStartError(launched.message);
  }
}

function freePort(host: string): number {
  const listener = Deno.listen({ hostname: host, port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

interface LaunchOptions extends StartZooKeeperOptions {
  host: string;
  port: number;
  logFile: string;
  absoluteDataDir: string;
  classPath: string;
}

type LaunchResult =
  | { kind: "serving"; server: ZooKeeperServer }
  | { kind: "failed"; message: string; portTaken: boolean };

async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const { host, port, logFile } = options;
  const configFile = `${options.absoluteDataDir}/zoo.cfg`;
  await Deno.writeTextFile(configFile, zooCfg(options));
  const logOffset = await fileSize(logFile);
  const cleanup = options.removeDataDirOnExit ? options.absoluteDataDir : "";
  const child = new Deno.Command("sh", {
    args: ["-c", WATCHDOG_SCRIPT, "zookeeper-watchdog", logFile, cleanup, ...javaArgs(options)],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const stdin = child.stdin.getWriter();
  let exit: ZooKeeperExit | undefined;
  const exited = child.status.then((status) => {
    exit = { code: status.code };
    return exit;
  });
  const pid = await readPid(child.stdout);
  const where = `${host}:${port}`;
  const deadline = Date.now() + (options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT);
  while (exit === undefined && Date.now() < deadline) {
    if (await ruok(host, port)) {
      const stop = stopper({ pid, exited, stdin, child, options });
      const server: ZooKeeperServer = {
        host,
        port,
        connectString: where,
        pid,
        dataDir: options.dataDir,
        logFile,
        exited,
        stop,
      };
      return { kind: "serving", server };
    }
    if (exit === undefined) await delay(POLL_INTERVAL_MS);
  }
  let reason: string;
  if (exit === undefined) {
    reason = `it did not serve within ${options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT} ms`;
    await stopper({ pid, exited, stdin, child, options })();
  } else {
    reason = `it exited with code ${exit.code} before serving`;
    await stdin.close().catch(() => {});
  }
  const tail = await readLogTail(logFile, logOffset);
  return {
    kind: "failed",
    message: `Cannot start ZooKeeper on ${where}: ${reason}; the end of "${logFile}":\n${tail}`,
    portTaken: tail.includes("Address already in use"),
  };
}

function zooCfg(options: LaunchOptions): string {
  const tickTimeMs = options.tickTimeMs ?? TICK_TIME_MS_DEFAULT;
  const lines = [
    "# Written by @tinykv/zk startZooKeeper(); rewritten on every start.",
    `tickTime=${tickTimeMs}`,
    `dataDir=${options.absoluteDataDir}`,
    `clientPort=${options.port}`,
    `clientPortAddress=${options.host}`,
    `minSessionTimeout=${2 * tickTimeMs}`,
    `maxSessionTimeout=${options.sessionTimeoutMsMax ?? SESSION_TIMEOUT_MS_MAX_DEFAULT}`,
    `maxClientCnxns=${CLIENT_CONNECTIONS_PER_HOST_MAX}`,
    "admin.enableServer=false",
    "4lw.commands.whitelist=ruok,srvr,stat",
    // Transaction log files are preallocated in steps of this many KiB (default 64 MiB).
    "preAllocSize=4096",
  ];
  return lines.join("\n") + "\n";
}

function javaArgs(options: LaunchOptions): string[] {
  return [
    options.java ?? "java",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Xms16m",
    "-Xmx512m",
    `-Dzookeeper.log.dir=${options.absoluteDataDir}`,
    "-Dzookeeper.jmx.log4j.disable=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
    "-cp",
    options.classPath,
    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
    `${options.absoluteDataDir}/zoo.cfg`,
  ];
}

async function readPid(stdout: ReadableStream<Uint8Array>): Promise<number> {
  const read = await readReportedPid(stdout, PID_REPORT_TIMEOUT_MS);
  if (typeof read === "number") return read;
  throw new ZooKeeperStartError(
    `Cannot start ZooKeeper: the watchdog reported no pid (it wrote "${read.printed}")`,
  );
}

/**
 * The PID a watchdog prints as the first line of its stdout (and nothing else there), or what it
 * printed instead when that is not a PID or no line came within `timeoutMs`. Also used by the
 * deployment test's process watchdog.
 */
export async function readReportedPid(
  stdout: ReadableStream<Uint8Array>,
  timeoutMs: number,
): Promise<number | { printed: string }> {
  const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => reader.cancel().catch(() => {}), timeoutMs);
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : { printed: text.trim() };
}

/** Asks the server `ruok`; true when it answers `imok`. Connection failures mean "not yet". */
async function ruok(host: string, port: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: host, port });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    return false;
  }
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      conn.close();
    }
  };
  const timer = setTimeout(close, RUOK_TIMEOUT_MS);
  try {
    await conn.write(new TextEncoder().encode("ruok"));
    const answer = await new Response(conn.readable).text();
    closed = true; // Reading to the end closed the connection.
    return answer === "imok";
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    close();
  }
}

interface StopperParts {
  pid: number;
  exited: Promise<ZooKeeperExit>;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  child: Deno.ChildProcess;
  options: LaunchOptions;
}

function stopper(parts: StopperParts): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  const stopTimeoutMs = parts.options.stopTimeoutMs ?? STOP_TIMEOUT_MS_DEFAULT;
  const stop = async () => {
    parts.child.ref();
    // Closing the pipe makes the watchdog send SIGTERM to the pid (no --allow-run needed for it).
    await parts.stdin.close().catch(() => {});
    if (await settlesWithin(parts.exited, stopTimeoutMs)) return;
    Deno.kill(parts.pid, "SIGKILL");
    if (await settlesWithin(parts.exited, stopTimeoutMs)) return;
    throw new Error(
      `Cannot stop ZooKeeper (pid ${parts.pid}): it is still running ${stopTimeoutMs} ms after SIGKILL`,
    );
  };
  return () => {
    stopping ??= stop();
    return stopping;
  };
}

async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
}

/**
 * Reads the end of a log file written after byte `fromOffset`: at most
 * {@linkcode LOG_TAIL_BYTES_MAX} bytes, starting at a line boundary. Returns a note instead when
 * the file cannot be read.
 */
export async function readLogTail(path: string, fromOffset = 0): Promise<string> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    return `(cannot read the log: ${error instanceof Error ? error.message : String(error)})`;
  }
  try {
    const size = (await file.stat()).size;
    const start = Math.max(fromOffset, size - LOG_TAIL_BYTES_MAX);
    await file.seek(start, Deno.SeekMode.Start);
    const bytes = new Uint8Array(size - start);
    let filled = 0;
    while (filled < bytes.length) {
      const read = await file.read(bytes.subarray(filled));
      if (read === null) break;
      filled += read;
    }
    let text = new TextDecoder().decode(bytes.subarray(0, filled));
    if (start > fromOffset) text = text.slice(text.indexOf("\n") + 1);
    return text.trimEnd() || "(the log is empty)";
  } finally {
    file.close();
  }
}
