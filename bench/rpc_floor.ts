/**
 * `deno task bench:rpc-floor`: what one message exchange costs in CPU on this machine, below any
 * TinyKV code — the floor under every hop a request takes (load driver → gateway → leader →
 * followers and back). Each cell runs a server in a child process and a closed loop of requests
 * from this process, both with nothing but the transport in between:
 *
 * - `unary`: a grpc-js unary call served by a grpc-js server (the gateway's client port, and
 *   etcd's clients' calls to the gateway);
 * - `h2`: the same grpc-js unary call served by a bare `node:http2` server that frames gRPC itself
 *   (headers, one length-prefixed message, `grpc-status` trailers; no grpc-js in the server): a
 *   lower bound on what a gRPC layer of our own on Deno's `node:http2` would cost (it checks no
 *   path, metadata or deadline), and so what part of `unary`'s server cost is grpc-js's and what
 *   part Deno's HTTP/2;
 * - `stream`: one message each way on an open grpc-js bidirectional stream (the gateway's `Batch`
 *   stream to a kvnode, the Raft transport's `Send` stream);
 * - `tcp`: one length-prefixed frame each way on a Deno TCP connection (what a framing of our own
 *   over `Deno.connect` would cost). With several in flight the server answers all the frames of
 *   one read in one write, and the client sends its refills together, as a transport that batches
 *   per flush does; the other cells write each message by itself.
 *
 * A request carries 300 bytes and an answer 60 (about a put of a 256-byte value and its answer),
 * at 1, 16 and 256 in flight. It reports calls per second and the CPU time per call of the client
 * (this process, `process.cpuUsage`) and of the server (the child's own `process.cpuUsage`,
 * between a "start" and a "stop" this process writes to its stdin), each over the measured calls
 * after a warm-up.
 *
 * ```sh
 * deno task bench:rpc-floor                      # every cell, 10,000 calls each
 * deno task bench:rpc-floor --calls=20000 --kinds=unary,h2 --in-flight=1,16,64
 * ```
 *
 * @module
 */
import process from "node:process";
import { Buffer } from "node:buffer";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";

/** The transports measured. */
export const KINDS = ["unary", "h2", "stream", "tcp"] as const;
export type Kind = typeof KINDS[number];

/** Bytes of a request and of an answer. */
export const REQUEST_BYTES = 300;
export const ANSWER_BYTES = 60;
/** Calls before the measured ones, per cell. */
const WARMUP_CALLS = 1_000;
/** Bytes of a frame's length prefix (`tcp`). */
const PREFIX_BYTES = 4;
/** The longest any one step of a cell may take (starting, warming up, the calls, a sample). */
const STEP_MS = 120_000;
/** A frame longer than this is a broken peer (`tcp`); the longest gRPC message `h2` takes. */
const FRAME_BYTES_MAX = 1 << 20;
/** Bytes before a gRPC message on the wire: a compressed flag and a 4-byte big-endian length. */
const GRPC_PREFIX_BYTES = 5;

/** One cell's result. */
export interface FloorCell {
  readonly kind: Kind;
  readonly inFlight: number;
  readonly calls: number;
  readonly callsPerSecond: number;
  readonly clientCpuMicrosPerCall: number;
  readonly serverCpuMicrosPerCall: number;
}

/**
 * Splits a byte stream into length-prefixed frames (a 4-byte big-endian length, then that many
 * bytes), whatever the chunks it arrives in.
 */
