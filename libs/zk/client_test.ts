// Tests of the ZooKeeper client against a real ZooKeeper: the shared one named by
// TINYKV_TEST_ZK, or a private one for this process (see testing.ts). Each test works under its
// own random root and deletes it at the end. Disconnections and session expiry are forced with a
// TCP proxy between the client and the server, so the shared server is never stopped; every wait
// is on a condition with a bound, never a fixed sleep.
import assert from "node:assert/strict";
import {
  type ConnectionEvent,
  connectZooKeeper,
  type ConnectZooKeeperOptions,
  type NodeData,
  type ZooKeeperClient,
  ZooKeeperError,
} from "./client.ts";
import { keepEphemeral } from "./presence.ts";
import {
  randomTestRoot,
  removeTestRoot,
  startTcpProxy,
  testZooKeeper,
  waitFor,
} from "./testing.ts";

const zk = await testZooKeeper();
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

async function withRoot(
  fn: (
    connect: (options?: Partial<ConnectZooKeeperOptions>) => Promise<ZooKeeperClient>,
  ) => Promise<void>,
): Promise<void> {
  const root = randomTestRoot();
  const clients: ZooKeeperClient[] = [];
  const connect = async (options: Partial<ConnectZooKeeperOptions> = {}) => {
    const client = await connectZooKeeper({
      connectString: zk.connectString,
      root,
      sessionTimeoutMs: 4000,
      reconnectDelayMs: 50,
      ...options,
    });
    clients.push(client);
    return client;
  };
  try {
    await fn(connect);
  } finally {
    for (const client of clients) await client.close();
    await removeTestRoot(zk.connectString, root);
  }
}

Deno.test("connectZooKeeper() creates the root; mkdirp() creates ancestors and is idempotent", async () => {
  await withRoot(async (connect) => {
    const client = await connect();
    const outside = await connect({ root: "/" });
    assert.ok(await outside.exists(client.root), "the root exists");
    await client.mkdirp("/a/b/c");
    await client.mkdirp("/a/b/c");
    await client.mkdirp("/a/b/d");
    assert.deepEqual(await client.children("/a/b"), ["c", "d"]);
    assert.deepEqual(await outside.children(client.root), ["a"]);
  });
});

Deno.test("create(), get(), exists() and children() report outcomes, not errors", async () => {
  await withRoot(async (connect) => {
    const client = await connect();
    assert.deepEqual(await client.create("/config", "v1"), { kind: "ok", path: "/config" });
    assert.deepEqual(await client.create("/config", "v2"), { kind: "nodeExists" });
    assert.deepEqual(await client.create("/missing/child"), { kind: "noParent" });
    const node = await client.get("/config");
    assert.equal(text(node?.data), "v1");
    assert.equal(node?.version, 0);
    assert.equal(await client.get("/nothing"), undefined);
    assert.equal(await client.exists("/nothing"), undefined);
    assert.equal(await client.children("/nothing"), undefined);
    assert.equal((await client.exists("/config"))?.ephemeralOwner, undefined);

    await client.mkdirp("/tasks");
    const first = await client.create("/tasks/t-", "", { mode: "persistentSequential" });
    const second = await client.create("/tasks/t-", new Uint8Array([1, 2]), {
      mode: "persistentSequential",
    });
    assert.equal(first.kind, "ok");
    assert.equal(second.kind, "ok");
    if (first.kind !== "ok" || second.kind !== "ok") return;
    assert.match(first.path, /^\/tasks\/t-\d{10}$/);
    assert.ok(second.path > first.path);
    assert.deepEqual(
      await client.children("/tasks"),
      [first.path, second.path].map((p) => p.slice(7)),
    );
    assert.deepEqual((await client.get(second.path))?.data, new Uint8Array([1, 2]));
    assert.equal((await client.get(first.path))?.data.length, 0);
  });
});

