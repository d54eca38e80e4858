// Checks `tools/dev.ts`, the program behind `deno task dev`, as a user runs it: it starts the real
// ZooKeeper, three kvnodes, placement and a gateway; placement creates the shards once and every
// shard gets a leader; writes are served through the gateway; Ctrl-C (SIGINT) stops every process
// it started; a second start finds the data of the first. Bad config stops it before anything
// starts. Waits are bounded polls, never fixed sleeps.
import assert from "node:assert/strict";
import { KVService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, unaryCaller } from "@tinykv/rpc";
import { waitFor } from "@tinykv/zk/testing";
import { freePort } from "./_harness/processes.ts";

const DEV_SCRIPT = new URL("../tools/dev.ts", import.meta.url).pathname;
const REPO_ROOT = new URL("..", import.meta.url).pathname;
const SHARDS = 4;

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

/** Four consecutive free ports (checked when asked). */
function freePortRun(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    try {
      const listeners = [0, 1, 2, 3].map((i) =>
        Deno.listen({ hostname: "127.0.0.1", port: base + i })
      );
      for (const listener of listeners) listener.close();
      return base;
    } catch {
      // Taken: try another run.
    }
  }
  throw new Error("Cannot find four consecutive free ports");
}

interface RunningDev {
  readonly dev: DevProcess;
  readonly pids: number[];
}

async function runUntilServing(args: string[]): Promise<RunningDev> {
  const dev = startDev(args);
  try {
    await waitFor(() => /dev: cluster serves/.test(dev.output()), {
      timeoutMs: 90_000,
      what: "the dev cluster to serve",
    });
  } catch (error) {
    dev.child.kill("SIGINT");
    await dev.done;
    throw new Error(`${error}\ndev printed:\n${dev.output()}`);
  }
  const pids = [...dev.output().matchAll(/[(,] ?pid (\d+)\)/g)].map((m) => Number(m[1]));
  return { dev, pids };
}

async function stopDev({ dev, pids }: RunningDev): Promise<void> {
  dev.child.kill("SIGINT");
  const status = await dev.child.status;
  await dev.done;
  assert.equal(status.code, 0, `dev exited with ${status.code}:\n${dev.output()}`);
  assert.match(dev.output(), /dev: stopped; data kept in/);
  await waitFor(() => pids.every((pid) => !processAlive(pid)), {
    timeoutMs: 15_000,
    what: `every process of the dev cluster to exit (${pids.join(", ")})`,
  });
}

async function gatewayCall<T>(
  port: number,
  work: (kv: GrpcClient<typeof KVService>) => Promise<T>,
): Promise<T> {
  const kv = createGrpcClient(KVService, `127.0.0.1:${port}`, { maxMessageBytes: 8 << 20 });
  try {
    return await work(kv);
  } finally {
    kv.close();
  }
}

Deno.test("deno task dev runs ZooKeeper and kvnodes, stops on SIGINT, keeps data", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  const base = freePortRun();
  const gatewayPort = freePort();
  const args = [
    `--storage.data_dir=${dataDir}`,
    `--log.dir=${dataDir}/logs`,
    `--zookeeper.port=${freePort()}`,
    `--kvnode.port=${base}`,
    `--rpc_server.port=${gatewayPort}`,
    `--placement.admin_port=${freePort()}`,
    `--placement.http_port=${freePort()}`,
    `--sharding.num_shards=${SHARDS}`,
    "--raft.tick_ms=50",
  ];
  const key = new TextEncoder().encode("kept across restarts");
  try {
    const first = await runUntilServing(args);
    assert.match(first.dev.output(), new RegExp(`${SHARDS}/${SHARDS} shards with a leader`));
    assert.equal(first.pids.length, 6, "ZooKeeper, three kvnodes, placement and gateway: pids");
    const put = await gatewayCall(
      gatewayPort,
      (kv) =>
        unaryCaller<typeof KVService, "Put">(kv, "Put")(
          { key, value: key, clientId: "", seq: 0, ackSeq: 0 },
          { deadlineMs: 10_000 },
        ),
    );
    assert.equal(put.kind, "ok", JSON.stringify(put));
    await stopDev(first);

    const second = await runUntilServing(args);
    assert.match(second.dev.output(), new RegExp(`${SHARDS}/${SHARDS} shards with a leader`));
    const got = await gatewayCall(
      gatewayPort,
      (kv) =>
        unaryCaller<typeof KVService, "Get">(kv, "Get")(
          { key, serializable: false },
          { deadlineMs: 10_000 },
        ),
    );
    assert.equal(got.kind === "ok" && got.response.found, true, JSON.stringify(got));
    await stopDev(second);

    // --fresh wipes the data; --nodes runs another number of kvnodes.
    const third = await runUntilServing([...args, "--fresh", "--nodes", "4"]);
    assert.match(third.dev.output(), /--fresh: removed/);
    assert.equal(third.pids.length, 7, "ZooKeeper, four kvnodes, placement and gateway: pids");
    const gone = await gatewayCall(
      gatewayPort,
      (kv) =>
        unaryCaller<typeof KVService, "Get">(kv, "Get")(
          { key, serializable: false },
          { deadlineMs: 10_000 },
        ),
    );
    assert.equal(gone.kind === "ok" && gone.response.found, false, JSON.stringify(gone));
    await stopDev(third);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("deno task dev refuses bad flags before starting anything", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  try {
    for (
      const [flags, message] of [
        [["--nodes", "0"], /Flag "--nodes" is "0": expected 1 to 9/],
        [["--nodes", "2"], /must be at least sharding\.replica_count \(3\)/],
        [["--verbose"], /Unknown argument "--verbose"/],
      ] as const
    ) {
      const dev = startDev([`--storage.data_dir=${dataDir}`, ...flags]);
      const status = await dev.child.status;
      await dev.done;
      assert.equal(status.code, 2);
      assert.match(dev.output(), message);
    }
    assert.deepEqual([...Deno.readDirSync(dataDir)], [], "nothing may be created");
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
