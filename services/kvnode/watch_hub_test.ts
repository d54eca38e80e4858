// Checks WatchHub (watch_hub.ts) driven directly, with fake sinks that record every message and
// can refuse one (returning false, as a full gRPC stream does): changes are sent after a watcher's
// position in index order, each once; the first message is the position; key ranges are
// [start, end); the changes of one index travel in one message, even past WATCH_MESSAGE_BYTES, and
// a long backlog is split only between indexes; the node's budget evicts the oldest change first
// across windows, an index whole, and moves the oldest position a watch may start from; a blocked
// watcher whose unsent changes go is cut at once; the sweep ends the watchers of a replica that is
// gone or does not lead and sends idle ones their progress; a second open of a shard (a snapshot)
// ends the old window; keys and values are copied; the stats. Last, the feed from the real state
// machine (`KvApplication` with `watches`): which applied commands make which events.
import assert from "node:assert/strict";
import {
  type Command,
  TxnCompare_Result,
  TxnCompare_Target,
  type TxnOp,
  TxnOp_Kind,
  type WatchEvent,
  WatchEvent_Kind,
} from "@tinykv/proto/tinykv/v1";
import { Command as CommandCodec } from "@tinykv/proto/tinykv/v1";
import type { Entry, LogIndex, Term } from "@tinykv/raft";
import { HASH_SPACE } from "@tinykv/shard";
import { KvApplication, type KvMachine } from "./kv_app.ts";
import { MemoryKvSpace } from "./kv_space.ts";
import {
  EVENT_OVERHEAD_BYTES,
  type EventWindow,
  type ShardWatcher,
  WATCH_MESSAGE_BYTES,
  type WatchChange,
  type WatchFailure,
  WatchHub,
  type WatchSink,
} from "./watch_hub.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A sink that records what it is sent; `accept` is what `send` answers. */
class Sink implements WatchSink {
  readonly messages: Array<{ events: WatchEvent[]; index: number }> = [];
  failure: WatchFailure | undefined;
  closes = 0;
  accept = true;
  /** What `gone` answers: the caller went away. */
  left = false;

  send(events: WatchEvent[], index: number): boolean {
    this.messages.push({ events, index });
    return this.accept;
  }

  close(failure: WatchFailure): void {
    this.closes++;
    this.failure = failure;
  }

  gone(): boolean {
    return this.left;
  }

  /** Every event received, as `index:kind:key[=value]`. */
  events(): string[] {
    return this.messages.flatMap((message) => message.events.map(describe));
  }

  /** The indexes of the events received, in order. */
  indexes(): number[] {
    return this.messages.flatMap((message) => message.events.map((event) => event.index));
  }
}

function describe(event: WatchEvent): string {
  return event.kind === WatchEvent_Kind.PUT
    ? `${event.index}:put:${dec(event.key)}=${dec(event.value)}`
    : `${event.index}:delete:${dec(event.key)}`;
}

function put(key: string, value = `v-${key}`): WatchChange {
  return { kind: "put", key: enc(key), value: enc(value) };
}

function del(key: string): WatchChange {
  return { kind: "delete", key: enc(key), value: new Uint8Array(0) };
}

/** Bytes a change counts against the budget. */
function bytesOf(change: WatchChange): number {
  return EVENT_OVERHEAD_BYTES + change.key.length + change.value.length;
}

const EVERY_KEY = { start: new Uint8Array(0), end: undefined };

/** Registers a watcher that must start; `at` is the replica's applied index and log end. */
function watch(
  hub: WatchHub,
  window: EventWindow,
  options: {
    afterIndex?: number;
    at?: number;
    lastIndex?: number;
    range?: { start: Uint8Array; end: Uint8Array | undefined };
    sink?: Sink;
  } = {},
): { watcher: ShardWatcher; sink: Sink; position: number } {
  const sink = options.sink ?? new Sink();
  const applied = options.at ?? window.applied;
  const result = hub.register(
    window,
    { ...(options.range ?? EVERY_KEY), afterIndex: options.afterIndex },
    { applied, lastIndex: options.lastIndex ?? applied },
    sink,
  );
  if (result.kind !== "ok") assert.fail(`register failed: ${result.kind}: ${result.message}`);
  return { watcher: result.watcher, sink, position: result.position };
}

/** Lets the hub's queued pumps run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** What the sweep sees of a replica that leads shard `window.shardId` at `applied`. */
function leading(window: EventWindow, applied = window.applied) {
  return (id: number) =>
    id === window.shardId
      ? { peerId: window.peerId, leading: true, applied, leaderAddress: "", leaderNode: "" }
      : undefined;
}

Deno.test("WatchHub.register() sends the position first; pump() then sends the changes after it in index order", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  hub.record(window, 1, [put("a", "1")]);
  hub.record(window, 2, [put("b", "2"), del("a")]);
  hub.record(window, 3, []);
  const { sink, position } = watch(hub, window, { afterIndex: 0 });
  assert.equal(position, 0);
  // The first message goes out as the watcher registers, before any change.
  assert.deepEqual([...sink.messages], [{ events: [], index: 0 }]);
  await settle();
  assert.equal(sink.messages.length, 2);
  assert.deepEqual(sink.events(), ["1:put:a=1", "2:put:b=2", "2:delete:a"]);
  // The message reaches the applied index (3 changed nothing).
  assert.equal(sink.messages[1].index, 3);
  for (const event of sink.messages[1].events) assert.equal(event.shard, 1);
  // Later changes follow, in order.
  hub.record(window, 4, [put("c", "4")]);
  hub.record(window, 5, [put("a", "5")]);
  await settle();
  assert.deepEqual(sink.events().slice(3), ["4:put:c=4", "5:put:a=5"]);
  assert.equal(sink.messages.at(-1)!.index, 5);
  assert.equal(sink.closes, 0);
});