Deno.test("setData(version) is a compare-and-set: ok, badVersion, noNode", async () => {
  await withRoot(async (connect) => {
    const client = await connect();
    await client.create("/shardmap", "v0");
    assert.deepEqual(await client.setData("/shardmap", "v1", 0), { kind: "ok", version: 1 });
    assert.deepEqual(await client.setData("/shardmap", "stale", 0), { kind: "badVersion" });
    assert.equal(text((await client.get("/shardmap"))?.data), "v1");
    assert.deepEqual(await client.setData("/shardmap", "any", -1), { kind: "ok", version: 2 });
    assert.deepEqual(await client.setData("/absent", "x", 0), { kind: "noNode" });
    const big = new Uint8Array(1024 * 1024 + 1);
    assert.equal((await client.setData("/shardmap", big, 2)).kind, "dataTooLarge");

    assert.deepEqual(await client.delete("/shardmap", 0), { kind: "badVersion" });
    assert.deepEqual(await client.delete("/shardmap", 2), { kind: "ok" });
    assert.deepEqual(await client.delete("/shardmap"), { kind: "noNode" });
    await client.mkdirp("/full/child");
    assert.deepEqual(await client.delete("/full"), { kind: "notEmpty" });
  });
});

Deno.test("bad paths are caller bugs and throw TypeError", async () => {
  await withRoot(async (connect) => {
    const client = await connect();
    for (const path of ["relative", "/trailing/", "/a//b", "/a/../b", ""]) {
      await assert.rejects(() => client.get(path), TypeError, path);
    }
    assert.throws(() => client.watchData("no-slash", () => {}), TypeError);
  });
});

Deno.test("watchData() observes several successive changes, deletion and re-creation", async () => {
  await withRoot(async (connect) => {
    const client = await connect();
    const writer = await connect();
    const seen: (NodeData | undefined)[] = [];
    const stop = client.watchData("/leader", (node) => seen.push(node));
    await waitFor(() => seen.length === 1, { what: "the initial value" });
    assert.equal(seen[0], undefined);

    await writer.create("/leader", "v0");
    await waitFor(() => seen.at(-1)?.version === 0, { what: "the creation" });
    for (let version = 1; version <= 5; version++) {
      assert.equal((await writer.setData("/leader", `v${version}`, version - 1)).kind, "ok");
      await waitFor(() => seen.at(-1)?.version === version, { what: `version ${version}` });
      assert.equal(text(seen.at(-1)?.data), `v${version}`);
    }
    await writer.delete("/leader");
    await waitFor(() => seen.length > 0 && seen.at(-1) === undefined, { what: "the deletion" });
    await writer.create("/leader", "again");
    await waitFor(() => text(seen.at(-1)?.data) === "again", { what: "the re-creation" });

    stop();
    const count = seen.length;
    await writer.setData("/leader", "unwatched", -1);
    // A later change on a watched node proves the unwatched one was delivered by then.
    const probe: (NodeData | undefined)[] = [];
    const stopProbe = client.watchData("/leader", (node) => probe.push(node));
    await waitFor(() => text(probe.at(-1)?.data) === "unwatched", { what: "the probe" });
    stopProbe();
    assert.equal(seen.length, count, "no callback after unsubscribe");
  });
});

Deno.test("watchChildren() re-arms after each change", async () => {
  await withRoot(async (connect) => {
    const client = await connect();
    const writer = await connect();
    const seen: (string[] | undefined)[] = [];
    const stop = client.watchChildren("/nodes", (children) => seen.push(children));
    await waitFor(() => seen.length === 1, { what: "the initial value" });
    assert.equal(seen[0], undefined);
    await writer.mkdirp("/nodes");
    await waitFor(() => seen.at(-1)?.length === 0, { what: "the parent's creation" });
    for (const name of ["n1", "n2", "n3"]) {
      await writer.create(`/nodes/${name}`);
      await waitFor(() => seen.at(-1)?.includes(name) === true, { what: `child ${name}` });
    }
    await writer.delete("/nodes/n2");
    await waitFor(() => seen.at(-1)?.join() === "n1,n3", { what: "the removal of n2" });
    stop();
  });
});

