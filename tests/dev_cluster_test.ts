// Checks `tools/dev.ts`, the program behind `deno task dev`, as a user runs it: it starts the real
// ZooKeeper, three kvnodes, placement and a gateway; placement creates the shards once and every
// shard gets a leader; it prints a table of every process and `deno task tinykv` commands, which
// the test runs as printed; every process logs under `log.dir`; writes are served through the
// gateway; Ctrl-C (SIGINT) stops every process it started (no process mentioning the test's data
// dir remains); a second start finds the data of the first; `--fresh` wipes it. Bad config stops it
// before anything starts. It survives its members: a kvnode killed with SIGKILL is reported and
// restarted (new pid, same port and data) while writes through the gateway go on and every key
// reads back; with `--no-restart` a killed gateway and a stopped kvnode stay down while the rest
// keeps answering; ZooKeeper exiting stops everything with exit code 1; a kvnode whose port is
// taken stops the start with its error instead of being restarted. Waits are bounded polls, never
// fixed sleeps; the one observation window (that nothing is restarted under `--no-restart`) keeps
// checking the rest of the cluster while it lasts.
import assert from "node:assert/strict";
import { KVService, NodeAdminService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, unaryCaller } from "@tinykv/rpc";
import { waitFor } from "@tinykv/zk/testing";
import {
  anyAlive,
  devArgs,
  devPorts,
  type DevProcess,
  killDev,
  liveProcesses,
  printedCommands,
  processesMentioning,
  REPO_ROOT,
  type RunningDev,
  runUntilServing,
  startDev,
  stopDev,
} from "./_harness/dev_cluster.ts";

const SHARDS = 4;

/** The `deno task tinykv …` commands the dev cluster printed, in order. */

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
  const ports = devPorts();
  const { base, gateway: gatewayPort, zk: zkPort, admin: adminPort, http: httpPort } = ports;
  const args = devArgs(dataDir, ports);
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
    assert.match(output, new RegExp(`dashboard http://127\\.0\\.0\\.1:${httpPort}/`));
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

/** The pid the status table gives for `service` on `port`. */
function tablePid(output: string, service: string, port: number): number {
  const row = new RegExp(`^ {2}${service} +127\\.0\\.0\\.1:${port} +(\\d+) {2}`, "m").exec(output);
  assert.ok(row !== null, `no table row for ${service} :${port}:\n${output}`);
  return Number(row[1]);
}

/** Waits (bounded) until dev has printed a line matching `pattern`; returns the match. */
async function waitForLine(dev: DevProcess, pattern: RegExp, timeoutMs: number) {
  let match: RegExpExecArray | null = null;
  await waitFor(() => (match = pattern.exec(dev.output())) !== null, {
    timeoutMs,
    what: `dev to print ${pattern}`,
  }).catch((error) => {
    throw new Error(`${error}; dev printed:\n${dev.output()}`);
  });
  return match!;
}

const encoder = new TextEncoder();

/** Writes `key` = `key` through the gateway, retrying (bounded) until an attempt succeeds. */
async function putWithin(
  kv: GrpcClient<typeof KVService>,
  key: string,
  timeoutMs: number,
): Promise<void> {
  const put = unaryCaller<typeof KVService, "Put">(kv, "Put");
  let last = "";
  await waitFor(async () => {
    const bytes = encoder.encode(key);
    const result = await put(
      { key: bytes, value: bytes, clientId: "", seq: 0, ackSeq: 0 },
      { deadlineMs: 5_000 },
    );
    last = JSON.stringify(result);
    return result.kind === "ok";
  }, { timeoutMs, what: `a write of "${key}" through the gateway to succeed` }).catch((error) => {
    throw new Error(`${error}; last answer: ${last}`);
  });
}

/** Reads `key` through the gateway (linearizable), retrying (bounded) until an attempt answers. */
async function getWithin(
  kv: GrpcClient<typeof KVService>,
  key: string,
  timeoutMs: number,
): Promise<string | undefined> {
  const get = unaryCaller<typeof KVService, "Get">(kv, "Get");
  let value: string | undefined;
  let last = "";
  await waitFor(async () => {
    const result = await get(
      { key: encoder.encode(key), serializable: false },
      { deadlineMs: 5_000 },
    );
    last = JSON.stringify(result);
    if (result.kind !== "ok") return false;
    value = result.response.found ? new TextDecoder().decode(result.response.value) : undefined;
    return true;
  }, { timeoutMs, what: `a read of "${key}" through the gateway` }).catch((error) => {
    throw new Error(`${error}; last answer: ${last}`);
  });
  return value;
}

