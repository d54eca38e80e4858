/**
 * createGrpcClient()'s `receiveWindowBytes` reaches the server: the HTTP/2 send window a server
 * stream sees towards the client (libs/rpc send_window.ts reads it) is HTTP/2's 65,535 bytes by
 * default and the given size with the option, on a real grpc-js server and client.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { KVService, type WatchRequest, type WatchResponse } from "../../proto/gen/tinykv/v1.ts";
import { createGrpcClient, sessionOf, startGrpcServer } from "./mod.ts";
import { kvTestService } from "./testdata/kv_service.ts";

const WINDOW = 4 * 1024 * 1024;

Deno.test("receiveWindowBytes opens the window a server stream sees towards the client", async () => {
  const windows: number[] = [];
  const base = kvTestService({});
  const watch = (call: grpc.ServerWritableStream<WatchRequest, WatchResponse>) => {
    // The client's WINDOW_UPDATE may follow its request: look for up to 2 s.
    const started = Date.now();
    const look = () => {
      const window = sessionOf(call)?.state?.remoteWindowSize ?? -1;
      if (window >= WINDOW || Date.now() - started > 2000) {
        windows.push(window);
        call.end();
      } else setTimeout(look, 10);
    };
    look();
  };
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 1024 * 1024,
    services: [{
      definition: base.definition,
      implementation: { ...base.implementation, Watch: watch as grpc.UntypedHandleCall },
    }],
  });
  try {
    for (const receiveWindowBytes of [undefined, WINDOW]) {
      const client = createGrpcClient(KVService, `127.0.0.1:${server.port}`, {
        maxMessageBytes: 1024 * 1024,
        ...(receiveWindowBytes === undefined ? {} : { receiveWindowBytes }),
      });
      await new Promise<void>((resolve, reject) => {
        const request = { key: new Uint8Array([1]), prefix: false, start: [] };
        const call = client.Watch(request, new grpc.Metadata(), {});
        call.on("data", () => {});
        call.on("error", reject);
        call.on("end", () => resolve());
      });
      client.close();
    }
    assert.equal(windows.length, 2);
    assert.ok(windows[0] <= 65_535, `the default: ${windows[0]}`);
    assert.ok(windows[1] >= WINDOW, `with the option: ${windows[1]}`);
  } finally {
    await server.shutdown(1000);
  }
});
