/**
 * Tests of `deno task bench:watch`: the pure parts by table and by seeded mutation, and one small
 * run against a real cluster.
 *
 * - The command line (watch_flags.ts): defaults, both spellings, and every bad value refused
 *   with a message naming the flag.
 * - The workload (watch_workload.ts): keys and values round-trip, anything else decodes as -1,
 *   prefix ends, the key ring never hands out a busy key.
 * - The delivery checker (watch_check.ts): a seeded stream of correct deliveries checks clean;
 *   then each mutation (an event dropped, an event repeated, two events of one key swapped, a
 *   foreign event) is caught as exactly one fault of its own kind, and the window's bounds and
 *   unacknowledged puts are respected. Latencies: before-ack clamping and quantiles.
 * - The report (watch_report.ts): rates, the pairing with etcd's cells, the tables, and the
 *   correctness section, quiet when clean and loud when not.
 * - End to end (bench/watch.ts `runCell`): a fresh 1-shard TinyKV dev cluster, one watcher
 *   through KV.Watch and one through the gateway's etcd Watch, for about a second each; events
 *   arrive, none missing, none repeated, none out of order.
 */
import assert from "node:assert/strict";
import { mulberry32 } from "@tinykv/raft";
import { findFreePlan, isPortFree } from "./compare_ports.ts";
import { clockTicksPerSecond, ProcessRegistry } from "./compare_procs.ts";
import type { MachineInfo } from "./compare_report.ts";
import { TinyKvCluster } from "./compare_tinykv.ts";
import { runCell, tinyKvTarget, waitWhole, WATCH_PORT_BASE } from "./watch.ts";
import {
  checkDeliveries,
  deliveryLatencies,
  firstLacking,
  isClean,
  putLatencies,
  sumChecks,
  summarizeLatencies,
  WatcherLog,
} from "./watch_check.ts";
import { DEFAULT_OPTIONS, parseWatchFlags, USAGE } from "./watch_flags.ts";
import {
  compareWatchCells,
  deliveryFaults,
  isCorrect,
  renderCells,
  renderCorrectness,
  renderRatios,
  renderWatchReport,
  toWatchCell,
  type WatchCell,
  type WatchMeasurement,
} from "./watch_report.ts";
import {
  encodeValue,
  FILLER_BYTES,
  keyBytes,
  keyIndexOf,
  KeyRing,
  prefixEnd,
  PutLog,
  seqOf,
  VALUE_BYTES,
} from "./watch_workload.ts";

const encoder = new TextEncoder();
const PREFIX = encoder.encode("watch/7-tinykv-kv/");
const FILLER = new Uint8Array(FILLER_BYTES).fill(0xab);

// --- Flags -------------------------------------------------------------------------------------

function options(args: string[]) {
  const parsed = parseWatchFlags(args);
  if (parsed.kind !== "ok") {
    throw new Error(`Expected ${args.join(" ")} to parse: ${parsed.message}`);
  }
  return parsed.options;
}

function refusal(args: string[]): string {
  const parsed = parseWatchFlags(args);
  if (parsed.kind !== "error") throw new Error(`Expected ${args.join(" ")} to be refused`);
  return parsed.message;
}

Deno.test("parseWatchFlags() defaults to the brief's run: 1 and 10 shards, 1 and 16 watchers", () => {
  const o = options([]);
  assert.deepEqual(o, DEFAULT_OPTIONS);
  assert.equal(o.seconds, 10);
  assert.deepEqual(o.shards, [1, 10]);
  assert.deepEqual(o.watchers, [1, 16]);
  assert.deepEqual(o.concurrency, [16]);
  assert.deepEqual(o.apis, ["kv", "etcd"]);
  assert.ok(o.etcd && o.tinykv && !o.json && !o.help);
  assert.equal(o.out, undefined);
});

