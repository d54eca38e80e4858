// The TinyKV dashboard page: follows placement's server-sent events (`/events`: an `init` event
// with the view and ten minutes of chart history, then an `update` each round), keeps the tables,
// the nodes × shards grid and three uPlot charts current in place, and offers rebalance, leader
// transfer and drain behind a confirmation dialog (POST /api/…, see dashboard/http.ts).
// Everything shown from the cluster goes in through textContent, never as HTML.

/** The client calls the charts follow (the methods of tinykv.v1.KV). */
const METHODS = ["Get", "Put", "Delete", "Append", "CompareAndSwap", "Scan"];
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];
const HISTORY_MS = 10 * 60 * 1000;

/** @type {any} the last view from the server */
let view;
/** @type {Array<any>} chart samples, oldest first */
let history = [];
let updates = 0;

const $ = (selector) => document.querySelector(selector);

function el(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function number(value, digits = 0) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let at = 0;
  while (value >= 1024 && at < units.length - 1) {
    value /= 1024;
    at++;
  }
  return `${value.toFixed(at === 0 ? 0 : 1)} ${units[at]}`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString();
}

/**
 * Makes `parent`'s children one per item, in order, reusing the child whose key matches (so
 * a button under the pointer stays the same element across updates).
 */
function syncChildren(parent, items, key, create, update) {
  const existing = new Map();
  for (const child of [...parent.children]) {
    // A child without a key, or a second one with the same key, is not reused: removed below.
    if (child.dataset.key === undefined || existing.has(child.dataset.key)) child.remove();
    else existing.set(child.dataset.key, child);
  }
  const seen = new Map();
  let at = 0;
  for (const item of items) {
    // Items with the same key (two identical decisions in one millisecond) get distinct ones.
    const base = String(key(item));
    const repeat = seen.get(base) ?? 0;
    seen.set(base, repeat + 1);
    const id = repeat === 0 ? base : `${base}#${repeat}`;
    let child = existing.get(id);
    if (child === undefined) {
      child = create(item);
      child.dataset.key = id;
    }
    existing.delete(id);
    update(child, item);
    if (parent.children[at] !== child) parent.insertBefore(child, parent.children[at] ?? null);
    at++;
  }
  for (const child of existing.values()) child.remove();
}

function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

// ---------------------------------------------------------------------------------------------
// Rendering.

function render() {
  const role = view.placement.isLeader ? "leader" : "follower";
  setText($("#placement-role"), role);
  setText(
    $("#placement-info"),
    view.placement.isLeader
      ? `· map v${view.placement.mapVersion}${
        view.placement.bootstrapped ? "" : " (not bootstrapped)"
      }`
      : `· this instance does not lead: the leader's admin API is at ${
        view.placement.leaderAddress || "an unknown address"
      }; its dashboard is on that host's placement HTTP port`,
  );
  setText($("#total-rps"), number(view.totals.rps, 1));
  setText($("#total-requests"), String(view.totals.requests));
  setText($("#gateway-count"), String(view.gateways.length));
  setText(
    $("#detail-hint"),
    view.detail ? "" : "Replica details appear while the dashboard is open.",
  );
  setText($("#notes"), view.placement.notes.join(" · "));
  renderGrid();
  renderShards();
  renderNodes();
  renderGateways();
  renderMoves();
  renderDecisions();
}

function roleOf(shard, node) {
  if (shard.leader === node) return "leader";
  if (shard.voters.includes(node)) return "voter";
  if (shard.learners.includes(node)) return "learner";
  return "";
}

const ROLE_MARK = { leader: "L", voter: "V", learner: "l", "": "" };

function renderGrid() {
  const nodes = view.nodes;
  // The header: "shard" (its key is in the page), then one cell per node.
  syncChildren(
    $("#grid thead tr"),
    [{ corner: true }, ...nodes],
    (node) => node.corner ? "corner" : `node:${node.id}`,
    (node) => el("th", { "data-node": node.id }),
    (cell, node) => {
      if (node.corner) return;
      setText(cell, node.id);
      cell.dataset.state = node.state;
      cell.title = `${node.address} · ${node.state}`;
    },
  );
  syncChildren(
    $("#grid tbody"),
    view.shards,
    (shard) => shard.id,
    () => el("tr"),
    (row, shard) => {
      syncChildren(
        row,
        [{ label: true }, ...nodes],
        (node) => node.label ? "label" : `node:${node.id}`,
        (node) =>
          node.label ? el("th") : el("td", { "data-node": node.id, "data-shard": shard.id }),
        (cell, node) => {
          if (node.label) {
            setText(cell, String(shard.id));
            return;
          }
          const role = roleOf(shard, node.id);
          if (cell.dataset.role !== role) {
            cell.dataset.role = role;
            cell.title = role === "" ? "" : `shard ${shard.id}: ${role} on ${node.id}`;
          }
          setText(cell, ROLE_MARK[role]);
        },
      );
    },
  );
}

