// Checks claimEphemeral against the test ZooKeeper (TINYKV_TEST_ZK, or a private one; see
// testing.ts): a claim replaces another session's leftover znode. keepEphemeral, which needs a
// session expiry, is checked in client_test.ts; here only an interleaving a real server gives too
// rarely to test, on a scripted client. Every wait has a bound.
import assert from "node:assert/strict";
import {
  connectZooKeeper,
  type CreateResult,
  type NodeData,
  type NodeStat,
  type ZooKeeperClient,
} from "./client.ts";
import { claimEphemeral, keepEphemeral } from "./presence.ts";
import { randomTestRoot, removeTestRoot, testZooKeeper, waitFor } from "./testing.ts";

const zk = await testZooKeeper();

async function withRoot(test: (root: string) => Promise<void>): Promise<void> {
  const root = randomTestRoot();
  try {
    await test(root);
  } finally {
    await removeTestRoot(zk.connectString, root);
  }
}

Deno.test("claimEphemeral creates the parents and replaces another session's znode", async () => {
  await withRoot(async (root) => {
    const before = await connectZooKeeper({ connectString: zk.connectString, root });
    const after = await connectZooKeeper({ connectString: zk.connectString, root });
    try {
      await claimEphemeral(before, "/gateways/a", "old");
      await claimEphemeral(after, "/gateways/a", "new");
      const node = await after.get("/gateways/a");
      assert.equal(new TextDecoder().decode(node?.data), "new");
      // Idempotent for the owner.
      await claimEphemeral(after, "/gateways/a", "new");
      await after.close();
      await waitFor(async () => (await before.exists("/gateways/a")) === undefined, {
        what: "the znode to go with its session",
      });
    } finally {
      await before.close();
      await after.close();
    }
  });
});

/**
 * The parts of a client keepEphemeral uses, with one znode and a data watch that, like the real
 * one, reports only a value different from the last it reported.
 */
class ScriptedClient {
  readonly sessionId = "0000000000000001";
  node: { owner: string; czxid: number } | undefined;
  /** Another session deletes the node right after the next create, before the watch re-reads. */
  deleteAfterNextCreate = false;
  #zxid = 0;
  #onChange: ((node: NodeData | undefined) => void) | undefined;
  #reported: number | undefined = -1;

  constructor(owner: string) {
    this.node = { owner, czxid: ++this.#zxid };
  }

  asClient(): ZooKeeperClient {
    return this as unknown as ZooKeeperClient;
  }

  mkdirp(): Promise<void> {
    return Promise.resolve();
  }

  createEphemeral(): Promise<CreateResult> {
    if (this.node !== undefined) {
      return Promise.resolve(
        this.node.owner === this.sessionId ? { kind: "ok", path: "/g" } : { kind: "nodeExists" },
      );
    }
    this.node = { owner: this.sessionId, czxid: ++this.#zxid };
    if (this.deleteAfterNextCreate) {
      // Gone before the watch read it back: it reads "absent" again and reports nothing.
      this.deleteAfterNextCreate = false;
      this.node = undefined;
    }
    this.#report();
    return Promise.resolve({ kind: "ok", path: "/g" });
  }

  delete(): Promise<{ kind: "ok" }> {
    this.node = undefined;
    this.#report();
    return Promise.resolve({ kind: "ok" });
  }

  exists(): Promise<NodeStat | undefined> {
    const node = this.node;
    return Promise.resolve(
      node && { version: 0, childrenCount: 0, ephemeralOwner: node.owner },
    );
  }

  onConnectionEvent(): () => void {
    return () => {};
  }

  watchData(_path: string, onChange: (node: NodeData | undefined) => void): () => void {
    this.#onChange = onChange;
    this.#report();
    return () => this.#onChange = undefined;
  }

  #report(): void {
    const czxid = this.node?.czxid;
    if (czxid === this.#reported) return;
    this.#reported = czxid;
    this.#onChange?.(this.node && { data: new Uint8Array(), version: 0 });
  }
}

Deno.test("keepEphemeral claims again when its znode goes before the watch saw it created", async () => {
  // A claim replacing another session's znode: the watch reports it absent (the claim's own
  // delete) while the claim runs, then the claim creates it and someone deletes it before the
  // watch reads it back, so the watch, last having reported it absent, reports nothing more.
  const client = new ScriptedClient("00000000000000ff");
  client.deleteAfterNextCreate = true;
  const warnings: string[] = [];
  const stop = keepEphemeral(client.asClient(), "/gateways/g1", "mine", {
    retryMs: 10,
    warn: (message) => warnings.push(message),
  });
  try {
    await waitFor(() => client.node?.owner === client.sessionId, {
      timeoutMs: 1000,
      what: "keepEphemeral to claim the znode again",
    });
    // Deleted by someone, which starts a claim, and the znode it creates deleted too before the
    // watch reads it back: the watch, last having reported it absent, reports nothing more.
    client.deleteAfterNextCreate = true;
    await client.delete();
    await waitFor(() => client.node?.owner === client.sessionId, {
      timeoutMs: 1000,
      what: "keepEphemeral to claim the znode after two deletions",
    });
    assert.deepEqual(warnings, []);
  } finally {
    stop();
  }
});