Deno.test("createEphemeral() nodes disappear when their client closes", async () => {
  await withRoot(async (connect) => {
    const owner = await connect();
    const observer = await connect();
    await owner.mkdirp("/nodes");
    assert.deepEqual(await owner.createEphemeral("/nodes/n1", "addr"), {
      kind: "ok",
      path: "/nodes/n1",
    });
    // Idempotent for its owner, refused to anyone else.
    assert.equal((await owner.createEphemeral("/nodes/n1", "addr")).kind, "ok");
    assert.deepEqual(await observer.createEphemeral("/nodes/n1", "other"), { kind: "nodeExists" });
    assert.equal((await observer.exists("/nodes/n1"))?.ephemeralOwner, owner.sessionId);

    const seen: (string[] | undefined)[] = [];
    observer.watchChildren("/nodes", (children) => seen.push(children));
    await waitFor(() => seen.at(-1)?.join() === "n1", { what: "the ephemeral" });
    await owner.close();
    await waitFor(() => seen.at(-1)?.length === 0, { what: "the ephemeral to go" });
    assert.equal(await observer.exists("/nodes/n1"), undefined);
    await assert.rejects(() => owner.get("/nodes"), (error: unknown) => {
      assert.ok(error instanceof ZooKeeperError);
      assert.equal(error.code, "closed");
      return true;
    });
  });
});

Deno.test("a connect attempt given up while the library waits to retry never comes back to life", async () => {
  // The library retries a refused connection after a random pause of up to `reconnectDelayMs`.
  // Given up in that pause, the attempt must not open a socket afterwards: the closing library
  // would read the server's connect response as a reply and throw on it, uncaught, ending the
  // process (seen in CI as "Unknown code").
  const proxy = startTcpProxy(zk.connectString);
  proxy.pause();
  try {
    await assert.rejects(
      () =>
        connectZooKeeper({
          connectString: proxy.connectString,
          root: "/x",
          connectTimeoutMs: 200,
          reconnectDelayMs: 1500,
        }),
      (error: unknown) => error instanceof ZooKeeperError && error.code === "timeout",
    );
    proxy.resume();
    // Longer than the pause: a late socket would have connected and been answered by now.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal(proxy.connectionCount, 0, "no connection after the attempt was given up");
  } finally {
    await proxy.close();
  }
});

Deno.test("a short disconnection keeps the session, its ephemerals and its watches", async () => {
  const proxy = startTcpProxy(zk.connectString);
  try {
    await withRoot(async (connect) => {
      const client = await connect({ connectString: proxy.connectString });
      const writer = await connect();
      const events: ConnectionEvent[] = [];
      client.onConnectionEvent((event) => events.push(event));
      const sessionId = client.sessionId;
      await client.createEphemeral("/member", "m");
      const seen: (NodeData | undefined)[] = [];
      client.watchData("/config", (node) => seen.push(node));
      await waitFor(() => seen.length === 1, { what: "the initial value" });

      proxy.pause();
      await waitFor(() => events.some((event) => event.kind === "disconnected"), {
        what: "the disconnection",
      });
      // Changed while the client is cut off: the re-armed watch must report it.
      await writer.create("/config", "while-away");
      proxy.resume();
      await waitFor(() => events.some((event) => event.kind === "reconnected"), {
        what: "the reconnection",
      });
      assert.equal(client.sessionId, sessionId);
      assert.equal(events.some((event) => event.kind === "expired"), false);
      await waitFor(() => text(seen.at(-1)?.data) === "while-away", { what: "the missed change" });
      await writer.setData("/config", "after", -1);
      await waitFor(() => text(seen.at(-1)?.data) === "after", { what: "the next change" });
      assert.equal((await writer.exists("/member"))?.ephemeralOwner, sessionId);
    });
  } finally {
    await proxy.close();
  }
});

