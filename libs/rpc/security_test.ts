// Checks TLS and credentials on a real grpc-js server in this process: a CA and a server
// certificate made with openssl (libs/auth/pki.ts), tokens of libs/auth. A plaintext client, a
// call without a token, a token of another cluster, of an unknown key, expired, or of a role the
// method does not allow are refused with the right status and reach no handler, for unary calls,
// client streams and bidirectional streams alike; an allowed caller gets through and its handler
// sees who called. Last, whether this runtime's grpc-js server can require client certificates
// (mutual TLS could then replace the tokens). Also: a TLS connection's writes are coalesced
// (coalesce.ts).
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type Claims, generateKeyPair, mintToken, type Role, TokenVerifier } from "@tinykv/auth";
import { makeCertificate, makeCertificateAuthority } from "@tinykv/auth/pki";
import {
  KvNodeService,
  KVService,
  type RaftBatch,
  type RaftSendSummary,
  RaftTransportService,
} from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, unaryCaller } from "./client.ts";
import { coalesceCounts } from "./coalesce.ts";
import { callerOf, type ServerAuth } from "./security.ts";
import { bindService, MESSAGE_BYTES_MAX_DEFAULT, startGrpcServer } from "./server.ts";
import { failureFromError, rpcOk } from "./status.ts";

const dir = await Deno.makeTempDir({ prefix: "tinykv-tls-test-" });
const ca = await makeCertificateAuthority(`${dir}/ca`);
const server = await makeCertificate(dir, ca, "server", ["tinykv.test", "127.0.0.1"]);
const caPem = await Deno.readTextFile(ca.cert);
const tls = {
  cert: await Deno.readTextFile(server.cert),
  key: await Deno.readTextFile(server.key),
  ca: caPem,
};
const keys = await generateKeyPair();
const HOUR = 3_600_000;

function token(fields: Partial<Claims> = {}): Promise<string> {
  return mintToken(keys.signing, {
    sub: "someone",
    role: "client",
    cluster: "c-1",
    iat: Date.now(),
    exp: Date.now() + HOUR,
    ...fields,
  });
}

/** KV for clients; the node services for kvnodes only. */
const POLICY: Record<string, readonly Role[]> = {
  "/tinykv.v1.KV/Get": ["client", "admin"],
  "/tinykv.v1.KvNode/Batch": ["gateway"],
  "/tinykv.v1.RaftTransport/Send": ["kvnode"],
};

/** A server with one handler per kind of call, recording who reached them. */
async function withServer(
  test: (port: number, reached: string[]) => Promise<void>,
): Promise<void> {
  const reached: string[] = [];
  const auth: ServerAuth = {
    verify: (t) => new TokenVerifier(keys.verify, { cluster: "c-1" }).verify(t),
    roles: (path) => POLICY[path],
  };
  const unimplemented = () => {
    throw new Error("not in this test");
  };
  const kv = bindService(KVService, {
    Get: (_request, context) => {
      reached.push(`Get by ${context.caller?.sub}`);
      return rpcOk({ found: true, value: new Uint8Array([1]) });
    },
    Put: unimplemented,
    Delete: unimplemented,
    Append: unimplemented,
    CompareAndSwap: unimplemented,
    Scan: unimplemented,
    Txn: unimplemented,
    Watch: unimplemented,
  });
  const kvnode = bindService(KvNodeService, {
    Batch: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      reached.push(`Batch by ${callerOf(call)?.sub}`);
      call.end();
    },
    Watch: unimplemented,
  });
  const transport = bindService(RaftTransportService, {
    Send: (
      call: grpc.ServerReadableStream<RaftBatch, RaftSendSummary>,
      callback: grpc.sendUnaryData<RaftSendSummary>,
    ) => {
      reached.push(`Send by ${callerOf(call)?.sub}`);
      let messages = 0;
      call.on("data", (batch: RaftBatch) => messages += batch.messages.length);
      call.on("end", () => callback(null, { messagesReceived: messages }));
    },
    SendSnapshot: unimplemented as never,
  });
  const running = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
    services: [kv, kvnode, transport],
    tls,
    auth,
  });
  try {
    await test(running.port, reached);
  } finally {
    await running.shutdown(1000);
  }
}

