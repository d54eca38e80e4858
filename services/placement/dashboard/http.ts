/**
 * The dashboard on placement's HTTP port: the page and its assets (uPlot comes from the npm
 * package, served from here: no CDN), the view as JSON, a stream of server-sent events, and the
 * safe admin actions the page offers behind a confirmation.
 *
 * - `GET /` the page; `GET /assets/<name>` its script, styles and uPlot.
 * - `GET /api/view`: `{view, history}` (see collector.ts).
 * - `GET /events`: `text/event-stream`; first an `init` event (`{view, history}`), then an
 *   `update` event (`{view, sample}`) every round; a comment every 15 s keeps proxies from
 *   closing it.
 * - `POST /api/rebalance` `{"dryRun": bool}`, `POST /api/transfer-leader`
 *   `{"shardId": n, "toNode": "id"}`, `POST /api/drain` `{"nodeId": "id"}`: the same handlers as
 *   the gRPC admin API (admin_service.ts), answered as `{"ok": true, "result": …}` or
 *   `{"ok": false, "code": "FAILED_PRECONDITION", "message": …}` with a matching HTTP status.
 *   An action must come as JSON with the header `x-tinykv-confirm: yes`, addressed to this
 *   server by a name it answers to (`Host`: 127.0.0.1, localhost, [::1] or the configured host,
 *   on its port), and, when the browser names an origin, from the page's own. Another site's
 *   page cannot send the header without a preflight this server never grants; one that rebinds
 *   its own name to this address is refused by the `Host` check; and the page may not be framed
 *   (`frame-ancestors 'none'`), so it cannot be clicked through from another site either.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { PlacementService } from "@tinykv/proto/tinykv/v1";
import { type RpcResult, type ServiceHandlers, statusName } from "@tinykv/rpc";
import type { DashboardCollector, DashboardUpdate } from "./collector.ts";

/** The header an action must carry. */
export const CONFIRM_HEADER = "x-tinykv-confirm";
/** The largest action body read. */
export const ACTION_BODY_BYTES_MAX = 4096;
/** The most event streams open at once (each costs a serialization per round). */
export const EVENT_STREAMS_MAX = 64;
/** How often an idle event stream gets a comment. */
export const KEEPALIVE_MS = 15_000;
/**
 * The most events queued for a client that does not read them; past it the stream is closed
 * (the browser reconnects and starts from a fresh `init`), so a stalled client costs no memory.
 */
export const EVENT_STREAM_QUEUED_MAX = 8;

/** The headers of the page and its assets: nothing from elsewhere, never inside a frame. */
const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "cache-control": "no-cache",
} as const;

/** A static file of the page. */
export interface Asset {
  readonly body: string;
  readonly type: string;
}

/** The page's files, by path (`/`, `/assets/app.js`, …). */
export type Assets = ReadonlyMap<string, Asset>;

const PAGE_FILES: ReadonlyArray<readonly [string, string, string]> = [
  ["/", "./page/index.html", "text/html; charset=utf-8"],
  ["/assets/app.js", "./page/app.js", "text/javascript; charset=utf-8"],
  ["/assets/app.css", "./page/app.css", "text/css; charset=utf-8"],
];

const UPLOT_FILES: ReadonlyArray<readonly [string, string, string]> = [
  ["/assets/uPlot.iife.min.js", "uplot/dist/uPlot.iife.min.js", "text/javascript; charset=utf-8"],
  ["/assets/uPlot.min.css", "uplot/dist/uPlot.min.css", "text/css; charset=utf-8"],
];

/**
 * Reads the page's files, and uPlot's from its npm package. A missing page file throws (the
 * checkout is broken); missing uPlot files are reported through `warn` and the page draws no
 * charts (it says so).
 */
export async function loadAssets(
  warn: (message: string, fields?: Record<string, unknown>) => void,
): Promise<Assets> {
  const assets = new Map<string, Asset>();
  for (const [path, file, type] of PAGE_FILES) {
    assets.set(path, { body: await Deno.readTextFile(new URL(file, import.meta.url)), type });
  }
  for (const [path, specifier, type] of UPLOT_FILES) {
    try {
      const url = new URL(import.meta.resolve(specifier));
      assets.set(path, { body: await Deno.readTextFile(url), type });
    } catch (error) {
      warn("The dashboard's charts are unavailable: cannot read uPlot", { specifier, error });
    }
  }
  return assets;
}

