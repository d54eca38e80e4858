// Checks the gateway's watch merging (watch.ts) with a fake router (a map of 3 shards whose
// candidates put a noted leader first) and a fake `OpenShardStream` that records every
// `KvNode.Watch` the gateway opens (its address, request, pauses, resumes, cancel) and lets the
// test deliver its messages and end it. Checked: a key or a hash-tagged prefix watches one shard,
// any other prefix every shard; the first response lists every shard's position once all started,
// and what arrived meanwhile follows it in order; a stream that ends with a retryable status is
// opened again from the shard's last position (the named leader first, else after a backoff), and
// nothing at or below that position is forwarded twice; OUT_OF_RANGE, RESOURCE_EXHAUSTED and
// INVALID_ARGUMENT end the watch naming the shard; a slow client's responses queue (the kvnode
// streams are not paused) up to the per-watch and gateway-wide bounds; cancel and the gateway
// stopping end every stream and retry timer (counted by wrapping setTimeout: Deno 2.9's sanitizer
// does not report a pending timer); start positions outside the watch, too many watches and a
// stopping gateway (also one that stopped while the watch waited for a map) are refused, starts
// waiting for the map count against the limit, and one whose caller left meanwhile opens nothing; a
// kvnode's failure names the shard once. The `tinykv.v1.KV/Watch` handler starts nothing for a call
// canceled before it ran, and answers an undecodable request INVALID_ARGUMENT (on a real server).
// Then parseWatchRequest's limits, prefixEndOf and singleShardKey as tables.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import {
  KVService,
  type ShardWatchRequest,
  type ShardWatchResponse,
  type WatchEvent,
  WatchEvent_Kind,
  type WatchRequest,
  type WatchResponse,
} from "@tinykv/proto/tinykv/v1";
import { type RpcFailure, rpcFailure, type RpcFailureKind, startGrpcServer } from "@tinykv/rpc";
import { KEY_BYTES_MAX, type ShardEntry, type ShardId, shardId } from "@tinykv/shard";
import {
  decodingWatchRequests,
  GatewayWatch,
  GatewayWatches,
  type GatewayWatchesOptions,
  type OpenShardStream,
  parseWatchRequest,
  prefixEndOf,
  type ShardStreamEvents,
  singleShardKey,
  watchHandler,
  type WatchOutput,
  type WatchRange,
} from "./watch.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const SHARDS = [1, 2, 3].map(shardId);

/** The router's part a watch uses: 3 shards, 2 replicas each; a noted leader is tried first. */
class FakeRouter {
  map: ShardId[] | undefined = SHARDS;
  readonly noted: Array<[number, string | undefined]> = [];
  readonly #leaders = new Map<number, string>();
  readonly #waiters: Array<() => void> = [];
  /** The shard of a key: "{…}" keys and keys starting with "k" are on shard 2, the rest on 1. */
  shardOfKey = (key: Uint8Array): ShardId => shardId(key[0] === 0x7b || key[0] === 0x6b ? 2 : 1);

  candidates(id: ShardId): { confEpoch: number; addresses: string[] } | undefined {
    if (this.map === undefined || !this.map.includes(id)) return undefined;
    const addresses = [`s${id}-a`, `s${id}-b`];
    const leader = this.#leaders.get(id);
    if (leader !== undefined) {
      addresses.splice(
        0,
        addresses.length,
        leader,
        ...addresses.filter((a) => a !== leader),
      );
    }
    return { confEpoch: 10 + id, addresses };
  }

  noteLeader(id: ShardId, address: string | undefined): void {
    this.noted.push([id, address]);
    if (address === undefined || address === "") this.#leaders.delete(id);
    else this.#leaders.set(id, address);
  }

  mapChanged(_timeoutMs: number): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Publishes `map` to the watches waiting for one. */
  publish(map: ShardId[]): void {
    this.map = map;
    for (const resolve of this.#waiters.splice(0)) resolve();
  }

  shards(): ShardId[] | undefined {
    return this.map;
  }

  shardOf(key: Uint8Array): ShardEntry | undefined {
    if (this.map === undefined) return undefined;
    return {
      id: this.shardOfKey(key),
      range: { lo: 0, hi: 1 },
      replicas: [],
      learners: [],
    } as unknown as ShardEntry;
  }
}

/** A `KvNode.Watch` the gateway opened. */
interface Opened {
  readonly address: string;
  readonly request: ShardWatchRequest;
  readonly events: ShardStreamEvents;
  paused: number;
  resumed: number;
  cancelled: boolean;
}

class FakeShards {
  readonly opened: Opened[] = [];

  readonly open: OpenShardStream = (address, request, events) => {
    const stream: Opened = { address, request, events, paused: 0, resumed: 0, cancelled: false };
    this.opened.push(stream);
    return {
      pause: () => stream.paused++,
      resume: () => stream.resumed++,
      cancel: () => (stream.cancelled = true),
    };
  };

  /** The last stream opened for shard `id`. */
  of(id: number): Opened {
    const stream = this.opened.findLast((s) => s.request.shardId === id);
    assert.ok(stream !== undefined, `no stream of shard ${id}`);
    return stream;
  }

