/**
 * Prometheus metrics of a TinyKV service, through `npm:prom-client`: one {@linkcode Registry} per
 * process with the runtime's default metrics (CPU, memory, file descriptors) and the service's
 * own, each with HELP and TYPE lines; {@linkcode serveMetrics} answers `GET /metrics` on the
 * service's HTTP port. Every TinyKV metric is named `tinykv_<service>_…`; latencies are
 * histograms in seconds.
 *
 * Values that live elsewhere (a replica's term, the router's retry count) are read when Prometheus
 * scrapes, by the `collect` callback of a gauge, so a service keeps no second copy of its state.
 *
 * @example A counter and its text
 * ```ts
 * import assert from "node:assert/strict";
 * import { Counter, newRegistry } from "@tinykv/metrics";
 *
 * const registry = newRegistry();
 * const requests = new Counter({
 *   name: "tinykv_example_requests_total",
 *   help: "Requests answered, by operation.",
 *   labelNames: ["op"],
 *   registers: [registry],
 * });
 * requests.inc({ op: "put" });
 * const text = await registry.metrics();
 * assert.match(text, /# TYPE tinykv_example_requests_total counter/);
 * assert.match(text, /tinykv_example_requests_total\{op="put"\} 1/);
 * ```
 *
 * @module
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import client from "prom-client";

export const { Counter, Gauge, Histogram, Registry } = client;
export type Counter<T extends string = string> = client.Counter<T>;
export type Gauge<T extends string = string> = client.Gauge<T>;
export type Histogram<T extends string = string> = client.Histogram<T>;
export type Registry = client.Registry;

/**
 * Latency buckets in seconds, 100 µs to 10 s: the range of a TinyKV request, an LMDB commit or
 * a driver turn.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

/**
 * How often the process's event loop is sampled for the `nodejs_eventloop_lag_{min,max,mean,
 * stddev,p50,p90,p99}_seconds` gauges, in milliseconds. prom-client samples every 10 ms, which
 * wakes an idle process a hundred times a second: on the dev machine 0.9 % of a core per process,
 * 4.5 % for a cluster's five Deno processes, more than everything else an idle cluster does. Once
 * a second costs under 0.1 %. A stall of a second or more is always seen; a shorter one with the
 * odds of its length over a second.
 */
export const LOOP_DELAY_SAMPLE_MS = 1000;

/**
 * The gauges cover the samples of a window of at least this long, ending at the scrape: the
 * window starts again at the first scrape after it has passed. (prom-client starts a new window at
 * every scrape, which at one sample a second leaves a scrape that follows another within a second
 * — Prometheus and the dashboard both read a gateway — with no sample: NaN and 9.2e9 s.)
 */
export const LOOP_DELAY_WINDOW_MS = 60_000;

/** The process's loop-delay sampler. */
type IntervalHistogram = ReturnType<typeof monitorEventLoopDelay>;

/** The loop-delay gauges and how each is read from the histogram (nanoseconds). */
const LOOP_DELAY_GAUGES: ReadonlyArray<
  readonly [name: string, help: string, read: (h: IntervalHistogram) => number]
> = [
  ["nodejs_eventloop_lag_min_seconds", "The shortest event loop delay sampled.", (h) => h.min],
  ["nodejs_eventloop_lag_max_seconds", "The longest event loop delay sampled.", (h) => h.max],
  ["nodejs_eventloop_lag_mean_seconds", "The mean event loop delay sampled.", (h) => h.mean],
  [
    "nodejs_eventloop_lag_stddev_seconds",
    "The standard deviation of the event loop delays sampled.",
    (h) => h.stddev,
  ],
  ["nodejs_eventloop_lag_p50_seconds", "The median event loop delay.", (h) => h.percentile(50)],
  [
    "nodejs_eventloop_lag_p90_seconds",
    "The 90th percentile event loop delay.",
    (h) => h.percentile(90),
  ],
  [
    "nodejs_eventloop_lag_p99_seconds",
    "The 99th percentile event loop delay.",
    (h) => h.percentile(99),
  ],
];

/** The process's loop-delay sampler (one per process, shared by every registry). */
const loopDelay: {
  histogram: IntervalHistogram | undefined;
  windowStartMs: number;
  /** The last window's values with at least one sample, by gauge name, in seconds. */
  last: Map<string, number>;
} = { histogram: undefined, windowStartMs: 0, last: new Map() };

/** The loop-delay values to report now, in seconds (empty before the first sample). */
function loopDelayValues(): ReadonlyMap<string, number> {
  const nowMs = performance.now();
  let histogram = loopDelay.histogram;
  if (histogram === undefined) {
    histogram = monitorEventLoopDelay({ resolution: LOOP_DELAY_SAMPLE_MS });
    histogram.enable();
    loopDelay.histogram = histogram;
    loopDelay.windowStartMs = nowMs;
  }
  if (histogram.count > 0) {
    for (const [name, , read] of LOOP_DELAY_GAUGES) loopDelay.last.set(name, read(histogram) / 1e9);
  }
  if (nowMs - loopDelay.windowStartMs >= LOOP_DELAY_WINDOW_MS) {
    histogram.reset();
    loopDelay.windowStartMs = nowMs;
  }
  return loopDelay.last;
}

