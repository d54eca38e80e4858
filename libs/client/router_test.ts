// Checks KvRouter's retry loop on a FakeClock against in-memory fake kvnodes
// (`@tinykv/client/testing`), with a fixed PRNG so every backoff is known: it follows a NOT_LEADER
// hint at once and remembers the leader; it backs off (10 ms doubling to 100 ms, jittered) and
// retries UNAVAILABLE on the next replica; it answers UNAVAILABLE when no attempt can have applied
// the request and DEADLINE_EXCEEDED when one may have (an UNKNOWN answer, a broken stream after
// the request left); it stops exactly DEADLINE_MARGIN_MS before the deadline with nothing left
// pending; final failures come back at once; a stale epoch waits for a newer map; a broken stream
// is replaced by a fresh one; a caller's `locate` replaces the map; and `stats` counts retries and
// redirects.
import assert from "node:assert/strict";
import { ItemFailure_Kind, type RequestItem } from "@tinykv/proto/tinykv/v1";
import { nodeId, shardForKey, shardId, type ShardMap, splitEvenly } from "@tinykv/shard";
import { backoffDelayMs, FakeClock } from "@tinykv/timer";
import { StaticClusterView } from "./cluster_view.ts";
import { BACKOFF_MAX_MS_DEFAULT, DEADLINE_MARGIN_MS, KvRouter, type RouteOp } from "./router.ts";
import { answerOf, failure, type FakeKvNodeHandler, FakeKvNodes, runOnClock } from "./testing.ts";

const START_MS = 1_000_000;
const PRNG = () => 0.5;
const NODES = { n1: "n1:7901", n2: "n2:7901", n3: "n3:7901" } as const;
const enc = (text: string) => new TextEncoder().encode(text);

function shardMap(confEpoch: number, replicas = ["n1", "n2", "n3"]): ShardMap {
  return {
    version: confEpoch,
    shards: splitEvenly(2).map((range, i) => ({
      id: shardId(i + 1),
      range,
      replicas: replicas.map(nodeId),
      learners: [],
      leaderHint: nodeId(replicas[0]),
      confEpoch,
    })),
  };
}

/** A router over fake kvnodes n1..n3 and a view of `map`, all on one fake clock. */
function setup(handle: FakeKvNodeHandler, map: ShardMap | null = shardMap(3)) {
  const clock = new FakeClock(START_MS);
  const nodes = new FakeKvNodes({ clock, handle });
  const view = new StaticClusterView(map ?? undefined, NODES, { clock });
  const router = new KvRouter({
    view,
    maxMessageBytes: 1 << 20,
    clock,
    prng: PRNG,
    connect: nodes.connect,
  });
  /** Routes `op` for `key` with a deadline `timeoutMs` from now, driving the clock meanwhile. */
  const route = (key: string, op: RouteOp, timeoutMs: number) =>
    runOnClock(clock, router.route({ key: enc(key) }, op, clock.now() + timeoutMs));
  return { clock, nodes, view, router, route };
}

function put(key: string): RouteOp {
  return { put: { key: enc(key), value: enc("v"), clientId: "c-1", seq: 7, ackSeq: 6 } };
}

/** The delay the router waits after its `attempt`-th attempt (1-based) with {@linkcode PRNG}. */
function pauseMs(attempt: number): number {
  return backoffDelayMs(attempt, { minMs: 10, maxMs: BACKOFF_MAX_MS_DEFAULT, prng: PRNG });
}

Deno.test("KvRouter.route() follows a NOT_LEADER hint at once and remembers the leader", async () => {
  const { clock, nodes, router, route } = setup((request, address) =>
    address === NODES.n2
      ? { answer: answerOf(request) }
      : failure(ItemFailure_Kind.NOT_LEADER, "Not the leader", { leaderAddress: NODES.n2 })
  );
  const first = await route("k", put("k"), 1000);
  assert.equal(first.kind, "ok");
  assert.equal(first.attempts, 2);
  assert.deepEqual(nodes.received.map((r) => r.address), [NODES.n1, NODES.n2]);
  assert.equal(clock.now(), START_MS, "a hint is followed without a pause");
  const second = await route("k", put("k"), 1000);
  assert.equal(second.attempts, 1, "the leader is remembered");
  assert.equal(nodes.received.at(-1)!.address, NODES.n2);
  assert.deepEqual(router.stats, { retries: 1, redirects: 1 });
  assert.equal(router.streams, 2, "one stream to n1, one to n2");
  router.close();
  assert.equal(router.streams, 0);
});

