// Checks TinyKvClient's retry rules two ways. On a FakeClock with fake gateway connections and a
// fixed PRNG: UNAVAILABLE and DEADLINE_EXCEEDED are retried on the next endpoint after known
// backoffs, with the same (client_id, seq, ack_seq) and the time left as each attempt's deadline;
// the call ends exactly at its deadline, with DEADLINE_EXCEEDED and `outcomeUnknown` when an
// attempt of a mutation may have applied (never for a read); other failures are thrown at once; an
// expired session is replaced for later calls. Against a real server process that dies as soon
// as it receives a call, a mutation ends with its outcome unknown (the request had left; the
// server might have applied it), while a call to an endpoint where nothing listens ends
// UNAVAILABLE with the outcome known: never applied.
import assert from "node:assert/strict";
import {
  type RequestOf,
  rpcFailure,
  type RpcFailureKind,
  rpcOk,
  type RpcResult,
} from "@tinykv/rpc";
import { spawnServerProcess } from "@tinykv/rpc/testing";
import type { KVService } from "@tinykv/proto/tinykv/v1";
import { backoffDelayMs, FakeClock } from "@tinykv/timer";
import { runOnClock } from "./testing.ts";
import {
  type GatewayConnection,
  type KvMethod,
  TinyKvClient,
  TinyKvError,
} from "./tinykv_client.ts";

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

// ---------------------------------------------------------------------------------------------
// On a fake clock, with fake gateways.

const PRNG = () => 0.5;

interface FakeCall {
  readonly endpoint: string;
  readonly method: KvMethod;
  readonly request: RequestOf<(typeof KVService)[KvMethod]>;
  readonly deadlineMs: number;
  readonly at: number;
  /** The `tinykv-trace` metadata the call carried, if any. */
  readonly trace: string | undefined;
}

/** What a fake gateway answers: a result, after `afterMs` on the clock (default at once). */
type FakeAnswer = { readonly result: RpcResult<unknown>; readonly afterMs?: number };

/** A client of fake gateways `a:1` and `b:1` on a fake clock; `answer` decides every call. */
function fakeClient(answer: (call: FakeCall, index: number) => FakeAnswer, deadlineMs = 1000) {
  const clock = new FakeClock();
  const calls: FakeCall[] = [];
  const closed: string[] = [];
  const connect = (endpoint: string): GatewayConnection => ({
    call: ((method, request, options) => {
      const trace = options.metadata?.get("tinykv-trace")[0]?.toString();
      const call = {
        endpoint,
        method,
        request,
        deadlineMs: options.deadlineMs,
        at: clock.now(),
        trace,
      };
      calls.push(call);
      const { result, afterMs } = answer(call, calls.length - 1);
      return new Promise((resolve) =>
        clock.setTimeout(() => resolve(result as never), afterMs ?? 0)
      );
    }) as GatewayConnection["call"],
    close: () => closed.push(endpoint),
  });
  const client = TinyKvClient.connect({
    endpoints: ["a:1", "b:1"],
    deadlineMs,
    clientId: "c-test",
    prng: PRNG,
    clock,
    connect,
  });
  return { clock, calls, closed, client };
}

function fail(kind: RpcFailureKind, afterMs?: number): FakeAnswer {
  return { result: rpcFailure(kind, `Gateway says ${kind}`), afterMs };
}

/** The client's pause after its attempt number `attempt` (0-based) with {@linkcode PRNG}. */
function pauseMs(attempt: number): number {
  return backoffDelayMs(attempt, { minMs: 10, maxMs: 250, prng: PRNG });
}