/**
 * A registry with the runtime's default metrics (`process_*`, `nodejs_*` as prom-client names
 * them), the loop-delay gauges being this module's (see {@linkcode LOOP_DELAY_SAMPLE_MS}).
 */
export function newRegistry(): Registry {
  const registry = new client.Registry();
  // prom-client's own loop-delay sampler cannot be left out: it is made dormant (a sample every
  // 24.8 days) and its gauges replaced.
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 2 ** 31 - 1 });
  for (const [name, help] of LOOP_DELAY_GAUGES) {
    registry.removeSingleMetric(name);
    new client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const value = loopDelayValues().get(name);
        if (value !== undefined) this.set(value);
      },
    });
  }
  loopDelayValues();
  return registry;
}

/** The content type of the Prometheus text format. */
export const METRICS_CONTENT_TYPE: string = client.Registry.PROMETHEUS_CONTENT_TYPE;

/** Answers `GET /metrics` with the registry's text; undefined for any other path. */
export async function metricsResponse(
  registry: Registry,
  request: Request,
): Promise<Response | undefined> {
  if (new URL(request.url).pathname !== "/metrics") return undefined;
  if (request.method !== "GET") return new Response("Method not allowed\n", { status: 405 });
  return new Response(await registry.metrics(), {
    headers: { "content-type": METRICS_CONTENT_TYPE },
  });
}

/**
 * Serves `GET /metrics` of `registry` on `host:port` until `signal` aborts; any other path is 404.
 * Resolves once listening.
 */
export async function serveMetrics(
  registry: Registry,
  options: {
    host: string;
    port: number;
    signal: AbortSignal;
    /** Serve HTTPS with this certificate and key (PEM). */
    tls?: { readonly cert: string; readonly key: string };
  },
): Promise<Deno.HttpServer<Deno.NetAddr>> {
  const listening = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: options.host,
    port: options.port,
    signal: options.signal,
    ...(options.tls === undefined ? {} : { cert: options.tls.cert, key: options.tls.key }),
    onListen: () => listening.resolve(),
  }, async (request) =>
    await metricsResponse(registry, request) ??
      new Response("Not found: this port serves /metrics\n", { status: 404 }));
  await listening.promise;
  return server;
}

/** A gateway's `/metrics` port is its client port + this, unless `gateway.http_port` names one. */
export const GATEWAY_METRICS_PORT_OFFSET = 90;
/** A kvnode's `/metrics` port is its port + this, unless `kvnode.http_port` names one. */
export const KVNODE_METRICS_PORT_OFFSET = 1000;

/**
 * The port a service serves `/metrics` on: `configured`, or when that is 0, `base + offset` (the
 * service's main port shifted, so services side by side on one host get distinct ones). A derived
 * port that does not exist is none.
 */
export function metricsPort(
  configured: number,
  base: number,
  offset: number,
): { port: number; derived: boolean } | undefined {
  if (configured !== 0) return { port: configured, derived: false };
  const port = base + offset;
  return port > 65535 ? undefined : { port, derived: true };
}

/**
 * Starts the `/metrics` server of a service. A port the config names must be free (the service
 * fails to start otherwise, as with any of its ports); a derived one (see {@linkcode metricsPort})
 * may be taken by something else, and then the service runs on without metrics, saying so.
 */
export async function startMetrics(
  registry: Registry,
  options: {
    host: string;
    port: { port: number; derived: boolean } | undefined;
    signal: AbortSignal;
    log: { warn(msg: string, fields?: Record<string, unknown>): void };
    /** Serve HTTPS with this certificate and key (PEM). */
    tls?: { readonly cert: string; readonly key: string };
  },
): Promise<Deno.HttpServer<Deno.NetAddr> | undefined> {
  const { port } = options;
  if (port === undefined) {
    options.log.warn("No port for /metrics: set http_port to serve them");
    return undefined;
  }
  try {
    return await serveMetrics(registry, {
      host: options.host,
      port: port.port,
      signal: options.signal,
      tls: options.tls,
    });
  } catch (error) {
    if (!port.derived || !(error instanceof Deno.errors.AddrInUse)) throw error;
    options.log.warn("The derived /metrics port is taken: serving no metrics (set http_port)", {
      port: port.port,
    });
    return undefined;
  }
}

/**
 * A counter that follows a count kept elsewhere (a router's retries, a transport's bytes), read
 * when Prometheus scrapes: each scrape adds what the count grew by since the last.
 */
export function followingCounter(
  registry: Registry,
  name: string,
  help: string,
  read: () => number,
): Counter {
  let seen = 0;
  return new client.Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}