export class FrameReader {
  #buffer = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  /** Takes a chunk; returns the frames it completed, in order (copies). */
  push(chunk: Uint8Array): Uint8Array[] {
    this.#reserve(chunk.length);
    this.#buffer.set(chunk, this.#end);
    this.#end += chunk.length;
    const frames: Uint8Array[] = [];
    while (this.#end - this.#start >= PREFIX_BYTES) {
      const view = new DataView(this.#buffer.buffer, this.#start, PREFIX_BYTES);
      const length = view.getUint32(0);
      if (length > FRAME_BYTES_MAX) {
        throw new RangeError(`A frame of ${length} bytes is over the bound of ${FRAME_BYTES_MAX}`);
      }
      if (this.#end - this.#start < PREFIX_BYTES + length) break;
      const from = this.#start + PREFIX_BYTES;
      frames.push(this.#buffer.slice(from, from + length));
      this.#start = from + length;
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return frames;
  }

  /** Bytes of an incomplete frame held. */
  get pending(): number {
    return this.#end - this.#start;
  }

  #reserve(bytes: number): void {
    if (this.#end + bytes <= this.#buffer.length) return;
    const held = this.#end - this.#start;
    if (held + bytes <= this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      let size = this.#buffer.length;
      while (held + bytes > size) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = next;
    }
    this.#start = 0;
    this.#end = held;
  }
}

/** `count` copies of `payload`, each behind its length prefix, in one buffer. */
export function frames(payload: Uint8Array, count: number): Uint8Array {
  const one = PREFIX_BYTES + payload.length;
  const out = new Uint8Array(one * count);
  const view = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    view.setUint32(i * one, payload.length);
    out.set(payload, i * one + PREFIX_BYTES);
  }
  return out;
}

/** `payload` as one uncompressed gRPC message on the wire (its 5-byte prefix, then it). */
export function grpcMessage(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(GRPC_PREFIX_BYTES + payload.length);
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, GRPC_PREFIX_BYTES);
  return out;
}

/** Why a request's body is refused, with the gRPC status it gets. */
export class RequestError extends RangeError {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/**
 * The length a gRPC message's 5-byte prefix (at the start of `bytes`) declares, if the message is
 * one `h2` takes: uncompressed and at most {@linkcode FRAME_BYTES_MAX} bytes. Otherwise throws a
 * {@linkcode RequestError} naming the reason.
 */
export function declaredLength(bytes: Uint8Array): number {
  if (bytes.length < GRPC_PREFIX_BYTES) {
    throw new RequestError(
      grpc.status.INVALID_ARGUMENT,
      `A body of ${bytes.length} bytes holds no whole gRPC message`,
    );
  }
  if (bytes[0] !== 0) {
    throw new RequestError(
      grpc.status.INVALID_ARGUMENT,
      `A compressed message (flag ${bytes[0]}) is not taken`,
    );
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint32(1);
  if (length > FRAME_BYTES_MAX) {
    throw new RequestError(
      grpc.status.RESOURCE_EXHAUSTED,
      `A message of ${length} bytes is over the bound of ${FRAME_BYTES_MAX}`,
    );
  }
  return length;
}

/**
 * Throws a {@linkcode RequestError} unless a body of `bytes` bytes is exactly the one message its
 * prefix declared (`declared`, from {@linkcode declaredLength}; undefined if no prefix came whole).
 */
export function checkWhole(bytes: number, declared: number | undefined): void {
  if (declared === undefined) {
    throw new RequestError(
      grpc.status.INVALID_ARGUMENT,
      `A body of ${bytes} bytes holds no whole gRPC message`,
    );
  }
  if (bytes !== GRPC_PREFIX_BYTES + declared) {
    throw new RequestError(
      grpc.status.INVALID_ARGUMENT,
      `A body of ${bytes} bytes is not one message of ${declared} bytes and its prefix`,
    );
  }
}

/**
 * Serves every stream of `server` as a unary gRPC call answered with `answer`, with no grpc-js:
 * the request's body is gathered, then headers, the message and `grpc-status: 0` trailers go back.
 * What it checks is the body alone (no path, method, content type, metadata or deadline, and none
 * of grpc-js's encoding headers or `grpc-message` trailer go back): a message over the bound gets
 * `RESOURCE_EXHAUSTED` as soon as its prefix is in, without reading the rest, and a body that is
 * not one whole uncompressed message `INVALID_ARGUMENT` (at once if it runs past the message its
 * prefix declares), each as a trailers-only answer naming the reason.
 */
export function serveBareUnary(server: http2.Http2Server, answer: Uint8Array): void {
  const framed = Buffer.from(grpcMessage(answer));
  const refuse = (stream: http2.ServerHttp2Stream, error: unknown) => {
    if (stream.headersSent || stream.destroyed) return;
    const code = error instanceof RequestError ? error.code : grpc.status.INTERNAL;
    stream.respond({
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": String(code),
      "grpc-message": encodeURIComponent((error as Error).message),
    }, { endStream: true });
    stream.close(http2.constants.NGHTTP2_NO_ERROR);
  };
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    const prefix: Buffer[] = [];
    let bytes = 0;
    let declared: number | undefined;
    stream.on("error", () => {});
    stream.on("data", (chunk: Buffer) => {
      if (stream.headersSent) return;
      bytes += chunk.length;
      try {
        if (declared === undefined) {
          // Only the chunks before the prefix is whole are kept; the message itself is not used.
          prefix.push(chunk);
          if (bytes >= GRPC_PREFIX_BYTES) {
            declared = declaredLength(prefix.length === 1 ? chunk : Buffer.concat(prefix));
          }
        }
        if (declared !== undefined && bytes > GRPC_PREFIX_BYTES + declared) {
          throw new RequestError(
            grpc.status.INVALID_ARGUMENT,
            `A body of ${bytes} bytes so far is not one message of ${declared} bytes and its prefix`,
          );
        }
      } catch (error) {
        refuse(stream, error);
      }
    });
    stream.on("end", () => {
      if (stream.headersSent || stream.destroyed) return;
      try {
        checkWhole(bytes, declared);
      } catch (error) {
        return refuse(stream, error);
      }
      stream.respond(
        { ":status": 200, "content-type": "application/grpc" },
        { waitForTrailers: true },
      );
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(framed);
    });
  });
}

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
const same = (bytes: Buffer) => bytes;
const METHODS = {
  Unary: {
    path: "/tinykv.bench.Floor/Unary",
    requestStream: false,
    responseStream: false,
    requestSerialize: asBuffer,
    requestDeserialize: same,
    responseSerialize: asBuffer,
    responseDeserialize: same,
  },
  Stream: {
    path: "/tinykv.bench.Floor/Stream",
    requestStream: true,
    responseStream: true,
    requestSerialize: asBuffer,
    requestDeserialize: same,
    responseSerialize: asBuffer,
    responseDeserialize: same,
  },
} as const;
const GRPC_OPTIONS = { "grpc.enable_channelz": 0, "grpc.use_local_subchannel_pool": 1 };

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

// --- Server (the child process) --------------------------------------------------------------

async function serve(kind: Kind): Promise<void> {
  const answer = new Uint8Array(ANSWER_BYTES).fill(0x61);
  let stop: () => Promise<void>;
  let port: number;
  if (kind === "tcp") {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    port = (listener.addr as Deno.NetAddr).port;
    const open = new Set<Deno.Conn>();
    (async () => {
      for await (const conn of listener) {
        open.add(conn);
        conn.setNoDelay(true);
        serveTcp(conn, answer).finally(() => open.delete(conn));
      }
    })().catch(() => {});
    stop = () => {
      listener.close();
      for (const conn of open) conn.close();
      return Promise.resolve();
    };
  } else if (kind === "h2") {
    const server = http2.createServer();
    serveBareUnary(server, answer);
    port = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port));
    });
    stop = () => {
      server.close();
      return Promise.resolve();
    };
  } else {
    const server = new grpc.Server(GRPC_OPTIONS);
    server.addService(METHODS as unknown as grpc.ServiceDefinition, {
      Unary: (_call: unknown, callback: grpc.sendUnaryData<Uint8Array>) => callback(null, answer),
      Stream: (call: grpc.ServerDuplexStream<Uint8Array, Uint8Array>) => {
        call.on("data", () => call.write(answer));
        call.on("end", () => call.end());
        call.on("error", () => {});
      },
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        "127.0.0.1:0",
        grpc.ServerCredentials.createInsecure(),
        (error, bound) => error ? reject(error) : resolve(bound),
      )
    );
    stop = () => {
      server.forceShutdown();
      return Promise.resolve();
    };
  }
  console.log(JSON.stringify({ port }));
  // The measured window: from "start" (answered "started", so the client starts its clock after
  // the sample) to "stop" (answered with the CPU used since). The end of stdin ends the process.
  let since = cpuMicros();
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line === "start") {
      since = cpuMicros();
      console.log(JSON.stringify({ started: true }));
    } else if (line === "stop") {
      console.log(JSON.stringify({ cpuMicros: cpuMicros() - since }));
    }
  }
  await stop();
}

