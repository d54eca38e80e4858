// Checks the metrics helpers: the registry carries the runtime's default metrics beside the
// service's own, with HELP and TYPE lines; serveMetrics answers GET /metrics in the Prometheus text
// format, 405 for another method, 404 for another path; a gauge's collect callback reads its value
// at scrape time.
import assert from "node:assert/strict";
import {
  Gauge,
  Histogram,
  LATENCY_BUCKETS_SECONDS,
  metricsPort,
  newRegistry,
  serveMetrics,
  startMetrics,
} from "./mod.ts";

Deno.test("newRegistry() has the default process metrics and takes the service's own", async () => {
  const registry = newRegistry();
  const latency = new Histogram({
    name: "tinykv_test_seconds",
    help: "A latency.",
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  latency.observe(0.003);
  let depth = 0;
  new Gauge({
    name: "tinykv_test_depth",
    help: "Read at scrape time.",
    registers: [registry],
    collect() {
      this.set(depth);
    },
  });
  depth = 7;
  const text = await registry.metrics();
  assert.match(text, /# HELP process_cpu_seconds_total /);
  assert.match(text, /# TYPE tinykv_test_seconds histogram/);
  assert.match(text, /tinykv_test_seconds_bucket\{le="0.005"\} 1/);
  assert.match(text, /tinykv_test_seconds_bucket\{le="0.0025"\} 0/);
  assert.match(text, /# HELP tinykv_test_depth Read at scrape time\./);
  assert.match(text, /tinykv_test_depth 7/);
});

Deno.test("newRegistry(): each runtime metric once, loop-delay gauges included, shared by registries", async () => {
  const first = newRegistry();
  const second = newRegistry();
  for (const registry of [first, second]) {
    const text = await registry.metrics();
    for (const stat of ["min", "max", "mean", "stddev", "p50", "p90", "p99"]) {
      const name = `nodejs_eventloop_lag_${stat}_seconds`;
      assert.equal(text.split(`# TYPE ${name} gauge`).length, 2, `${name}: one TYPE line`);
      const sample = text.split("\n").find((line) => line.startsWith(`${name} `));
      const value = Number(sample?.split(" ")[1]);
      assert.ok(Number.isFinite(value) && value >= 0, `${name}: a delay in seconds, not ${sample}`);
    }
    assert.equal(text.split("# TYPE process_cpu_seconds_total counter").length, 2);
  }
  assert.equal(
    first.getSingleMetric("process_cpu_seconds_total"),
    second.getSingleMetric("process_cpu_seconds_total"),
    "one set of runtime metrics per process",
  );
});

Deno.test("serveMetrics() answers GET /metrics, refuses other methods and paths", async () => {
  const registry = newRegistry();
  const abort = new AbortController();
  const server = await serveMetrics(registry, { host: "127.0.0.1", port: 0, signal: abort.signal });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const ok = await fetch(`${base}/metrics`);
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get("content-type") ?? "", /text\/plain; version=0\.0\.4/);
    assert.match(await ok.text(), /# TYPE process_cpu_seconds_total counter/);
    const post = await fetch(`${base}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
    const other = await fetch(`${base}/other`);
    assert.equal(other.status, 404);
    await other.body?.cancel();
  } finally {
    abort.abort();
    await server.finished;
  }
});

Deno.test("metricsPort() takes the configured port, else the base port shifted, if it exists", () => {
  assert.deepEqual(metricsPort(9100, 7700, 90), { port: 9100, derived: false });
  assert.deepEqual(metricsPort(0, 7700, 90), { port: 7790, derived: true });
  assert.deepEqual(metricsPort(0, 65000, 1000), undefined);
});

Deno.test("startMetrics() runs on without metrics when a derived port is taken, fails on a named one", async () => {
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = (holder.addr as Deno.NetAddr).port;
  const warnings: string[] = [];
  const log = { warn: (msg: string) => warnings.push(msg) };
  const abort = new AbortController();
  try {
    const registry = newRegistry();
    const host = "127.0.0.1";
    const derived = await startMetrics(registry, {
      host,
      port: { port: taken, derived: true },
      signal: abort.signal,
      log,
    });
    assert.equal(derived, undefined);
    assert.match(warnings[0], /derived \/metrics port is taken/);
    await assert.rejects(
      startMetrics(registry, {
        host,
        port: { port: taken, derived: false },
        signal: abort.signal,
        log,
      }),
      Deno.errors.AddrInUse,
    );
  } finally {
    abort.abort();
    holder.close();
  }
});
