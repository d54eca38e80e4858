/**
 * Test harnesses every service can reuse for its gRPC server.
 *
 * {@linkcode assertServerSurvivesChannelChurn} (built on {@linkcode assertSurvivesChannelChurn})
 * is the regression test for a Deno bug: Deno 2.9.4 to 2.9.6 abort the *server* process inside
 * nghttp2 (`free(): invalid pointer`, a `find_stream_on_goaway_func` assertion, or a segfault)
 * when grpc-js client channels close right after a burst of traffic on a freshly started server.
 * The server runs in a child process ({@linkcode spawnServerProcess}) so that an abort shows up
 * as a dead child instead of killing the test runner. {@linkcode bidiExchange} makes a
 * bidirectional stream usable as a churn call.
 *
 * @example
 * ```ts ignore
 * await assertServerSurvivesChannelChurn({
 *   script: new URL("./testdata/my_server.ts", import.meta.url),
 *   spawn: { denoFlags: ["--allow-net=127.0.0.1", "--allow-env"] },
 *   definition: MyService,
 *   channels: 40,
 *   callsPerChannel: 10,
 *   makeCall: (client) => unaryCaller(client, "Ping")({}, { deadlineMs: 2000 }),
 * });
 * ```
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { AssertionError } from "./_assert.ts";
import { createGrpcClient, type GrpcClient } from "./client.ts";
import {
  MESSAGE_BYTES_MAX_DEFAULT,
  type MethodKey,
  type RequestOf,
  type ResponseOf,
} from "./server.ts";
import { failureFromError, rpcFailure, rpcOk, type RpcResult } from "./status.ts";

/**
 * How many channels {@linkcode assertSurvivesChannelChurn} opens at once by default: with 10 calls
 * each, a wave puts 200 calls in flight together, a burst that kills a fresh server on the broken
 * Deno versions nearly every time.
 */
export const CHURN_CONCURRENCY_DEFAULT = 20;
/** How long {@linkcode assertSurvivesChannelChurn} waits after the last close before probing. */
export const CHURN_SETTLE_MS_DEFAULT = 200;
/** How many fresh servers {@linkcode assertServerSurvivesChannelChurn} churns by default. */
export const CHURN_SERVERS_DEFAULT = 3;
/** How long {@linkcode spawnServerProcess} waits for the `LISTENING <port>` line. */
export const SPAWN_TIMEOUT_MS_DEFAULT = 15_000;

/** Options of {@linkcode assertSurvivesChannelChurn}. */
export interface ChannelChurnOptions<D extends grpc.ServiceDefinition> {
  /** The service definition to open clients for. */
  definition: D;
  /** The server's `host:port`. */
  address: string;
  /** How many client channels to open and close. */
  channels: number;
  /** How many calls each channel makes, all at once, before it is closed. */
  callsPerChannel: number;
  /**
   * Makes one call; its result must be `ok`. Any kind of call fits: a streaming exchange (e.g. a
   * bidi stream that sends a few messages, reads the answers and ends) resolves to its outcome.
   */
  makeCall: (client: GrpcClient<D>, index: number) => Promise<RpcResult<unknown>>;
  /** The server's process, when it runs in a child: it must still be running at the end. */
  process?: Deno.ChildProcess;
  /**
   * How many channels are open at once (default {@linkcode CHURN_CONCURRENCY_DEFAULT}): the
   * channels go in waves of this many, and `concurrency * callsPerChannel` calls are in flight
   * together at the peak of each wave.
   */
  concurrency?: number;
  /**
   * How long to wait after the last close before probing (default
   * {@linkcode CHURN_SETTLE_MS_DEFAULT}).
   */
  settleMs?: number;
  /** The client's message bound (default `MESSAGE_BYTES_MAX_DEFAULT`). */
  maxMessageBytes?: number;
}

/**
 * Opens `channels` client channels against `address` in waves of `concurrency`. Every channel of a
 * wave starts its `callsPerChannel` calls at once; when all the wave's calls are done, the wave's
 * channels are closed and the next wave opens. Then it waits `settleMs`, checks that the server
 * still answers on fresh channels and, when `process` is given, that the process has not exited.
 *
 * The first wave is the one that matters on the broken Deno versions (2.9.4 to 2.9.6): the server
 * dies right after a freshly started server gets a burst of traffic (e.g. 200 unary calls in
 * flight together over 20 connections, or 10 bidi streams of 200 messages each over 5) and the
 * connections then close. A server that gets through its first burst almost always gets through
 * the later ones, so run this against a fresh server ({@linkcode assertServerSurvivesChannelChurn}
 * does, several times). Calls made one at a time, a first wave too small to be a burst (the
 * load then ramping up), or channels that never close, almost never trigger the crash.
 *
 * @throws {AssertionError} when a call fails or the server died.
 */
