// End to end through the client library (`TinyKvClient`) and the `tinykv` CLI on a real cluster:
// 3 kvnodes, 4 shards, gateway processes. One cluster serves every step, to keep the suite short.
// Checks every operation with string and binary keys, a paged scan seeing every key exactly once,
// a mutation whose answer was lost (a proxy gateway applies it, then reports DEADLINE_EXCEEDED)
// being retried on the next endpoint with the same (client_id, seq) and applied once, failover
// when a gateway is killed under load, and the CLI as a subprocess with the permissions its task
// grants: each command in human and --json output, the documented exit codes, and a VALUE of "-"
// read from stdin (a 1 MiB value, one byte over the server's limit, binary and hex text).
import { type CliRun, runCli } from "./_harness/cli.ts";
import assert from "node:assert/strict";
import { bytes, text, TinyKvClient, TinyKvError } from "@tinykv/client";
import { KVService } from "@tinykv/proto/tinykv/v1";
import {
  bindService,
  createGrpcClient,
  type GrpcServer,
  type RequestOf,
  type RpcResult,
  startGrpcServer,
  unaryCaller,
} from "@tinykv/rpc";
import { KvNodeCluster } from "./_harness/kvnode_cluster.ts";

function cli(endpoint: string, ...args: string[]): Promise<CliRun> {
  return runCli(["--endpoint", endpoint, ...args]);
}

/** Runs the CLI with `stdin` as its standard input. */
function cliStdin(endpoint: string, stdin: Uint8Array, ...args: string[]): Promise<CliRun> {
  return runCli(["--endpoint", endpoint, ...args], { stdin });
}

/** The default `storage.value_bytes_max` of the gateway: 1 MiB. */
const VALUE_BYTES_MAX_DEFAULT = 1024 * 1024;

/** `length` lowercase letters in a pattern that does not repeat every few bytes. */
function letters(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => 97 + ((i * 7919 + (i >> 10) + seed) % 26));
}

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function expectCli(run: CliRun, code: number, stdout?: string | RegExp): void {
  const what = JSON.stringify(run);
  assert.equal(run.code, code, what);
  if (typeof stdout === "string") assert.equal(run.stdout, stdout, what);
  else if (stdout !== undefined) assert.match(run.stdout, stdout, what);
}

/**
 * A gateway in front of `target` that forwards every call, but answers the first `lose`
 * mutations that succeeded with DEADLINE_EXCEEDED, as if the answer were lost after applying.
 */
async function lossyGateway(target: string, lose: number): Promise<GrpcServer & { lost: number }> {
  const kv = createGrpcClient(KVService, target, { maxMessageBytes: 8 << 20 });
  const state = { lost: 0 };
  const forward = <
    K extends "Get" | "Put" | "Delete" | "Append" | "CompareAndSwap" | "Scan" | "Txn",
  >(
    method: K,
    mutation: boolean,
  ) =>
  async (request: RequestOf<(typeof KVService)[K]>) => {
    const result = await unaryCaller<typeof KVService, K>(kv, method)(request, {
      deadlineMs: 5000,
    });
    if (mutation && result.kind === "ok" && state.lost < lose) {
      state.lost++;
      return { kind: "deadlineExceeded", message: "Answer lost on purpose" } as RpcResult<never>;
    }
    return result;
  };
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    maxMessageBytes: 8 << 20,
    services: [bindService(KVService, {
      Get: forward("Get", false),
      Put: forward("Put", true),
      Delete: forward("Delete", true),
      Append: forward("Append", true),
      CompareAndSwap: forward("CompareAndSwap", true),
      Scan: forward("Scan", false),
      Txn: forward("Txn", true),
      Watch: (call) => call.end(),
    })],
  });
  return {
    port: server.port,
    get lost() {
      return state.lost;
    },
    shutdown: async (graceMs) => {
      const result = await server.shutdown(graceMs);
      kv.close();
      return result;
    },
  };
}

