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
import client from "prom-client";
import { LoopDelaySampler, type LoopDelayStats } from "./loop_delay.ts";

export {
  LOOP_DELAY_SAMPLE_MS,
  LOOP_DELAY_SAMPLES,
  LoopDelaySampler,
  type LoopDelayStats,
} from "./loop_delay.ts";

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

/** The loop-delay gauges, each read from the sampler's statistics. */
const LOOP_DELAY_GAUGES: ReadonlyArray<
  readonly [name: string, help: string, read: (stats: LoopDelayStats) => number]
> = [
  ["nodejs_eventloop_lag_min_seconds", "The shortest event loop delay sampled.", (s) => s.min],
  ["nodejs_eventloop_lag_max_seconds", "The longest event loop delay sampled.", (s) => s.max],
  ["nodejs_eventloop_lag_mean_seconds", "The mean event loop delay sampled.", (s) => s.mean],
  [
    "nodejs_eventloop_lag_stddev_seconds",
    "The standard deviation of the event loop delays sampled.",
    (s) => s.stddev,
  ],
  ["nodejs_eventloop_lag_p50_seconds", "The median event loop delay sampled.", (s) => s.p50],
  ["nodejs_eventloop_lag_p90_seconds", "The 90th percentile event loop delay.", (s) => s.p90],
  ["nodejs_eventloop_lag_p99_seconds", "The 99th percentile event loop delay.", (s) => s.p99],
];

/** The runtime's metrics, made once per process and registered in every registry. */
let processMetrics: client.Metric[] | undefined;

function runtimeMetrics(): client.Metric[] {
  if (processMetrics !== undefined) return processMetrics;
  const defaults = new client.Registry();
  // prom-client's own loop-delay sampler cannot be left out: it is made dormant (a sample every
  // 24.8 days) and its gauges give way to the sampler's (see loop_delay.ts for why).
  client.collectDefaultMetrics({ register: defaults, eventLoopMonitoringPrecision: 2 ** 31 - 1 });
  for (const [name] of LOOP_DELAY_GAUGES) defaults.removeSingleMetric(name);
  const sampler = new LoopDelaySampler();
  sampler.start();
  const lag = LOOP_DELAY_GAUGES.map(([name, help, read]) =>
    new client.Gauge({
      name,
      help,
      registers: [],
      collect() {
        const stats = sampler.stats();
        if (stats !== undefined) this.set(read(stats));
      },
    })
  );
  // The registry's array holds the metric objects themselves (typed as plain objects).
  const made = [...defaults.getMetricsAsArray() as unknown as client.Metric[], ...lag];
  processMetrics = made;
  return made;
}

/**
 * A registry with the runtime's default metrics (`process_*`, `nodejs_*` as prom-client names
 * them, one set per process shared by every registry), the event-loop delay gauges being
 * {@linkcode LoopDelaySampler}'s: once a second, over the last minute.
 */
export function newRegistry(): Registry {
  const registry = new client.Registry();
  for (const metric of runtimeMetrics()) registry.registerMetric(metric);
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
