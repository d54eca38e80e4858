// Checks placement's live dashboard (`GET /` on its HTTP port) end to end in headless Chromium
// (`tests/_harness/browser.ts`) against a real dev cluster on free ports (3 kvnodes, 4 shards),
// changed through the `tinykv` CLI as an operator would: the grid shows every shard's leader and
// the page keeps applying updates; a leadership moved with `transfer-leader` shows in the grid, the
// shard table and the recent decisions; a fourth kvnode started on the dev config appears as a live
// node; a replica moved onto it with `move` shows in the moves in flight with its step, then in
// the grid; writes through the gateway raise the total and a shard's request counts; clicking a
// shard's "transfer leader" button, picking a voter in the confirmation dialog and confirming
// moves the leadership; "rebalance" opens the dialog with the dry-run plan and cancelling it
// closes it. A full-page screenshot is saved under `data/dashboard/` (its path is printed; on a
// failure, a screenshot of the page as it was). Every wait is bounded and says what it did not
// see; the browser, the extra kvnode and the cluster are stopped, and their files removed, in
// `finally`.
import assert from "node:assert/strict";
import { KVService } from "@tinykv/proto/tinykv/v1";
import { createGrpcClient, unaryCaller } from "@tinykv/rpc";
import {
  attributeOf,
  click,
  launchBrowser,
  type LaunchedBrowser,
  type Page,
  pollUntil,
  screenshot,
  textOf,
  waitForSelector,
  waitForText,
} from "./_harness/browser.ts";
import { type CliRun, runCli } from "./_harness/cli.ts";
import {
  devArgs,
  devPorts,
  killDev,
  REPO_ROOT,
  type RunningDev,
  runUntilServing,
  stopDev,
} from "./_harness/dev_cluster.ts";
import { ServiceProcess } from "./_harness/processes.ts";

const SHARDS = 4;
/** The bound of each wait on the page (its updates come about every second). */
const WAIT_MS = 30_000;
/** A move onto a new kvnode takes several placement rounds; the planner's own moves go first. */
const MOVE_WAIT_MS = 60_000;

/** The part of `tinykv --json status` the test reads. */
interface Status {
  nodes: Array<{ nodeId: string; live: boolean; replicas: number; leaders: number }>;
  shards: Array<{ shardId: number; voters: string[]; learners: string[]; leader: string }>;
  tasks: Array<{ move: { kind: string; shardId: number }; step: string }>;
}

const started = Date.now();
function say(line: string): void {
  console.log(`dashboard: [${((Date.now() - started) / 1000).toFixed(1)} s] ${line}`);
}

Deno.test("dashboard: a real browser sees leaders, a new node, a move and load, and moves a leader", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tinykv-dashboard-" });
  const data = `${dir}/dev`;
  const ports = devPorts();
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const artifact = `${REPO_ROOT}data/dashboard/${stamp}.png`;
  let browser: LaunchedBrowser | undefined;
  let page: Page | undefined;
  let running: RunningDev | undefined;
  let extra: ServiceProcess | undefined;
  let passed = false;
  try {
    // First, so that a missing Chromium fails the test before a cluster starts.
    browser = await launchBrowser();
    running = await runUntilServing(devArgs(data, ports, SHARDS));
    const cluster = new Cluster(ports);
    say(`dev cluster serves (placement http 127.0.0.1:${ports.http})`);

    const tab = await browser.newPage();
    page = tab;
    await tab.goto(`http://127.0.0.1:${ports.http}/`);
    await checkLeadersShown(tab, await cluster.status());
    await checkCliTransfer(tab, cluster);

    extra = await startExtraKvnode(data, ports);
    const newNode = nodeIdOf(extra);
    say(`a fourth kvnode ${newNode} started on 127.0.0.1:${ports.base + 3}`);
    await pollUntil(`th[data-node="${newNode}"] with data-state "live"`, {
      read: () =>
        attributeOf(tab, {
          selector: `table#grid th[data-node="${newNode}"]`,
          name: "data-state",
        }),
      accept: (state) => state === "live",
      timeoutMs: WAIT_MS,
    });
    say(`the grid shows ${newNode} as live`);
    await checkMoveOnto(tab, cluster, newNode);
    await checkLoad(tab, ports.gateway);
    await checkClickTransfer(tab, cluster);
    await checkRebalanceDialog(tab);

    await screenshot(tab, artifact);
    say(`screenshot saved: ${artifact}`);
    const uncaught = browser.pageErrors.filter((e) => e.startsWith("page error:"));
    assert.deepEqual(uncaught, [], "no uncaught exception on the page");
    if (browser.pageErrors.length > 0) {
      say(`the page logged:\n  ${browser.pageErrors.join("\n  ")}`);
    }

    await browser.close();
    await extra.stop();
    extra = undefined;
    await stopDev(running, data);
    running = undefined;
    passed = true;
  } finally {
    if (!passed && page !== undefined) {
      const failed = artifact.replace(/\.png$/, "-failed.png");
      await screenshot(page, failed).then(
        () => say(`the page when the test failed: ${failed}`),
        (error) => say(`Cannot save a screenshot of the failed page: ${error}`),
      );
      if (browser !== undefined && browser.pageErrors.length > 0) {
        say(`the page logged:\n  ${browser.pageErrors.join("\n  ")}`);
      }
    }
    await browser?.close();
    await extra?.kill();
    await killDev(running);
    await Deno.remove(dir, { recursive: true });
  }
});

