/**
 * Tests of reading tools/dev.ts's output (compare_dev_output.ts) against lines as dev prints them:
 * the table of processes, the serving line, exits and restarts, and lines that say nothing.
 */
import assert from "node:assert/strict";
import { parseDevLine, processName, summarizeLog } from "./compare_dev_output.ts";

Deno.test("parseDevLine() reads the table of processes dev prints once the cluster serves", () => {
  const rows = [
    "  ZooKeeper  127.0.0.1:24320     6588  data in /tmp/x/data/zk",
    "  placement  127.0.0.1:24322     6644  status page http://127.0.0.1:24323/",
    "  gateway    127.0.0.1:24321     6653  client API (gRPC tinykv.v1.KV)",
    "  kvnode     127.0.0.1:24331     6611  node n-66a85f44: 10 replicas, leads 3",
  ];
  assert.deepEqual(rows.map(parseDevLine), [
    { kind: "process", name: "zookeeper", address: "127.0.0.1:24320", pid: 6588 },
    { kind: "process", name: "placement", address: "127.0.0.1:24322", pid: 6644 },
    { kind: "process", name: "gateway", address: "127.0.0.1:24321", pid: 6653 },
    { kind: "process", name: "kvnode:24331", address: "127.0.0.1:24331", pid: 6611 },
  ]);
  // The header row and the lines around the table are no processes.
  assert.equal(parseDevLine("  service    address              pid  details"), undefined);
  assert.equal(
    parseDevLine("  deno task tinykv --endpoint 127.0.0.1:24321 put hello world"),
    undefined,
  );
});

Deno.test("parseDevLine() reads the serving line, exits, restarts and serving again", () => {
  assert.deepEqual(
    parseDevLine(
      "dev: cluster serves: ZooKeeper 127.0.0.1:24320, 3 kvnodes, 998/1000 shards with a leader",
    ),
    { kind: "serving", shardsWithLeader: 998, shards: 1000 },
  );
  assert.deepEqual(parseDevLine("dev: kvnode :24332 exited (pid 41327, killed by SIGKILL)"), {
    kind: "exited",
    name: "kvnode:24332",
    pid: 41327,
    how: "killed by SIGKILL",
  });
  assert.deepEqual(parseDevLine("dev: gateway :24321 exited (pid 7, exit code 1)"), {
    kind: "exited",
    name: "gateway",
    pid: 7,
    how: "exit code 1",
  });
  assert.deepEqual(parseDevLine("dev: restarted placement :24322 (pid 41502)"), {
    kind: "restarted",
    name: "placement",
    pid: 41502,
  });
  assert.deepEqual(
    parseDevLine("dev: kvnode :24332 serves again: kvnode n-283f6372 serving on 127.0.0.1:24332"),
    { kind: "servesAgain", name: "kvnode:24332" },
  );
  for (
    const line of [
      "dev: restarting kvnode :24332 in 2 s",
      "dev: the last lines of /tmp/x/logs/kvnode-24332.out:",
      "  | kvnode n-283f6372 serving on 127.0.0.1:24332 (cluster c-4e, 10 replicas, pid 4)",
      "dev: kvnode n-66a85f44 serving on 127.0.0.1:24331 (cluster c-d3, 0 replicas, pid 6611)",
      "",
    ]
  ) {
    assert.equal(parseDevLine(line), undefined, line);
  }
});

Deno.test("processName() names kvnodes by port and other services by service", () => {
  assert.equal(processName("kvnode", 7901), "kvnode:7901");
  assert.equal(processName("gateway", "7700"), "gateway");
});

Deno.test("summarizeLog() counts warnings and errors and keeps distinct messages", () => {
  const lines = [
    '{"ts":"2026-12-03T15:00:00.000Z","level":"info","msg":"serving"}',
    '{"ts":"2026-12-03T15:00:01.000Z","level":"warn","msg":"slow turn","ms":150}',
    '{"ts":"2026-12-03T15:00:02.000Z","level":"warn","msg":"slow turn","ms":180}',
    '{"ts":"2026-12-03T15:00:03.000Z","level":"error","msg":"peer unreachable"}',
    'not json "level":"warn"',
    ...Array.from({ length: 8 }, (_, i) => `{"level":"warn","msg":"other ${i}"}`),
  ];
  const summary = summarizeLog("kvnode-1.log", lines.join("\n"));
  assert.equal(summary.file, "kvnode-1.log");
  assert.equal(summary.warnings, 10);
  assert.equal(summary.errors, 1);
  assert.deepEqual(summary.samples, [
    "warn: slow turn",
    "error: peer unreachable",
    "warn: other 0",
    "warn: other 1",
    "warn: other 2",
  ]);
  assert.deepEqual(summarizeLog("x.log", ""), {
    file: "x.log",
    warnings: 0,
    errors: 0,
    samples: [],
  });
});
