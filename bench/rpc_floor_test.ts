/**
 * Tests of the floor benchmark (rpc_floor.ts): frames split at every possible boundary and in
 * seeded random chunks come out whole and in order; a length over the bound is refused and its
 * connection closed; the bare HTTP/2 server answers a grpc-js client's unary calls, the longest
 * message it takes whole and one byte more, or a body that is not one message, with a precise
 * status; a small cell of each transport runs end to end against its server process.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import {
  checkWhole,
  declaredLength,
  floorTable,
  FrameReader,
  frames,
  grpcMessage,
  KINDS,
  measureCell,
  RequestError,
  serveBareUnary,
  serveTcp,
} from "./rpc_floor.ts";

function payload(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
}

Deno.test("frames() lays out each copy behind its 4-byte big-endian length", () => {
  const bytes = frames(Uint8Array.of(7, 8, 9), 2);
  assert.deepEqual([...bytes], [0, 0, 0, 3, 7, 8, 9, 0, 0, 0, 3, 7, 8, 9]);
  assert.equal(frames(new Uint8Array(0), 3).length, 12);
});

Deno.test("FrameReader returns whole frames whatever the chunk boundaries", () => {
  const sent = [payload(300, 1), payload(0, 2), payload(60, 3), payload(5000, 4), payload(1, 5)];
  const stream = new Uint8Array(sent.reduce((sum, p) => sum + 4 + p.length, 0));
  let at = 0;
  for (const p of sent) {
    stream.set(frames(p, 1), at);
    at += 4 + p.length;
  }
  // Every split into two chunks.
  for (let cut = 0; cut <= stream.length; cut++) {
    const reader = new FrameReader();
    const got = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
    assert.deepEqual(got, sent, `split at ${cut}`);
    assert.equal(reader.pending, 0);
  }
  // Seeded random chunk sizes, one byte up to a few kilobytes.
  let state = 0x2545f491;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  for (let round = 0; round < 200; round++) {
    const reader = new FrameReader();
    const got: Uint8Array[] = [];
    for (let from = 0; from < stream.length;) {
      const size = 1 + (next() % (round % 2 === 0 ? 7 : 3000));
      got.push(...reader.push(stream.subarray(from, from + size)));
      from += size;
    }
    assert.deepEqual(got, sent, `round ${round}`);
  }
});

Deno.test("FrameReader holds an incomplete frame until it is whole", () => {
  const reader = new FrameReader();
  const one = frames(payload(10, 9), 1);
  assert.deepEqual(reader.push(one.subarray(0, 3)), []);
  assert.equal(reader.pending, 3);
  assert.deepEqual(reader.push(one.subarray(3, 13)), []);
  assert.equal(reader.pending, 13);
  assert.deepEqual(reader.push(one.subarray(13)), [payload(10, 9)]);
  assert.equal(reader.pending, 0);
});

Deno.test("FrameReader refuses a length over its bound", () => {
  const reader = new FrameReader();
  assert.throws(
    () => reader.push(Uint8Array.of(0x7f, 0xff, 0xff, 0xff)),
    /A frame of 2147483647 bytes is over the bound of 1048576/,
  );
  // At the bound: held, not refused; one byte past it: refused.
  const atBound = new FrameReader();
  assert.deepEqual(atBound.push(Uint8Array.of(0x00, 0x10, 0x00, 0x00)), []);
  assert.equal(atBound.pending, 4);
  assert.throws(
    () => new FrameReader().push(Uint8Array.of(0x00, 0x10, 0x00, 0x01)),
    /A frame of 1048577 bytes is over the bound of 1048576/,
  );
  // A whole frame of exactly the bound comes out whole.
  const whole = new FrameReader().push(frames(payload(1 << 20, 7), 1));
  assert.equal(whole.length, 1);
  assert.deepEqual(whole[0], payload(1 << 20, 7));
});

Deno.test("floorTable prints one row per cell", () => {
  const table = floorTable([{
    kind: "unary",
    inFlight: 16,
    calls: 10_000,
    callsPerSecond: 5726.4,
    clientCpuMicrosPerCall: 158.44,
    serverCpuMicrosPerCall: 104.95,
  }]);
  assert.equal(
    table.split("\n")[2],
    "| unary | 16 | 5,726 | 158.4 | 105.0 |",
  );
});

Deno.test("serveTcp answers each frame and closes a connection that sends one over the bound", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) served.push(serveTcp(conn, Uint8Array.of(1, 2, 3)));
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(frames(Uint8Array.of(9), 2));
    const reader = new FrameReader();
    const got: Uint8Array[] = [];
    const buffer = new Uint8Array(64);
    while (got.length < 2) {
      const read = await conn.read(buffer);
      assert.notEqual(read, null);
      got.push(...reader.push(buffer.subarray(0, read!)));
    }
    assert.deepEqual(got, [Uint8Array.of(1, 2, 3), Uint8Array.of(1, 2, 3)]);
    // A length over the bound: the server closes the connection instead of waiting for it.
    await conn.write(Uint8Array.of(0x7f, 0xff, 0xff, 0xff));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      conn.read(buffer),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve("still open"), 10_000))),
    ]);
    clearTimeout(timer);
    assert.equal(ended, null);
    conn.close();
  } finally {
    listener.close();
    await accepting.catch(() => {});
    await Promise.all(served);
  }
});

Deno.test("grpcMessage, declaredLength and checkWhole: one uncompressed message, up to the bound and not past it", () => {
  assert.deepEqual(grpcMessage(Uint8Array.of(7, 8)), Uint8Array.of(0, 0, 0, 0, 2, 7, 8));
  assert.equal(declaredLength(grpcMessage(Uint8Array.of(7, 8))), 2);
  assert.equal(declaredLength(grpcMessage(new Uint8Array(0))), 0);
  const most = grpcMessage(payload(1 << 20, 5));
  assert.equal(declaredLength(most), 1 << 20);
  checkWhole(most.length, 1 << 20);
  checkWhole(5, 0);
  const refused = (check: () => unknown, code: grpc.status, reason: RegExp) =>
    assert.throws(check, (error: unknown) => {
      assert.ok(error instanceof RequestError);
      assert.equal(error.code, code);
      assert.match(error.message, reason);
      return true;
    });
  const { RESOURCE_EXHAUSTED, INVALID_ARGUMENT } = grpc.status;
  refused(
    () => declaredLength(grpcMessage(payload((1 << 20) + 1, 5))),
    RESOURCE_EXHAUSTED,
    /1048577 bytes is over the bound of 1048576/,
  );
  refused(() => declaredLength(Uint8Array.of(0, 0, 0)), INVALID_ARGUMENT, /no whole gRPC message/);
  refused(() => declaredLength(Uint8Array.of(1, 0, 0, 0, 1, 9)), INVALID_ARGUMENT, /compressed/);
  refused(() => checkWhole(3, undefined), INVALID_ARGUMENT, /3 bytes holds no whole gRPC message/);
  refused(() => checkWhole(7, 1), INVALID_ARGUMENT, /7 bytes is not one message of 1 bytes/);
  refused(() => checkWhole(6, 2), INVALID_ARGUMENT, /6 bytes is not one message of 2 bytes/);
});

/** Resolves with `promise`, or fails after `ms` (a server that stops answering fails the test). */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

