// Checks the metrics helpers: the registry carries the runtime's default metrics beside the
// service's own, with HELP and TYPE lines; serveMetrics answers GET /metrics in the Prometheus text
// format, 405 for another method, 404 for another path; a gauge's collect callback reads its value
// at scrape time.
import assert from "node:assert/strict";
import {
  Gauge,
  Histogram,
  LATENCY_BUCKETS_SECONDS,
  LOOP_DELAY_SAMPLE_MS,
  LOOP_DELAY_WINDOW_MS,
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

Deno.test("the loop-delay gauges keep their values across scrapes a moment apart", async () => {
  const registry = newRegistry();
  const lagLines = async () =>
    (await registry.metrics()).split("\n").filter((line) =>
      /^nodejs_eventloop_lag_(min|max|mean|stddev|p50|p90|p99)_seconds /.test(line)
    );
  // The process's sampler takes its first sample soon after it starts (at most a second).
  let first = await lagLines();
  for (let waited = 0; first.some((line) => line.endsWith(" 0")) && waited < 3000; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    first = await lagLines();
  }
  assert.equal(first.length, 7, "each gauge once");
  const second = await lagLines();
  assert.equal(second.length, 7);
  for (const line of [...first, ...second]) {
    const value = Number(line.split(" ")[1]);
    assert.ok(Number.isFinite(value) && value >= 0 && value < 60, `a delay in seconds: ${line}`);
  }
  assert.ok(LOOP_DELAY_SAMPLE_MS >= 1000 && LOOP_DELAY_WINDOW_MS > LOOP_DELAY_SAMPLE_MS);
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
