// Checks etcd's `Watch.Watch` on the gateway (etcd_watch.ts `serveEtcdWatch`) as a client sees it:
// a raw grpc-js client on a real gRPC server on 127.0.0.1, over real `GatewayWatches` whose
// `KvNode.Watch` streams are fakes the test drives (`FakeShards`: each stream the gateway opens is
// recorded with its request, then started, fed changes and ended by the test, synchronously), on a
// router over a fixed map of 3 shards. What happens in the gateway between two requests is seen in
// order: the answer to a progress request comes after everything the server wrote before it.
//
// Checked: `created` comes once the watch started in every shard it covers (a change that arrived
// meanwhile follows it); a key, a hash-tagged prefix, a range, a key onwards and every key map onto
// the kvnode ranges and shards they cover; events carry PUT or DELETE, the key, the value and
// revisions of 1, a Txn's changes in one answer, and positions alone send nothing; NOPUT and
// NODELETE drop events; watch ids 0, 1, … skip ids the client chose; an id in use is refused and
// the watch holding it goes on; cancel answers `canceled` and cancels the watch's kvnode streams
// only (an unknown id gets no answer, as in etcd); progress answers watch id -1; a start revision,
// prev_kv, empty or reversed ranges and keys past 4,096 bytes (range_end past 4,097) are created
// and canceled with the reason, opening nothing; at most 1,024 watches per stream and the gateway's
// limit, creates still starting counted (canceled ones until their start returns); a create
// canceled by a request of the same read opens nothing and frees its place at once; a client that
// reads no answers is cut RESOURCE_EXHAUSTED past 1 MiB of them (a played call, not a server); a kvnode stream ending with a status no retry cures cancels the watch with the reason,
// one a retry cures (a new leader, a lost node) is opened again from the last index, each change
// reported once; the gateway stopping cancels every watch; a client too slow is cut with the
// reason, one that catches up gets every change held for it meanwhile; the client ending or
// cancelling the stream cancels every kvnode stream and leaves no retry timer (the op sanitizer,
// on for every test here).
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import {
  Event_EventType,
  type ResponseHeader,
  WatchCreateRequest,
  WatchCreateRequest_FilterType,
  WatchRequest,
  WatchResponse,
  WatchService,
} from "@tinykv/proto/etcdserverpb";
import { type ShardWatchRequest, WatchEvent_Kind } from "@tinykv/proto/tinykv/v1";
import { bindService, type RpcFailure, rpcFailure, startGrpcServer } from "@tinykv/rpc";
import {
  nodeId,
  shardForKey,
  type ShardId,
  shardId,
  type ShardMap,
  splitEvenly,
} from "@tinykv/shard";
import {
  ETCD_STREAM_ANSWERS_UNREAD_BYTES_MAX,
  ETCD_STREAM_WATCHES_MAX,
  serveEtcdWatch,
} from "./etcd_watch.ts";
import { describeKey } from "./kv_service.ts";
import {
  GatewayWatches,
  type GatewayWatchesOptions,
  type ShardStream,
  type ShardStreamEvents,
} from "./watch.ts";

const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const HEADER: ResponseHeader = { clusterId: 11, memberId: 22, revision: 1, raftTerm: 0 };
const CONF_EPOCH = 5;
/** Three shards by key hash, each with one replica at `kvnode-<id>:1`. */
const MAP: ShardMap = {
  version: 1,
  shards: splitEvenly(3).map((range, i) => ({
    id: shardId(i + 1),
    range,
    replicas: [nodeId(`n${i + 1}`)],
    learners: [],
    confEpoch: CONF_EPOCH,
  })),
};
const ALL_SHARDS = [1, 2, 3];
const addressOf = (id: number) => `kvnode-${id}:1`;
const shardOfKey = (key: string) => shardForKey(MAP, enc(key)).id as number;

/** The router's part a watch uses, over {@linkcode MAP}; a leader noted is tried first. */
function fakeRouter(): GatewayWatchesOptions["router"] {
  const leaders = new Map<number, string>();
  return {
    shards: () => MAP.shards.map((shard) => shard.id),
    shardOf: (key) => shardForKey(MAP, key),
    candidates: (id: ShardId) => {
      const addresses = [addressOf(id)];
      const leader = leaders.get(id);
      if (leader !== undefined) addresses.unshift(leader);
      return { confEpoch: CONF_EPOCH, addresses };
    },
    noteLeader: (id, address) => {
      if (address === undefined) leaders.delete(id);
      else leaders.set(id, address);
    },
    mapChanged: () => Promise.resolve(),
  };
}

type Change = readonly ["put", string, string] | readonly ["delete", string];

/** One `KvNode.Watch` call the gateway opened; the test plays the kvnode. */
class FakeShardStream implements ShardStream {
  paused = false;
  cancelled = false;
  ended = false;

  constructor(
    readonly address: string,
    readonly request: ShardWatchRequest,
    readonly events: ShardStreamEvents,
  ) {}

  get shard(): number {
    return this.request.shardId;
  }