/**
 * Runs `fn` with a client behind a TCP proxy (so the test can cut it off until its 500 ms session
 * expires), the events it reports, and an observer connected directly.
 */
async function withExpirableClient(
  fn: (context: {
    client: ZooKeeperClient;
    observer: ZooKeeperClient;
    events: ConnectionEvent[];
    proxy: ReturnType<typeof startTcpProxy>;
  }) => Promise<void>,
): Promise<void> {
  const proxy = startTcpProxy(zk.connectString);
  try {
    await withRoot(async (connect) => {
      const client = await connect({ connectString: proxy.connectString, sessionTimeoutMs: 500 });
      const observer = await connect();
      const events: ConnectionEvent[] = [];
      client.onConnectionEvent((event) => events.push(event));
      await fn({ client, observer, events, proxy });
    });
  } finally {
    await proxy.close();
  }
}

Deno.test("after a forced session expiry the client restores its ephemerals and watches", async () => {
  await withExpirableClient(async ({ client, observer, events, proxy }) => {
    const oldSession = client.sessionId;
    assert.ok(oldSession);
    await client.mkdirp("/nodes");
    await client.createEphemeral("/nodes/n1", "before");
    assert.deepEqual(await client.setData("/nodes/n1", "latest", 0), { kind: "ok", version: 1 });
    const dataSeen: (NodeData | undefined)[] = [];
    const childrenSeen: (string[] | undefined)[] = [];
    client.watchData("/shardmap", (node) => dataSeen.push(node));
    client.watchChildren("/nodes", (children) => childrenSeen.push(children));
    await waitFor(() => dataSeen.length === 1 && childrenSeen.length === 1, {
      what: "the initial values",
    });

    // Cut the client off until the server has expired its session: the ephemeral goes.
    proxy.pause();
    await waitFor(async () => (await observer.exists("/nodes/n1")) === undefined, {
      what: "the server to expire the session",
    });
    await observer.create("/shardmap", "changed-during-expiry");
    proxy.resume();

    await waitFor(() => events.some((e) => e.kind === "connected" && e.afterExpiry), {
      what: "a new session with ephemerals restored",
    });
    const kinds = events.map((event) => event.kind);
    assert.deepEqual(kinds, ["disconnected", "expired", "connected"]);
    assert.notEqual(client.sessionId, oldSession);
    const restored = await observer.get("/nodes/n1");
    assert.equal(text(restored?.data), "latest", "re-created with its latest data");
    assert.equal((await observer.exists("/nodes/n1"))?.ephemeralOwner, client.sessionId);

    // Watches work on the new session: the change made during the expiry, then new ones.
    await waitFor(() => text(dataSeen.at(-1)?.data) === "changed-during-expiry", {
      what: "the change made while expired",
    });
    await observer.setData("/shardmap", "next", -1);
    await waitFor(() => text(dataSeen.at(-1)?.data) === "next", { what: "a change after" });
    await observer.create("/nodes/n2");
    await waitFor(() => childrenSeen.at(-1)?.join() === "n1,n2", { what: "a new child" });
  });
});

Deno.test("after an expiry, an ephemeral another session took meanwhile is left to it", async () => {
  await withExpirableClient(async ({ client, observer, events, proxy }) => {
    await client.mkdirp("/nodes");
    await client.createEphemeral("/nodes/n1", "client's");
    proxy.pause();
    await waitFor(async () => (await observer.exists("/nodes/n1")) === undefined, {
      what: "the server to expire the session",
    });
    assert.equal((await observer.createEphemeral("/nodes/n1", "observer's")).kind, "ok");
    proxy.resume();
    await waitFor(() => events.some((e) => e.kind === "connected" && e.afterExpiry), {
      what: "a new session",
    });
    assert.ok(
      events.some((e) => e.kind === "ephemeralLost" && e.path === "/nodes/n1"),
      JSON.stringify(events),
    );
    const node = await observer.get("/nodes/n1");
    assert.equal(text(node?.data), "observer's", "another session's node is never replaced");
    assert.equal((await observer.exists("/nodes/n1"))?.ephemeralOwner, observer.sessionId);
  });
});