Deno.test("parseWatchFlags() takes every flag as --flag value and --flag=value", () => {
  const spaced = options([
    "--seconds",
    "2.5",
    "--warmup-seconds",
    "0",
    "--shards",
    "1,4,4",
    "--watchers",
    "3",
    "--concurrency",
    "1,500",
    "--apis",
    "etcd,kv",
    "--no-etcd",
    "--json",
    "--out",
    "/tmp/w.json",
  ]);
  const inline = options([
    "--seconds=2.5",
    "--warmup-seconds=0",
    "--shards=1,4,4",
    "--watchers=3",
    "--concurrency=1,500",
    "--apis=etcd,kv",
    "--no-etcd",
    "--json",
    "--out=/tmp/w.json",
  ]);
  assert.deepEqual(spaced, inline);
  assert.equal(spaced.seconds, 2.5);
  assert.equal(spaced.warmupSeconds, 0);
  assert.deepEqual(spaced.shards, [1, 4], "duplicates dropped");
  assert.deepEqual(spaced.concurrency, [1, 500]);
  assert.deepEqual(spaced.apis, ["kv", "etcd"], "APIs run in their canonical order");
  assert.equal(spaced.etcd, false);
  assert.equal(spaced.out, "/tmp/w.json");
  assert.equal(options(["--help"]).help, true);
  assert.match(USAGE, /--watchers LIST/);
});

Deno.test("parseWatchFlags() refuses bad values, naming the flag and the value", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--seconds", "0"], /^Flag "--seconds" is "0": expected a number in \(0, 3600\]$/],
    [["--seconds", "-1"], /"--seconds" is "-1"/],
    [["--seconds", "abc"], /"--seconds" is "abc"/],
    [["--seconds="], /"--seconds" is ""/],
    [["--warmup-seconds", "-0.5"], /"--warmup-seconds" is "-0.5": expected a number in \[0, 600\]/],
    [["--watchers", "0"], /"--watchers" is "0": expected integers from 1 to 256/],
    [["--watchers", "257"], /"--watchers" is "257"/],
    [["--watchers", "1,,2"], /"--watchers" is "1,,2"/],
    [["--watchers", "1.5"], /"--watchers" is "1.5"/],
    [["--concurrency", "501"], /"--concurrency" is "501": expected integers from 1 to 500/],
    [["--shards", "x"], /"--shards" is "x"/],
    [["--apis", "kv,grpc"], /"--apis" is "kv,grpc": expected some of kv,etcd/],
    [["--out", ""], /"--out" is empty/],
    [["--seconds"], /^Flag "--seconds" needs a value$/],
    [["--frobnicate"], /^Unknown argument "--frobnicate": see --help$/],
    [["--json=yes"], /^Unknown argument "--json=yes"/],
    [["--no-etcd", "--no-tinykv"], /leave nothing to run/],
  ];
  for (const [args, expected] of cases) {
    assert.match(refusal(args), expected, args.join(" "));
  }
});

// --- Workload ----------------------------------------------------------------------------------

Deno.test("keyBytes() and keyIndexOf() round-trip; other keys are -1", () => {
  for (const index of [0, 7, 999, 9999]) {
    assert.equal(keyIndexOf(PREFIX, keyBytes(PREFIX, index)), index);
  }
  assert.equal(new TextDecoder().decode(keyBytes(PREFIX, 42)), "watch/7-tinykv-kv/0042");
  assert.equal(keyIndexOf(PREFIX, encoder.encode("watch/7-tinykv-kv/004")), -1, "too short");
  assert.equal(keyIndexOf(PREFIX, encoder.encode("watch/7-tinykv-kv/00421")), -1, "too long");
  assert.equal(keyIndexOf(PREFIX, encoder.encode("watch/8-tinykv-kv/0042")), -1, "other prefix");
  assert.equal(keyIndexOf(PREFIX, encoder.encode("watch/7-tinykv-kv/00a2")), -1, "not digits");
  assert.throws(() => keyBytes(PREFIX, 10_000), /does not fit/);
});

Deno.test("encodeValue() and seqOf() round-trip; a wrong size or key is -1", () => {
  const value = encodeValue(123_456, 42, FILLER);
  assert.equal(value.length, VALUE_BYTES);
  assert.equal(seqOf(value, 42), 123_456);
  assert.equal(seqOf(value, 43), -1, "the value names key 42");
  assert.equal(seqOf(value.subarray(0, 255), 42), -1);
  // A view into a larger buffer (as decoded messages are) decodes the same.
  const framed = new Uint8Array(VALUE_BYTES + 10);
  framed.set(value, 10);
  assert.equal(seqOf(framed.subarray(10), 42), 123_456);
  assert.deepEqual(value.subarray(8), FILLER);
});

