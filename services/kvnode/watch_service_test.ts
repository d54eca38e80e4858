// Checks the `KvNode.Watch` handler (watch_service.ts) over a real WatchHub, a fake driver whose
// `inspect` runs its reader in a later task and resolves right after it (as the driver's turn
// does), and a fake server call that records what is written and the status it ends with: the
// first message is the starting position, before any event (also when resuming from an index
// below the applied one); a replica that does not lead ends the call UNAVAILABLE naming the
// leader's address in the trailer; a shard with no replica here, a conf epoch newer than the
// replica's and a bad request end it at once; a call that goes away stops its watcher, also one
// canceled before the handler ran, one gone while it registered with no event saying so, and (by
// the sweep) one whose HTTP/2 stream closed underneath it.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type * as grpc from "@grpc/grpc-js";
import type { ShardWatchRequest, ShardWatchResponse } from "@tinykv/proto/tinykv/v1";
import { KEY_BYTES_MAX } from "@tinykv/shard";
import type { KvDriver } from "./kv_app.ts";
import { WatchHub } from "./watch_hub.ts";
import {
  callGone,
  LEADER_ADDRESS_TRAILER,
  WATCH_SWEEP_MS,
  watchHandler,
  WatchSweeper,
} from "./watch_service.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A replica as the handler reads it. */
interface FakeReplica {
  shardId: number;
  peerId: number;
  confEpoch: number;
  leading: boolean;
  leaderPeer: { peerId: number; nodeId: string; address: string } | undefined;
  applied: number;
  lastIndex: number;
}

function fakeDriver(replicas: FakeReplica[]): KvDriver {
  const view = () =>
    replicas.map((r) => ({
      shardId: r.shardId,
      peerId: r.peerId,
      confEpoch: r.confEpoch,
      isLeader: () => r.leading,
      leader: () => r.leaderPeer,
      log: { appliedState: { applied: r.applied }, lastIndex: () => r.lastIndex },
    }));
  const driver = {
    nodeId: "n1",
    inspect<T>(read: (replicas: unknown[]) => T): Promise<T> {
      // As Driver.#task: the reader runs inside a later turn, and the promise resolves right
      // after it returns.
      const { promise, resolve } = Promise.withResolvers<T>();
      setTimeout(() => resolve(read(view())), 0);
      return promise;
    },
  };
  return driver as unknown as KvDriver;
}

/** A server call that records messages and the status error it ends with. */
class FakeCall extends EventEmitter {
  readonly request: ShardWatchRequest;
  readonly written: ShardWatchResponse[] = [];
  readonly errors: grpc.ServiceError[] = [];
  cancelled = false;
  destroyed = false;
  accept = true;

  constructor(request: Partial<ShardWatchRequest>) {
    super();
    this.request = {
      shardId: 1,
      confEpoch: 0,
      start: new Uint8Array(0),
      end: new Uint8Array(0),
      resume: false,
      afterIndex: 0,
      traceId: "",
      ...request,
    };
    this.on("error", (error: grpc.ServiceError) => this.errors.push(error));
  }

  write(response: ShardWatchResponse): boolean {
    this.written.push(response);
    return this.accept;
  }
}

function serve(
  hub: WatchHub,
  replicas: FakeReplica[],
  request: Partial<ShardWatchRequest>,
): { call: FakeCall; sweeper: WatchSweeper } {
  const options = { driver: fakeDriver(replicas), hub };
  const sweeper = new WatchSweeper(options);
  const call = new FakeCall(request);
  type Call = Parameters<ReturnType<typeof watchHandler>>[0];
  watchHandler(options, sweeper)(call as unknown as Call);
  return { call, sweeper };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.fail(`Timed out waiting for ${what}`);
}

function leaderOf(shardId: number, applied: number): FakeReplica {
  return {
    shardId,
    peerId: 11,
    confEpoch: 3,
    leading: true,
    leaderPeer: { peerId: 11, nodeId: "n1", address: "127.0.0.1:1" },
    applied,
    lastIndex: applied,
  };
}

Deno.test("KvNode.Watch resumed below the applied index sends the position first, then every change after it", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  for (let index = 1; index <= 5; index++) {
    hub.record(window, index, [{ kind: "put", key: enc(`k${index}`), value: enc(`v${index}`) }]);
  }
  const { call, sweeper } = serve(hub, [leaderOf(1, 5)], { resume: true, afterIndex: 2 });
  try {
    await until(() => call.written.length >= 2, "the position and the changes");
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(call.errors, []);
    assert.deepEqual(call.written[0], { events: [], index: 2 });
    assert.equal(call.written.length, 2);
    assert.equal(call.written[1].index, 5);
    assert.deepEqual(call.written[1].events.map((e) => [e.index, dec(e.key)]), [
      [3, "k3"],
      [4, "k4"],
      [5, "k5"],
    ]);
  } finally {
    sweeper.stop();
    call.emit("cancelled");
  }
  assert.equal(hub.stats.watchers, 0);
});

Deno.test("KvNode.Watch from now sends the applied index first, then later changes only", async () => {
  const hub = new WatchHub();
  const window = hub.attach(1, 11);
  hub.record(window, 1, [{ kind: "put", key: enc("before"), value: enc("x") }]);
  const { call, sweeper } = serve(hub, [leaderOf(1, 1)], {});
  try {
    await until(() => call.written.length >= 1, "the position");
    assert.deepEqual(call.written[0], { events: [], index: 1 });
    hub.record(window, 2, [{ kind: "put", key: enc("after"), value: enc("y") }]);
    await until(() => call.written.length >= 2, "the change");
    assert.equal(call.written[1].index, 2);
    assert.deepEqual(call.written[1].events.map((e) => dec(e.key)), ["after"]);
  } finally {
    sweeper.stop();
    call.emit("cancelled");
  }
  // The call went away: its watcher is gone and gets nothing more.
  assert.equal(hub.stats.watchers, 0);
  hub.record(window, 3, [{ kind: "put", key: enc("later"), value: enc("z") }]);
  await new Promise((resolve) => setTimeout(resolve, 2));
  assert.equal(call.written.length, 2);
});

