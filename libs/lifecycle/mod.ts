/**
 * How a TinyKV process learns it should stop: SIGINT or SIGTERM, or — when its parent asked for it
 * by setting `TINYKV_EXIT_WITH_PARENT=1` and giving it a piped stdin — the end of that pipe. The
 * pipe closes however the parent ends (even by SIGKILL), so a dev cluster or a test run that dies
 * leaves no service process behind.
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

/** The environment variable a parent sets to make its child exit when the parent does. */
export const EXIT_WITH_PARENT_ENV = "TINYKV_EXIT_WITH_PARENT";

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