Deno.test("prefixEnd() increments the last byte below 0xff", () => {
  assert.deepEqual(prefixEnd(encoder.encode("a/")), encoder.encode("a0"));
  assert.deepEqual(prefixEnd(new Uint8Array([0x61, 0xff, 0xff])), new Uint8Array([0x62]));
  assert.deepEqual(prefixEnd(new Uint8Array([0xff])), new Uint8Array([0]));
  assert.deepEqual(prefixEnd(new Uint8Array([])), new Uint8Array([0]));
});

Deno.test("KeyRing hands out each key once until it comes back, oldest free first", () => {
  const ring = new KeyRing(3);
  assert.deepEqual([ring.take(), ring.take(), ring.take()], [0, 1, 2]);
  assert.equal(ring.take(), undefined, "every key is busy");
  ring.release(1);
  ring.retire(0);
  ring.release(2);
  assert.deepEqual([ring.take(), ring.take(), ring.take()], [1, 2, undefined]);
  assert.throws(() => ring.release(0), /not busy/, "a retired key never comes back");
  assert.equal(ring.freeCount, 0);
});

Deno.test("KeyRing under many takes never has a key busy twice", () => {
  const ring = new KeyRing(50);
  const next = mulberry32(11);
  const busy = new Set<number>();
  for (let step = 0; step < 20_000; step++) {
    if (busy.size > 0 && next() < 0.5) {
      const key = [...busy][Math.floor(next() * busy.size)];
      busy.delete(key);
      ring.release(key);
    } else {
      const key = ring.take();
      if (key === undefined) continue;
      assert.ok(!busy.has(key), `key ${key} handed out while busy`);
      busy.add(key);
    }
  }
});

Deno.test("PutLog refuses to acknowledge a put twice or one never sent", () => {
  const puts = new PutLog();
  const seq = puts.add(5, 10);
  puts.ack(seq, 12);
  assert.equal(puts.ackedMsOf(seq), 12);
  assert.throws(() => puts.ack(seq, 13), /acknowledged twice/);
  assert.throws(() => puts.ack(1, 13), /never sent/);
});

// --- The delivery checker ----------------------------------------------------------------------

/** One delivery: a put's key and value, and when it arrived. */
interface Delivery {
  key: Uint8Array;
  value: Uint8Array;
  arrivalMs: number;
}

/**
 * A seeded history: `count` puts over `keys` keys, one in flight per key, each acknowledged 1 to
 * 5 ms after its send (puts at `unackedEvery` are not), and the deliveries a correct watch makes:
 * each put once, each key in order, puts of different keys shuffled among themselves.
 */
function history(
  seed: number,
  shape: { count: number; keys: number; unackedEvery?: number },
): { puts: PutLog; deliveries: Delivery[] } {
  const next = mulberry32(seed);
  const puts = new PutLog();
  const perKey: Delivery[][] = Array.from({ length: shape.keys }, () => []);
  for (let i = 0; i < shape.count; i++) {
    const key = Math.floor(next() * shape.keys);
    const sentMs = i;
    const seq = puts.add(key, sentMs);
    const acked = shape.unackedEvery === undefined || i % shape.unackedEvery !== 0;
    if (acked) puts.ack(seq, sentMs + 1 + next() * 4);
    const arrivalMs = sentMs + next() * 10;
    perKey[key].push({
      key: keyBytes(PREFIX, key),
      value: encodeValue(seq, key, FILLER),
      arrivalMs,
    });
  }
  // Merge the keys' queues in a random order: each key's own order is kept.
  const deliveries: Delivery[] = [];
  const heads = perKey.map(() => 0);
  while (deliveries.length < shape.count) {
    const key = Math.floor(next() * shape.keys);
    if (heads[key] < perKey[key].length) deliveries.push(perKey[key][heads[key]++]);
  }
  return { puts, deliveries };
}

function logOf(deliveries: readonly Delivery[], keys = 1000): WatcherLog {
  const log = new WatcherLog(PREFIX, keys);
  for (const d of deliveries) log.record(d.key, d.value, d.arrivalMs);
  return log;
}