  get live(): boolean {
    return !this.cancelled && !this.ended;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  cancel(): void {
    this.cancelled = true;
  }

  /** The kvnode's first message: the watch starts after `index`. */
  start(index: number): void {
    this.events.onMessage({ events: [], index });
  }

  /** Changes applied at `index` (none: the position moved). */
  apply(index: number, ...changes: Change[]): void {
    this.events.onMessage({
      index,
      events: changes.map((change) => ({
        kind: change[0] === "put" ? WatchEvent_Kind.PUT : WatchEvent_Kind.DELETE,
        key: enc(change[1]),
        value: enc(change[0] === "put" ? change[2] : ""),
        shard: this.shard,
        index,
      })),
    });
  }

  /** The call ends with `failure` (a kvnode naming its leader in the trailer, maybe). */
  end(failure: RpcFailure, leaderAddress?: string): void {
    this.ended = true;
    this.events.onEnd(failure, leaderAddress);
  }
}

/** Every `KvNode.Watch` call the gateway opened, in order. */
class FakeShards {
  readonly opened: FakeShardStream[] = [];

  readonly open = (address: string, request: ShardWatchRequest, events: ShardStreamEvents) => {
    const stream = new FakeShardStream(address, request, events);
    this.opened.push(stream);
    return stream;
  };

  live(): FakeShardStream[] {
    return this.opened.filter((stream) => stream.live);
  }
}

/** Waits (bounded, polling every 2 ms) until `condition` holds. */
async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`No ${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** `promise`, or a failure naming `what` after `ms` milliseconds. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`No ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a test reads of an answer: its flags, reason and events, decoded. */
function summary(answer: WatchResponse) {
  return {
    watchId: answer.watchId,
    created: answer.created,
    canceled: answer.canceled,
    reason: answer.cancelReason,
    events: answer.events.map((event) => {
      const kv = event.kv!;
      const type = event.type === Event_EventType.PUT ? "PUT" : "DELETE";
      return `${type} ${dec(kv.key)}=${dec(kv.value)}`;
    }),
  };
}

const created = (watchId: number) => ({
  watchId,
  created: true,
  canceled: false,
  reason: "",
  events: [],
});

/** A client's end of one etcd Watch stream, with every answer it received. */
class WatchClient {
  readonly answers: WatchResponse[] = [];
  readonly status: Promise<grpc.StatusObject>;
  readonly stream: grpc.ClientDuplexStream<WatchRequest, WatchResponse>;
  #taken = 0;
  #arrived = Promise.withResolvers<void>();

  constructor(client: grpc.Client) {
    this.stream = client.makeBidiStreamRequest(
      "/etcdserverpb.Watch/Watch",
      (request: WatchRequest) => Buffer.from(WatchRequest.encode(request)),
      (bytes: Buffer) => WatchResponse.decode(bytes),
    );
    this.stream.on("data", (answer: WatchResponse) => {
      this.answers.push(answer);
      this.#arrived.resolve();
    });
    this.stream.on("error", () => {});
    this.status = new Promise((resolve) => this.stream.on("status", resolve));
  }

  create(fields: Partial<WatchCreateRequest>): void {
    this.stream.write(WatchRequest.create({ createRequest: WatchCreateRequest.create(fields) }));
  }

  cancel(watchId: number): void {
    this.stream.write(WatchRequest.create({ cancelRequest: { watchId } }));
  }

  progress(): void {
    this.stream.write(WatchRequest.create({ progressRequest: {} }));
  }

  /** The next `count` answers not taken yet (bounded wait). */
  async take(count = 1): Promise<WatchResponse[]> {
    while (this.answers.length < this.#taken + count) {
      await within(this.#arrived.promise, 5000, `watch answer ${this.#taken + count}`);
      this.#arrived = Promise.withResolvers<void>();
    }
    const taken = this.answers.slice(this.#taken, this.#taken + count);
    this.#taken += count;
    return taken;
  }

  /**
   * Every answer the server sent before it answered a progress request sent now (the answers of
   * one stream arrive in order), summarized; the progress answer itself is checked and dropped.
   */
  async flush(): Promise<ReturnType<typeof summary>[]> {
    this.progress();
    const before: ReturnType<typeof summary>[] = [];
    while (true) {
      const [answer] = await this.take();
      const seen = summary(answer);
      if (seen.watchId === -1 && !seen.created && !seen.canceled && seen.events.length === 0) {
        return before;
      }
      before.push(seen);
    }
  }

  /** Half-closes the stream and waits (bounded) for its status. */
  async end(): Promise<grpc.StatusObject> {
    this.stream.end();
    return await within(this.status, 5000, "the end of the Watch stream");
  }
}

/** `serveEtcdWatch` on a real gRPC server over `GatewayWatches` on {@linkcode FakeShards}. */
async function served(options: Partial<GatewayWatchesOptions> = {}) {
  const shards = new FakeShards();
  const watches = new GatewayWatches({ router: fakeRouter(), open: shards.open, ...options });
  const neverUndecoded = (_request: unknown): _request is { message: string } => false;
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 4 * 1024 * 1024,
    services: [
      bindService(WatchService, {
        Watch: (call) =>
          serveEtcdWatch(call, { watches, header: () => HEADER, describeKey }, neverUndecoded),
      }),
    ],
  });
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  const streams: WatchClient[] = [];
  const watch = () => {
    const stream = new WatchClient(client);
    streams.push(stream);
    return stream;
  };
  const close = async () => {
    for (const stream of streams) stream.stream.cancel();
    client.close();
    await server.shutdown(1000);
    watches.close();
  };
  return { shards, watches, watch, close };
}

/**
 * A test with the op and resource sanitizers on (Deno 2 leaves the op sanitizer off by default):
 * a retry timer or a stream left behind by a watch fails it.
 */
function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, sanitizeOps: true, sanitizeResources: true, fn });
}

