/**
 * A real grpc-js server (startGrpcServer, which installs decompress_guard.ts) sent compressed
 * requests on a raw HTTP/2 connection: a message flagged gzip or deflate that is not, a flag
 * without an encoding, a flag of 2, a real gzip message (served), and one that inflates to the
 * message limit exactly (served) or one byte past it (RESOURCE_EXHAUSTED). Each is answered with
 * its status and reason, and the server keeps serving.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import zlib from "node:zlib";
import { GetRequest, KVService } from "../../proto/gen/tinykv/v1.ts";
import { createGrpcClient, startGrpcServer, unaryCaller } from "./mod.ts";
import { kvTestService } from "./testdata/kv_service.ts";

const MESSAGE_BYTES_MAX = 4096;
const GET = "/tinykv.v1.KV/Get";

interface Answer {
  status: number;
  message: string;
}

/** One gRPC frame: the compressed flag, the length and `payload`. */
function frame(flag: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(flag, 0);
  header.writeUInt32BE(payload.byteLength, 1);
  return Buffer.concat([header, payload]);
}

/** A unary call of `path` with `body` on its own HTTP/2 connection: its status and message. */
function rawCall(port: number, body: Buffer, headers: Record<string, string> = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error("no answer in 10 s"));
    }, 10_000);
    session.on("error", () => {});
    const request = session.request({
      ":method": "POST",
      ":path": GET,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const fields: Record<string, unknown> = {};
    request.on("response", (h) => Object.assign(fields, h));
    request.on("trailers", (h) => Object.assign(fields, h));
    request.on("error", () => {});
    request.on("data", () => {});
    request.on("close", () => {
      clearTimeout(timer);
      session.destroy();
      resolve({
        status: Number(fields["grpc-status"] ?? -1),
        message: decodeURIComponent(String(fields["grpc-message"] ?? "")),
      });
    });
    request.end(body);
  });
}

/** A GetRequest encoded to exactly `bytes` bytes (a key of the rest). */
function getOf(bytes: number): Uint8Array {
  for (let key = bytes; key > 0; key--) {
    const request = { key: new Uint8Array(key).fill(0x6b), serializable: false };
    const encoded = GetRequest.encode(request);
    if (encoded.byteLength === bytes) return encoded;
  }
  throw new Error(`No GetRequest of ${bytes} bytes`);
}

Deno.test("compressed requests: malformed ones are answered with their reason, and the server serves on", async () => {
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: MESSAGE_BYTES_MAX,
    services: [kvTestService({})],
  });
  const client = createGrpcClient(KVService, `127.0.0.1:${server.port}`, {
    maxMessageBytes: MESSAGE_BYTES_MAX,
  });
  const serves = async () => {
    const answer = await unaryCaller(client, "Get")(
      { key: new Uint8Array([1]), serializable: false },
      { deadlineMs: 5000 },
    );
    assert.equal(answer.kind, "ok");
  };
  try {
    const plain = Buffer.from(getOf(100));
    for (const encoding of ["gzip", "deflate"]) {
      const garbage = await rawCall(server.port, frame(1, plain), { "grpc-encoding": encoding });
      assert.equal(garbage.status, 13, `${encoding}: INTERNAL, ${JSON.stringify(garbage)}`);
      assert.match(garbage.message, new RegExp(`${encoding} message cannot be decompressed: `));
      await serves();
    }
    const unnamed = await rawCall(server.port, frame(1, plain));
    assert.equal(unnamed.status, 13, JSON.stringify(unnamed));
    assert.match(unnamed.message, /flagged as compressed, but the call names no encoding/);
    const two = await rawCall(server.port, frame(2, plain));
    assert.equal(two.status, 13, JSON.stringify(two));
    assert.match(two.message, /compressed flag 2/);
    await serves();

    // Real compression is served; an inflated message at the limit too, one byte past it not.
    for (
      const [encoding, compress] of [["gzip", zlib.gzipSync], [
        "deflate",
        zlib.deflateSync,
      ]] as const
    ) {
      const served = await rawCall(server.port, frame(1, compress(plain)), {
        "grpc-encoding": encoding,
      });
      assert.deepEqual(served, { status: 0, message: "OK" }, encoding);
      const atLimit = compress(getOf(MESSAGE_BYTES_MAX));
      assert.deepEqual(
        await rawCall(server.port, frame(1, atLimit), { "grpc-encoding": encoding }),
        { status: 0, message: "OK" },
        `${encoding} at the limit`,
      );
      const past = await rawCall(server.port, frame(1, compress(getOf(MESSAGE_BYTES_MAX + 1))), {
        "grpc-encoding": encoding,
      });
      assert.equal(
        past.status,
        8,
        `${encoding} one past: RESOURCE_EXHAUSTED, ${JSON.stringify(past)}`,
      );
      assert.match(past.message, /decompresses to a size larger than 4096/);
    }
    await serves();
  } finally {
    client.close();
    await server.shutdown(1000);
  }
});
