// Checks KvNodeStream two ways. Against in-memory fake kvnodes (`@tinykv/client/testing`) on a
// FakeClock: answers are matched to requests by id whatever their order; a broken stream answers
// every waiting request with the typed `streamBroken` outcome (`sent` true for a request that had
// left, false for one that had not, which is then never sent); the next request opens a new call;
// close() and the waiting-request bound answer at once; request() folds outcomes into failures.
// Against a real gRPC server on 127.0.0.1 port 0 that records every message: requests of one turn
// travel together, a batch never holds more than `batchItemsMax` items nor (beyond its first item)
// more than `batchBytesMax` estimated bytes, so many large requests at once never make one message
// over the gRPC limit, and every request is answered.
import assert from "node:assert/strict";
import {
  type BatchRequest,
  type BatchResponse,
  ItemFailure_Kind,
  KvNodeService,
  type RequestItem,
} from "@tinykv/proto/tinykv/v1";
import { bindService, startGrpcServer } from "@tinykv/rpc";
import { FakeClock } from "@tinykv/timer";
import { KvNodeStream, requestItemBytes, type StreamOutcome } from "./kvnode_stream.ts";
import { FakeKvNodes, runOnClock } from "./testing.ts";

const MIB = 1024 * 1024;

async function withRecordingServer(
  test: (address: string, received: BatchRequest[]) => Promise<void>,
): Promise<void> {
  const received: BatchRequest[] = [];
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 8 * MIB,
    services: [bindService(KvNodeService, {
      Batch: (call) => {
        call.on("data", (request: BatchRequest) => {
          received.push(request);
          const response: BatchResponse = {
            items: request.items.map((item) => ({ id: item.id, put: {} })),
          };
          call.write(response);
        });
        call.on("end", () => call.end());
      },
      Watch: (call) => call.end(),
    })],
  });
  try {
    await test(`127.0.0.1:${server.port}`, received);
  } finally {
    await server.shutdown(1000);
  }
}

function put(bytes: number) {
  const value = new Uint8Array(bytes).fill(7);
  const put = { key: new Uint8Array([1]), value, clientId: "", seq: 0, ackSeq: 0 };
  return { shardId: 1, confEpoch: 0, timeoutMs: 5000, traceId: "", put };
}

Deno.test("KvNodeStream bounds each batch in items and in bytes", async () => {
  await withRecordingServer(async (address, received) => {
    const stream = new KvNodeStream(address, { maxMessageBytes: 8 * MIB, batchItemsMax: 3 });
    try {
      // Ten small requests in one turn: batches of at most 3 items.
      const small = await Promise.all(Array.from({ length: 10 }, () => stream.request(put(10))));
      assert.ok(small.every((item) => item.put !== undefined));
      assert.deepEqual(received.map((r) => r.items.length), [3, 3, 3, 1]);
      received.length = 0;
      // Nine 1 MiB requests in one turn: each batch stays within half of the 8 MiB message bound.
      const big = await Promise.all(Array.from({ length: 9 }, () => stream.request(put(MIB))));
      assert.ok(big.every((item) => item.put !== undefined));
      assert.equal(received.reduce((n, r) => n + r.items.length, 0), 9);
      for (const request of received) {
        const bytes = request.items.reduce((n, item) => n + requestItemBytes(item), 0);
        assert.ok(request.items.length === 1 || bytes <= 4 * MIB, `a batch of ${bytes} bytes`);
      }
      assert.ok(received.length >= 3, `${received.length} batches`);
    } finally {
      stream.close();
    }
  });
});