Deno.test("WatchHub.register() from now gets only the changes recorded after it", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  hub.record(window, 1, [put("a")]);
  hub.record(window, 2, [put("b")]);
  const { sink, position } = watch(hub, window);
  assert.equal(position, 2);
  assert.deepEqual(sink.messages, [{ events: [], index: 2 }]);
  await settle();
  assert.equal(sink.messages.length, 1, "nothing recorded before the watch is sent");
  hub.record(window, 3, [put("c", "3")]);
  await settle();
  assert.deepEqual(sink.events(), ["3:put:c=3"]);
  assert.equal(sink.messages.at(-1)!.index, 3);
});

Deno.test("WatchHub.register() from each position gets exactly the changes after it, each once", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  for (let index = 1; index <= 10; index++) hub.record(window, index, [put(`k${index}`)]);
  const watchers = [];
  for (let position = 0; position <= 10; position++) {
    watchers.push({ from: position, ...watch(hub, window, { afterIndex: position }) });
  }
  await settle();
  for (let index = 11; index <= 12; index++) {
    hub.record(window, index, [put(`k${index}`)]);
    await settle();
  }
  // Sweeps and extra pumps send nothing again.
  hub.sweep(leading(window), "n1");
  hub.sweep(leading(window), "n1");
  for (const { watcher } of watchers) hub.pump(watcher);
  await settle();
  for (const { from: position, sink } of watchers) {
    const expected = Array.from({ length: 12 - position }, (_, i) => position + 1 + i);
    assert.deepEqual(sink.indexes(), expected, `from ${position}`);
    assert.deepEqual(sink.messages[0], { events: [], index: position });
    // Every message reaches at least its last event, and positions never go back.
    let reached = position;
    for (const message of sink.messages) {
      assert.ok(message.index >= reached, `from ${position}: ${message.index} < ${reached}`);
      for (const event of message.events) assert.ok(event.index <= message.index);
      reached = message.index;
    }
    assert.equal(reached, 12);
  }
});

Deno.test("ShardWatcher.covers() watches [start, end): start inclusive, end exclusive, no end to the last key", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  const keys = ["a", "b", "b\0", "ba", "c", "c\0", "d"];
  const range = (start: string, end: string | undefined) => ({
    start: enc(start),
    end: end === undefined ? undefined : enc(end),
  });
  const cases: Array<{ start: string; end: string | undefined; want: string[] }> = [
    { start: "b", end: "c", want: ["b", "b\0", "ba"] },
    { start: "b", end: undefined, want: ["b", "b\0", "ba", "c", "c\0", "d"] },
    { start: "", end: undefined, want: keys },
    { start: "b", end: "b\0", want: ["b"] },
    { start: "c\0", end: "d", want: ["c\0"] },
    { start: "e", end: undefined, want: [] },
  ];
  const sinks = cases.map((c) => watch(hub, window, { range: range(c.start, c.end) }).sink);
  hub.record(window, 1, keys.map((key) => put(key)));
  await settle();
  cases.forEach((c, i) => {
    const got = sinks[i].messages.flatMap((m) => m.events.map((e) => dec(e.key)));
    assert.deepEqual(got, c.want, `[${c.start}, ${c.end})`);
  });
  // A watcher whose keys did not change got no message for the index, only its position so far.
  assert.deepEqual(sinks[5].messages, [{ events: [], index: 0 }]);
});

Deno.test("WatchHub.pump() sends an index's changes in one message even past WATCH_MESSAGE_BYTES, and never adds one to a message it would take past it", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  const big = "x".repeat(600 * 1024);
  // Index 1: a Txn of 3 large changes (1.8 MiB); 2: a small change; 3: a Txn of 2 large ones.
  hub.record(window, 1, [put("t1", big), put("t2", big), put("t3", big)]);
  hub.record(window, 2, [put("s", "small")]);
  hub.record(window, 3, [put("u1", big), del("s"), put("u2", big)]);
  hub.record(window, 4, [put("w", "last")]);
  const { sink } = watch(hub, window, { afterIndex: 0 });
  await settle();
  const messages = sink.messages.slice(1);
  // A large index travels alone: a message that holds something ends before it (so a message is
  // at most the larger of WATCH_MESSAGE_BYTES and one index, whatever a client's message limit).
  assert.deepEqual(
    messages.map((m) => m.events.map((e) => `${e.index}:${dec(e.key)}`)),
    [["1:t1", "1:t2", "1:t3"], ["2:s"], ["3:u1", "3:s", "3:u2"], ["4:w"]],
  );
  assert.deepEqual(messages.map((m) => m.index), [1, 2, 3, 4]);
});