const SEEDS = [1, 2, 3, 42, 1234];

Deno.test("checkDeliveries() finds nothing wrong in correct seeded deliveries", () => {
  for (const seed of SEEDS) {
    const { puts, deliveries } = history(seed, { count: 2000, keys: 20 });
    const check = checkDeliveries(puts, logOf(deliveries), { fromSeq: 0, toSeq: puts.count });
    assert.deepEqual(check, {
      expected: 2000,
      delivered: 2000,
      missing: 0,
      duplicated: 0,
      outOfOrder: 0,
      unexpected: 0,
    }, `seed ${seed}`);
    assert.ok(isClean(check));
  }
});

Deno.test("checkDeliveries() counts one dropped event as exactly one missing", () => {
  for (const seed of SEEDS) {
    const { puts, deliveries } = history(seed, { count: 2000, keys: 20 });
    const drop = Math.floor(mulberry32(seed + 100)() * deliveries.length);
    const mutated = deliveries.filter((_, i) => i !== drop);
    const check = checkDeliveries(puts, logOf(mutated), { fromSeq: 0, toSeq: puts.count });
    assert.equal(check.missing, 1, `seed ${seed}`);
    assert.equal(check.delivered, 1999);
    assert.equal(check.duplicated + check.outOfOrder + check.unexpected, 0, `seed ${seed}`);
    assert.ok(!isClean(check));
  }
});

Deno.test("checkDeliveries() counts one repeated event as exactly one duplicate", () => {
  for (const seed of SEEDS) {
    const { puts, deliveries } = history(seed, { count: 2000, keys: 20 });
    const next = mulberry32(seed + 200);
    const repeat = Math.floor(next() * deliveries.length);
    // The copy arrives later, anywhere after the original (even right after it).
    const at = repeat + 1 + Math.floor(next() * (deliveries.length - repeat));
    const mutated = [...deliveries.slice(0, at), deliveries[repeat], ...deliveries.slice(at)];
    const check = checkDeliveries(puts, logOf(mutated), { fromSeq: 0, toSeq: puts.count });
    assert.equal(check.duplicated, 1, `seed ${seed}`);
    assert.equal(check.missing + check.outOfOrder + check.unexpected, 0, `seed ${seed}`);
    assert.ok(!isClean(check));
  }
});

Deno.test("checkDeliveries() counts two swapped events of one key as one out of order", () => {
  for (const seed of SEEDS) {
    const { puts, deliveries } = history(seed, { count: 2000, keys: 20 });
    const first = Math.floor(mulberry32(seed + 300)() * 1000);
    const keyIndex = keyIndexOf(PREFIX, deliveries[first].key);
    const second = deliveries.findIndex((d, i) =>
      i > first && keyIndexOf(PREFIX, d.key) === keyIndex
    );
    assert.ok(second > first, "the key has a later event");
    const mutated = [...deliveries];
    [mutated[first], mutated[second]] = [mutated[second], mutated[first]];
    const check = checkDeliveries(puts, logOf(mutated), { fromSeq: 0, toSeq: puts.count });
    assert.equal(check.outOfOrder, 1, `seed ${seed}`);
    assert.equal(check.missing + check.duplicated + check.unexpected, 0, `seed ${seed}`);
    assert.ok(!isClean(check));
  }
});

Deno.test("checkDeliveries() does not call events of different keys out of order", () => {
  const puts = new PutLog();
  const a = puts.add(1, 0);
  const b = puts.add(2, 0);
  puts.ack(a, 1);
  puts.ack(b, 1);
  const log = new WatcherLog(PREFIX, 10);
  log.record(keyBytes(PREFIX, 2), encodeValue(b, 2, FILLER), 2);
  log.record(keyBytes(PREFIX, 1), encodeValue(a, 1, FILLER), 3);
  assert.ok(isClean(checkDeliveries(puts, log, { fromSeq: 0, toSeq: 2 })));
});