Deno.test("KvRouter.route() sends the map's shard id and conf epoch, and the same session on every retry", async () => {
  let calls = 0;
  const { router, route, nodes } = setup((request) =>
    ++calls < 3
      ? failure(ItemFailure_Kind.UNAVAILABLE, "No leader yet")
      : { answer: answerOf(request) }
  );
  const key = "user-42";
  assert.equal((await route(key, put(key), 2000)).kind, "ok");
  const expected = shardForKey(shardMap(3), enc(key));
  for (const { item } of nodes.received) {
    assert.equal(item.shardId, expected.id);
    assert.equal(item.confEpoch, 3);
    assert.deepEqual([item.put!.clientId, item.put!.seq, item.put!.ackSeq], ["c-1", 7, 6]);
  }
  assert.equal(nodes.received.length, 3);
  router.close();
});

Deno.test("KvRouter.route() backs off and retries UNAVAILABLE on the next replica", async () => {
  const sentAt: Array<[string, number]> = [];
  let calls = 0;
  const { clock, router, route } = setup((request, address) => {
    sentAt.push([address, clock.now() - START_MS]);
    return ++calls <= 3
      ? failure(ItemFailure_Kind.UNAVAILABLE, "No leader yet")
      : { answer: answerOf(request) };
  });
  const result = await route("k", put("k"), 5000);
  assert.equal(result.kind, "ok");
  assert.equal(result.attempts, 4);
  assert.deepEqual(router.stats, { retries: 3, redirects: 0 });
  // The map's hint first, then each replica in turn, after pauses of growing ceilings.
  const pauses = [pauseMs(1), pauseMs(2), pauseMs(3)];
  assert.deepEqual(pauses, [25, 45, 55]);
  assert.deepEqual(sentAt, [
    [NODES.n1, 0],
    [NODES.n2, 25],
    [NODES.n3, 70],
    [NODES.n1, 125],
  ]);
  router.close();
});

Deno.test("KvRouter.route() retries UNAVAILABLE until exactly DEADLINE_MARGIN_MS before the deadline", async () => {
  const timeouts: Array<{ at: number; timeoutMs: number }> = [];
  const { clock, router, route } = setup((request) => {
    timeouts.push({ at: clock.now(), timeoutMs: request.timeoutMs });
    return failure(ItemFailure_Kind.UNAVAILABLE, 'Shard 1 has no leader on node "n1"');
  });
  const deadline = START_MS + 1000;
  const result = await route("k", put("k"), 1000);
  assert.equal(result.kind, "unavailable", "no attempt can have applied it");
  assert.equal(result.maybeApplied, false);
  assert.match(
    result.message,
    /^Request did not complete before its deadline: shard \d at n\d:7901: Shard 1 has no leader/,
  );
  assert.equal(clock.now(), deadline - DEADLINE_MARGIN_MS, "answered at the margin, not later");
  assert.equal(clock.pendingCount, 0, "nothing is left waiting");
  assert.equal(result.attempts, timeouts.length);
  for (const { at, timeoutMs } of timeouts) {
    assert.ok(at < deadline - DEADLINE_MARGIN_MS, `an attempt at ${at - START_MS}`);
    assert.equal(timeoutMs, Math.floor(deadline - DEADLINE_MARGIN_MS - at), "the time left");
  }
  router.close();
});

Deno.test("KvRouter.route() caps each attempt's timeout at attemptTimeoutMsMax", async () => {
  const { router, route, nodes } = setup((request) => ({ answer: answerOf(request) }));
  await route("k", put("k"), 60_000);
  assert.equal(nodes.received[0].item.timeoutMs, 2000);
  router.close();
});

Deno.test("KvRouter.route() answers DEADLINE_EXCEEDED once a proposed attempt timed out", async () => {
  let calls = 0;
  const { clock, router, route } = setup((request: RequestItem) =>
    // The first attempt is proposed and times out on the kvnode; the rest find no leader.
    ++calls === 1
      ? { ...failure(ItemFailure_Kind.UNKNOWN, "Proposal timed out"), afterMs: request.timeoutMs }
      : failure(ItemFailure_Kind.UNAVAILABLE, "No leader")
  );
  const result = await route("k", put("k"), 3000);
  assert.equal(result.kind, "deadlineExceeded");
  assert.equal(result.maybeApplied, true);
  assert.ok(result.attempts > 1, "it went on retrying after the unknown outcome");
  assert.equal(clock.now(), START_MS + 3000 - DEADLINE_MARGIN_MS);
  router.close();
});

Deno.test("KvRouter.route() treats a stream that broke after the request left as unknown", async () => {
  const { clock, nodes, router, route } = setup(() => {
    // The connection resets while the request waits for its answer.
    queueMicrotask(() => nodes.breakCalls(NODES.n1));
    return { hold: true };
  }, shardMap(3, ["n1"]));
  const result = await route("k", put("k"), 500);
  assert.equal(result.kind, "deadlineExceeded");
  assert.match(
    result.message,
    /Batch stream to kvnode "n1:7901" failed/,
  );
  assert.equal(clock.now(), START_MS + 500 - DEADLINE_MARGIN_MS);
  // Each broken stream's channel was closed and a fresh one opened for the next attempt.
  assert.equal(nodes.callsOpened(NODES.n1), result.attempts);
  assert.equal(nodes.channelsClosed(NODES.n1), result.attempts);
  router.close();
});