function clientOf<D extends grpc.ServiceDefinition>(
  definition: D,
  port: number,
  options: { token?: string; plaintext?: boolean } = {},
) {
  return createGrpcClient(definition, `127.0.0.1:${port}`, {
    maxMessageBytes: MESSAGE_BYTES_MAX_DEFAULT,
    tls: options.plaintext ? undefined : { ca: caPem, serverName: "tinykv.test" },
    token: options.token,
  });
}

async function get(port: number, options: { token?: string; plaintext?: boolean }) {
  const client = clientOf(KVService, port, options);
  try {
    return await unaryCaller(client, "Get")({ key: new Uint8Array([1]), serializable: false }, {
      deadlineMs: 3000,
    });
  } finally {
    client.close();
  }
}

/** Sends one batch on a client stream; the stream's status. */
function send(port: number, options: { token?: string }): Promise<grpc.ServiceError | number> {
  const client = clientOf(RaftTransportService, port, options) as unknown as grpc.Client & {
    Send(
      callback: (error: grpc.ServiceError | null, summary?: { messagesReceived: number }) => void,
    ): grpc.ClientWritableStream<RaftBatch>;
  };
  return new Promise((resolve) => {
    const call = client.Send((error, summary) => {
      client.close();
      resolve(error ?? summary!.messagesReceived);
    });
    call.write({ fromNode: "n-1", clusterId: "c-1", messages: [], fromAddress: "x" });
    call.end();
  });
}

/** Opens a bidirectional stream and waits for its status. */
function batch(port: number, options: { token?: string }): Promise<grpc.StatusObject> {
  const client = clientOf(KvNodeService, port, options) as unknown as grpc.Client & {
    Batch(): grpc.ClientDuplexStream<unknown, unknown>;
  };
  return new Promise((resolve) => {
    const call = client.Batch();
    call.on("data", () => {});
    call.on("error", () => {});
    call.on("status", (status) => {
      client.close();
      resolve(status);
    });
    call.end();
  });
}

Deno.test("TLS and tokens: each refusal has its status and reaches no handler", async () => {
  await withServer(async (port, reached) => {
    const plaintext = await get(port, { plaintext: true });
    assert.equal(plaintext.kind, "unavailable", "a plaintext client cannot talk to a TLS port");
    const secret = await token();
    assert.throws(
      () => clientOf(KVService, port, { plaintext: true, token: secret }),
      /A token is sent only over TLS: the client of "127\.0\.0\.1:\d+" has no CA/,
    );
    const cases: Array<[string, string | undefined, string, RegExp]> = [
      ["no token", undefined, "unauthenticated", /needs a credential/],
      ["another cluster", await token({ cluster: "c-2" }), "unauthenticated", /cluster "c-2"/],
      [
        "another key",
        await mintToken((await generateKeyPair()).signing, {
          sub: "x",
          role: "client",
          cluster: "c-1",
          iat: 0,
          exp: Date.now() + HOUR,
        }),
        "unauthenticated",
        /signature/,
      ],
      ["expired", await token({ exp: Date.now() - 1 }), "unauthenticated", /expired/],
      ["garbage", "nonsense", "unauthenticated", /Not a TinyKV token/],
      [
        "a kvnode's role",
        await token({ role: "kvnode", sub: "n-1" }),
        "permissionDenied",
        /"n-1" \(role kvnode\) may not call "\/tinykv.v1.KV\/Get": only client, admin/,
      ],
    ];
    for (const [what, credential, kind, message] of cases) {
      const result = await get(port, { token: credential });
      assert.equal(result.kind, kind, `${what}: ${JSON.stringify(result)}`);
      assert.match(result.kind === "ok" ? "" : result.message, message, what);
    }
    assert.deepEqual(reached, [], "no refused call reached its handler");
    const allowed = await get(port, { token: await token({ sub: "app" }) });
    assert.equal(allowed.kind, "ok");
    assert.deepEqual(reached, ["Get by app"]);
  });
});