Deno.test("serveBareUnary answers grpc-js unary calls, refuses what is not one message within the bound", async () => {
  const server = http2.createServer();
  const answer = Uint8Array.of(4, 5, 6);
  serveBareUnary(server, answer);
  const port = await new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port))
  );
  const definition = {
    Unary: {
      path: "/tinykv.bench.Floor/Unary",
      requestStream: false,
      responseStream: false,
      requestSerialize: (bytes: Uint8Array) => Buffer.from(bytes),
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: (bytes: Uint8Array) => Buffer.from(bytes),
      responseDeserialize: (bytes: Buffer) => bytes,
    },
  };
  const Client = grpc.makeGenericClientConstructor(
    definition as unknown as grpc.ServiceDefinition,
    "Floor",
  );
  const client = new Client(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as {
    Unary(
      request: Uint8Array,
      options: grpc.CallOptions,
      done: (error: grpc.ServiceError | null, got?: Buffer) => void,
    ): void;
    close(): void;
  };
  const call = (request: Uint8Array) =>
    new Promise<{ error: grpc.ServiceError | null; got?: Buffer }>((resolve) =>
      client.Unary(
        request,
        { deadline: Date.now() + 10_000 },
        (error, got) => resolve({ error, got }),
      )
    );
  const raw = http2.connect(`http://127.0.0.1:${port}`);
  raw.on("error", () => {});
  /** Sends `body` below grpc-js, ending the stream or not; resolves with the answer's headers. */
  const send = (body: Uint8Array, end: boolean) =>
    within(
      10_000,
      "a raw request",
      new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const stream = raw.request({
          ":method": "POST",
          ":path": "/tinykv.bench.Floor/Unary",
          "content-type": "application/grpc",
        });
        stream.on("response", resolve);
        stream.on("error", reject);
        stream.resume();
        if (end) stream.end(Buffer.from(body));
        else stream.write(Buffer.from(body));
      }),
    );
  const status = (headers: http2.IncomingHttpHeaders) => ({
    code: Number(headers["grpc-status"]),
    message: decodeURIComponent(String(headers["grpc-message"])),
  });
  try {
    const small = await call(Uint8Array.of(1));
    assert.equal(small.error, null);
    assert.deepEqual(new Uint8Array(small.got!), answer);
    const atBound = await call(payload(1 << 20, 3));
    assert.equal(atBound.error, null);
    assert.deepEqual(new Uint8Array(atBound.got!), answer);
    const past = await call(payload((1 << 20) + 1, 3));
    assert.equal(past.error?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(past.error!.details, /1048577 bytes is over the bound of 1048576/);
    // A prefix declaring 2 MiB, its stream left open: refused at once, the rest never read.
    const declared = status(await send(Uint8Array.of(0, 0, 0x20, 0, 0), false));
    assert.equal(declared.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(declared.message, /2097152 bytes is over/);
    // A body running past the message its prefix declares, its stream left open: refused at once.
    const longer = status(await send(Uint8Array.of(0, 0, 0, 0, 1, 7, 7), false));
    assert.equal(longer.code, grpc.status.INVALID_ARGUMENT);
    assert.match(longer.message, /7 bytes so far is not one message of 1 bytes/);
    // Compressed, or short of the message it declares: INVALID_ARGUMENT, with the reason.
    const compressed = status(await send(Uint8Array.of(1, 0, 0, 0, 1, 7), true));
    assert.equal(compressed.code, grpc.status.INVALID_ARGUMENT);
    assert.match(compressed.message, /compressed/);
    const short = status(await send(Uint8Array.of(0, 0, 0, 0, 9, 1), true));
    assert.equal(short.code, grpc.status.INVALID_ARGUMENT);
    assert.match(short.message, /not one message of 9 bytes/);
    const noPrefix = status(await send(Uint8Array.of(0, 0), true));
    assert.equal(noPrefix.code, grpc.status.INVALID_ARGUMENT);
    assert.match(noPrefix.message, /2 bytes holds no whole gRPC message/);
    // And the server goes on answering.
    const after = await call(Uint8Array.of(2));
    assert.equal(after.error, null);
    assert.deepEqual(new Uint8Array(after.got!), answer);
  } finally {
    // Destroyed, not closed: a graceful close would wait for the streams left open above.
    raw.destroy();
    client.close();
    await within(10_000, "the server's close", new Promise((resolve) => server.close(resolve)));
  }
});

for (const kind of KINDS) {
  Deno.test(`measureCell runs a small ${kind} cell against its own server process`, async () => {
    const cell = await measureCell(kind, 4, 200);
    assert.equal(cell.kind, kind);
    assert.equal(cell.calls, 200);
    assert.ok(cell.callsPerSecond > 0 && Number.isFinite(cell.callsPerSecond));
    assert.ok(cell.clientCpuMicrosPerCall >= 0 && cell.serverCpuMicrosPerCall >= 0);
  });
}