/** Waits until `count` kvnode streams have been opened in all; returns the last `count - from`. */
async function opened(shards: FakeShards, count: number, from: number) {
  await until(() => shards.opened.length >= count, `${count} kvnode streams opened`);
  assert.equal(shards.opened.length, count, "no more kvnode streams than expected");
  return shards.opened.slice(from);
}

test("serveEtcdWatch answers created once the watch started in every shard, then what arrived meanwhile", async () => {
  const { shards, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("p/"), rangeEnd: enc("p0") });
    const parts = await opened(shards, 3, 0);
    assert.deepEqual(
      parts.map((part) => [
        part.address,
        part.request.shardId,
        part.request.confEpoch,
        dec(part.request.start),
        dec(part.request.end),
        part.request.resume,
        part.request.afterIndex,
      ]),
      ALL_SHARDS.map((id) => [addressOf(id), id, CONF_EPOCH, "p/", "p0", false, 0]),
    );
    parts[0].start(10);
    parts[1].start(20);
    // Shard 1 applies a change before shard 3 started: held (the stream is read on).
    parts[0].apply(11, ["put", "p/held", "h"]);
    assert.deepEqual(await client.flush(), [], "not created while shard 3 has not started");
    assert.deepEqual(parts.map((part) => part.paused), [false, false, false]);

    parts[2].start(30);
    assert.deepEqual(await client.flush(), [
      created(0),
      { ...created(0), created: false, events: ["PUT p/held=h"] },
    ]);
    assert.deepEqual(parts.map((part) => part.paused), [false, false, false]);
    const [first] = client.answers;
    assert.deepEqual(first.header, HEADER);

    parts[2].apply(31, ["put", "p/x", "1"]);
    assert.deepEqual((await client.flush()).map((answer) => answer.events), [["PUT p/x=1"]]);
    assert.equal((await client.end()).code, grpc.status.OK);
  } finally {
    await close();
  }
});

test("serveEtcdWatch watches a key, a hash-tagged prefix, a range, a key onwards and every key in the shards they cover", async () => {
  const { shards, watch, close } = await served();
  const cases: {
    key: string;
    rangeEnd: Uint8Array;
    shards: number[];
    end: string;
  }[] = [
    // One key: its shard, up to the key and a zero byte.
    { key: "k", rangeEnd: new Uint8Array(), shards: [shardOfKey("k")], end: "k\0" },
    // A prefix holding a whole hash tag: every key under it is in the tag's shard.
    { key: "{t}a", rangeEnd: enc("{t}b"), shards: [shardOfKey("{t}")], end: "{t}b" },
    { key: "a", rangeEnd: enc("c"), shards: ALL_SHARDS, end: "c" },
    // range_end "\0": every key from the key on (an empty end, to the kvnode).
    { key: "m", rangeEnd: new Uint8Array([0]), shards: ALL_SHARDS, end: "" },
    { key: "", rangeEnd: new Uint8Array([0]), shards: ALL_SHARDS, end: "" },
  ];
  try {
    const client = watch();
    let count = 0;
    for (const [i, want] of cases.entries()) {
      client.create({ key: enc(want.key), rangeEnd: want.rangeEnd });
      const parts = await opened(shards, count + want.shards.length, count);
      count += want.shards.length;
      const what = JSON.stringify(want.key);
      assert.deepEqual(parts.map((part) => part.shard), want.shards, what);
      for (const part of parts) {
        assert.deepEqual([dec(part.request.start), dec(part.request.end)], [want.key, want.end]);
      }
      for (const part of parts) part.start(100);
      assert.deepEqual(await client.flush(), [created(i)], what);
    }
  } finally {
    await close();
  }
});

test("serveEtcdWatch reports puts and deletes with key, value and revisions 1, a Txn's changes in one answer", async () => {
  const { shards, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("{t}"), rangeEnd: enc("{t~") }); // The prefix "{t}": one shard.
    const [part] = await opened(shards, 1, 0);
    part.start(7);
    assert.deepEqual(await client.flush(), [created(0)]);

    part.apply(8, ["put", "{t}a", "one"]);
    part.apply(9);
    part.apply(10, ["delete", "{t}a"]);
    part.apply(12, ["put", "{t}b", "two"], ["delete", "{t}c"], ["put", "{t}d", ""]);
    const answers = await client.flush();
    assert.deepEqual(answers.map((answer) => answer.events), [
      ["PUT {t}a=one"],
      ["DELETE {t}a="],
      ["PUT {t}b=two", "DELETE {t}c=", "PUT {t}d="],
    ], "a position alone sends nothing");

    // The whole answer, as etcd's clients read it: revisions of 1, no lease, no prev_kv.
    const [put, deleted] = client.answers.filter((answer) => answer.events.length > 0);
    assert.deepEqual(put.header, HEADER);
    assert.deepEqual(
      [put.watchId, put.created, put.canceled, put.compactRevision, put.fragment],
      [0, false, false, 0, false],
    );
    const [putEvent] = put.events;
    assert.equal(putEvent.type, Event_EventType.PUT);
    assert.equal(putEvent.prevKv, undefined);
    assert.deepEqual(
      [dec(putEvent.kv!.key), dec(putEvent.kv!.value), putEvent.kv!.lease],
      ["{t}a", "one", 0],
    );
    assert.deepEqual(
      [putEvent.kv!.createRevision, putEvent.kv!.modRevision, putEvent.kv!.version],
      [1, 1, 1],
    );
    const [deleteEvent] = deleted.events;
    assert.equal(deleteEvent.type, Event_EventType.DELETE);
    assert.deepEqual(
      [
        dec(deleteEvent.kv!.key),
        deleteEvent.kv!.value.length,
        deleteEvent.kv!.createRevision,
        deleteEvent.kv!.modRevision,
        deleteEvent.kv!.version,
      ],
      ["{t}a", 0, 0, 1, 0],
      "a deleted key: its mod revision, as etcd sends it",
    );
  } finally {
    await close();
  }
});

