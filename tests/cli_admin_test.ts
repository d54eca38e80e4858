// The admin commands of the `tinykv` CLI against a real cluster: 4 kvnodes, 3 shards and one
// placement instance with fast timings. The CLI runs as a subprocess with the permissions of
// `deno task tinykv`, and each step checks its output against placement's own view: `status` in
// human and --json output, `rebalance --dry-run`, a `transfer-leader` and a `move` followed until
// done through `status --json`, bad input refused with exit 3 and the server's message, `drain`
// printing progress lines until the node is empty, a non-leader redirecting to the leader, and an
// unreachable placement giving exit 4. 3 shards on 4 nodes: the operator's moves below keep the
// replica and leader counts within 1 of each other, so the planner does not move them back.
import { type CliRun, runCli } from "./_harness/cli.ts";
import assert from "node:assert/strict";
import type { ClusterStateResponse } from "@tinykv/proto/tinykv/v1";
import { waitFor } from "@tinykv/zk/testing";
import { PlacementProcess, state, waitSettled, withPlacement } from "./_harness/placement.ts";

function cli(placement: string, ...args: string[]): Promise<CliRun> {
  return runCli(["--placement", placement, ...args]);
}

function expectCli(run: CliRun, code: number, stdout?: RegExp): void {
  const what = JSON.stringify(run);
  assert.equal(run.code, code, what);
  if (stdout !== undefined) assert.match(run.stdout, stdout, what);
}

async function statusJson(placement: string): Promise<
  ClusterStateResponse & {
    shardStats: { shardId: number; appliedIndex: number; dataBytes: number }[];
  }
