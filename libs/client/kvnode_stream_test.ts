// Checks how KvNodeStream packs requests into BatchRequest messages, against a real gRPC server
// that records every message it receives and answers each item: requests of one turn travel
// together, a batch never holds more than `batchItemsMax` items nor (beyond its first item) more
// than `batchBytesMax` estimated bytes, so many large requests at once never make one message over
// the gRPC limit, and every request is answered.
import assert from "node:assert/strict";
import { type BatchRequest, type BatchResponse, KvNodeService } from "@tinykv/proto/tinykv/v1";
import { bindService, startGrpcServer } from "@tinykv/rpc";
import { KvNodeStream, requestItemBytes } from "./kvnode_stream.ts";

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
  return { shardId: 1, confEpoch: 0, timeoutMs: 5000, put };
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