test("serveEtcdWatch drops puts with NOPUT and deletes with NODELETE", async () => {
  const { shards, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("f"), filters: [WatchCreateRequest_FilterType.NOPUT] });
    client.create({ key: enc("f"), filters: [WatchCreateRequest_FilterType.NODELETE] });
    client.create({
      key: enc("f"),
      filters: [WatchCreateRequest_FilterType.NOPUT, WatchCreateRequest_FilterType.NODELETE],
    });
    const parts = await opened(shards, 3, 0);
    for (const part of parts) part.start(1);
    assert.deepEqual(await client.flush(), [created(0), created(1), created(2)]);

    for (const part of parts) {
      part.apply(2, ["put", "f", "a"]);
      part.apply(3, ["delete", "f"]);
      part.apply(4, ["put", "f", "b"], ["delete", "f"]);
    }
    assert.deepEqual(
      (await client.flush()).map((answer) => [answer.watchId, answer.events]),
      [
        [0, ["DELETE f="]],
        [0, ["DELETE f="]],
        [1, ["PUT f=a"]],
        [1, ["PUT f=b"]],
      ],
      "an answer whose every event is filtered out is not sent",
    );
  } finally {
    await close();
  }
});

test("serveEtcdWatch numbers watches 0, 1, … skipping ids the client chose, and serves each on one stream", async () => {
  const { shards, watches, watch, close } = await served();
  try {
    const client = watch();
    const keys = ["w0", "w1", "w2", "w3", "w4"];
    client.create({ key: enc(keys[0]) });
    client.create({ key: enc(keys[1]) });
    client.create({ key: enc(keys[2]), watchId: 2 });
    client.create({ key: enc(keys[3]) });
    client.create({ key: enc(keys[4]), watchId: 100 });
    const parts = await opened(shards, 5, 0);
    assert.deepEqual(parts.map((part) => dec(part.request.start)), keys);
    for (const part of parts) part.start(1);
    assert.deepEqual(
      (await client.flush()).map((answer) => [answer.watchId, answer.created]),
      [[0, true], [1, true], [2, true], [3, true], [100, true]],
      "the auto id after 1 skips 2, which the client chose",
    );
    assert.equal(watches.count, 5);

    // Each watch gets its own key's changes, under its id.
    for (const [i, part] of [...parts.entries()].reverse()) {
      part.apply(2, ["put", keys[i], `v${i}`]);
    }
    assert.deepEqual(
      (await client.flush()).map((answer) => [answer.watchId, answer.events]),
      [[100, ["PUT w4=v4"]], [3, ["PUT w3=v3"]], [2, ["PUT w2=v2"]], [1, ["PUT w1=v1"]], [
        0,
        ["PUT w0=v0"],
      ]],
    );
  } finally {
    await close();
  }
});

test("serveEtcdWatch refuses a watch id in use on the stream and keeps the watch that holds it", async () => {
  const { shards, watches, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("d"), watchId: 7 });
    const [part] = await opened(shards, 1, 0);
    part.start(1);
    assert.deepEqual(await client.flush(), [created(7)]);

    client.create({ key: enc("e"), watchId: 7 });
    const [refusal] = await client.flush();
    assert.deepEqual([refusal.created, refusal.canceled], [true, true]);
    assert.match(refusal.reason, /^Watch id 7 is already in use on this stream$/);
    assert.equal(refusal.watchId, -1, "the refusal is not about watch 7");
    assert.equal(shards.opened.length, 1, "the refused watch opened nothing");
    assert.equal(watches.count, 1);

    part.apply(2, ["put", "d", "still"]);
    assert.deepEqual(await client.flush(), [{
      ...created(7),
      created: false,
      events: ["PUT d=still"],
    }]);
    assert.equal(part.live, true);
  } finally {
    await close();
  }
});

test("serveEtcdWatch cancels a watch on request: canceled, its kvnode streams cancelled, the others untouched", async () => {
  const { shards, watches, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("c/"), rangeEnd: enc("c0") });
    client.create({ key: enc("c1") });
    const parts = await opened(shards, 4, 0);
    for (const part of parts) part.start(1);
    assert.deepEqual(await client.flush(), [created(0), created(1)]);

    client.cancel(0);
    assert.deepEqual(await client.flush(), [{ ...created(0), created: false, canceled: true }]);
    assert.deepEqual(parts.map((part) => part.cancelled), [true, true, true, false]);
    assert.equal(watches.count, 1);
    // A change that was on its way from a cancelled stream is not reported.
    parts[0].apply(2, ["put", "c/late", "x"]);
    // Canceling it again, or an id never used: no answer, as in etcd.
    client.cancel(0);
    client.cancel(42);
    parts[3].apply(2, ["put", "c1", "y"]);
    assert.deepEqual(await client.flush(), [{
      ...created(1),
      created: false,
      events: ["PUT c1=y"],
    }]);

    // A watch canceled before it started: canceled at once; its start later reports nothing.
    client.create({ key: enc("c2") });
    const [pending] = await opened(shards, 5, 4);
    client.cancel(2);
    assert.deepEqual(await client.flush(), [{ ...created(2), created: false, canceled: true }]);
    assert.equal(pending.cancelled, true);
    pending.start(1);
    pending.apply(2, ["put", "c2", "z"]);
    assert.deepEqual(await client.flush(), []);
    assert.equal(watches.count, 1);
  } finally {
    await close();
  }
});