/** The dev cluster through the `tinykv` CLI, as an operator reaches it. */
class Cluster {
  readonly #placement: string;
  readonly #gateway: string;

  constructor(ports: ReturnType<typeof devPorts>) {
    this.#placement = `127.0.0.1:${ports.admin}`;
    this.#gateway = `127.0.0.1:${ports.gateway}`;
  }

  cli(...args: string[]): Promise<CliRun> {
    return runCli(["--placement", this.#placement, "--endpoint", this.#gateway, ...args]);
  }

  async status(): Promise<Status> {
    const run = await this.cli("--json", "status");
    assert.equal(run.code, 0, `tinykv status: ${JSON.stringify(run)}`);
    return JSON.parse(run.stdout);
  }
}

/** Every shard's leader as the page shows it: in the grid and in the shard table. */
async function shownLeaders(
  page: Page,
): Promise<{ grid: Record<string, string>; table: Record<string, string> }> {
  const grid = Object.fromEntries(
    await page.$$eval(
      'table#grid td[data-node][data-shard][data-role="leader"]',
      (cells) =>
        cells.map((c) => [c.getAttribute("data-shard") ?? "", c.getAttribute("data-node")]),
    ),
  );
  const table = Object.fromEntries(
    await page.$$eval(
      "tr[data-shard-row]",
      (rows) =>
        rows.map((r) => [
          r.getAttribute("data-shard-row") ?? "",
          r.querySelector('[data-field="leader"]')?.textContent?.trim() ?? "",
        ]),
    ),
  );
  return { grid, table };
}

/** Waits until the page shows `leader` as the leader of `shard`, in the grid and the table. */
async function waitForLeader(page: Page, shard: number, leader: string): Promise<void> {
  await pollUntil(`shard ${shard} led by ${leader} in the grid and in its row`, {
    read: () => shownLeaders(page),
    accept: ({ grid, table }) => grid[shard] === leader && table[shard] === leader,
    timeoutMs: WAIT_MS,
  });
}

/** The `data-updates` counter of the page's body. */
async function updates(page: Page): Promise<number> {
  return Number(await attributeOf(page, { selector: "body", name: "data-updates" }) ?? Number.NaN);
}

async function checkLeadersShown(page: Page, status: Status): Promise<void> {
  await waitForSelector(page, "table#grid", { timeoutMs: WAIT_MS });
  const shards = status.shards.map((s) => String(s.shardId)).sort();
  assert.equal(shards.length, SHARDS, JSON.stringify(status.shards));
  await pollUntil(
    `a leader in the grid and the shard table for each of shards ${shards.join(", ")}`,
    {
      read: () => shownLeaders(page),
      accept: ({ grid, table }) =>
        shards.every((s) => grid[s] !== undefined && table[s] === grid[s]),
      timeoutMs: WAIT_MS,
    },
  );
  for (const node of status.nodes) {
    assert.equal(
      await attributeOf(page, {
        selector: `table#grid th[data-node="${node.nodeId}"]`,
        name: "data-state",
      }),
      "live",
      `node ${node.nodeId} live in the grid`,
    );
  }
  await checkRows(page, "tr[data-shard-row]", "data-shard-row", {
    fields: ["leader", "term", "applied", "keys", "bytes", "rps", "requests"],
    button: (id) => `button[data-action="transfer-leader"][data-shard="${id}"]`,
    ids: shards,
  });
  await checkRows(page, "tr[data-node-row]", "data-node-row", {
    fields: ["replicas", "leaders", "disk"],
    button: (id) => `button[data-action="drain"][data-node="${id}"]`,
    ids: status.nodes.map((n) => n.nodeId).sort(),
  });
  await waitForText(page, "#placement-role", { expected: "leader", timeoutMs: WAIT_MS });
  const before = await updates(page);
  await pollUntil(
    `body[data-updates] to rise above ${before} (the page applies the server's updates)`,
    {
      read: () => updates(page),
      accept: (now) => now > before,
      timeoutMs: WAIT_MS,
    },
  );
  for (const chart of ["#chart-rps", "#chart-p99", "#chart-leaders"]) {
    await waitForSelector(page, `${chart} canvas`, { timeoutMs: WAIT_MS });
  }
  say(`the grid shows a leader for each of shards ${shards.join(", ")}; updates apply`);
}

/**
 * Checks that the table rows matching `rows` are one per id, each with a cell per field
 * (`[data-field]`) and its button.
 */
async function checkRows(
  page: Page,
  rows: string,
  idAttribute: string,
  expected: { fields: string[]; button: (id: string) => string; ids: string[] },
): Promise<void> {
  const found = await page.$$eval(
    rows,
    (elements, attribute, fields) =>
      elements.map((row) => ({
        id: row.getAttribute(attribute) ?? "",
        missing: fields.filter((f) => row.querySelector(`[data-field="${f}"]`) === null),
      })),
    idAttribute,
    expected.fields,
  );
  assert.deepEqual(found.map((r) => r.id).sort(), expected.ids, `one "${rows}" per id`);
  for (const row of found) {
    assert.deepEqual(row.missing, [], `"${rows}" ${row.id} has a [data-field] cell per field`);
    const button = expected.button(row.id);
    const inRow = `${rows.replace(/\]$/, `="${row.id}"]`)} ${button}`;
    assert.equal(await page.$$eval(inRow, (found) => found.length), 1, `one "${inRow}"`);
  }
}

/**
 * A leadership move that keeps the leaders balanced (so the planner leaves it): a shard led by the
 * node with the most leaderships, to its voter with the fewest. `exclude` skips shards.
 */
function balancedTransfer(
  status: Status,
  exclude: ReadonlySet<number> = new Set(),
): { shard: number; from: string; to: string } {
  const leaders = new Map(status.nodes.map((n) => [n.nodeId, n.leaders]));
  const busy = new Set(status.tasks.map((t) => t.move.shardId));
  const candidates = status.shards
    .filter((s) => s.leader !== "" && !busy.has(s.shardId) && !exclude.has(s.shardId))
    .sort((a, b) => (leaders.get(b.leader) ?? 0) - (leaders.get(a.leader) ?? 0));
  const shard = candidates[0];
  assert.ok(shard !== undefined, `a shard with a leader and no move: ${JSON.stringify(status)}`);
  const to = shard.voters.filter((v) => v !== shard.leader)
    .sort((a, b) => (leaders.get(a) ?? 0) - (leaders.get(b) ?? 0))[0];
  return { shard: shard.shardId, from: shard.leader, to };
}

/**
 * Waits (bounded) until placement has no move in flight, in `tinykv status` and on the page: at
 * start, and when a node joins, the planner moves leaders and replicas of its own.
 */
async function waitQuiet(page: Page, cluster: Cluster): Promise<Status> {
  const { status } = await pollUntil(
    "no move in flight (tinykv status and ul#moves), so the planner leaves the shards alone",
    {
      read: async () => {
        const status = await cluster.status();
        const tasks = status.tasks.map((t) =>
          `${t.move.kind} of shard ${t.move.shardId}: ${t.step}`
        );
        return { tasks, shown: await shownMoves(page), status };
      },
      accept: ({ tasks, shown }) => tasks.length === 0 && shown.length === 0,
      timeoutMs: MOVE_WAIT_MS,
    },
  );
  return status;
}

async function checkCliTransfer(page: Page, cluster: Cluster): Promise<void> {
  let chosen: { shard: number; from: string; to: string } | undefined;
  // The planner may start a move of the chosen shard between the status and the command.
  for (let attempt = 1; chosen === undefined; attempt++) {
    const choice = balancedTransfer(await waitQuiet(page, cluster));
    const run = await cluster.cli("transfer-leader", String(choice.shard), "--to", choice.to);
    if (run.code === 0) chosen = choice;
    const failures = `tinykv transfer-leader failed ${attempt} times: ${JSON.stringify(run)}`;
    assert.ok(chosen !== undefined || attempt < 3, failures);
  }
  const { shard, from, to } = chosen;
  await waitForLeader(page, shard, to);
  assert.equal(
    await attributeOf(page, {
      selector: `table#grid td[data-node="${from}"][data-shard="${shard}"]`,
      name: "data-role",
    }),
    "voter",
    `the old leader ${from} shows as a voter of shard ${shard}`,
  );
  const reason = `leader of shard ${shard} moved to ${to} because an operator asked`;
  await pollUntil(`a recent decision saying "${reason}"`, {
    read: () => page.$$eval("ul#decisions > li", (items) => items.map((i) => i.textContent ?? "")),
    accept: (items) => items.some((text) => text.includes(reason)),
    timeoutMs: WAIT_MS,
  });
  say(`CLI transfer-leader: the page shows shard ${shard} led by ${to} (was ${from})`);
}

/** Starts a fourth kvnode on the dev cluster's config, as `tools/dev.ts` starts its kvnodes. */
async function startExtraKvnode(
  data: string,
  ports: ReturnType<typeof devPorts>,
): Promise<ServiceProcess> {
  // devPorts() leaves room for four kvnodes (and their /metrics ports, each + 1000).
  const port = ports.base + 3;
  const kvnode = new ServiceProcess(`kvnode :${port}`, "services/kvnode/main.ts", [
    ...devArgs(data, ports, SHARDS),
    `--kvnode.port=${port}`,
    "--log.stderr=false",
  ]);
  await kvnode.start(/kvnode \S+ serving on/);
  return kvnode;
}

function nodeIdOf(kvnode: ServiceProcess): string {
  const id = /kvnode (\S+) serving on/.exec(kvnode.output)?.[1];
  assert.ok(id !== undefined, `the kvnode names its node id: ${kvnode.output}`);
  return id;
}

/** The moves the page lists as in flight (an item without `data-shard` is no move: "None."). */
function shownMoves(page: Page): Promise<Array<Record<string, string>>> {
  return page.$$eval(
    "ul#moves > li[data-shard]",
    (items) =>
      items.map((li) =>
        Object.fromEntries(
          ["data-shard", "data-kind", "data-step", "data-step-index", "data-steps"]
            .map((name) => [name, li.getAttribute(name) ?? ""]),
        )
      ),
  );
}

/**
 * Moves a replica onto `node` with `tinykv move` and follows it on the page. The planner starts
 * moves onto the new node of its own; a shard it is moving is refused ("already has a move in
 * flight"), so each poll asks for a shard without a move until one is accepted.
 */
async function checkMoveOnto(page: Page, cluster: Cluster, node: string): Promise<void> {
  let moved: { shard: number; from: string } | undefined;
  let last: CliRun | undefined;
  await pollUntil("tinykv move to accept a move onto the new node", {
    read: async () => {
      const status = await cluster.status();
      const busy = new Set(status.tasks.map((t) => t.move.shardId));
      const shard = status.shards.find((s) =>
        !busy.has(s.shardId) && s.leader !== "" && ![...s.voters, ...s.learners].includes(node)
      );
      if (shard === undefined) return last;
      const from = shard.voters.find((v) => v !== shard.leader)!;
      last = await cluster.cli("move", String(shard.shardId), "--from", from, "--to", node);
      if (last.code === 0) moved = { shard: shard.shardId, from };
      return last;
    },
    accept: (run) => run?.code === 0,
    timeoutMs: MOVE_WAIT_MS,
  });
  const { shard, from } = moved!;
  say(`CLI move: shard ${shard} from ${from} to ${node} started`);
  const seen = await pollUntil(`li[data-shard="${shard}"] in ul#moves with a data-step`, {
    read: () => shownMoves(page),
    accept: (moves) =>
      moves.some((m) => m["data-shard"] === String(shard) && m["data-step"] !== ""),
    timeoutMs: WAIT_MS,
  });
  const item = seen.find((m) => m["data-shard"] === String(shard))!;
  assert.equal(item["data-kind"], "moveReplica", JSON.stringify(item));
  const stepIndex = Number(item["data-step-index"]);
  const steps = Number(item["data-steps"]);
  assert.ok(
    Number.isInteger(stepIndex) && Number.isInteger(steps) && stepIndex >= 0 && stepIndex < steps,
    `data-step-index within data-steps: ${JSON.stringify(item)}`,
  );
  const step = item["data-step"];
  say(`the page shows the move of shard ${shard}: step "${step}" (${stepIndex}/${steps})`);
  await pollUntil(
    `shard ${shard} on ${node} in the grid (role voter or leader) and not on ${from}`,
    {
      read: async () => ({
        to: await attributeOf(page, {
          selector: `table#grid td[data-node="${node}"][data-shard="${shard}"]`,
          name: "data-role",
        }),
        from: await attributeOf(page, {
          selector: `table#grid td[data-node="${from}"][data-shard="${shard}"]`,
          name: "data-role",
        }),
      }),
      accept: (roles) => (roles.to === "voter" || roles.to === "leader") && roles.from === "",
      timeoutMs: MOVE_WAIT_MS,
    },
  );
  await pollUntil(`the move of shard ${shard} gone from ul#moves`, {
    read: () => shownMoves(page),
    accept: (moves) => !moves.some((m) => m["data-shard"] === String(shard)),
    timeoutMs: WAIT_MS,
  });
  await pollUntil(`tr[data-node-row="${node}"] counting at least one replica`, {
    read: () => textOf(page, `tr[data-node-row="${node}"] [data-field="replicas"]`),
    accept: (text) => Number(text) >= 1,
    timeoutMs: WAIT_MS,
  });
  say(`the grid shows shard ${shard} on ${node}, no longer on ${from}`);
}

/** The request counters the page shows: the gateways' total and each shard's. */
async function shownRequests(
  page: Page,
): Promise<{ total: number; rps: number; shards: Record<string, number> }> {
  const shards = Object.fromEntries(
    await page.$$eval(
      "tr[data-shard-row]",
      (rows) =>
        rows.map((r) => [
          r.getAttribute("data-shard-row") ?? "",
          r.querySelector('[data-field="requests"]')?.textContent?.trim() ?? "",
        ]),
    ),
  );
  return {
    total: Number(await textOf(page, "#total-requests")),
    rps: Number(await textOf(page, "#total-rps")),
    shards: Object.fromEntries(Object.entries(shards).map(([id, text]) => [id, Number(text)])),
  };
}

async function checkLoad(page: Page, gatewayPort: number): Promise<void> {
  const before = await pollUntil("#total-requests and each shard's requests as numbers", {
    read: () => shownRequests(page),
    accept: (seen) =>
      Number.isFinite(seen.total) && Object.keys(seen.shards).length === SHARDS &&
      Object.values(seen.shards).every(Number.isFinite),
    timeoutMs: WAIT_MS,
  });
  const client = createGrpcClient(KVService, `127.0.0.1:${gatewayPort}`, {
    maxMessageBytes: 8 << 20,
  });
  const put = unaryCaller<typeof KVService, "Put">(client, "Put");
  const stopping = new AbortController();
  const enc = new TextEncoder();
  let written = 0;
  let failed = 0;
  const load = (async () => {
    // One write at a time: enough to see, little CPU.
    while (!stopping.signal.aborted) {
      const result = await put(
        {
          key: enc.encode(`dash-${written % 64}`),
          value: enc.encode("v"),
          clientId: "",
          seq: 0,
          ackSeq: 0,
        },
        { deadlineMs: 5000 },
      );
      if (result.kind === "ok") written++;
      else failed++;
    }
  })();
  try {
    const rising = await pollUntil(
      `#total-requests above ${before.total}, #total-rps above 0 and a shard's requests rising ` +
        `(from ${JSON.stringify(before.shards)})`,
      {
        read: () => shownRequests(page),
        accept: (now) =>
          now.total > before.total && now.rps > 0 &&
          Object.entries(now.shards).some(([id, count]) => count > (before.shards[id] ?? Infinity)),
        timeoutMs: WAIT_MS,
      },
    );
    say(
      `under load: total requests ${before.total} -> ${rising.total}, ${rising.rps} requests/s, ` +
        `shards ${JSON.stringify(before.shards)} -> ${JSON.stringify(rising.shards)}`,
    );
  } finally {
    stopping.abort();
    await load;
    client.close();
  }
  assert.ok(written > 0, `writes through the gateway succeeded (${failed} failed)`);
  say(`the load wrote ${written} times (${failed} failed)`);
}

/** The dialog's state: open or not, its title and the targets it offers. */
async function dialogState(
  page: Page,
): Promise<{ open: boolean; title: string; targets: string[] }> {
  return {
    open: (await attributeOf(page, { selector: "dialog#confirm", name: "open" })) !== undefined,
    title: (await textOf(page, "#confirm-title")) ?? "",
    targets: await page.$$eval(
      "#confirm-target option",
      (options) => options.map((o) => o.getAttribute("value") ?? o.textContent?.trim() ?? ""),
    ),
  };
}

/**
 * Clicks a shard's "transfer leader" button, picks a voter in the dialog and confirms; the shard's
 * leader changes. Waits for the cluster to be quiet first; if the planner started a move of the
 * shard in between (the action answers "error:"), it tries another shard.
 */
async function checkClickTransfer(page: Page, cluster: Cluster): Promise<void> {
  const tried = new Set<number>();
  for (let attempt = 1;; attempt++) {
    const status = await waitQuiet(page, cluster);
    const { shard, from, to } = balancedTransfer(status, tried);
    tried.add(shard);
    const voters = status.shards.find((s) => s.shardId === shard)!.voters;
    const previous = (await textOf(page, "#action-result")) ?? "";
    await click(page, `button[data-action="transfer-leader"][data-shard="${shard}"]`);
    const others = voters.filter((v) => v !== from).sort();
    await pollUntil(
      `dialog#confirm open for shard ${shard}, #confirm-target offering its other voters ` +
        others.join(", "),
      {
        read: () => dialogState(page),
        accept: (d) => d.open && JSON.stringify([...d.targets].sort()) === JSON.stringify(others),
        timeoutMs: WAIT_MS,
      },
    );
    await page.select("#confirm-target", to);
    await click(page, "#confirm-ok");
    const result = await waitForText(page, "#action-result", {
      expected: (text) => text !== previous && /^(ok|error):/.test(text),
      timeoutMs: WAIT_MS,
    });
    if (result.startsWith("ok:")) {
      await waitForLeader(page, shard, to);
      say(`clicked transfer-leader: shard ${shard} led by ${to} (was ${from}); "${result}"`);
      return;
    }
    say(`clicked transfer-leader of shard ${shard} to ${to}: "${result}"`);
    assert.ok(attempt < 3, `the dashboard's transfer-leader failed ${attempt} times: "${result}"`);
  }
}

/** "Rebalance" shows the dry-run plan in the dialog before anything starts; cancel closes it. */
async function checkRebalanceDialog(page: Page): Promise<void> {
  await pollUntil("dialog#confirm closed after the transfer", {
    read: () => dialogState(page),
    accept: (d) => !d.open,
    timeoutMs: WAIT_MS,
  });
  await click(page, "#action-rebalance");
  await pollUntil("dialog#confirm open with the dry-run plan in #confirm-body", {
    read: async () => ({
      open: (await dialogState(page)).open,
      body: await textOf(page, "#confirm-body"),
    }),
    accept: (d) => d.open && (d.body ?? "") !== "",
    timeoutMs: WAIT_MS,
  });
  await click(page, "#confirm-cancel");
  await pollUntil("dialog#confirm closed after #confirm-cancel", {
    read: () => dialogState(page),
    accept: (d) => !d.open,
    timeoutMs: WAIT_MS,
  });
  say("rebalance: the dialog showed the dry-run plan; cancel closed it");
}
