/**
 * The placement HTTP endpoint: `GET /status` (the cluster state as JSON, the same as the admin
 * API's `ClusterState`), `GET /metrics` (Prometheus, see metrics.ts), and the live dashboard
 * (`GET /`, its assets, its view, events and actions: dashboard/http.ts).
 *
 * @module
 */
import type { ClusterStateResponse } from "@tinykv/proto/tinykv/v1";
import { metricsResponse, type Registry } from "@tinykv/metrics";
import { type DashboardHttp, dashboardRoute } from "./dashboard/http.ts";

/** What the HTTP endpoint shows. */
export interface HttpView {
  /** The cluster state as this instance knows it (empty shards when it does not lead). */
  state(): Promise<ClusterStateResponse>;
  /** The process's metrics (metrics.ts). */
  readonly registry: Registry;
  /** The dashboard. */
  readonly dashboard: DashboardHttp;
}

/** Serves the endpoint on `host:port` until `signal` aborts. */
export function serveHttp(
  view: HttpView,
  options: {
    host: string;
    port: number;
    signal: AbortSignal;
    /** Serve HTTPS with this certificate and key (PEM). */
    tls?: { readonly cert: string; readonly key: string };
  },
): Deno.HttpServer {
  return Deno.serve({
    hostname: options.host,
    port: options.port,
    signal: options.signal,
    ...(options.tls === undefined ? {} : { cert: options.tls.cert, key: options.tls.key }),
    onListen: () => {},
  }, (request) => handle(view, request));
}

async function handle(view: HttpView, request: Request): Promise<Response> {
  const dashboard = dashboardRoute(view.dashboard, request);
  if (dashboard !== undefined) return await dashboard;
  if (request.method !== "GET") return new Response("Method not allowed\n", { status: 405 });
  const path = new URL(request.url).pathname;
  switch (path) {
    case "/status":
      return Response.json(await view.state());
    case "/metrics":
      return (await metricsResponse(view.registry, request))!;
    default:
      return new Response("Not found\n", { status: 404 });
  }
}