Deno.test("WatchHub.pump() splits a long backlog into messages of about WATCH_MESSAGE_BYTES at index boundaries", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  const value = "v".repeat(1000);
  const count = 3000;
  for (let index = 1; index <= count; index++) {
    // Every 7th index is a Txn of two changes.
    const changes = [put(`k${index}`, value)];
    if (index % 7 === 0) changes.push(put(`j${index}`, value));
    hub.record(window, index, changes);
  }
  // One uncovered change at the end: the last message still reaches it.
  hub.record(window, count + 1, [put("zz-other")]);
  const { sink } = watch(hub, window, {
    afterIndex: 0,
    range: { start: enc("j"), end: enc("l") },
  });
  await settle();
  const messages = sink.messages.slice(1);
  assert.ok(messages.length >= 3, `${messages.length} messages`);
  const seen: number[] = [];
  let previous = 0;
  for (const [i, message] of messages.entries()) {
    const indexes = message.events.map((e) => e.index);
    assert.ok(indexes[0] > previous, "no index is in two messages");
    previous = indexes.at(-1)!;
    seen.push(...indexes);
    const bytes = message.events.reduce(
      (sum, e) => sum + EVENT_OVERHEAD_BYTES + e.key.length + e.value.length,
      0,
    );
    if (i < messages.length - 1) {
      assert.equal(message.index, previous, "a split message reaches its last index");
      // Full: at most the size, and the next index (at most two changes) would not have fit.
      assert.ok(bytes <= WATCH_MESSAGE_BYTES && bytes > WATCH_MESSAGE_BYTES - 2 * 1200, `${bytes}`);
    } else {
      assert.equal(message.index, count + 1);
    }
  }
  const expected = [];
  for (let index = 1; index <= count; index++) {
    if (index % 7 === 0) expected.push(index);
    expected.push(index);
  }
  assert.deepEqual(seen, expected);
});

Deno.test("WatchHub.record() keeps the node within its budget, evicting the oldest change first across windows", () => {
  const change = (key: string) => put(key, "v".repeat(200 - EVENT_OVERHEAD_BYTES - key.length));
  assert.equal(bytesOf(change("a1")), 200);
  const hub = new WatchHub({ bytesMax: 1000 });
  const a = hub.attach(1, 11);
  const b = hub.attach(2, 21);
  // a1 b1 a2 b2 a3: exactly the budget.
  hub.record(a, 1, [change("a1")]);
  hub.record(b, 1, [change("b1")]);
  hub.record(a, 2, [change("a2")]);
  hub.record(b, 2, [change("b2")]);
  hub.record(a, 3, [change("a3")]);
  assert.deepEqual(hub.stats, {
    bytes: 1000,
    events: 5,
    watchers: 0,
    recorded: 5,
    evicted: 0,
    watchersCut: 0,
  });
  assert.equal(a.oldestPosition(), 0);
  assert.equal(b.oldestPosition(), 0);
  // One more: a1, the node's oldest, goes; b keeps all of its changes.
  hub.record(b, 3, [change("b3")]);
  assert.equal(hub.stats.bytes, 1000);
  assert.equal(hub.stats.evicted, 1);
  assert.equal(a.oldestPosition(), 1);
  assert.equal(b.oldestPosition(), 0);
  // Then b1.
  hub.record(a, 4, [change("a4")]);
  assert.equal(a.oldestPosition(), 1);
  assert.equal(b.oldestPosition(), 1);
  // Many more: never past the budget after a record.
  for (let index = 5; index < 40; index++) {
    hub.record(index % 2 === 0 ? a : b, index, [change(`x${index}`)]);
    assert.ok(hub.stats.bytes <= 1000, `${hub.stats.bytes} bytes after index ${index}`);
    assert.equal(hub.stats.events, 5);
  }
  assert.equal(hub.stats.recorded, 42);
  assert.equal(hub.stats.evicted, 37);
  // The windows hold the last 5 changes: indexes 35..39 (a: 36, 38; b: 35, 37, 39).
  assert.equal(a.oldestPosition(), 34);
  assert.equal(b.oldestPosition(), 33);
});

Deno.test("WatchHub.record() evicts an index whole, and register() at the oldest position works while one before is outOfRange", async () => {
  const hub = new WatchHub({ bytesMax: 1000 });
  const window = hub.attach(5, 51);
  const change = (key: string) => put(key, "v".repeat(200 - EVENT_OVERHEAD_BYTES - key.length));
  hub.record(window, 10, [change("a"), change("b"), change("c")]);
  hub.record(window, 11, [change("d")]);
  assert.equal(window.oldestPosition(), 9);
  // 1200 bytes: the first change of index 10 goes, and with it the rest of index 10.
  hub.record(window, 12, [change("e"), change("f")]);
  assert.equal(hub.stats.bytes, 600);
  assert.equal(hub.stats.events, 3);
  assert.equal(hub.stats.evicted, 3);
  assert.equal(window.start, 11);
  assert.equal(window.oldestPosition(), 10);
  const before = hub.register(window, { ...EVERY_KEY, afterIndex: 9 }, {
    applied: 12,
    lastIndex: 12,
  }, new Sink());
  assert.equal(before.kind, "outOfRange");
  assert.match(
    before.kind === "outOfRange" ? before.message : "",
    /Watch position 9 of shard 5 is no longer held: the oldest position it holds is 10/,
  );
  const { sink } = watch(hub, window, { afterIndex: 10, at: 12 });
  await settle();
  assert.deepEqual(sink.events().map((e) => e.split("=")[0]), ["11:put:d", "12:put:e", "12:put:f"]);
  assert.equal(hub.stats.watchers, 1);
});

Deno.test("WatchHub.register() of a replica that applied nothing since it opened starts at its applied index", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  // The replica opened at applied index 40; nothing applied since.
  const refused = hub.register(window, { ...EVERY_KEY, afterIndex: 39 }, {
    applied: 40,
    lastIndex: 42,
  }, new Sink());
  assert.equal(refused.kind, "outOfRange");
  assert.match(
    refused.kind === "outOfRange" ? refused.message : "",
    /oldest position it holds is 40/,
  );
  const { sink, position } = watch(hub, window, { afterIndex: 40, at: 40, lastIndex: 42 });
  assert.equal(position, 40);
  hub.record(window, 41, [put("a")]);
  await settle();
  assert.deepEqual(sink.indexes(), [41]);
});