Deno.test("KvNode.Watch on a follower ends UNAVAILABLE naming the leader's address in the trailer", async () => {
  const hub = new WatchHub();
  hub.attach(1, 11);
  const follower: FakeReplica = {
    ...leaderOf(1, 4),
    leading: false,
    leaderPeer: { peerId: 12, nodeId: "n2", address: "127.0.0.1:2" },
  };
  const { call, sweeper } = serve(hub, [follower], { resume: true, afterIndex: 4 });
  try {
    await until(() => call.errors.length === 1, "the status");
    const error = call.errors[0];
    assert.match(error.message, /Shard 1: node "n1" is not the leader \(leader is "n2"\)/);
    assert.deepEqual(error.metadata?.get(LEADER_ADDRESS_TRAILER), ["127.0.0.1:2"]);
    assert.deepEqual(call.written, []);
    assert.equal(hub.stats.watchers, 0);
  } finally {
    sweeper.stop();
  }
});

Deno.test("KvNode.Watch ends at once for a shard with no replica here, a newer conf epoch, a bad request", async () => {
  const hub = new WatchHub();
  hub.attach(1, 11);
  const cases: Array<{ request: Partial<ShardWatchRequest>; message: RegExp }> = [
    { request: { shardId: 2 }, message: /Shard 2 has no replica on node "n1"/ },
    { request: { confEpoch: 4 }, message: /conf epoch 4 is newer than this replica's 3/ },
    {
      request: { start: new Uint8Array(KEY_BYTES_MAX + 1) },
      message: new RegExp(`start key has ${KEY_BYTES_MAX + 1} bytes`),
    },
    {
      request: { end: new Uint8Array(KEY_BYTES_MAX + 2) },
      message: new RegExp(`end key has ${KEY_BYTES_MAX + 2} bytes`),
    },
    {
      request: { resume: true, afterIndex: 9 },
      message: /Watch position 9 of shard 1 is past the end of its log \(4\)/,
    },
  ];
  for (const { request, message } of cases) {
    const { call, sweeper } = serve(hub, [leaderOf(1, 4)], request);
    try {
      await until(() => call.errors.length === 1, `the status for ${message}`);
      assert.match(call.errors[0].message, message);
      assert.deepEqual(call.written, []);
    } finally {
      sweeper.stop();
    }
  }
  // The largest start and end keys are accepted.
  const { call, sweeper } = serve(hub, [leaderOf(1, 4)], {
    start: new Uint8Array(KEY_BYTES_MAX),
    end: new Uint8Array(KEY_BYTES_MAX + 1),
  });
  try {
    await until(() => call.written.length === 1, "the position");
    assert.deepEqual(call.errors, []);
    assert.deepEqual(call.written[0], { events: [], index: 4 });
  } finally {
    sweeper.stop();
    call.emit("cancelled");
  }
});

Deno.test("KvNode.Watch registers no watcher for a call canceled before the handler ran", async () => {
  const hub = new WatchHub();
  hub.attach(1, 11);
  const options = { driver: fakeDriver([leaderOf(1, 4)]), hub };
  const sweeper = new WatchSweeper(options);
  // Its "cancelled" event passed before the handler listened (behind a credential check).
  const call = new FakeCall({});
  call.cancelled = true;
  type Call = Parameters<ReturnType<typeof watchHandler>>[0];
  watchHandler(options, sweeper)(call as unknown as Call);
  await new Promise((resolve) => setTimeout(resolve, 5));
  try {
    assert.equal(hub.stats.watchers, 0);
    assert.deepEqual(call.written, []);
  } finally {
    sweeper.stop();
  }
});

Deno.test("KvNode.Watch stops the watcher of a call that went away while it registered, with no event said so", async () => {
  const hub = new WatchHub();
  hub.attach(1, 11);
  const { call, sweeper } = serve(hub, [leaderOf(1, 4)], {});
  try {
    // Gone while the driver's turn is awaited; the call says so, but emits nothing.
    call.destroyed = true;
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(hub.stats.watchers, 0);
  } finally {
    sweeper.stop();
  }
});

Deno.test("KvNode.Watch: the sweep stops a watcher whose HTTP/2 stream closed without the call hearing of it", async () => {
  const hub = new WatchHub();
  hub.attach(1, 11);
  const { call, sweeper } = serve(hub, [leaderOf(1, 4)], {});
  try {
    await until(() => call.written.length === 1, "the position");
    assert.equal(hub.stats.watchers, 1);
    // As grpc-js 1.14 holds it: the call's `call`, an interceptor's `nextCall`, its `stream`.
    const stream = { closed: false, destroyed: false };
    Object.assign(call, { call: { nextCall: { stream } } });
    assert.equal(callGone(call as unknown as Parameters<typeof callGone>[0]), false);
    stream.closed = true;
    assert.equal(callGone(call as unknown as Parameters<typeof callGone>[0]), true);
    const deadline = Date.now() + 5 * WATCH_SWEEP_MS;
    while (hub.stats.watchers > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(hub.stats.watchers, 0, "the sweep stopped it");
    assert.deepEqual(call.errors, [], "nobody to answer");
  } finally {
    sweeper.stop();
  }
});
