// Checks the placement leader's invariants on an in-memory ZooKeeper, with no kvnode: a shard
// counts as busy from the moment startMove() is called, so a second move of it is an assertion,
// and a broken invariant in a round stops the loop (resolving `failed`) where any other failure of
// a round is logged and retried.
import assert from "node:assert/strict";
import type { Logger } from "@tinykv/log";
import { type Move, nodeId, PLANNER_LIMITS_DEFAULT, shardId } from "@tinykv/shard";
import type {
  CreateResult,
  DeleteResult,
  NodeData,
  SetDataResult,
  ZnodeData,
  ZooKeeperClient,
} from "@tinykv/zk";
import { AssertionError } from "./_assert.ts";
import { DecisionLog, DECISIONS_PATH } from "./decisions.ts";
import { PATHS, PlacementLeader } from "./leader.ts";
import { PlacementMetrics } from "./metrics.ts";
import { newRegistry } from "@tinykv/metrics";
import { NodeAdminPool } from "./node_admin.ts";

/** The ZooKeeper calls the leader makes, on a map of paths; no watch ever fires after the first. */
class MemoryZooKeeper {
  readonly nodes = new Map<string, NodeData>();
  connected = true;
  /** Runs before every read: a test throws from it to stand for a failure. */
  beforeGet: (path: string) => void = () => {};
  /** Every write waits for it: a test holds it to catch a write half done. */
  writeGate: Promise<void> = Promise.resolve();
  readonly #created = new Map<string, PromiseWithResolvers<void>>();

  /** Resolves once `path` is created. */
  created(path: string): Promise<void> {
    return this.#createdSignal(path).promise;
  }

  #createdSignal(path: string): PromiseWithResolvers<void> {
    const signal = this.#created.get(path) ?? Promise.withResolvers<void>();
    this.#created.set(path, signal);
    return signal;
  }

  async mkdirp(_path: string): Promise<void> {}

  get(path: string): Promise<NodeData | undefined> {
    this.beforeGet(path);
    return Promise.resolve(this.nodes.get(path));
  }

  children(path: string): Promise<string[] | undefined> {
    const prefix = `${path}/`;
    return Promise.resolve(
      [...this.nodes.keys()].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length)),
    );
  }

  async create(path: string, data: ZnodeData = ""): Promise<CreateResult> {
    await this.writeGate;
    if (this.nodes.has(path)) return { kind: "nodeExists" };
    this.nodes.set(path, { data: bytes(data), version: 0 });
    this.#createdSignal(path).resolve();
    return { kind: "ok", path };
  }

  async setData(path: string, data: ZnodeData, expectedVersion: number): Promise<SetDataResult> {
    await this.writeGate;
    const node = this.nodes.get(path);
    if (node === undefined) return { kind: "noNode" };
    if (expectedVersion !== -1 && expectedVersion !== node.version) return { kind: "badVersion" };
    this.nodes.set(path, { data: bytes(data), version: node.version + 1 });
    return { kind: "ok", version: node.version + 1 };
  }

  async delete(path: string): Promise<DeleteResult> {
    await this.writeGate;
    return this.nodes.delete(path) ? { kind: "ok" } : { kind: "noNode" };
  }

  watchChildren(_path: string, onChange: (children: string[] | undefined) => void): () => void {
    onChange([]);
    return () => {};
  }

  watchData(_path: string, _onChange: (node: NodeData | undefined) => void): () => void {
    return () => {};
  }
}

function bytes(data: ZnodeData): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}

/** A logger that keeps the messages of warnings and errors. */
function recordingLog(): { log: Logger; warnings: string[]; errors: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  const appended = { kind: "appended" } as const;
  const log = {
    debug: () => appended,
    info: () => appended,
    warn: (message: string) => (warnings.push(message), appended),
    error: (message: string) => (errors.push(message), appended),
  } as unknown as Logger;
  return { log, warnings, errors };
}