test("serveEtcdWatch answers a progress request with one response of watch id -1", async () => {
  const { shards, watch, close } = await served();
  try {
    const client = watch();
    client.progress();
    const [alone] = await client.take();
    assert.deepEqual(
      summary(alone),
      { watchId: -1, created: false, canceled: false, reason: "", events: [] },
    );
    assert.deepEqual(alone.header, HEADER);

    client.create({ key: enc("g/"), rangeEnd: enc("g0") });
    for (const part of await opened(shards, 3, 0)) part.start(1);
    assert.deepEqual(await client.flush(), [created(0)]);
    client.progress();
    client.progress();
    const answers = await client.take(2);
    assert.deepEqual(answers.map((answer) => answer.watchId), [-1, -1], "one answer per request");
    assert.deepEqual(await client.flush(), []);
  } finally {
    await close();
  }
});

test("serveEtcdWatch refuses what TinyKV cannot watch as etcd refuses a watch: created, canceled, the reason", async () => {
  const { shards, watch, close } = await served();
  const key4096 = "k".repeat(4096);
  const refusals: [Partial<WatchCreateRequest>, RegExp][] = [
    [
      { key: enc("r"), startRevision: 5 },
      /^Watch on key "r" refused: it asks to start at revision 5, .*no cluster-wide revision.*start_revision 0/,
    ],
    [{ key: enc("r"), startRevision: 1 }, /revision 1, /],
    [{ key: enc("r"), startRevision: -1 }, /revision -1, /],
    [
      { key: enc("r"), prevKv: true },
      /^Watch on key "r" refused: .*no previous value \(prev_kv\)$/,
    ],
    [{ key: enc("b"), rangeEnd: enc("a") }, /"b" refused: range_end must come after the key/],
    [{ key: enc("b"), rangeEnd: enc("b") }, /range_end must come after the key/],
    [{ key: new Uint8Array() }, /the key is empty \(give range_end "\\0" to watch every key\)/],
    [{ key: enc(`${key4096}x`) }, /refused: the key has 4097 bytes: the maximum is 4096$/],
    [
      { key: enc("a"), rangeEnd: enc(`b${key4096}x`) },
      /refused: range_end has 4098 bytes: the maximum is 4097$/,
    ],
  ];
  try {
    const client = watch();
    for (const [create, reason] of refusals) {
      client.create(create);
      const [refusal] = await client.flush();
      assert.deepEqual([refusal.created, refusal.canceled, refusal.events], [true, true, []]);
      assert.match(refusal.reason, reason);
    }
    assert.equal(shards.opened.length, 0, "a refused watch opens no kvnode stream");

    // At the limits: a key of 4,096 bytes, a range_end of 4,097.
    client.create({ key: enc(key4096) });
    client.create({ key: enc("a"), rangeEnd: enc(`b${key4096}`) });
    const parts = await opened(shards, 1 + 3, 0);
    assert.deepEqual(
      parts.map((part) => [part.request.start.length, part.request.end.length]),
      [[4096, 4097], [1, 4097], [1, 4097], [1, 4097]],
    );
    for (const part of parts) part.start(1);
    const answers = await client.flush();
    assert.deepEqual(answers.map((answer) => [answer.created, answer.canceled]), [
      [true, false],
      [true, false],
    ]);
    parts[0].apply(2, ["put", key4096, "v"]);
    const [event] = await client.flush();
    assert.deepEqual(event.events, [`PUT ${key4096}=v`]);
  } finally {
    await close();
  }
});

test("serveEtcdWatch holds at most ETCD_STREAM_WATCHES_MAX watches per stream, and the gateway's limit", async () => {
  assert.equal(ETCD_STREAM_WATCHES_MAX, 1024);
  const { shards, watches, watch, close } = await served({ watchesMax: 1100 });
  try {
    const client = watch();
    for (let i = 0; i < ETCD_STREAM_WATCHES_MAX; i++) client.create({ key: enc(`n${i}`) });
    await opened(shards, ETCD_STREAM_WATCHES_MAX, 0);
    client.create({ key: enc("one-more") });
    const [refusal] = await client.flush();
    assert.deepEqual([refusal.watchId, refusal.created, refusal.canceled], [-1, true, true]);
    assert.equal(refusal.reason, "This stream holds 1024 watches (started or starting): the limit");
    assert.equal(watches.count, ETCD_STREAM_WATCHES_MAX);
    // One canceled makes room.
    client.cancel(5);
    client.create({ key: enc("room") });
    const [part] = await opened(shards, ETCD_STREAM_WATCHES_MAX + 1, ETCD_STREAM_WATCHES_MAX);
    part.start(1);
    assert.deepEqual(await client.flush(), [
      { ...created(5), created: false, canceled: true },
      created(1024),
    ], "a refused create uses up no id: the next is 1024");

    // The gateway's own limit (1100 here), on another stream.
    const other = watch();
    for (let i = 0; i < 1100 - ETCD_STREAM_WATCHES_MAX; i++) other.create({ key: enc(`o${i}`) });
    await opened(shards, 1101, 1025);
    other.create({ key: enc("past-the-gateway") });
    // Refused when it starts, in the turn after the request (a progress request may come first).
    const [full] = await other.take();
    assert.deepEqual([full.created, full.canceled], [true, true]);
    assert.equal(
      full.cancelReason,
      "The gateway serves 1100 watches (open or starting): the limit",
    );
  } finally {
    await close();
  }
});

