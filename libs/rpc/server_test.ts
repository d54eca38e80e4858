/**
 * Checks startGrpcServer(), createGrpcClient(), unaryCaller() and the handler wrappers against a
 * real grpc-js server and client on 127.0.0.1 (port 0), serving the in-memory test KV service
 * of testdata/kv_service.ts: every KV message round-trips, deadlines, message bounds, malformed
 * requests and handler bugs end with the documented status, and the server keeps serving.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type * as grpc from "@grpc/grpc-js";
import {
  type GetResponse,
  type KVClient,
  type KVHandlers,
  KVService,
} from "../../proto/gen/tinykv/v1.ts";
import {
  createGrpcClient,
  type GrpcClient,
  type GrpcServer,
  MESSAGE_BYTES_MAX_DEFAULT,
  outcomeOf,
  type RpcFailure,
  type RpcFailureKind,
  rpcOk,
  type RpcResult,
  type ServiceBinding,
  startGrpcServer,
  STATUS_TABLE,
  unaryCaller,
  type UnaryFlags,
} from "./mod.ts";
import { kvTestService } from "./testdata/kv_service.ts";

const encoder = new TextEncoder();
const DEADLINE_MS = 5000;

interface Fixture {
  server: GrpcServer;
  client: GrpcClient<typeof KVService>;
  bugs: unknown[];
}

async function withServer(
  options: { maxMessageBytes?: number; clientMaxMessageBytes?: number; service?: ServiceBinding },
  body: (fixture: Fixture) => Promise<void>,
): Promise<void> {
  const bugs: unknown[] = [];
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: options.maxMessageBytes ?? MESSAGE_BYTES_MAX_DEFAULT,
    services: [options.service ?? kvTestService({ onUnexpectedError: (e) => bugs.push(e) })],
    onUnexpectedError: (e) => bugs.push(e),
  });
  const client = createGrpcClient(KVService, `127.0.0.1:${server.port}`, {
    maxMessageBytes: options.clientMaxMessageBytes ?? MESSAGE_BYTES_MAX_DEFAULT,
  });
  try {
    await body({ server, client, bugs });
  } finally {
    client.close();
    await server.shutdown(1000);
  }
}

function ok<T>(result: RpcResult<T>): T {
  assert.equal(result.kind, "ok", result.kind === "ok" ? "" : result.message);
  return (result as { response: T }).response;
}

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

Deno.test("startGrpcServer() binds port 0 to a free port and shuts down gracefully", async () => {
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 1024,
    services: [kvTestService()],
  });
  assert.ok(server.port > 0);
  assert.equal(await server.shutdown(1000), "graceful");
  assert.equal(await server.shutdown(1000), "graceful");
});

Deno.test("startGrpcServer() rejects when the port is taken", async () => {
  const first = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 1024,
    services: [kvTestService()],
  });
  try {
    await assert.rejects(
      startGrpcServer({
        host: "127.0.0.1",
        port: first.port,
        maxMessageBytes: 1024,
        services: [kvTestService()],
      }),
      /No address added/,
    );
  } finally {
    await first.shutdown(1000);
  }
});

Deno.test("createGrpcClient() returns the generated KVClient interface", () => {
  // A compile-time check: the lib's derived client type and the generated interface agree.
  const asGenerated = (client: GrpcClient<typeof KVService>): KVClient => client;
  assert.equal(typeof asGenerated, "function");
});

Deno.test("every KV message round-trips through a real server", async () => {
  await withServer({}, async ({ client }) => {
    const opts = { deadlineMs: DEADLINE_MS };
    const get = unaryCaller(client, "Get");
    const put = unaryCaller(client, "Put");
    const unicode = bytes("ключ-☃-𝄞");
    const big = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
    const session = { clientId: "c1", ackSeq: 0 };

    assert.deepStrictEqual(ok(await get({ key: unicode, serializable: false }, opts)), {
      found: false,
      value: new Uint8Array(0),
    });
    assert.deepStrictEqual(
      ok(await put({ key: unicode, value: new Uint8Array(0), seq: 1, ...session }, opts)),
      {},
    );
    assert.deepStrictEqual(ok(await get({ key: unicode, serializable: true }, opts)), {
      found: true,
      value: new Uint8Array(0),
    });
    ok(await put({ key: bytes("big"), value: big, seq: 2, ...session }, opts));
    assert.deepStrictEqual(ok(await get({ key: bytes("big"), serializable: false }, opts)), {
      found: true,
      value: big,
    });

    const append = unaryCaller(client, "Append");
    const appended = await append({ key: unicode, value: bytes("ab"), seq: 3, ...session }, opts);
    assert.deepStrictEqual(ok(appended), { length: 2 });

    const cas = unaryCaller(client, "CompareAndSwap");
    const casBase = { key: unicode, expectAbsent: false, delete: false, seq: 4, ...session };
    assert.deepStrictEqual(
      ok(await cas({ ...casBase, expected: bytes("zz"), value: bytes("cd") }, opts)),
      { succeeded: false, found: true, current: bytes("ab") },
    );
    assert.deepStrictEqual(
      ok(await cas({ ...casBase, expected: bytes("ab"), value: bytes("cd") }, opts)),
      { succeeded: true, found: true, current: bytes("ab") },
    );
    assert.deepStrictEqual(
      ok(
        await cas(
          { ...casBase, expected: bytes("cd"), value: new Uint8Array(0), delete: true },
          opts,
        ),
      ),
      { succeeded: true, found: true, current: bytes("cd") },
    );
    assert.deepStrictEqual(
      ok(
        await cas({
          ...casBase,
          expected: new Uint8Array(0),
          expectAbsent: true,
          value: bytes("e"),
        }, opts),
      ),
      { succeeded: true, found: false, current: new Uint8Array(0) },
    );

    const del = unaryCaller(client, "Delete");
    const delBase = { seq: Number.MAX_SAFE_INTEGER, ...session, ackSeq: Number.MAX_SAFE_INTEGER };
    assert.deepStrictEqual(ok(await del({ key: bytes("big"), ...delBase }, opts)), {
      deleted: true,
    });
    assert.deepStrictEqual(ok(await del({ key: bytes("big"), ...delBase }, opts)), {
      deleted: false,
    });

    for (const key of ["a", "b", "c"]) {
      ok(await put({ key: bytes(key), value: bytes(key), seq: 9, ...session }, opts));
    }
    const scan = unaryCaller(client, "Scan");
    assert.deepStrictEqual(
      ok(await scan({ start: bytes("a"), end: new Uint8Array(0), limit: 2 }, opts)),
      {
        kvs: [{ key: bytes("a"), value: bytes("a") }, { key: bytes("b"), value: bytes("b") }],
        more: true,
        next: bytes("c"),
      },
    );
    assert.deepStrictEqual(
      ok(await scan({ start: bytes("b"), end: bytes("c"), limit: 10 }, opts)),
      { kvs: [{ key: bytes("b"), value: bytes("b") }], more: false, next: new Uint8Array(0) },
    );
    const zero = await scan({ start: new Uint8Array(0), end: new Uint8Array(0), limit: 0 }, opts);
    assert.equal(zero.kind, "invalidArgument");
  });
});

Deno.test("a call past its deadline ends with deadlineExceeded", async () => {
  await withServer({}, async ({ client }) => {
    const get = unaryCaller(client, "Get");
    const started = Date.now();
    const result = await get({ key: bytes("sleep"), serializable: false }, { deadlineMs: 100 });
    assert.equal(result.kind, "deadlineExceeded");
    assert.ok(Date.now() - started < 2000);
    ok(await get({ key: bytes("k"), serializable: false }, { deadlineMs: DEADLINE_MS }));
  });
});

Deno.test("unaryCaller() resolves to cancelled when its signal aborts", async () => {
  await withServer({}, async ({ client }) => {
    const get = unaryCaller(client, "Get");
    const abort = new AbortController();
    const pending = get({ key: bytes("sleep"), serializable: false }, {
      deadlineMs: DEADLINE_MS,
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), 50);
    assert.equal((await pending).kind, "cancelled");
  });
});

Deno.test("a message over maxMessageBytes ends with resourceExhausted", async () => {
  const value = new Uint8Array(100 * 1024);
  const request = { key: bytes("k"), value, clientId: "", seq: 0, ackSeq: 0 };
  // Rejected by the server's receive bound.
  await withServer({ maxMessageBytes: 64 * 1024 }, async ({ client }) => {
    const result = await unaryCaller(client, "Put")(request, { deadlineMs: DEADLINE_MS });
    assert.equal(result.kind, "resourceExhausted");
    ok(
      await unaryCaller(client, "Put")({ ...request, value: bytes("small") }, {
        deadlineMs: DEADLINE_MS,
      }),
    );
  });
  // Rejected by the client's send bound before it leaves: definitely not applied.
  await withServer({ clientMaxMessageBytes: 64 * 1024 }, async ({ client }) => {
    const result = await unaryCaller(client, "Put")(request, { deadlineMs: DEADLINE_MS });
    assert.equal(result.kind, "resourceExhausted");
    assert.equal(outcomeOf(result as RpcFailure), "notApplied");
  });
});

Deno.test("every failure kind a handler returns reaches the client as that kind", async () => {
  await withServer({}, async ({ client }) => {
    const get = unaryCaller(client, "Get");
    for (const kind of Object.keys(STATUS_TABLE) as RpcFailureKind[]) {
      const result = await get({ key: bytes(`fail:${kind}`), serializable: false }, {
        deadlineMs: DEADLINE_MS,
      });
      assert.deepStrictEqual(result, { kind, message: `Injected "${kind}"` });
      // The server's trailer says the status is its own, so the table's outcome holds.
      assert.equal(outcomeOf(result as RpcFailure), STATUS_TABLE[kind].outcome);
    }
  });
});

Deno.test("a handler that throws ends with internal and the server keeps serving", async () => {
  await withServer({}, async ({ client, bugs }) => {
    const get = unaryCaller(client, "Get");
    for (let i = 0; i < 3; i++) {
      const result = await get({ key: bytes("throw"), serializable: false }, {
        deadlineMs: DEADLINE_MS,
      });
      assert.equal(result.kind, "internal");
      assert.match(result.kind === "internal" ? result.message : "", /Injected bug/);
    }
    assert.equal(bugs.length, 3);
    ok(await get({ key: bytes("k"), serializable: false }, { deadlineMs: DEADLINE_MS }));
  });
});

Deno.test("a raw handler that throws synchronously ends with internal", async () => {
  const fail = () => {
    throw new Error("Synchronous bug");
  };
  const implementation: KVHandlers = {
    Get: fail,
    Put: (_call, callback) => callback(null, {}),
    Delete: fail,
    Append: fail,
    CompareAndSwap: fail,
    Scan: fail,
    Txn: fail,
    Watch: fail,
  };
  const service: ServiceBinding = { definition: KVService, implementation };
  await withServer({ service }, async ({ client, bugs }) => {
    const result = await unaryCaller(client, "Get")({ key: bytes("k"), serializable: false }, {
      deadlineMs: DEADLINE_MS,
    });
    assert.equal(result.kind, "internal");
    assert.equal(bugs.length, 1);
    const put = await unaryCaller(client, "Put")(
      { key: bytes("k"), value: bytes("v"), clientId: "", seq: 0, ackSeq: 0 },
      { deadlineMs: DEADLINE_MS },
    );
    assert.deepStrictEqual(put, rpcOk({}));
  });
});

Deno.test("a request that cannot be decoded ends with invalidArgument", async () => {
  const rawGet = {
    ...KVService.Get,
    requestSerialize: (value: Uint8Array) => Buffer.from(value),
    requestDeserialize: (value: Buffer) => new Uint8Array(value),
  } satisfies grpc.MethodDefinition<Uint8Array, GetResponse> & UnaryFlags;
  await withServer({}, async ({ server }) => {
    const raw = createGrpcClient({ Get: rawGet }, `127.0.0.1:${server.port}`, {
      maxMessageBytes: 1024,
    });
    try {
      const get = unaryCaller(raw, "Get");
      // Field 1 (bytes) claims 5 bytes but only 1 follows.
      const truncated = await get(new Uint8Array([0x0a, 0x05, 0x01]), { deadlineMs: DEADLINE_MS });
      assert.equal(truncated.kind, "invalidArgument");
      assert.match(
        truncated.kind === "invalidArgument" ? truncated.message : "",
        /tinykv\.v1\.KV\/Get/,
      );
      // Unknown fields are skipped, not rejected.
      const unknown = await get(new Uint8Array([0x0a, 0x01, 0x6b, 0xf8, 0x06, 0x07]), {
        deadlineMs: DEADLINE_MS,
      });
      assert.deepStrictEqual(unknown, rpcOk({ found: false, value: new Uint8Array(0) }));
    } finally {
      raw.close();
    }
  });
});

Deno.test("a call to a server that is down ends with unavailable", async () => {
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 1024,
    services: [kvTestService()],
  });
  await server.shutdown(0);
  const client = createGrpcClient(KVService, `127.0.0.1:${server.port}`, { maxMessageBytes: 1024 });
  try {
    const result = await unaryCaller(client, "Get")({ key: bytes("k"), serializable: false }, {
      deadlineMs: DEADLINE_MS,
    });
    assert.equal(result.kind, "unavailable");
    // No connection was ever made, so the request never left.
    assert.equal(outcomeOf(result as RpcFailure), "notApplied");
  } finally {
    client.close();
  }
});