export async function assertSurvivesChannelChurn<D extends grpc.ServiceDefinition>(
  options: ChannelChurnOptions<D>,
): Promise<void> {
  let exit: Deno.CommandStatus | undefined;
  void options.process?.status.then((status) => exit = status);
  const open = () =>
    createGrpcClient(options.definition, options.address, {
      maxMessageBytes: options.maxMessageBytes ?? MESSAGE_BYTES_MAX_DEFAULT,
    });
  const checkAlive = () => {
    if (exit !== undefined) {
      throw new AssertionError(
        `Server process exited during channel churn: code ${exit.code}, signal ${exit.signal}`,
      );
    }
  };
  // A call fails when the server dies under it: give the exit status a moment to arrive, so that
  // the error says the process died rather than only that a call failed.
  const expectOk = async (call: Promise<RpcResult<unknown>>) => {
    const result = await call;
    if (result.kind === "ok") return;
    if (options.process !== undefined) {
      await Promise.race([options.process.status, delay(EXIT_WAIT_MS)]);
      checkAlive();
    }
    throw new AssertionError(`Call failed during channel churn: ${result.kind}: ${result.message}`);
  };
  const wave = Math.max(1, options.concurrency ?? CHURN_CONCURRENCY_DEFAULT);
  for (let first = 0; first < options.channels; first += wave) {
    checkAlive();
    const clients = Array.from({ length: Math.min(wave, options.channels - first) }, open);
    try {
      const calls = clients.flatMap((client, i) =>
        Array.from(
          { length: options.callsPerChannel },
          (_, call) =>
            expectOk(options.makeCall(client, (first + i) * options.callsPerChannel + call)),
        )
      );
      const settled = await Promise.allSettled(calls);
      const rejected = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
      if (rejected !== undefined) throw rejected.reason;
    } finally {
      for (const client of clients) client.close();
    }
  }
  await delay(options.settleMs ?? CHURN_SETTLE_MS_DEFAULT);
  checkAlive();
  // Two probes on fresh channels: the crash struck after channels closed, so give it a round trip.
  for (let probe = 0; probe < 2; probe++) {
    const client = open();
    try {
      await expectOk(options.makeCall(client, -1 - probe));
    } finally {
      client.close();
    }
  }
  checkAlive();
}

/** Options of {@linkcode assertServerSurvivesChannelChurn}. */
export interface ServerChurnOptions<D extends grpc.ServiceDefinition>
  extends Omit<ChannelChurnOptions<D>, "address" | "process"> {
  /** The server script for {@linkcode spawnServerProcess}; it must exit with code 0 on SIGTERM. */
  script: string | URL;
  /** How {@linkcode spawnServerProcess} runs it. */
  spawn: SpawnServerOptions;
  /**
   * How many fresh server processes to churn, one after the other (default
   * {@linkcode CHURN_SERVERS_DEFAULT}).
   */
  servers?: number;
}

/**
 * Runs {@linkcode assertSurvivesChannelChurn} against `servers` freshly started server processes,
 * one after the other, and checks that each then exits with code 0 on SIGTERM. A fresh process
 * for each run matters: the crash strikes on a server's first burst or hardly ever. On Deno 2.9.6
 * a first burst of 200 unary calls killed 19 fresh servers of 20, and one of 10 bidi streams of
 * 200 messages 17 of 20, so 3 servers miss the crash well under once in 100 runs.
 *
 * @throws {AssertionError} when a call fails or a server died.
 */
export async function assertServerSurvivesChannelChurn<D extends grpc.ServiceDefinition>(
  options: ServerChurnOptions<D>,
): Promise<void> {
  const { script, spawn, servers = CHURN_SERVERS_DEFAULT, ...churn } = options;
  for (let i = 1; i <= servers; i++) {
    const server = await spawnServerProcess(script, spawn);
    let status: Deno.CommandStatus;
    try {
      await assertSurvivesChannelChurn({
        ...churn,
        address: server.address,
        process: server.process,
      });
    } finally {
      status = await server.stop();
    }
    if (status.code !== 0) {
      throw new AssertionError(
        `Server process ${i} of ${servers} exited on SIGTERM after channel churn with code ` +
          `${status.code}, signal ${status.signal}: expected code 0`,
      );
    }
  }
}

/** The names of the bidirectional-streaming methods of service definition `D`. */
export type BidiMethodName<D extends grpc.ServiceDefinition> = keyof {
  [
    K in keyof D as MethodKey<K> extends never ? never
      : D[K] extends { requestStream: true; responseStream: true } ? K
      : never
  ]: K;
};

/** Options of {@linkcode bidiExchange}. */
export interface BidiExchangeOptions {
  /** How long the exchange may take, in milliseconds from now. */
  deadlineMs: number;
  /** How many answers to wait for (default: one per request). */
  responses?: number;
  /**
   * How the stream ends: `"cancel"` (default) resets it once the answers are in, as a long-lived
   * stream is torn down; `"end"` half-closes it after the last request and waits for the server
   * to end it with OK.
   */
  finish?: "cancel" | "end";
}