Deno.test("WatchHub.register() past the log end is invalidArgument; at the log end, ahead of applied, it waits", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  for (let index = 1; index <= 5; index++) hub.record(window, index, [put(`k${index}`)]);
  const past = hub.register(window, { ...EVERY_KEY, afterIndex: 8 }, {
    applied: 5,
    lastIndex: 7,
  }, new Sink());
  assert.equal(past.kind, "invalidArgument");
  assert.match(
    past.kind === "invalidArgument" ? past.message : "",
    /Watch position 8 of shard 1 is past the end of its log \(7\)/,
  );
  assert.equal(hub.stats.watchers, 0);
  // A new leader behind the position its predecessor reported: it sends what comes after it.
  const { sink, position } = watch(hub, window, { afterIndex: 7, at: 5, lastIndex: 7 });
  assert.equal(position, 7);
  hub.record(window, 6, [put("k6")]);
  hub.record(window, 7, [put("k7")]);
  await settle();
  hub.sweep(leading(window), "n1");
  assert.deepEqual(sink.messages, [{ events: [], index: 7 }]);
  hub.record(window, 8, [put("k8")]);
  await settle();
  assert.deepEqual(sink.indexes(), [8]);
});

Deno.test("WatchHub cuts a blocked watcher at once with resourceExhausted when its unsent changes are evicted", async () => {
  const change = (key: string) => put(key, "v".repeat(200 - EVENT_OVERHEAD_BYTES - key.length));
  const hub = new WatchHub({ bytesMax: 1000 });
  const window = hub.attach(1, 11);
  const slowSink = new Sink();
  slowSink.accept = false;
  const slow = watch(hub, window, { sink: slowSink });
  assert.ok(slow.watcher.blocked, "the first message filled the transport");
  const fast = watch(hub, window);
  for (let index = 1; index <= 5; index++) hub.record(window, index, [change(`k${index}`)]);
  await settle();
  assert.deepEqual(slowSink.messages.length, 1);
  assert.equal(slowSink.closes, 0);
  // Index 1 goes: the slow watcher was sent nothing after 0, and is cut at once, while blocked.
  hub.record(window, 6, [change("k6")]);
  assert.equal(slowSink.closes, 1);
  assert.equal(slowSink.failure?.kind, "resourceExhausted");
  assert.match(
    slowSink.failure?.message ?? "",
    /Shard 1: the watcher fell behind: it was sent every change up to index 0, and this node now holds changes from index 2 on/,
  );
  assert.ok(slow.watcher.closed);
  assert.equal(hub.stats.watchersCut, 1);
  assert.equal(hub.stats.watchers, 1);
  // It is not sent anything more, even when its transport drains.
  slowSink.accept = true;
  slow.watcher.resume();
  await settle();
  assert.equal(slowSink.messages.length, 1);
  assert.equal(slowSink.closes, 1);
  // The watcher that kept up has every change.
  await settle();
  assert.deepEqual(fast.sink.indexes(), [1, 2, 3, 4, 5, 6]);
  assert.equal(fast.sink.closes, 0);
});