Deno.test("keepEphemeral claims its znode back when another session took it during an expiry", async () => {
  await withExpirableClient(async ({ client, observer, events, proxy }) => {
    const warnings: string[] = [];
    const stop = keepEphemeral(client, "/gateways/g1", "client's", {
      retryMs: 50,
      warn: (message) => warnings.push(message),
    });
    try {
      // Seen by the client itself: its answer comes after the claim's create's on the session,
      // so the pause below cannot cut that create (its outcome unknown, the claim retried).
      await waitFor(
        async () => (await client.exists("/gateways/g1"))?.ephemeralOwner === client.sessionId,
        { what: "the first claim" },
      );
      proxy.pause();
      await waitFor(async () => (await observer.exists("/gateways/g1")) === undefined, {
        what: "the server to expire the session",
      });
      assert.equal((await observer.createEphemeral("/gateways/g1", "observer's")).kind, "ok");
      proxy.resume();
      await waitFor(() => events.some((e) => e.kind === "ephemeralLost"), {
        what: "the client to give the znode up",
      });
      await waitFor(
        async () => (await observer.exists("/gateways/g1"))?.ephemeralOwner === client.sessionId,
        { what: "keepEphemeral to claim it back" },
      );
      assert.equal(text((await observer.get("/gateways/g1"))?.data), "client's");
      // Deleted by someone else: claimed again.
      await observer.delete("/gateways/g1");
      await waitFor(
        async () => (await observer.exists("/gateways/g1"))?.ephemeralOwner === client.sessionId,
        { what: "keepEphemeral to claim it back after a delete" },
      );
      assert.deepEqual(warnings, []);
    } finally {
      stop();
    }
  });
});

Deno.test("a client cut off for twice its session timeout takes the session as expired", async () => {
  await withExpirableClient(async ({ client, observer, events, proxy }) => {
    await client.mkdirp("/nodes");
    await client.createEphemeral("/nodes/n1", "mine");
    const oldSession = client.sessionId;
    proxy.pause();
    // Without a server to say so, the client gives the session up after 2 x 500 ms by itself.
    await waitFor(() => events.some((e) => e.kind === "expired"), {
      what: "the client to take its session as expired while cut off",
    });
    proxy.resume();
    await waitFor(() => events.some((e) => e.kind === "connected" && e.afterExpiry), {
      what: "a new session",
    });
    assert.notEqual(client.sessionId, oldSession);
    await waitFor(
      async () => (await observer.exists("/nodes/n1"))?.ephemeralOwner === client.sessionId,
      { what: "the ephemeral, owned by the new session" },
    );
    assert.equal(text((await observer.get("/nodes/n1"))?.data), "mine");
  });
});

Deno.test("connectZooKeeper() throws after connectTimeoutMs when nothing serves", async () => {
  // A listener that never accepts, held for the test: a port closed again could be taken by
  // another test's server meanwhile, whose bytes the client would parse as replies.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  await assert.rejects(
    () =>
      connectZooKeeper({
        connectString: `127.0.0.1:${port}`,
        root: "/x",
        connectTimeoutMs: 300,
        reconnectDelayMs: 50,
      }),
    (error: unknown) => {
      assert.ok(error instanceof ZooKeeperError);
      assert.equal(error.code, "timeout");
      assert.match(
        error.message,
        /^Cannot connect to ZooKeeper at "127\.0\.0\.1:\d+": no session within 300 ms$/,
      );
      return true;
    },
  );
  listener.close();
});
