import assert from "node:assert/strict";
import { LATENCY_BUCKETS_SECONDS, newRegistry } from "@tinykv/metrics";
import { Counter, Histogram } from "prom-client";
import {
  countsBetween,
  gatewayCounts,
  histogramQuantile,
  LATENCY_METRIC,
  REQUESTS_METRIC,
  sumCounts,
  totalRequests,
} from "./gateway_stats.ts";
import { parsePrometheusText } from "./prom_text.ts";

/** A stand-in for a gateway's metrics, registered under the gateway's metric names. */
function fakeGateway() {
  const registry = newRegistry();
  const requests = new Counter({
    name: REQUESTS_METRIC,
    help: "Calls.",
    labelNames: ["method", "code"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: LATENCY_METRIC,
    help: "Latency.",
    labelNames: ["method"] as const,
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  return {
    call(method: string, code: string, seconds: number) {
      requests.inc({ method, code });
      latency.observe({ method }, seconds);
    },
    async counts() {
      return gatewayCounts(parsePrometheusText(await registry.metrics()));
    },
  };
}

Deno.test("gateway counts: calls by method over every code, and the interval between scrapes", async () => {
  const gateway = fakeGateway();
  gateway.call("Get", "OK", 0.001);
  gateway.call("Get", "NOT_FOUND", 0.001);
  const before = await gateway.counts();
  assert.equal(before.requests.get("Get"), 2);
  for (let i = 0; i < 100; i++) gateway.call("Put", "OK", i < 99 ? 0.002 : 0.5);
  const after = await gateway.counts();
  assert.equal(totalRequests(after), 102);
  const between = countsBetween(before, after)!;
  assert.equal(between.requests.get("Get"), 0);
  assert.equal(between.requests.get("Put"), 100);
  const p99 = histogramQuantile(0.99, between.buckets.get("Put")!)!;
  assert.ok(p99 > 0.001 && p99 <= 0.0025, `p99 ${p99} is in the 2 ms bucket`);
  const p100 = histogramQuantile(1, between.buckets.get("Put")!)!;
  assert.ok(p100 > 0.25 && p100 <= 0.5, `the slowest call ${p100} is in its bucket`);
  assert.equal(histogramQuantile(0.99, between.buckets.get("Get")!), undefined, "no Get since");
  // A gateway that restarted: its counters went down, the interval is unknown.
  assert.equal(countsBetween(after, before), undefined);
});

Deno.test("gateway counts sum across gateways", async () => {
  const a = fakeGateway();
  const b = fakeGateway();
  a.call("Get", "OK", 0.001);
  b.call("Get", "OK", 0.004);
  b.call("Scan", "OK", 0.004);
  const sum = sumCounts([await a.counts(), await b.counts()]);
  assert.equal(sum.requests.get("Get"), 2);
  assert.equal(sum.requests.get("Scan"), 1);
  assert.equal(sum.buckets.get("Get")!.at(-1)![1], 2);
});

Deno.test("histogramQuantile interpolates inside a bucket, stops at the last finite bound", () => {
  const buckets: Array<[number, number]> = [[1, 0], [2, 10], [4, 10], [Infinity, 10]];
  assert.equal(histogramQuantile(0.5, buckets), 1.5);
  assert.equal(histogramQuantile(1, buckets), 2);
  assert.equal(histogramQuantile(0.5, [[1, 0], [Infinity, 4]]), 1);
  assert.equal(histogramQuantile(0.5, [[1, 0], [Infinity, 0]]), undefined);
  assert.equal(histogramQuantile(0.5, []), undefined);
});