/** Answers every frame read on `conn` with `answer` until the peer goes; then closes it. */
export async function serveTcp(conn: Deno.Conn, answer: Uint8Array): Promise<void> {
  const reader = new FrameReader();
  const buffer = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const read = await conn.read(buffer);
      if (read === null) return;
      const requests = reader.push(buffer.subarray(0, read)).length;
      if (requests > 0) await writeAll(conn, frames(answer, requests));
    }
  } catch {
    // The client went away, or sent a frame over the bound.
  } finally {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

// --- Client (this process) -------------------------------------------------------------------

/** Runs `calls` requests with `inFlight` outstanding; resolves when all are answered. */
type Loop = (calls: number, inFlight: number) => Promise<void>;

function grpcLoop(
  kind: "unary" | "h2" | "stream",
  port: number,
  request: Uint8Array,
): { loop: Loop; close: () => void } {
  const Client = grpc.makeGenericClientConstructor(
    METHODS as unknown as grpc.ServiceDefinition,
    "Floor",
  );
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), GRPC_OPTIONS);
  const typed = client as unknown as {
    Unary(request: Uint8Array, done: (error: grpc.ServiceError | null) => void): void;
    Stream(): grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
  };
  if (kind !== "stream") {
    const loop: Loop = (calls, inFlight) => {
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      let sent = 0;
      let answered = 0;
      const one = () => {
        sent++;
        typed.Unary(request, (error) => {
          if (error !== null) return reject(error);
          if (++answered === calls) resolve();
          else if (sent < calls) one();
        });
      };
      for (let i = 0; i < Math.min(inFlight, calls); i++) one();
      return promise;
    };
    return { loop, close: () => client.close() };
  }
  const call = typed.Stream();
  let onAnswer = () => {};
  // Kept: an error between two loops fails the next one at once.
  let failed: Error | undefined;
  let onError = (_error: Error) => {};
  call.on("data", () => onAnswer());
  call.on("error", (error: Error) => {
    failed = error;
    onError(error);
  });
  const loop: Loop = (calls, inFlight) => {
    if (failed !== undefined) return Promise.reject(failed);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    let sent = 0;
    let answered = 0;
    onError = reject;
    onAnswer = () => {
      if (++answered === calls) resolve();
      else if (sent < calls) {
        sent++;
        call.write(request);
      }
    };
    for (; sent < Math.min(inFlight, calls); sent++) call.write(request);
    return promise;
  };
  return {
    loop,
    close: () => {
      call.end();
      call.cancel();
      client.close();
    },
  };
}

