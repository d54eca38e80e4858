/**
 * Tests of the comparison's results (compare_report.ts): per-1000-op CPU, the TinyKV/etcd ratios
 * and their pairing by cell, failover and idle summaries, and the markdown the report prints
 * (checked cell by cell, with missing values shown as "—").
 */
import assert from "node:assert/strict";
import {
  type CellResult,
  compareCells,
  type CompareResult,
  fixed,
  type LoadMeasurement,
  perThousandOps,
  ratio,
  renderCellTable,
  renderFailover,
  renderIdle,
  renderLogs,
  renderMove,
  renderProblems,
  renderReport,
  summarizeFailover,
  summarizeIdle,
  toCellResult,
} from "./compare_report.ts";

function measurement(overrides: Partial<LoadMeasurement> = {}): LoadMeasurement {
  return {
    op: "put",
    inFlight: 16,
    connections: 8,
    seconds: 2,
    ops: 1000,
    errors: 0,
    errorKinds: {},
    firstError: undefined,
    p50Ms: 10,
    p99Ms: 20,
    p999Ms: 30,
    serverCpuSeconds: { a: 0.5, b: 0.25 },
    driverCpuSeconds: 0.4,
    otherCores: 0.1,
    ...overrides,
  };
}

function etcdCell(overrides: Partial<LoadMeasurement> = {}): CellResult {
  return toCellResult(measurement(overrides), { system: "etcd", shards: null });
}

function tinyCell(overrides: Partial<LoadMeasurement> = {}): CellResult {
  return toCellResult(measurement(overrides), { system: "tinykv", shards: 10 });
}

Deno.test("ratio() and perThousandOps() give NaN instead of dividing by nothing", () => {
  assert.equal(ratio(3, 4), 0.75);
  assert.ok(Number.isNaN(ratio(3, 0)));
  assert.ok(Number.isNaN(ratio(undefined, 4)));
  assert.ok(Number.isNaN(ratio(3, NaN)));
  assert.ok(Number.isNaN(ratio(Infinity, 4)));
  assert.equal(perThousandOps(2, 4000), 0.5);
  assert.ok(Number.isNaN(perThousandOps(2, 0)));
});

Deno.test("toCellResult() sums the servers and derives rates per 1000 ops", () => {
  const cell = tinyCell({ ops: 500, seconds: 2.5 });
  assert.equal(cell.opsPerSecond, 200);
  assert.equal(cell.serverCpuTotalSeconds, 0.75);
  assert.equal(cell.serverCpuSecondsPer1000, 1.5);
  assert.equal(cell.driverCpuSecondsPer1000, 0.8);
  assert.equal(cell.system, "tinykv");
  assert.equal(cell.shards, 10);
  assert.ok(Number.isNaN(tinyCell({ ops: 0 }).serverCpuSecondsPer1000));
});

Deno.test("compareCells() pairs cells by op and in flight, TinyKV over etcd", () => {
  const etcd = [
    etcdCell({ op: "put", inFlight: 1, ops: 400, p50Ms: 2 }),
    etcdCell({ op: "put", inFlight: 16, ops: 2000, p50Ms: 8 }),
    etcdCell({ op: "get", inFlight: 16, ops: 3000 }),
  ];
  const tinykv = [
    tinyCell({ op: "put", inFlight: 16, ops: 1000, p50Ms: 16 }),
    tinyCell({ op: "put", inFlight: 1, ops: 100, p50Ms: 7 }),
    tinyCell({ op: "mix", inFlight: 1 }),
  ];
  const rows = compareCells(etcd, tinykv);
  assert.deepEqual(rows.map((r) => `${r.op}/${r.inFlight}`), [
    "put/16",
    "put/1",
    "mix/1",
    "get/16",
  ]);
  assert.equal(rows[0].opsRatio, 0.5);
  assert.equal(rows[0].p50Ratio, 2);
  assert.equal(rows[1].opsRatio, 0.25);
  assert.equal(rows[1].p50Ratio, 3.5);
  assert.equal(rows[2].etcd, undefined);
  assert.ok(Number.isNaN(rows[2].opsRatio));
  assert.equal(rows[3].tinykv, undefined);
});