Deno.test("checkDeliveries() counts events that name no put of the writer as unexpected", () => {
  const puts = new PutLog();
  const seq = puts.add(1, 0);
  puts.ack(seq, 1);
  const log = new WatcherLog(PREFIX, 10);
  log.record(keyBytes(PREFIX, 1), encodeValue(seq, 1, FILLER), 2);
  log.record(keyBytes(PREFIX, 2), encodeValue(seq + 5, 2, FILLER), 2); // never sent
  log.record(keyBytes(PREFIX, 3), encodeValue(seq + 1, 3, FILLER), 2); // never sent either
  log.record(keyBytes(PREFIX, 4), encodeValue(seq, 1, FILLER), 2); // value names another key
  log.record(encoder.encode("elsewhere/0001"), encodeValue(seq, 1, FILLER), 2);
  log.record(keyBytes(PREFIX, 1), new Uint8Array(3), 2); // wrong size
  log.recordOther(); // a delete
  const check = checkDeliveries(puts, log, { fromSeq: 0, toSeq: 1 });
  assert.equal(check.unexpected, 6);
  assert.equal(check.delivered, 1);
  assert.equal(check.missing + check.duplicated + check.outOfOrder, 0);
  assert.equal(log.events, 7);
});

Deno.test("checkDeliveries() counts a put delivered under another put's key as unexpected", () => {
  const puts = new PutLog();
  const seq = puts.add(1, 0);
  puts.ack(seq, 1);
  const log = new WatcherLog(PREFIX, 10);
  // Key 2 with a value that says seq 0 of key 2: decodable, but the writer put seq 0 to key 1.
  log.record(keyBytes(PREFIX, 2), encodeValue(seq, 2, FILLER), 2);
  const check = checkDeliveries(puts, log, { fromSeq: 0, toSeq: 1 });
  assert.equal(check.unexpected, 1);
  assert.equal(check.missing, 1, "the real put was not delivered");
});

Deno.test("checkDeliveries() expects only acknowledged puts of the window", () => {
  const { puts, deliveries } = history(5, { count: 300, keys: 10, unackedEvery: 7 });
  // Every unacknowledged put and every put before the window is left undelivered.
  const window = { fromSeq: 100, toSeq: 300 };
  const kept = deliveries.filter((d) => {
    const seq = seqOf(d.value, keyIndexOf(PREFIX, d.key));
    return seq >= window.fromSeq && !Number.isNaN(puts.ackedMsOf(seq));
  });
  const check = checkDeliveries(puts, logOf(kept), window);
  const acknowledged = Array.from({ length: 200 }, (_, i) => i + 100)
    .filter((seq) => seq % 7 !== 0).length;
  assert.equal(check.expected, acknowledged);
  assert.equal(check.delivered, acknowledged);
  assert.ok(isClean(check));
  // An unacknowledged put that is delivered anyway is no fault either.
  assert.ok(isClean(checkDeliveries(puts, logOf(deliveries), window)));
});

Deno.test("WatcherLog counts a repeat beyond 255 deliveries without wrapping", () => {
  const puts = new PutLog();
  const seq = puts.add(0, 0);
  puts.ack(seq, 0);
  const log = new WatcherLog(PREFIX, 1);
  for (let i = 0; i < 300; i++) log.record(keyBytes(PREFIX, 0), encodeValue(seq, 0, FILLER), i);
  const check = checkDeliveries(puts, log, { fromSeq: 0, toSeq: 1 });
  assert.equal(check.duplicated, 254, "counted up to 255 deliveries");
  assert.equal(check.missing, 0);
});

Deno.test("firstLacking() names the first acknowledged put not delivered", () => {
  const { puts, deliveries } = history(9, { count: 100, keys: 5 });
  const missingSeq = seqOf(deliveries[40].value, keyIndexOf(PREFIX, deliveries[40].key));
  const log = logOf(deliveries.filter((_, i) => i !== 40));
  assert.equal(firstLacking(puts, log, { fromSeq: 0, toSeq: 100 }), missingSeq);
  assert.equal(firstLacking(puts, log, { fromSeq: missingSeq + 1, toSeq: 100 }), 100);
  assert.equal(firstLacking(puts, logOf(deliveries), { fromSeq: 0, toSeq: 100 }), 100);
});