Deno.test("ShardWatcher.resume() in time gets every change once, in order", async () => {
  const change = (key: string) => put(key, "v".repeat(200 - EVENT_OVERHEAD_BYTES - key.length));
  const hub = new WatchHub({ bytesMax: 1000 });
  const window = hub.attach(1, 11);
  const sink = new Sink();
  const { watcher } = watch(hub, window, { sink });
  hub.record(window, 1, [change("k1")]);
  sink.accept = false;
  await settle();
  // The message with index 1 went out, and the transport is full.
  assert.deepEqual(sink.indexes(), [1]);
  assert.ok(watcher.blocked);
  for (let index = 2; index <= 4; index++) hub.record(window, index, [change(`k${index}`)]);
  await settle();
  assert.deepEqual(sink.indexes(), [1], "nothing is sent while blocked");
  sink.accept = true;
  watcher.resume();
  assert.deepEqual(sink.indexes(), [1, 2, 3, 4]);
  assert.ok(!watcher.blocked);
  // Indexes 1..3 are evicted after it was sent them: it stays.
  for (let index = 5; index <= 8; index++) hub.record(window, index, [change(`k${index}`)]);
  assert.equal(window.oldestPosition(), 3);
  await settle();
  assert.deepEqual(sink.indexes(), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(sink.closes, 0);
  // resume() when not blocked sends nothing twice.
  watcher.resume();
  hub.pump(watcher);
  assert.deepEqual(sink.indexes(), [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("WatchHub.sweep() detaches the window of a replica that is gone or replaced by another peer", () => {
  const hub = new WatchHub();
  const gone = hub.attach(1, 11);
  const moved = hub.attach(2, 21);
  const kept = hub.attach(3, 31);
  hub.record(gone, 1, [put("a")]);
  hub.record(moved, 1, [put("b")]);
  hub.record(kept, 1, [put("c")]);
  const sinks = [gone, moved, kept].map((window) => watch(hub, window).sink);
  hub.sweep((id) => {
    if (id === 2) {
      return { peerId: 22, leading: true, applied: 1, leaderAddress: "", leaderNode: "" };
    }
    if (id === 3) {
      return { peerId: 31, leading: true, applied: 1, leaderAddress: "", leaderNode: "" };
    }
    return undefined;
  }, "n1");
  for (const sink of sinks.slice(0, 2)) {
    assert.equal(sink.failure?.kind, "unavailable");
    assert.equal(sink.closes, 1);
  }
  assert.match(sinks[0].failure?.message ?? "", /Shard 1: the replica on node "n1" is gone/);
  assert.match(sinks[1].failure?.message ?? "", /Shard 2: the replica on node "n1" is gone/);
  assert.equal(sinks[2].closes, 0);
  assert.equal(hub.windowOf(1), undefined);
  assert.equal(hub.windowOf(2), undefined);
  assert.equal(hub.windowOf(3), kept);
  assert.ok(gone.closed && moved.closed && !kept.closed);
  assert.equal(hub.stats.bytes, bytesOf(put("c")));
  assert.equal(hub.stats.events, 1);
  assert.equal(hub.stats.watchers, 1);
  assert.equal(hub.stats.watchersCut, 2);
  // A closed window records nothing.
  hub.record(gone, 2, [put("late")]);
  assert.equal(hub.stats.recorded, 3);
});

Deno.test("WatchHub.sweep() cuts the watchers of a replica that does not lead, naming the leader's address", () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  hub.record(window, 1, [put("a")]);
  const one = watch(hub, window).sink;
  const two = watch(hub, window).sink;
  const other = hub.attach(2, 21);
  const unknownLeader = watch(hub, other).sink;
  hub.sweep((id) =>
    id === 1
      ? {
        peerId: 11,
        leading: false,
        applied: 1,
        leaderAddress: "127.0.0.1:7002",
        leaderNode: "n2",
      }
      : { peerId: 21, leading: false, applied: 0, leaderAddress: "", leaderNode: "" }, "n1");
  for (const sink of [one, two]) {
    assert.deepEqual(sink.failure, {
      kind: "unavailable",
      message: 'Shard 1: node "n1" is not the leader (leader is "n2")',
      leaderAddress: "127.0.0.1:7002",
    });
  }
  assert.deepEqual(unknownLeader.failure, {
    kind: "unavailable",
    message: 'Shard 2: node "n1" is not the leader (no leader known)',
    leaderAddress: "",
  });
  // The window stays: the replica still applies, and may lead again.
  assert.equal(hub.windowOf(1), window);
  assert.ok(!window.closed);
  assert.equal(hub.stats.watchers, 0);
  assert.equal(hub.stats.watchersCut, 3);
  assert.equal(hub.stats.events, 1);
});

Deno.test("WatchHub.sweep() tells an idle watcher how far the shard applied, once, and not a blocked one", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  hub.record(window, 5, [put("w", "5")]);
  const idle = watch(hub, window, { range: { start: enc("w"), end: enc("w\0") } });
  const blockedSink = new Sink();
  blockedSink.accept = false;
  const blocked = watch(hub, window, { sink: blockedSink });
  // Another key changes: the idle watcher looks at it, and is sent nothing yet.
  hub.record(window, 6, [put("x")]);
  await settle();
  assert.deepEqual(idle.sink.messages, [{ events: [], index: 5 }]);
  hub.sweep(leading(window), "n1");
  assert.deepEqual(idle.sink.messages.at(-1), { events: [], index: 6 });
  assert.equal(idle.sink.messages.length, 2);
  hub.sweep(leading(window), "n1");
  assert.equal(idle.sink.messages.length, 2, "no progress when the shard did not move");
  // Entries that change no key (a new leader's empty entry, a conf change) move the position too.
  hub.sweep(leading(window, 8), "n1");
  assert.deepEqual(idle.sink.messages.at(-1), { events: [], index: 8 });
  assert.equal(window.applied, 8);
  assert.equal(blockedSink.messages.length, 1, "a blocked watcher is sent nothing");
  assert.ok(blocked.watcher.blocked);
  // Its change arrives as a message with events, not as progress.
  hub.record(window, 9, [put("w", "9")]);
  await settle();
  assert.deepEqual(idle.sink.messages.at(-1)!.events.map(describe), ["9:put:w=9"]);
  assert.equal(idle.sink.messages.at(-1)!.index, 9);
});

Deno.test("WatchHub.sweep() stops the watchers whose caller is gone, telling them nothing, on a leader or not", () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  hub.record(window, 5, [put("w", "5")]);
  const stays = watch(hub, window, {});
  const leaves = watch(hub, window, {});
  leaves.sink.left = true;
  hub.record(window, 6, [put("x")]);
  hub.sweep(leading(window), "n1");
  assert.equal(hub.stats.watchers, 1);
  assert.ok(leaves.watcher.closed);
  assert.equal(leaves.sink.closes, 0, "nobody to tell");
  assert.equal(stays.sink.messages.at(-1)?.index, 6, "the other one goes on");
  assert.equal(hub.stats.watchersCut, 0, "not cut: gone");
  // On a replica that no longer leads, the caller-less watcher is not cut either.
  const gone = watch(hub, window, {});
  gone.sink.left = true;
  hub.sweep(() => ({ ...leading(window)(1)!, leading: false }), "n1");
  assert.equal(gone.sink.closes, 0);
  assert.equal(stays.sink.closes, 1);
  assert.equal(hub.hasWatchers(), false);
});

Deno.test("WatchHub.attach() again (a snapshot replaced the state) cuts the old watchers and starts an empty window", async () => {
  const hub = new WatchHub();
  const old = hub.attach(1, 11);
  hub.record(old, 1, [put("a")]);
  hub.record(old, 2, [put("b")]);
  const { sink } = watch(hub, old, { afterIndex: 0 });
  await settle();
  assert.equal(sink.indexes().length, 2);
  const fresh = hub.attach(1, 11);
  assert.equal(sink.failure?.kind, "unavailable");
  assert.match(
    sink.failure?.message ?? "",
    /Shard 1: this replica's state was replaced by a snapshot/,
  );
  assert.ok(old.closed);
  assert.notEqual(fresh, old);
  assert.equal(hub.windowOf(1), fresh);
  assert.equal(fresh.start, undefined);
  assert.equal(hub.stats.bytes, 0);
  assert.equal(hub.stats.events, 0);
  assert.equal(hub.stats.watchersCut, 1);
  // The old window takes nothing more; restart() of it changes nothing.
  hub.record(old, 3, [put("c")]);
  assert.equal(hub.stats.recorded, 2);
  assert.equal(hub.restart(old), old);
  assert.equal(hub.windowOf(1), fresh);
  // The new window starts after the snapshot's index: a position before it is out of range.
  hub.record(fresh, 11, [put("d")]);
  const refused = hub.register(fresh, { ...EVERY_KEY, afterIndex: 2 }, {
    applied: 11,
    lastIndex: 11,
  }, new Sink());
  assert.equal(refused.kind, "outOfRange");
  assert.match(
    refused.kind === "outOfRange" ? refused.message : "",
    /oldest position it holds is 10/,
  );
  const again = watch(hub, fresh, { afterIndex: 10 });
  await settle();
  assert.deepEqual(again.sink.indexes(), [11]);
  // Another peer of the shard here: the window of the one before goes.
  const other = hub.attach(1, 12);
  assert.match(again.sink.failure?.message ?? "", /Shard 1: this replica was replaced/);
  assert.equal(other.peerId, 12);
});

Deno.test("WatchHub.restart() starts a new window for a state restored in place", () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  hub.record(window, 1, [put("a")]);
  const { sink } = watch(hub, window);
  const restarted = hub.restart(window);
  assert.notEqual(restarted, window);
  assert.equal(hub.windowOf(1), restarted);
  assert.equal(sink.failure?.kind, "unavailable");
  assert.equal(hub.stats.events, 0);
});

Deno.test("WatchHub.record() copies keys and values: later writes to the entry's buffer change nothing", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  const buffer = enc("keyvalue");
  hub.record(window, 1, [{ kind: "put", key: buffer.subarray(0, 3), value: buffer.subarray(3) }]);
  buffer.fill(0x21);
  const { sink } = watch(hub, window, { afterIndex: 0 });
  await settle();
  assert.deepEqual(sink.events(), ["1:put:key=value"]);
  // The held copies are their own buffers, not views of the entry's.
  const event = sink.messages[1].events[0];
  assert.notEqual(event.key.buffer, buffer.buffer);
  assert.notEqual(event.value.buffer, buffer.buffer);
});