Deno.test("KvNodeStream sends a request larger than the byte bound in a batch of its own", async () => {
  await withRecordingServer(async (address, received) => {
    const stream = new KvNodeStream(address, { maxMessageBytes: 8 * MIB, batchBytesMax: 1000 });
    try {
      const answers = await Promise.all(
        [put(10), put(5000), put(10)].map((r) => stream.request(r)),
      );
      assert.ok(answers.every((item) => item.put !== undefined));
      assert.deepEqual(received.map((r) => r.items.length), [1, 1, 1]);
    } finally {
      stream.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// On in-memory fake kvnodes.

const ADDRESS = "fake:1";
const enc = (text: string) => new TextEncoder().encode(text);
const dec = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function get(key: string): Omit<RequestItem, "id"> {
  return {
    shardId: 1,
    confEpoch: 0,
    timeoutMs: 1000,
    traceId: "",
    get: { key: enc(key), serializable: false },
  };
}

/** A fake kvnode that holds every request (no answer), and a stream to it. */
function holding(options: { requestsMax?: number } = {}) {
  const clock = new FakeClock();
  const nodes = new FakeKvNodes({ clock, handle: () => ({ hold: true }) });
  const stream = new KvNodeStream(ADDRESS, {
    maxMessageBytes: 1 << 20,
    connect: nodes.connect,
    requestsMax: options.requestsMax,
  });
  return { clock, nodes, stream };
}

/** Lets the event loop turn once, so the stream flushes and the fakes deliver. */
function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function assertBroken(outcome: StreamOutcome, sent: boolean): void {
  assert.equal(outcome.kind, "streamBroken", JSON.stringify(outcome));
  if (outcome.kind !== "streamBroken") return;
  assert.equal(outcome.sent, sent);
  assert.match(outcome.message, /kvnode "fake:1"/);
}

Deno.test("KvNodeStream.send() matches answers to their requests by id, in any order", async () => {
  const clock = new FakeClock();
  // Each get is answered with its own key, later requests sooner: the answers arrive reversed.
  const nodes = new FakeKvNodes({
    clock,
    handle: (request) => ({
      answer: { get: { found: true, value: request.get!.key } },
      afterMs: 100 - request.id,
    }),
  });
  const stream = new KvNodeStream(ADDRESS, { maxMessageBytes: 1 << 20, connect: nodes.connect });
  const keys = Array.from({ length: 20 }, (_, i) => `key-${i}`);
  const outcomes = await runOnClock(clock, Promise.all(keys.map((key) => stream.send(get(key)))));
  assert.deepEqual(
    outcomes.map((o) => o.kind === "answered" ? dec(o.item.get!.value) : o.kind),
    keys,
  );
  assert.deepEqual(new Set(nodes.received.map((r) => r.item.id)).size, 20, "ids are distinct");
  assert.equal(nodes.callsOpened(ADDRESS), 1, "one call carries every request");
  assert.equal(stream.pending, 0);
  stream.close();
});

Deno.test("KvNodeStream answers every waiting request as streamBroken when its call breaks", async () => {
  const { nodes, stream } = holding();
  const sent = [stream.send(get("a")), stream.send(get("b"))];
  await turn();
  assert.equal(nodes.received.length, 2, "both requests left");
  // Queued in this turn, not yet written, when the call breaks.
  const queued = stream.send(get("c"));
  nodes.breakCalls(ADDRESS);
  for (const outcome of await Promise.all(sent)) assertBroken(outcome, true);
  assertBroken(await queued, false);
  await turn();
  assert.equal(nodes.received.length, 2, "the request answered as never sent is never sent");
  assert.equal(stream.pending, 0);
  stream.close();
});

Deno.test("KvNodeStream opens a new call for the next request after its call broke", async () => {
  const clock = new FakeClock();
  let broken = false;
  const nodes = new FakeKvNodes({
    clock,
    handle: () => broken ? { answer: { put: {} } } : { hold: true },
  });
  const stream = new KvNodeStream(ADDRESS, { maxMessageBytes: 1 << 20, connect: nodes.connect });
  const first = stream.send(get("a"));
  await turn();
  nodes.breakCalls(ADDRESS, "ended");
  broken = true;
  const outcome = await first;
  assertBroken(outcome, true);
  assert.match(outcome.kind === "streamBroken" ? outcome.message : "", /"fake:1" ended$/);
  const again = await runOnClock(clock, stream.send(get("a")));
  assert.equal(again.kind, "answered");
  assert.equal(nodes.callsOpened(ADDRESS), 2);
  assert.equal(nodes.channelsClosed(ADDRESS), 0, "the channel is reused");
  stream.close();
  assert.equal(nodes.channelsClosed(ADDRESS), 1);
});

Deno.test("KvNodeStream.send() fails a request sent to a node where nothing listens as sent", async () => {
  const { nodes, stream } = holding();
  nodes.down.add(ADDRESS);
  // grpc-js accepts the write before it learns the connection was refused, so the outcome is
  // unknown to the stream.
  assertBroken(await stream.send(get("a")), true);
  stream.close();
});

Deno.test("KvNodeStream.close() answers waiting requests and refuses later ones unsent", async () => {
  const { nodes, stream } = holding();
  const waiting = stream.send(get("a"));
  await turn();
  stream.close();
  const closed = await waiting;
  assertBroken(closed, true);
  assert.match(closed.kind === "streamBroken" ? closed.message : "", /was closed$/);
  const later = await stream.send(get("b"));
  assertBroken(later, false);
  assert.match(later.kind === "streamBroken" ? later.message : "", /: the batch stream is closed$/);
  assert.equal(stream.closed, true);
  assert.equal(nodes.received.length, 1);
});

Deno.test("KvNodeStream.send() refuses a request beyond requestsMax as overloaded", async () => {
  const { nodes, stream } = holding({ requestsMax: 2 });
  const held = [stream.send(get("a")), stream.send(get("b"))];
  const third = await stream.send(get("c"));
  assert.deepEqual(third, {
    kind: "overloaded",
    message: 'Cannot send to kvnode "fake:1": 2 requests wait for answers (requestsMax)',
  });
  await turn();
  assert.equal(nodes.received.length, 2);
  stream.close();
  await Promise.all(held);
});

Deno.test("KvNodeStream.request() folds each outcome into a ResponseItem failure", async () => {
  const { nodes, stream } = holding({ requestsMax: 2 });
  const sent = stream.request(get("a"));
  await turn();
  // Queued in this turn (not written yet) when the call breaks.
  const unsent = stream.request(get("b"));
  const overloaded = stream.request(get("c"));
  nodes.breakCalls(ADDRESS);
  assert.equal((await sent).failure?.kind, ItemFailure_Kind.UNKNOWN);
  assert.equal((await unsent).failure?.kind, ItemFailure_Kind.UNAVAILABLE);
  assert.equal((await overloaded).failure?.kind, ItemFailure_Kind.RESOURCE_EXHAUSTED);
  assert.match((await sent).failure!.message, /^Batch stream to kvnode "fake:1" failed: /);
  stream.close();
});