function newLeader(zk: MemoryZooKeeper, log: Logger, statusIntervalMs: number): PlacementLeader {
  const client = zk as unknown as ZooKeeperClient;
  const metrics = new PlacementMetrics(newRegistry());
  return new PlacementLeader(client, {
    settings: {
      numShards: 1,
      replicaCount: 3,
      statusIntervalMs,
      snapshotBytesPerSecond: 1,
      limits: PLANNER_LIMITS_DEFAULT,
    },
    log,
    decisions: new DecisionLog(client),
    admin: new NodeAdminPool(() => "c"),
    metrics,
  });
}

/** `promise`, or a rejection after `timeoutMs`. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const MOVE: Move = {
  kind: "transferLeader",
  shardId: shardId(1),
  from: nodeId("n1"),
  to: nodeId("n2"),
};
const OPTIONS = { cause: "operator", reason: "test" };

Deno.test("startMove() counts the shard busy at once and asserts one move per shard", async () => {
  const zk = new MemoryZooKeeper();
  const { log } = recordingLog();
  const leader = newLeader(zk, log, 60_000);
  // The first round ends by writing the decision log; no round changes anything after it.
  const firstRound = zk.created(DECISIONS_PATH);
  await leader.start();
  await within(firstRound, 5000, "the first round");
  zk.connected = false;
  try {
    assert.equal(leader.requestContext()?.busy.has(1), false);
    const gate = Promise.withResolvers<void>();
    zk.writeGate = gate.promise;
    const first = leader.startMove(MOVE, OPTIONS);
    // Busy before the task is written: a request checked now is refused, not started twice.
    assert.equal(leader.requestContext()?.busy.has(1), true);
    await assert.rejects(leader.startMove(MOVE, OPTIONS), AssertionError);
    gate.resolve();
    const task = await first;
    assert.equal(task.move, MOVE);
    assert.ok(zk.nodes.has(`${PATHS.tasks}/1`));
    assert.equal(leader.requestContext()?.busy.has(1), true);
    await assert.rejects(leader.startMove(MOVE, OPTIONS), {
      name: "AssertionError",
      message: /^Shard 1 already has a move in flight/,
    });
  } finally {
    await leader.stop();
  }
});

Deno.test("startMove() frees the shard when its task cannot be written", async () => {
  const zk = new MemoryZooKeeper();
  const { log } = recordingLog();
  const leader = newLeader(zk, log, 60_000);
  zk.writeGate = Promise.reject(new Error("ZooKeeper went away"));
  zk.writeGate.catch(() => {});
  await assert.rejects(leader.startMove(MOVE, OPTIONS), /ZooKeeper went away/);
  zk.writeGate = Promise.resolve();
  await leader.startMove(MOVE, OPTIONS);
  assert.ok(zk.nodes.has(`${PATHS.tasks}/1`));
});

Deno.test("PlacementLeader: a broken invariant stops the loop, other round failures do not", async () => {
  const zk = new MemoryZooKeeper();
  const { log, warnings, errors } = recordingLog();
  let reads = 0;
  zk.beforeGet = (path) => {
    if (path !== PATHS.clusterId) return;
    reads++;
    if (reads === 1) throw new Error("ZooKeeper went away");
    if (reads === 2) throw new AssertionError("Shard 1 got a second call in flight");
  };
  const leader = newLeader(zk, log, 1);
  await leader.start();
  try {
    const error = await within(leader.failed, 5000, "the loop to fail");
    assert.equal(error.message, "Shard 1 got a second call in flight");
    assert.deepEqual(warnings, ["Placement round failed"]);
    assert.deepEqual(errors, ["Placement leader loop failed: a broken invariant stops it"]);
    assert.equal(reads, 2);
  } finally {
    await leader.stop();
  }
});

Deno.test("PlacementLeader: stop() during a round ends the loop after it, not after the pause", async () => {
  const zk = new MemoryZooKeeper();
  const { log } = recordingLog();
  const gate = Promise.withResolvers<void>();
  zk.writeGate = gate.promise;
  // A minute between rounds: a stop that waited out the pause would time out below.
  const leader = newLeader(zk, log, 60_000);
  await leader.start();
  // The first round writes the "became leader" decision and waits on the gate: mid-round.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const stopped = leader.stop();
  gate.resolve();
  await within(stopped, 5000, "stop() to return");
  assert.equal(zk.nodes.has(DECISIONS_PATH), true, "the round finished its write");
});