const SHARD_FIELDS = ["leader", "term", "applied", "keys", "bytes", "requests", "rps"];

function renderShards() {
  syncChildren(
    $("#shards tbody"),
    view.shards,
    (shard) => shard.id,
    (shard) => {
      const row = el("tr", { "data-shard-row": shard.id });
      row.append(el("td", {}, shard.id));
      for (const field of SHARD_FIELDS) row.append(el("td", { "data-field": field }));
      const cell = el("td");
      const button = el(
        "button",
        { type: "button", "data-action": "transfer-leader", "data-shard": shard.id },
        "Transfer leader…",
      );
      button.addEventListener("click", () => confirmTransfer(shard.id));
      cell.append(button);
      row.append(cell);
      return row;
    },
    (row, shard) => {
      const values = {
        leader: shard.leader || "none",
        term: number(shard.term),
        applied: number(shard.applied),
        keys: number(shard.keys),
        bytes: bytes(shard.bytes),
        requests: number(shard.requests),
        rps: number(shard.rps, 1),
      };
      for (const field of SHARD_FIELDS) {
        setText(row.querySelector(`[data-field="${field}"]`), values[field]);
      }
      row.querySelector("button").disabled = shard.voters.length < 2;
    },
  );
}

function renderNodes() {
  syncChildren(
    $("#nodes tbody"),
    view.nodes,
    (node) => node.id,
    (node) => {
      const row = el("tr", { "data-node-row": node.id });
      row.append(el("td", {}, node.id));
      for (const field of ["address", "state", "replicas", "leaders", "disk"]) {
        row.append(el("td", { "data-field": field }));
      }
      const cell = el("td");
      const button = el(
        "button",
        { type: "button", "data-action": "drain", "data-node": node.id },
        "Drain…",
      );
      button.addEventListener("click", () => confirmDrain(node.id));
      cell.append(button);
      row.append(cell);
      return row;
    },
    (row, node) => {
      row.className = node.state;
      const values = {
        address: node.address,
        state: node.state === "down" ? `down since ${clock(node.downSinceMs)}` : node.state,
        replicas: node.replicas,
        leaders: node.leaders,
        disk: bytes(node.diskBytes),
      };
      for (const [field, value] of Object.entries(values)) {
        setText(row.querySelector(`[data-field="${field}"]`), value);
      }
      row.querySelector("button").disabled = node.state !== "live";
    },
  );
}

function renderGateways() {
  syncChildren(
    $("#gateways tbody"),
    view.gateways,
    (gateway) => gateway.address,
    () => {
      const row = el("tr");
      for (let i = 0; i < 4; i++) row.append(el("td"));
      return row;
    },
    (row, gateway) => {
      const cells = row.children;
      setText(cells[0], gateway.address);
      setText(
        cells[1],
        gateway.up ? gateway.metricsAddress : `${gateway.metricsAddress || "none"} (no answer)`,
      );
      setText(cells[2], number(gateway.requests));
      setText(cells[3], number(gateway.rps, 1));
    },
  );
}

