/**
 * The placement HTTP endpoint: `GET /status` (the cluster state as JSON, the same as the admin
 * API's `ClusterState`), `GET /metrics` (Prometheus, see metrics.ts) and `GET /` (a minimal page).
 *
 * @module
 */
import type { ClusterStateResponse } from "@tinykv/proto/tinykv/v1";
import { metricsResponse, type Registry } from "@tinykv/metrics";

/** What the HTTP endpoint shows. */
export interface HttpView {
  /** The cluster state as this instance knows it (empty shards when it does not lead). */
  state(): Promise<ClusterStateResponse>;
  /** The process's metrics (metrics.ts). */
  readonly registry: Registry;
}

/** Serves the endpoint on `host:port` until `signal` aborts. */
export function serveHttp(
  view: HttpView,
  options: { host: string; port: number; signal: AbortSignal },
): Deno.HttpServer {
  return Deno.serve({
    hostname: options.host,
    port: options.port,
    signal: options.signal,
    onListen: () => {},
  }, (request) => handle(view, request));
}

async function handle(view: HttpView, request: Request): Promise<Response> {
  if (request.method !== "GET") return new Response("Method not allowed\n", { status: 405 });
  const path = new URL(request.url).pathname;
  switch (path) {
    case "/status":
      return Response.json(await view.state());
    case "/metrics":
      return (await metricsResponse(view.registry, request))!;
    case "/":
      return new Response(page(await view.state()), {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    default:
      return new Response("Not found\n", { status: 404 });
  }
}

function escape(text: string): string {
  return text.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!,
  );
}

function page(state: ClusterStateResponse): string {
  const rows = state.shards.map((s) =>
    `<tr><td>${s.shardId}</td><td>${escape(s.voters.join(", "))}</td>` +
    `<td>${escape(s.learners.join(", "))}</td><td>${escape(s.leader)}</td>` +
    `<td>${s.confEpoch}</td></tr>`
  ).join("");
  const nodes = state.nodes.map((n) =>
    `<li>${escape(n.nodeId)} ${escape(n.address)} ${n.live ? "live" : "down"}` +
    `${n.draining ? " draining" : ""}: ${n.replicas} replicas, ${n.leaders} leaders</li>`
  ).join("");
  return `<!doctype html><title>TinyKV placement</title><h1>TinyKV placement</h1>` +
    `<p>${state.isLeader ? "leader" : `follower (leader: ${escape(state.leaderAddress)})`}, ` +
    `shard map version ${state.shardMapVersion}, ${state.tasks.length} moves in flight</p>` +
    `<h2>Nodes</h2><ul>${nodes}</ul><h2>Shards</h2><table><tr><th>shard</th><th>voters</th>` +
    `<th>learners</th><th>leader</th><th>epoch</th></tr>${rows}</table>` +
    `<p><a href="/status">JSON</a> · <a href="/metrics">metrics</a></p>`;
}
