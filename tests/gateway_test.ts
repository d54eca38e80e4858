// End to end through real gateway processes (tinykv.v1.KV over gRPC) on real kvnodes, with the
// shard map published in ZooKeeper: every operation, routing across all shards, a scan that pages
// through every key exactly once, a client's retried mutation applying once, two gateways serving
// the same data, a leader crash hidden from the client, precise statuses for bad input, and a
// gateway that survives many client channels opening and closing.
import assert from "node:assert/strict";
import { KVService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, type GrpcClient, type RpcResult, unaryCaller } from "@tinykv/rpc";
import { assertSurvivesChannelChurn } from "@tinykv/rpc/testing";
import { shardId } from "@tinykv/shard";
import { KvNodeCluster } from "./_harness/kvnode_cluster.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const NO_SESSION = { clientId: "", seq: 0, ackSeq: 0 };

type Kv = GrpcClient<typeof KVService>;

const DEADLINE = { deadlineMs: 10_000 };
type Req<M extends "Get" | "Put" | "Delete" | "Append" | "CompareAndSwap" | "Scan"> = Parameters<
  Kv[M]
>[0];

/** Typed unary calls to a gateway, each with a 10 s deadline unless given one. */
const call = {
  Get: (kv: Kv, r: Req<"Get">, o = DEADLINE) =>
    unaryCaller<typeof KVService, "Get">(kv, "Get")(r, o),
  Put: (kv: Kv, r: Req<"Put">, o = DEADLINE) =>
    unaryCaller<typeof KVService, "Put">(kv, "Put")(r, o),
  Delete: (kv: Kv, r: Req<"Delete">, o = DEADLINE) =>
    unaryCaller<typeof KVService, "Delete">(kv, "Delete")(r, o),
  Append: (kv: Kv, r: Req<"Append">, o = DEADLINE) =>
    unaryCaller<typeof KVService, "Append">(kv, "Append")(r, o),
  CompareAndSwap: (kv: Kv, r: Req<"CompareAndSwap">, o = DEADLINE) =>
    unaryCaller<typeof KVService, "CompareAndSwap">(kv, "CompareAndSwap")(r, o),
  Scan: (kv: Kv, r: Req<"Scan">, o = DEADLINE) =>
    unaryCaller<typeof KVService, "Scan">(kv, "Scan")(r, o),
};

function ok<T>(result: RpcResult<T>): T {
  assert.equal(result.kind, "ok", JSON.stringify(result));
  return result.kind === "ok" ? result.response : assert.fail();
}

async function withGateway(
  test: (cluster: KvNodeCluster, kv: Kv, address: string) => Promise<void>,
  shards = 4,
  flags: readonly string[] = [],
): Promise<void> {
  const cluster = await KvNodeCluster.start({ nodes: 3, shards, flags });
  const clients: Kv[] = [];
  try {
    await cluster.bootstrap();
    await cluster.publishShardMap();
    const gateway = await cluster.startGateway();
    const kv = createGrpcClient(KVService, gateway.address, { maxMessageBytes: 8 << 20 });
    clients.push(kv);
    await test(cluster, kv, gateway.address);
  } finally {
    for (const client of clients) client.close();
    await cluster.close();
  }
}

Deno.test("gateway: every operation, on keys of every shard", async () => {
  await withGateway(async (_cluster, kv) => {
    for (let i = 0; i < 40; i++) {
      ok(await call.Put(kv, { key: enc(`k${i}`), value: enc(`v${i}`), ...NO_SESSION }));
    }
    for (let i = 0; i < 40; i++) {
      const got = ok(await call.Get(kv, { key: enc(`k${i}`), serializable: false }));
      assert.equal(got.found, true);
      assert.equal(dec(got.value), `v${i}`);
    }
    assert.equal(
      ok(await call.Get(kv, { key: enc("absent"), serializable: false })).found,
      false,
    );
    assert.equal(
      ok(await call.Append(kv, { key: enc("log"), value: enc("ab"), ...NO_SESSION })).length,
      2,
    );
    assert.equal(
      ok(await call.Append(kv, { key: enc("log"), value: enc("c"), ...NO_SESSION })).length,
      3,
    );
    const cas = (expected: string, value: string, expectAbsent = false) =>
      call.CompareAndSwap(kv, {
        key: enc("cas"),
        expected: enc(expected),
        expectAbsent,
        value: enc(value),
        delete: false,
        ...NO_SESSION,
      });
    assert.equal(ok(await cas("", "one", true)).succeeded, true);
    const miss = ok(await cas("two", "three"));
    assert.equal(miss.succeeded, false);
    assert.equal(miss.found, true);
    assert.equal(dec(miss.current), "one");
    assert.equal(ok(await cas("one", "two")).succeeded, true);
    assert.equal(ok(await call.Delete(kv, { key: enc("cas"), ...NO_SESSION })).deleted, true);
    assert.equal(ok(await call.Delete(kv, { key: enc("cas"), ...NO_SESSION })).deleted, false);
    // Hash-tagged keys share a shard and are all served.
    ok(await call.Put(kv, { key: enc("{user42}:name"), value: enc("Ada"), ...NO_SESSION }));
    ok(await call.Put(kv, { key: enc("{user42}:cart"), value: enc("tea"), ...NO_SESSION }));
    assert.equal(
      dec(ok(await call.Get(kv, { key: enc("{user42}:cart"), serializable: true })).value),
      "tea",
    );
  });
});

