import assert from "node:assert/strict";
import type { PlacementService } from "@tinykv/proto/tinykv/v1";
import { rpcFailure, rpcOk, type ServiceHandlers } from "@tinykv/rpc";
import { DashboardCollector } from "./collector.ts";
import {
  ACTION_BODY_BYTES_MAX,
  answersTo,
  type Assets,
  CONFIRM_HEADER,
  type DashboardHttp,
  dashboardRoute,
  EVENT_STREAM_QUEUED_MAX,
  loadAssets,
} from "./http.ts";

const assets: Assets = await loadAssets((message) => {
  throw new Error(`loadAssets warned: ${message}`);
});

/** Handlers that record their calls; TransferLeader refuses an unknown node as placement does. */
function recordingHandlers() {
  const calls: Array<[string, unknown]> = [];
  const handlers = {
    Rebalance: (request: { dryRun: boolean }) => {
      calls.push(["Rebalance", request]);
      return rpcOk({ moves: [], notes: ["balanced"] });
    },
    TransferLeader: (request: { shardId: number; toNode: string }) => {
      calls.push(["TransferLeader", request]);
      return request.toNode === "n2"
        ? rpcOk({ task: undefined })
        : rpcFailure("invalidArgument", `Unknown node "${request.toNode}"`);
    },
    DrainNode: (request: { nodeId: string }) => {
      calls.push(["DrainNode", request]);
      if (request.nodeId === "boom") throw new Error("a broken invariant");
      return rpcFailure("failedPrecondition", "Draining it would leave too few nodes");
    },
  } as unknown as ServiceHandlers<typeof PlacementService>;
  return { calls, handlers };
}

function dashboardOf(): {
  dashboard: DashboardHttp;
  calls: Array<[string, unknown]>;
  unexpected: Array<[unknown, string]>;
} {
  const { calls, handlers } = recordingHandlers();
  const unexpected: Array<[unknown, string]> = [];
  const collector = new DashboardCollector({
    snapshot: () => undefined,
    leaderAddress: () => Promise.resolve(undefined),
    decisions: () => [],
    gateways: () => [],
    nodeStatus: () => Promise.resolve(undefined),
    scrape: () => Promise.resolve(undefined),
    now: () => 1,
    warn: () => {},
  });
  return {
    dashboard: {
      assets,
      collector,
      handlers,
      listen: { host: "127.0.0.1", port: 7880 },
      onUnexpectedError: (error, method) => unexpected.push([error, method]),
    },
    calls,
    unexpected,
  };
}

async function serve(dashboard: DashboardHttp, request: Request): Promise<Response | undefined> {
  return await dashboardRoute(dashboard, request);
}

function post(path: string, body: string, headers: Record<string, string> = {}): Request {
  return new Request(`http://127.0.0.1:7880${path}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      host: "127.0.0.1:7880",
      [CONFIRM_HEADER]: "yes",
      ...headers,
    },
    body,
  });
}

Deno.test("the page and its assets are served from here, uPlot included", async () => {
  const { dashboard } = dashboardOf();
  const page = await serve(dashboard, new Request("http://x/"));
  assert.equal(page?.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(page?.headers.get("content-security-policy") ?? "", /frame-ancestors 'none'/);
  assert.equal(page?.headers.get("x-frame-options"), "DENY");
  const html = await page!.text();
  for (const asset of ["/assets/app.js", "/assets/app.css", "/assets/uPlot.iife.min.js"]) {
    assert.ok(html.includes(asset), `the page loads ${asset}`);
    const response = await serve(dashboard, new Request(`http://x${asset}`));
    assert.equal(response?.status, 200, asset);
    assert.ok((await response!.text()).length > 1000, `${asset} has its content`);
  }
  assert.doesNotMatch(html, /https?:\/\//, "nothing from another host");
  assert.equal(await serve(dashboard, new Request("http://x/nothing")), undefined);
});

