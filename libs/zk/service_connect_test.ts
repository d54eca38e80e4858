// Checks the services' ZooKeeper connect helpers: the options built from a config section (table),
// the logger forwarding, the failure of one attempt and the retry loop when nothing serves (no
// server needed), then against the test ZooKeeper (TINYKV_TEST_ZK, or a private one; see
// testing.ts) a connection under <root>/<cluster> whose session is logged, and a retrying
// connection that succeeds once a paused TCP proxy lets it through. Every wait has a bound.
import assert from "node:assert/strict";
import { connectZooKeeper, ZooKeeperError } from "./client.ts";
import {
  configuredZooKeeperOptions,
  connectConfiguredZooKeeper,
  connectConfiguredZooKeeperRetrying,
  type ServiceLog,
  type ZooKeeperSection,
} from "./service_connect.ts";
import {
  randomTestRoot,
  removeTestRoot,
  startTcpProxy,
  testZooKeeper,
  waitFor,
} from "./testing.ts";

const zk = await testZooKeeper();

/** A log that records its lines as `level message`. */
function recordingLog(): ServiceLog & { lines: string[]; errors: unknown[] } {
  const lines: string[] = [];
  const errors: unknown[] = [];
  return {
    lines,
    errors,
    info: (message) => lines.push(`info ${message}`),
    warn: (message, fields) => {
      lines.push(`warn ${message}`);
      if (fields?.error !== undefined) errors.push(fields.error);
    },
  };
}

/** A section for the ZooKeeper at `connectString` (`host:port`). */
function sectionFor(connectString: string, root: string, cluster: string): ZooKeeperSection {
  const colon = connectString.lastIndexOf(":");
  return {
    host: connectString.slice(0, colon),
    port: Number(connectString.slice(colon + 1)),
    root,
    cluster,
    session_timeout_ms: 4000,
  };
}

/**
 * Runs `test` with `127.0.0.1:<port>` where nothing answers: a listener that never accepts, held
 * for the whole test. (A port merely closed again could be taken by another test's server meanwhile,
 * and the ZooKeeper client would then parse that server's bytes as replies.)
 */
async function withDeadAddress(test: (address: string) => Promise<void>): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await test(`127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
  } finally {
    listener.close();
  }
}

Deno.test("configuredZooKeeperOptions() takes servers, root, cluster and timeouts from the section", () => {
  const cases: {
    section: ZooKeeperSection;
    connectTimeoutMs?: number;
    expected: { connectString: string; root: string; sessionTimeoutMs: number };
  }[] = [
    {
      section: {
        host: "127.0.0.1",
        port: 2181,
        root: "/tinykv",
        cluster: "dev",
        session_timeout_ms: 10_000,
      },
      expected: { connectString: "127.0.0.1:2181", root: "/tinykv/dev", sessionTimeoutMs: 10_000 },
    },
    {
      section: {
        host: "zk.local",
        port: 12181,
        root: "/a/b",
        cluster: "prod-1",
        session_timeout_ms: 1000,
      },
      connectTimeoutMs: 2000,
      expected: { connectString: "zk.local:12181", root: "/a/b/prod-1", sessionTimeoutMs: 1000 },
    },
    {
      // An ensemble: every server goes to the client, and host:port is not used.
      section: {
        servers: "10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181",
        host: "127.0.0.1",
        port: 2181,
        root: "/tinykv",
        cluster: "prod",
        session_timeout_ms: 10_000,
      },
      expected: {
        connectString: "10.0.0.11:2181,10.0.0.12:2181,10.0.0.13:2181",
        root: "/tinykv/prod",
        sessionTimeoutMs: 10_000,
      },
    },
    {
      section: {
        servers: "",
        host: "10.0.0.9",
        port: 2181,
        root: "/tinykv",
        cluster: "dev",
        session_timeout_ms: 10_000,
      },
      expected: { connectString: "10.0.0.9:2181", root: "/tinykv/dev", sessionTimeoutMs: 10_000 },
    },
  ];
  for (const { section, connectTimeoutMs, expected } of cases) {
    const options = configuredZooKeeperOptions(section, { log: recordingLog(), connectTimeoutMs });
    assert.equal(options.connectString, expected.connectString);
    assert.equal(options.root, expected.root);
    assert.equal(options.sessionTimeoutMs, expected.sessionTimeoutMs);
    assert.equal(options.connectTimeoutMs, connectTimeoutMs);
  }
});

Deno.test("configuredZooKeeperOptions() forwards the client's reports to the service log", () => {
  const log = recordingLog();
  const section = sectionFor("127.0.0.1:2181", "/tinykv", "dev");
  const { logger } = configuredZooKeeperOptions(section, { log });
  logger?.info?.("ZooKeeper session 01 opened (4000 ms)");
  logger?.warn?.("ZooKeeper session 01 expired; opening a new one");
  assert.deepEqual(log.lines, [
    "info ZooKeeper session 01 opened (4000 ms)",
    "warn ZooKeeper session 01 expired; opening a new one",
  ]);
});

Deno.test("connectConfiguredZooKeeper() throws ZooKeeperError after connectTimeoutMs when nothing serves", async () => {
  await withDeadAddress(async (address) => {
    const section = sectionFor(address, "/tinykv", "dev");
    await assert.rejects(
      () => connectConfiguredZooKeeper(section, { log: recordingLog(), connectTimeoutMs: 300 }),
      (error: unknown) => {
        assert.ok(error instanceof ZooKeeperError);
        assert.equal(error.code, "timeout");
        return true;
      },
    );
  });
});

Deno.test("connectConfiguredZooKeeperRetrying() logs each failed attempt and stops when told", async () => {
  await withDeadAddress(async (address) => {
    const section = sectionFor(address, "/tinykv", "dev");
    const log = recordingLog();
    const result = await connectConfiguredZooKeeperRetrying(section, {
      log,
      connectTimeoutMs: 200,
      retryDelayMs: 10,
      stopped: () => log.lines.length >= 2,
    });
    assert.equal(result.kind, "stopped");
    assert.deepEqual(log.lines, [
      "warn Cannot reach ZooKeeper: retrying",
      "warn Cannot reach ZooKeeper: retrying",
    ]);
    assert.ok(log.errors.every((error) => error instanceof ZooKeeperError));
  });
});

Deno.test("connectConfiguredZooKeeperRetrying() makes no attempt once stopped", async () => {
  await withDeadAddress(async (address) => {
    const log = recordingLog();
    const section = sectionFor(address, "/tinykv", "dev");
    const result = await connectConfiguredZooKeeperRetrying(section, {
      log,
      retryDelayMs: 10,
      stopped: () => true,
    });
    assert.equal(result.kind, "stopped");
    assert.deepEqual(log.lines, []);
  });
});

Deno.test("connectConfiguredZooKeeper() connects under <root>/<cluster> and logs the session", async () => {
  const root = randomTestRoot();
  const log = recordingLog();
  const client = await connectConfiguredZooKeeper(sectionFor(zk.connectString, root, "c1"), {
    log,
  });
  try {
    assert.equal(client.root, `${root}/c1`);
    assert.ok(client.sessionId !== undefined);
    assert.deepEqual(log.lines.filter((line) => line.startsWith("info ")), [
      `info ZooKeeper session ${client.sessionId} opened (${client.sessionTimeoutMs} ms)`,
    ]);
    await client.create("/hello", "world");
    const outside = await connectZooKeeper({ connectString: zk.connectString, root });
    try {
      assert.ok(await outside.exists("/c1/hello"), "the znode is under <root>/<cluster>");
    } finally {
      await outside.close();
    }
  } finally {
    await client.close();
    await removeTestRoot(zk.connectString, root);
  }
});

/**
 * Runs `test` with `127.0.0.1:<port>` where a server accepts each connection and closes it at
 * once, as a ZooKeeper server outside a quorum does.
 */
async function withClosingAddress(test: (address: string) => Promise<void>): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })().catch(() => {});
  try {
    await test(`127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
  } finally {
    listener.close();
    await accepting;
  }
}