Deno.test("TinyKvClient retries UNAVAILABLE on the next endpoint after a backoff, same seq", async () => {
  const { clock, calls, client } = fakeClient((_, i) =>
    i < 2 ? fail("unavailable") : { result: rpcOk({}) }
  );
  await runOnClock(clock, client.put("k", "v"));
  assert.deepEqual([pauseMs(0), pauseMs(1)], [15, 25]);
  assert.deepEqual(calls.map((c) => [c.endpoint, c.at, c.deadlineMs]), [
    ["a:1", 0, 1000],
    ["b:1", 15, 985],
    ["a:1", 40, 960],
  ]);
  const sessions = calls.map((c) => {
    const put = c.request as RequestOf<(typeof KVService)["Put"]>;
    return [put.clientId, put.seq, put.ackSeq];
  });
  assert.deepEqual(sessions, [["c-test", 1, 0], ["c-test", 1, 0], ["c-test", 1, 0]]);
  // The next call starts where the last one succeeded, with the next seq.
  const next = runOnClock(clock, client.put("k", "w"));
  await next;
  assert.equal(calls.at(-1)!.endpoint, "a:1");
  assert.equal((calls.at(-1)!.request as RequestOf<(typeof KVService)["Put"]>).seq, 2);
  client.close();
});

Deno.test("TinyKvClient stops retrying exactly at the deadline, outcome known", async () => {
  const { clock, calls, client } = fakeClient(() => fail("unavailable"));
  const error = await failure(runOnClock(clock, client.put("k", "v")));
  assert.equal(error.code, "unavailable");
  assert.equal(error.outcomeUnknown, false);
  assert.equal(error.attempts, calls.length);
  assert.equal(clock.now(), 1000, "the call ends at its deadline");
  assert.equal(clock.pendingCount, 0);
  assert.ok(calls.every((c) => c.at < 1000 && c.deadlineMs === 1000 - c.at));
  client.close();
});

Deno.test("TinyKvClient reports a mutation with a timed-out attempt as deadlineExceeded, unknown", async () => {
  // The first attempt times out on the gateway (it may have applied); the rest find no leader.
  const { clock, client } = fakeClient((_, i) =>
    i === 0 ? fail("deadlineExceeded", 300) : fail("unavailable")
  );
  const error = await failure(runOnClock(clock, client.put("k", "v")));
  assert.equal(error.code, "deadlineExceeded");
  assert.equal(error.outcomeUnknown, true);
  assert.match(error.message, /^Gateway says unavailable \(an earlier attempt timed out\)$/);
  assert.equal(clock.now(), 1000);
  client.close();
});

Deno.test("TinyKvClient never reports a read's outcome as unknown", async () => {
  const { clock, client } = fakeClient((_, i) =>
    i === 0 ? fail("deadlineExceeded", 300) : fail("unavailable")
  );
  const error = await failure(runOnClock(clock, client.get("k")));
  assert.equal(error.code, "unavailable");
  assert.equal(error.outcomeUnknown, false);
  client.close();
});

Deno.test("TinyKvClient throws other failures at once, without retrying", async () => {
  for (const kind of ["invalidArgument", "resourceExhausted", "dataLoss", "internal"] as const) {
    const { clock, calls, client } = fakeClient(() => fail(kind));
    const error = await failure(runOnClock(clock, client.put("k", "v")));
    assert.equal(error.code, kind);
    assert.equal(error.attempts, 1);
    assert.equal(calls.length, 1);
    assert.equal(clock.now(), 0);
    client.close();
  }
});

Deno.test("TinyKvClient starts a new session after FAILED_PRECONDITION, without retrying", async () => {
  const { clock, calls, client } = fakeClient((_, i) =>
    i === 0 ? fail("failedPrecondition") : { result: rpcOk({}) }
  );
  const error = await failure(runOnClock(clock, client.put("k", "v")));
  assert.equal(error.code, "failedPrecondition");
  assert.equal(calls.length, 1);
  assert.notEqual(client.clientId, "c-test");
  await runOnClock(clock, client.put("k", "v"));
  const put = calls[1].request as RequestOf<(typeof KVService)["Put"]>;
  assert.equal(put.clientId, client.clientId);
  assert.equal(put.seq, 1);
  client.close();
});