  /** Starts every open stream at its shard's index in `positions`. */
  startAll(positions: Record<number, number>): void {
    for (const stream of this.opened) {
      if (!stream.cancelled) stream.events.onMessage(message(positions[stream.request.shardId]));
    }
  }
}

class Output implements WatchOutput {
  readonly responses: WatchResponse[] = [];
  readonly ended: RpcFailure[] = [];
  accept = true;

  send(response: WatchResponse): boolean {
    this.responses.push(response);
    return this.accept;
  }

  end(failure: RpcFailure): void {
    this.ended.push(failure);
  }

  /** Each response as `events | positions`, e.g. `2@11:a | 2@11`. */
  lines(): string[] {
    return this.responses.map((r) =>
      `${r.events.map((e) => `${e.shard}@${e.index}:${dec(e.key)}`).join(" ")} | ${
        r.positions.map((p) => `${p.shard}@${p.index}`).join(" ")
      }`.trim()
    );
  }
}

function event(shard: number, index: number, key: string): WatchEvent {
  return { kind: WatchEvent_Kind.PUT, key: enc(key), value: enc(`v${index}`), shard, index };
}

function message(index: number, ...events: WatchEvent[]): ShardWatchResponse {
  return { events, index };
}

function request(key: string, prefix: boolean, start: Array<[number, number]> = []): WatchRequest {
  return { key: enc(key), prefix, start: start.map(([shard, index]) => ({ shard, index })) };
}

function rangeOf(key: string, prefix: boolean): WatchRange {
  const parsed = parseWatchRequest(request(key, prefix));
  assert.ok(!("message" in parsed));
  return parsed.range;
}

function setup(options: Partial<GatewayWatchesOptions> = {}) {
  const router = new FakeRouter();
  const shards = new FakeShards();
  const watches = new GatewayWatches({ router, open: shards.open, ...options });
  return { router, shards, watches };
}

async function started(
  watches: GatewayWatches,
  range: WatchRange,
  output: Output,
  start: Map<number, number> = new Map(),
): Promise<GatewayWatch> {
  const watch = await watches.start(range, start, output, { traceId: "trace-1" });
  assert.ok(watch instanceof GatewayWatch, `start failed: ${JSON.stringify(watch)}`);
  return watch;
}

async function until(condition: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("GatewayWatches.start() watches a single key on its shard only", async () => {
  const { shards, watches } = setup();
  const output = new Output();
  await started(watches, rangeOf("k1", false), output);
  assert.equal(shards.opened.length, 1);
  const [stream] = shards.opened;
  assert.equal(stream.address, "s2-a");
  assert.deepEqual(stream.request, {
    shardId: 2,
    confEpoch: 12,
    start: enc("k1"),
    end: enc("k1\0"),
    resume: false,
    afterIndex: 0,
    traceId: "trace-1",
  });
  assert.equal(watches.count, 1);
});

Deno.test("GatewayWatches.start() watches a prefix holding a hash tag on one shard, any other prefix on every shard", async () => {
  const cases: Array<{ key: string; shards: number[]; end: string | undefined }> = [
    { key: "{tag}x", shards: [2], end: "{tag}y" },
    { key: "{tag}", shards: [2], end: "{tag~" },
    { key: "{tag", shards: [1, 2, 3], end: "{tah" },
    { key: "{}x", shards: [1, 2, 3], end: "{}y" },
    { key: "user/", shards: [1, 2, 3], end: "user0" },
    { key: "", shards: [1, 2, 3], end: undefined },
  ];
  for (const c of cases) {
    const { shards, watches } = setup();
    await started(watches, rangeOf(c.key, true), new Output());
    assert.deepEqual(shards.opened.map((s) => s.request.shardId), c.shards, c.key);
    for (const stream of shards.opened) {
      assert.equal(dec(stream.request.start), c.key);
      assert.equal(dec(stream.request.end), c.end ?? "", c.key);
    }
  }
});

Deno.test("GatewayWatch lists every shard's position once all started; what arrived meanwhile follows in order", async () => {
  const { router, shards, watches } = setup();
  const output = new Output();
  await started(watches, rangeOf("p/", true), output);
  const [s1, s2, s3] = [1, 2, 3].map((id) => shards.of(id));
  s1.events.onMessage(message(10));
  assert.equal(s1.paused, 0, "a started shard is read on (what it sends is held)");
  s2.events.onMessage(message(20));
  // Messages on their way when the shards were paused.
  s1.events.onMessage(message(12, event(1, 11, "p/a"), event(1, 12, "p/b")));
  s2.events.onMessage(message(21));
  s1.events.onMessage(message(13, event(1, 13, "p/c")));
  assert.deepEqual(output.responses, []);
  s3.events.onMessage(message(30));
  assert.deepEqual(output.lines(), [
    "| 1@10 2@20 3@30",
    "1@11:p/a 1@12:p/b | 1@12",
    "1@13:p/c | 1@13",
    "| 2@21",
  ]);
  for (const stream of [s1, s2, s3]) assert.equal(stream.paused, 0, "never paused");
  // Each shard's leader was noted once its stream answered.
  assert.deepEqual(router.noted, [[1, "s1-a"], [2, "s2-a"], [3, "s3-a"]]);
  s3.events.onMessage(message(31, event(3, 31, "p/z")));
  assert.deepEqual(output.lines().at(-1), "3@31:p/z | 3@31");
});

Deno.test("GatewayWatch reopens a shard that ends UNAVAILABLE from its last position, at the leader it names", async () => {
  const { router, shards, watches } = setup();
  const output = new Output();
  const watch = await started(watches, rangeOf("p/", true), output);
  shards.startAll({ 1: 10, 2: 20, 3: 30 });
  shards.of(2).events.onMessage(message(25, event(2, 25, "p/x")));
  const first = shards.of(2);
  first.events.onEnd(rpcFailure("unavailable", "not the leader"), "10.0.0.9:7001");
  const again = shards.of(2);
  assert.notEqual(again, first);
  assert.equal(again.address, "10.0.0.9:7001");
  assert.equal(again.request.resume, true);
  assert.equal(again.request.afterIndex, 25);
  assert.equal(again.paused, 0, "after the first response, a reopened stream is not held");
  assert.deepEqual(router.noted.at(-1), [2, "10.0.0.9:7001"]);
  // Its first message is the position asked for: nothing to forward. Then events at or below
  // the position are not forwarded again.
  again.events.onMessage(message(25));
  again.events.onMessage(message(25));
  again.events.onMessage(
    message(27, event(2, 24, "p/old"), event(2, 25, "p/x"), event(2, 27, "p/y")),
  );
  again.events.onMessage(message(28));
  assert.deepEqual(output.lines(), [
    "| 1@10 2@20 3@30",
    "2@25:p/x | 2@25",
    "2@27:p/y | 2@27",
    "| 2@28",
  ]);
  assert.equal(watches.count, 1);
  assert.deepEqual(output.ended, []);
  watch.cancel();
  assert.ok(again.cancelled && shards.of(1).cancelled && shards.of(3).cancelled);
});

Deno.test("GatewayWatch reopens a shard that ends without a named leader after a backoff, on the next replica", async () => {
  for (const kind of ["unavailable", "deadlineExceeded", "internal", "cancelled"] as const) {
    const { router, shards, watches } = setup();
    const output = new Output();
    const watch = await started(watches, rangeOf("p/", true), output);
    shards.startAll({ 1: 10, 2: 20, 3: 30 });
    const first = shards.of(3);
    const ended = Date.now();
    first.events.onEnd(rpcFailure(kind, "node lost"), undefined);
    assert.equal(shards.opened.length, 3, `${kind}: no reopen at once`);
    assert.deepEqual(router.noted.at(-1), [3, undefined]);
    await until(() => shards.opened.length === 4, `${kind}: the reopen`);
    assert.ok(Date.now() - ended >= 20, `${kind}: reopened after ${Date.now() - ended} ms`);
    const again = shards.of(3);
    assert.equal(again.address, "s3-b", "the next candidate");
    assert.equal(again.request.resume, true);
    assert.equal(again.request.afterIndex, 30);
    assert.deepEqual(output.ended, []);
    watch.cancel();
  }
});

Deno.test("GatewayWatch retries a shard that ended before it started as a watch from now; one that restarted before the others waits", async () => {
  const { shards, watches } = setup();
  const output = new Output();
  const watch = await started(watches, rangeOf("p/", true), output);
  // Shard 1 ends before its first message: it starts again from now, at the leader named.
  shards.of(1).events.onEnd(rpcFailure("unavailable", "not the leader"), "n9");
  assert.equal(shards.of(1).address, "n9");
  assert.equal(shards.of(1).request.resume, false);
  // Shard 2 starts, then ends before the others start: it reopens from its position, held.
  shards.of(2).events.onMessage(message(20));
  shards.of(2).events.onEnd(rpcFailure("unavailable", "moved"), "n8");
  const second = shards.of(2);
  assert.equal(second.request.resume, true);
  assert.equal(second.request.afterIndex, 20);
  assert.equal(second.paused, 0, "read on; its messages are held until every shard started");
  second.events.onMessage(message(20));
  second.events.onMessage(message(22, event(2, 22, "p/q")));
  shards.of(1).events.onMessage(message(10));
  assert.deepEqual(output.responses, []);
  shards.of(3).events.onMessage(message(30));
  assert.deepEqual(output.lines(), ["| 1@10 2@20 3@30", "2@22:p/q | 2@22"]);
  watch.cancel();
});

Deno.test("GatewayWatch tries a position refused as past a log's end on other replicas (a deposed leader may not know it), and ends INVALID_ARGUMENT when none takes it before the start bound", async () => {
  const { shards, watches } = setup({ startMs: 200 });
  const output = new Output();
  await started(watches, rangeOf("p/", true), output, new Map([[2, 99]]));
  shards.of(1).events.onMessage(message(10));
  shards.of(3).events.onMessage(message(30));
  const refuse = () =>
    shards.of(2).events.onEnd(rpcFailure("invalidArgument", "past the end of its log"), undefined);
  refuse();
  assert.equal(output.ended.length, 0, "tried again");
  await until(() => shards.opened.filter((s) => s.request.shardId === 2).length >= 2, "a retry");
  // A follower in between says it does not lead: the refusal still stands.
  shards.of(2).events.onEnd(rpcFailure("unavailable", "not the leader"), undefined);
  await until(() => output.ended.length > 0, "the start bound");
  assert.deepEqual(output.ended.map((f) => f.kind), ["invalidArgument"]);
  assert.match(output.ended[0].message, /past the end of its log/);
  const again = setup();
  const other = new Output();
  await started(again.watches, rangeOf("p/", true), other);
  again.shards.startAll({ 1: 10, 2: 20, 3: 30 });
  again.shards.of(2).events.onEnd(rpcFailure("invalidArgument", "past the end of its log"), "n2");
  assert.deepEqual(other.ended, []);
  const reopened = again.shards.of(2);
  assert.deepEqual([reopened.request.resume, reopened.request.afterIndex], [true, 20]);
  again.watches.close();
});

Deno.test("GatewayWatch ends on OUT_OF_RANGE and RESOURCE_EXHAUSTED with the kind, naming the shard", async () => {
  const kinds: RpcFailureKind[] = ["outOfRange", "resourceExhausted"];
  for (const kind of kinds) {
    const { shards, watches } = setup();
    const output = new Output();
    await started(watches, rangeOf("p/", true), output);
    shards.startAll({ 1: 10, 2: 20, 3: 30 });
    shards.of(2).events.onEnd(rpcFailure(kind, "the oldest position it holds is 15"), "n9");
    assert.deepEqual(output.ended, [
      rpcFailure(kind, "Shard 2: the oldest position it holds is 15"),
    ], kind);
    assert.equal(shards.opened.length, 3, `${kind}: not opened again`);
    for (const stream of shards.opened) assert.ok(stream.cancelled || stream.request.shardId === 2);
    assert.equal(watches.count, 0);
    // Nothing more reaches the client.
    shards.of(1).events.onMessage(message(11, event(1, 11, "p/a")));
    shards.of(3).events.onEnd(rpcFailure("unavailable", "late"), undefined);
    assert.equal(output.responses.length, 1);
    assert.equal(output.ended.length, 1);
  }
});

Deno.test("GatewayWatch names the shard of a kvnode's failure once: not again when the kvnode's message does", async () => {
  const cases: Array<[string, string]> = [
    // The kvnode's own words (watch_hub.ts #cutBehind, outOfRange).
    [
      "Shard 2: the watcher fell behind: it was sent every change up to index 7",
      "Shard 2: the watcher fell behind: it was sent every change up to index 7",
    ],
    [
      "Watch position 3 of shard 2 is no longer held: the oldest position it holds is 15",
      "Watch position 3 of shard 2 is no longer held: the oldest position it holds is 15",
    ],
    // Another shard's number, or one that only starts like it, is not this shard's name.
    ["shard 21 is busy", "Shard 2: shard 21 is busy"],
    [
      'Node "n9" serves 10000 watches: the limit',
      'Shard 2: Node "n9" serves 10000 watches: the limit',
    ],
  ];
  for (const [said, reported] of cases) {
    const { shards, watches } = setup();
    const output = new Output();
    await started(watches, rangeOf("p/", true), output);
    shards.startAll({ 1: 10, 2: 20, 3: 30 });
    shards.of(2).events.onEnd(rpcFailure("resourceExhausted", said), undefined);
    assert.deepEqual(output.ended, [rpcFailure("resourceExhausted", reported)]);
  }
});

Deno.test("GatewayWatch queues for a client that reads slowly, without pausing the kvnode streams, and resume() sends the queue in order", async () => {
  const { shards, watches } = setup();
  const output = new Output();
  const watch = await started(watches, rangeOf("p/", true), output);
  output.accept = false;
  shards.startAll({ 1: 10, 2: 20, 3: 30 });
  const paused = shards.opened.map((s) => s.paused);
  for (let index = 11; index <= 14; index++) {
    shards.of(1).events.onMessage(message(index, event(1, index, `p/${index}`)));
  }
  shards.of(2).events.onMessage(message(21));
  assert.equal(output.responses.length, 1, "only the first response went out");
  assert.deepEqual(shards.opened.map((s) => s.paused), paused, "kvnode streams are read on");
  assert.ok(watches.queuedBytes > 0);
  // The client takes two, then is full again.
  let taken = 0;
  output.send = (response) => {
    output.responses.push(response);
    return ++taken < 2;
  };
  watch.resume();
  assert.equal(output.responses.length, 3);
  output.send = (response) => {
    output.responses.push(response);
    return true;
  };
  shards.of(1).events.onMessage(message(15, event(1, 15, "p/15")));
  assert.equal(output.responses.length, 3, "still queued behind the others");
  watch.resume();
  assert.deepEqual(output.lines(), [
    "| 1@10 2@20 3@30",
    "1@11:p/11 | 1@11",
    "1@12:p/12 | 1@12",
    "1@13:p/13 | 1@13",
    "1@14:p/14 | 1@14",
    "| 2@21",
    "1@15:p/15 | 1@15",
  ]);
  assert.equal(watches.queuedBytes, 0);
  // Not paused any more: the next one goes straight out.
  shards.of(3).events.onMessage(message(31));
  assert.equal(output.lines().at(-1), "| 3@31");
  watch.cancel();
});

Deno.test("GatewayWatch cuts a client slower than queueBytesMax with RESOURCE_EXHAUSTED", async () => {
  const { shards, watches } = setup({ queueBytesMax: 2000 });
  const output = new Output();
  await started(watches, rangeOf("p/", true), output);
  shards.startAll({ 1: 10, 2: 20, 3: 30 });
  output.accept = false;
  shards.of(1).events.onMessage(message(11)); // Sent; the client is full from now on.
  const big = "x".repeat(900);
  shards.of(1).events.onMessage(message(12, event(1, 12, big)));
  shards.of(1).events.onMessage(message(13, event(1, 13, big)));
  assert.equal(output.ended.length, 0);
  assert.ok(watches.queuedBytes > 1800 && watches.queuedBytes <= 2000, `${watches.queuedBytes}`);
  shards.of(1).events.onMessage(message(14, event(1, 14, big)));
  assert.equal(output.ended.length, 1);
  assert.equal(output.ended[0].kind, "resourceExhausted");
  assert.match(
    output.ended[0].message,
    /The client reads its watch too slowly: \d+ bytes .* at most 2000/,
  );
  for (const stream of shards.opened) assert.ok(stream.cancelled);
  assert.equal(watches.count, 0);
  assert.equal(watches.queuedBytes, 0);
});

Deno.test("GatewayWatch cuts the watch whose queue passes the gateway's queueBytesTotalMax, and only it", async () => {
  const { shards, watches } = setup({ queueBytesMax: 3000, queueBytesTotalMax: 3500 });
  const slowA = new Output();
  const slowB = new Output();
  await started(watches, rangeOf("k", false), slowA);
  await started(watches, rangeOf("k", false), slowB);
  const [a, b] = shards.opened;
  a.events.onMessage(message(10));
  b.events.onMessage(message(10));
  slowA.accept = false;
  slowB.accept = false;
  a.events.onMessage(message(11)); // Sent, then each client is full.
  b.events.onMessage(message(11));
  const big = "x".repeat(900);
  a.events.onMessage(message(12, event(2, 12, big)));
  a.events.onMessage(message(13, event(2, 13, big)));
  const aBytes = watches.queuedBytes;
  b.events.onMessage(message(12, event(2, 12, big)));
  assert.deepEqual([slowA.ended, slowB.ended], [[], []]);
  // B's second change passes 3500 in all (each watch is within its own 3000).
  b.events.onMessage(message(13, event(2, 13, big)));
  assert.deepEqual(slowA.ended, []);
  assert.equal(slowB.ended.length, 1);
  assert.equal(slowB.ended[0].kind, "resourceExhausted");
  assert.match(slowB.ended[0].message, /at most 3500 in all/);
  assert.ok(b.cancelled && !a.cancelled);
  assert.equal(watches.queuedBytes, aBytes, "only A's queue is held");
  assert.equal(watches.count, 1);
});

/**
 * Counts the timers set and neither fired nor cleared since it was called, until `restore()`
 * (Deno 2.9's test sanitizer does not report a timer left pending).
 */
function trackTimers(): { pending(): number; restore(): void } {
  const set = globalThis.setTimeout;
  const clear = globalThis.clearTimeout;
  const pending = new Set<ReturnType<typeof setTimeout>>();
  globalThis.setTimeout = ((handler: () => void, ms?: number) => {
    const id = set(() => {
      pending.delete(id);
      handler();
    }, ms);
    pending.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: ReturnType<typeof setTimeout>) => {
    if (id !== undefined) pending.delete(id);
    clear(id);
  }) as typeof clearTimeout;
  return {
    pending: () => pending.size,
    restore() {
      globalThis.setTimeout = set;
      globalThis.clearTimeout = clear;
      for (const id of pending) clear(id);
    },
  };
}

Deno.test("GatewayWatch.cancel() stops every stream and pending retry timer, and reports nothing", async () => {
  const timers = trackTimers();
  try {
    const { shards, watches } = setup();
    const output = new Output();
    const watch = await started(watches, rangeOf("p/", true), output);
    shards.startAll({ 1: 10, 2: 20, 3: 30 });
    // Shards 2 and 3 wait for their retry timers.
    shards.of(2).events.onEnd(rpcFailure("unavailable", "node lost"), undefined);
    shards.of(3).events.onEnd(rpcFailure("internal", "node lost"), undefined);
    assert.equal(timers.pending(), 2);
    watch.cancel();
    assert.equal(timers.pending(), 0, "no retry timer left");
    assert.ok(shards.of(1).cancelled);
    assert.equal(watches.count, 0);
    assert.equal(shards.opened.length, 3);
    assert.deepEqual(output.ended, []);
    assert.equal(output.responses.length, 1);
    shards.of(1).events.onMessage(message(11, event(1, 11, "p/a")));
    assert.equal(output.responses.length, 1);
    // The same when the gateway stops.
    const other = new Output();
    await started(watches, rangeOf("k", false), other);
    shards.of(2).events.onEnd(rpcFailure("unavailable", "node lost"), undefined);
    assert.equal(timers.pending(), 2, "the retry, and the bound on starting");
    watches.close();
    assert.equal(timers.pending(), 0);
    assert.deepEqual(other.ended.map((f) => f.kind), ["unavailable"]);
  } finally {
    timers.restore();
  }
});

Deno.test("GatewayWatches.start() resumes the shards it is given positions for; the others start now", async () => {
  const { shards, watches } = setup();
  const output = new Output();
  const start = new Map([[1, 40], [3, 7]]);
  const watch = await started(watches, rangeOf("p/", true), output, start);
  assert.deepEqual(
    shards.opened.map((s) => [s.request.shardId, s.request.resume, s.request.afterIndex]),
    [[1, true, 40], [2, false, 0], [3, true, 7]],
  );
  // The first response lists the positions the kvnodes started from.
  shards.startAll({ 1: 40, 2: 50, 3: 7 });
  assert.deepEqual(output.lines(), ["| 1@40 2@50 3@7"]);
  watch.cancel();
});

Deno.test("GatewayWatches.start() refuses start positions naming a shard the watch does not cover", async () => {
  const { shards, watches } = setup();
  const output = new Output();
  const refused = await watches.start(rangeOf("k1", false), new Map([[1, 5]]), output);
  assert.deepEqual(
    refused,
    rpcFailure(
      "invalidArgument",
      "Watch start position names shard 1, which the watch does not cover (it covers shard 2)",
    ),
  );
  const unknown = await watches.start(rangeOf("p/", true), new Map([[4, 5]]), output);
  assert.ok(!(unknown instanceof GatewayWatch));
  assert.match(unknown.message, /names shard 4, .*\(it covers shards 1, 2, 3\)/);
  assert.equal(shards.opened.length, 0);
  assert.equal(watches.count, 0);
});

Deno.test("GatewayWatches.start() refuses past watchesMax; close() ends every watch UNAVAILABLE and refuses new ones", async () => {
  const { shards, watches } = setup({ watchesMax: 2 });
  const outputs = [new Output(), new Output()];
  for (const output of outputs) await started(watches, rangeOf("k", false), output);
  const third = await watches.start(rangeOf("k", false), new Map(), new Output());
  assert.deepEqual(
    third,
    rpcFailure("resourceExhausted", "The gateway serves 2 watches (open or starting): the limit"),
  );
  watches.close();
  for (const output of outputs) {
    assert.deepEqual(output.ended, [
      rpcFailure("unavailable", "The gateway is stopping: resume on another one"),
    ]);
  }
  for (const stream of shards.opened) assert.ok(stream.cancelled);
  assert.equal(watches.count, 0);
  const late = await watches.start(rangeOf("k", false), new Map(), new Output());
  assert.deepEqual(late, rpcFailure("unavailable", "The gateway is stopping"));
});

Deno.test("GatewayWatches.start() waits for a shard map, and one that arrives after close() starts nothing", async () => {
  const { router, shards, watches } = setup();
  router.map = undefined;
  const waiting = watches.start(rangeOf("p/", true), new Map(), new Output());
  await new Promise((resolve) => setTimeout(resolve, 1));
  assert.equal(shards.opened.length, 0);
  router.publish(SHARDS);
  const watch = await waiting;
  assert.ok(watch instanceof GatewayWatch);
  assert.equal(shards.opened.length, 3);
  watch.cancel();
  // The gateway stops while a watch waits for the map.
  router.map = undefined;
  const late = watches.start(rangeOf("p/", true), new Map(), new Output());
  await new Promise((resolve) => setTimeout(resolve, 1));
  watches.close();
  router.publish(SHARDS);
  assert.deepEqual(await late, rpcFailure("unavailable", "The gateway is stopping"));
  assert.equal(shards.opened.length, 3, "no stream opened after the gateway stopped");
  assert.equal(watches.count, 0);
});

Deno.test("GatewayWatches.start() counts a start waiting for the map against watchesMax", async () => {
  const { router, shards, watches } = setup({ watchesMax: 1 });
  router.map = undefined;
  const first = watches.start(rangeOf("k", false), new Map(), new Output());
  assert.equal(watches.startingCount, 1);
  // Refused at once, while the first still waits: one started or starting is the limit.
  const second = await watches.start(rangeOf("k", false), new Map(), new Output());
  assert.deepEqual(
    second,
    rpcFailure("resourceExhausted", "The gateway serves 1 watches (open or starting): the limit"),
  );
  router.publish(SHARDS);
  const one = await first;
  assert.ok(one instanceof GatewayWatch);
  assert.equal(watches.startingCount, 0);
  assert.equal(watches.count, 1);
  assert.equal(shards.opened.length, 1);
  one.cancel();
});

Deno.test("GatewayWatches.start() aborted before its shard streams open opens none, and frees its place", async () => {
  const { router, shards, watches } = setup({ watchesMax: 1 });
  // Aborted before the call: refused at once.
  const gone = new AbortController();
  gone.abort();
  const early = await watches.start(rangeOf("p/", true), new Map(), new Output(), {
    signal: gone.signal,
  });
  assert.deepEqual(early, rpcFailure("cancelled", "The watch was canceled before it started"));
  // Aborted while it waits for the map (or for the task after the call, with a map known).
  for (const map of [undefined, SHARDS]) {
    router.map = map;
    const abort = new AbortController();
    const waiting = watches.start(rangeOf("p/", true), new Map(), new Output(), {
      signal: abort.signal,
    });
    abort.abort();
    router.publish(SHARDS);
    assert.deepEqual(
      await waiting,
      rpcFailure("cancelled", "The watch was canceled before it started"),
    );
  }
  assert.equal(shards.opened.length, 0, "no shard stream opened");
  assert.equal(watches.startingCount, 0);
  assert.equal(watches.count, 0);
  const next = await watches.start(rangeOf("k", false), new Map(), new Output());
  assert.ok(next instanceof GatewayWatch, "the place was freed");
  next.cancel();
});

Deno.test("parseWatchRequest() takes keys up to KEY_BYTES_MAX and refuses one past it, an empty key without prefix, a shard twice", () => {
  const key = (length: number) => new Uint8Array(length).fill(0x61);
  const atLimit = parseWatchRequest({ key: key(KEY_BYTES_MAX), prefix: false, start: [] });
  assert.ok("range" in atLimit);
  assert.equal(atLimit.range.end?.length, KEY_BYTES_MAX + 1);
  assert.equal(atLimit.range.end?.[KEY_BYTES_MAX], 0);
  const prefixAtLimit = parseWatchRequest({ key: key(KEY_BYTES_MAX), prefix: true, start: [] });
  assert.ok("range" in prefixAtLimit);
  assert.equal(prefixAtLimit.range.end?.length, KEY_BYTES_MAX);
  for (const prefix of [false, true]) {
    assert.deepEqual(parseWatchRequest({ key: key(KEY_BYTES_MAX + 1), prefix, start: [] }), {
      message: `Key has ${KEY_BYTES_MAX + 1} bytes: the maximum is ${KEY_BYTES_MAX}`,
    });
  }
  assert.deepEqual(parseWatchRequest(request("", false)), {
    message: "Key has 0 bytes: the minimum is 1 (set prefix to watch every key)",
  });
  const every = parseWatchRequest(request("", true));
  assert.ok("range" in every);
  assert.deepEqual(every.range, { start: new Uint8Array(0), end: undefined });
  assert.deepEqual(parseWatchRequest(request("k", false, [[2, 5], [1, 3], [2, 6]])), {
    message: "Watch start names shard 2 twice",
  });
  const resumed = parseWatchRequest(request("k", true, [[2, 5], [1, 0]]));
  assert.ok("start" in resumed);
  assert.deepEqual([...resumed.start], [[2, 5], [1, 0]]);
  const largest = parseWatchRequest(request("k", true, [[1, Number.MAX_SAFE_INTEGER]]));
  assert.ok("start" in largest);
  assert.deepEqual(parseWatchRequest(request("k", true, [[1, Number.MAX_SAFE_INTEGER + 1]])), {
    message: `Watch start index ${Number.MAX_SAFE_INTEGER + 1} of shard 1 is too large`,
  });
});

Deno.test("prefixEndOf() is the first key after the prefix's keys: trailing 0xff bytes carry, all 0xff has none", () => {
  const cases: Array<[number[], number[] | undefined]> = [
    [[], undefined],
    [[0x61], [0x62]],
    [[0x00], [0x01]],
    [[0x61, 0xfe], [0x61, 0xff]],
    [[0x61, 0xff], [0x62]],
    [[0x61, 0xff, 0xff], [0x62]],
    [[0x61, 0xff, 0x00], [0x61, 0xff, 0x01]],
    [[0xff], undefined],
    [[0xff, 0xff, 0xff], undefined],
    [[0xfe, 0xff], [0xff]],
  ];
  for (const [prefix, end] of cases) {
    const input = new Uint8Array(prefix);
    const got = prefixEndOf(input);
    assert.deepEqual(got, end === undefined ? undefined : new Uint8Array(end), `${prefix}`);
    assert.deepEqual(input, new Uint8Array(prefix), "the prefix is not changed");
  }
});

Deno.test("singleShardKey() finds one key for a single key or a prefix holding a whole hash tag", () => {
  const range = (start: string, end: string | undefined): WatchRange => ({
    start: enc(start),
    end: end === undefined ? undefined : enc(end),
  });
  const cases: Array<[WatchRange, string | undefined]> = [
    [range("k", "k\0"), "k"],
    [range("{t}a", "{t}b"), "{t}a"],
    [range("x{t}", "x{t~"), "x{t}"],
    [range("{t}", undefined), undefined],
    [range("{t}a", "{t}c"), undefined],
    [range("{t", "{u"), undefined],
    [range("{}a", "{}b"), undefined],
    [range("ab", "ac"), undefined],
    [range("k", "k\0\0"), undefined],
    [range("k", "k\x01"), undefined],
    [range("k", "j\0"), undefined],
  ];
  for (const [watched, key] of cases) {
    const got = singleShardKey(watched);
    assert.equal(got === undefined ? undefined : dec(got), key, dec(watched.start));
  }
});

Deno.test("GatewayWatch that cannot start in every shard within its bound ends UNAVAILABLE, naming the shard's problem", async () => {
  const { shards, watches } = setup({ startMs: 50 });
  const output = new Output();
  await started(watches, rangeOf("p/", true), output);
  shards.of(1).events.onMessage(message(10));
  shards.of(3).events.onMessage(message(30));
  shards.of(1).events.onMessage(message(11, event(1, 11, "p/a")));
  shards.of(2).events.onEnd(rpcFailure("unavailable", "no leader"), undefined);
  await until(() => output.ended.length > 0, "the watch to end");
  assert.deepEqual(output.ended.map((f) => f.kind), ["unavailable"]);
  assert.match(
    output.ended[0].message,
    /^The watch could not start in 50 ms: shard 2 at .*no leader/,
  );
  assert.deepEqual(output.responses, [], "nothing was sent");
  assert.equal(watches.count, 0);
  assert.equal(watches.queuedBytes, 0, "what was held is released");
  // Shards 1 and 3 are cancelled; shard 2 ended (its retry timer is cleared by the sanitizer's
  // count: nothing is left pending).
  assert.ok(shards.of(1).cancelled && shards.of(3).cancelled);
});

/** A `tinykv.v1.KV/Watch` server call the test plays. */
class FakeWatchCall extends EventEmitter {
  readonly metadata = new grpc.Metadata();
  readonly written: WatchResponse[] = [];
  readonly errors: grpc.ServiceError[] = [];
  cancelled = false;
  destroyed = false;

  constructor(readonly request: WatchRequest) {
    super();
    this.on("error", (error: grpc.ServiceError) => this.errors.push(error));
  }

  write(response: WatchResponse): boolean {
    this.written.push(response);
    return true;
  }
}

Deno.test("watchHandler() starts nothing for a call canceled before it ran (behind a credential check)", async () => {
  const { shards, watches } = setup();
  const call = new FakeWatchCall(request("p/", true));
  call.cancelled = true;
  type Call = Parameters<ReturnType<typeof watchHandler>>[0];
  watchHandler(watches, () => "")(call as unknown as Call);
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(watches.startingCount + watches.count, 0);
  assert.equal(shards.opened.length, 0);
  assert.deepEqual(call.written, []);
});

Deno.test("watchHandler() stops a start its call left while the start waited for the map", async () => {
  const { router, shards, watches } = setup();
  router.map = undefined;
  const call = new FakeWatchCall(request("p/", true));
  type Call = Parameters<ReturnType<typeof watchHandler>>[0];
  watchHandler(watches, () => "")(call as unknown as Call);
  assert.equal(watches.startingCount, 1);
  call.cancelled = true;
  call.emit("cancelled");
  router.publish(SHARDS);
  await until(() => watches.startingCount === 0, "the start to return");
  assert.equal(watches.count, 0);
  assert.equal(shards.opened.length, 0, "no kvnode stream opened");
});

Deno.test("tinykv.v1.KV/Watch answers a request it cannot decode INVALID_ARGUMENT naming the reason", async () => {
  const { shards, watches } = setup();
  const binding = decodingWatchRequests({
    definition: { Watch: KVService.Watch },
    implementation: { Watch: watchHandler(watches, () => "") as grpc.UntypedHandleCall },
  });
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 1024 * 1024,
    services: [binding],
  });
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const statusOf = (bytes: Uint8Array) =>
    new Promise<grpc.StatusObject>((resolve) => {
      const call = client.makeServerStreamRequest(
        KVService.Watch.path,
        (raw: Buffer) => raw,
        (raw: Buffer) => raw,
        Buffer.from(bytes),
      );
      call.on("error", () => {});
      call.on("data", () => {});
      call.on("status", resolve);
    });
  try {
    // start { shard: 1, index: 2^64 - 1 }: an int64 no number holds.
    const position = [0x08, 0x01, 0x10, ...new Array(9).fill(0xff), 0x01];
    const huge = await statusOf(new Uint8Array([0x1a, position.length, ...position]));
    assert.equal(huge.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(
      huge.details,
      'Cannot decode the request of "/tinykv.v1.KV/Watch": Cannot decode ' +
        '"tinykv.v1.WatchPosition.index": 18446744073709551615 is not a safe integer',
    );
    const malformed = await statusOf(new Uint8Array([0xff, 0xff]));
    assert.equal(malformed.code, grpc.status.INVALID_ARGUMENT);
    assert.match(malformed.details, /^Cannot decode the request of "\/tinykv.v1.KV\/Watch": /);
    assert.equal(shards.opened.length, 0);
    assert.equal(watches.count, 0);
  } finally {
    client.close();
    await server.shutdown(1000);
  }
});