Deno.test("sumChecks() adds every field", () => {
  const one = {
    expected: 4,
    delivered: 3,
    missing: 1,
    duplicated: 2,
    outOfOrder: 0,
    unexpected: 1,
  };
  assert.deepEqual(sumChecks([one, one]), {
    expected: 8,
    delivered: 6,
    missing: 2,
    duplicated: 4,
    outOfOrder: 0,
    unexpected: 2,
  });
});

// --- Latencies ---------------------------------------------------------------------------------

Deno.test("deliveryLatencies() clamps events that beat the acknowledgment and counts them", () => {
  const puts = new PutLog();
  const log = new WatcherLog(PREFIX, 10);
  // Sent at 0, acknowledged at 10; arriving at 4 (before), 10 (at), 13 and 30 ms.
  for (const [key, arrivalMs] of [[0, 4], [1, 10], [2, 13], [3, 30]]) {
    const seq = puts.add(key, 0);
    puts.ack(seq, 10);
    log.record(keyBytes(PREFIX, key), encodeValue(seq, key, FILLER), arrivalMs);
  }
  const unacked = puts.add(4, 0); // delivered, never acknowledged: no latency
  log.record(keyBytes(PREFIX, 4), encodeValue(unacked, 4, FILLER), 1);
  const latencies = deliveryLatencies(puts, log, { fromSeq: 0, toSeq: puts.count });
  assert.deepEqual(latencies.sinceAckMs, [0, 0, 3, 20]);
  assert.deepEqual(latencies.sinceSendMs, [4, 10, 13, 30]);
  assert.equal(latencies.beforeAck, 1, "arriving at the acknowledgment is not before it");
  assert.deepEqual(putLatencies(puts, { fromSeq: 0, toSeq: puts.count }), [10, 10, 10, 10]);
});

Deno.test("summarizeLatencies() gives nearest-rank p50, p99 and the max", () => {
  const values = Array.from({ length: 1000 }, (_, i) => 1000 - i); // 1000 … 1, unsorted input
  assert.deepEqual(summarizeLatencies(values), {
    count: 1000,
    p50Ms: 500,
    p99Ms: 990,
    maxMs: 1000,
  });
  assert.deepEqual(values.slice(0, 2), [1000, 999], "the input is not sorted in place");
  const none = summarizeLatencies([]);
  assert.equal(none.count, 0);
  assert.ok(Number.isNaN(none.p50Ms) && Number.isNaN(none.maxMs));
});

// --- Report ------------------------------------------------------------------------------------

function measurement(overrides: Partial<WatchMeasurement> = {}): WatchMeasurement {
  return {
    subject: "etcd",
    shards: null,
    watchers: 16,
    inFlight: 16,
    writeSeconds: 10,
    seconds: 10.5,
    drainMs: 12,
    puts: 5000,
    putErrors: 0,
    putErrorKinds: {},
    firstPutError: undefined,
    putLatency: { count: 5000, p50Ms: 12, p99Ms: 30, maxMs: 50 },
    latency: { count: 80_000, p50Ms: 2, p99Ms: 8, maxMs: 20 },
    sinceSendLatency: { count: 80_000, p50Ms: 14, p99Ms: 40, maxMs: 60 },
    beforeAck: 8000,
    check: {
      expected: 80_000,
      delivered: 80_000,
      missing: 0,
      duplicated: 0,
      outOfOrder: 0,
      unexpected: 0,
    },
    watcherFailures: [],
    serverCpuSeconds: { "etcd:m1": 4, "etcd:m2": 1, "etcd:m3": 1 },
    driverCpuSeconds: 8.4,
    otherCores: 0.25,
    ...overrides,
  };
}

Deno.test("toWatchCell() derives rates per second and CPU per 1000 delivered events", () => {
  const cell = toWatchCell(measurement());
  assert.equal(cell.putsPerSecond, 500);
  assert.ok(Math.abs(cell.eventsPerSecond - 80_000 / 10.5) < 1e-9);
  assert.equal(cell.serverCpuTotalSeconds, 6);
  assert.equal(cell.serverCpuSecondsPer1000Events, 0.075);
  assert.ok(Math.abs(cell.driverCpuSecondsPer1000Events - 0.105) < 1e-12);
  assert.ok(Math.abs(cell.driverCores - 0.8) < 1e-12);
  const empty = toWatchCell(measurement({ check: { ...measurement().check, delivered: 0 } }));
  assert.ok(Number.isNaN(empty.serverCpuSecondsPer1000Events));
});