/** What the dashboard's routes use. */
export interface DashboardHttp {
  readonly assets: Assets;
  readonly collector: DashboardCollector;
  readonly handlers: ServiceHandlers<typeof PlacementService>;
  /** The host and port this server listens on (an action must be addressed to them). */
  readonly listen: { readonly host: string; readonly port: number };
  /** Why actions are refused here (credentials are on: the page carries none); undefined: taken. */
  readonly actionsRefused?: string;
  /**
   * Sees a handler's exception (as the gRPC service's `onUnexpectedError`: placement stops on a
   * broken invariant); the action is answered INTERNAL.
   */
  readonly onUnexpectedError: (error: unknown, method: string) => void;
}

/** Answers a dashboard route, or undefined when `request` is for another. */
export function dashboardRoute(
  dashboard: DashboardHttp,
  request: Request,
): Promise<Response> | Response | undefined {
  const url = new URL(request.url);
  const path = url.pathname;
  if (request.method === "POST") {
    switch (path) {
      case "/api/rebalance":
      case "/api/transfer-leader":
      case "/api/drain":
        return action(dashboard, request, path);
    }
    return undefined;
  }
  if (request.method !== "GET") return undefined;
  const asset = dashboard.assets.get(path);
  if (asset !== undefined) {
    return new Response(asset.body, { headers: { "content-type": asset.type, ...PAGE_HEADERS } });
  }
  switch (path) {
    case "/api/view":
      return Response.json(dashboard.collector.current());
    case "/events":
      return events(dashboard.collector);
  }
  return undefined;
}

function events(collector: DashboardCollector): Response {
  if (collector.watchers >= EVENT_STREAMS_MAX) {
    return new Response(`Too many dashboards open (${EVENT_STREAMS_MAX}): close one\n`, {
      status: 503,
    });
  }
  const encoder = new TextEncoder();
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        stop();
        try {
          controller.close();
        } catch {
          // Already closed.
        }
      };
      const send = (text: string) => {
        if (closed) return;
        // desiredSize is 1 minus the events queued: a client this far behind is not reading.
        if ((controller.desiredSize ?? 0) <= 1 - EVENT_STREAM_QUEUED_MAX) return close();
        try {
          controller.enqueue(encoder.encode(text));
        } catch {
          close(); // The stream closed under us.
        }
      };
      send(`event: init\ndata: ${JSON.stringify(collector.current())}\n\n`);
      const unwatch = collector.watch((update: DashboardUpdate) => {
        send(`event: update\ndata: ${JSON.stringify(update)}\n\n`);
      });
      const keepalive = setInterval(() => send(": keepalive\n\n"), KEEPALIVE_MS);
      let forgetStop = () => {};
      stop = () => {
        unwatch();
        forgetStop();
        clearInterval(keepalive);
      };
      forgetStop = collector.onStop(close);
    },
    cancel() {
      stop();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    },
  });
}

const HTTP_STATUS: Readonly<Record<string, number>> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  FAILED_PRECONDITION: 409,
  RESOURCE_EXHAUSTED: 429,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

function refuse(status: number, code: string, message: string): Response {
  return Response.json({ ok: false, code, message }, { status });
}

async function action(
  dashboard: DashboardHttp,
  request: Request,
  path: string,
): Promise<Response> {
  if (dashboard.actionsRefused !== undefined) {
    return refuse(403, "PERMISSION_DENIED", dashboard.actionsRefused);
  }
  if (request.headers.get(CONFIRM_HEADER) !== "yes") {
    return refuse(403, "PERMISSION_DENIED", `An action needs the header "${CONFIRM_HEADER}: yes"`);
  }
  const host = request.headers.get("host") ?? "";
  if (!answersTo(dashboard.listen, host)) {
    return refuse(
      403,
      "PERMISSION_DENIED",
      `Actions are taken only when addressed to ${dashboard.listen.host}:` +
        `${dashboard.listen.port} (or localhost): got Host "${host}"`,
    );
  }
  const origin = request.headers.get("origin");
  if (origin !== null && hostOf(origin) !== host) {
    return refuse(
      403,
      "PERMISSION_DENIED",
      `Actions are taken only from the dashboard's own page: got Origin "${origin}"`,
    );
  }
  if (!(request.headers.get("content-type") ?? "").startsWith("application/json")) {
    return refuse(415, "INVALID_ARGUMENT", "An action's body must be application/json");
  }
  const body = await readBody(request);
  if (typeof body === "string") return refuse(400, "INVALID_ARGUMENT", body);
  const method = `/tinykv.v1.Placement/${path.slice("/api/".length)}`;
  try {
    return answer(await call(dashboard.handlers, path, body, method));
  } catch (error) {
    dashboard.onUnexpectedError(error, method);
    return refuse(500, "INTERNAL", `The action failed: ${error}`);
  }
}

