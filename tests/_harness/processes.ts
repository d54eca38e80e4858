/**
 * Real TinyKV processes for integration tests: spawn a service on 127.0.0.1 with fast test
 * timings, wait (bounded) until it says it serves, stop it gracefully or kill it with SIGKILL, and
 * restart it on the same data. Output is kept for failure messages.
 *
 * @module
 */
import { EXIT_WITH_PARENT_ENV, serviceDenoFlags } from "@tinykv/lifecycle";
import { waitFor } from "@tinykv/zk/testing";

const REPO_ROOT = new URL("../..", import.meta.url).pathname;

/** Permissions every service process gets in tests (as the dev cluster grants them). */
export const SERVICE_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];

/**
 * Ports {@linkcode freePort} handed out in this process. The kernel may give a bind to port 0 the
 * port it just gave the last one, closed again before its service bound it (a test's ZooKeeper and
 * placement once got the same port that way).
 */
const handedOut = new Set<number>();

/**
 * A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after), never one this
 * process handed out before.
 */
export function freePort(): number {
  for (let attempt = 0; attempt < 100; attempt++) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error("Cannot find a free port not handed out before");
}

/** A running service process. */
export class ServiceProcess {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  /** A command the process runs under, e.g. `["ip", "netns", "exec", "ns1"]` (it must exec). */
  readonly prefix: readonly string[];
  #child: Deno.ChildProcess | undefined;
  #output = "";
  #exited: Promise<Deno.CommandStatus> | undefined;

  constructor(
    name: string,
    script: string,
    args: readonly string[],
    options: { prefix?: readonly string[] } = {},
  ) {
    this.name = name;
    this.script = script;
    this.args = args;
    this.prefix = options.prefix ?? [];
  }

  /** Everything the process printed, across restarts. */
  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the process and waits until its output matches `ready`. */
  async start(ready: RegExp, timeoutMs = 30_000): Promise<void> {
    const command = [
      ...this.prefix,
      Deno.execPath(),
      "run",
      ...serviceDenoFlags(),
      ...SERVICE_PERMISSIONS,
      `${REPO_ROOT}/${this.script}`,
      ...this.args,
    ];
    const child = new Deno.Command(command[0], {
      args: command.slice(1),
      cwd: REPO_ROOT,
      // The service exits when this pipe closes: a test run that dies leaves no process behind.
      env: { [EXIT_WITH_PARENT_ENV]: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    const mark = this.#output.length;
    const decoder = new TextDecoder();
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) this.#output += decoder.decode(chunk, { stream: true });
    };
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    this.#exited = child.status.then(async (status) => {
      await pumps;
      await child.stdin.close().catch(() => {});
      return status;
    });
    let exited = false;
    this.#exited.then(() => (exited = true));
    try {
      await waitFor(() => exited || ready.test(this.#output.slice(mark)), {
        timeoutMs,
        what: `${this.name} to start`,
      });
    } catch (error) {
      await this.kill();
      throw new Error(`${error}\n--- ${this.name} printed:\n${this.#output.slice(mark)}`);
    }
    if (exited) {
      this.#child = undefined;
      throw new Error(`${this.name} exited while starting:\n${this.#output.slice(mark)}`);
    }
  }

  /** Waits for the process to exit by itself; returns its status. */
  async exited(): Promise<Deno.CommandStatus> {
    const status = await this.#exited!;
    this.#child = undefined;
    return status;
  }

  /** Stops the process with SIGTERM and waits for it. */
  async stop(): Promise<Deno.CommandStatus | undefined> {
    return await this.#signal("SIGTERM");
  }

  /** Sends `signal` without waiting (SIGSTOP and SIGCONT pause and resume the process). */
  signal(signal: Deno.Signal): void {
    this.#child?.kill(signal);
  }

  /** Kills the process with SIGKILL (a crash) and waits for it. */
  async kill(): Promise<Deno.CommandStatus | undefined> {
    return await this.#signal("SIGKILL");
  }

  async #signal(signal: Deno.Signal): Promise<Deno.CommandStatus | undefined> {
    const child = this.#child;
    if (child === undefined) return undefined;
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
    const status = await this.#exited!;
    this.#child = undefined;
    return status;
  }
}
