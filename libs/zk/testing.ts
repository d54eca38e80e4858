/**
 * Test helpers for code that uses ZooKeeper, anywhere in the repo.
 *
 * Tests share one real ZooKeeper per run and each test works under its own random root:
 * {@linkcode testZooKeeper} returns the server named by `TINYKV_TEST_ZK` (`host:port`, set by
 * `deno task test`) or else starts a private one for this test process;
 * {@linkcode randomTestRoot} gives each test a namespace and {@linkcode removeTestRoot} deletes
 * it. {@linkcode startTcpProxy} puts a proxy between a client and ZooKeeper that can cut the
 * connection, to force disconnections and session expiry without touching the shared server.
 *
 * Call `testZooKeeper()` at the top level of a test module (`const zk = await testZooKeeper();`),
 * not inside a test: a private server's process handles then belong to no test, and Deno's
 * resource sanitizer does not count them against the first test that asked.
 *
 * @example A test under its own root
 * ```ts ignore
 * import { connectZooKeeper } from "@tinykv/zk";
 * import { randomTestRoot, removeTestRoot, testZooKeeper } from "@tinykv/zk/testing";
 *
 * const zk = await testZooKeeper();
 *
 * Deno.test("something with ZooKeeper", async () => {
 *   const root = randomTestRoot();
 *   const client = await connectZooKeeper({ connectString: zk.connectString, root });
 *   try {
 *     await client.create("/hello", "world");
 *   } finally {
 *     await client.close();
 *     await removeTestRoot(zk.connectString, root);
 *   }
 * });
 * ```
 *
 * @module
 */
import { assert } from "./_assert.ts";
import { connectZooKeeper } from "./client.ts";
import { findZooKeeper, startZooKeeper } from "./server.ts";

/** The environment variable naming a shared test ZooKeeper (`host:port`). */
export const TEST_ZOOKEEPER_ENV = "TINYKV_TEST_ZK";
/** The parent of every test root. */
export const TEST_ROOT_PARENT = "/tinykv-test";
/** Default bound of {@linkcode waitFor}. */
export const WAIT_TIMEOUT_MS_DEFAULT = 10_000;
/** How often {@linkcode waitFor} polls. */
export const WAIT_INTERVAL_MS = 10;

/** The ZooKeeper tests run against. */
export interface TestZooKeeper {
  /** `host:port`. */
  connectString: string;
  /** True when it came from `TINYKV_TEST_ZK`, false for a server private to this process. */
  shared: boolean;
}

let testServer: Promise<TestZooKeeper> | undefined;

/**
 * Returns the ZooKeeper for this test process: the one named by `TINYKV_TEST_ZK`, or else a
 * private one started on first call (on a free port, in a temp dir) and shared by every later
 * call. The private server dies with this process — the harness's watchdog ends it when the
 * process exits, however it exits — and its temp dir is deleted then. Throws when the variable
 * is malformed or when ZooKeeper is not installed (the message says how to install it).
 */
export function testZooKeeper(): Promise<TestZooKeeper> {
  testServer ??= openTestZooKeeper();
  return testServer;
}

async function openTestZooKeeper(): Promise<TestZooKeeper> {
  const fromEnv = Deno.env.get(TEST_ZOOKEEPER_ENV);
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!/^[^\s,/]+:\d+$/.test(fromEnv)) {
      throw new Error(
        `Cannot use ${TEST_ZOOKEEPER_ENV} "${fromEnv}": expected host:port, e.g. "127.0.0.1:2181"`,
      );
    }
    return { connectString: fromEnv, shared: true };
  }
  const installation = findZooKeeper();
  if (installation.kind === "missing") throw new Error(installation.message);
  const dataDir = await Deno.makeTempDir({ prefix: "tinykv-zk-test-" });
  const server = await startZooKeeper({ dataDir, removeDataDirOnExit: true });
  return { connectString: server.connectString, shared: false };
}

