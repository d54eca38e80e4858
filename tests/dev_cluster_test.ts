// Checks `tools/dev.ts`, the program behind `deno task dev`, as a user runs it: it starts the real
// ZooKeeper, three kvnodes, placement and a gateway; placement creates the shards once and every
// shard gets a leader; it prints a table of every process and `deno task tinykv` commands, which
// the test runs as printed; every process logs under `log.dir`; writes are served through the
// gateway; Ctrl-C (SIGINT) stops every process it started (no process mentioning the test's data
// dir remains); a second start finds the data of the first; `--fresh` wipes it. Bad config stops it
// before anything starts. Waits are bounded polls, never fixed sleeps.
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

/**
 * The live (not zombie) processes, with their command lines, as `ps` lists them. Asked of `ps`
 * because Deno reads `/proc` only with every permission, and a test must not get "nothing found"
 * for an answer it was not allowed to read.
 */
async function liveProcesses(): Promise<Array<{ pid: number; args: string }>> {
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
async function processesMentioning(text: string): Promise<number[]> {
  return (await liveProcesses()).filter((p) => p.args.includes(text)).map((p) => p.pid);
}

async function anyAlive(pids: readonly number[]): Promise<boolean> {
  const live = new Set((await liveProcesses()).map((p) => p.pid));
  return pids.some((pid) => live.has(pid));
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
    await waitFor(() => /dev: press Ctrl-C to stop/.test(dev.output()), {
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

async function stopDev({ dev, pids }: RunningDev, dataDir: string): Promise<void> {
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

/** The `deno task tinykv …` commands the dev cluster printed, in order. */
function printedCommands(output: string): string[] {
  return [...output.matchAll(/^ {2}(deno task tinykv .*)$/gm)].map((m) => m[1]);
}

/** Runs a printed `deno task tinykv …` command as a user would paste it (no quoting needed). */
async function runPrinted(
  commands: readonly string[],
  prefix: string,
): Promise<{ code: number; stdout: string }> {
  const line = commands.find((c) => c.startsWith(prefix));
  assert.ok(line !== undefined, `no printed command starts with "${prefix}": ${commands}`);
  const [deno, ...args] = line.split(" ");
  assert.equal(deno, "deno");
  const output = await new Deno.Command(Deno.execPath(), { args, cwd: REPO_ROOT }).output();
  return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
}

/** Waits (bounded) until `<logDir>` holds each process's files; returns the names it holds. */
async function assertLogFiles(logDir: string, services: readonly string[]): Promise<void> {
  const names = () => [...Deno.readDirSync(logDir)].map((e) => e.name);
  const missing = () => [
    ...(names().includes("zookeeper.log") ? [] : ["zookeeper.log"]),
    ...services.flatMap((s) => [
      ...(names().some((n) => new RegExp(`^${s}-\\d{4}-\\d{2}-\\d{2}\\.log$`).test(n))
        ? []
        : [`${s}-YYYY-MM-DD.log`]),
      ...(names().includes(`${s}.out`) ? [] : [`${s}.out`]),
    ]),
  ];
  await waitFor(() => missing().length === 0, {
    timeoutMs: 10_000,
    what: `every process's log files in ${logDir} (missing: ${missing().join(", ")})`,
  });
  for (const service of services) {
    assert.match(Deno.readTextFileSync(`${logDir}/${service}.out`), /serving on/);
  }
  assert.match(Deno.readTextFileSync(`${logDir}/zookeeper.log`), /binding to port/i);
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
  const logDir = `${dataDir}/logs`;
  const base = freePortRun();
  const gatewayPort = freePort();
  const zkPort = freePort();
  const adminPort = freePort();
  const httpPort = freePort();
  const args = [
    `--storage.data_dir=${dataDir}`,
    `--log.dir=${logDir}`,
    `--zookeeper.port=${zkPort}`,
    `--kvnode.port=${base}`,
    `--rpc_server.port=${gatewayPort}`,
    `--placement.admin_port=${adminPort}`,
    `--placement.http_port=${httpPort}`,
    `--sharding.num_shards=${SHARDS}`,
    "--raft.tick_ms=50",
  ];
  const key = new TextEncoder().encode("kept across restarts");
  try {
    const first = await runUntilServing(args);
    const output = first.dev.output();
    assert.match(output, new RegExp(`${SHARDS}/${SHARDS} shards with a leader`));
    assert.equal(first.pids.length, 6, "ZooKeeper, three kvnodes, placement and gateway: pids");
    for (
      const row of [
        `ZooKeeper  127.0.0.1:${zkPort}`,
        `placement  127.0.0.1:${adminPort}`,
        `gateway    127.0.0.1:${gatewayPort}`,
        `kvnode     127.0.0.1:${base}`,
        `kvnode     127.0.0.1:${base + 2}`,
      ]
    ) assert.ok(output.includes(`  ${row} `), `status table row "${row}":\n${output}`);
    assert.match(output, new RegExp(`status page http://127\\.0\\.0\\.1:${httpPort}/`));
    // The CLI's defaults are the dev ports; these are not, so the commands name them.
    const endpoint = `--endpoint 127.0.0.1:${gatewayPort}`;
    const commands = printedCommands(output);
    assert.deepEqual(commands, [
      `deno task tinykv ${endpoint} put hello world`,
      `deno task tinykv ${endpoint} get hello`,
      `deno task tinykv ${endpoint} scan`,
      `deno task tinykv --placement 127.0.0.1:${adminPort} status`,
      "deno task tinykv --help",
    ]);
    assert.match(output, new RegExp(`dev: logs in ${logDir} `));
    await assertLogFiles(logDir, [
      `kvnode-${base}`,
      `kvnode-${base + 1}`,
      `kvnode-${base + 2}`,
      `placement-${adminPort}`,
      `gateway-${gatewayPort}`,
    ]);
    assert.deepEqual(await runPrinted(commands, `deno task tinykv ${endpoint} put`), {
      code: 0,
      stdout: "OK\n",
    });
    const status = await runPrinted(commands, "deno task tinykv --placement");
    assert.equal(status.code, 0, status.stdout);
    assert.match(status.stdout, new RegExp(`127\\.0\\.0\\.1:${base + 1}`));
    const put = await gatewayCall(
      gatewayPort,
      (kv) =>
        unaryCaller<typeof KVService, "Put">(kv, "Put")(
          { key, value: key, clientId: "", seq: 0, ackSeq: 0 },
          { deadlineMs: 10_000 },
        ),
    );
    assert.equal(put.kind, "ok", JSON.stringify(put));
    await stopDev(first, dataDir);

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
    const hello = await runPrinted(
      printedCommands(second.dev.output()),
      `deno task tinykv ${endpoint} get`,
    );
    assert.deepEqual(hello, { code: 0, stdout: "world\n" });
    await stopDev(second, dataDir);

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
    const noHello = await runPrinted(
      printedCommands(third.dev.output()),
      `deno task tinykv ${endpoint} get`,
    );
    assert.deepEqual(noHello, { code: 1, stdout: "" });
    await stopDev(third, dataDir);
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