Deno.test("TLS: the TLS socket's writes are coalesced, each answer's frames in one batch", async () => {
  await withServer(async (port) => {
    const before = coalesceCounts();
    const client = clientOf(KVService, port, { token: await token({ sub: "app" }) });
    try {
      const get = unaryCaller(client, "Get");
      const answers = await Promise.all(
        Array.from(
          { length: 200 },
          () => get({ key: new Uint8Array([1]), serializable: false }, { deadlineMs: 5000 }),
        ),
      );
      assert.ok(answers.every((answer) => answer.kind === "ok"));
    } finally {
      client.close();
    }
    const after = coalesceCounts();
    assert.equal(after.sockets - before.sockets, 1, "the TLS connection was coalesced");
    const writes = after.writes - before.writes;
    const batches = after.batches - before.batches;
    assert.ok(writes >= 3 * 200, `${writes} writes for 200 answers: not the socket HTTP/2 uses`);
    assert.ok(batches <= writes / 2.5, `${writes} writes left in ${batches} batches`);
  });
});

Deno.test("TLS and tokens: streams are refused before their handler, allowed ones get through", async () => {
  await withServer(async (port, reached) => {
    const noToken = await send(port, {});
    assert.equal(typeof noToken === "number" ? 0 : noToken.code, grpc.status.UNAUTHENTICATED);
    const wrongRole = await send(port, { token: await token({ role: "gateway" }) });
    assert.equal(typeof wrongRole === "number" ? 0 : wrongRole.code, grpc.status.PERMISSION_DENIED);
    const bidiRefused = await batch(port, { token: await token({ role: "client" }) });
    assert.equal(bidiRefused.code, grpc.status.PERMISSION_DENIED);
    assert.match(bidiRefused.details, /may not call "\/tinykv.v1.KvNode\/Batch": only gateway/);
    assert.deepEqual(reached, []);
    assert.equal(await send(port, { token: await token({ role: "kvnode", sub: "n-7" }) }), 0);
    const bidi = await batch(port, { token: await token({ role: "gateway", sub: "g-1" }) });
    assert.equal(bidi.code, grpc.status.OK);
    assert.deepEqual(reached, ["Send by n-7", "Batch by g-1"]);
    const error = failureFromError(noToken as grpc.ServiceError);
    assert.equal(error.kind, "unauthenticated");
  });
});

Deno.test("this runtime's grpc-js server can require client certificates of its CA", async () => {
  // Mutual TLS could be added under the tokens: a valid certificate passes; none, or one of
  // another CA, is refused at the handshake. (Deno 2.9.3 needs the server's CA for any TLS.)
  const client = await makeCertificate(dir, ca, "client", ["client.tinykv.test"]);
  const otherCa = await makeCertificateAuthority(`${dir}/other-ca`);
  const stranger = await makeCertificate(`${dir}/other`, otherCa, "client", ["client.tinykv.test"]);
  const grpcServer = new grpc.Server();
  grpcServer.addService(KVService, {
    Get: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback(null, { found: false, value: new Uint8Array() }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createSsl(
        Buffer.from(caPem),
        [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }],
        true,
      ),
      (error, bound) => error === null ? resolve(bound) : reject(error),
    )
  );
  const Client = grpc.makeGenericClientConstructor(KVService, "KV");
  const call = async (identity?: { key: string; cert: string }) => {
    const credentials = identity === undefined
      ? grpc.credentials.createSsl(Buffer.from(caPem))
      : grpc.credentials.createSsl(
        Buffer.from(caPem),
        Buffer.from(await Deno.readTextFile(identity.key)),
        Buffer.from(await Deno.readTextFile(identity.cert)),
      );
    const mutual = new Client(`127.0.0.1:${port}`, credentials, {
      "grpc.ssl_target_name_override": "tinykv.test",
      "grpc.default_authority": "tinykv.test",
      "grpc.use_local_subchannel_pool": 1,
    }) as unknown as grpc.Client & {
      Get(
        request: unknown,
        options: grpc.CallOptions,
        callback: (error: grpc.ServiceError | null) => void,
      ): void;
    };
    const outcome = await new Promise<grpc.ServiceError | null>((resolve) =>
      mutual.Get({ key: new Uint8Array([1]) }, { deadline: Date.now() + 3000 }, resolve)
    );
    mutual.close();
    return outcome?.code ?? grpc.status.OK;
  };
  try {
    assert.equal(await call(client), grpc.status.OK, "a certificate of the CA");
    assert.equal(await call(), grpc.status.UNAVAILABLE, "no certificate");
    assert.equal(await call(stranger), grpc.status.UNAVAILABLE, "another CA's certificate");
  } finally {
    grpcServer.forceShutdown();
  }
});

addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
