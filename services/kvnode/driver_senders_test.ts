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

Deno.test("a snapshot from a peer known only from its messages is taken only if it keeps the replica", async () => {
  const cluster = await TestCluster.create(["n1", "n2", "n3"]);
  try {
    await cluster.createShard(SHARD, ["n1", "n2", "n3"], 101);
    await cluster.until(() => cluster.leaderOf(SHARD) !== undefined, "a leader");
    const n2 = cluster.node("n2").driver;
    const self = n2.replicas()[0].peerId;
    // A new member the replica has not heard of yet (it joined past the replica's log), leading.
    const snapshot = (voters: number[], learners: number[] = []): Envelope => ({
      shardId: SHARD,
      confEpoch: 1_000_000,
      sender: { nodeId: "n4", address: "mem:n4" },
      message: {
        type: "snapshot",
        from: peerId(999),
        to: peerId(self),
        term: 1_000,
        snapshot: {
          metadata: {
            index: 1_000,
            term: 1_000,
            confState: {
              voters: voters.map(peerId),
              learners: learners.map(peerId),
              epoch: 900,
            },
          },
          data: new Uint8Array(0),
        },
      },
    } as unknown as Envelope);
    // Refused: the snapshot's membership drops the replica (it would evict it), or does not list
    // the sender as a voter.
    for (const refused of [snapshot([999]), snapshot([999], [5]), snapshot([self], [999])]) {
      const staged = n2.stageSnapshot(refused);
      assert.ok("refused" in staged, JSON.stringify(refused.message));
      assert.match(staged.refused, /is not a member it knows/);
    }
    // Taken: the sender leads a membership that keeps the replica (as a voter or a learner).
    for (const taken of [snapshot([999, self]), snapshot([999], [self])]) {
      const staged = n2.stageSnapshot(taken);
      assert.ok(!("refused" in staged), JSON.stringify(staged));
      staged.abort();
    }
  } finally {
    await cluster.close();
  }
});