Deno.test("gateway: a scan with a small limit pages through every key exactly once", async () => {
  await withGateway(async (_cluster, kv) => {
    const keys = Array.from({ length: 57 }, (_, i) => `scan-${String(i).padStart(3, "0")}`);
    await Promise.all(
      keys.map((k) => call.Put(kv, { key: enc(k), value: enc(k), ...NO_SESSION }).then(ok)),
    );
    ok(await call.Put(kv, { key: enc("other"), value: enc("x"), ...NO_SESSION }));
    const seen: string[] = [];
    let start: Uint8Array = enc("scan-");
    for (let page = 0; page < 100; page++) {
      const answer = ok(await call.Scan(kv, { start, end: enc("scan."), limit: 5 }));
      assert.ok(answer.kvs.length <= 5);
      seen.push(...answer.kvs.map((pair) => dec(pair.key)));
      if (!answer.more) break;
      start = answer.next;
    }
    assert.deepEqual(seen, keys, "every key once, in order");
    const all = ok(
      await call.Scan(kv, { start: new Uint8Array(), end: new Uint8Array(), limit: 10_000 }),
    );
    assert.equal(all.more, false);
    assert.equal(all.kvs.length, 58);
  });
});

Deno.test("gateway: a client's retried mutation applies once; two gateways serve the same data", async () => {
  await withGateway(async (cluster, kv) => {
    const request = { key: enc("once"), value: enc("x"), clientId: "client-7", seq: 1, ackSeq: 0 };
    assert.equal(ok(await call.Append(kv, request)).length, 1);
    assert.equal(
      ok(await call.Append(kv, request)).length,
      1,
      "the retry is answered, not applied",
    );
    const second = await cluster.startGateway();
    const other = createGrpcClient(KVService, second.address, { maxMessageBytes: 8 << 20 });
    try {
      assert.equal(
        ok(await call.Append(other, request)).length,
        1,
        "also through another gateway",
      );
      assert.equal(
        dec(ok(await call.Get(other, { key: enc("once"), serializable: false })).value),
        "x",
      );
      ok(await call.Put(other, { key: enc("from-second"), value: enc("2"), ...NO_SESSION }));
      assert.equal(
        dec(ok(await call.Get(kv, { key: enc("from-second"), serializable: false })).value),
        "2",
      );
    } finally {
      other.close();
    }
  });
});

Deno.test("gateway: a leader crash in the middle of writes is only latency to the client", async () => {
  await withGateway(async (cluster, kv) => {
    let stop = false;
    let written = 0;
    const writer = (async () => {
      while (!stop) {
        ok(
          await call.Put(kv, {
            key: enc(`w${written}`),
            value: enc(`${written}`),
            ...NO_SESSION,
          }, { deadlineMs: 15_000 }),
        );
        written++;
      }
    })();
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const leader = await cluster.leaderOf(shardId(1));
      await leader.node.process.kill();
      const target = written + 30;
      while (written < target) await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      stop = true;
      await writer;
    }
    for (let i = 0; i < written; i++) {
      assert.equal(
        dec(ok(await call.Get(kv, { key: enc(`w${i}`), serializable: false })).value),
        `${i}`,
      );
    }
  }, 1);
});