> {
  const run = await cli(placement, "--json", "status");
  expectCli(run, 0);
  return JSON.parse(run.stdout);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const spread = (counts: number[]) => Math.max(...counts) - Math.min(...counts);

Deno.test("cli: admin commands against a real cluster with placement", async (t) => {
  await withPlacement({ nodes: 4, shards: 3 }, async (cluster, placement, client) => {
    await placement.waitUntilLeader();
    const at = placement.adminAddress;
    let settled = await waitSettled(placement, {
      replicas: 3,
      timeoutMs: 40_000,
      balanced: cluster.nodes.map((n) => n.nodeId),
      extra: (s) => spread(s.nodes.map((n) => n.leaders)) <= 1,
    });
    for (let i = 0; i < 30; i++) await client.put(`cli-admin-${i}`, `v${i}`);

    await t.step("status: human tables match placement's view", async () => {
      const run = await cli(at, "status");
      expectCli(run, 0, /No moves in progress/);
      settled = await state(placement);
      for (const node of settled.nodes) {
        const row = new RegExp(
          `^${escape(node.nodeId)}\\s+${escape(node.address)}\\s+yes\\s+no\\s+` +
            `${node.replicas}\\s+${node.leaders}$`,
          "m",
        );
        assert.match(run.stdout, row, run.stdout);
      }
      assert.match(run.stdout, /^SHARD\s+RANGE\s+REPLICAS\s+LEARNERS\s+LEADER\s+CONF EPOCH/m);
      for (const shard of settled.shards) {
        const row = new RegExp(
          `^${shard.shardId}\\s+\\[0x[0-9a-f]{8}, 0x[0-9a-f]{8,9}\\)\\s+` +
            `${escape(shard.voters.join(","))}\\s+-\\s+${escape(shard.leader)}\\s+` +
            `${shard.confEpoch}\\s+\\d+\\s+\\d+(\\.\\d)? (B|KiB|MiB) \\(\\d+ keys\\)$`,
          "m",
        );
        assert.match(run.stdout, row, run.stdout);
      }
    });

    await t.step("status --json: placement's ClusterState and the kvnodes' stats", async () => {
      const json = await statusJson(at);
      assert.equal(json.isLeader, true);
      assert.equal(json.bootstrapped, true);
      assert.deepEqual(json.nodes, settled.nodes);
      assert.deepEqual(
        json.shards.map((s) => [s.shardId, [...s.voters].sort()]),
        settled.shards.map((s) => [s.shardId, [...s.voters].sort()]),
      );
      assert.deepEqual(json.shardStats.map((s) => s.shardId).sort(), [1, 2, 3]);
      assert.ok(json.shardStats.every((s) => s.appliedIndex > 0), JSON.stringify(json.shardStats));
      assert.ok(json.shardStats.some((s) => s.dataBytes > 0), "the keys written show as size");
    });

    await t.step("rebalance --dry-run: the plan, not started", async () => {
      expectCli(
        await cli(at, "rebalance", "--dry-run"),
        0,
        /^(No moves planned|Planned \d+ moves? \(dry run: not started\))/,
      );
      const json = JSON.parse((await cli(at, "--json", "rebalance", "--dry-run")).stdout);
      assert.equal(json.dryRun, true);
      assert.equal(json.started, false);
      assert.ok(Array.isArray(json.moves) && Array.isArray(json.notes));
    });

    await t.step("transfer-leader: the leadership moves", async () => {
      // A voter that leads nothing, so leaders stay balanced.
      const idle = settled.nodes.filter((n) => n.leaders === 0).map((n) => n.nodeId);
      const shard = settled.shards.find((s) => s.voters.some((v) => idle.includes(v)))!;
      const to = shard.voters.find((v) => idle.includes(v))!;
      const run = await cli(at, "transfer-leader", String(shard.shardId), "--to", to);
      expectCli(run, 0, new RegExp(`^Started: leader of shard ${shard.shardId} moved to ${to}`));
      await waitFor(async () => {
        const now = await statusJson(at);
        return now.shards.find((s) => s.shardId === shard.shardId)?.leader === to;
      }, { timeoutMs: 15_000, what: `shard ${shard.shardId} led by ${to} in status` });
    });

    await t.step("move: the replica moves", async () => {
      settled = await waitSettled(placement, { replicas: 3, timeoutMs: 15_000 });
      const from = settled.nodes.reduce((a, b) => (b.replicas > a.replicas ? b : a)).nodeId;
      const shard = settled.shards.find((s) => s.voters.includes(from) && s.leader !== from) ??
        settled.shards.find((s) => s.voters.includes(from))!;
      const to = settled.nodes.find((n) => !shard.voters.includes(n.nodeId))!.nodeId;
      const run = await cli(at, "move", String(shard.shardId), "--from", from, "--to", to);
      expectCli(run, 0, new RegExp(`^Started: shard ${shard.shardId}: replica moved from ${from}`));
      assert.match(run.stdout, /^Step: \w+ \(1 of \d+\)/m);
      await waitFor(async () => {
        const now = await statusJson(at);
        const moved = now.shards.find((s) => s.shardId === shard.shardId)!;
        return moved.voters.includes(to) && !moved.voters.includes(from) &&
          moved.learners.length === 0 && !now.tasks.some((x) => x.move?.shardId === shard.shardId);
      }, { timeoutMs: 30_000, what: `shard ${shard.shardId} moved from ${from} to ${to}` });
    });

    await t.step("bad input: exit 3 with the server's message", async () => {
      const [n1, n2] = settled.nodes.map((n) => n.nodeId);
      const unknownShard = await cli(at, "move", "99", "--from", n1, "--to", n2);
      expectCli(unknownShard, 3);
      assert.match(unknownShard.stderr, /^error: invalidArgument: Shard 99 does not exist/);
      const unknownNode = await cli(at, "transfer-leader", "1", "--to", "n-nowhere");
      expectCli(unknownNode, 3);
      assert.match(unknownNode.stderr, /Node "n-nowhere" is not a voter of shard 1/);
      const drain = await cli(at, "--json", "drain", "n-nowhere");
      expectCli(drain, 3);
      const error = JSON.parse(drain.stdout).error;
      assert.equal(error.code, "invalidArgument");
      assert.match(error.message, /Node "n-nowhere" is unknown/);
      const usage = await cli(at, "move", "one", "--from", n1, "--to", n2);
      expectCli(usage, 2);
      assert.match(usage.stderr, /Shard "one" is not a shard id/);
    });

    await t.step("drain: progress lines until the node holds no replica", async () => {
      settled = await waitSettled(placement, { replicas: 3, timeoutMs: 30_000 });
      const node = settled.nodes.find((n) => n.replicas > 0)!;
      const run = await cli(at, "--timeout", "60000", "drain", node.nodeId);
      expectCli(run, 0);
      const lines = run.stdout.trimEnd().split("\n");
      const progress = new RegExp(
        `^drain "${node.nodeId}": \\d+ of \\d+ replicas left \\(\\d+s\\)$`,
      );
      assert.ok(lines.slice(0, -1).length >= 1, run.stdout);
      assert.ok(lines.slice(0, -1).every((line) => progress.test(line)), run.stdout);
      assert.match(lines[0], new RegExp(` of ${node.replicas} replicas left`));
      assert.match(lines.at(-1)!, new RegExp(`^Node "${node.nodeId}" is drained: `));
      const after = await statusJson(at);
      const drained = after.nodes.find((n) => n.nodeId === node.nodeId)!;
      assert.equal(drained.replicas, 0);
      assert.equal(drained.draining, true);
      assert.ok(after.shards.every((s) => !s.learners.includes(node.nodeId)));
    });

    await t.step("a non-leader placement redirects to the leader", async () => {
      const second = await PlacementProcess.start(cluster);
      try {
        const run = await cli(second.adminAddress, "--json", "status");
        expectCli(run, 0);
        assert.equal(JSON.parse(run.stdout).isLeader, true);
      } finally {
        await second.close();
      }
    });

    await t.step("an unreachable placement: exit 4", async () => {
      const run = await cli("127.0.0.1:1", "--timeout", "500", "status");
      expectCli(run, 4);
      assert.match(run.stderr, /^error: unavailable: Placement at 127\.0\.0\.1:1: /);
    });
  });
});