async function tcpLoop(
  port: number,
  request: Uint8Array,
): Promise<{ loop: Loop; close: () => void }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const reader = new FrameReader();
  const buffer = new Uint8Array(64 * 1024);
  const loop: Loop = async (calls, inFlight) => {
    let sent = Math.min(inFlight, calls);
    let answered = 0;
    await writeAll(conn, frames(request, sent));
    while (answered < calls) {
      const read = await conn.read(buffer);
      if (read === null) throw new Error("The server closed the connection");
      const answers = reader.push(buffer.subarray(0, read)).length;
      answered += answers;
      const more = Math.min(answers, calls - sent);
      if (more > 0) {
        sent += more;
        await writeAll(conn, frames(request, more));
      }
    }
  };
  return { loop, close: () => conn.close() };
}

/** Measures one cell against a fresh server process. */
export async function measureCell(kind: Kind, inFlight: number, calls: number): Promise<FloorCell> {
  const script = new URL(import.meta.url).pathname;
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env=GRPC_*,grpc_proxy,https_proxy,http_proxy,no_grpc_proxy,no_proxy",
      script,
      `--serve=${kind}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = readLines(child.stdout);
  const stdin = child.stdin.getWriter();
  const tell = (line: string) => stdin.write(new TextEncoder().encode(`${line}\n`));
  // No step waits forever: a server that stops answering fails the cell.
  const bounded = <T>(what: string, step: Promise<T>) =>
    Promise.race([
      step,
      new Promise<never>((_, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`rpc-floor ${kind} ×${inFlight}: ${what} took over ${STEP_MS} ms`)),
          STEP_MS,
        );
        step.finally(() => clearTimeout(timer)).catch(() => {});
      }),
    ]);
  let client: { loop: Loop; close: () => void } | undefined;
  try {
    const { port } = JSON.parse(await bounded("the server's start", nextLine(lines))) as {
      port: number;
    };
    const request = new Uint8Array(REQUEST_BYTES).fill(0x62);
    client = kind === "tcp" ? await tcpLoop(port, request) : grpcLoop(kind, port, request);
    await bounded("the warm-up", client.loop(WARMUP_CALLS, inFlight));
    await tell("start");
    await bounded("the server's sample", nextLine(lines));
    const clientBefore = cpuMicros();
    const started = performance.now();
    await bounded("the measured calls", client.loop(calls, inFlight));
    const seconds = (performance.now() - started) / 1000;
    const clientMicros = cpuMicros() - clientBefore;
    await tell("stop");
    const { cpuMicros: serverMicros } = JSON.parse(
      await bounded("the server's sample", nextLine(lines)),
    ) as { cpuMicros: number };
    return {
      kind,
      inFlight,
      calls,
      callsPerSecond: calls / seconds,
      clientCpuMicrosPerCall: clientMicros / calls,
      serverCpuMicrosPerCall: serverMicros / calls,
    };
  } finally {
    client?.close();
    await stdin.close().catch(() => {});
    try {
      child.kill("SIGKILL");
    } catch {
      // It has exited already.
    }
    await child.status;
    await lines.return(undefined);
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let held = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    held += text;
    let newline;
    while ((newline = held.indexOf("\n")) >= 0) {
      yield held.slice(0, newline);
      held = held.slice(newline + 1);
    }
  }
}

async function nextLine(lines: AsyncGenerator<string>): Promise<string> {
  const next = await lines.next();
  if (next.done) throw new Error("The server process ended without answering");
  return next.value;
}

/** The cells as a markdown table. */
export function floorTable(cells: readonly FloorCell[]): string {
  const rows = [
    "| transport | in flight | calls/s | client CPU µs per call | server CPU µs per call |",
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  for (const cell of cells) {
    rows.push(
      `| ${cell.kind} | ${cell.inFlight} | ${
        Math.round(cell.callsPerSecond).toLocaleString("en-US")
      } | ` +
        `${cell.clientCpuMicrosPerCall.toFixed(1)} | ${cell.serverCpuMicrosPerCall.toFixed(1)} |`,
    );
  }
  return rows.join("\n");
}

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  const found = Deno.args.find((arg) => arg.startsWith(prefix));
  return found === undefined ? fallback : found.slice(prefix.length);
}

function positiveIntegers(name: string, text: string): number[] {
  const values = text.split(",").map(Number);
  if (values.some((value) => !(Number.isSafeInteger(value) && value > 0))) {
    throw new RangeError(`--${name} takes positive integers separated by commas: got "${text}"`);
  }
  return values;
}

async function main(): Promise<void> {
  const serveKind = flag("serve", "");
  if (serveKind !== "") {
    if (!(KINDS as readonly string[]).includes(serveKind)) {
      throw new RangeError(`--serve takes one of ${KINDS.join(", ")}: got "${serveKind}"`);
    }
    return await serve(serveKind as Kind);
  }
  // grpc-js's unary calls end in an error object with a stack built by Deno's `node:http2` (see
  // compare_load.ts): a cost of this client, not of any server, skipped as the load driver does.
  // The server process keeps the default, as the gateway does.
  Error.stackTraceLimit = 0;
  const unknown = Deno.args.filter((arg) => !/^--(calls|kinds|in-flight)=/.test(arg));
  if (unknown.length > 0) {
    throw new RangeError(
      `Unknown arguments: ${unknown.join(" ")} (flags: --calls=N --kinds=${KINDS.join(",")} ` +
        `--in-flight=1,16,256)`,
    );
  }
  const callsList = positiveIntegers("calls", flag("calls", "10000"));
  if (callsList.length !== 1) throw new RangeError(`--calls takes one positive integer`);
  const [calls] = callsList;
  const inFlights = positiveIntegers("in-flight", flag("in-flight", "1,16,256"));
  const kinds = flag("kinds", KINDS.join(",")).split(",");
  for (const kind of kinds) {
    if (!(KINDS as readonly string[]).includes(kind)) {
      throw new RangeError(`--kinds takes some of ${KINDS.join(", ")}: got "${kind}"`);
    }
  }
  const cells: FloorCell[] = [];
  for (const kind of kinds as Kind[]) {
    for (const inFlight of inFlights) {
      const cell = await measureCell(kind, inFlight, calls);
      console.error(
        `${kind} ×${inFlight}: ${Math.round(cell.callsPerSecond)} calls/s, client ` +
          `${cell.clientCpuMicrosPerCall.toFixed(1)} µs, server ${
            cell.serverCpuMicrosPerCall.toFixed(1)
          } µs`,
      );
      cells.push(cell);
    }
  }
  console.log(floorTable(cells));
}

if (import.meta.main) await main();