/** Whether the kvnode on `port` answers its node-admin `Status` call. */
async function kvnodeAnswers(port: number): Promise<boolean> {
  const admin = createGrpcClient(NodeAdminService, `127.0.0.1:${port}`, {
    maxMessageBytes: 8 << 20,
  });
  try {
    const result = await unaryCaller(admin, "Status")({
      withDataHash: false,
      resetTurnStats: false,
      sinceVersion: 0,
      sinceStartedAtMs: 0,
    }, {
      deadlineMs: 2_000,
    });
    return result.kind === "ok";
  } finally {
    admin.close();
  }
}

/** Whether placement's HTTP `GET /status` on `port` answers 200. */
async function placementAnswers(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/status`, {
      signal: AbortSignal.timeout(2_000),
    });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

/** Whether anything accepts TCP connections on 127.0.0.1:`port`. */
async function listening(port: number): Promise<boolean> {
  try {
    const connection = await Deno.connect({ hostname: "127.0.0.1", port });
    // A connect to a port nothing listens on can pick that very port as its source and connect
    // to itself (TCP simultaneous open): that is not a server.
    const self = (connection.localAddr as Deno.NetAddr).port === port;
    connection.close();
    return !self;
  } catch {
    return false;
  }
}

Deno.test("deno task dev restarts a kvnode killed with SIGKILL while writes go on", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  const ports = devPorts();
  const victimPort = ports.base + 1;
  let running: RunningDev | undefined;
  try {
    running = await runUntilServing(devArgs(dataDir, ports));
    const { dev } = running;
    assert.match(dev.output(), /dev: a kvnode, placement or the gateway that exits is restarted/);
    const victim = tablePid(dev.output(), "kvnode", victimPort);
    const others = running.pids.filter((pid) => pid !== victim);
    const before = Array.from({ length: 5 }, (_, i) => `before-${i}`);
    const after = Array.from({ length: 5 }, (_, i) => `after-${i}`);
    const restarted = await gatewayCall(ports.gateway, async (kv) => {
      for (const key of before) await putWithin(kv, key, 15_000);
      Deno.kill(victim, "SIGKILL");
      await waitForLine(
        dev,
        new RegExp(`dev: kvnode :${victimPort} exited \\(pid ${victim}, killed by SIGKILL\\)`),
        10_000,
      );
      // Two of each shard's three replicas remain: after an election the writes go on.
      for (const key of after) await putWithin(kv, key, 15_000);
      const line = await waitForLine(
        dev,
        new RegExp(`dev: restarted kvnode :${victimPort} \\(pid (\\d+)\\)`),
        30_000,
      );
      const pid = Number(line[1]);
      assert.notEqual(pid, victim);
      await waitForLine(dev, new RegExp(`dev: kvnode :${victimPort} serves again: `), 30_000);
      await waitFor(() => kvnodeAnswers(victimPort), {
        timeoutMs: 10_000,
        what: `the restarted kvnode :${victimPort} to answer`,
      });
      for (const key of [...before, ...after]) {
        assert.equal(await getWithin(kv, key, 15_000), key, `key "${key}" reads back`);
      }
      return pid;
    });
    const live = new Set((await liveProcesses()).map((p) => p.pid));
    assert.ok(live.has(restarted), `the restarted kvnode (pid ${restarted}) runs`);
    assert.ok(!live.has(victim), `the killed kvnode (pid ${victim}) is gone`);
    for (const pid of others) assert.ok(live.has(pid), `pid ${pid} kept running:\n${dev.output()}`);
    assert.doesNotMatch(dev.output(), /dev: stopping/);
    assert.match(
      dev.output(),
      new RegExp(`the last lines of ${dataDir}/logs/kvnode-${victimPort}\\.out:\\n {2}\\| `),
    );
    // Killed again soon after its restart, it waits twice as long; Ctrl-C cancels that restart.
    Deno.kill(restarted, "SIGKILL");
    await waitForLine(dev, new RegExp(`dev: restarting kvnode :${victimPort} in 4 s`), 10_000);
    await stopDev({ dev, pids: [...running.pids, restarted] }, dataDir);
    assert.equal(
      [...dev.output().matchAll(/dev: restarted /g)].length,
      1,
      `a pending restart must not start a process after Ctrl-C:\n${dev.output()}`,
    );
  } finally {
    await killDev(running);
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("deno task dev --no-restart keeps an exited process down, the rest running", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  const ports = devPorts();
  const stoppedPort = ports.base + 2;
  let running: RunningDev | undefined;
  try {
    running = await runUntilServing([...devArgs(dataDir, ports), "--no-restart"]);
    const { dev } = running;
    assert.match(dev.output(), /dev: --no-restart: .* stays down/);
    const gateway = tablePid(dev.output(), "gateway", ports.gateway);
    const kvnode = tablePid(dev.output(), "kvnode", stoppedPort);
    Deno.kill(gateway, "SIGKILL");
    await waitForLine(
      dev,
      new RegExp(`dev: gateway :${ports.gateway} exited \\(pid ${gateway}, killed by SIGKILL\\)`),
      10_000,
    );
    await waitForLine(dev, new RegExp(`dev: gateway :${ports.gateway} stays down`), 10_000);
    // A clean exit (SIGTERM) is reported without the output's tail, and stays down too.
    Deno.kill(kvnode, "SIGTERM");
    await waitForLine(
      dev,
      new RegExp(`dev: kvnode :${stoppedPort} exited \\(pid ${kvnode}, exit code 0\\)`),
      15_000,
    );
    await waitForLine(dev, new RegExp(`dev: kvnode :${stoppedPort} stays down`), 10_000);
    assert.doesNotMatch(dev.output(), /the last lines of .*kvnode-\d+\.out/);
    // Longer than dev's restart delay (2 s), the rest keeps answering and nothing comes back.
    const watchedUntil = Date.now() + 4_000;
    await waitFor(async () => {
      assert.ok(await placementAnswers(ports.http), "placement's HTTP status answers");
      assert.ok(await kvnodeAnswers(ports.base), `kvnode :${ports.base} answers`);
      assert.ok(!(await listening(ports.gateway)), "nothing serves on the gateway's port");
      assert.ok(!(await listening(stoppedPort)), `nothing serves on :${stoppedPort}`);
      return Date.now() > watchedUntil;
    }, { timeoutMs: 30_000, what: "the observation of the cluster to end" });
    assert.doesNotMatch(dev.output(), /dev: restart/);
    assert.doesNotMatch(dev.output(), /dev: stopping/);
    const live = new Set((await liveProcesses()).map((p) => p.pid));
    for (const pid of running.pids.filter((p) => p !== gateway && p !== kvnode)) {
      assert.ok(live.has(pid), `pid ${pid} kept running:\n${dev.output()}`);
    }
    await stopDev(running, dataDir);
  } finally {
    await killDev(running);
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("deno task dev stops every process and exits with 1 when ZooKeeper exits", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  const ports = devPorts();
  let running: RunningDev | undefined;
  try {
    running = await runUntilServing(devArgs(dataDir, ports));
    const { dev, pids } = running;
    Deno.kill(tablePid(dev.output(), "ZooKeeper", ports.zk), "SIGKILL");
    const status = await dev.child.status;
    await dev.done;
    assert.equal(status.code, 1, dev.output());
    assert.match(dev.output(), /dev: stopping every process: ZooKeeper exited with code \d+/);
    assert.doesNotMatch(dev.output(), /dev: restart/);
    await waitFor(async () => !(await anyAlive(pids)), {
      timeoutMs: 15_000,
      what: `every process of the dev cluster to exit (${pids.join(", ")})`,
    });
    await waitFor(async () => (await processesMentioning(dataDir)).length === 0, {
      timeoutMs: 15_000,
      what: `no process mentioning ${dataDir}`,
    });
  } finally {
    await killDev(running);
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("deno task dev stops with a clear message when a kvnode's port is taken", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-dev-test-" });
  const ports = devPorts();
  const takenPort = ports.base + 1;
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: takenPort });
  try {
    const dev = startDev(devArgs(dataDir, ports));
    const status = await dev.child.status;
    await dev.done;
    assert.equal(status.code, 1, dev.output());
    assert.match(
      dev.output(),
      new RegExp(
        `dev: kvnode :${takenPort} exited while starting \\(exit code \\d+; [^\\n]*\\n` +
          "[\\s\\S]*EADDRINUSE",
      ),
    );
    assert.doesNotMatch(dev.output(), /dev: restart/);
    await waitFor(async () => (await processesMentioning(dataDir)).length === 0, {
      timeoutMs: 15_000,
      what: `no process mentioning ${dataDir}`,
    });
  } finally {
    squatter.close();
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
        [
          ["--verbose"],
          /Unknown argument "--verbose": expected --fresh, --nodes N, --no-restart, --secure, --config FILE/,
        ],
        [["--no-restart=yes"], /Unknown argument "--no-restart=yes"/],
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
    // An ensemble is for a deployment: dev runs its own ZooKeeper on host:port.
    const ensemble = startDev([
      `--storage.data_dir=${dataDir}`,
      "--zookeeper.servers=10.0.0.11:2181,10.0.0.12:2181",
    ]);
    assert.equal((await ensemble.child.status).code, 2);
    await ensemble.done;
    assert.match(
      ensemble.output(),
      /Key "zookeeper\.servers" is "10\.0\.0\.11:2181,10\.0\.0\.12:2181": the dev cluster runs its own ZooKeeper/,
    );
    assert.deepEqual([...Deno.readDirSync(dataDir)], [], "nothing may be created");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
