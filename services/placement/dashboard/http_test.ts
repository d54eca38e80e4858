import assert from "node:assert/strict";
import type { PlacementService } from "@tinykv/proto/tinykv/v1";
import { rpcFailure, rpcOk, type ServiceHandlers } from "@tinykv/rpc";
import { DashboardCollector } from "./collector.ts";
import {
  ACTION_BODY_BYTES_MAX,
  type Assets,
  CONFIRM_HEADER,
  type DashboardHttp,
  dashboardRoute,
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
      return rpcFailure("failedPrecondition", "Draining it would leave too few nodes");
    },
  } as unknown as ServiceHandlers<typeof PlacementService>;
  return { calls, handlers };
}

function dashboardOf(): { dashboard: DashboardHttp; calls: Array<[string, unknown]> } {
  const { calls, handlers } = recordingHandlers();
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
  return { dashboard: { assets, collector, handlers }, calls };
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
  const own = await serve(dashboard, post("/api/drain", body, { origin: "http://127.0.0.1:7880" }));
  assert.equal(own?.status, 409, "the handler's FAILED_PRECONDITION");
  assert.deepEqual(await own!.json(), {
    ok: false,
    code: "FAILED_PRECONDITION",
    message: "Draining it would leave too few nodes",
  });
  assert.deepEqual(calls, [["DrainNode", { nodeId: "n1" }]]);
});

Deno.test("an action's body: fields checked precisely, at most ACTION_BODY_BYTES_MAX bytes", async () => {
  const { dashboard, calls } = dashboardOf();
  const answer = async (path: string, body: string) => {
    const response = (await serve(dashboard, post(path, body)))!;
    return { status: response.status, body: await response.json() };
  };
  assert.deepEqual(await answer("/api/transfer-leader", '{"shardId": 1.5, "toNode": "n2"}'), {
    status: 400,
    body: { ok: false, code: "INVALID_ARGUMENT", message: 'Field "shardId" is not a shard id' },
  });
  assert.equal(
    (await answer("/api/transfer-leader", '{"shardId": 1}')).body.message,
    'Field "toNode" must be a string',
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