Deno.test("the event stream opens with the view and history, and ends when the collector stops", async () => {
  const { dashboard } = dashboardOf();
  await dashboard.collector.collect();
  const abort = new AbortController();
  const response =
    (await serve(dashboard, new Request("http://x/events", { signal: abort.signal })))!;
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  const match = /^event: init\ndata: (.*)\n\n$/.exec(first.value ?? "");
  assert.ok(match, `the first event: ${first.value}`);
  const init = JSON.parse(match[1]);
  assert.equal(init.view.placement.isLeader, false);
  assert.equal(init.history.length, 1);
  await dashboard.collector.collect();
  const second = await reader.read();
  assert.match(second.value ?? "", /^event: update\ndata: \{"view":/);
  assert.equal(dashboard.collector.watchers, 1);
  await dashboard.collector.stop();
  assert.equal((await reader.read()).done, true, "the stream ended");
  assert.equal(dashboard.collector.watchers, 0);
});

Deno.test("a client that stops reading is let go after EVENT_STREAM_QUEUED_MAX events", async () => {
  const { dashboard } = dashboardOf();
  const response = (await serve(dashboard, new Request("http://x/events")))!;
  for (let i = 0; i < EVENT_STREAM_QUEUED_MAX + 5; i++) await dashboard.collector.collect();
  assert.equal(dashboard.collector.watchers, 0, "the stalled stream was closed");
  const reader = response.body!.getReader();
  let events = 0;
  while (!(await reader.read()).done) events++;
  assert.ok(events <= EVENT_STREAM_QUEUED_MAX, `${events} events were queued`);
  await dashboard.collector.stop();
});

Deno.test("answersTo(): loopback names and the configured host, on the port", () => {
  const listen = { host: "10.0.0.5", port: 7880 };
  for (const host of ["127.0.0.1:7880", "localhost:7880", "[::1]:7880", "10.0.0.5:7880"]) {
    assert.equal(answersTo(listen, host), true, host);
  }
  for (const host of ["evil.example:7880", "127.0.0.1:7881", "127.0.0.1", "", "10.0.0.5:80"]) {
    assert.equal(answersTo(listen, host), false, host);
  }
  assert.equal(answersTo({ host: "::1", port: 80 }, "[::1]"), true);
});

Deno.test("an action needs the confirmation header and this page's origin", async () => {
  const { dashboard, calls } = dashboardOf();
  const body = JSON.stringify({ nodeId: "n1" });
  const bare = await serve(dashboard, post("/api/drain", body, { [CONFIRM_HEADER]: "" }));
  assert.equal(bare?.status, 403);
  assert.match((await bare!.json()).message, /x-tinykv-confirm: yes/);
  const foreign = await serve(dashboard, post("/api/drain", body, { origin: "http://evil.test" }));
  assert.equal(foreign?.status, 403);
  const form = await serve(dashboard, post("/api/drain", body, { "content-type": "text/plain" }));
  assert.equal(form?.status, 415);
  assert.deepEqual(calls, [], "nothing reached placement");
  const rebound = await serve(
    dashboard,
    post("/api/drain", body, { host: "evil.example:7880", origin: "http://evil.example:7880" }),
  );
  assert.equal(rebound?.status, 403, "a page that rebound its name to this address");
  assert.match((await rebound!.json()).message, /got Host "evil.example:7880"/);
  const sandboxed = await serve(dashboard, post("/api/drain", body, { origin: "null" }));
  assert.equal(sandboxed?.status, 403);
  const own = await serve(dashboard, post("/api/drain", body, { origin: "http://127.0.0.1:7880" }));
  assert.equal(own?.status, 409, "the handler's FAILED_PRECONDITION");
  assert.deepEqual(await own!.json(), {
    ok: false,
    code: "FAILED_PRECONDITION",
    message: "Draining it would leave too few nodes",
  });
  assert.deepEqual(calls, [["DrainNode", { nodeId: "n1" }]]);
});

Deno.test("a handler that throws answers INTERNAL and is reported as the gRPC service reports it", async () => {
  const { dashboard, unexpected } = dashboardOf();
  const response = (await serve(dashboard, post("/api/drain", '{"nodeId": "boom"}')))!;
  assert.equal(response.status, 500);
  assert.equal((await response.json()).code, "INTERNAL");
  assert.deepEqual(unexpected.map(([, method]) => method), ["/tinykv.v1.Placement/drain"]);
});

Deno.test("an action's body: fields checked precisely, at most ACTION_BODY_BYTES_MAX bytes", async () => {
  const { dashboard, calls } = dashboardOf();
  const answer = async (path: string, body: string) => {
    const response = (await serve(dashboard, post(path, body)))!;
    return { status: response.status, body: await response.json() };
  };
  assert.deepEqual(await answer("/api/transfer-leader", '{"shardId": 1.5, "toNode": "n2"}'), {
    status: 400,
    body: {
      ok: false,
      code: "INVALID_ARGUMENT",
      message: 'Field "shardId" must be an integer from 0 to 4294967295: got 1.5',
    },
  });
  assert.equal(
    (await answer("/api/transfer-leader", '{"shardId": 1}')).body.message,
    'Field "toNode" must be a string: it is missing',
  );
  assert.equal(
    (await answer("/api/rebalance", "[]")).body.message,
    "An action's body must be a JSON object",
  );
  assert.equal((await answer("/api/rebalance", "{")).body.message, "An action's body is not JSON");
  assert.deepEqual(calls, []);
  // The largest body passes; one byte more is refused before any handler runs.
  const exact = (json: string, size: number) => json + " ".repeat(size - json.length);
  const atLimit = await answer(
    "/api/transfer-leader",
    exact('{"shardId": 3, "toNode": "n2"}', ACTION_BODY_BYTES_MAX),
  );
  assert.deepEqual(atLimit, { status: 200, body: { ok: true, result: {} } });
  const over = await answer(
    "/api/transfer-leader",
    exact('{"shardId": 3, "toNode": "n2"}', ACTION_BODY_BYTES_MAX + 1),
  );
  assert.equal(over.status, 400);
  assert.equal(over.body.message, `An action's body is at most ${ACTION_BODY_BYTES_MAX} bytes`);
  assert.deepEqual(calls, [["TransferLeader", { shardId: 3, toNode: "n2" }]]);
  const refused = await answer("/api/transfer-leader", '{"shardId": 3, "toNode": "n9"}');
  assert.deepEqual(refused, {
    status: 400,
    body: { ok: false, code: "INVALID_ARGUMENT", message: 'Unknown node "n9"' },
  });
  const plan = await answer("/api/rebalance", '{"dryRun": true}');
  assert.deepEqual(plan.body, { ok: true, result: { moves: [], notes: ["balanced"] } });
});

Deno.test("with credentials on, the page's actions are refused: they carry no token", async () => {
  const { dashboard, calls } = dashboardOf();
  const secure = { ...dashboard, actionsRefused: "Credentials are on: use the CLI" };
  const response = (await serve(secure, post("/api/drain", '{"nodeId": "n1"}')))!;
  assert.equal(response.status, 403);
  assert.deepEqual(await response.json(), {
    ok: false,
    code: "PERMISSION_DENIED",
    message: "Credentials are on: use the CLI",
  });
  assert.deepEqual(calls, []);
});