function answer(result: RpcResult<unknown> | Response): Response {
  if (result instanceof Response) return result;
  if (result.kind === "ok") return Response.json({ ok: true, result: result.response });
  const code = statusName(result);
  return refuse(HTTP_STATUS[code] ?? 500, code, result.message);
}

async function call(
  handlers: ServiceHandlers<typeof PlacementService>,
  path: string,
  body: Record<string, unknown>,
  method: string,
): Promise<RpcResult<unknown> | Response> {
  const context = {
    method,
    metadata: new grpc.Metadata(),
    deadlineMs: Infinity,
    signal: NEVER_ABORTED,
  };
  switch (path) {
    case "/api/rebalance": {
      const dryRun = field(body, "dryRun", "boolean");
      if (typeof dryRun === "string") return refuse(400, "INVALID_ARGUMENT", dryRun);
      return await handlers.Rebalance({ dryRun: dryRun.value }, context);
    }
    case "/api/transfer-leader": {
      const shardId = field(body, "shardId", "number");
      if (typeof shardId === "string") return refuse(400, "INVALID_ARGUMENT", shardId);
      if (!Number.isInteger(shardId.value) || shardId.value < 0 || shardId.value > 0xffffffff) {
        return refuse(
          400,
          "INVALID_ARGUMENT",
          `Field "shardId" must be an integer from 0 to 4294967295: got ${shardId.value}`,
        );
      }
      const toNode = field(body, "toNode", "string");
      if (typeof toNode === "string") return refuse(400, "INVALID_ARGUMENT", toNode);
      return await handlers.TransferLeader(
        { shardId: shardId.value, toNode: toNode.value },
        context,
      );
    }
    default: {
      const nodeId = field(body, "nodeId", "string");
      if (typeof nodeId === "string") return refuse(400, "INVALID_ARGUMENT", nodeId);
      return await handlers.DrainNode({ nodeId: nodeId.value }, context);
    }
  }
}

/** Actions answer no cancellation: once checked, a move is started or refused whole. */
const NEVER_ABORTED = new AbortController().signal;

const LOOPBACK_NAMES = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** Whether `host` (a Host header) names this server: a loopback name or its own host, its port. */
export function answersTo(listen: { host: string; port: number }, host: string): boolean {
  const match = /^(\[[^\]]*\]|[^:]+)(?::(\d+))?$/.exec(host.toLowerCase());
  if (match === null || Number(match[2] ?? 80) !== listen.port) return false;
  const name = match[1];
  const own = listen.host.includes(":")
    ? `[${listen.host.toLowerCase()}]`
    : listen.host.toLowerCase();
  return LOOPBACK_NAMES.has(name) || name === own;
}

/** The `host:port` of an origin, or undefined when it is not a URL (`null`, a sandboxed frame). */
function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/** The body as a JSON object, or why not. */
async function readBody(request: Request): Promise<Record<string, unknown> | string> {
  const reader = request.body?.getReader();
  if (reader === undefined) return "An action needs a JSON body";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > ACTION_BODY_BYTES_MAX) {
      await reader.cancel();
      return `An action's body is at most ${ACTION_BODY_BYTES_MAX} bytes`;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return "An action's body is not JSON";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "An action's body must be a JSON object";
  }
  return value as Record<string, unknown>;
}

type FieldTypes = { boolean: boolean; number: number; string: string };

function field<T extends keyof FieldTypes>(
  body: Record<string, unknown>,
  name: string,
  type: T,
): { value: FieldTypes[T] } | string {
  const value: unknown = body[name];
  const actual: string = typeof value;
  if (actual !== type) {
    const got = value === undefined ? "it is missing" : `got ${JSON.stringify(value)}`;
    return `Field "${name}" must be a ${type}: ${got}`;
  }
  return { value: value as FieldTypes[T] };
}
