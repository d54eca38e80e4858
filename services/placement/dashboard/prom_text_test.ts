import assert from "node:assert/strict";
import { newRegistry } from "@tinykv/metrics";
import { Counter, Histogram } from "prom-client";
import { parsePrometheusText } from "./prom_text.ts";

Deno.test("parsePrometheusText reads what prom-client writes", async () => {
  const registry = newRegistry();
  const counter = new Counter({
    name: "calls_total",
    help: "Calls.",
    labelNames: ["method", "code"] as const,
    registers: [registry],
  });
  const histogram = new Histogram({
    name: "latency_seconds",
    help: "Latency.",
    labelNames: ["method"] as const,
    buckets: [0.001, 0.01],
    registers: [registry],
  });
  counter.inc({ method: "Get", code: "OK" }, 3);
  counter.inc({ method: 'odd "quoted"\\ \n', code: "OK" });
  histogram.observe({ method: "Get" }, 0.005);
  const scrape = parsePrometheusText(await registry.metrics());
  assert.equal(scrape.malformed, 0);
  const find = (name: string, labels: Record<string, string>) =>
    scrape.samples.find((s) =>
      s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
    )?.value;
  assert.equal(find("calls_total", { method: "Get", code: "OK" }), 3);
  assert.equal(find("calls_total", { method: 'odd "quoted"\\ \n' }), 1);
  assert.equal(find("latency_seconds_bucket", { method: "Get", le: "0.001" }), 0);
  assert.equal(find("latency_seconds_bucket", { method: "Get", le: "0.01" }), 1);
  assert.equal(find("latency_seconds_bucket", { method: "Get", le: "+Inf" }), 1);
  assert.equal(find("latency_seconds_count", { method: "Get" }), 1);
});

Deno.test("parsePrometheusText skips and counts malformed lines, reads special values", () => {
  const scrape = parsePrometheusText([
    "# HELP a A.",
    "# TYPE a gauge",
    "a 1",
    'b{x="1",} 2 1700000000000',
    "c +Inf",
    "d NaN",
    "{no_name} 1",
    "e{x=1} 1",
    'f{x="unclosed} 1',
    "g one",
    "h 1 2 3",
    "i",
    "",
  ].join("\n"));
  assert.deepEqual(scrape.samples.map((s) => [s.name, s.value]), [
    ["a", 1],
    ["b", 2],
    ["c", Infinity],
    ["d", NaN],
  ]);
  assert.deepEqual(scrape.samples[1].labels, { x: "1" });
  assert.equal(scrape.malformed, 6);
});
