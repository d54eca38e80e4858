// Tests of the fault test's floors and its fault table: the counts of a measured healthy run
// clear every floor; a run with any one workload's history empty (or a kind of legal boundary
// probe that never succeeded) fails, naming what was short; floors scale with the minutes of
// faults; the fault table counts applied and skipped faults by kind.

import assert from "node:assert/strict";
import { evaluateFloors, FLOORS, type RunCounts } from "./floors.ts";
import { type FaultEvent, faultTable } from "./nemesis.ts";

/** The counts of the measured run (seed 1, 184 s of faults), with boundary probes 12 of each. */
const HEALTHY: RunCounts = {
  operations: 24_922,
  keys: 4352,
  faults: 33,
  register: { operations: 11_650, keys: 35 },
  append: { appends: 6539, reads: 2212, keys: 28 },
  scan: { writes: 4289, scans: 232, prefixes: 7 },
  boundary: { "put-get": 12, "append-to-limit": 12, "cas": 12 },
};

const MINUTES = 184 / 60;

Deno.test("evaluateFloors() passes a healthy run, with a margin on every floor", () => {
  const { results, problems } = evaluateFloors(HEALTHY, MINUTES);
  assert.deepEqual(problems, []);
  assert.equal(results.length, FLOORS.length);
  for (const r of results) {
    assert.ok(r.floor >= 1, `${r.what}: a floor of 0 checks nothing`);
    assert.ok(r.seen >= 2 * r.floor, `${r.what}: ${r.seen} is within 2x of the floor ${r.floor}`);
  }
});

Deno.test("evaluateFloors() fails a run with one workload's history empty", () => {
  const table: Array<[Partial<RunCounts>, RegExp]> = [
    [{ register: { operations: 0, keys: 0 } }, /only 0 register operations \(floor 920/],
    [{ register: { operations: 20_000, keys: 5 } }, /only 5 register keys \(floor 9/],
    [{ append: { appends: 0, reads: 2212, keys: 28 } }, /only 0 acknowledged appends/],
    [{ append: { appends: 6539, reads: 0, keys: 28 } }, /only 0 append reads/],
    [{ scan: { writes: 4289, scans: 0, prefixes: 0 } }, /only 0 scans .*only 0 scanned prefixes/s],
    [{ scan: { writes: 10, scans: 232, prefixes: 7 } }, /only 10 acknowledged scan writes/],
    [{ faults: 3 }, /only 3 faults applied \(floor 12/],
  ];
  for (const [change, pattern] of table) {
    const { problems } = evaluateFloors({ ...HEALTHY, ...change }, MINUTES);
    assert.ok(problems.length > 0, JSON.stringify(change));
    assert.match(problems.join("\n"), pattern);
  }
});

Deno.test("evaluateFloors() needs legal boundary probes of every kind to succeed", () => {
  const none = { "put-get": 0, "append-to-limit": 0, "cas": 0 };
  const empty = evaluateFloors({ ...HEALTHY, boundary: none }, MINUTES).problems;
  assert.equal(empty.length, 4);
  assert.match(empty[0], /only 0 legal boundary probes ok \(floor 3 for 3.1 min/);
  const noCas = evaluateFloors({ ...HEALTHY, boundary: { ...none, "put-get": 5, "cas": 0 } }, 3);
  assert.deepEqual(noCas.problems.map((p) => p.replace(/ \(.*/, "")), [
    "only 0 append-to-the-limit probes ok",
    "only 0 1 MiB compare-and-swap probes ok",
  ]);
});

Deno.test("evaluateFloors() scales the floors with the minutes of faults", () => {
  const at = (minutes: number) =>
    new Map(evaluateFloors(HEALTHY, minutes).results.map((r) => [r.what, r.floor]));
  assert.equal(at(3).get("completed operations"), 4500);
  assert.equal(at(3).get("1 MiB put-get probes ok"), 1);
  assert.equal(at(1).get("1 MiB put-get probes ok"), 0);
  assert.equal(at(10).get("register operations"), 3000);
  assert.equal(at(0).get("keys"), 0);
});

Deno.test("faultTable() counts applied and skipped faults by kind, in order of first use", () => {
  const event = (kind: string, start: number, end: number, skipped?: string): FaultEvent => ({
    kind,
    detail: "",
    start,
    end,
    ...(skipped === undefined ? {} : { skipped }),
  });
  const table = faultTable([
    event("kill", 0, 3000),
    event("remove-leader", 4000, 9500),
    event("kill", 10_000, 12_000),
    event("remove-leader", 13_000, 13_100, "shard 2 has 2 voters"),
  ]);
  assert.deepEqual(table, [
    "| fault | applied | skipped | seconds applied |",
    "|---|---:|---:|---:|",
    "| kill | 2 | 0 | 5.0 |",
    "| remove-leader | 1 | 1 | 5.5 |",
  ]);
});
