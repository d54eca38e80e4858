// Checks claimEphemeral against the test ZooKeeper (TINYKV_TEST_ZK, or a private one; see
// testing.ts): a claim replaces another session's leftover znode. (keepEphemeral, which needs a
// session expiry, is checked in client_test.ts.) Every wait has a bound.
import assert from "node:assert/strict";
import { connectZooKeeper } from "./client.ts";
import { claimEphemeral } from "./presence.ts";
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