Deno.test("renderCellTable() prints each pair with its ratios, and — where a side is missing", () => {
  const rows = compareCells(
    [etcdCell({ op: "get", inFlight: 16, ops: 4000, errors: 2 })],
    [tinyCell({ op: "get", inFlight: 16, ops: 1000 }), tinyCell({ op: "mix", inFlight: 1 })],
  );
  const table = renderCellTable(10, rows).split("\n");
  assert.equal(table[0], "### TinyKV with 10 shards against etcd");
  assert.equal(table[3].split("|").length, table[2].split("|").length, "header and rule align");
  assert.equal(
    table[4],
    "| get | 16 | 2000 | 10.00 / 20.00 / 30.00 | 500 | 10.00 / 20.00 / 30.00 | 0.25 | 1.00 " +
      "| 2 / 0 | 0.188 / 0.750 | 0.100 / 0.400 | 0.10 / 0.10 |",
  );
  assert.match(table[5], /^\| mix \| 1 \| — \| — \| 500 \| .* \| — \| — \| — \/ 0 \|/);
  assert.match(renderCellTable(1, []), /^### TinyKV with 1 shard against etcd/);
});

Deno.test("summarizeFailover() takes median and max over trials that got a write", () => {
  const trials = [
    { victim: "a", failoverMs: 1200, recoveredMs: 3000 },
    { victim: "b", failoverMs: null, recoveredMs: 5000, error: "no write" },
    { victim: "c", failoverMs: 800, recoveredMs: 3000 },
    { victim: "d", failoverMs: 2000, recoveredMs: 3000 },
  ];
  const result = summarizeFailover(trials, {
    system: "tinykv",
    setup: "TinyKV, 10 shards",
    redone: 2,
  });
  assert.equal(result.medianMs, 1200);
  assert.equal(result.maxMs, 2000);
  assert.equal(result.failed, 1);
  assert.equal(result.recoveredMedianMs, 3000);
  const table = renderFailover([result]);
  assert.match(table, /\| tinykv \| TinyKV, 10 shards \| 4 \| 1200 \| 2000 \| 1 \| 3\.0 \|/);
  assert.match(table, /- tinykv: 2 trials run again: the leader moved before the kill/);
  const none = summarizeFailover([], { system: "etcd", setup: "etcd", redone: 0 });
  assert.ok(Number.isNaN(none.medianMs) && Number.isNaN(none.maxMs));
  assert.doesNotMatch(renderFailover([none]), /run again/);
});

Deno.test("summarizeIdle() totals the processes; renderIdle() says when a cluster did not settle", () => {
  const settled = summarizeIdle({
    system: "tinykv",
    shards: 10,
    settled: true,
    settleSeconds: 9,
    shardsWithLeader: 10,
    windowSeconds: 10,
    processes: [
      { name: "kvnode:1", cpuPercent: 3.5, rssMib: 110 },
      { name: "gateway", cpuPercent: 0.5, rssMib: 90 },
    ],
  });
  assert.equal(settled.totalCpuPercent, 4);
  assert.equal(settled.totalRssMib, 200);
  const stuck = summarizeIdle({
    ...settled,
    shards: 1000,
    settled: false,
    settleSeconds: 600,
    shardsWithLeader: 730,
    note: "did not settle",
  });
  const table = renderIdle([settled, stuck]);
  assert.match(
    table,
    /\| tinykv \| 10 \| yes, in 9 s \| 10 \| 4\.0 \| 200 \| kvnode:1 3\.5 %, 110; gateway/,
  );
  assert.match(table, /\| tinykv \| 1000 \| NO after 600 s \| 730 \|/);
  assert.match(table, /- tinykv 1000: did not settle/);
});

Deno.test("renderMove() gives the size and rate, or why it was not measured", () => {
  const ok = renderMove({
    kind: "ok",
    shardBytes: 500 * 1024 * 1024,
    copySeconds: 20,
    copyMibPerSecond: 25,
    moveSeconds: 31.5,
    details: { writerOps: 40, writerP50Ms: 5, writerP99Ms: 250.25, writerMaxMs: 300 },
  });
  assert.match(ok, /500 MiB \(524 MB\) copied to a new replica in 20\.0 s \(25\.0 MiB\/s\)/);
  assert.match(
    ok,
    /took 31\.5 s; a writer meanwhile: 40 puts, p50 5\.0 ms, p99 250\.3 ms, max 300\.0/,
  );
  assert.match(
    renderMove({ kind: "failed", message: "exited with code 1" }),
    /Not measured: exited/,
  );
});

Deno.test("renderProblems() lists cell errors, unexpected exits and failed parts, or nothing", () => {
  const base: CompareResult = {
    startedAt: "2026-01-01T00:00:00.000Z",
    durationSeconds: 60,
    machine: { cpuModel: "X", cores: 2, memoryMib: 2048, kernel: "6", deno: "2.9.3", etcd: "3.4" },
    options: {},
    method: ["m"],
    etcd: { cells: [etcdCell()] },
    tinykv: [{ shards: 1, cells: [tinyCell()], unexpectedExits: [], logs: [] }],
    comparisons: [],
    failover: [],
    move: null,
    idle: [],
    phaseSeconds: {},
    errors: [],
  };
  assert.equal(renderProblems(base), "");
  const problems = renderProblems({
    ...base,
    tinykv: [{
      shards: 1,
      cells: [
        tinyCell({ errors: 3, errorKinds: { unavailable: 3 }, firstError: "unavailable: x" }),
      ],
      unexpectedExits: [{
        name: "kvnode:24331",
        pid: 9,
        how: "exit code 1",
        atMs: 0,
        lastLines: ["boom"],
      }],
      logs: [{
        file: "kvnode-24331.log",
        warnings: 2,
        errors: 1,
        samples: ["error: x", "warn: y"],
      }],
    }],
    errors: ["move failed: no JSON"],
  });
  assert.match(
    problems,
    /- tinykv 10 shards put x16: 3 errors \{"unavailable":3\}, first: unavailable: x/,
  );
  assert.match(
    problems,
    /- TinyKV 1 shards: kvnode:24331 exited \(pid 9, exit code 1\)\n {2}> boom/,
  );
  assert.match(problems, /- move failed: no JSON/);
  const logs = renderLogs([{ shards: 1, cells: [], unexpectedExits: [], logs: [] }]);
  assert.equal(logs, "");
  assert.match(
    renderReport({
      ...base,
      tinykv: [{
        shards: 1,
        cells: [],
        unexpectedExits: [],
        logs: [{ file: "k.log", warnings: 2, errors: 1, samples: ["error: x"] }],
      }],
    }),
    /### TinyKV service logs.*\n\n- 1 shard, k\.log: 1 errors, 2 warnings; error: x$/,
  );
  const report = renderReport(base);
  assert.match(report, /^## TinyKV against etcd \(2026-01-01T00:00:00\.000Z, 1\.0 min\)/);
  assert.match(report, /Machine: X, 2 cores, 2\.0 GiB, Linux 6, Deno 2\.9\.3, etcd 3\.4/);
  assert.equal(fixed(null, 1), "—");
});
