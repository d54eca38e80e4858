// A kvnode speaks only for its own replicas: the driver refuses a message whose peer lives on
// another node, and takes no removal notice, snapshot or hand-over from a peer it knows only from
// that peer's own messages (not from the group's configuration).
import assert from "node:assert/strict";
import { peerId } from "@tinykv/raft";
import { shardId } from "@tinykv/shard";
import type { Envelope } from "./driver.ts";
import { TestCluster } from "./_test_cluster.ts";

const SHARD = shardId(1);

function notice(from: number, to: number, sender: Envelope["sender"]): Envelope {
  return {
    shardId: SHARD,
    confEpoch: 1_000_000,
    notMember: true,
    sender,
    message: { type: "heartbeatResponse", from: peerId(from), to: peerId(to), term: 0, round: 0 },
  } as Envelope;
}

Deno.test("a removal notice from another node's peer, or a peer learned from messages, is refused", async () => {
  const cluster = await TestCluster.create(["n1", "n2", "n3"]);
  try {
    await cluster.createShard(SHARD, ["n1", "n2", "n3"], 101);
    await cluster.until(() => cluster.leaderOf(SHARD) !== undefined, "a leader");
    const sender = { nodeId: "n1", address: "mem:n1" };
    const n2 = cluster.node("n2").driver;
    const victim = n2.replicas()[0];
    const n3Peer = [...victim.peers.values()].find((p) => p.nodeId === "n3")!.peerId;
    // n1 in n3's peer's name; then a made-up peer, first heard from, then giving notice.
    const fresh: Envelope = {
      ...notice(999, victim.peerId, sender),
      notMember: false,
      message: {
        type: "heartbeatResponse",
        from: peerId(999),
        to: peerId(victim.peerId),
        term: 0,
        round: 0,
      },
    } as Envelope;
    n2.receive(
      [notice(n3Peer, victim.peerId, sender), fresh, notice(999, victim.peerId, sender)],
      "n1",
    );
    for (let i = 0; i < 20; i++) await cluster.tick();
    assert.equal(n2.replicas().length, 1, "n2 kept its replica");
    // The same notice from n3's own node is a member's word: it is taken.
    n2.receive([notice(n3Peer, victim.peerId, { nodeId: "n3", address: "mem:n3" })], "n3");
    await cluster.until(() => n2.replicas().length === 0, "the member's notice to be taken");
  } finally {
    await cluster.close();
  }
});