Deno.test("ShardWatcher.cancel() stops the watcher: nothing more is sent and it is not counted", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  const { watcher, sink } = watch(hub, window);
  assert.equal(hub.stats.watchers, 1);
  assert.ok(hub.hasWatchers());
  watcher.cancel();
  assert.equal(hub.stats.watchers, 0);
  assert.ok(!hub.hasWatchers());
  hub.record(window, 1, [put("a")]);
  await settle();
  hub.sweep(leading(window), "n1");
  assert.deepEqual(sink.messages, [{ events: [], index: 0 }]);
  // A cancelled watcher is not failed later either.
  watcher.fail({ kind: "unavailable", message: "late" });
  assert.equal(sink.closes, 0);
});

Deno.test("WatchHub.stats counts held bytes and changes, watchers, recorded, evicted and cuts", () => {
  const hub = new WatchHub({ bytesMax: 500 });
  const a = hub.attach(1, 11);
  const b = hub.attach(2, 21);
  hub.record(a, 1, [put("a", "1"), del("b")]);
  hub.record(b, 1, [put("c", "22")]);
  watch(hub, a);
  watch(hub, b);
  assert.deepEqual(hub.stats, {
    bytes: bytesOf(put("a", "1")) + bytesOf(del("b")) + bytesOf(put("c", "22")),
    events: 3,
    watchers: 2,
    recorded: 3,
    evicted: 0,
    watchersCut: 0,
  });
  // Past the budget: index 1 of a goes whole (2 changes).
  hub.record(b, 2, [put("d", "x".repeat(200))]);
  assert.deepEqual(hub.stats, {
    bytes: bytesOf(put("c", "22")) + bytesOf(put("d", "x".repeat(200))),
    events: 2,
    watchers: 2,
    recorded: 4,
    evicted: 2,
    watchersCut: 0,
  });
  // The replica of b is replaced: its changes go, its watcher is cut.
  hub.attach(2, 21);
  assert.deepEqual(hub.stats, {
    bytes: 0,
    events: 0,
    watchers: 1,
    recorded: 4,
    evicted: 4,
    watchersCut: 1,
  });
});