function renderMoves() {
  const moves = $("#moves");
  if (view.moves.length === 0) {
    syncChildren(moves, [{ none: true }], () => "none", () => el("li", { class: "hint" }), (li) => {
      setText(li, "None.");
    });
    return;
  }
  syncChildren(
    moves,
    view.moves,
    (move) => `${move.shardId}/${move.kind}/${move.startedAtMs}`,
    () => el("li"),
    (li, move) => {
      li.dataset.shard = String(move.shardId);
      li.dataset.kind = move.kind;
      li.dataset.step = move.step;
      li.dataset.stepIndex = String(move.stepIndex);
      li.dataset.steps = String(move.steps);
      li.replaceChildren(
        el("span", { class: "event" }, `shard ${move.shardId}: ${move.kind}`),
        document.createTextNode(`${move.from || "–"} → ${move.to || "–"} `),
        el("progress", { value: move.stepIndex, max: Math.max(1, move.steps) }),
        document.createTextNode(
          `step ${move.stepIndex + 1}/${move.steps} ${move.step} · ${move.cause} · since ` +
            clock(move.startedAtMs),
        ),
      );
      if (move.catchUp !== null) {
        const { match, commit } = move.catchUp;
        li.append(
          el(
            "div",
            { class: "catch-up", "data-match": match, "data-commit": commit },
            `new replica's log at ${match} of the leader's ${commit}` +
              (commit > 0 ? ` (${Math.min(100, Math.floor((100 * match) / commit))}%)` : ""),
          ),
        );
      }
      if (move.lastError !== "") li.append(el("div", { class: "error" }, move.lastError));
      li.title = move.reason;
    },
  );
}

function renderDecisions() {
  const newestFirst = [...view.decisions].reverse();
  syncChildren(
    $("#decisions"),
    newestFirst,
    (decision) => `${decision.atMs}/${decision.event}/${decision.reason}`,
    (decision) => {
      const li = el("li");
      li.append(
        el("span", { class: "when" }, clock(decision.atMs)),
        el("span", { class: "event" }, decision.event),
        document.createTextNode(decision.reason),
      );
      return li;
    },
    () => {},
  );
}

// ---------------------------------------------------------------------------------------------
// Charts.

const charts = {};

function chartWidth(id) {
  return Math.max(240, $(`#${id}`).clientWidth - 4);
}

/** Builds (or rebuilds, when its series change) the chart `id` and gives it `data`. */
function drawChart(id, labels, data, unit) {
  if (typeof uPlot === "undefined") {
    $("#charts-missing").hidden = false;
    return;
  }
  const signature = labels.join("\u0000");
  let chart = charts[id];
  if (chart !== undefined && chart.signature !== signature) {
    chart.plot.destroy();
    chart = undefined;
  }
  if (chart === undefined) {
    const options = {
      width: chartWidth(id),
      height: 200,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 56, values: (_, ticks) => ticks.map((t) => `${t}${unit}`) }],
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: false,
        })),
      ],
    };
    chart = { plot: new uPlot(options, data, $(`#${id}`)), signature };
    charts[id] = chart;
  } else {
    chart.plot.setData(data);
  }
}

function renderCharts() {
  const times = history.map((s) => s.atMs / 1000);
  const methods = METHODS.filter((m) =>
    history.some((s) => s.rps[m] !== undefined && s.rps[m] > 0)
  );
  const shown = methods.length > 0 ? methods : ["Get", "Put"];
  drawChart(
    "chart-rps",
    shown,
    [times, ...shown.map((m) => history.map((s) => s.rps[m] ?? null))],
    "",
  );
  drawChart(
    "chart-p99",
    shown,
    [times, ...shown.map((m) => history.map((s) => s.p99Ms[m] ?? null))],
    "",
  );
  const nodes = [...new Set(history.flatMap((s) => Object.keys(s.leaders)))].sort();
  drawChart(
    "chart-leaders",
    nodes.length > 0 ? nodes : ["none"],
    [
      times,
      ...(nodes.length > 0 ? nodes : ["none"]).map((n) => history.map((s) => s.leaders[n] ?? 0)),
    ],
    "",
  );
}

addEventListener("resize", () => {
  for (const [id, chart] of Object.entries(charts)) {
    chart.plot.setSize({ width: chartWidth(id), height: 200 });
  }
});

// ---------------------------------------------------------------------------------------------
// The event stream.

function applied() {
  updates++;
  document.body.dataset.updates = String(updates);
}

function connect() {
  const source = new EventSource("/events");
  const badge = $("#connection");
  source.addEventListener("open", () => {
    badge.textContent = "live";
    badge.className = "badge live";
  });
  source.addEventListener("error", () => {
    badge.textContent = "reconnecting";
    badge.className = "badge lost";
  });
  source.addEventListener("init", (event) => {
    const data = JSON.parse(event.data);
    history = data.history;
    if (data.view !== undefined && data.view !== null) {
      view = data.view;
      render();
    }
    renderCharts();
    applied();
  });
  source.addEventListener("update", (event) => {
    const data = JSON.parse(event.data);
    view = data.view;
    history.push(data.sample);
    const oldest = data.sample.atMs - HISTORY_MS;
    while (history.length > 0 && history[0].atMs < oldest) history.shift();
    render();
    renderCharts();
    applied();
  });
}