function cells(): WatchCell[] {
  return [
    toWatchCell(measurement()),
    toWatchCell(
      measurement({ watchers: 1, puts: 6000, check: { ...measurement().check, delivered: 6000 } }),
    ),
    toWatchCell(measurement({ subject: "tinykv-kv", shards: 10, puts: 2500 })),
    toWatchCell(measurement({ subject: "tinykv-etcd", shards: 10, watchers: 4 })),
  ];
}

Deno.test("compareWatchCells() pairs each TinyKV cell with etcd's of the same shape", () => {
  const rows = compareWatchCells(cells());
  assert.equal(rows.length, 2);
  assert.equal(rows[0].tinykv.subject, "tinykv-kv");
  assert.equal(rows[0].etcd?.watchers, 16);
  assert.equal(rows[0].putsRatio, 0.5);
  assert.equal(rows[0].eventsRatio, 1);
  assert.equal(rows[0].p50Ratio, 1);
  assert.equal(rows[1].etcd, undefined, "etcd ran no cell with 4 watchers");
  assert.ok(Number.isNaN(rows[1].putsRatio));
  assert.match(renderRatios(rows), /\| KV\.Watch \| 10 \| 16 \| 16 \| 0\.50 \| 1\.00 \| 1\.00 \|/);
  assert.match(renderRatios(rows), /\| etcd Watch \| 10 \| 4 \| 16 \| — \| — \|/);
});

Deno.test("renderCells() prints one row per cell with its numbers", () => {
  const table = renderCells(cells());
  const lines = table.split("\n");
  assert.equal(lines.length, 4 + 4, "a title, a blank line, the header, its rule, four rows");
  assert.equal(
    lines[4],
    "| etcd, etcd Watch | — | 16 | 16 | 500 | 7619 | 12.00 | 2.00 / 8.00 / 20.00 | 8000 (10 %) " +
      "| 14.00 / 40.00 | 0 / 0 / 0 / 0 | 0 | 0.075 | 0.105 | 0.80 | 0.25 |",
  );
  assert.match(lines[6], /^\| TinyKV, KV\.Watch \| 10 \| 16 \| 16 \| 250 \|/);
});