Deno.test("WatchHub.stats stays exact when eviction meets the changes of a closed window", () => {
  const change = (key: string) => put(key, "v".repeat(200 - EVENT_OVERHEAD_BYTES - key.length));
  for (const closedFirst of [1, 3]) {
    const hub = new WatchHub({ bytesMax: 1000 });
    const a = hub.attach(1, 11);
    const b = hub.attach(2, 21);
    for (let i = 1; i <= closedFirst; i++) hub.record(a, i, [change(`a${i}`)]);
    for (let i = 1; i <= 5 - closedFirst; i++) hub.record(b, i, [change(`b${i}`)]);
    hub.detach(a, "gone");
    assert.equal(hub.stats.bytes, (5 - closedFirst) * 200, `${closedFirst} closed`);
    assert.equal(hub.stats.events, 5 - closedFirst);
    // b fills the budget and more: the closed window's changes are skipped, b's oldest go.
    for (let i = 6 - closedFirst; i <= 8; i++) {
      hub.record(b, i, [change(`b${i}`)]);
      assert.ok(hub.stats.bytes <= 1000);
    }
    assert.equal(hub.stats.bytes, 1000);
    assert.equal(hub.stats.events, 5);
    assert.equal(hub.stats.recorded, closedFirst + 8);
    assert.equal(hub.stats.evicted, closedFirst + 3);
    assert.equal(b.oldestPosition(), 3);
  }
});

// --- Through the real state machine --------------------------------------------------------

const FULL = { lo: 0, hi: HASH_SPACE };
const NO_SESSION = { clientId: "", seq: 0, ackSeq: 0 };
const STAMPS = { stampMs: 0, valueBytesMax: 0, sessionTtlMs: 0 };

function spaces() {
  return { data: new MemoryKvSpace(), sessions: new MemoryKvSpace(), meta: new MemoryKvSpace() };
}

function apply(machine: KvMachine, index: number, command: Command | Uint8Array) {
  const data = command instanceof Uint8Array ? command : CommandCodec.encode(command);
  const entry: Entry = {
    index: index as LogIndex,
    term: 1 as Term,
    type: "normal",
    checksum: 0,
    data,
  };
  return machine.apply(entry);
}

const putCommand = (key: string, value: string): Command => ({
  ...STAMPS,
  put: { key: enc(key), value: enc(value), ...NO_SESSION },
});
const deleteCommand = (key: string): Command => ({
  ...STAMPS,
  delete: { key: enc(key), ...NO_SESSION },
});
const op = (kind: TxnOp["kind"], key: string, value = ""): TxnOp => ({
  kind,
  key: enc(key),
  value: enc(value),
  prev: false,
});

Deno.test("KvMachine.apply() records each put and each delete of a key that existed, with the entry's index", async () => {
  const hub = new WatchHub();
  const app = new KvApplication({ watches: hub });
  const machine = app.open(spaces(), FULL, { shardId: 3, peerId: 7, applied: 0 });
  const window = hub.windowOf(3)!;
  assert.equal(window.peerId, 7);
  const outcomes = [
    apply(machine, 1, putCommand("k1", "v1")),
    apply(machine, 2, deleteCommand("absent")),
    apply(machine, 3, deleteCommand("k1")),
    apply(machine, 4, putCommand("k3", "v3")),
    // A Txn: a put, a delete of a key that exists and one of a key that does not.
    apply(machine, 5, {
      ...STAMPS,
      txn: {
        compares: [],
        success: [
          op(TxnOp_Kind.PUT, "k2", "v2"),
          op(TxnOp_Kind.DELETE, "k3"),
          op(TxnOp_Kind.DELETE, "absent"),
          op(TxnOp_Kind.GET, "k2"),
        ],
        failure: [],
        ...NO_SESSION,
      },
    }),
    // A compare-and-swap that does not match changes nothing.
    apply(machine, 6, {
      ...STAMPS,
      compareAndSwap: {
        key: enc("k2"),
        expected: enc("nope"),
        expectAbsent: false,
        value: enc("x"),
        delete: false,
        ...NO_SESSION,
      },
    }),
    apply(machine, 7, putCommand("g1", "abcd")),
    apply(machine, 8, putCommand("g2", "abcd")),
    apply(machine, 9, putCommand("g3", "abcd")),
    // A Txn refused as a whole (its answer would pass 2 × value_bytes_max): nothing changes.
    apply(machine, 10, {
      ...STAMPS,
      valueBytesMax: 4,
      txn: {
        compares: [],
        success: [
          op(TxnOp_Kind.PUT, "refused", "r"),
          op(TxnOp_Kind.GET, "g1"),
          op(TxnOp_Kind.GET, "g2"),
          op(TxnOp_Kind.GET, "g3"),
        ],
        failure: [],
        ...NO_SESSION,
      },
    }),
    // A compare-and-swap that matches, and a Txn that takes its failure branch.
    apply(machine, 11, {
      ...STAMPS,
      compareAndSwap: {
        key: enc("k2"),
        expected: enc("v2"),
        expectAbsent: false,
        value: enc("v2b"),
        delete: false,
        ...NO_SESSION,
      },
    }),
    apply(machine, 12, {
      ...STAMPS,
      txn: {
        compares: [{
          key: enc("k2"),
          result: TxnCompare_Result.EQUAL,
          target: TxnCompare_Target.VALUE,
          value: enc("v2"),
        }],
        success: [op(TxnOp_Kind.PUT, "success", "s")],
        failure: [op(TxnOp_Kind.PUT, "failure", "f"), op(TxnOp_Kind.DELETE, "g1")],
        ...NO_SESSION,
      },
    }),
    // An entry that does not decode changes nothing, but the window reaches its index.
    apply(machine, 13, new Uint8Array([0xff, 0xff, 0xff])),
  ];
  assert.equal(outcomes[9].kind, "invalid", "the Txn of index 10 is refused");
  assert.match(outcomes[9].kind === "invalid" ? outcomes[9].message : "", /nothing changed/);
  assert.equal(outcomes[12].kind, "invalid");
  assert.equal(window.start, 1);
  assert.equal(window.applied, 13);
  const { sink } = watch(hub, window, { afterIndex: 0, at: 13 });
  await settle();
  assert.deepEqual(sink.events(), [
    "1:put:k1=v1",
    "3:delete:k1",
    "4:put:k3=v3",
    "5:put:k2=v2",
    "5:delete:k3",
    "7:put:g1=abcd",
    "8:put:g2=abcd",
    "9:put:g3=abcd",
    "11:put:k2=v2b",
    "12:put:failure=f",
    "12:delete:g1",
  ]);
  for (const event of sink.messages[1].events) {
    assert.equal(event.shard, 3);
    if (event.kind === WatchEvent_Kind.DELETE) assert.equal(event.value.length, 0);
  }
  assert.equal(sink.messages[1].index, 13);
});

