/**
 * The gateway's Prometheus metrics (`/metrics` on `[gateway] http_port`): calls by method and
 * status, their latency, calls in flight, and from the router, retries, redirects after
 * NOT_LEADER and the streams open to kvnodes.
 *
 * @module
 */
import type { KvRouter } from "@tinykv/client";
import {
  Counter,
  followingCounter,
  Gauge,
  Histogram,
  LATENCY_BUCKETS_SECONDS,
  type Registry,
} from "@tinykv/metrics";

/** What the gateway's metrics read at scrape time. */
export interface GatewaySources {
  readonly router: KvRouter;
  readonly inFlight: { readonly count: number };
  /** The gateway's watches, when it serves them. */
  readonly watches?: { readonly count: number; readonly queuedBytes: number };
}

/** Registers the gateway's metrics; the returned `observe` records one finished call. */
export function gatewayMetrics(
  registry: Registry,
  sources: GatewaySources,
): { observe(method: string, status: string, seconds: number): void } {
  const requests = new Counter({
    name: "tinykv_gateway_requests_total",
    help: "Client calls answered, by method and gRPC status.",
    labelNames: ["method", "code"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "tinykv_gateway_request_duration_seconds",
    help: "Time from a client call's arrival to its answer, by method.",
    labelNames: ["method"] as const,
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  new Gauge({
    name: "tinykv_gateway_requests_in_flight",
    help: "Client calls being served.",
    registers: [registry],
    collect() {
      this.set(sources.inFlight.count);
    },
  });
  new Gauge({
    name: "tinykv_gateway_watches",
    help: "Client watches open now (each holds one stream per shard it covers).",
    registers: [registry],
    collect() {
      this.set(sources.watches?.count ?? 0);
    },
  });
  new Gauge({
    name: "tinykv_gateway_watch_queued_bytes",
    help: "Bytes of changes the watches hold for clients that read too slowly (at most 256 MiB).",
    registers: [registry],
    collect() {
      this.set(sources.watches?.queuedBytes ?? 0);
    },
  });
  new Gauge({
    name: "tinykv_gateway_kvnode_streams",
    help: "Batch streams open to kvnodes (one per kvnode).",
    registers: [registry],
    collect() {
      this.set(sources.router.streams);
    },
  });
  followingCounter(
    registry,
    "tinykv_gateway_retries_total",
    "Attempts after a call's first.",
    () => sources.router.stats.retries,
  );
  followingCounter(
    registry,
    "tinykv_gateway_redirects_total",
    "Attempts sent to the leader a NOT_LEADER answer named.",
    () => sources.router.stats.redirects,
  );
  return {
    observe(method, status, seconds) {
      requests.inc({ method, code: status });
      latency.observe({ method }, seconds);
    },
  };
}