/**
 * {@linkcode fakeRouter} whose shard map is not known until `publish()`: a watch waits for it in
 * `GatewayWatches.start`, so the test holds creates "starting" as long as it likes.
 */
function unpublishedRouter() {
  const router = fakeRouter();
  let known = false;
  let published = Promise.withResolvers<void>();
  return {
    router: {
      ...router,
      shards: () => known ? router.shards() : undefined,
      shardOf: (key: Uint8Array) => known ? router.shardOf(key) : undefined,
      mapChanged: () => published.promise,
    } satisfies GatewayWatchesOptions["router"],
    publish() {
      known = true;
      published.resolve();
      published = Promise.withResolvers<void>();
    },
  };
}

test("serveEtcdWatch counts creates still starting against ETCD_STREAM_WATCHES_MAX, canceled ones until their start returns", async () => {
  const { router, publish } = unpublishedRouter();
  const { shards, watches, watch, close } = await served({ router });
  try {
    const client = watch();
    for (let i = 0; i < ETCD_STREAM_WATCHES_MAX; i++) client.create({ key: enc(`s${i}`) });
    // Every start waits for the map: canceled now, each stays starting until its start returns.
    await until(() => watches.startingCount === ETCD_STREAM_WATCHES_MAX, "every start waiting");
    for (let i = 0; i < ETCD_STREAM_WATCHES_MAX; i++) client.cancel(i);
    client.create({ key: enc("one-more") });
    const answers = await client.flush();
    assert.equal(answers.length, ETCD_STREAM_WATCHES_MAX + 1);
    assert.ok(answers.slice(0, -1).every((answer, i) => answer.watchId === i && answer.canceled));
    assert.deepEqual(answers.at(-1), {
      ...created(-1),
      canceled: true,
      reason: "This stream holds 1024 watches (started or starting): the limit",
    }, "the canceled creates still starting hold their places");
    assert.equal(watches.startingCount, ETCD_STREAM_WATCHES_MAX);

    publish();
    await until(() => watches.startingCount === 0, "the starts to return");
    assert.equal(shards.opened.length, 0, "no canceled create opened a kvnode stream");
    client.create({ key: enc("room") });
    const [part] = await opened(shards, 1, 0);
    part.start(1);
    assert.deepEqual(await client.flush(), [created(1024)], "their places are free again");
  } finally {
    await close();
  }
});

/**
 * A server call the test plays, its requests handed over by `emit("data", …)`: the client reads
 * every answer, or (`reading` false) none (writes wait for a drain).
 */
class PlayedCall extends EventEmitter {
  readonly written: WatchResponse[] = [];
  readonly errors: Error[] = [];
  cancelled = false;
  destroyed = false;

  constructor(readonly reading: boolean) {
    super();
    this.on("error", (error: Error) => this.errors.push(error));
  }

  get writableNeedDrain(): boolean {
    return !this.reading;
  }

  write(response: WatchResponse): boolean {
    this.written.push(response);
    return this.reading;
  }

  end(): void {}
}

/** `serveEtcdWatch` on a {@linkcode PlayedCall} over `GatewayWatches` on {@linkcode FakeShards}. */
function played(reading: boolean) {
  const shards = new FakeShards();
  const watches = new GatewayWatches({ router: fakeRouter(), open: shards.open });
  const call = new PlayedCall(reading);
  type Call = Parameters<typeof serveEtcdWatch>[0];
  const neverUndecoded = (_request: unknown): _request is { message: string } => false;
  serveEtcdWatch(
    call as unknown as Call,
    { watches, header: () => HEADER, describeKey },
    neverUndecoded,
  );
  const send = (request: Partial<WatchRequest>) => call.emit("data", WatchRequest.create(request));
  return { shards, watches, call, send };
}

test("serveEtcdWatch never opens the kvnode streams of a create canceled by a request of the same read, and answers the cancel only", async () => {
  const { shards, watches, call, send } = played(true);
  // Requests of one read from the socket are handed over in one event-loop turn.
  for (let i = 0; i < 2 * ETCD_STREAM_WATCHES_MAX; i++) {
    send({ createRequest: WatchCreateRequest.create({ key: enc("c/"), rangeEnd: enc("c0") }) });
    send({ cancelRequest: { watchId: i } });
  }
  send({ createRequest: WatchCreateRequest.create({ key: enc("k"), watchId: 7 }) });
  send({ cancelRequest: { watchId: 7 } });
  // One that goes on, for its place was freed by each cancel.
  send({ createRequest: WatchCreateRequest.create({ key: enc("kept") }) });
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(shards.opened.length, 1, "the kept watch's stream only");
  assert.equal(watches.startingCount, 0);
  const answers = call.written.map(summary);
  assert.equal(answers.length, 2 * ETCD_STREAM_WATCHES_MAX + 1);
  assert.ok(
    answers.every((answer, i) =>
      answer.watchId === (i < 2 * ETCD_STREAM_WATCHES_MAX ? i : 7) && answer.canceled &&
      !answer.created
    ),
  );
  shards.opened[0].start(1);
  assert.deepEqual(call.written.map(summary).at(-1), created(2 * ETCD_STREAM_WATCHES_MAX));
  call.emit("close");
  assert.equal(watches.count, 0);
});

