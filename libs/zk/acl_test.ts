// Checks the digest credential against the test ZooKeeper (TINYKV_TEST_ZK, or a private one; see
// testing.ts): a client with it creates znodes anyone may read but only it may change; a client
// without it, or with the wrong password, is refused every change, and nothing changes.
import assert from "node:assert/strict";
import { connectZooKeeper, ZooKeeperError } from "./client.ts";
import { randomTestRoot, removeTestRoot, testZooKeeper } from "./testing.ts";

const zk = await testZooKeeper();
const DIGEST = { user: "tinykv", password: "s3cret" };

Deno.test("znodes made with the cluster's digest are read by all, changed only with it", async () => {
  const root = `${randomTestRoot()}/cluster`;
  const owner = await connectZooKeeper({ connectString: zk.connectString, root, digest: DIGEST });
  const stranger = await connectZooKeeper({ connectString: zk.connectString, root });
  const impostor = await connectZooKeeper({
    connectString: zk.connectString,
    root,
    digest: { user: "tinykv", password: "guess" },
  });
  try {
    await owner.mkdirp("/nodes");
    assert.equal((await owner.create("/shardmap", "v1")).kind, "ok");
    assert.equal(new TextDecoder().decode((await stranger.get("/shardmap"))?.data), "v1");
    for (const [who, client] of [["no credential", stranger], ["a wrong one", impostor]] as const) {
      const refusals = [
        () => client.setData("/shardmap", "forged", -1),
        () => client.create("/nodes/fake", "{}"),
        () => client.createEphemeral("/nodes/fake2", "{}"),
        () => client.delete("/shardmap"),
      ];
      for (const attempt of refusals) {
        await assert.rejects(attempt(), (error: unknown) => {
          assert.ok(error instanceof ZooKeeperError, `${who}: ${error}`);
          assert.match(error.message, /NO_AUTH|auth/i, who);
          return true;
        });
      }
    }
    assert.equal(new TextDecoder().decode((await owner.get("/shardmap"))?.data), "v1");
    assert.deepEqual(await owner.children("/nodes"), []);
    assert.equal((await owner.setData("/shardmap", "v2", -1)).kind, "ok");
  } finally {
    for (const path of ["/nodes", "/shardmap", "/"]) await owner.delete(path).catch(() => {});
    await owner.close();
    await stranger.close();
    await impostor.close();
    await removeTestRoot(zk.connectString, root.slice(0, root.lastIndexOf("/")));
  }
});

Deno.test("a credential set on a cluster made without it says its znodes stay open", async () => {
  const root = `${randomTestRoot()}/cluster`;
  const before = await connectZooKeeper({ connectString: zk.connectString, root });
  await before.create("/shardmap", "v1");
  await before.close();
  const warnings: string[] = [];
  const after = await connectZooKeeper({
    connectString: zk.connectString,
    root,
    digest: DIGEST,
    logger: { warn: (message) => warnings.push(message) },
  });
  const fresh = `${randomTestRoot()}/cluster`;
  const protectedWarnings: string[] = [];
  const made = await connectZooKeeper({
    connectString: zk.connectString,
    root: fresh,
    digest: DIGEST,
    logger: { warn: (message) => protectedWarnings.push(message) },
  });
  try {
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0],
      /may be changed by anyone: it was created without the cluster's credential/,
    );
    assert.deepEqual(protectedWarnings, [], "a root made with the credential is not open");
  } finally {
    await after.deleteRecursive("/");
    await after.close();
    await made.close();
    await removeTestRoot(zk.connectString, root.slice(0, root.lastIndexOf("/")));
    await removeTestRoot(zk.connectString, fresh.slice(0, fresh.lastIndexOf("/")));
  }
});