// ---------------------------------------------------------------------------------------------
// Actions, each behind the confirmation dialog.

function showResult(ok, text) {
  const result = $("#action-result");
  result.className = ok ? "ok" : "error";
  result.textContent = `${ok ? "ok" : "error"}: ${text}`;
}

async function post(path, body) {
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-tinykv-confirm": "yes" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!answer.ok) showResult(false, `${answer.code}: ${answer.message}`);
    return answer;
  } catch (error) {
    showResult(false, `the placement service did not answer (${error})`);
    return { ok: false };
  }
}

/**
 * Opens the dialog; `confirm` runs on OK with the selected target (when `targets` are given).
 */
function ask({ title, body, targets, confirm }) {
  const dialog = $("#confirm");
  if (dialog.open) return;
  setText($("#confirm-title"), title);
  $("#confirm-body").replaceChildren(...body);
  const label = $("#confirm-target-label");
  const select = $("#confirm-target");
  label.hidden = targets === undefined;
  select.replaceChildren(...(targets ?? []).map((t) => el("option", { value: t }, t)));
  $("#confirm-ok").disabled = targets !== undefined && targets.length === 0;
  $("#confirm-ok").onclick = async () => {
    const target = select.value;
    dialog.close();
    await confirm(target);
  };
  $("#confirm-cancel").onclick = () => dialog.close();
  dialog.showModal();
}

function confirmTransfer(shardId) {
  const shard = view.shards.find((s) => s.id === shardId);
  if (shard === undefined) return;
  const targets = shard.voters.filter((v) => v !== shard.leader);
  ask({
    title: `Transfer the leader of shard ${shardId}`,
    body: [
      el(
        "p",
        {},
        `The leader is ${shard.leader || "not known"}. Leadership moves to the chosen voter; ` +
          "requests in flight are retried by the gateways.",
      ),
    ],
    targets,
    confirm: async (toNode) => {
      const answer = await post("/api/transfer-leader", { shardId, toNode });
      if (answer.ok) {
        showResult(true, `moving the leader of shard ${shardId} to ${toNode}`);
      }
    },
  });
}

function confirmDrain(nodeId) {
  const node = view.nodes.find((n) => n.id === nodeId);
  ask({
    title: `Drain node ${nodeId}`,
    body: [
      el(
        "p",
        {},
        `Its ${node?.replicas ?? "?"} replicas move to other nodes, one move at a time, and it ` +
          "gets no new ones. Placement refuses when the other nodes cannot hold them.",
      ),
    ],
    confirm: async () => {
      const answer = await post("/api/drain", { nodeId });
      if (answer.ok) {
        showResult(true, `draining ${nodeId}: ${answer.result.replicas} replicas to move`);
      }
    },
  });
}

function describeMove(move) {
  return `${move.kind} of shard ${move.shardId}: ${move.fromNode || "–"} → ${
    move.toNode || "–"
  } (${move.cause}: ${move.reason})`;
}

async function confirmRebalance() {
  const button = $("#action-rebalance");
  if (button.disabled || $("#confirm").open) return;
  button.disabled = true;
  let plan;
  try {
    plan = await post("/api/rebalance", { dryRun: true });
  } finally {
    button.disabled = false;
  }
  if (!plan.ok) return;
  const moves = plan.result.moves;
  const body = moves.length === 0 ? [el("p", {}, "The planner finds nothing to move.")] : [
    el("p", {}, `The planner would start ${moves.length} move(s) now:`),
    (() => {
      const list = el("ol", { id: "rebalance-plan" });
      for (const move of moves) list.append(el("li", {}, describeMove(move)));
      return list;
    })(),
  ];
  for (const note of plan.result.notes) body.push(el("p", { class: "hint" }, note));
  body.push(el("p", { class: "hint" }, "Confirming plans again and starts what it finds."));
  ask({
    title: "Rebalance",
    body,
    confirm: async () => {
      const answer = await post("/api/rebalance", { dryRun: false });
      if (answer.ok) showResult(true, `rebalance started ${answer.result.moves.length} move(s)`);
    },
  });
}

$("#action-rebalance").addEventListener("click", () => void confirmRebalance());
connect();