Deno.test("renderCorrectness() is one quiet line when clean and loud for every fault", () => {
  const clean = cells();
  assert.match(renderCorrectness(clean), /^### Delivery\n\nEvery watcher of all 4 cells/);
  assert.deepEqual(deliveryFaults(clean), []);
  const faulty = [
    ...clean,
    toWatchCell(measurement({
      subject: "tinykv-etcd",
      shards: 1,
      check: { ...measurement().check, missing: 3, outOfOrder: 1 },
    })),
    toWatchCell(measurement({
      subject: "tinykv-kv",
      shards: 1,
      watchers: 1,
      watcherFailures: ["watcher 0 (127.0.0.1:1) ended: resourceExhausted: too slow"],
    })),
  ];
  assert.ok(!isCorrect(faulty[4]) && !isCorrect(faulty[5]));
  const text = renderCorrectness(faulty);
  assert.match(text, /^### Delivery: FAULTS/);
  assert.match(text, /this run FAILED/);
  assert.match(
    text,
    /- \*\*TinyKV, etcd Watch 1 shard, 16 watchers, 16 in flight: 3 missing, 0 duplicated, 1 out of order, 0 unexpected/,
  );
  assert.match(text, /TinyKV, KV\.Watch 1 shard, 1 watcher, .*; watcher 0 .* too slow\*\*/);
  assert.match(renderCells(faulty), /\| \*\*3 \/ 0 \/ 1 \/ 0\*\* \|/);
});

Deno.test("renderWatchReport() holds the machine, the method, the tables and the problems", () => {
  const machine: MachineInfo = {
    cpuModel: "AMD EPYC",
    cores: 2,
    memoryMib: 24_064,
    kernel: "6.18",
    deno: "2.9.3",
    etcd: "3.4.23",
  };
  const all = cells();
  const report = renderWatchReport({
    startedAt: "2026-12-05T10:00:00.000Z",
    durationSeconds: 300,
    machine,
    options: {},
    method: ["cells: 10 s"],
    cells: [
      ...all,
      toWatchCell(
        measurement({
          putErrors: 2,
          putErrorKinds: { deadlineExceeded: 2 },
          firstPutError: "deadlineExceeded: slow",
        }),
      ),
    ],
    comparisons: compareWatchCells(all),
    correct: true,
    unexpectedExits: [{
      shards: 10,
      exits: [{ name: "gateway", pid: 9, how: "exit code 2", atMs: 0, lastLines: ["boom"] }],
    }],
    phaseSeconds: {},
    errors: ["TinyKV 1 shard failed: no ZooKeeper"],
  });
  assert.match(report, /^## Watch: TinyKV against etcd \(2026-12-05T10:00:00\.000Z, 5\.0 min\)/);
  assert.match(report, /Machine: AMD EPYC, 2 cores/);
  assert.match(report, /\n- cells: 10 s\n/);
  assert.match(report, /### Cells/);
  assert.match(report, /### TinyKV \/ etcd/);
  assert.match(report, /### Delivery\n/);
  assert.match(report, /### Problems/);
  assert.match(report, /2 puts failed \{"deadlineExceeded":2\}, first: deadlineExceeded: slow/);
  assert.ok(report.includes("- TinyKV 10 shards: gateway exited (pid 9, exit code 2)\n  > boom"));
  assert.match(report, /- TinyKV 1 shard failed: no ZooKeeper/);
});

// --- End to end --------------------------------------------------------------------------------

Deno.test({
  name: "runCell() on a 1-shard dev cluster: every event arrives once and in order, both APIs",
  // grpc-js keeps timers of closed channels for a while, and the cluster's output pumps end
  // with its processes; the registry stops every process the test started.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const registry = new ProcessRegistry();
    try {
      const dir = await registry.tempDir("tinykv-watch-test-");
      const plan = findFreePlan(isPortFree, WATCH_PORT_BASE + 500);
      const cluster = await TinyKvCluster.start(registry, {
        root: new URL("..", import.meta.url).pathname.replace(/\/$/, ""),
        dir,
        shards: 1,
        ports: plan.tinykv,
        say: () => {},
      });
      try {
        await waitWhole(cluster);
        const ticksPerSecond = await clockTicksPerSecond();
        for (const api of ["kv", "etcd"] as const) {
          const cell = await runCell(tinyKvTarget(cluster, api), {
            watchers: 1,
            inFlight: 4,
            seconds: 1,
            warmupSeconds: 0.3,
            prefix: `watch/test-${api}/`,
          }, { ticksPerSecond });
          const label = `${api}: ${JSON.stringify(cell.check)} ${cell.watcherFailures}`;
          assert.ok(cell.puts > 0, `${api}: puts were acknowledged`);
          assert.equal(cell.check.expected, cell.puts, label);
          assert.equal(cell.check.delivered, cell.puts, label);
          assert.equal(cell.check.missing, 0, label);
          assert.equal(cell.check.duplicated, 0, label);
          assert.equal(cell.check.outOfOrder, 0, label);
          assert.equal(cell.check.unexpected, 0, label);
          assert.deepEqual(cell.watcherFailures, []);
          assert.equal(cell.putErrors, 0, `${api}: ${cell.firstPutError}`);
          assert.equal(cell.latency.count, cell.puts);
          assert.ok(cell.sinceSendLatency.p50Ms > 0, `${api}: an event comes after its put`);
          assert.ok(cell.serverCpuTotalSeconds > 0, `${api}: the servers' CPU was read`);
          assert.ok(cell.driverCpuSeconds > 0, `${api}: this process's CPU was read`);
          assert.deepEqual(
            Object.keys(cell.serverCpuSeconds).sort(),
            Object.keys(cluster.pids()).sort(),
          );
        }
      } finally {
        await cluster.stop();
      }
      assert.deepEqual(cluster.unexpectedExits, []);
    } finally {
      await registry.cleanUp();
    }
  },
});
