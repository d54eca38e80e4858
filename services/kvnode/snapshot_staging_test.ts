// Checks receiving snapshots into a new generation, on a driver over real LMDB: pieces are staged
// as they come (bounded transactions) and installing the snapshot only switches the replica to the
// staged generation, whose data it then serves; the replaced generation, a staging the core
// refused (stale) and an abandoned staging are all deleted in the background, while the one the
// replica uses survives a restart.
import assert from "node:assert/strict";
import type { LogIndex, PeerId, Term } from "@tinykv/raft";
import { HASH_SPACE } from "@tinykv/shard";
import { Driver, type Envelope, type SnapshotStagingHandle } from "./driver.ts";
import { KvApplication, type KvDriver } from "./kv_app.ts";
import { type Generation, storedGenerations } from "./generations.ts";
import { MemoryKvSpace } from "./kv_space.ts";
import { NodeStore } from "./node_store.ts";
import { pieces, snapshotRecords } from "./snapshot_stream.ts";
import { TEST_TUNING } from "./_test_cluster.ts";
import { shardId as toShardId } from "@tinykv/shard";

const enc = (s: string) => new TextEncoder().encode(s);
const SELF = 21;
const LEADER = 11;

/** Snapshot data of a state with `keys` keys (inline bytes, as a sender would stream them). */
function snapshotData(keys: number, tag: string): Uint8Array[] {
  const spaces = {
    data: new MemoryKvSpace(),
    sessions: new MemoryKvSpace(),
    meta: new MemoryKvSpace(),
  };
  for (let i = 0; i < keys; i++) spaces.data.put(enc(`k${i}`), enc(`${tag}-${i}`));
  return [...pieces(snapshotRecords(spaces), 1000)];
}

function snapshotEnvelope(index: number, data: Uint8Array = new Uint8Array(0)): Envelope {
  return {
    shardId: toShardId(1),
    confEpoch: 0,
    message: {
      type: "snapshot",
      from: LEADER as PeerId,
      to: SELF as PeerId,
      term: 1 as Term,
      snapshot: {
        metadata: {
          index: index as LogIndex,
          term: 1 as Term,
          confState: {
            voters: [LEADER as PeerId],
            learners: [SELF as PeerId],
            epoch: 0 as LogIndex,
          },
        },
        data,
      },
    },
    sender: { nodeId: "leader", address: "mem:leader" },
  };
}

