// `tinykv backup` and `tinykv restore` end to end, as the CLI runs them (a subprocess with its
// task's permissions) against real dev clusters: a backup taken under a steady write load holds
// every write acknowledged before it started (each key at that write or a later one, never an
// older one), plus the largest key and value the API allows, byte for byte; it restores into a
// fresh cluster with another number of shards. A damaged backup is refused before anything is
// written, a restore into a cluster that holds keys is refused, a backup into a directory that is
// not empty is refused; each with its documented exit code and the cluster left as it was.
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
import { type Manifest, MANIFEST_FILE } from "../tools/tinykv/backup.ts";

/** The default `storage.value_bytes_max`: the largest value the API takes. */
const VALUE_BYTES_MAX = 1024 * 1024;
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
  } finally {
    await killDev(running);
    await Deno.remove(root, { recursive: true });
  }
});
