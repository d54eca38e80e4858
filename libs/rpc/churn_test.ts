/**
 * Regression test for the Deno nghttp2 crash: Deno 2.9.4 to 2.9.6 abort the *server* process
 * inside nghttp2 when grpc-js client channels close right after a burst of traffic on a freshly
 * started server. The test server runs in a child process (testdata/kv_server.ts); each test
 * starts 3 fresh ones in turn and gives each a burst (200 unary calls at once over 20 channels, or
 * 10 bidi streams of 200 messages over 5 channels), closes the channels, repeats once; then the
 * child must still answer, still be running, and exit cleanly on SIGTERM.
 */

import assert from "node:assert/strict";
import { KVService } from "../../proto/gen/tinykv/v1.ts";
import { SampleService } from "../../proto/testdata/gen/tinykv/testdata/v1.ts";
import {
  createGrpcClient,
  type GrpcClient,
  MESSAGE_BYTES_MAX_DEFAULT,
  unaryCaller,
} from "./mod.ts";
import {
  assertServerSurvivesChannelChurn,
  assertSurvivesChannelChurn,
  bidiExchange,
  spawnServerProcess,
} from "./testing.ts";
import { shapesOf } from "./testdata/sample_service.ts";

const encoder = new TextEncoder();
const SERVER_SCRIPT = new URL("./testdata/kv_server.ts", import.meta.url);
const SERVER_FLAGS = ["--allow-net=127.0.0.1", "--allow-env"];

function putOrGet(client: GrpcClient<typeof KVService>, index: number) {
  const key = encoder.encode(`key-${index % 17}`);
  const options = { deadlineMs: 5000 };
  return index % 2 === 0
    ? unaryCaller(client, "Put")(
      { key, value: encoder.encode(`value-${index}`), clientId: "", seq: 0, ackSeq: 0 },
      options,
    )
    : unaryCaller(client, "Get")({ key, serializable: false }, options);
}

Deno.test("fresh server processes survive bursts of 200 concurrent calls then closes", async () => {
  // 3 servers x 2 waves of 20 channels x 10 calls: see assertServerSurvivesChannelChurn().
  await assertServerSurvivesChannelChurn({
    script: SERVER_SCRIPT,
    spawn: { denoFlags: SERVER_FLAGS },
    servers: 3,
    definition: KVService,
    channels: 40,
    callsPerChannel: 10,
    concurrency: 20,
    makeCall: putOrGet,
  });
});

Deno.test("fresh server processes survive bursts of bidi stream traffic then closes", async () => {
  // Like a raft or batch stream: few streams, many messages; each stream is cancelled once all
  // its answers are in, then its channel closes. 3 servers x 2 waves of 5 channels x 2 streams.
  const messages = Array.from({ length: 200 }, (_, i) => shapesOf([i]));
  await assertServerSurvivesChannelChurn({
    script: SERVER_SCRIPT,
    spawn: { denoFlags: SERVER_FLAGS },
    servers: 3,
    definition: SampleService,
    channels: 10,
    callsPerChannel: 2,
    concurrency: 5,
    makeCall: (client) => bidiExchange(client, "Chat", messages, { deadlineMs: 5000 }),
  });
});

Deno.test("bidiExchange() ends a stream by cancelling it or by half-closing it", async () => {
  const server = await spawnServerProcess(SERVER_SCRIPT, { denoFlags: SERVER_FLAGS });
  const client = createGrpcClient(SampleService, server.address, {
    maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
  });
  try {
    const requests = [shapesOf([1]), shapesOf([2, 3])];
    for (const finish of ["cancel", "end"] as const) {
      const result = await bidiExchange(client, "Chat", requests, { deadlineMs: 5000, finish });
      assert.equal(result.kind, "ok", JSON.stringify(result));
      if (result.kind === "ok") {
        assert.deepStrictEqual(result.response.map((m) => m.numbers), [[1], [2, 3]]);
      }
    }
    const short = await bidiExchange(client, "Chat", requests, {
      deadlineMs: 5000,
      finish: "end",
      responses: 3,
    });
    assert.equal(short.kind, "internal", JSON.stringify(short));
    const late = await bidiExchange(client, "Chat", requests, {
      deadlineMs: 300,
      responses: 3,
    });
    assert.equal(late.kind, "deadlineExceeded", JSON.stringify(late));
  } finally {
    client.close();
    const status = await server.stop();
    assert.equal(status.code, 0, `server exited with ${JSON.stringify(status)}`);
  }
});

Deno.test("assertSurvivesChannelChurn() notices a server process that dies", async () => {
  const server = await spawnServerProcess(SERVER_SCRIPT, {
    denoFlags: SERVER_FLAGS,
    args: ["--exit-after-calls=20"],
  });
  try {
    await assert.rejects(
      assertSurvivesChannelChurn({
        definition: KVService,
        address: server.address,
        process: server.process,
        channels: 20,
        callsPerChannel: 3,
        makeCall: putOrGet,
      }),
      /during channel churn/,
    );
  } finally {
    const status = await server.stop();
    assert.equal(status.code, 134);
  }
});
