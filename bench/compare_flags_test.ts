/**
 * Tests of the comparison's command lines (compare_flags.ts): the defaults the issue asks for,
 * every flag in both spellings, refusals naming the flag, and the load driver's command line
 * surviving a round trip.
 */
import assert from "node:assert/strict";
import {
  connectionCount,
  DEFAULT_OPTIONS,
  loadArgs,
  type LoadSpec,
  parseCompareFlags,
  parseLoadArgs,
} from "./compare_flags.ts";

function options(args: string[]) {
  const parsed = parseCompareFlags(args);
  if (parsed.kind !== "ok") {
    throw new Error(`Expected ${args.join(" ")} to parse: ${parsed.message}`);
  }
  return parsed.options;
}

function refusal(args: string[]): string {
  const parsed = parseCompareFlags(args);
  if (parsed.kind !== "error") throw new Error(`Expected ${args.join(" ")} to be refused`);
  return parsed.message;
}

Deno.test("parseCompareFlags() defaults to the issue's full comparison", () => {
  const o = options([]);
  assert.deepEqual(o, DEFAULT_OPTIONS);
  assert.equal(o.seconds, 8);
  assert.deepEqual(o.shards, [1, 10]);
  assert.deepEqual(o.concurrency, [1, 16, 256]);
  assert.deepEqual(o.ops, ["put", "get", "mix"]);
  assert.equal(o.keys, 20_000);
  assert.equal(o.failoverTrials, 20);
  assert.deepEqual(o.idleShards, [10, 100, 1000]);
  assert.ok(o.etcd && o.failover && o.move && o.idle && !o.json);
  assert.equal(o.out, undefined);
});

Deno.test("parseCompareFlags() reads every flag, as --flag value and --flag=value", () => {
  const o = options([
    "--seconds",
    "2.5",
    "--shards=1",
    "--concurrency",
    "1,16",
    "--ops=mix,put",
    "--failover-trials",
    "3",
    "--idle-shards=10",
    "--no-etcd",
    "--no-failover",
    "--no-move",
    "--no-idle",
    "--no-cells",
    "--json",
    "--out=/tmp/x.json",
    "--tinykv-root",
    "/tmp/old",
    "--keys=500",
    "--warmup-seconds",
    "0.5",
    "--move-gib=0.1",
  ]);
  assert.equal(o.seconds, 2.5);
  assert.deepEqual(o.shards, [1]);
  assert.deepEqual(o.concurrency, [1, 16]);
  // Cells keep the canonical order whatever order the flag names them in.
  assert.deepEqual(o.ops, ["put", "mix"]);
  assert.equal(o.failoverTrials, 3);
  assert.deepEqual(o.idleShards, [10]);
  assert.ok(!o.etcd && !o.failover && !o.move && !o.idle && !o.cells && o.json);
  assert.equal(o.out, "/tmp/x.json");
  assert.equal(o.tinykvRoot, "/tmp/old");
  assert.equal(o.keys, 500);
  assert.equal(o.warmupSeconds, 0.5);
  assert.equal(o.moveGib, 0.1);
  assert.deepEqual(options(["--shards", "10,1,10"]).shards, [10, 1]);
});

Deno.test("parseCompareFlags() refuses bad input, naming the flag and the value", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--bogus"], /^Unknown argument "--bogus"/],
    [["--seconds"], /^Flag "--seconds" needs a value$/],
    [["--seconds", "0"], /^Flag "--seconds" is "0": expected a number in \(0, 3600\]$/],
    [["--seconds", "abc"], /"--seconds" is "abc"/],
    [["--seconds="], /"--seconds" is "":/],
    [["--shards", "1,,2"], /^Flag "--shards" is "1,,2": expected integers from 1 to 4096/],
    [["--shards", "5000"], /"--shards" is "5000"/],
    [["--concurrency", "0"], /"--concurrency" is "0"/],
    [["--concurrency", "1.5"], /"--concurrency" is "1.5"/],
    [["--ops", "put,scan"], /^Flag "--ops" is "put,scan": expected some of put,get,mix$/],
    [["--failover-trials", "-1"], /"--failover-trials" is "-1"/],
    [["--out="], /^Flag "--out" is empty/],
    [["--json=yes"], /^Unknown argument "--json=yes"/],
  ];
  for (const [args, expected] of cases) assert.match(refusal(args), expected, args.join(" "));
});

const SPEC: LoadSpec = {
  system: "etcd",
  endpoints: ["127.0.0.1:24300", "127.0.0.1:24301", "127.0.0.1:24302"],
  op: "mix",
  inFlight: 256,
  seconds: 8,
  warmupSeconds: 1,
  keys: 20_000,
  valueBytes: 256,
  pids: { "etcd:m1": 100, "etcd:m2": 101, "etcd:m3": 102 },
  deadlineMs: 10_000,
};

Deno.test("parseLoadArgs() reads back what loadArgs() wrote", () => {
  assert.deepEqual(parseLoadArgs(loadArgs(SPEC)), SPEC);
  const tinykv: LoadSpec = {
    ...SPEC,
    system: "tinykv",
    endpoints: ["127.0.0.1:24321"],
    op: "preload",
    warmupSeconds: 0,
    pids: { "kvnode:24331": 7, zookeeper: 8 },
  };
  assert.deepEqual(parseLoadArgs(loadArgs(tinykv)), tinykv);
});

Deno.test("parseLoadArgs() refuses a missing or bad flag", () => {
  const without = (name: string) => loadArgs(SPEC).filter((a) => !a.startsWith(`--${name}=`));
  assert.equal(parseLoadArgs(without("keys")), 'Flag "--keys" is missing');
  assert.match(
    parseLoadArgs([...without("system"), "--system=redis"]) as string,
    /"--system" is "redis"/,
  );
  assert.match(parseLoadArgs([...without("op"), "--op=scan"]) as string, /"--op" is "scan"/);
  assert.match(parseLoadArgs([...without("pids"), "--pids=a:1"]) as string, /has "a:1"/);
  assert.match(parseLoadArgs(["--in-flight", "3"]) as string, /^Unknown argument "--in-flight"/);
});

Deno.test("connectionCount() opens min(in flight, 8) channels, at least one per endpoint", () => {
  const cases: Array<[number, number, number]> = [
    [1, 1, 1],
    [16, 1, 8],
    [256, 1, 8],
    [4, 1, 4],
    [1, 3, 3],
    [16, 3, 8],
  ];
  for (const [inFlight, endpoints, expected] of cases) {
    assert.equal(connectionCount(inFlight, endpoints), expected, `${inFlight} over ${endpoints}`);
  }
});