/** A fresh root for one test: `/tinykv-test/<16 random hex digits>`. */
export function randomTestRoot(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${TEST_ROOT_PARENT}/${hex}`;
}

/** Deletes a test root and everything under it. Refuses roots outside `/tinykv-test/`. */
export async function removeTestRoot(connectString: string, root: string): Promise<void> {
  assert(
    root.startsWith(`${TEST_ROOT_PARENT}/`) && root.length > TEST_ROOT_PARENT.length + 1,
    `Cannot remove test root "${root}": it is not under "${TEST_ROOT_PARENT}/"`,
  );
  const client = await connectZooKeeper({ connectString, root: "/" });
  try {
    await client.deleteRecursive(root);
  } finally {
    await client.close();
  }
}

/** Options of {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Bound on the wait. Default {@linkcode WAIT_TIMEOUT_MS_DEFAULT}. */
  timeoutMs?: number;
  /** What is awaited, for the error message. */
  what?: string;
}

/**
 * Polls `condition` every {@linkcode WAIT_INTERVAL_MS} until it returns true; throws when it
 * has not within `timeoutMs`. For tests that wait on real processes: never sleep and hope.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  options: WaitForOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? WAIT_TIMEOUT_MS_DEFAULT;
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() >= deadline) {
      throw new Error(
        `Timed out waiting for ${options.what ?? "a condition"}: ${timeoutMs} ms passed`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, WAIT_INTERVAL_MS));
  }
}

/** A TCP proxy in front of a server; see {@linkcode startTcpProxy}. */
export interface TcpProxy {
  /** `127.0.0.1:<port>` of the proxy, to give to clients. */
  readonly connectString: string;
  /** How many client connections are open through the proxy. */
  readonly connectionCount: number;
  /** Cuts every connection and refuses new ones (accepts, then closes them at once). */
  pause(): void;
  /** Lets connections through again. */
  resume(): void;
  /** Closes the proxy and every connection; resolves once all are closed. */
  close(): Promise<void>;
}

interface Link {
  conns: Deno.TcpConn[];
  done: Promise<void>;
}

/**
 * Starts a TCP proxy on a free port of 127.0.0.1 that forwards each connection to `target`
 * (`host:port`). Pausing it cuts the network between a client and the server while both keep
 * running, which is how tests force a disconnection, or a session expiry by pausing for longer
 * than the session timeout.
 */
export function startTcpProxy(target: string): TcpProxy {
  const separator = target.lastIndexOf(":");
  const targetAddr = {
    hostname: target.slice(0, separator),
    port: Number(target.slice(separator + 1)),
  };
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const links = new Set<Link>();
  let paused = false;
  const cut = (link: Link) => {
    for (const conn of link.conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  const forward = async (client: Deno.TcpConn) => {
    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect(targetAddr);
    } catch {
      client.close();
      return;
    }
    const link: Link = { conns: [client, upstream], done: Promise.resolve() };
    links.add(link);
    if (paused) cut(link);
    const pipes = [
      client.readable.pipeTo(upstream.writable, { preventClose: true }),
      upstream.readable.pipeTo(client.writable, { preventClose: true }),
    ].map((pipe) => pipe.catch(() => {}).then(() => cut(link)));
    link.done = Promise.all(pipes).then(() => {
      links.delete(link);
    });
    await link.done;
  };
  const pending = new Set<Promise<void>>();
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        if (paused) {
          conn.close();
          continue;
        }
        const job = forward(conn);
        pending.add(job);
        job.finally(() => pending.delete(job));
      }
    } catch {
      // The listener was closed.
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    connectString: `127.0.0.1:${port}`,
    get connectionCount() {
      return links.size;
    },
    pause() {
      paused = true;
      for (const link of links) cut(link);
    },
    resume() {
      paused = false;
    },
    async close() {
      paused = true;
      listener.close();
      for (const link of links) cut(link);
      await accepting;
      await Promise.all(pending);
    },
  };
}