Deno.test("TinyKvClient.close() closes every connection and later calls throw cancelled", async () => {
  const { clock, closed, client } = fakeClient(() => ({ result: rpcOk({}) }));
  await runOnClock(clock, client.put("k", "v"));
  client.close();
  assert.deepEqual(closed, ["a:1"]);
  const error = await failure(client.put("k", "v"));
  assert.equal(error.code, "cancelled");
});

Deno.test("TinyKvClient sends a call's traceId as metadata tinykv-trace on every attempt", async () => {
  const { clock, calls, client } = fakeClient((_, i) =>
    i === 0 ? fail("unavailable") : { result: rpcOk({}) }
  );
  await runOnClock(clock, client.put("k", "v", { traceId: "t-1" }));
  assert.deepEqual(calls.map((c) => c.trace), ["t-1", "t-1"]);
  await runOnClock(clock, client.put("k", "v"));
  assert.equal(calls.at(-1)!.trace, undefined);
});

Deno.test("TinyKvClient.watch on a quiet key moves to the next gateway when its gateway stops, however long it was quiet, from its positions", async () => {
  let now = 0;
  const clock = {
    now: () => now,
    setTimeout: (fn: () => void, _ms: number) => setTimeout(fn, 0),
    clearTimeout: (handle: unknown) => clearTimeout(handle as number),
  };
  const opened: Array<{ endpoint: string; start: Array<{ shard: number; index: number }> }> = [];
  let end: ((failure: { kind: "unavailable"; message: string }) => void) | undefined;
  const client = TinyKvClient.connect({
    endpoints: ["g1:1", "g2:1"],
    clock: clock as never,
    connect: (endpoint) => ({
      call: () => Promise.reject(new Error("unused")),
      watch: (request, _options, events) => {
        opened.push({ endpoint, start: request.start.map((p) => ({ ...p })) });
        queueMicrotask(() =>
          events.onResponse({ events: [], positions: [{ shard: 1, index: 7 }] })
        );
        end = (failure) => events.onEnd(failure);
        return { pause() {}, resume() {}, cancel() {} };
      },
      close() {},
    }),
  });
  const watch = client.watch("k");
  const first = await watch.next();
  assert.deepEqual(first.value?.positions, [{ shard: 1, index: 7 }]);
  // 31 s with nothing to tell (the shard applied nothing), then the gateway stops.
  now += 31_000;
  const next = watch.next();
  end!({ kind: "unavailable", message: "The gateway is stopping: resume on another one" });
  const resumed = await next;
  assert.deepEqual(resumed.value?.positions, [{ shard: 1, index: 7 }]);
  assert.deepEqual(opened, [
    { endpoint: "g1:1", start: [] },
    { endpoint: "g2:1", start: [{ shard: 1, index: 7 }] },
  ]);
  await watch.return();
  client.close();
});

Deno.test("TinyKvClient.watch hands over one response larger than its queue bound, and fails when its caller falls behind by more", async () => {
  const big = new Uint8Array(17 * 1024 * 1024);
  let send: ((index: number) => void) | undefined;
  const client = TinyKvClient.connect({
    endpoints: ["g1:1"],
    connect: () => ({
      call: () => Promise.reject(new Error("unused")),
      watch: (_request, _options, events) => {
        send = (index) =>
          events.onResponse({
            events: [{ kind: 0, key: new Uint8Array([107]), value: big, shard: 1, index }],
            positions: [{ shard: 1, index }],
          });
        queueMicrotask(() => send!(1));
        return { pause() {}, resume() {}, cancel() {} };
      },
      close() {},
    }),
  });
  const watch = client.watch("k");
  const first = await watch.next();
  assert.equal(first.value?.events[0].value.length, big.length, "one large response gets through");
  // The caller takes nothing while two more arrive: 34 MiB wait, past the 16 MiB bound.
  send!(2);
  send!(3);
  const second = await watch.next();
  assert.equal(second.value?.events[0].index, 2);
  await assert.rejects(watch.next(), (error: unknown) => {
    assert.ok(error instanceof TinyKvError);
    assert.equal(error.code, "resourceExhausted");
    assert.match(error.message, /takes its changes too slowly/);
    return true;
  });
  client.close();
});
