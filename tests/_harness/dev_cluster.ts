/**
 * Running the dev cluster (`tools/dev.ts`, behind `deno task dev`) from a test, as a user runs it:
 * on free ports (none the defaults, and with room for each service's `/metrics` port), waiting
 * (bounded) until it serves, and stopping it with Ctrl-C (SIGINT) while checking that every
 * process it started is gone.
 *
 * @module
 */
import assert from "node:assert/strict";
import { waitFor } from "@tinykv/zk/testing";

/** The script behind `deno task dev`. */
export const DEV_SCRIPT: string = new URL("../../tools/dev.ts", import.meta.url).pathname;
/** The repository root, where a user runs it. */
export const REPO_ROOT: string = new URL("../..", import.meta.url).pathname;

export interface DevProcess {
  readonly child: Deno.ChildProcess;
  output(): string;
  readonly done: Promise<void>;
}

export function startDev(args: string[]): DevProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      DEV_SCRIPT,
      ...args,
    ],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const done = Promise.all([pump(child.stdout), pump(child.stderr)]).then(() => {});
  return { child, output: () => text, done };
}

/**
 * The live (not zombie) processes, with their command lines, as `ps` lists them. Asked of `ps`
 * because Deno reads `/proc` only with every permission, and a test must not get "nothing found"
 * for an answer it was not allowed to read.
 */
export async function liveProcesses(): Promise<Array<{ pid: number; args: string }>> {
  const output = await new Deno.Command("ps", {
    args: ["-eo", "pid=,stat=,args="],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, `ps failed: ${new TextDecoder().decode(output.stderr)}`);
  const processes: Array<{ pid: number; args: string }> = [];
  for (const line of new TextDecoder().decode(output.stdout).split("\n")) {
    const match = /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(line);
    if (match !== null && !match[2].startsWith("Z")) {
      processes.push({ pid: Number(match[1]), args: match[3] });
    }
  }
  assert.ok(processes.some((p) => p.pid === Deno.pid), "ps lists this test's own process");
  return processes;
}

/** The live processes whose command line mentions `text` (the test's unique data dir). */
export async function processesMentioning(text: string): Promise<number[]> {
  return (await liveProcesses()).filter((p) => p.args.includes(text)).map((p) => p.pid);
}

export async function anyAlive(pids: readonly number[]): Promise<boolean> {
  const live = new Set((await liveProcesses()).map((p) => p.pid));
  return pids.some((pid) => live.has(pid));
}

/**
 * Ports drawn for a test's services lie in [20,000, 32,700): below Linux's ephemeral range
 * (32,768–60,999), so no client socket takes one as its source port while the service is down,
 * and probing a stopped service's port cannot connect to itself.
 */
const DRAWN_PORTS_FROM = 20_000;
const DRAWN_PORTS_TO = 32_700;

/**
 * A port drawn from the range, free when asked together with the ports at `offsets` from it (each
 * offset at least 0; the largest stays in the range too).
 */
function drawFree(offsets: readonly number[], what: string): number {
  const span = Math.max(...offsets);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = DRAWN_PORTS_FROM +
      Math.floor(Math.random() * (DRAWN_PORTS_TO - span - DRAWN_PORTS_FROM));
    if (portsFree(offsets.map((offset) => port + offset))) return port;
  }
  throw new Error(`Cannot find ${what}`);
}

/**
 * Four consecutive free ports for kvnodes, whose `/metrics` ports (each + 1000) are free too
 * (checked when asked).
 */
export function freePortRun(): number {
  return drawFree([0, 1, 2, 3, 1000, 1001, 1002, 1003], "four consecutive free ports");
}

/** A free port for a gateway whose `/metrics` port (+ 90) is free too (checked when asked). */
export function freeGatewayPort(): number {
  return drawFree([0, 90], "a free gateway port");
}

/** A free port in the drawn range (checked when asked). */
function freeDrawnPort(): number {
  return drawFree([0], "a free port");
}

function portsFree(ports: readonly number[]): boolean {
  const listeners: Deno.Listener[] = [];
  try {
    for (const port of ports) listeners.push(Deno.listen({ hostname: "127.0.0.1", port }));
    return true;
  } catch {
    return false;
  } finally {
    for (const listener of listeners) listener.close();
  }
}

/** The ports of a dev cluster started by a test (none of them the defaults). */
export interface DevPorts {
  /** The first kvnode's; the others follow it. */
  readonly base: number;
  readonly gateway: number;
  readonly zk: number;
  readonly admin: number;
  readonly http: number;
}

/**
 * Free ports for a dev cluster, all in the drawn range and all different, their `/metrics` ports
 * included. Each is checked free on its own, so two draws could name one port (the harness once gave
 * ZooKeeper and placement the same one): drawn again until none is shared.
 */