Deno.test("KvMachine.restore() starts its window again: the old watchers end, later changes go to the new one", async () => {
  const hub = new WatchHub();
  const app = new KvApplication({ watches: hub });
  const machine = app.open(spaces(), FULL, { shardId: 3, peerId: 7, applied: 0 });
  apply(machine, 1, putCommand("a", "1"));
  const { sink } = watch(hub, hub.windowOf(3)!);
  // The state of another replica, restored in place (an inline snapshot at index 20).
  const source = new KvApplication().open(spaces(), FULL);
  apply(source, 20, putCommand("b", "2"));
  assert.deepEqual(machine.restore(source.kv.serialize()), { kind: "ok" });
  assert.equal(sink.failure?.kind, "unavailable");
  const window = hub.windowOf(3)!;
  assert.equal(window.start, undefined);
  apply(machine, 21, putCommand("c", "3"));
  const after = watch(hub, window, { afterIndex: 20, at: 21 });
  await settle();
  assert.deepEqual(after.sink.events(), ["21:put:c=3"]);
});

Deno.test("a window attached at an applied index holds every position from it on (a restart that wins an election)", () => {
  const hub = new WatchHub();
  // The replica restarted at applied index 5; its next entry, a new leader's empty one (6), never
  // reaches the state machine.
  const window = hub.attach(1, 11, 5);
  const messages: Array<{ events: WatchEvent[]; index: number }> = [];
  const sink = {
    send: (events: WatchEvent[], index: number) => (messages.push({ events, index }), true),
    close: () => assert.fail("not closed"),
  };
  const resumed = hub.register(window, { start: new Uint8Array(), end: undefined, afterIndex: 5 }, {
    applied: 6,
    lastIndex: 6,
  }, sink);
  assert.equal(resumed.kind, "ok", JSON.stringify(resumed));
  const before = hub.register(window, { start: new Uint8Array(), end: undefined, afterIndex: 4 }, {
    applied: 6,
    lastIndex: 6,
  }, sink);
  assert.equal(before.kind, "outOfRange");
  assert.match((before as { message: string }).message, /oldest position it holds is 5/);
});

Deno.test("a watcher that keeps up is sent what one turn applies even when the turn applies more than the window holds", async () => {
  const MIB = 1024 * 1024;
  // The smallest window the config admits for 1 MiB values (watchWindowBytesMin in libs/config).
  const hub = new WatchHub({ bytesMax: 2 * MIB + 64 * 1024 });
  const window = hub.attach(1, 11, 10);
  const keeping = watch(hub, window, { afterIndex: 10 });
  const stalled = watch(hub, window, { afterIndex: 10 });
  stalled.sink.accept = false;
  stalled.watcher.send([], 10);
  await settle();
  // One driver turn: three 1 MiB puts applied back to back, no await between them.
  const big = "x".repeat(MIB - 200);
  for (const index of [11, 12, 13]) hub.record(window, index, [put(`k${index}`, big)]);
  await settle();
  assert.equal(keeping.sink.failure, undefined, "the watcher that keeps up is not cut");
  assert.deepEqual(
    keeping.sink.events().map((event) => event.split("=")[0]),
    ["11:put:k11", "12:put:k12", "13:put:k13"],
  );
  assert.ok(hub.stats.bytes <= 2 * MIB + 64 * 1024, `${hub.stats.bytes} bytes held`);
  // One whose transport takes nothing is cut once its unsent changes go.
  assert.equal(stalled.sink.failure?.kind, "resourceExhausted");
});

Deno.test("a full window still sends a turn's changes in one message to a watcher that keeps up", async () => {
  const hub = new WatchHub({ bytesMax: 200 * 1024 });
  const window = hub.attach(1, 11, 0);
  const value = "v".repeat(1000);
  // Fill the window: from here on every change recorded evicts an old one.
  for (let index = 1; index <= 300; index++) hub.record(window, index, [put(`old${index}`, value)]);
  assert.ok(hub.stats.bytes > 190 * 1024, `${hub.stats.bytes} bytes held`);
  const { sink } = watch(hub, window, { afterIndex: 300 });
  await settle();
  const before = sink.messages.length;
  // One driver turn: 100 entries applied back to back.
  for (let index = 301; index <= 400; index++) {
    hub.record(window, index, [put(`new${index}`, value)]);
  }
  await settle();
  const sent = sink.messages.slice(before);
  assert.equal(sent.length, 1, `${sent.length} messages for one turn`);
  assert.equal(sent[0].events.length, 100);
  assert.equal(sink.failure, undefined);
});
