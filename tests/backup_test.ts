// `tinykv backup` and `tinykv restore` end to end, as the CLI runs them (a subprocess with its
// task's permissions) against real dev clusters: a backup taken under a steady write load holds
// every write acknowledged before it started (each key at that write or a later one, never an
// older one), plus the largest key and value the API allows, byte for byte; it restores into a
// fresh cluster with another number of shards. A damaged backup is refused before anything is
// written, a restore into a cluster that holds keys is refused, a backup into a directory that is
// not empty is refused; each with its documented exit code and the cluster left as it was. At
// small limits (128 KiB values, 1 MiB messages) values at the limit export in several messages,
// a backup holding a larger value is refused whole, and a follower refuses an export naming the
// leader.
import assert from "node:assert/strict";
import { bytes, text, TinyKvClient } from "@tinykv/client";
import { KEY_BYTES_MAX } from "@tinykv/shard";
import { type CliRun, runCli } from "./_harness/cli.ts";
import {
  devArgs,
  type DevPorts,
  devPorts,
  killDev,
  type RunningDev,
  runUntilServing,
  stopDev,
} from "./_harness/dev_cluster.ts";
import { patternBytes } from "./_harness/bytes.ts";
import { EXIT } from "../tools/tinykv.ts";
import { type Manifest, MANIFEST_FILE, readShardFile } from "../tools/tinykv/backup.ts";
import * as grpc from "@grpc/grpc-js";
import { type ExportShardChunk, NodeAdminService, PlacementService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, failureFromError, unaryCaller } from "@tinykv/rpc";

/** The default `storage.value_bytes_max`: the largest value the API takes. */
const VALUE_BYTES_MAX = 1024 * 1024;
/** A small cluster's `storage.value_bytes_max` and `rpc_server.max_message_bytes`. */
const SMALL_VALUE_BYTES_MAX = 128 * 1024;
const SMALL_MESSAGE_BYTES_MAX = 1024 * 1024;

/** Placement's cluster state. */
async function stateOf(placement: string) {
  const admin = createGrpcClient(PlacementService, placement, { maxMessageBytes: 8 << 20 });
  try {
    const state = await unaryCaller(admin, "ClusterState")({}, { deadlineMs: 5000 });
    if (state.kind !== "ok") assert.fail(`ClusterState: ${state.message}`);
    return state.response;
  } finally {
    admin.close();
  }
}

/** One `ExportShard` call's failure, or "ok" when it streamed to its end. */
async function exportOnce(address: string, clusterId: string, shard: number) {
  const admin = createGrpcClient(NodeAdminService, address, { maxMessageBytes: 8 << 20 });
  try {
    const call = admin.ExportShard(
      { clusterId, shardId: shard, timeoutMs: 2000 },
      new grpc.Metadata(),
      {},
    );
    for await (const _ of call as AsyncIterable<ExportShardChunk>) { /* drained */ }
    return { kind: "ok", message: "" };
  } catch (error) {
    return failureFromError(error);
  } finally {
    admin.close();
  }
}

/** The pairs of a backup, by key as text, each shard file read and checked as restore does. */
async function readBackup(dir: string, manifest: Manifest): Promise<Map<string, Uint8Array>> {
  const pairs = new Map<string, Uint8Array>();
  for (const shard of manifest.shards) {
    await readShardFile(dir, shard, (key, value) => {
      pairs.set(text(key), value);
      return Promise.resolve();
    });
  }
  return pairs;
}
const WRITERS = 4;
const KEYS_PER_WRITER = 40;

function expectCli(run: CliRun, code: number): void {
  assert.equal(run.code, code, JSON.stringify(run));
}

/** Every key and value of the cluster, by paging through a scan of all of it. */
async function everything(client: TinyKvClient): Promise<Map<string, Uint8Array>> {
  const all = new Map<string, Uint8Array>();
  for await (const page of client.scanPages({ pageSize: 500 })) {
    for (const { key, value } of page.entries) all.set(text(key), value);
  }
  return all;
}

/**
 * Writers that keep overwriting their own keys with `<key>#<seq>`, seq rising per key; records
 * the highest acknowledged and the highest attempted seq of each key.
 */