Deno.test("gateway: bad input gets a precise status and the gateway keeps serving", async () => {
  await withGateway(async (_cluster, kv) => {
    const expectInvalid = async (result: Promise<RpcResult<unknown>>, pattern: RegExp) => {
      const answer = await result;
      assert.equal(answer.kind, "invalidArgument", JSON.stringify(answer));
      assert.match("message" in answer ? answer.message : "", pattern);
    };
    await expectInvalid(
      call.Get(kv, { key: new Uint8Array(), serializable: false }),
      /minimum is 1/,
    );
    await expectInvalid(
      call.Put(kv, { key: new Uint8Array(4097), value: enc("v"), ...NO_SESSION }),
      /4096/,
    );
    await expectInvalid(
      call.Put(kv, { key: enc("k"), value: new Uint8Array(1024 * 1024 + 1), ...NO_SESSION }),
      /"value"/,
    );
    await expectInvalid(call.Scan(kv, { start: enc("b"), end: enc("a"), limit: 1 }), /start/);
    await expectInvalid(
      call.Scan(kv, { start: new Uint8Array(), end: new Uint8Array(), limit: 0 }),
      /limit/,
    );
    await expectInvalid(
      call.Scan(kv, { start: new Uint8Array(), end: new Uint8Array(), limit: 10_001 }),
      /limit/,
    );
    await expectInvalid(
      call.Put(kv, { key: enc("k"), value: enc("v"), clientId: "c", seq: 0, ackSeq: 0 }),
      /seq/,
    );
    // Rejected requests change nothing.
    assert.equal(ok(await call.Get(kv, { key: enc("k"), serializable: false })).found, false);
    ok(await call.Put(kv, { key: enc("k"), value: enc("fine"), ...NO_SESSION }));
  }, 1);
});

Deno.test("gateway: survives many client channels opening and closing", async () => {
  await withGateway(async (_cluster, kv, address) => {
    await assertSurvivesChannelChurn({
      definition: KVService,
      address,
      process: undefined,
      channels: 100,
      callsPerChannel: 3,
      makeCall: (client) =>
        unaryCaller(client, "Get")({ key: enc("k"), serializable: true }, { deadlineMs: 5000 }),
    });
    ok(await call.Put(kv, { key: enc("after-churn"), value: enc("ok"), ...NO_SESSION }));
  }, 1);
});

Deno.test("gateway: malformed bytes on its port do not disturb it", async () => {
  await withGateway(async (_cluster, kv, address) => {
    const [hostname, port] = address.split(":");
    const garbage = [
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      crypto.getRandomValues(new Uint8Array(4096)),
      // A valid HTTP/2 preface followed by a frame that makes no sense.
      new Uint8Array([
        ...new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        0xff,
        0xff,
        0xff,
        0x09,
        0xff,
        0,
        0,
        0,
        1,
      ]),
    ];
    for (const bytes of garbage) {
      const conn = await Deno.connect({ hostname, port: Number(port) });
      await conn.write(bytes).catch(() => 0);
      // Read whatever the server answers (or until it closes), bounded in time.
      const buffer = new Uint8Array(1024);
      const timer = setTimeout(() => conn.close(), 500);
      try {
        while ((await conn.read(buffer)) !== null) {
          // Discard.
        }
      } catch {
        // Closed by the timer or reset by the server: both are fine.
      }
      clearTimeout(timer);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    ok(await call.Put(kv, { key: enc("after-garbage"), value: enc("ok"), ...NO_SESSION }));
    assert.equal(
      dec(ok(await call.Get(kv, { key: enc("after-garbage"), serializable: false })).value),
      "ok",
    );
  }, 1);
});

Deno.test("gateway: renews its own session when a shard expires it, so writes go on", async () => {
  // Sessions expire after 1 s of replicated time here. The gateway's own session (for writes
  // without a client_id) is expired by the shard at the next write after an idle second; the
  // gateway must start a new session and send the write again, never answer FAILED_PRECONDITION.
  const ttlMs = 1000;
  await withGateway(
    async (_cluster, kv) => {
      ok(await call.Put(kv, { key: enc("idle"), value: enc("1"), ...NO_SESSION }));
      const idleUntil = Date.now() + ttlMs + 300;
      while (Date.now() < idleUntil) await new Promise((resolve) => setTimeout(resolve, 100));
      ok(await call.Put(kv, { key: enc("idle"), value: enc("2"), ...NO_SESSION }));
      assert.equal(
        ok(await call.Append(kv, { key: enc("idle"), value: enc("3"), ...NO_SESSION })).length,
        2,
      );
      assert.equal(
        dec(ok(await call.Get(kv, { key: enc("idle"), serializable: false })).value),
        "23",
      );
      // A client's own expired session is still the client's to renew.
      const session = { clientId: "short-lived", seq: 1, ackSeq: 0 };
      ok(await call.Put(kv, { key: enc("idle"), value: enc("4"), ...session }));
      const until = Date.now() + ttlMs + 300;
      while (Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100));
      const expired = await call.Put(kv, { key: enc("idle"), value: enc("5"), ...session, seq: 2 });
      assert.equal(expired.kind, "failedPrecondition", JSON.stringify(expired));
      assert.equal(
        dec(ok(await call.Get(kv, { key: enc("idle"), serializable: false })).value),
        "4",
      );
    },
    1,
    ["--kvnode.session_ttl_ms=1000"],
  );
});