Deno.test("client and CLI against a real cluster", async (t) => {
  const cluster = await KvNodeCluster.start({ nodes: 3, shards: 4 });
  const clients: TinyKvClient[] = [];
  const open = (endpoints: string[], deadlineMs = 10_000) => {
    const client = TinyKvClient.connect({ endpoints, deadlineMs });
    clients.push(client);
    return client;
  };
  try {
    await cluster.bootstrap();
    await cluster.publishShardMap();
    const gateway = await cluster.startGateway();
    const client = open([gateway.address]);

    await t.step("library: every operation with string and byte keys", async () => {
      for (let i = 0; i < 20; i++) await client.put(`k${i}`, `v${i}`);
      for (let i = 0; i < 20; i++) {
        const got = await client.get(`k${i}`);
        assert.equal(got.found, true);
        assert.equal(text(got.value), `v${i}`);
      }
      const binaryKey = new Uint8Array([0, 255, 1, 254]);
      const binaryValue = new Uint8Array([200, 0, 13]);
      await client.put(binaryKey, binaryValue);
      assert.deepEqual((await client.get(binaryKey)).value, binaryValue);
      assert.equal((await client.get(binaryKey, { serializable: true })).found, true);
      assert.deepEqual(await client.get("absent"), { found: false, value: new Uint8Array() });
      assert.equal(await client.append("log", "ab"), 2);
      assert.equal(await client.append(bytes("log"), new Uint8Array([99])), 3);
      assert.equal(text((await client.get("log")).value), "abc");
      const created = await client.compareAndSwap("cas", { expectAbsent: true }, { value: "one" });
      assert.equal(created.succeeded, true);
      const miss = await client.compareAndSwap("cas", { expected: "two" }, { value: "three" });
      assert.deepEqual(miss, { succeeded: false, found: true, current: bytes("one") });
      assert.equal(
        (await client.compareAndSwap("cas", { expected: "one" }, { delete: true })).succeeded,
        true,
      );
      assert.equal((await client.get("cas")).found, false);
      assert.equal(await client.delete(binaryKey), true);
      assert.equal(await client.delete(binaryKey), false);
      await assert.rejects(client.put("", "v"), (error) => {
        assert.ok(error instanceof TinyKvError);
        assert.equal(error.code, "invalidArgument");
        assert.equal(error.outcomeUnknown, false);
        assert.equal(error.attempts, 1, "an invalid argument is never retried");
        assert.match(error.message, /key/);
        return true;
      });
      await assert.rejects(client.scan({ limit: 0 }), { code: "invalidArgument" });
    });

    await t.step("library: scanAll pages through every key exactly once, in order", async () => {
      const keys = Array.from({ length: 57 }, (_, i) => `scan-${String(i).padStart(3, "0")}`);
      await Promise.all(keys.map((key) => client.put(key, key.toUpperCase())));
      const seen: string[] = [];
      for await (
        const { key, value } of client.scanAll({ start: "scan-", end: "scan.", pageSize: 5 })
      ) {
        assert.equal(text(value), text(key).toUpperCase());
        seen.push(text(key));
      }
      assert.deepEqual(seen, keys);
      const page = await client.scan({ start: "scan-", end: "scan.", limit: 10 });
      assert.equal(page.entries.length, 10);
      assert.equal(page.more, true);
      assert.equal(text(page.next!), "scan-010");
      let pages = 0;
      for await (const _ of client.scanPages({ start: "scan-", end: "scan.", pageSize: 20 })) {
        pages++;
      }
      assert.ok(pages >= 3, `57 keys in pages of 20: got ${pages} pages`);
    });

    await t.step(
      "library: a mutation whose answer was lost is retried and applied once",
      async () => {
        const lossy = await lossyGateway(gateway.address, 3);
        try {
          // A fresh client per call, since a client moves on to the next endpoint after a failure.
          const retrying = () => open([`127.0.0.1:${lossy.port}`, gateway.address]);
          assert.equal(
            await retrying().append("once", "x"),
            1,
            "the retry gets the original answer",
          );
          await retrying().put("once-put", "v");
          assert.equal(await retrying().delete("once-put"), true, "applied once, so it existed");
          assert.equal(lossy.lost, 3, "three answers were lost and their requests retried");
          assert.equal(text((await client.get("once")).value), "x", "applied once");
          assert.equal((await client.get("once-put")).found, false);
        } finally {
          await lossy.shutdown(0);
        }
      },
    );

    await t.step("library: fails over when a gateway is killed under load", async () => {
      const doomed = await cluster.startGateway();
      const both = open([doomed.address, gateway.address]);
      const lengths: number[] = [];
      const writers = Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 40; i++) lengths.push(await both.append("failover", "x"));
      });
      while (lengths.length < 30) await new Promise((resolve) => setTimeout(resolve, 5));
      await doomed.process.kill();
      await Promise.all(writers);
      assert.equal(lengths.length, 160);
      assert.deepEqual(
        [...lengths].sort((a, b) => a - b),
        Array.from({ length: 160 }, (_, i) => i + 1),
        "every append applied exactly once",
      );
      assert.equal((await client.get("failover")).value.length, 160);
    });

    const at = gateway.address;
    await t.step("cli: each command, human output", async () => {
      expectCli(await cli(at, "put", "cli-a", "hello"), 0, "OK\n");
      expectCli(await cli(at, "get", "cli-a"), 0, "hello\n");
      expectCli(await cli(at, "append", "cli-a", " world"), 0, "11\n");
      expectCli(
        await cli(at, "cas", "cli-a", "--expected", "hello world", "--value", "v2"),
        0,
        "OK\n",
      );
      const miss = await cli(at, "cas", "cli-a", "--expected", "nope", "--delete");
      expectCli(miss, 1, "");
      assert.match(miss.stderr, /not swapped: current value is v2/);
      expectCli(await cli(at, "cas", "cli-b", "--absent", "--value", "new"), 0, "OK\n");
      expectCli(await cli(at, "put", "--hex", "00ff", "cafe"), 0, "OK\n");
      expectCli(await cli(at, "get", "--hex", "00ff"), 0, "cafe\n");
      expectCli(await cli(at, "get", "cli-b"), 0, "new\n");
      expectCli(
        await cli(at, "scan", "--start", "cli-", "--end", "cli."),
        0,
        "cli-a\tv2\ncli-b\tnew\n",
      );
      const limited = await cli(at, "scan", "--start", "cli-", "--end", "cli.", "--limit", "1");
      expectCli(limited, 0, "cli-a\tv2\n");
      assert.match(limited.stderr, /continue with --start cli-b/);
      // The largest page the contract allows (SCAN_LIMIT_MAX) is accepted; one more is a usage error.
      expectCli(
        await cli(at, "scan", "--start", "cli-", "--end", "cli.", "--limit", "10000"),
        0,
        "cli-a\tv2\ncli-b\tnew\n",
      );
      const all = await cli(at, "scan", "--start", "scan-", "--end", "scan.");
      expectCli(all, 0);
      assert.equal(all.stdout.trimEnd().split("\n").length, 57);
      expectCli(await cli(at, "del", "cli-b"), 0, "deleted\n");
      expectCli(await cli(at, "del", "cli-b"), 0, "not found\n");
      const absent = await cli(at, "get", "cli-b");
      expectCli(absent, 1, "");
      assert.match(absent.stderr, /Key "cli-b" not found/);
    });

    await t.step("cli: --json output, binary bytes as base64", async () => {
      const json = async (code: number, ...args: string[]) => {
        const run = await cli(at, "--json", ...args);
        expectCli(run, code);
        return JSON.parse(run.stdout);
      };
      assert.deepEqual(await json(0, "put", "cli-j", "1"), { ok: true });
      assert.deepEqual(await json(0, "get", "cli-j"), { found: true, value: "1" });
      assert.deepEqual(await json(1, "get", "cli-none"), { found: false });
      assert.deepEqual(await json(0, "append", "cli-j", "23"), { length: 3 });
      assert.deepEqual(await json(1, "cas", "cli-j", "--absent", "--value", "x"), {
        succeeded: false,
        found: true,
        current: "123",
      });
      assert.deepEqual(await json(0, "--hex", "put", "636c692d6b", "ff00"), { ok: true });
      assert.deepEqual(await json(0, "get", "cli-k"), { found: true, value: { base64: "/wA=" } });
      assert.deepEqual(
        await json(0, "scan", "--start", "cli-j", "--end", "cli-l", "--limit", "1"),
        {
          entries: [{ key: "cli-j", value: "123" }],
          more: true,
          next: "cli-k",
        },
      );
      assert.deepEqual(await json(0, "scan", "--start", "cli-j", "--end", "cli-l"), {
        entries: [{ key: "cli-j", value: "123" }, { key: "cli-k", value: { base64: "/wA=" } }],
        more: false,
        next: null,
      });
      assert.deepEqual(await json(0, "del", "cli-k"), { deleted: true });
      const invalid = await json(3, "get", "");
      assert.equal(invalid.error.code, "invalidArgument");
      assert.match(invalid.error.message, /key/);
    });

    await t.step("cli: a VALUE of - is read from stdin, byte for byte", async () => {
      // A 1 MiB value of ASCII letters prints as text, so stdout compares with one string.
      const big = letters(VALUE_BYTES_MAX_DEFAULT, 0);
      const bigText = new TextDecoder().decode(big);
      expectCli(await cliStdin(at, big, "put", "cli-big", "-"), 0, "OK\n");
      expectCli(await cli(at, "get", "cli-big"), 0, `${bigText}\n`);

      const over = await cliStdin(
        at,
        letters(VALUE_BYTES_MAX_DEFAULT + 1, 1),
        "put",
        "cli-big",
        "-",
      );
      expectCli(over, 3, "");
      assert.match(over.stderr, /^error: invalidArgument: .*1048577 bytes.*1048576/);
      // Over the client library's default message bound (4 MiB): the server still decides.
      const huge = await cliStdin(
        at,
        new Uint8Array(5 * VALUE_BYTES_MAX_DEFAULT),
        "put",
        "cli-big",
        "-",
      );
      expectCli(huge, 3, "");
      assert.match(huge.stderr, /^error: invalidArgument: .*5242880 bytes.*1048576/);
      expectCli(await cli(at, "get", "cli-big"), 0, `${bigText}\n`);

      // Every byte value, and a trailing newline that must not be trimmed.
      const binary = Uint8Array.from({ length: 257 }, (_, i) => i < 256 ? i : 0x0a);
      expectCli(await cliStdin(at, binary, "put", "cli-bin", "-"), 0, "OK\n");
      expectCli(await cli(at, "--hex", "get", hexOf(bytes("cli-bin"))), 0, `${hexOf(binary)}\n`);
      // With --hex, stdin is hex text: line breaks (as xxd -p writes them) and case do not matter.
      const hexText = hexOf(binary).toUpperCase().replace(/.{60}/g, "$&\n") + "\n";
      expectCli(
        await cliStdin(at, bytes(hexText), "--hex", "put", hexOf(bytes("cli-hex")), "-"),
        0,
      );
      expectCli(await cli(at, "--hex", "get", hexOf(bytes("cli-hex"))), 0, `${hexOf(binary)}\n`);

      expectCli(await cli(at, "put", "cli-app", "start:"), 0, "OK\n");
      expectCli(await cliStdin(at, bytes("more\n"), "append", "cli-app", "-"), 0, "11\n");
      expectCli(await cli(at, "get", "cli-app"), 0, "start:more\n\n");
      // A KEY of "-" is the key "-", not stdin.
      expectCli(await cliStdin(at, bytes("dash"), "put", "-", "-"), 0, "OK\n");
      expectCli(await cli(at, "get", "--", "-"), 0, "dash\n");
    });

    await t.step("cli: cas reads --expected or --value from stdin, not both", async () => {
      const multiline = bytes("line 1\nline 2\n");
      expectCli(await cliStdin(at, multiline, "cas", "cli-c", "--absent", "--value", "-"), 0);
      expectCli(await cli(at, "get", "cli-c"), 0, "line 1\nline 2\n\n");
      const miss = await cliStdin(
        at,
        bytes("line 1\n"),
        "cas",
        "cli-c",
        "--expected",
        "-",
        "--delete",
      );
      expectCli(miss, 1, "");
      assert.match(miss.stderr, /not swapped: current value is line 1\nline 2\n/);
      expectCli(
        await cliStdin(at, multiline, "cas", "cli-c", "--expected", "-", "--value", "v2"),
        0,
        "OK\n",
      );
      expectCli(await cli(at, "get", "cli-c"), 0, "v2\n");
      // One 1 MiB value: the expected one, from stdin.
      const big = letters(VALUE_BYTES_MAX_DEFAULT, 0);
      expectCli(
        await cliStdin(at, big, "cas", "cli-big", "--expected=-", "--value", "small"),
        0,
        "OK\n",
      );
      expectCli(await cli(at, "get", "cli-big"), 0, "small\n");

      const both = await cliStdin(
        at,
        bytes("v2"),
        "cas",
        "cli-c",
        "--expected",
        "-",
        "--value",
        "-",
      );
      expectCli(both, 2, "");
      assert.match(both.stderr, /^error: Command "cas" reads stdin once: .*\n\nUsage: /);
      expectCli(await cli(at, "get", "cli-c"), 0, "v2\n");
    });

    await t.step("cli: stdin over 64 MiB is refused before anything is sent", async () => {
      const over = await cliStdin(at, new Uint8Array(64 * 1024 * 1024 + 1), "put", "cli-c", "-");
      expectCli(over, 2, "");
      assert.match(
        over.stderr,
        /^error: Cannot read stdin for "-": it has more than 67108864 bytes/,
      );
      const notHex = await cliStdin(at, bytes("12 3"), "--hex", "put", "00", "-");
      expectCli(notHex, 2, "");
      assert.match(notHex.stderr, /not hex \(--hex\).*odd count of digits \(3\)/);
      expectCli(await cli(at, "get", "cli-c"), 0, "v2\n");
    });

    await t.step(
      "cli: help, usage errors, invalid arguments and unreachable gateways",
      async () => {
        const help = await cli(at, "--help");
        expectCli(help, 0, /Exit codes:/);
        expectCli(await cli(at, "cas", "--help"), 0, /--expected V \| --absent/);
        for (
          const args of [
            [],
            ["frobnicate"],
            ["get"],
            ["put", "k"],
            ["cas", "k", "--value", "v"],
            ["cas", "k", "--absent"],
            ["get", "k", "--limit", "3"],
            ["scan", "--limit", "0"],
            ["scan", "--limit", "10001"],
            ["--hex", "get", "xyz"],
            ["--timeout", "soon", "get", "k"],
            ["move", "1", "--to", "n2"],
            ["move", "x", "--from", "n1", "--to", "n2"],
            ["transfer-leader", "1"],
            ["drain"],
            ["status", "--to", "n1"],
            ["--placement", "nowhere", "status"],
          ]
        ) {
          const run = await cli(at, ...args);
          expectCli(run, 2, "");
          assert.match(run.stderr, /^error: .+\n\n[^]*Usage/, JSON.stringify(run));
        }
        expectCli(await cli(at, "drain", "--help"), 0, /--no-wait/);
        const empty = await cli(at, "get", "");
        expectCli(empty, 3, "");
        assert.match(empty.stderr, /^error: invalidArgument: .*key/);
        const unreachable = await cli("127.0.0.1:1", "--timeout", "300", "put", "k", "v");
        expectCli(unreachable, 4, "");
        assert.match(unreachable.stderr, /^error: unavailable/);
      },
    );
  } finally {
    for (const client of clients) client.close();
    await cluster.close();
  }
});