Deno.test("KvRouter.route() replaces a broken stream and succeeds on the fresh one", async () => {
  let broke = false;
  const { nodes, router, route } = setup((request) => {
    if (broke) return { answer: answerOf(request) };
    broke = true;
    queueMicrotask(() => nodes.breakCalls(NODES.n1));
    return { hold: true };
  }, shardMap(3, ["n1"]));
  const result = await route("k", put("k"), 1000);
  assert.equal(result.kind, "ok");
  assert.equal(result.attempts, 2);
  assert.equal(nodes.callsOpened(NODES.n1), 2);
  assert.equal(nodes.channelsClosed(NODES.n1), 1, "the broken stream's channel was closed");
  router.close();
});

Deno.test("KvRouter.route() returns final failures at once, without retrying", async () => {
  const cases = [
    [ItemFailure_Kind.INVALID, "invalidArgument"],
    [ItemFailure_Kind.SESSION_EXPIRED, "failedPrecondition"],
    [ItemFailure_Kind.RESOURCE_EXHAUSTED, "resourceExhausted"],
    [ItemFailure_Kind.DATA_LOSS, "dataLoss"],
    [ItemFailure_Kind.INTERNAL, "internal"],
  ] as const;
  for (const [kind, expected] of cases) {
    const { clock, router, route } = setup(() => failure(kind, `Failure ${kind}`));
    const result = await route("k", put("k"), 1000);
    assert.deepEqual(result, {
      kind: expected,
      message: `Failure ${kind}`,
      attempts: 1,
      maybeApplied: false,
    });
    assert.equal(clock.now(), START_MS);
    router.close();
  }
});

Deno.test("KvRouter.route() waits for a newer map after STALE_EPOCH and sends its epoch", async () => {
  const { clock, view, router, route, nodes } = setup((request) =>
    request.confEpoch < 4
      ? failure(ItemFailure_Kind.STALE_EPOCH, "Shard 1 is at conf epoch 4", { confEpoch: 4 })
      : { answer: answerOf(request) }
  );
  clock.setTimeout(() => view.update(shardMap(4)), 50);
  const result = await route("k", put("k"), 1000);
  assert.equal(result.kind, "ok");
  assert.deepEqual(nodes.received.map((r) => r.item.confEpoch), [3, 4]);
  assert.equal(clock.now(), START_MS + 50, "it went on as soon as the map changed");
  router.close();
});

Deno.test("KvRouter.route() without a shard map waits for one, else answers unavailable", async () => {
  const { router, route } = setup((request) => ({ answer: answerOf(request) }), null);
  const result = await route("k", put("k"), 1000);
  assert.equal(result.kind, "unavailable");
  assert.equal(result.attempts, 0);
  assert.match(result.message, /: no shard map is known yet$/);
  router.close();
});

Deno.test("KvRouter with a caller's locate sends any shard id to the replicas it names", async () => {
  const clock = new FakeClock(START_MS);
  const nodes = new FakeKvNodes({
    clock,
    handle: (request, address) =>
      address === NODES.n3
        ? { answer: answerOf(request) }
        : failure(ItemFailure_Kind.NOT_LEADER, "Not the leader", { leaderAddress: NODES.n3 }),
  });
  const router = new KvRouter({
    view: new StaticClusterView(undefined, NODES, { clock }),
    locate: (target) =>
      "shardId" in target
        ? { id: shardId(target.shardId), confEpoch: 0, replicas: [nodeId("n2"), nodeId("n3")] }
        : undefined,
    maxMessageBytes: 1 << 20,
    clock,
    prng: PRNG,
    connect: nodes.connect,
  });
  const result = await runOnClock(
    clock,
    router.route(
      { shardId: shardId(77) },
      { get: { key: enc("k"), serializable: false } },
      START_MS + 1000,
    ),
  );
  assert.equal(result.kind, "ok");
  assert.deepEqual(nodes.received.map((r) => [r.address, r.item.shardId, r.item.confEpoch]), [
    [NODES.n2, 77, 0],
    [NODES.n3, 77, 0],
  ]);
  router.close();
});

Deno.test("KvRouter.close() ends routes in flight and answers them at once", async () => {
  const { clock, router } = setup(() => ({ hold: true }));
  const routed = router.route({ key: enc("k") }, put("k"), clock.now() + 1000);
  await new Promise((resolve) => setTimeout(resolve, 0));
  router.close();
  const result = await routed;
  assert.equal(result.kind, "deadlineExceeded", "the request had left: outcome unknown");
  assert.equal(clock.now(), START_MS);
});
