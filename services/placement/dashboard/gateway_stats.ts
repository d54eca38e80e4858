/**
 * What the dashboard reads from the gateways' `/metrics`: calls answered by method, and the
 * latency histogram by method; summed over gateways, and turned into rates and a p99 over the
 * time between two scrapes (as Prometheus's `rate` and `histogram_quantile` would).
 *
 * @module
 */
import type { Scrape } from "./prom_text.ts";

/** The gateway's calls counter (services/gateway/metrics.ts). */
export const REQUESTS_METRIC = "tinykv_gateway_requests_total";
/** The gateway's latency histogram (services/gateway/metrics.ts). */
export const LATENCY_METRIC = "tinykv_gateway_request_duration_seconds";

/** One gateway's cumulative counts at a scrape. */
export interface GatewayCounts {
  /** Calls answered, by method (all status codes). */
  readonly requests: ReadonlyMap<string, number>;
  /** By method: the histogram's cumulative bucket counts by upper bound, ascending (`+Inf` last). */
  readonly buckets: ReadonlyMap<string, ReadonlyArray<readonly [number, number]>>;
}

/** Reads one gateway's counts from a scrape of its `/metrics`. */
export function gatewayCounts(scrape: Scrape): GatewayCounts {
  const requests = new Map<string, number>();
  const buckets = new Map<string, Array<[number, number]>>();
  for (const sample of scrape.samples) {
    const method = sample.labels.method;
    if (method === undefined || !Number.isFinite(sample.value)) continue;
    if (sample.name === REQUESTS_METRIC) {
      requests.set(method, (requests.get(method) ?? 0) + sample.value);
    } else if (sample.name === `${LATENCY_METRIC}_bucket`) {
      const le = sample.labels.le === "+Inf" ? Infinity : Number(sample.labels.le);
      if (Number.isNaN(le)) continue;
      const list = buckets.get(method) ?? [];
      list.push([le, sample.value]);
      buckets.set(method, list);
    }
  }
  for (const list of buckets.values()) list.sort((a, b) => a[0] - b[0]);
  return { requests, buckets };
}

/** The total of a gateway's calls over every method. */
export function totalRequests(counts: GatewayCounts): number {
  let total = 0;
  for (const value of counts.requests.values()) total += value;
  return total;
}

/**
 * What happened between two scrapes of one gateway: calls and bucket counts by method. Undefined
 * when a counter went down or vanished (the gateway restarted: the interval cannot be told).
 */
export function countsBetween(
  before: GatewayCounts,
  after: GatewayCounts,
): GatewayCounts | undefined {
  for (const method of before.requests.keys()) {
    if (!after.requests.has(method)) return undefined;
  }
  const requests = new Map<string, number>();
  for (const [method, value] of after.requests) {
    const delta = value - (before.requests.get(method) ?? 0);
    if (delta < 0) return undefined;
    requests.set(method, delta);
  }
  const buckets = new Map<string, Array<[number, number]>>();
  for (const [method, list] of after.buckets) {
    const previous = new Map(before.buckets.get(method) ?? []);
    const deltas: Array<[number, number]> = [];
    for (const [le, value] of list) {
      const delta = value - (previous.get(le) ?? 0);
      if (delta < 0) return undefined;
      deltas.push([le, delta]);
    }
    buckets.set(method, deltas);
  }
  return { requests, buckets };
}

/** The sum of several gateways' counts (or intervals). */
export function sumCounts(all: readonly GatewayCounts[]): GatewayCounts {
  const requests = new Map<string, number>();
  const buckets = new Map<string, Map<number, number>>();
  for (const counts of all) {
    for (const [method, value] of counts.requests) {
      requests.set(method, (requests.get(method) ?? 0) + value);
    }
    for (const [method, list] of counts.buckets) {
      const sums = buckets.get(method) ?? new Map<number, number>();
      for (const [le, value] of list) sums.set(le, (sums.get(le) ?? 0) + value);
      buckets.set(method, sums);
    }
  }
  return {
    requests,
    buckets: new Map(
      [...buckets].map(([method, sums]) => [method, [...sums].sort((a, b) => a[0] - b[0])]),
    ),
  };
}

/**
 * The `q` quantile of the observations a cumulative histogram holds, interpolated linearly inside
 * its bucket as Prometheus's `histogram_quantile` does; the largest finite bound when it falls in
 * `+Inf`; undefined when the histogram is empty.
 */
export function histogramQuantile(
  q: number,
  buckets: ReadonlyArray<readonly [number, number]>,
): number | undefined {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      if (count === lowerCount) return le;
      return lowerBound + (le - lowerBound) * (rank - lowerCount) / (count - lowerCount);
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}
