// Checks `tools/dev.ts`, the program behind `deno task dev`, as a user runs it: it starts the real
// ZooKeeper on the configured port with its data under the data dir, Ctrl-C (SIGINT) stops it and
// leaves no process behind, and a second start finds the data of the first. Bad config stops it
// before anything starts. Waits are bounded polls, never fixed sleeps.
import assert from "node:assert/strict";
import { connectZooKeeper } from "@tinykv/zk";
import { waitFor } from "@tinykv/zk/testing";

const DEV_SCRIPT = new URL("../tools/dev.ts", import.meta.url).pathname;
const REPO_ROOT = new URL("..", import.meta.url).pathname;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

interface DevProcess {
  readonly child: Deno.ChildProcess;
  output(): string;
  readonly done: Promise<void>;
}

function startDev(args: string[]): DevProcess {
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

function processAlive(pid: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[2] !== "Z";
  } catch {
    return false;
  }
}

interface RunningDev {
  readonly dev: DevProcess;
  readonly zkPid: number;
}

async function runUntilServing(dataDir: string, port: number): Promise<RunningDev> {
  const dev = startDev([`--storage.data_dir=${dataDir}`, `--zookeeper.port=${port}`]);
  const serving = /ZooKeeper serves on .* \(pid (\d+)\)/;
  try {
    await waitFor(() => serving.test(dev.output()), {
      timeoutMs: 30_000,
      what: "the dev cluster to report ZooKeeper serving",
    });
  } catch (error) {
    dev.child.kill("SIGKILL");
    await dev.done;
    throw new Error(`${error}\ndev printed:\n${dev.output()}`);
  }
  return { dev, zkPid: Number(serving.exec(dev.output())?.[1]) };
}

async function stopDev({ dev, zkPid }: RunningDev): Promise<void> {
  dev.child.kill("SIGINT");
  const status = await dev.child.status;
  await dev.done;
  assert.equal(status.code, 0, `dev exited with ${status.code}:\n${dev.output()}`);
  assert.match(dev.output(), /dev: stopped; data kept in/);
  await waitFor(() => !processAlive(zkPid), { timeoutMs: 10_000, what: "ZooKeeper to exit" });
}

Deno.test("deno task dev serves ZooKeeper, stops on SIGINT and keeps data across restarts", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  const port = freePort();
  try {
    const first = await runUntilServing(dataDir, port);
    const client = await connectZooKeeper({ connectString: `127.0.0.1:${port}`, root: "/tinykv" });
    const created = await client.create("/kept", new TextEncoder().encode("across restarts"));
    assert.equal(created.kind, "ok");
    await client.close();
    await stopDev(first);

    const second = await runUntilServing(dataDir, port);
    const again = await connectZooKeeper({ connectString: `127.0.0.1:${port}`, root: "/tinykv" });
    const node = await again.get("/kept");
    await again.close();
    assert.equal(new TextDecoder().decode(node?.data), "across restarts");
    await stopDev(second);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("deno task dev refuses a bad config before starting anything", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  try {
    const dev = startDev([`--storage.data_dir=${dataDir}`, "--zookeeper.port=70000"]);
    const status = await dev.child.status;
    await dev.done;
    assert.equal(status.code, 2);
    assert.match(
      dev.output(),
      /Cannot load config "default_config\.toml": key "zookeeper\.port" must be an integer from 1 to 65535: got 70000/,
    );
    assert.deepEqual([...Deno.readDirSync(dataDir)], [], "nothing may be created");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