test("serveEtcdWatch ends RESOURCE_EXHAUSTED a stream whose client sends requests faster than it reads the answers", async () => {
  const { watches, call, send } = played(false);
  // The first answer closes the window; the next (32 bytes each, as counted) wait for the client.
  const unread = ETCD_STREAM_ANSWERS_UNREAD_BYTES_MAX / 32;
  for (let i = 0; i <= unread; i++) send({ progressRequest: {} });
  assert.deepEqual(call.errors, []);
  assert.equal(call.written.length, unread + 1);
  send({ progressRequest: {} });
  assert.equal(call.written.length, unread + 1, "no more written");
  assert.equal(call.errors.length, 1);
  const error = call.errors[0] as grpc.ServiceError;
  assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(
    error.details,
    /^The client sends requests faster than it reads their answers: more than 1048576 bytes of /,
  );
  // Nothing more is read or started.
  send({ createRequest: WatchCreateRequest.create({ key: enc("k") }) });
  assert.equal(call.written.length, unread + 1);
  assert.equal(watches.startingCount + watches.count, 0);
  call.emit("close");
  await Promise.resolve();
});

test("serveEtcdWatch cancels a watch whose kvnode stream ends with a status no retry cures, with the reason", async () => {
  const { shards, watches, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("x/"), rangeEnd: enc("x0") });
    const parts = await opened(shards, 3, 0);
    for (const part of parts) part.start(1);
    assert.deepEqual(await client.flush(), [created(0)]);

    parts[1].end(rpcFailure("resourceExhausted", "The watcher fell behind the window: cut"));
    assert.deepEqual(await client.flush(), [{
      ...created(0),
      created: false,
      canceled: true,
      reason: "Shard 2: The watcher fell behind the window: cut",
    }]);
    assert.deepEqual(parts.map((part) => part.live), [false, false, false]);
    assert.equal(watches.count, 0);
    assert.equal(shards.opened.length, 3, "not opened again");

    // Before it started in every shard: created and canceled, with the reason.
    client.create({ key: enc("y/"), rangeEnd: enc("y0") });
    const more = await opened(shards, 6, 3);
    more[0].start(1);
    more[2].end(rpcFailure("outOfRange", "Index 3 is no longer held"));
    const [refusal] = await client.flush();
    assert.deepEqual(
      refusal,
      {
        ...created(1),
        canceled: true,
        reason: "Shard 3: Index 3 is no longer held",
      },
    );
    assert.deepEqual(more.map((part) => part.live), [false, false, false]);

    // The stream goes on.
    client.create({ key: enc("z") });
    const [last] = await opened(shards, 7, 6);
    last.start(1);
    assert.deepEqual(await client.flush(), [created(2)]);
  } finally {
    await close();
  }
});

test("serveEtcdWatch keeps a watch across kvnode streams a retry cures, each change reported once", async () => {
  const { shards, watch, close } = await served();
  try {
    const client = watch();
    const key = "moving";
    client.create({ key: enc(key) });
    const [first] = await opened(shards, 1, 0);
    first.start(10);
    first.apply(11, ["put", key, "1"]);
    assert.deepEqual(await client.flush(), [
      created(0),
      { ...created(0), created: false, events: [`PUT ${key}=1`] },
    ]);

    // The replica stops leading and names the new leader: opened there at once, from index 11.
    first.end(rpcFailure("unavailable", "Not the leader"), "kvnode-new:1");
    const [second] = await opened(shards, 2, 1);
    assert.deepEqual(
      [second.address, second.request.resume, second.request.afterIndex],
      ["kvnode-new:1", true, 11],
    );
    second.start(11);
    second.apply(11, ["put", key, "1"]); // Sent again by the new leader: not reported twice.
    second.apply(12, ["put", key, "2"]);

    // The node is lost (no leader named): opened again after a pause, from index 12.
    second.end(rpcFailure("unavailable", "Connection reset"));
    const [third] = await opened(shards, 3, 2);
    assert.deepEqual([third.request.resume, third.request.afterIndex], [true, 12]);
    third.start(12);
    third.apply(13, ["delete", key]);
    assert.deepEqual(
      (await client.flush()).map((answer) => [answer.canceled, answer.events]),
      [[false, [`PUT ${key}=2`]], [false, [`DELETE ${key}=`]]],
    );
  } finally {
    await close();
  }
});

test("serveEtcdWatch cancels every watch the stopping gateway ends, with the reason, and refuses new ones", async () => {
  const { shards, watches, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("s1") });
    client.create({ key: enc("s2") });
    const parts = await opened(shards, 2, 0);
    for (const part of parts) part.start(1);
    assert.deepEqual(await client.flush(), [created(0), created(1)]);

    watches.close();
    const reason = "The gateway is stopping: resume on another one";
    assert.deepEqual(await client.flush(), [
      { ...created(0), created: false, canceled: true, reason },
      { ...created(1), created: false, canceled: true, reason },
    ]);
    assert.deepEqual(parts.map((part) => part.cancelled), [true, true]);
    client.create({ key: enc("s3") });
    assert.deepEqual((await client.take()).map(summary), [
      { ...created(2), canceled: true, reason: "The gateway is stopping" },
    ]);
    assert.equal((await client.end()).code, grpc.status.OK);
  } finally {
    await close();
  }
});