/**
 * Makes one bidirectional-streaming exchange, as a `makeCall` of
 * {@linkcode assertSurvivesChannelChurn}: opens `method` on `client`, writes `requests`, reads
 * the answers and ends the stream (see {@linkcode BidiExchangeOptions.finish}). Resolves to the
 * answers, or to the failure that ended the stream early; never rejects.
 *
 * @example
 * ```ts ignore
 * makeCall: (client, i) =>
 *   bidiExchange(client, "Chat", Array.from({ length: 100 }, () => message), { deadlineMs: 5000 }),
 * ```
 */
export function bidiExchange<D extends grpc.ServiceDefinition, K extends BidiMethodName<D>>(
  client: GrpcClient<D>,
  method: K,
  requests: readonly RequestOf<D[K]>[],
  options: BidiExchangeOptions,
): Promise<RpcResult<ResponseOf<D[K]>[]>> {
  const open = (client as unknown as Record<string, unknown>)[method as string] as (
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ) => grpc.ClientDuplexStream<RequestOf<D[K]>, ResponseOf<D[K]>>;
  const expected = options.responses ?? requests.length;
  const finish = options.finish ?? "cancel";
  return new Promise((resolve) => {
    const responses: ResponseOf<D[K]>[] = [];
    let settled = false;
    const settle = (result: RpcResult<ResponseOf<D[K]>[]>) => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const call = open.call(client, new grpc.Metadata(), {
      deadline: Date.now() + options.deadlineMs,
    });
    const done = () => {
      settle(rpcOk(responses));
      call.cancel();
    };
    call.on("data", (response: ResponseOf<D[K]>) => {
      responses.push(response);
      if (finish === "cancel" && responses.length === expected) done();
    });
    // After our own cancel() this reports CANCELLED, which settle() then ignores.
    call.on("error", (error: Error) => settle(failureFromError(error)));
    call.on("status", (status: grpc.StatusObject) => {
      if (status.code !== grpc.status.OK) return; // "error" reports it.
      settle(
        responses.length === expected ? rpcOk(responses) : rpcFailure(
          "internal",
          `Stream "${method as string}" ended after ${responses.length} answers: expected ${expected}`,
        ),
      );
    });
    for (const request of requests) call.write(request);
    if (finish === "end") call.end();
    else if (expected === 0) done();
  });
}

/** How long a failed call waits for the server process's exit status. */
const EXIT_WAIT_MS = 500;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Options of {@linkcode spawnServerProcess}. */
export interface SpawnServerOptions {
  /** Flags for `deno run`, e.g. permissions. */
  denoFlags: readonly string[];
  /** Arguments for the script. */
  args?: readonly string[];
  /** How long to wait for `LISTENING <port>` (default {@linkcode SPAWN_TIMEOUT_MS_DEFAULT}). */
  timeoutMs?: number;
}

/** A server running in a child process. */
export interface ServerProcess {
  /** `127.0.0.1:<port>` as the child announced it. */
  readonly address: string;
  /** The child process. */
  readonly process: Deno.ChildProcess;
  /** Sends SIGTERM and waits for the child to exit; returns its status. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Runs `script` with `deno run` in a child process and waits until it prints `LISTENING <port>`
 * on stdout (the child binds 127.0.0.1). The child's stderr goes to the test's stderr.
 */
export async function spawnServerProcess(
  script: string | URL,
  options: SpawnServerOptions,
): Promise<ServerProcess> {
  const path = script instanceof URL ? decodeURIComponent(script.pathname) : script;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...options.denoFlags, path, ...(options.args ?? [])],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited: the status below says how.
    }
    return await child.status;
  };
  try {
    const port = await readListeningPort(child, options.timeoutMs ?? SPAWN_TIMEOUT_MS_DEFAULT);
    return { address: `127.0.0.1:${port}`, process: child, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function readListeningPort(child: Deno.ChildProcess, timeoutMs: number): Promise<number> {
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Server process printed no "LISTENING <port>" in ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    let buffered = "";
    while (true) {
      const chunk = await Promise.race([lines.read(), timeout]);
      if (chunk.done) throw new Error(`Server process closed stdout before "LISTENING <port>"`);
      buffered += chunk.value;
      const match = /^LISTENING (\d+)$/m.exec(buffered);
      if (match !== null) return Number(match[1]);
    }
  } finally {
    clearTimeout(timer);
    // Drain the rest of stdout in the background so the child never blocks on a full pipe.
    void drain(lines);
  }
}

async function drain(reader: ReadableStreamDefaultReader<string>): Promise<void> {
  try {
    while (!(await reader.read()).done) {
      // Discard.
    }
  } catch {
    // The child is gone.
  }
}
