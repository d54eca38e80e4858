// Checks the routing core of libs/client against real kvnodes: with a shard map published in
// ZooKeeper (as placement will publish it), the router finds each key's shard and leader from the
// map and the node registry, follows not-leader hints, rides out a leader's kill -9 with retries
// that keep their (client_id, seq), and a retried mutation applies once.
import assert from "node:assert/strict";
import { ClientSession, KvRouter, type RouteResult, ZooKeeperClusterView } from "@tinykv/client";
import { connectZooKeeper, type ZooKeeperClient } from "@tinykv/zk";
import { waitFor } from "@tinykv/zk/testing";
import { KvNodeCluster } from "./_harness/kvnode_cluster.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function okItem(result: RouteResult) {
  assert.equal(result.kind, "ok", JSON.stringify(result));
  return result.kind === "ok" ? result.item : assert.fail();
}

Deno.test("KvRouter routes by the published shard map and rides out a leader crash", async () => {
  const cluster = await KvNodeCluster.start({ nodes: 3, shards: 3 });
  let zk: ZooKeeperClient | undefined;
  let router: KvRouter | undefined;
  let view: ZooKeeperClusterView | undefined;
  try {
    await cluster.bootstrap();
    zk = await connectZooKeeper({
      connectString: cluster.zkConnect,
      root: `${cluster.zkRoot}/${cluster.clusterName}`,
    });
    await cluster.publishShardMap();
    view = new ZooKeeperClusterView(zk);
    const currentView = view;
    await waitFor(
      () =>
        currentView.shardMap() !== undefined &&
        cluster.nodes.every((n) => currentView.nodeAddress(n.nodeId) === n.address),
      { timeoutMs: 10_000, what: "the view to see the map and the three nodes" },
    );
    router = new KvRouter({ view, maxMessageBytes: 8 << 20 });
    const session = new ClientSession();
    const put = async (key: string, value: string) => {
      const { seq, ackSeq } = session.next()!;
      const result = await router!.route({ key: enc(key) }, {
        put: { key: enc(key), value: enc(value), clientId: session.clientId, seq, ackSeq },
      }, Date.now() + 15_000);
      session.answered(seq);
      return result;
    };
    const get = (key: string) =>
      router!.route(
        { key: enc(key) },
        { get: { key: enc(key), serializable: false } },
        Date.now() + 15_000,
      );

    for (let i = 0; i < 60; i++) okItem(await put(`k${i}`, `v${i}`));
    for (let i = 0; i < 60; i++) assert.equal(dec(okItem(await get(`k${i}`)).get!.value), `v${i}`);

    // Kill the leader of the shard of "k0" while writes go on: clients see only latency.
    const victim = (await cluster.leaderOf(router.shardOf(enc("k0"))!.id)).node;
    const writes = Array.from({ length: 40 }, (_, i) => put(`during-${i}`, `d${i}`));
    await victim.process.kill();
    for (const result of await Promise.all(writes)) okItem(result);
    for (let i = 0; i < 40; i++) {
      assert.equal(dec(okItem(await get(`during-${i}`)).get!.value), `d${i}`);
    }

    // A retried mutation (same client id and seq) applies once.
    const { seq, ackSeq } = session.next()!;
    const append = {
      append: { key: enc("once"), value: enc("x"), clientId: session.clientId, seq, ackSeq },
    };
    const first = okItem(await router.route({ key: enc("once") }, append, Date.now() + 15_000));
    const retry = okItem(await router.route({ key: enc("once") }, append, Date.now() + 15_000));
    session.answered(seq);
    assert.equal(first.append?.length, 1);
    assert.equal(retry.append?.length, 1);
    assert.equal(dec(okItem(await get("once")).get!.value), "x");

    // Bad input is refused with its own status at once, not retried until the deadline.
    const started = Date.now();
    const bad = await router.route({ key: enc("x") }, {
      get: { key: new Uint8Array(), serializable: false },
    }, started + 3000);
    assert.equal(bad.kind, "invalidArgument");
    assert.ok(Date.now() - started < 2000, "refused without retrying");
  } finally {
    router?.close();
    view?.close();
    await zk?.close();
    await cluster.close();
  }
});
