// Checks that operator requests are refused precisely: unknown shards and nodes, moves onto a
// holder, moves without a live majority, busy shards, and drains that leave too few nodes.
import assert from "node:assert/strict";
import {
  checkDrain,
  checkMoveReplica,
  checkTransferLeader,
  type RequestContext,
} from "./requests.ts";
import { view } from "./_testing.ts";
import { shardId as toShardId } from "@tinykv/shard";

function context(fields: Partial<RequestContext> = {}): RequestContext {
  return {
    views: new Map([[1, view()]]),
    live: new Set(["n1", "n2", "n3", "n4"]),
    draining: new Set(),
    busy: new Set(),
    replicaCount: 3,
    ...fields,
  };
}

Deno.test("checkMoveReplica() accepts a valid move and refuses bad ones precisely", () => {
  const ok = checkMoveReplica(context(), { shardId: toShardId(1), from: "n1", to: "n4" });
  assert.deepEqual(ok, {
    kind: "ok",
    value: { kind: "moveReplica", shardId: 1, from: "n1", to: "n4" },
  });
  const cases: [Parameters<typeof checkMoveReplica>, string, RegExp][] = [
    [
      [context(), { shardId: toShardId(9), from: "n1", to: "n4" }],
      "invalidArgument",
      /Shard 9 does not exist/,
    ],
    [
      [context(), { shardId: toShardId(1), from: "n4", to: "n1" }],
      "invalidArgument",
      /holds no voter/,
    ],
    [
      [context(), { shardId: toShardId(1), from: "n1", to: "n2" }],
      "invalidArgument",
      /already holds shard 1/,
    ],
    [
      [context(), { shardId: toShardId(1), from: "n1", to: "n9" }],
      "invalidArgument",
      /not registered/,
    ],
    [
      [context({ busy: new Set([1]) }), { shardId: toShardId(1), from: "n1", to: "n4" }],
      "failedPrecondition",
      /in flight/,
    ],
    [
      [context({ live: new Set(["n1", "n4"]) }), { shardId: toShardId(1), from: "n1", to: "n4" }],
      "failedPrecondition",
      /not a majority/,
    ],
    [
      [context({ draining: new Set(["n4"]) }), { shardId: toShardId(1), from: "n1", to: "n4" }],
      "failedPrecondition",
      /draining/,
    ],
  ];
  for (const [args, kind, message] of cases) {
    const answer = checkMoveReplica(...args);
    assert.equal(answer.kind, kind, JSON.stringify(args[1]));
    assert.match((answer as { message: string }).message, message);
  }
});

Deno.test("checkTransferLeader() needs a live voter that does not lead yet", () => {
  assert.equal(checkTransferLeader(context(), { shardId: toShardId(1), to: "n2" }).kind, "ok");
  assert.equal(
    checkTransferLeader(context(), { shardId: toShardId(1), to: "n4" }).kind,
    "invalidArgument",
  );
  assert.equal(
    checkTransferLeader(context(), { shardId: toShardId(1), to: "n1" }).kind,
    "failedPrecondition",
  );
  const noLeader = context({ views: new Map([[1, view({ leader: undefined })]]) });
  assert.equal(
    checkTransferLeader(noLeader, { shardId: toShardId(1), to: "n2" }).kind,
    "failedPrecondition",
  );
});

Deno.test("checkDrain() refuses unknown nodes and drains that leave too few nodes", () => {
  assert.equal(checkDrain(context(), "n1").kind, "ok");
  assert.equal(checkDrain(context(), "n9").kind, "invalidArgument");
  const refused = checkDrain(context({ draining: new Set(["n4"]) }), "n1");
  assert.equal(refused.kind, "failedPrecondition");
  assert.match((refused as { message: string }).message, /2 eligible nodes would remain/);
});
