// Checks what TinyKvClient reports when the connection breaks: against a real server process that
// dies as soon as it receives a call, a mutation ends with its outcome unknown (the request had
// left; the server might have applied it), while a call to an endpoint where nothing listens ends
// UNAVAILABLE with the outcome known: never applied.
import assert from "node:assert/strict";
import { spawnServerProcess } from "@tinykv/rpc/testing";
import { TinyKvClient, TinyKvError } from "./tinykv_client.ts";

const SERVER_SCRIPT = new URL("../rpc/testdata/kv_server.ts", import.meta.url);
const SERVER_FLAGS = ["--allow-net=127.0.0.1", "--allow-env"];

async function failure(call: Promise<unknown>): Promise<TinyKvError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof TinyKvError) return error;
    throw error;
  }
  return assert.fail("the call succeeded");
}

Deno.test("TinyKvClient reports a mutation whose connection broke after it left as unknown", async () => {
  // The server exits on its first call, after the request arrived.
  const server = await spawnServerProcess(SERVER_SCRIPT, {
    denoFlags: SERVER_FLAGS,
    args: ["--exit-after-calls=0"],
  });
  const client = TinyKvClient.connect({ endpoints: [server.address], deadlineMs: 1500 });
  try {
    const error = await failure(client.put("k", "v"));
    assert.equal(error.outcomeUnknown, true, `${error.code}: ${error.message}`);
    assert.equal(error.code, "deadlineExceeded");
  } finally {
    client.close();
    await server.stop();
  }
});

Deno.test("TinyKvClient reports a mutation that never reached a server as not applied", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const client = TinyKvClient.connect({ endpoints: [`127.0.0.1:${port}`], deadlineMs: 500 });
  try {
    const error = await failure(client.put("k", "v"));
    assert.equal(error.code, "unavailable", error.message);
    assert.equal(error.outcomeUnknown, false);
  } finally {
    client.close();
  }
});
