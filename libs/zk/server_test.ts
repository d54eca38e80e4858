// Tests of the ZooKeeper harness against the real server from Debian's jars: each test starts
// its own private server in a temp dir, checks that it serves (`ruok`), and stops it by pid.
import assert from "node:assert/strict";
import { connectZooKeeper } from "./client.ts";
import { findZooKeeper, startZooKeeper, ZooKeeperStartError } from "./server.ts";

async function ruok(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("ruok"));
  return await new Response(conn.readable).text();
}

async function processExists(pid: number): Promise<boolean> {
  // `kill -0` through sh, which the harness may run anyway (no --allow-run for all programs).
  const { success } = await new Deno.Command("sh", {
    args: ["-c", `kill -0 ${pid} 2>/dev/null`],
  }).output();
  return success;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("findZooKeeper() finds the Debian jars, and names what is missing", () => {
  const found = findZooKeeper();
  assert.equal(found.kind, "installed", found.kind === "missing" ? found.message : "");
  const missing = findZooKeeper("/nonexistent-jar-dir");
  assert.equal(missing.kind, "missing");
  if (missing.kind !== "missing") return;
  assert.match(missing.message, /"\/nonexistent-jar-dir\/zookeeper\.jar"/);
  assert.match(missing.message, /setup/);
});

Deno.test("startZooKeeper() serves on a free port and stop() ends its pid", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-zk-server-test-" });
  const zk = await startZooKeeper({ dataDir, removeDataDirOnExit: true });
  try {
    assert.ok(zk.port > 0);
    assert.equal(zk.connectString, `127.0.0.1:${zk.port}`);
    assert.equal(await ruok(zk.port), "imok");
    assert.ok(await processExists(zk.pid), `pid ${zk.pid} runs`);
    assert.match(
      await Deno.readTextFile(`${dataDir}/zoo.cfg`),
      new RegExp(`clientPort=${zk.port}`),
    );
  } finally {
    await zk.stop();
  }
  await assert.rejects(() => ruok(zk.port), Deno.errors.ConnectionRefused);
  assert.equal(await processExists(zk.pid), false, `pid ${zk.pid} is gone`);
  assert.notEqual((await zk.exited).code, 0);
  assert.equal(await exists(dataDir), false, "the data dir is removed after exit");
  await zk.stop(); // Idempotent.
});

Deno.test("startZooKeeper() keeps data across a restart on the same port and data dir", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-zk-server-test-" });
  try {
    const first = await startZooKeeper({ dataDir });
    const port = first.port;
    try {
      const client = await connectZooKeeper({ connectString: first.connectString, root: "/kept" });
      assert.equal((await client.create("/key", "value")).kind, "ok");
      await client.close();
    } finally {
      await first.stop();
    }
    const second = await startZooKeeper({ dataDir, port });
    try {
      assert.equal(second.port, port);
      const client = await connectZooKeeper({ connectString: second.connectString, root: "/kept" });
      const node = await client.get("/key");
      await client.close();
      assert.equal(new TextDecoder().decode(node?.data), "value");
    } finally {
      await second.stop();
    }
    assert.match(await Deno.readTextFile(`${dataDir}/zookeeper.log`), /binding to port/);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("startZooKeeper() on a taken port fails with the end of ZooKeeper's log", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-zk-server-test-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    await assert.rejects(
      () => startZooKeeper({ dataDir, port, startTimeoutMs: 20_000 }),
      (error: unknown) => {
        assert.ok(error instanceof ZooKeeperStartError);
        assert.match(
          error.message,
          new RegExp(`^Cannot start ZooKeeper on 127\\.0\\.0\\.1:${port}`),
        );
        assert.match(error.message, /Address already in use/);
        return true;
      },
    );
  } finally {
    taken.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
