/**
 * Tests of the comparison's arithmetic and `/proc` parsing (compare_stats.ts), against
 * hand-computed values and real `/proc` text (including a command name with spaces and
 * parentheses, and a zombie without memory).
 */
import assert from "node:assert/strict";
import {
  cpuSecondsBetween,
  LatencyRecorder,
  median,
  parseCpuModel,
  parseMachineCpu,
  parseMemTotalKib,
  parseProcStatLine,
  parseProcStats,
  parseStatusRssKib,
  quantileOfSorted,
  randomWords,
  sumOf,
} from "./compare_stats.ts";

Deno.test("quantileOfSorted() takes the nearest rank", () => {
  const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const cases: Array<[number[], number, number]> = [
    [ten, 0.5, 5],
    [ten, 0.9, 9],
    [ten, 0.99, 10],
    [ten, 1, 10],
    [ten, 0.01, 1],
    [[7], 0.999, 7],
    [[1, 2], 0.5, 1],
    [[1, 2], 0.51, 2],
  ];
  for (const [values, q, expected] of cases) {
    assert.equal(quantileOfSorted(values, q), expected, `q=${q} of ${values}`);
  }
  assert.ok(Number.isNaN(quantileOfSorted([], 0.5)));
  assert.throws(() => quantileOfSorted(ten, 0), RangeError);
  assert.throws(() => quantileOfSorted(ten, 1.5), RangeError);
});

Deno.test("LatencyRecorder keeps every value past its first buffer and sorts numerically", () => {
  const latencies = new LatencyRecorder();
  // Inserted in descending order, past the initial 16,384 slots; a string sort would put 10 before 9.
  for (let ms = 20_000; ms >= 1; ms--) latencies.add(ms);
  assert.equal(latencies.count, 20_000);
  assert.deepEqual(latencies.quantiles([0.5, 0.99, 0.999, 1]), [10_000, 19_800, 19_980, 20_000]);
  const few = new LatencyRecorder();
  for (const ms of [10, 9, 100]) few.add(ms);
  assert.deepEqual(few.quantiles([0.5]), [10]);
  assert.ok(new LatencyRecorder().quantiles([0.5]).every(Number.isNaN));
});

Deno.test("median() averages the middle two of an even count and ignores input order", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([10, 9]), 9.5);
  assert.ok(Number.isNaN(median([])));
});

Deno.test("parseProcStatLine() counts fields from the last parenthesis", () => {
  // utime 150 and stime 50 are fields 14 and 15; threads (20) is 7.
  const line = "4242 (tokio) runtime) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 50 3 4 20 0 7 0 " +
    "12345 1000 200 18446744073709551615";
  assert.deepEqual(parseProcStatLine(line), {
    pid: 4242,
    comm: "tokio) runtime",
    cpuTicks: 200,
    threads: 7,
  });
  assert.equal(parseProcStatLine(""), undefined);
  assert.equal(parseProcStatLine("cpu  1 2 3 4 5 6 7 8 9 10"), undefined);
  assert.equal(parseProcStatLine("12 (x) S 1 2"), undefined);
});

Deno.test("parseProcStats() keys several processes by pid and skips other lines", () => {
  const text = [
    "10 (deno) S 1 10 10 0 -1 0 0 0 0 0 500 100 0 0 20 0 12 0 1",
    "cpu  100 0 50 1000 10 0 5 0 0 0",
    "11 (java) S 1 11 11 0 -1 0 0 0 0 0 7 3 0 0 20 0 30 0 1",
  ].join("\n");
  const stats = parseProcStats(text);
  assert.deepEqual([...stats.keys()], [10, 11]);
  assert.equal(stats.get(10)?.cpuTicks, 600);
  assert.equal(stats.get(11)?.threads, 30);
});

Deno.test("parseStatusRssKib() reads VmRSS per Pid and skips a process without one", () => {
  const text =
    "Name:\tdeno\nState:\tS (sleeping)\nPid:\t100\nVmPeak:\t 9000 kB\nVmRSS:\t  123456 kB\n" +
    "Threads:\t9\nName:\tzombie\nState:\tZ (zombie)\nPid:\t101\nThreads:\t1\n" +
    "Name:\tjava\nPid:\t102\nVmRSS:\t64 kB\n";
  const rss = parseStatusRssKib(text);
  assert.deepEqual([...rss.entries()], [[100, 123456], [102, 64]]);
});

Deno.test("parseMachineCpu() counts everything but idle and iowait as busy", () => {
  const text = "cpu  100 5 50 1000 20 1 4 2 7 0\ncpu0 50 2 25 500 10 0 2 1 0 0\nintr 1 2 3\n";
  // user + nice + system + irq + softirq + steal = 100 + 5 + 50 + 1 + 4 + 2.
  assert.deepEqual(parseMachineCpu(text), { busyTicks: 162, totalTicks: 1182 });
  assert.equal(parseMachineCpu("cpu0 1 2 3 4 5\n"), undefined);
});

Deno.test("cpuSecondsBetween() converts ticks and marks a vanished process NaN", () => {
  const before = parseProcStats(
    "1 (a) S 0 0 0 0 0 0 0 0 0 0 100 100 0 0 0 0 1 0 0\n2 (b) S 0 0 0 0 0 0 0 0 0 0 5 5 0 0 0 0 1 0 0",
  );
  const after = parseProcStats("1 (a) S 0 0 0 0 0 0 0 0 0 0 250 150 0 0 0 0 1 0 0");
  const seconds = cpuSecondsBetween({ a: 1, b: 2 }, { before, after, ticksPerSecond: 100 });
  assert.equal(seconds.a, 2);
  assert.ok(Number.isNaN(seconds.b));
  assert.equal(sumOf({ x: 1.5, y: 2 }), 3.5);
});

Deno.test("parseCpuModel() and parseMemTotalKib() read the first match or say unknown", () => {
  const cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n" +
    "processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
  assert.equal(parseCpuModel(cpuinfo), "AMD EPYC 7B13");
  assert.equal(parseCpuModel(""), "unknown");
  assert.equal(parseMemTotalKib("MemTotal:       24684112 kB\nMemFree: 1 kB\n"), 24684112);
  assert.ok(Number.isNaN(parseMemTotalKib("MemFree: 1 kB\n")));
});

Deno.test("randomWords() yields whole 32-bit words, the same for the same seed", () => {
  const a = randomWords(42);
  const b = randomWords(42);
  const words = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(Array.from({ length: 1000 }, () => b()), words);
  for (const word of words) assert.ok(Number.isInteger(word) && word >= 0 && word < 2 ** 32);
  assert.ok(new Set(words).size > 990, "spread over the words");
  assert.notDeepEqual(Array.from({ length: 10 }, randomWords(43)), words.slice(0, 10));
});
