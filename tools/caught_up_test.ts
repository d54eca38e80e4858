// Checks catchUp(), the verdict of `deno task caught-up` (table of cluster views: a node that is
// unknown, down, silent, missing a replica, behind its leader by more than the lag, or leading
// itself), and its command line. The wait against a real cluster runs in tests/deploy.
import assert from "node:assert/strict";
import {
  ClusterStateResponse,
  NodeStatusResponse,
  PlacementNodeState,
  PlacementShardState,
  ReplicaStatus,
  ReplicaStatus_Role,
} from "@tinykv/proto/tinykv/v1";
import { type CatchUp, catchUp, LAG_DEFAULT, parseArgs } from "./caught_up.ts";

const LEADER = ReplicaStatus_Role.LEADER;
const FOLLOWER = ReplicaStatus_Role.FOLLOWER;

function state(options: { kv1Live?: boolean; leaderOf2?: string } = {}) {
  return ClusterStateResponse.create({
    isLeader: true,
    nodes: [
      PlacementNodeState.create({ nodeId: "kv1", address: "a1", live: options.kv1Live ?? true }),
      PlacementNodeState.create({ nodeId: "kv2", address: "a2", live: true }),
      PlacementNodeState.create({ nodeId: "kv3", address: "a3", live: true }),
    ],
    shards: [
      PlacementShardState.create({ shardId: 1, voters: ["kv1", "kv2", "kv3"], leader: "kv2" }),
      PlacementShardState.create({
        shardId: 2,
        voters: ["kv1", "kv2", "kv3"],
        leader: options.leaderOf2 ?? "kv3",
      }),
      // A shard kv1 holds no replica of: not its business.
      PlacementShardState.create({ shardId: 3, voters: ["kv2", "kv3"], leader: "kv3" }),
    ],
  });
}

function node(id: string, replicas: Array<[number, ReplicaStatus_Role, number, number]>) {
  return NodeStatusResponse.create({
    nodeId: id,
    replicas: replicas.map(([shardId, role, commitIndex, appliedIndex]) =>
      ReplicaStatus.create({ shardId, role, commitIndex, appliedIndex })
    ),
  });
}

function statuses(...nodes: NodeStatusResponse[]) {
  return new Map(nodes.map((n) => [n.nodeId, n]));
}

const LEADERS = [
  node("kv2", [[1, LEADER, 100, 100], [2, FOLLOWER, 50, 50]]),
  node("kv3", [[1, FOLLOWER, 100, 100], [2, LEADER, 50, 50], [3, LEADER, 7, 7]]),
];

Deno.test("catchUp() waits for what is missing and passes a caught-up node", () => {
  const cases: Array<{ name: string; got: CatchUp; expected: CatchUp }> = [
    {
      name: "caught up: within the lag of each leader's commit",
      got: catchUp(
        "kv1",
        state(),
        statuses(node("kv1", [[1, FOLLOWER, 99, 92], [2, FOLLOWER, 50, 50]]), ...LEADERS),
        LAG_DEFAULT,
      ),
      expected: { kind: "caughtUp", replicas: 2 },
    },
    {
      name: "one entry past the lag",
      got: catchUp(
        "kv1",
        state(),
        statuses(node("kv1", [[1, FOLLOWER, 99, 91], [2, FOLLOWER, 50, 50]]), ...LEADERS),
        LAG_DEFAULT,
      ),
      expected: { kind: "waiting", reasons: ["shard 1: applied 91, kv2's commit 100 (9 behind)"] },
    },
    {
      name: "a shard it leads itself counts as caught up",
      got: catchUp(
        "kv1",
        state({ leaderOf2: "kv1" }),
        statuses(node("kv1", [[1, FOLLOWER, 100, 100], [2, LEADER, 3, 1]]), LEADERS[0]),
        0,
      ),
      expected: { kind: "caughtUp", replicas: 2 },
    },
    {
      name: "unknown node",
      got: catchUp("kv9", state(), statuses(...LEADERS), 8),
      expected: { kind: "waiting", reasons: ["kv9 is not a node placement knows"] },
    },
    {
      name: "not live",
      got: catchUp("kv1", state({ kv1Live: false }), statuses(...LEADERS), 8),
      expected: { kind: "waiting", reasons: ["kv1 is not live (not registered in ZooKeeper)"] },
    },
    {
      name: "silent",
      got: catchUp("kv1", state(), statuses(...LEADERS), 8),
      expected: { kind: "waiting", reasons: ["kv1 does not answer Status"] },
    },
    {
      name: "a replica missing, a leader silent, a shard without a leader",
      got: catchUp(
        "kv1",
        state({ leaderOf2: "" }),
        statuses(node("kv1", [[2, FOLLOWER, 50, 50]]), LEADERS[1]),
        8,
      ),
      expected: {
        kind: "waiting",
        reasons: ["shard 1: no replica on kv1 yet", "shard 2: no leader known"],
      },
    },
    {
      name: "a leader that answers but no longer leads",
      got: catchUp(
        "kv1",
        state(),
        statuses(node("kv1", [[1, FOLLOWER, 1, 1], [2, FOLLOWER, 50, 50]]), LEADERS[1]),
        8,
      ),
      expected: {
        kind: "waiting",
        reasons: ["shard 1: its leader kv2 does not answer as its leader"],
      },
    },
  ];
  for (const { name, got, expected } of cases) assert.deepEqual(got, expected, name);
});

Deno.test("parseArgs() reads the node, flags and defaults, and refuses bad input", () => {
  const env = (name: string) => (name === "TINYKV_CA" ? "/etc/tinykv/ca.crt" : undefined);
  const parsed = parseArgs(["kv1", "--placement", "a:1,b:2", "--lag=3", "--token-file", "t"], env);
  assert.deepEqual(parsed, {
    node: "kv1",
    placements: ["a:1", "b:2"],
    ca: "/etc/tinykv/ca.crt",
    tokenFile: "t",
    serverName: "tinykv",
    lag: 3,
    timeoutMs: 120_000,
  });
  const bad: Array<[string[], RegExp]> = [
    [["--placement", "a:1"], /^Name one NODE/],
    [["kv1", "kv2", "--placement", "a:1"], /^Name one NODE/],
    [["kv1"], /^Flag "--placement" is needed$/],
    [["kv1", "--placement", "a:1", "--lag", "-1"], /^Flag "--lag" must be an integer >= 0$/],
    [["kv1", "--placement", "a:1", "--timeout", "0"], /^Flag "--timeout" must be/],
    [["kv1", "--placement"], /^Flag "--placement" needs a value$/],
    [["kv1", "--bogus", "1"], /^Unknown flag "--bogus"$/],
    [
      ["kv1", "--placement", "a:1", "--token-file", "t"],
      /^A token is sent only over TLS: --token-file needs --ca$/,
    ],
    [["kv1", "--placement", "a:1", "--server-name", "x"], /^Flag "--server-name" needs --ca/],
  ];
  for (const [args, expected] of bad) {
    const result = parseArgs(args, () => undefined);
    assert.equal(typeof result, "string", args.join(" "));
    assert.match(result as string, expected, args.join(" "));
  }
});