Deno.test("connectConfiguredZooKeeper() reaches an ensemble through any server of `servers`", async () => {
  // A connect string whose other server closes every connection: the client tries the servers in
  // a random order, so the session opens through the one that serves, whichever it tries first.
  // (A server that accepts and never answers would stall node-zookeeper-client: it bounds only
  // the TCP connect, not the wait for the session's answer.)
  await withClosingAddress(async (dead) => {
    const root = randomTestRoot();
    const section = { ...sectionFor(zk.connectString, root, "c1"), servers: "" };
    for (const servers of [`${dead},${zk.connectString}`, `${zk.connectString},${dead}`]) {
      const client = await connectConfiguredZooKeeper({ ...section, servers }, {
        log: recordingLog(),
        connectTimeoutMs: 10_000,
      });
      try {
        await client.create(`/via-${servers.indexOf(dead)}`, "x");
      } finally {
        await client.close();
      }
    }
    await removeTestRoot(zk.connectString, root);
  });
});

Deno.test("connectConfiguredZooKeeperRetrying() connects once ZooKeeper becomes reachable", async () => {
  const root = randomTestRoot();
  const proxy = startTcpProxy(zk.connectString);
  proxy.pause();
  const log = recordingLog();
  const section = sectionFor(proxy.connectString, root, "c1");
  const connecting = connectConfiguredZooKeeperRetrying(section, {
    log,
    connectTimeoutMs: 300,
    retryDelayMs: 10,
    stopped: () => false,
  });
  // Resume whatever happens, so that `connecting` ends and the test can clean up.
  const failed = await waitFor(() => log.lines.includes("warn Cannot reach ZooKeeper: retrying"), {
    what: "a failed attempt",
  }).then(() => undefined, (error: unknown) => ({ error }));
  proxy.resume();
  const result = await connecting;
  try {
    if (failed !== undefined) throw failed.error;
    assert.ok(result.kind === "connected", `expected a connection, got ${result.kind}`);
    assert.equal(result.client.root, `${root}/c1`);
    assert.ok(result.client.connected);
  } finally {
    if (result.kind === "connected") await result.client.close();
    await proxy.close();
    await removeTestRoot(zk.connectString, root);
  }
});
