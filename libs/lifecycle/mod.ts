/**
 * How a TinyKV service process starts and stops. {@linkcode runService} loads the config, opens
 * the logger and reports failures the same way in every service. {@linkcode waitForShutdown}
 * resolves on SIGINT or SIGTERM, or — when its parent asked for it by setting
 * `TINYKV_EXIT_WITH_PARENT=1` and giving it a piped stdin — at the end of that pipe. The pipe
 * closes however the parent ends (even by SIGKILL), so a dev cluster or a test run that dies leaves
 * no service process behind.
 *
 * ```ts ignore
 * import { waitForShutdown } from "@tinykv/lifecycle";
 *
 * const reason = await waitForShutdown();
 * console.log(`stopping: ${reason}`);
 * ```
 *
 * @module
 */

import { type Config, loadConfigFromArgs } from "@tinykv/config";
import { type Logger, openLogger } from "@tinykv/log";

/** The environment variable a parent sets to make its child exit when the parent does. */
export const EXIT_WITH_PARENT_ENV = "TINYKV_EXIT_WITH_PARENT";

/**
 * The environment variable naming extra `deno run` flags for the services the dev cluster, the
 * tests and the benchmarks start (space-separated), e.g. to profile them:
 * `TINYKV_SERVICE_DENO_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" deno task dev`.
 */
export const SERVICE_DENO_FLAGS_ENV = "TINYKV_SERVICE_DENO_FLAGS";

/** The flags {@linkcode SERVICE_DENO_FLAGS_ENV} names (none when unset). */
export function serviceDenoFlags(): string[] {
  const flags = Deno.env.get(SERVICE_DENO_FLAGS_ENV) ?? "";
  return flags.split(" ").filter((flag) => flag !== "");
}

/** Why a process stops. */
export type ShutdownReason = "SIGINT" | "SIGTERM" | "parent exited";

/**
 * Resolves on the first of SIGINT, SIGTERM or (when `TINYKV_EXIT_WITH_PARENT=1`) the end of stdin,
 * then stops listening for them.
 */
export function waitForShutdown(): Promise<ShutdownReason> {
  return new Promise((resolve) => {
    let done = false;
    const signals = ["SIGINT", "SIGTERM"] as const;
    const handlers = signals.map((signal) => [signal, () => finish(signal)] as const);
    function finish(reason: ShutdownReason): void {
      if (done) return;
      done = true;
      for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
      resolve(reason);
    }
    for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
    if (Deno.env.get(EXIT_WITH_PARENT_ENV) === "1") {
      watchStdin().then(() => finish("parent exited"));
    }
  });
}

/** Resolves when stdin reaches its end (or fails); whatever arrives on it is ignored. */
async function watchStdin(): Promise<void> {
  const buffer = new Uint8Array(256);
  try {
    while ((await Deno.stdin.read(buffer)) !== null) {
      // The parent never writes; anything it does write is ignored.
    }
  } catch {
    // A broken pipe means the parent is gone, as an end of file does.
  }
}

/** What {@linkcode runService} needs to start a service process. */
export interface ServiceMain {
  /** The service's name, for messages (`kvnode`, `gateway`, …). */
  readonly service: string;
  /** The log file's name for this instance, from its config (e.g. `gateway-7700`). */
  readonly logName: (config: Config) => string;
  /** The service itself; resolves to the process's exit code. */
  readonly run: (config: Config, log: Logger) => Promise<number>;
}

/**
 * The common start of every service process: loads the config named by `args` (2 and a precise
 * message on bad config or an unknown argument, before anything starts), opens the service's logger
 * as the config says, runs the service, and turns an unexpected failure into exit code 1 with a
 * message. The logger is flushed and closed before it returns.
 */
export async function runService(args: readonly string[], main: ServiceMain): Promise<number> {
  const loaded = loadConfigFromArgs(args, { defaultPath: "default_config.toml" });
  if (loaded.kind === "error") {
    console.error(`${main.service}: ${loaded.message}`);
    return 2;
  }
  if (loaded.rest.length > 0) {
    console.error(
      `${main.service}: Unknown argument "${loaded.rest[0]}": expected --section.key=value`,
    );
    return 2;
  }
  const { config } = loaded;
  const log = openLogger({
    dir: config.log.dir,
    name: main.logName(config),
    level: config.log.level,
    batchBytes: config.log.batch_bytes,
    flushIntervalMs: config.log.flush_interval_ms,
    bufferBytesMax: config.log.buffer_bytes_max,
    overflow: config.log.overflow,
    alsoStderr: config.log.stderr,
  });
  try {
    return await main.run(config, log);
  } catch (error) {
    log.error(`${main.service} failed`, { error });
    console.error(`${main.service}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await log.close();
  }
}