test("serveEtcdWatch cuts a watch whose client reads too slowly, with the reason, after what it had sent", async () => {
  const queueBytesMax = 64 * 1024;
  const { shards, watches, watch, close } = await served({ queueBytesMax });
  try {
    const client = watch();
    client.create({ key: enc("slow") });
    const [part] = await opened(shards, 1, 0);
    part.start(1);
    assert.deepEqual(await client.flush(), [created(0)]);

    // The client stops reading; changes of 16 KiB arrive until the gateway cuts the watch.
    client.stream.pause();
    const value = "v".repeat(16 * 1024);
    let index = 1;
    while (watches.count > 0) {
      index++;
      assert.ok(index < 10_000, "the watch is cut");
      part.apply(index, ["put", "slow", `${index}:${value}`]);
    }
    assert.equal(part.cancelled, true);
    client.stream.resume();

    // Every change up to the cut, in order, then the reason.
    const changes = index - 1;
    const answers: WatchResponse[] = [];
    while (answers.length === 0 || !answers[answers.length - 1].canceled) {
      answers.push(...await client.take());
    }
    const last = summary(answers[answers.length - 1]);
    assert.deepEqual([last.created, last.canceled], [false, true]);
    assert.match(
      last.reason,
      /^The client reads its watch too slowly: \d+ bytes of changes wait for it, and a watch holds at most 65536;/,
    );
    const sent = answers.slice(0, -1).map((answer) => {
      const [event] = summary(answer).events;
      return Number(event.slice("PUT slow=".length).split(":")[0]);
    });
    assert.deepEqual(
      sent,
      Array.from({ length: sent.length }, (_, i) => i + 2),
      "a contiguous run",
    );
    assert.ok(sent.length < changes, `the changes past the queue are not sent: ${sent.length}`);
    assert.ok(sent.length * value.length > queueBytesMax, "more than the queue was sent");
    assert.deepEqual(await client.flush(), []);
  } finally {
    await close();
  }
});

test("serveEtcdWatch holds changes for a client that reads slowly and sends them as it drains", async () => {
  const { shards, watches, watch, close } = await served();
  try {
    const client = watch();
    client.create({ key: enc("lag/"), rangeEnd: enc("lag0") });
    client.create({ key: enc("lag1") });
    const parts = await opened(shards, 4, 0);
    for (const part of parts) part.start(1);
    assert.deepEqual(await client.flush(), [created(0), created(1)]);

    // More answers than the server's stream buffers (16), for both watches, while the client
    // reads nothing: the rest wait in the watches' queues, far below their limit.
    client.stream.pause();
    const value = "w".repeat(1024);
    for (let index = 2; index < 102; index++) {
      parts[index % 3].apply(index, ["put", `lag/${index}`, `${index}:${value}`]);
      parts[3].apply(index, ["put", "lag1", `${index}:${value}`]);
    }
    assert.equal(watches.count, 2, "nothing cut");
    client.stream.resume();
    // (A progress answer would overtake what waits in the queues: the answers are taken as such.)
    const answers = (await client.take(200)).map(summary);
    const indexes = (watchId: number) =>
      answers.filter((answer) => answer.watchId === watchId).map((answer) => {
        assert.equal(answer.events.length, 1);
        return Number(answer.events[0].split("=")[1].split(":")[0]);
      });
    const all = Array.from({ length: 100 }, (_, i) => i + 2);
    assert.deepEqual(indexes(0), all, "watch 0: every change once, in order");
    assert.deepEqual(indexes(1), all, "watch 1: every change once, in order");
    assert.deepEqual(await client.flush(), [], "nothing more");
  } finally {
    await close();
  }
});

test("serveEtcdWatch ends with the client: every kvnode stream cancelled, no retry left", async () => {
  const { shards, watches, watch, close } = await served();
  try {
    // Half-closed: the stream ends OK.
    const client = watch();
    client.create({ key: enc("h/"), rangeEnd: enc("h0") });
    client.create({ key: enc("h1") });
    const parts = await opened(shards, 4, 0);
    for (const part of parts.slice(0, 3)) part.start(1);
    assert.deepEqual(await client.flush(), [created(0)], "watch 1 has not started");
    // Shard 1's node is lost: a retry waits on a timer, which ending the stream must clear.
    parts[0].end(rpcFailure("unavailable", "Connection reset"));
    assert.equal((await client.end()).code, grpc.status.OK);
    assert.equal(watches.count, 0);
    assert.deepEqual(parts.map((part) => part.live), [false, false, false, false]);

    // Cancelled by the client while a shard's stream waits to be opened again: its node was lost
    // 4 times over (the pauses double: the last is 400 to 800 ms). Were the retry left, the test
    // would end with its timer pending (the op sanitizer fails it).
    const other = watch();
    other.create({ key: enc("i/"), rangeEnd: enc("i0") });
    const more = await opened(shards, 7, 4);
    for (const part of more) part.start(1);
    assert.deepEqual(await other.flush(), [created(0)]);
    let lost = more[2];
    for (let count = 8; count <= 11; count++) {
      lost.end(rpcFailure("unavailable", "Connection reset"));
      [lost] = await opened(shards, count, count - 1);
      assert.equal(lost.shard, 3);
    }
    lost.end(rpcFailure("unavailable", "Connection reset"));
    other.stream.cancel();
    assert.equal((await within(other.status, 5000, "status")).code, grpc.status.CANCELLED);
    await until(() => watches.count === 0, "the watch ended on the server");
    assert.ok(shards.opened.every((part) => !part.live), "every kvnode stream cancelled");
    assert.equal(shards.opened.length, 11, "none opened again");
  } finally {
    await close();
  }
});