class Load {
  readonly acked = new Map<string, number>();
  readonly attempted = new Map<string, number>();
  failures = 0;
  #stopped = false;
  readonly #done: Promise<void[]>;

  constructor(client: TinyKvClient) {
    this.#done = Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      for (let seq = 1; !this.#stopped; seq++) {
        for (let k = 0; k < KEYS_PER_WRITER && !this.#stopped; k++) {
          const key = `w${w}-k${k}`;
          this.attempted.set(key, seq);
          try {
            await client.put(key, `${key}#${seq}`, { deadlineMs: 10_000 });
            this.acked.set(key, seq);
          } catch {
            this.failures++;
          }
        }
      }
    }));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

Deno.test("backup under load, then restore into a fresh cluster: every acknowledged write", async () => {
  const root = await Deno.makeTempDir({ prefix: "tinykv-backup-" });
  const dirA = `${root}/a`;
  const dirB = `${root}/b`;
  const backup = `${root}/backup`;
  const portsA = devPorts();
  let running: RunningDev | undefined;
  const at = (ports: DevPorts) => ({
    gateway: `127.0.0.1:${ports.gateway}`,
    placement: `127.0.0.1:${ports.admin}`,
  });
  try {
    // Cluster A: 4 shards, a steady load, and the largest key and value the API takes.
    running = await runUntilServing(["--fresh", "--no-restart", ...devArgs(dirA, portsA, 4)]);
    const a = at(portsA);
    const clientA = TinyKvClient.connect({
      endpoints: [a.gateway],
      maxMessageBytes: 4 * VALUE_BYTES_MAX,
    });
    const bigKey = patternBytes(KEY_BYTES_MAX, 1);
    const bigValue = patternBytes(VALUE_BYTES_MAX, 2);
    await clientA.put(bigKey, bigValue);
    const load = new Load(clientA);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const ackedBefore = new Map(load.acked);
    const run = await runCli(["--placement", a.placement, "--json", "backup", backup]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await load.stop();
    expectCli(run, EXIT.ok);
    assert.ok(ackedBefore.size >= WRITERS, `the load acknowledged writes: ${ackedBefore.size}`);
    const manifest: Manifest = JSON.parse(
      await Deno.readTextFile(`${backup}/${MANIFEST_FILE}`),
    );
    assert.deepEqual(JSON.parse(run.stdout).manifest, manifest);
    assert.equal(manifest.shards.length, 4);
    assert.ok(manifest.shards.every((s) => s.applied_index > 0 && s.node_id !== ""));
    assert.equal(manifest.keys, manifest.shards.reduce((n, s) => n + s.keys, 0));
    const keysInBackup = manifest.keys;

    // A backup never goes into a directory that holds anything.
    const again = await runCli(["--placement", a.placement, "backup", backup]);
    expectCli(again, EXIT.server);
    assert.match(again.stderr, /failedPrecondition: Directory .* is not empty/);
    clientA.close();
    await stopDev(running, dirA);
    running = undefined;

    // Cluster B, fresh, with 3 shards.
    const portsB = devPorts();
    running = await runUntilServing(["--fresh", "--no-restart", ...devArgs(dirB, portsB, 3)]);
    const b = at(portsB);
    const clientB = TinyKvClient.connect({
      endpoints: [b.gateway],
      maxMessageBytes: 4 * VALUE_BYTES_MAX,
    });
    try {
      // A damaged copy is refused before anything is written.
      const damaged = `${root}/damaged`;
      await Deno.mkdir(damaged);
      for await (const entry of Deno.readDir(backup)) {
        await Deno.copyFile(`${backup}/${entry.name}`, `${damaged}/${entry.name}`);
      }
      const victim = manifest.shards.find((s) => s.bytes > 0)!;
      const file = await Deno.readFile(`${damaged}/${victim.file}`);
      file[file.length - 1] ^= 0xff;
      await Deno.writeFile(`${damaged}/${victim.file}`, file);
      const refused = await runCli(["--endpoint", b.gateway, "restore", damaged]);
      expectCli(refused, EXIT.server);
      assert.match(
        refused.stderr,
        /dataLoss: Backup file .*: its SHA-256 is .* the file is damaged/,
      );
      assert.equal((await everything(clientB)).size, 0, "nothing was written");

      const restored = await runCli(["--endpoint", b.gateway, "--json", "restore", backup]);
      expectCli(restored, EXIT.ok);
      assert.deepEqual(JSON.parse(restored.stdout), {
        ok: true,
        keys: keysInBackup,
        bytes: manifest.bytes,
        shards: 4,
      });

      const all = await everything(clientB);
      assert.equal(all.size, keysInBackup);
      for (const [key, seq] of ackedBefore) {
        const value = all.get(key);
        assert.ok(value !== undefined, `key ${key} (acknowledged at #${seq}) is restored`);
        const [name, got] = text(value).split("#");
        assert.equal(name, key);
        assert.ok(
          Number(got) >= seq && Number(got) <= load.attempted.get(key)!,
          `key ${key}: restored #${got}, acknowledged #${seq} before the backup`,
        );
      }
      const big = await clientB.get(bigKey);
      assert.ok(big.found);
      assert.deepEqual(big.value, bigValue, "the largest value reads back whole");

      // A restore into a cluster that holds keys is refused and changes nothing.
      await clientB.put("written-after", bytes("x"));
      const twice = await runCli(["--endpoint", b.gateway, "restore", backup]);
      expectCli(twice, EXIT.server);
      assert.match(twice.stderr, /failedPrecondition: The cluster at .* holds keys already/);
      assert.equal((await everything(clientB)).size, keysInBackup + 1);
    } finally {
      clientB.close();
    }
    await stopDev(running, dirB);
    running = undefined;

    // Cluster S, at small limits: values of at most 128 KiB, messages of at most 1 MiB.
    const dirS = `${root}/s`;
    const portsS = devPorts();
    running = await runUntilServing([
      "--fresh",
      "--no-restart",
      ...devArgs(dirS, portsS, 1),
      `--rpc_server.max_message_bytes=${SMALL_MESSAGE_BYTES_MAX}`,
      `--storage.value_bytes_max=${SMALL_VALUE_BYTES_MAX}`,
      "--raft.message_bytes_max=262144",
    ]);
    const s = at(portsS);
    const clientS = TinyKvClient.connect({ endpoints: [s.gateway], maxMessageBytes: 4 << 20 });
    try {
      // The backup's 1 MiB value is over S's limit: refused before any pair is written.
      const tooLarge = await runCli(["--endpoint", s.gateway, "restore", backup]);
      expectCli(tooLarge, EXIT.invalidArgument);
      assert.match(tooLarge.stderr, /refuses the backup's largest value \(1048576 bytes\)/);
      assert.equal((await everything(clientS)).size, 0, "nothing was written");

      // Values at S's limit, 1.5 MiB in the one shard: exported in several messages of at most
      // 1 MiB, and the copy reads back whole.
      const values = Array.from({ length: 12 }, (_, i) => patternBytes(SMALL_VALUE_BYTES_MAX, i));
      for (const [i, value] of values.entries()) await clientS.put(`big-${i}`, value);
      const small = `${root}/small`;
      const copied = await runCli(["--placement", s.placement, "--json", "backup", small]);
      expectCli(copied, EXIT.ok);
      const smallManifest: Manifest = JSON.parse(copied.stdout).manifest;
      assert.equal(smallManifest.keys, 12);
      const pairs = await readBackup(small, smallManifest);
      for (const [i, value] of values.entries()) assert.deepEqual(pairs.get(`big-${i}`), value);

      // A follower refuses an export and names the leader.
      const [shard] = await (await stateOf(s.placement)).shards;
      const follower = shard.voters.find((v) => v !== shard.leader)!;
      const followerAddress = (await stateOf(s.placement)).nodes.find((n) => n.nodeId === follower)!
        .address;
      const refused = await exportOnce(followerAddress, smallManifest.cluster_id, shard.shardId);
      assert.equal(refused.kind, "unavailable", JSON.stringify(refused));
      assert.match(refused.message, /the leader is at 127\.0\.0\.1:\d+$/);
    } finally {
      clientS.close();
    }
    await stopDev(running, dirS);
    running = undefined;
  } finally {
    await killDev(running);
    await Deno.remove(root, { recursive: true });
  }
});