async function withJoiningReplica(
  test: (driver: KvDriver, store: NodeStore, restart: () => Promise<KvDriver>) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-staging-" });
  let store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
  const open = () => {
    const driver = new Driver({
      store,
      nodeId: "n2",
      tuning: TEST_TUNING,
      outbound: { send() {}, flush() {}, ping() {} },
      clock: { now: () => 1_700_000_000_000 },
      log: { info() {}, warn() {}, error() {} },
      seed: 2,
      app: new KvApplication(),
    });
    assert.equal(driver.load().kind, "ok");
    driver.start();
    return driver;
  };
  let driver = open();
  try {
    const created = await driver.createReplica({
      shardId: toShardId(1),
      peerId: SELF,
      range: { lo: 0, hi: HASH_SPACE },
      peers: [
        { peerId: LEADER, nodeId: "leader", address: "mem:leader" },
        { peerId: SELF, nodeId: "n2", address: "mem:n2" },
      ],
      initialConfState: {
        voters: [LEADER as PeerId],
        learners: [SELF as PeerId],
        epoch: 0 as LogIndex,
      },
    });
    assert.equal(created.kind, "ok");
    await test(driver, store, async () => {
      await driver.stop();
      await store.close();
      store = NodeStore.open({ dir, mapBytes: 64 * 1024 * 1024 });
      driver = open();
      return driver;
    });
  } finally {
    await driver.stop();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Stages `data` through a staging handle and hands the message to the driver. */
async function deliver(driver: KvDriver, index: number, data: Uint8Array[]): Promise<number> {
  const staging = driver.stageSnapshot(snapshotEnvelope(index)) as SnapshotStagingHandle;
  assert.ok(!("refused" in staging));
  for (const piece of data) assert.equal(await staging.write(piece), undefined);
  const finished = await staging.finish();
  assert.equal(finished.kind, "ok");
  if (finished.kind !== "ok") throw new Error("unreachable");
  driver.receive([snapshotEnvelope(index, finished.data)]);
  await driver.whenIdle();
  return driver.replicas()[0].generation;
}

function generations(store: NodeStore): Generation[] {
  return [...storedGenerations(store)];
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(condition(), `timed out waiting for ${what}`);
}

Deno.test("a staged snapshot installs as a new generation and the old one is deleted", async () => {
  await withJoiningReplica(async (driver, store, restart) => {
    const first = await deliver(driver, 10, snapshotData(50, "a"));
    assert.ok(first > 0);
    const replica = driver.replicas()[0];
    assert.equal(replica.log.appliedState.applied, 10);
    assert.deepEqual(replica.machine.kv.get(enc("k7")), { found: true, value: enc("a-7") });
    const second = await deliver(driver, 20, snapshotData(30, "b"));
    assert.ok(second > first);
    assert.deepEqual(driver.replicas()[0].machine.kv.get(enc("k7")).value, enc("b-7"));
    assert.equal(driver.replicas()[0].machine.kv.get(enc("k40")).found, false);
    await until(
      () => generations(store).every((g) => g.generation === second),
      "the replaced generations to be deleted",
    );
    assert.deepEqual(generations(store), [{ peerId: SELF, generation: second }]);
    const restarted = await restart();
    assert.equal(restarted.replicas()[0].generation, second);
    assert.deepEqual(restarted.replicas()[0].machine.kv.get(enc("k7")).value, enc("b-7"));
  });
});

Deno.test("a stale staged snapshot and an abandoned staging are deleted, the live one kept", async () => {
  await withJoiningReplica(async (driver, store) => {
    const live = await deliver(driver, 30, snapshotData(20, "live"));
    // Older than what the replica holds: the core refuses it, and its staging is garbage.
    const stale = await deliver(driver, 5, snapshotData(10, "stale"));
    assert.equal(stale, live, "the stale snapshot was not installed");
    // A transfer whose checksum did not match after its last piece, and one that broke off.
    const broken = driver.stageSnapshot(snapshotEnvelope(40)) as SnapshotStagingHandle;
    for (const piece of snapshotData(10, "broken")) await broken.write(piece);
    assert.equal((await broken.finish()).kind, "ok");
    broken.abort();
    const abandoned = driver.stageSnapshot(snapshotEnvelope(50)) as SnapshotStagingHandle;
    for (const piece of snapshotData(500, "abandoned")) await abandoned.write(piece);
    abandoned.abort();
    await until(
      () => generations(store).every((g) => g.generation === live),
      "every unused generation to be deleted",
    );
    assert.deepEqual(driver.replicas()[0].machine.kv.get(enc("k3")).value, enc("live-3"));
  });
});

Deno.test("a snapshot for a replica the node does not have is refused before any data", async () => {
  await withJoiningReplica((driver) => {
    const refused = driver.stageSnapshot({ ...snapshotEnvelope(10), shardId: toShardId(9) });
    assert.ok("refused" in refused);
    assert.match(refused.refused, /has no replica peer 21 of shard 9/);
    return Promise.resolve();
  });
});

Deno.test("a snapshot record with a key longer than any key is refused, nothing installed", async () => {
  await withJoiningReplica(async (driver) => {
    const staging = driver.stageSnapshot(snapshotEnvelope(10)) as SnapshotStagingHandle;
    const [piece] = pieces(
      [{ space: 0, key: new Uint8Array(4097), value: new Uint8Array(1) }],
      1 << 20,
    );
    assert.match(await staging.write(piece) ?? "", /key of 4097 bytes: the maximum is 4096/);
    staging.abort();
    assert.equal(driver.replicas()[0].generation, 0);
  });
});