export function devPorts(): DevPorts {
  for (let attempt = 0; attempt < 50; attempt++) {
    const ports = {
      base: freePortRun(),
      gateway: freeGatewayPort(),
      zk: freeDrawnPort(),
      admin: freeDrawnPort(),
      http: freeDrawnPort(),
    };
    const used = devPortsUsed(ports);
    if (new Set(used).size === used.length) return ports;
  }
  throw new Error("Cannot find dev ports that are all different");
}

/** Every port a dev cluster on `ports` listens on: the services' and their `/metrics` ports. */
export function devPortsUsed(ports: DevPorts): number[] {
  return [
    ...[0, 1, 2, 3].flatMap((i) => [ports.base + i, ports.base + 1000 + i]),
    ports.gateway,
    ports.gateway + 90,
    ports.zk,
    ports.admin,
    ports.http,
  ];
}

/**
 * Ports a test's cluster stays off, with their `/metrics` ports: a developer's own dev cluster on
 * the defaults (7700–7999), one moved by +10,000 (17700–18999, ZooKeeper 22181), and 24300–24400.
 */
export const PORTS_AVOIDED: ReadonlyArray<readonly [number, number]> = [
  [7700, 7999],
  [17700, 18999],
  [22181, 22181],
  [24300, 24400],
];

/** {@linkcode devPorts}, drawn again until neither they nor their metrics ports are avoided. */
export function devPortsAvoiding(
  avoided: ReadonlyArray<readonly [number, number]> = PORTS_AVOIDED,
): DevPorts {
  for (let attempt = 0; attempt < 100; attempt++) {
    const ports = devPorts();
    const used = devPortsUsed(ports);
    if (!used.some((port) => avoided.some(([lo, hi]) => port >= lo && port <= hi))) {
      return ports;
    }
  }
  throw new Error("Cannot find dev ports outside the avoided ranges");
}

/** The command line of a dev cluster with its data and logs in `dataDir`, on `ports`. */
export function devArgs(dataDir: string, ports: DevPorts, shards = 4): string[] {
  return [
    `--storage.data_dir=${dataDir}`,
    `--log.dir=${dataDir}/logs`,
    `--zookeeper.port=${ports.zk}`,
    `--kvnode.port=${ports.base}`,
    `--rpc_server.port=${ports.gateway}`,
    `--placement.admin_port=${ports.admin}`,
    `--placement.http_port=${ports.http}`,
    `--sharding.num_shards=${shards}`,
    "--raft.tick_ms=50",
  ];
}

export interface RunningDev {
  readonly dev: DevProcess;
  readonly pids: number[];
}

export async function runUntilServing(args: string[]): Promise<RunningDev> {
  const dev = startDev(args);
  let exited = false;
  dev.child.status.then(() => (exited = true));
  try {
    await waitFor(() => exited || /dev: press Ctrl-C to stop/.test(dev.output()), {
      timeoutMs: 90_000,
      what: "the dev cluster to serve",
    });
    if (exited) throw new Error("dev exited before the cluster served");
  } catch (error) {
    killQuietly(dev.child, "SIGINT");
    await dev.done;
    throw new Error(`${error}\ndev printed:\n${dev.output()}`);
  }
  const pids = [...dev.output().matchAll(/[(,] ?pid (\d+)\)/g)].map((m) => Number(m[1]));
  return { dev, pids };
}

export function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already gone.
  }
}

/**
 * Kills a dev cluster that a failed test left running (its services and ZooKeeper exit with it);
 * does nothing once it has exited.
 */
export async function killDev(running: RunningDev | undefined): Promise<void> {
  if (running === undefined) return;
  killQuietly(running.dev.child, "SIGKILL");
  await running.dev.done;
}

export async function stopDev({ dev, pids }: RunningDev, dataDir: string): Promise<void> {
  dev.child.kill("SIGINT");
  const status = await dev.child.status;
  await dev.done;
  assert.equal(status.code, 0, `dev exited with ${status.code}:\n${dev.output()}`);
  assert.match(dev.output(), /dev: stopped; data kept in/);
  await waitFor(async () => !(await anyAlive(pids)), {
    timeoutMs: 15_000,
    what: `every process of the dev cluster to exit (${pids.join(", ")})`,
  });
  // Also the ones it does not report, such as ZooKeeper's watchdog shell.
  let left: number[] = [];
  await waitFor(async () => (left = await processesMentioning(dataDir)).length === 0, {
    timeoutMs: 15_000,
    what: `no process mentioning ${dataDir}`,
  }).catch((error) => {
    throw new Error(`${error}; left: ${left.join(", ")}`);
  });
}

/** The `deno task tinykv …` commands dev printed under "Try it". */
export function printedCommands(output: string): string[] {
  return [...output.matchAll(/^ {2}(deno task tinykv .*)$/gm)].map((m) => m[1]);
}
